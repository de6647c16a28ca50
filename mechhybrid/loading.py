"""`load(source)`: one code path from a zoo name, a local directory, a hub id or an in-memory model to a
HybridModel. Safe by default: safetensors only, no remote code, no network."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from mechhybrid.errors import MechHybridError
from mechhybrid.families import family_for_config
from mechhybrid.kernels import notice_reference_path
from mechhybrid.mamba1_scan import use_bounded_scan
from mechhybrid.model import HybridModel

_PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def load(
    source,
    *,
    dtype=None,
    device_map=None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> HybridModel:
    """Load a model and wrap it.

    `source`: `"zoo:NAME"` (the shipped zoo), a local directory holding a transformers checkpoint, a hub id
    (`org/name`) resolved from the local hub cache only, or a transformers model, bare or as `(model, tokenizer)`.
    `dtype` and `device_map` pass through to transformers (accelerate), e.g. `device_map="auto"` to spread a
    large hybrid over several GPUs. Pickled weights and configs that ask for remote code are refused unless
    `allow_pickle=True` / `trust_remote_code=True`.
    """
    if isinstance(source, tuple) and len(source) == 2:
        return _wrap(source[0], source[1], name=type(source[0]).__name__)
    if hasattr(source, "config") and hasattr(source, "forward"):
        return _wrap(source, None, name=type(source).__name__)
    if not isinstance(source, (str, os.PathLike)):
        raise MechHybridError(f"cannot load a {type(source).__name__}: pass a zoo name, a directory, a hub id or a model")
    text = str(source)
    if text.startswith("zoo:"):
        from mechhybrid.zoo.registry import zoo_dir

        directory, name = zoo_dir(text[4:]), text
    elif Path(text).expanduser().exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        directory, name = Path(text).expanduser(), text
    else:
        directory, name = _from_hub_cache(text), text
    hf_model, tokenizer = _load_directory(directory, dtype, device_map, allow_pickle, trust_remote_code)
    hm = _wrap(hf_model, tokenizer, name=name)
    # Remembered so that models an analysis loads beside this one (CKA between models) load the same way.
    hm.load_options = dict(dtype=dtype, device_map=device_map, allow_pickle=allow_pickle,
                           trust_remote_code=trust_remote_code)
    return hm


def _wrap(hf_model, tokenizer, name: str) -> HybridModel:
    family = family_for_config(hf_model.config)
    hm = HybridModel(hf_model, tokenizer, family, name=name)
    notice_reference_path(hm.components.kinds())
    use_bounded_scan(family.name)  # Mamba-1 without mamba_ssm: the reference scan, bitwise, in bounded memory
    return hm


def _from_hub_cache(repo_id: str) -> Path:
    """A hub id resolved from the local cache only: mechhybrid never downloads."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        raise MechHybridError(
            f"{repo_id!r} is not a local directory and is not in the local hub cache; mechhybrid never "
            f"downloads: fetch it yourself (e.g. `hf download {repo_id}`) or pass a directory"
        ) from None


def check_directory(directory: Path, allow_pickle: bool, trust_remote_code: bool) -> dict:
    """Refuse what is unsafe before transformers sees it: returns the parsed config.json."""
    if not directory.is_dir():
        raise MechHybridError(f"model directory not found: {directory}")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise MechHybridError(f"{directory} holds no config.json: not a transformers checkpoint")
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise MechHybridError(f"{config_path} is not valid JSON ({error})") from None
    if "auto_map" in config and not trust_remote_code:
        raise MechHybridError(
            f"{config_path} asks for remote code (auto_map); refusing to run code from a checkpoint; "
            "pass trust_remote_code=True (CLI: --trust-remote-code) if you trust it"
        )
    has_safetensors = any(directory.glob("*.safetensors"))
    pickled = [p.name for pattern in _PICKLED for p in directory.glob(pattern)]
    if not has_safetensors:
        if pickled and not allow_pickle:
            raise MechHybridError(
                f"{directory} has only pickled weights ({pickled[0]}), which can run arbitrary code when "
                "loaded; refusing; pass allow_pickle=True (CLI: --allow-pickle) if you trust them"
            )
        if not pickled:
            raise MechHybridError(f"{directory} holds no weights (*.safetensors)")
    return config


def _load_directory(directory: Path, dtype, device_map, allow_pickle: bool, trust_remote_code: bool):
    check_directory(directory, allow_pickle, trust_remote_code)
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(directory, trust_remote_code=trust_remote_code, local_files_only=True)
    family_for_config(config)  # an unsupported family fails here, before any weights are read
    try:
        with _quiet_weights_bar(directory):
            model = AutoModelForCausalLM.from_pretrained(
                directory,
                config=config,
                dtype=dtype,
                device_map=device_map,
                use_safetensors=None if allow_pickle else True,
                trust_remote_code=trust_remote_code,
                local_files_only=True,
            )
    except MechHybridError:
        raise
    except Exception as error:  # transformers/safetensors raise many types for a damaged file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MechHybridError(f"could not load the weights in {directory}: {first}") from None
    return model, _load_tokenizer(directory)


SMALL_CHECKPOINT_BYTES = 64 * 2**20
"""Below this much weight on disk a checkpoint loads in a blink, and transformers' "Loading weights" bar is noise
(a study loads each zoo model up to seven times: once for itself, once per CKA comparison)."""


@contextlib.contextmanager
def _quiet_weights_bar(directory: Path):
    """transformers' progress bars off while a small checkpoint loads; a large one keeps its bar."""
    from transformers.utils import logging as hf_logging

    weights = sum(p.stat().st_size for p in directory.iterdir() if p.suffix in (".safetensors", ".bin"))
    quiet = weights < SMALL_CHECKPOINT_BYTES and hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet:
            hf_logging.enable_progress_bar()


def _load_tokenizer(directory: Path):
    if not any((directory / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return None
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    # transformers 5 picks the tokenizer class from config.model_type (Qwen2Tokenizer for a qwen2 config) even
    # when tokenizer_config.json names a generic tokenizers backend: a word-level tokenizer then encodes every
    # text to []. Honour the generic class when the checkpoint names it.
    settings_path = directory / "tokenizer_config.json"
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    generic = settings.get("tokenizer_class") in ("TokenizersBackend", "PreTrainedTokenizerFast")
    loader = PreTrainedTokenizerFast if generic else AutoTokenizer
    try:
        return loader.from_pretrained(directory, local_files_only=True)
    except Exception as error:
        raise MechHybridError(f"could not load the tokenizer in {directory}: {error}") from None
