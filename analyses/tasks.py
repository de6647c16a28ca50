"""Benchmarks as analyses consume them: token ids, what is scored, and how a score is reduced.

One shape for every source (the zoo's synthetic language, Study A's real data sets): each task turns into
`Seq`s (ids + where the scored span starts) whose per-sequence log-likelihoods come from one batched
forward per intervention set (analyses/scoring.py, through mechhybrid.zoo.scoring, the scorer the zoo's cards
use too), then reduces them to per-item scores.

Axis names: "set" (one intervention set), "seq" (one scored token sequence), "item" (one benchmark item,
one or several seqs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from mechhybrid.zoo.scoring import LOSS_CLAMP, Seq, SeqScores

__all__ = ["Seq", "SeqScores", "LMTask", "ChoiceItem", "ChoiceTask", "SpanItem", "SpanTask",
           "GenItem", "GenTask", "Task", "LOSS_CLAMP", "fit_to", "items_by"]


@dataclass(frozen=True)
class LMTask:
    """Perplexity on documents (each token after the first is scored, loss clamped at LOSS_CLAMP)."""

    name: str
    version: str
    docs: tuple[tuple[int, ...], ...]
    kind = "lm"

    def sequences(self) -> list[Seq]:
        return [Seq(tuple(d), ((1, len(d)),)) for d in self.docs]

    def reduce(self, s: SeqScores) -> dict[str, np.ndarray]:
        """Per-document totals [item]: clamped loss, tokens, clamped tokens."""
        return {"nll": s.nll_clamped[0], "tok": s.n_tok[0], "clamped": s.n_clamped[0]}

    def truncated(self, n_tokens: int) -> "LMTask":
        """The same documents cut to their first n_tokens (context-length stress); shorter ones dropped."""
        docs = tuple(d[:n_tokens] for d in self.docs if len(d) >= n_tokens)
        return LMTask(self.name, self.version, docs)

    @property
    def n(self) -> int:
        return len(self.docs)


@dataclass(frozen=True)
class ChoiceItem:
    context: tuple[int, ...]
    choices: tuple[tuple[int, ...], ...]
    answer: int
    meta: tuple[tuple[str, object], ...] = field(default=(), compare=False, repr=False)
    """Labels of the item (see SpanItem.meta), e.g. a zoo fact's relation and country."""


@dataclass(frozen=True)
class ChoiceTask:
    """Multiple choice by log-likelihood of each continuation; optionally divided by its token count
    (Study A's length normalisation for HellaSwag and TruthfulQA)."""

    name: str
    version: str
    items: tuple[ChoiceItem, ...]
    length_norm: bool = False
    kind = "acc"

    def sequences(self) -> list[Seq]:
        return [Seq(tuple(it.context) + tuple(c), ((len(it.context), len(it.context) + len(c)),))
                for it in self.items for c in it.choices]

    def reduce(self, s: SeqScores) -> dict[str, np.ndarray]:
        score = s.logp[0] / s.n_tok[0] if self.length_norm else s.logp[0]
        correct, k = [], 0
        for it in self.items:
            n = len(it.choices)
            correct.append(float(int(np.argmax(score[k:k + n])) == it.answer))
            k += n
        return {"correct": np.asarray(correct)}

    @property
    def n(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class SpanItem:
    ids: tuple[int, ...]
    """The whole sequence, answers included (teacher forced)."""
    spans: tuple[tuple[int, int], ...]
    """[start, end) positions of each answer."""
    meta: tuple[tuple[str, object], ...] = field(default=(), compare=False, repr=False)
    """Labels of the item, e.g. (("context_len", 256), ("depth", 0.5)) for a needle: what an analysis can break
    its scores down by (`items_by`). Not part of what is scored, so not of the score cache's key (repr)."""


@dataclass(frozen=True)
class SpanTask:
    """Exact match of answer spans as greedy (argmax) predictions, teacher forced: one forward per item,
    equal to greedy decoding of an answer as long as its earlier tokens were right. An item scores the
    fraction of its spans that are exact (needle: one span; associative recall: one per query)."""

    name: str
    version: str
    items: tuple[SpanItem, ...]
    kind = "acc"

    def sequences(self) -> list[Seq]:
        return [Seq(tuple(it.ids), tuple(it.spans)) for it in self.items]

    def reduce(self, s: SeqScores) -> dict[str, np.ndarray]:
        exact, out, k = s.exact[0], [], 0
        for it in self.items:
            out.append(float(np.mean(exact[k:k + len(it.spans)])))
            k += len(it.spans)
        return {"correct": np.asarray(out)}

    @property
    def n(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class GenItem:
    prompt: tuple[int, ...]
    answer: str
    meta: tuple[tuple[str, object], ...] = field(default=(), compare=False, repr=False)
    """Labels of the item (see SpanItem.meta)."""


@dataclass(frozen=True)
class GenTask:
    """Greedy generation scored by exact match of the extracted answer (GSM8K: the number after '####')."""

    name: str
    version: str
    items: tuple[GenItem, ...]
    max_new_tokens: int = 128
    extract: str = "gsm8k"
    kind = "gen"
    tokenizer: object = field(default=None, compare=False, repr=False)

    @property
    def n(self) -> int:
        return len(self.items)


Task = LMTask | ChoiceTask | SpanTask | GenTask


def fit_to(task, max_len: int):
    """(task, items cut): multiple-choice contexts and generation prompts left-truncated so that every
    sequence fits max_len tokens; lm windows and answer spans are left as they are."""
    if isinstance(task, ChoiceTask):
        items, cut = [], 0
        for it in task.items:
            room = max_len - max(len(c) for c in it.choices)
            cut += len(it.context) > room
            cut_item = dataclasses.replace(it, context=tuple(it.context[-room:]))
            items.append(cut_item if len(it.context) > room else it)
        return dataclasses.replace(task, items=tuple(items)), cut
    if isinstance(task, GenTask):
        room = max_len - task.max_new_tokens
        cut = sum(len(it.prompt) > room for it in task.items)
        items = tuple(dataclasses.replace(it, prompt=tuple(it.prompt[-room:])) if len(it.prompt) > room else it
                      for it in task.items)
        return dataclasses.replace(task, items=items), cut
    return task, 0


def items_by(task, key: str) -> dict[object, list[int]]:
    """{value of the item label `key`: indices of the items that carry it}, values in first-seen order: how an
    analysis breaks per-item scores (a `reduce` output) down, e.g. needle accuracy per context length. Items
    without the label are left out; a task whose items carry no labels (an lm task) gives {}."""
    out: dict[object, list[int]] = {}
    for i, item in enumerate(getattr(task, "items", ())):
        labels = dict(item.meta)
        if key in labels:
            out.setdefault(labels[key], []).append(i)
    return out
