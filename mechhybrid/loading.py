"""`load(source)`: one code path from a zoo name, a local directory, a hub id or an in-memory model to a
HybridModel. Safe by default: safetensors only, no remote code, no network, and no checkpoint whose tensors do
not match its architecture (layers left at random init)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import warnings
from pathlib import Path

from mechhybrid.errors import MechHybridError, UnsupportedFamilyError
from mechhybrid.families import FAMILIES, FAMILY_NAMES, family_for_config
from mechhybrid.kernels import notice_reference_path
from mechhybrid.mamba1_scan import use_bounded_scan
from mechhybrid.model import HybridModel
from mechhybrid.ssm_step import clamp_one_token_steps

__all__ = ["load", "check_directory", "SMALL_CHECKPOINT_BYTES"]

_PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
_SUPPORTED_TYPES = frozenset(mt for family in FAMILIES for mt in family.model_types)
_SHOWN = 3
"""Tensor names a damaged-checkpoint message spells out before it says how many more there are."""

logger = logging.getLogger("mechhybrid")
_said: set[str] = set()


def _say_once(message: str) -> None:
    """A notice the user needs once per process, not once per load (a study loads a model up to seven times)."""
    if message not in _said:
        _said.add(message)
        logger.warning("mechhybrid: %s", message)


def load(
    source,
    *,
    dtype=None,
    device_map=None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    allow_missing_weights: bool = False,
) -> HybridModel:
    """Load a model and wrap it.

    `source`: `"zoo:NAME"` (the shipped zoo), a local directory holding a transformers checkpoint, a hub id
    (`org/name`) resolved from the local hub cache only, or a transformers model, bare or as `(model, tokenizer)`.
    A multimodal model (`Qwen3_5ForConditionalGeneration`) is analysed through its language model, sharing its
    weights; its vision tower is not analysed. `dtype` and `device_map` pass through to transformers
    (accelerate), e.g. `device_map="auto"` to spread a large hybrid over several GPUs.

    Refused unless opted in: pickled weights (`allow_pickle=True`); a checkpoint whose tensors do not match its
    architecture, i.e. tensors missing or of the wrong shape (transformers would leave them at random init) or
    unexpected (`allow_missing_weights=True`; keys transformers skips by design, such as a tied `lm_head`,
    multi-token-prediction heads or a vision tower, do not count); code from a checkpoint's `auto_map`
    (`trust_remote_code=True`), and only for a model type transformers does not implement: where it does, its
    own implementation is used and the checkpoint's code is ignored, with a notice.
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
    options = dict(dtype=dtype, device_map=device_map, allow_pickle=allow_pickle,
                   trust_remote_code=trust_remote_code, allow_missing_weights=allow_missing_weights)
    hf_model, tokenizer = _load_directory(directory, **options)
    hm = _wrap(hf_model, tokenizer, name=name)
    # Remembered so that models an analysis loads beside this one (CKA between models) load the same way.
    hm.load_options = options
    return hm


def _wrap(hf_model, tokenizer, name: str) -> HybridModel:
    family = family_for_config(hf_model.config)
    hm = HybridModel(_language_model_of(hf_model, name), tokenizer, family, name=name)
    notice_reference_path(hm.components.kinds())
    use_bounded_scan(family.name)  # Mamba-1 without mamba_ssm: the reference scan, bitwise, in bounded memory
    clamp_one_token_steps(hm.hf_model, family.name)  # Mamba-2's one-token step honours time_step_limit
    return hm


def _language_model_of(hf_model, name: str):
    """The model itself, or for a multimodal model (`model.language_model` beside a vision tower, a
    `text_config`) the causal LM transformers builds for its text config, holding the very same modules: what
    loading its checkpoint directory gives, without copying a weight."""
    language_model = getattr(getattr(hf_model, "model", None), "language_model", None)
    text_config = getattr(hf_model.config, "text_config", None)
    if language_model is None or text_config is None:
        return hf_model
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # a shell: both of its children are replaced below
        causal = AutoModelForCausalLM.from_config(text_config)
    causal.model = language_model
    causal.lm_head = hf_model.get_output_embeddings()
    _say_once(f"{name}: analysing its language model (model.language_model); the vision tower is not analysed")
    return causal


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
    """Refuse what is unsafe or unsupported before transformers sees it: returns the parsed config.json."""
    if not directory.is_dir():
        raise MechHybridError(f"model directory not found: {directory}")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise MechHybridError(f"{directory} holds no config.json: not a transformers checkpoint")
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise MechHybridError(f"{config_path} is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise MechHybridError(f"{config_path} holds a JSON {type(config).__name__}, not an object of settings")
    _check_model_type(config, config_path)
    if "auto_map" in config and not _native(config["model_type"]) and not trust_remote_code:
        raise MechHybridError(
            f"{config_path} asks for remote code (auto_map) for model_type {config['model_type']!r}, which "
            "transformers does not implement; refusing to run code from a checkpoint; pass "
            "trust_remote_code=True (CLI: --trust-remote-code) if you trust it"
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


def _check_model_type(config: dict, config_path: Path) -> None:
    """The family table knows the config's model_type (or, for a multimodal config, its text_config's)."""
    supported = f"supported: {', '.join(FAMILY_NAMES)}"
    if "model_type" not in config:
        found = ", ".join(sorted(config)[:8]) or "nothing"
        raise MechHybridError(
            f"{config_path} has no model_type, so it is not a transformers config (found: {found}; keys such "
            f"as d_model and n_layer are an original mamba_ssm config: convert it to transformers first); {supported}"
        )
    text_config = config.get("text_config")
    text_type = text_config.get("model_type") if isinstance(text_config, dict) else None
    if not any(isinstance(value, str) and value in _SUPPORTED_TYPES for value in (config["model_type"], text_type)):
        raise UnsupportedFamilyError(
            f"{config_path}: unsupported model family {config['model_type']!r} (model_type); {supported}"
        )


def _native(model_type: str) -> bool:
    """Whether transformers itself implements this model_type."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type in CONFIG_MAPPING_NAMES


def _load_directory(directory: Path, dtype, device_map, allow_pickle: bool, trust_remote_code: bool,
                    allow_missing_weights: bool):
    raw = check_directory(directory, allow_pickle, trust_remote_code)
    # check_directory has refused code that transformers cannot replace unless trust_remote_code is set.
    remote = "auto_map" in raw and not _native(raw["model_type"])
    notices = []  # said only once the load has succeeded, so that an error stays the last line
    if "auto_map" in raw and not remote:
        notices.append(f"{directory}: ignoring the checkpoint's own code (auto_map); transformers implements "
                       f"{raw['model_type']!r} and its implementation is used")
    if isinstance(raw.get("vision_config"), dict):
        notices.append(f"{directory}: loading its language model; the vision tower is not loaded or analysed")
    with _quiet_transformers(directory):
        model, info = _from_pretrained(directory, dtype, device_map, allow_pickle, remote)
        damage = _damage(info)
        if damage and not allow_missing_weights:
            raise MechHybridError(
                f"{directory}: the checkpoint does not match its architecture: {damage}; refusing, since those "
                "weights would be random; pass allow_missing_weights=True (CLI: --allow-missing-weights) to load "
                "it anyway"
            )
        if damage:
            notices.append(f"{directory}: loaded with allow_missing_weights although {damage}")
        tokenizer, tokenizer_notice = _load_tokenizer(directory, raw.get("model_type"))
    notices += [tokenizer_notice] if tokenizer_notice else []
    for notice in notices:
        _say_once(notice)
    return model, tokenizer


def _from_pretrained(directory: Path, dtype, device_map, allow_pickle: bool, remote: bool):
    """The causal LM and transformers' loading info (missing, unexpected, mismatched keys)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(directory, trust_remote_code=remote, local_files_only=True)
    except Exception as error:  # transformers validates fields with many exception types
        raise MechHybridError(f"could not read {directory / 'config.json'}: {_first_line(error)}") from None
    family_for_config(config)  # an unsupported family fails here, before any weights are read
    try:
        return AutoModelForCausalLM.from_pretrained(
            directory,
            config=config,
            dtype=dtype,
            device_map=device_map,
            use_safetensors=None if allow_pickle else True,
            trust_remote_code=remote,
            local_files_only=True,
            # Shape mismatches are reported with the other damage rather than raised with a pointer to a
            # report that is silenced.
            ignore_mismatched_sizes=True,
            output_loading_info=True,
        )
    except Exception as error:  # transformers/safetensors raise many types for a damaged file
        raise MechHybridError(f"could not load the weights in {directory}: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _damage(info: dict) -> str:
    """What transformers' loading info says is wrong, in one clause per problem; "" for a faithful load.
    transformers has already dropped the keys it skips by design (tied weights, `_keys_to_ignore_on_load_*`)."""
    missing = {key: key for key in info["missing_keys"]}
    wrong = {key: f"{key} {list(ckpt)} in the checkpoint vs {list(model)}"
             for key, ckpt, model in info["mismatched_keys"]}
    unexpected = {key: key for key in info["unexpected_keys"]}
    clauses = ((missing, "missing (left at random init)"), (wrong, "of the wrong shape (left at random init)"),
               (unexpected, "unexpected (unused)"))
    return "; ".join(f"{_count(found)} {what}: {_first_few(found)}" for found, what in clauses if found)


def _count(keys) -> str:
    return f"{len(keys)} tensor{'s' if len(keys) != 1 else ''}"


def _first_few(described: dict[str, str]) -> str:
    """The first few descriptions in key order, then how many more there are."""
    keys = sorted(described, key=_natural)
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(described[key] for key in keys[:_SHOWN]) + more


def _natural(key: str) -> list:
    """Sort key that puts layers.2 before layers.10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


SMALL_CHECKPOINT_BYTES = 64 * 2**20
"""Below this much weight on disk a checkpoint loads in a blink, and transformers' "Loading weights" bar is noise
(a study loads each zoo model up to seven times: once for itself, once per CKA comparison)."""


@contextlib.contextmanager
def _quiet_transformers(directory: Path):
    """transformers' load report and warnings silenced while a checkpoint loads (mechhybrid says in one line what
    matters), and its progress bars off for a small checkpoint; a large one keeps its bar."""
    from transformers.utils import logging as hf_logging

    weights = sum(p.stat().st_size for p in directory.iterdir() if p.suffix in (".safetensors", ".bin"))
    quiet_bar = weights < SMALL_CHECKPOINT_BYTES and hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    if quiet_bar:
        hf_logging.disable_progress_bar()
    hf_logging.set_verbosity(max(verbosity, hf_logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if quiet_bar:
            hf_logging.enable_progress_bar()


def _load_tokenizer(directory: Path, model_type) -> tuple[object, str | None]:
    """(tokenizer or None, a notice to say once or None)."""
    if not any((directory / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return None, None
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from mechhybrid.zoo.tokenizer import declared_class_overridden

    # transformers 5 replaces a declared generic tokenizer class by the model type's own for some model types
    # (qwen2 -> Qwen2Tokenizer, a byte-level BPE that encodes a word-level vocabulary into other ids). Only for
    # such a checkpoint, published without an auto_map that keeps its class, is the declared class honoured.
    settings_path = directory / "tokenizer_config.json"
    settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
    declared = settings.get("tokenizer_class")
    substitute = declared_class_overridden(model_type if isinstance(model_type, str) else None)
    loader, notice = AutoTokenizer, None
    if substitute and declared in ("TokenizersBackend", "PreTrainedTokenizerFast") and "auto_map" not in settings:
        loader = PreTrainedTokenizerFast
        notice = (f"{directory}: tokenizer_config.json declares {declared}, but transformers loads {substitute} "
                  f"for model_type {model_type!r}; mechhybrid loads the declared class (plain AutoTokenizer "
                  "gives other token ids for this checkpoint)")
    try:
        return loader.from_pretrained(directory, local_files_only=True), notice
    except Exception as error:
        raise MechHybridError(f"could not load the tokenizer in {directory}: {_first_line(error)}") from None
