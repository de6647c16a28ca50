"""Multiple-choice data sets in their public schemas, formatted as Study A scored them.

- MMLU (cais/mmlu: question, subject, choices, answer), 5-shot from the `dev` split of the same subject,
  scored by the log-likelihood of the answer letter; `answer` an index 0-3 or a letter A-D.
- ARC-Challenge (allenai/ai2_arc: question, choices {text, label}, answerKey), 25-shot, answer label; labels
  A-E or 1-5, choices also as a list of {text, label} (AllenAI's JSONL, question {stem, choices}) or a plain
  list (lettered A-E here; answerKey a letter or a 1-based number).
- HellaSwag (Rowan/hellaswag: activity_label, ctx_a, ctx_b, endings, label), 10-shot, each ending scored by
  log-likelihood per token (length-normalised); `label` an int or a digit string.
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
from .fields import Record, bad, index_answer, required, text, texts
from .files import files_version, find_split, read_records

__all__ = ["read_mmlu", "read_arc", "read_hellaswag", "read_truthfulqa", "encode"]

LETTERS = "ABCDEFGHIJ"
IDENT = {"mmlu": "mmlu", "arc": "arc", "hellaswag": "hellaswag", "truthfulqa": "truthful"}
"""A part of each data set's cache directory name (cais___mmlu, datasets--allenai--ai2_arc, ...)."""


def encode(tokenizer, string: str, special: bool) -> tuple[int, ...]:
    return tuple(tokenizer(string, add_special_tokens=special)["input_ids"])


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


def _mmlu(rec: Record) -> tuple[str, list[str], int]:
    """(question, choices, answer index): `answer` an index 0-3 or a letter A-D (any count up to J)."""
    choices = texts(rec, "choices", "mmlu", lowest=2)
    if len(choices) > len(LETTERS):
        raise bad("mmlu", rec, "choices", f"has {len(choices)} entries; at most {len(LETTERS)} are lettered")
    return text(rec, "question", "mmlu").strip(), choices, index_answer(rec, "answer", "mmlu", len(choices), True)


def _mmlu_block(rec: Record, with_answer: bool) -> str:
    question, choices, answer = _mmlu(rec)
    lines = [question] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    return "\n".join(lines) + (f"\nAnswer: {LETTERS[answer]}" if with_answer else "\nAnswer:")


def read_mmlu(path, tokenizer, limit, seed, shots: int = 5):
    evals, pool, version = _load(path, "mmlu", ("test",), ("dev",), ("all",), limit, seed)
    prompts, choices, answers = [], [], []
    for rec in evals:
        subject = str(rec.get("subject") or "").strip()
        same = [r for r in pool if str(r.get("subject") or "").strip() == subject][:shots]
        head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        prompts.append(head + "".join(_mmlu_block(r, True) + "\n\n" for r in same) + _mmlu_block(rec, False))
        _, options, answer = _mmlu(rec)
        choices.append([f" {LETTERS[i]}" for i in range(len(options))])
        answers.append(answer)
    return _task("mmlu", version, tokenizer, prompts, choices, answers, False)


def _arc_choices(rec: Record) -> tuple[list[str], list[str], bool]:
    """(labels, texts, lettered by position) of the variants copies use: {"text": [...], "label": [...]}
    (allenai/ai2_arc), a list of {"text", "label"} (AllenAI's JSONL, also under question.choices), or a plain
    list of texts (labelled A, B, ... here)."""
    question = rec.get("question")
    ch = rec["choices"] if "choices" in rec else question.get("choices") if isinstance(question, dict) else None
    if isinstance(ch, dict) and "text" in ch and "label" in ch:
        labels = texts(rec, "choices.label", "arc", ch["label"], 2)
        options = texts(rec, "choices.text", "arc", ch["text"], 2)
        if len(labels) != len(options):
            raise bad("arc", rec, "choices", f"has {len(options)} texts but {len(labels)} labels")
        return [lab.strip() for lab in labels], options, False
    if isinstance(ch, list) and ch and all(isinstance(c, dict) and "text" in c and "label" in c for c in ch):
        options = texts(rec, "choices", "arc", [c["text"] for c in ch], 2)
        return [str(c["label"]).strip() for c in ch], options, False
    if isinstance(ch, list) and len(ch) <= len(LETTERS):
        options = texts(rec, "choices", "arc", ch, 2)
        return list(LETTERS[:len(options)]), options, True
    raise bad("arc", rec, "choices", 'must be {"text": [...], "label": [...]} or a list of choices, got '
              f"{str(ch)[:60]!r}")


def _arc(rec: Record) -> tuple[str, list[str], list[str], int]:
    """(question, labels, texts, answer index); `answerKey` is one of the labels (A-E or 1-5), or for a plain
    list a letter or a 1-based number."""
    question = rec.get("question")
    if isinstance(question, dict):  # AllenAI's JSONL: {"stem": ..., "choices": [...]}
        stem = question.get("stem")
        if not isinstance(stem, str):
            raise bad("arc", rec, "question.stem", f"must be text, got {str(stem)[:60]!r}")
    else:
        stem = text(rec, "question", "arc")
    labels, options, positional = _arc_choices(rec)
    key = text(rec, "answerKey", "arc").strip()
    if key in labels:
        return stem.strip(), labels, options, labels.index(key)
    if positional and key.isdigit() and 1 <= int(key) <= len(options):
        return stem.strip(), labels, options, int(key) - 1
    raise bad("arc", rec, "answerKey", f"{key!r} is not among the labels {labels}")


def _arc_block(rec: Record, with_answer: bool) -> str:
    question, labels, options, answer = _arc(rec)
    lines = [f"Question: {question}"] + [f"{lab}. {txt}" for lab, txt in zip(labels, options)]
    return "\n".join(lines) + (f"\nAnswer: {labels[answer]}" if with_answer else "\nAnswer:")


def read_arc(path, tokenizer, limit, seed, shots: int = 25):
    evals, pool, version = _load(path, "arc", ("test",), ("train",), ("challenge",), limit, seed)
    head = "".join(_arc_block(r, True) + "\n\n" for r in pool[:shots])
    prompts, choices, answers = [], [], []
    for rec in evals:
        _, labels, _, answer = _arc(rec)
        prompts.append(head + _arc_block(rec, False))
        choices.append([f" {lab}" for lab in labels])
        answers.append(answer)
    return _task("arc", version, tokenizer, prompts, choices, answers, False)


def _hs_clean(text_: str) -> str:
    # lm-eval-harness's HellaSwag preprocessing: drop WikiHow's bracketed artefacts and double spaces.
    text_ = text_.strip().replace(" [title]", ". ")
    text_ = re.sub(r"\[.*?\]", "", text_)
    return text_.replace("  ", " ")


def _hs_query(rec: Record) -> str:
    ctx = f"{text(rec, 'ctx_a', 'hellaswag')} {text(rec, 'ctx_b', 'hellaswag').capitalize()}"
    return _hs_clean(f"{rec.get('activity_label') or ''}: {ctx}")


def _hs_endings(rec: Record) -> tuple[list[str], int]:
    """(endings, label index): `label` an int or a digit string."""
    endings = texts(rec, "endings", "hellaswag", lowest=2)
    return endings, index_answer(rec, "label", "hellaswag", len(endings), False)


def _hs_shot(rec: Record) -> str:
    endings, label = _hs_endings(rec)
    return f"{_hs_query(rec)} {_hs_clean(endings[label])}\n\n"


def read_hellaswag(path, tokenizer, limit, seed, shots: int = 10):
    evals, pool, version = _load(path, "hellaswag", ("validation",), ("train",), (), limit, seed)
    # A pool taken from the evaluated file may hold test-split records, whose label is empty.
    labelled = [r for r in pool if r.get("label") is not None and str(r["label"]).strip() != ""]
    head = "".join(_hs_shot(r) for r in labelled[:shots])
    prompts, choices, answers = [], [], []
    for rec in evals:
        endings, label = _hs_endings(rec)
        prompts.append(head + _hs_query(rec))
        choices.append([" " + _hs_clean(e) for e in endings])
        answers.append(label)
    return _task("hellaswag", version, tokenizer, prompts, choices, answers, True)


def _mc1(rec: Record) -> tuple[list[str], int]:
    """(choices, index of the one true answer) of `mc1_targets` {"choices": [...], "labels": [0/1, ...]}."""
    mc1 = required(rec, "mc1_targets", "truthfulqa")
    if not isinstance(mc1, dict) or "choices" not in mc1 or "labels" not in mc1:
        raise bad("truthfulqa", rec, "mc1_targets", 'must be {"choices": [...], "labels": [...]}')
    options = texts(rec, "mc1_targets.choices", "truthfulqa", mc1["choices"], 2)
    labels = mc1["labels"]
    if (not isinstance(labels, (list, tuple)) or len(labels) != len(options)
            or any(lab not in (0, 1) or isinstance(lab, bool) for lab in labels) or list(labels).count(1) != 1):
        raise bad("truthfulqa", rec, "mc1_targets.labels", f"must be one 0/1 per choice with exactly one 1, "
                  f"got {str(labels)[:60]}")
    return options, list(labels).index(1)


def read_truthfulqa(path, tokenizer, limit, seed):
    evals, _, version = _load(path, "truthfulqa", ("validation",), (), ("multiple",), limit, seed)
    prompts, choices, answers = [], [], []
    for rec in evals:
        options, answer = _mc1(rec)
        prompts.append(f"Q: {text(rec, 'question', 'truthfulqa').strip()}\nA:")
        choices.append([" " + c for c in options])
        answers.append(answer)
    return _task("truthfulqa", version, tokenizer, prompts, choices, answers, True)
