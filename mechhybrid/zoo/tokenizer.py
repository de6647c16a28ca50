"""The zoo tokenizer: word level, one token per word of the synthetic language.

Built with `tokenizers` and saved as tokenizer.json + tokenizer_config.json, so a zoo model
goes through `AutoTokenizer.from_pretrained(dir)` exactly like a real checkpoint, and gets the
same ids as `mechhybrid.load` (checked for every shipped model in tests/zoo/test_standard_loaders.py).

transformers 5 picks a tokenizer class from the config's model_type, and for a few model types
(qwen2 among them) it loads that class whatever tokenizer_config.json declares: Qwen2Tokenizer
rebuilds a byte-level BPE from the vocabulary, which encodes "the code of anna is" as
[<bos>, 116, 116]. No value of tokenizer_class can change that; the one route transformers leaves
is an `auto_map`: for those model types it skips the map unless `trust_remote_code=True` and loads
the declared class instead. So a checkpoint of such a model type also carries an `auto_map` to a
module that is nothing but the generic backend (`REMOTE_MODULE`), and either way of loading gives
the same word-level tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

from mechhybrid.errors import MechHybridError
from mechhybrid.zoo.language import SPECIAL_TOKENS, VOCAB, doc_rng, sample_doc

__all__ = ["build_tokenizer", "save_tokenizer", "encode_words", "TOKEN_ID", "TOKENIZER_CLASS", "REMOTE_MODULE",
           "declared_class_overridden", "probe_texts", "check_auto_tokenizer"]

TOKEN_ID: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}
"""Word -> id; the tokenizer uses exactly this mapping (checked in tests/zoo)."""
TOKENIZER_CLASS = "PreTrainedTokenizerFast"
"""The declared class: the generic `tokenizers` backend (an alias of TokenizersBackend in transformers 5)."""
REMOTE_MODULE = "tokenization_zoo.py"
"""The module an `auto_map` points to where transformers would otherwise override the declared class."""
_REMOTE_CLASS = "ZooTokenizer"
_REMOTE_SOURCE = f'''"""The zoo's word-level tokenizer: tokenizer.json through transformers' generic tokenizers backend.

Named in tokenizer_config.json's auto_map only because transformers 5 loads its own class for this model_type
whatever tokenizer_class says; without trust_remote_code it loads {TOKENIZER_CLASS} and never imports this file.
"""

from transformers import {TOKENIZER_CLASS}


class {_REMOTE_CLASS}({TOKENIZER_CLASS}):
    """The generic backend, unchanged."""
'''
# AutoTokenizer's own list of classes that read tokenizer.json as it stands (tokenization_auto.from_pretrained).
_GENERIC_CLASSES = ("TokenizersBackend", "PythonBackend", "PreTrainedTokenizerFast", "MistralCommonBackend")


def encode_words(words) -> list[int]:
    """Ids of already-split words (the fast path the data pipeline uses; same ids as the tokenizer)."""
    return [TOKEN_ID[w] for w in words]


def build_tokenizer():
    """A `tokenizers.Tokenizer`: whitespace split, word-level vocabulary, <bos> prepended."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel(vocab=dict(TOKEN_ID), unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Like Llama-family tokenizers, encoding a string starts the sequence with <bos>.
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", TOKEN_ID["<bos>"])])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


def declared_class_overridden(model_type: str | None) -> str | None:
    """The tokenizer class AutoTokenizer loads instead of a declared generic one for `model_type`, or None.

    Mirrors transformers' rule: a model type listed in MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS whose registered
    tokenizer is a specialised class (qwen2 -> "Qwen2Tokenizer") gets that class, unless the checkpoint has an
    auto_map. None for every other model type, and for a tokenizer saved without a model config.
    """
    from transformers.models.auto import tokenization_auto as auto

    if not model_type or model_type not in auto.MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS:
        return None
    registered = auto.TOKENIZER_MAPPING_NAMES.get(model_type)
    if registered is None or registered.removesuffix("Fast") in _GENERIC_CLASSES:
        return None
    return registered.removesuffix("Fast")


def save_tokenizer(out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `out_dir`.

    When `out_dir` already holds a config.json whose model_type makes transformers override the declared class,
    tokenizer_config.json also gets the `auto_map` and `REMOTE_MODULE` is written beside it (module docstring).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save(str(out_dir / "tokenizer.json"))
    specials = dict(pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")
    config = dict(tokenizer_class=TOKENIZER_CLASS, clean_up_tokenization_spaces=False,
                  model_max_length=4096, add_bos_token=True, **specials)
    model_config = out_dir / "config.json"
    model_type = json.loads(model_config.read_text()).get("model_type") if model_config.is_file() else None
    (out_dir / REMOTE_MODULE).unlink(missing_ok=True)
    if declared_class_overridden(model_type):
        config["auto_map"] = {"AutoTokenizer": [None, f"{Path(REMOTE_MODULE).stem}.{_REMOTE_CLASS}"]}
        (out_dir / REMOTE_MODULE).write_text(_REMOTE_SOURCE)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")


def probe_texts() -> list[str]:
    """Texts that tell a word-level tokenizer from any other: one document of each kind (an underscore word among
    them), an unknown word, and runs of spaces, tabs and newlines between words."""
    docs = [" ".join(sample_doc(doc_rng(0, "tokenizer-probe", i), kind).words[1:])
            for i, kind in enumerate(("text", "needle", "recall", "copy"))]
    return docs + ["the code of anna is", "the capital of mexico is mexico_city .", "the zebra runs",
                   "anna  sees\tthe\ncat ."]


def check_auto_tokenizer(directory: Path) -> None:
    """MechHybridError unless `AutoTokenizer.from_pretrained(directory)` encodes every probe text as the zoo
    tokenizer does."""
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    reference = build_tokenizer()
    for text in probe_texts():
        got, want = auto(text)["input_ids"], reference.encode(text).ids
        if got != want:
            raise MechHybridError(
                f"{directory}: AutoTokenizer loads {type(auto).__name__}, which encodes {text[:40]!r} as {got[:8]}, "
                f"not as the zoo tokenizer's {want[:8]}")
