"""The zoo tokenizer: word level, one token per word of the synthetic language.

Built with `tokenizers` and saved as tokenizer.json + tokenizer_config.json, so a zoo model
goes through `AutoTokenizer.from_pretrained(dir)` exactly like a real checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from mechhybrid.zoo.language import SPECIAL_TOKENS, VOCAB

__all__ = ["build_tokenizer", "save_tokenizer", "encode_words", "TOKEN_ID"]

TOKEN_ID: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}
"""Word -> id; the tokenizer uses exactly this mapping (checked in tests/zoo)."""


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


def save_tokenizer(out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save(str(out_dir / "tokenizer.json"))
    specials = dict(pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>")
    config = dict(tokenizer_class="PreTrainedTokenizerFast", clean_up_tokenization_spaces=False,
                  model_max_length=4096, add_bos_token=True, **specials)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n")
