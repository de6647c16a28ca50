"""Multiple-choice data sets in their public schemas, formatted as Study A scored them.

- MMLU (cais/mmlu: question, subject, choices, answer), 5-shot from the `dev` split of the same subject,
  scored by the log-likelihood of the answer letter.
- ARC-Challenge (allenai/ai2_arc: question, choices {text, label}, answerKey), 25-shot, answer letter.
- HellaSwag (Rowan/hellaswag: activity_label, ctx_a, ctx_b, endings, label), 10-shot, each ending scored by
  log-likelihood per token (length-normalised).
- TruthfulQA-MC1 (truthful_qa multiple_choice: question, mc1_targets {choices, labels}), 0-shot,
  length-normalised.
Shots come from the data set's own train/dev split when it is there, else from items of the evaluated file
that are not evaluated.
"""

from __future__ import annotations

import re
from pathlib import Path

from mechhybrid.errors import MechHybridError

from ..sampling import sample_indices
from ..tasks import ChoiceItem, ChoiceTask
from .files import files_version, find_split, read_records

__all__ = ["read_mmlu", "read_arc", "read_hellaswag", "read_truthfulqa", "encode"]

LETTERS = "ABCDEFGHIJ"
IDENT = {"mmlu": "mmlu", "arc": "arc", "hellaswag": "hellaswag", "truthfulqa": "truthful"}
"""A part of each data set's cache directory name (cais___mmlu, datasets--allenai--ai2_arc, ...)."""


def encode(tokenizer, text: str, special: bool) -> tuple[int, ...]:
    return tuple(tokenizer(text, add_special_tokens=special)["input_ids"])


def _field(rec: dict, key: str, name: str):
    if key not in rec:
        raise MechHybridError(f"{name}: record lacks field {key!r} (is this the public {name} schema?)")
    return rec[key]


def _load(path, name, eval_splits, shot_splits, prefer, limit, seed):
    """(eval records, shot records, version): shots are never evaluated items."""
    files = find_split(path, eval_splits, prefer, ident=IDENT[name])
    records = read_records(files)
    if not records:
        raise MechHybridError(f"{name}: no records in {files[0]}")
    chosen = sample_indices(len(records), limit, seed)
    root = Path(path).expanduser()
    root = root if root.is_dir() else root.parent
    shot_files = find_split(root, shot_splits, prefer, False, IDENT[name]) if shot_splits else []
    shot_files = [f for f in shot_files if f not in files]
    if shot_files:
        shots = read_records(shot_files)
    else:
        taken = set(chosen)
        shots = [r for i, r in enumerate(records) if i not in taken]
    return [records[i] for i in chosen], shots, files_version(name, eval_splits[0], files)


def _task(name, version, tokenizer, prompts, choices, answers, length_norm) -> ChoiceTask:
    items = tuple(ChoiceItem(encode(tokenizer, p, True), tuple(encode(tokenizer, c, False) for c in cs), a)
                  for p, cs, a in zip(prompts, choices, answers))
    return ChoiceTask(name, version, items, length_norm=length_norm)


def _mmlu_block(rec: dict, with_answer: bool) -> str:
    lines = [str(_field(rec, "question", "mmlu")).strip()]
    lines += [f"{LETTERS[i]}. {c}" for i, c in enumerate(_field(rec, "choices", "mmlu"))]
    answer = f" {LETTERS[int(rec['answer'])]}" if with_answer else ""
    return "\n".join(lines) + f"\nAnswer:{answer}"


def read_mmlu(path, tokenizer, limit, seed, shots: int = 5):
    evals, pool, version = _load(path, "mmlu", ("test",), ("dev",), ("all",), limit, seed)
    prompts, choices, answers = [], [], []
    for rec in evals:
        subject = str(rec.get("subject", "")).strip()
        same = [r for r in pool if str(r.get("subject", "")).strip() == subject][:shots]
        head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        prompts.append(head + "".join(_mmlu_block(r, True) + "\n\n" for r in same) + _mmlu_block(rec, False))
        n = len(rec["choices"])
        choices.append([f" {LETTERS[i]}" for i in range(n)])
        answers.append(int(_field(rec, "answer", "mmlu")))
    return _task("mmlu", version, tokenizer, prompts, choices, answers, False)


def _arc_block(rec: dict, with_answer: bool) -> str:
    ch = _field(rec, "choices", "arc")
    lines = [f"Question: {str(_field(rec, 'question', 'arc')).strip()}"]
    lines += [f"{lab}. {txt}" for lab, txt in zip(ch["label"], ch["text"])]
    return "\n".join(lines) + (f"\nAnswer: {rec['answerKey']}" if with_answer else "\nAnswer:")


def read_arc(path, tokenizer, limit, seed, shots: int = 25):
    evals, pool, version = _load(path, "arc", ("test",), ("train",), ("challenge",), limit, seed)
    head = "".join(_arc_block(r, True) + "\n\n" for r in pool[:shots])
    prompts, choices, answers = [], [], []
    for rec in evals:
        labels = list(_field(rec, "choices", "arc")["label"])
        key = str(_field(rec, "answerKey", "arc"))
        if key not in labels:
            raise MechHybridError(f"arc: answerKey {key!r} is not among the labels {labels}")
        prompts.append(head + _arc_block(rec, False))
        choices.append([f" {lab}" for lab in labels])
        answers.append(labels.index(key))
    return _task("arc", version, tokenizer, prompts, choices, answers, False)


def _hs_clean(text: str) -> str:
    # lm-eval-harness's HellaSwag preprocessing: drop WikiHow's bracketed artefacts and double spaces.
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hs_query(rec: dict) -> str:
    ctx = f"{_field(rec, 'ctx_a', 'hellaswag')} {str(_field(rec, 'ctx_b', 'hellaswag')).capitalize()}"
    return _hs_clean(f"{rec.get('activity_label', '')}: {ctx}")


def read_hellaswag(path, tokenizer, limit, seed, shots: int = 10):
    evals, pool, version = _load(path, "hellaswag", ("validation",), ("train",), (), limit, seed)
    head = "".join(f"{_hs_query(r)} {_hs_clean(r['endings'][int(r['label'])])}\n\n" for r in pool[:shots]
                   if str(r.get("label", "")).strip() != "")
    prompts = [head + _hs_query(r) for r in evals]
    choices = [[" " + _hs_clean(e) for e in _field(r, "endings", "hellaswag")] for r in evals]
    answers = [int(_field(r, "label", "hellaswag")) for r in evals]
    return _task("hellaswag", version, tokenizer, prompts, choices, answers, True)


def read_truthfulqa(path, tokenizer, limit, seed):
    evals, _, version = _load(path, "truthfulqa", ("validation",), (), ("multiple",), limit, seed)
    prompts, choices, answers = [], [], []
    for rec in evals:
        mc1 = _field(rec, "mc1_targets", "truthfulqa")
        labels = list(mc1["labels"])
        if labels.count(1) != 1:
            raise MechHybridError("truthfulqa: mc1_targets must have exactly one true label")
        prompts.append(f"Q: {str(_field(rec, 'question', 'truthfulqa')).strip()}\nA:")
        choices.append([" " + str(c) for c in mc1["choices"]])
        answers.append(labels.index(1))
    return _task("truthfulqa", version, tokenizer, prompts, choices, answers, True)
