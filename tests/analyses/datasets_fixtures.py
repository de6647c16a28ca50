"""Tiny files in the public data sets' own schemas and cache layouts (written by the tests, never fetched)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    elif path.suffix == ".arrow":
        table = pa.Table.from_pylist(records)
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)  # the datasets cache's Arrow stream format
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def mmlu(n=6):
    return [{"question": f"what is {i} ?", "subject": "science" if i % 2 else "astronomy",
             "choices": ["red", "blue", "green", "cat"], "answer": i % 4} for i in range(n)]


def arc(n=5):
    return [{"id": f"q{i}", "question": f"why is the sun {i} ?",
             "choices": {"text": ["water", "moon", "dog"], "label": ["A", "B", "C"] if i % 2 else ["1", "2", "3"]},
             "answerKey": "B" if i % 2 else "3"} for i in range(n)]


def hellaswag(n=4):
    return [{"ind": i, "activity_label": "Cat", "ctx_a": "a cat is in the water", "ctx_b": "it",
             "ctx": "a cat is in the water it", "endings": ["was red [title] a", "is blue", "has", "will"],
             "source_id": "x", "split": "val", "split_type": "indomain", "label": str(i % 4)} for i in range(n)]


def truthfulqa(n=3):
    return [{"question": f"what is the moon {i} ?",
             "mc1_targets": {"choices": ["water", "a dog", "three"], "labels": [1, 0, 0]},
             "mc2_targets": {"choices": ["water"], "labels": [1]}} for i in range(n)]


def gsm8k(n=4):
    return [{"question": f"what is {i} and {i} ?", "answer": f"it is {2 * i}.\n#### {2 * i:,}"} for i in range(n)]


def wikitext(lines=40):
    return [{"text": " = the cat = \n" if i % 10 == 0 else " the cat was in the water and the dog was red .\n"}
            for i in range(lines)]


def write_all(root: Path) -> dict[str, str]:
    """Every data set in a hub-cache-like layout under root; returns the Config `data` table."""
    write(root / "mmlu/all/test-00000-of-00001.parquet", mmlu())
    write(root / "mmlu/all/dev-00000-of-00001.parquet", mmlu(4))
    write(root / "mmlu/abstract_algebra/test-00000-of-00001.parquet", mmlu(2))  # another config: not taken
    write(root / "arc/ARC-Challenge/test-00000-of-00001.parquet", arc())
    write(root / "arc/ARC-Challenge/train-00000-of-00001.parquet", arc(3))
    write(root / "arc/ARC-Easy/test-00000-of-00001.parquet", arc(9))
    write(root / "hellaswag/hellaswag-validation.arrow", hellaswag())
    write(root / "truthfulqa/multiple_choice/validation-00000-of-00001.parquet", truthfulqa())
    write(root / "gsm8k/main/test-00000-of-00001.parquet", gsm8k())
    write(root / "gsm8k/main/train-00000-of-00001.parquet", gsm8k(9)[5:])
    write(root / "wikitext/wikitext-2-raw-v1/validation-00000-of-00001.parquet", wikitext())
    names = ("mmlu", "arc", "hellaswag", "truthfulqa", "gsm8k", "wikitext")
    return {name: str(root / name) for name in names}
