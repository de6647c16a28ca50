"""Study A's real benchmarks from local files in the public data sets' own schemas (nothing downloaded).

`read_benchmark(name, path, tokenizer, limit, seed, max_len)` -> (Task, reference docs or None).
"""

from __future__ import annotations

from .choice import read_arc, read_hellaswag, read_mmlu, read_truthfulqa
from .gsm8k import extract_answer, read_gsm8k
from .wikitext import read_wikitext

__all__ = ["READERS", "read_benchmark", "extract_answer", "read_mmlu", "read_arc", "read_hellaswag",
           "read_truthfulqa", "read_gsm8k", "read_wikitext"]

READERS = {
    "mmlu": read_mmlu, "arc": read_arc, "hellaswag": read_hellaswag, "truthfulqa": read_truthfulqa,
    "gsm8k": read_gsm8k, "wikitext": read_wikitext,
}
"""Benchmark name (the key in a Config's `data` table) -> reader."""


def read_benchmark(name: str, path, tokenizer, limit: int, seed: int, max_len: int | None = None):
    """The benchmark as (Task, reference docs or None); `max_len` is wikitext's window (default 2,048)."""
    if name == "wikitext":
        return read_wikitext(path, tokenizer, limit, seed, doc_tokens=max_len or 2048)
    return READERS[name](path, tokenizer, limit, seed), None
