"""GSM8K (openai/gsm8k `main`: question, answer ending in '#### N'), 8-shot, greedy, exact match of N."""

from __future__ import annotations

import re
from pathlib import Path

from mechhybrid.errors import MechHybridError

from ..sampling import sample_indices
from ..tasks import GenItem, GenTask
from .choice import encode
from .fields import Record, bad, text
from .files import files_version, find_split, read_records

__all__ = ["read_gsm8k", "extract_answer", "gold_answer"]

_NUMBER = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")


def _normal(number: str) -> str:
    number = number.replace(",", "").strip()
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number


def gold_answer(answer: str, rec: Record | None = None) -> str:
    """N of the answer's '#### N' line; `rec`, when given, is named in the error."""
    m = _NUMBER.search(answer)
    if m is None:
        problem = "lacks its '#### N' line (is this the public gsm8k schema?)"
        if rec is not None:
            raise bad("gsm8k", rec, "answer", problem)
        raise MechHybridError(f"gsm8k: an answer {problem}")
    return _normal(m.group(1))


def extract_answer(text: str) -> str | None:
    """The number after the first '####' of a generation, before any next few-shot 'Question:'."""
    text = text.split("Question:")[0]
    m = _NUMBER.search(text)
    return _normal(m.group(1)) if m else None


def _shot(rec: Record) -> str:
    return f"Question: {text(rec, 'question', 'gsm8k')}\nAnswer: {text(rec, 'answer', 'gsm8k')}\n\n"


def read_gsm8k(path, tokenizer, limit, seed, shots: int = 8, max_new_tokens: int = 128) -> GenTask:
    files = find_split(path, ("test",), ("main",), ident="gsm8k")
    records = read_records(files)
    chosen = sample_indices(len(records), limit, seed)
    root = Path(path).expanduser()
    root = root if root.is_dir() else root.parent
    shot_files = [f for f in find_split(root, ("train",), ("main",), False, "gsm8k") if f not in files]
    pool = read_records(shot_files) if shot_files else [r for i, r in enumerate(records) if i not in set(chosen)]
    head = "".join(_shot(r) for r in pool[:shots])
    items = tuple(GenItem(encode(tokenizer, f"{head}Question: {text(rec, 'question', 'gsm8k')}\nAnswer:", True),
                          gold_answer(text(rec, "answer", "gsm8k"), rec)) for rec in (records[i] for i in chosen))
    return GenTask("gsm8k", files_version("gsm8k", "test", files), items, max_new_tokens=max_new_tokens,
                   tokenizer=tokenizer)
