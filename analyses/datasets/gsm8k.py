"""GSM8K (openai/gsm8k `main`: question, answer ending in '#### N'), 8-shot, greedy, exact match of N."""

from __future__ import annotations

import re

from mechhybrid.errors import MechHybridError

from ..sampling import sample_indices
from ..tasks import GenItem, GenTask
from .choice import encode
from .files import files_version, find_split, read_records

__all__ = ["read_gsm8k", "extract_answer", "gold_answer"]

_NUMBER = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")


def _normal(number: str) -> str:
    number = number.replace(",", "").strip()
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number


def gold_answer(answer: str) -> str:
    m = _NUMBER.search(answer)
    if m is None:
        raise MechHybridError("gsm8k: an answer lacks its '#### N' line (is this the public gsm8k schema?)")
    return _normal(m.group(1))


def extract_answer(text: str) -> str | None:
    """The number after the first '####' of a generation, before any next few-shot 'Question:'."""
    text = text.split("Question:")[0]
    m = _NUMBER.search(text)
    return _normal(m.group(1)) if m else None


def read_gsm8k(path, tokenizer, limit, seed, shots: int = 8, max_new_tokens: int = 128) -> GenTask:
    files = find_split(path, ("test",), ("main",), ident="gsm8k")
    records = read_records(files)
    chosen = sample_indices(len(records), limit, seed)
    from pathlib import Path

    root = Path(path).expanduser()
    root = root if root.is_dir() else root.parent
    shot_files = [f for f in find_split(root, ("train",), ("main",), False, "gsm8k") if f not in files]
    pool = read_records(shot_files) if shot_files else [r for i, r in enumerate(records) if i not in set(chosen)]
    for rec in records[:1] + pool[:1]:
        if "question" not in rec or "answer" not in rec:
            raise MechHybridError("gsm8k: records need 'question' and 'answer' fields")
    head = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in pool[:shots])
    items = tuple(GenItem(encode(tokenizer, f"{head}Question: {records[i]['question']}\nAnswer:", True),
                          gold_answer(records[i]["answer"])) for i in chosen)
    return GenTask("gsm8k", files_version("gsm8k", "test", files), items, max_new_tokens=max_new_tokens,
                   tokenizer=tokenizer)
