"""The zoo benchmarks: fixed held-out splits of the synthetic language, and how to score them.

Axis names: "item" (one benchmark item), "batch", "seq", "vocab".

Every benchmark is a frozen, versioned `Benchmark` of `Item`s holding token ids. Scoring needs
only a callable ``logits_fn(input_ids[batch, seq]) -> logits[batch, seq, vocab]``, so an
analysis can score an ablated or patched model the same way as the clean one, and gets
per-item scores for a paired bootstrap:

- ``lm``: held-out running text; per item the summed NLL (nats) and token count; summary is
  perplexity = exp(sum NLL / sum tokens).
- ``facts``: multiple choice ("the capital of X is" + 4 single-word choices), scored by the
  log-likelihood of each choice; per item 1.0 if the true choice is the most likely.
- ``needle``: a grid of context lengths x needle depths; teacher-forced exact match of the
  value tokens (argmax at every answer position equals the value token), per item 0/1.
- ``recall``: multi-query associative recall; per item the fraction of queries answered exactly.

Splits are drawn from their own RNG streams (never the training stream, never the training probe's), from
`BENCH_SEED`. Versions (a card records the one it was scored with, and `zoo eval` re-measures with it):

- ``zoo-bench-1``: needle 4 lengths x 5 depths x 8 (40 items per length: 0.9 is 36/40, +-0.09).
- ``zoo-bench-2``: needle 4 lengths x 5 depths x 20 (100 per length); its first 8 items per cell are
  zoo-bench-1's. lm, facts and recall hold the same items in both versions.
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mechhybrid.errors import MechHybridError
from mechhybrid.zoo import language as lang
from mechhybrid.zoo.scoring import Seq, score_sequences
from mechhybrid.zoo.tokenizer import encode_words

__all__ = [
    "BENCHMARK_VERSION", "BENCHMARK_VERSIONS", "NEEDLE_LENGTHS", "NEEDLE_DEPTHS", "NEEDLE_PER_CELL", "CHANCE",
    "Item", "Benchmark", "ItemScores", "get_benchmark", "benchmark_names", "check_version", "score_items",
    "summarize", "by_meta", "LogitsFn",
]

BENCHMARK_VERSIONS = ("zoo-bench-1", "zoo-bench-2")
"""Every version that can be rebuilt, oldest first. Add one when any split, its size or its seed changes."""
BENCHMARK_VERSION = BENCHMARK_VERSIONS[-1]
"""The newest version: what new cards are scored with."""
BENCH_SEED = 20261125
NEEDLE_LENGTHS = (64, 128, 256, 512)
"""Needle context lengths in tokens; 256 is the training context, 512 is twice it."""
NEEDLE_DEPTHS = (0.1, 0.3, 0.5, 0.7, 0.9)
"""Relative needle depths within the filler."""
NEEDLE_PER_CELL = {"zoo-bench-1": 8, "zoo-bench-2": 20}
"""Needle items per (context length, depth) cell, per version."""
CHANCE = {"facts": 0.25, "needle": 0.01, "recall": 0.01}
"""Accuracy of guessing: 1 of 4 choices; 1 of 100 two-digit values (needle, recall). lm has none."""
LM_DOCS, LM_LEN = 64, 256
RECALL_DOCS, RECALL_PAIRS = 100, 8
FACT_CHOICES = 4

LogitsFn = Callable[["torch.Tensor"], "torch.Tensor"]  # noqa: F821 (torch imported lazily)


@dataclass(frozen=True)
class Item:
    """One benchmark item, as token ids."""

    input_ids: tuple[int, ...]
    """The full sequence fed to the model (answers included: scoring is teacher-forced)."""
    answer_spans: tuple[tuple[int, int], ...] = ()
    """[start, end) positions of answer tokens in input_ids (needle, recall)."""
    choices: tuple[tuple[int, ...], ...] = ()
    """Multiple choice continuations (facts); each is appended to input_ids when scored."""
    correct: int = -1
    """Index of the true choice (facts)."""
    meta: tuple[tuple[str, object], ...] = ()
    """Grid coordinates and labels, e.g. (("context_len", 256), ("depth", 0.5))."""

    def meta_dict(self) -> dict:
        return dict(self.meta)


@dataclass(frozen=True)
class Benchmark:
    """A documented, versioned held-out split."""

    name: str
    """'lm', 'facts', 'needle' or 'recall'."""
    version: str
    """BENCHMARK_VERSION plus the language version the items were generated with."""
    metric: str
    """'perplexity', 'accuracy' or 'exact_match'."""
    description: str
    """What the items are and how they are scored."""
    items: tuple[Item, ...] = field(repr=False)
    """The items, in a fixed order (per-item scores follow it)."""
    chance: float | None = None
    """Score of guessing uniformly (CHANCE), None where the metric has no chance level (perplexity)."""

    def __post_init__(self):
        if not self.items:
            raise ValueError(f"benchmark {self.name} has no items")


@dataclass(frozen=True)
class ItemScores:
    """Per-item scores of one benchmark under one logits function."""

    values: np.ndarray
    """[item] float64: NLL sum (lm), correctness (facts, needle) or fraction correct (recall)."""
    weights: np.ndarray
    """[item] float64: token counts (lm) or ones: the weights `summarize` averages with."""

    def __post_init__(self):
        if self.values.shape != self.weights.shape or self.values.ndim != 1:
            raise ValueError(f"values {self.values.shape} and weights {self.weights.shape} must be equal [item]")


def _ids(words) -> tuple[int, ...]:
    return tuple(encode_words(words))


def _lm(version: str) -> Benchmark:
    items = []
    for i in range(LM_DOCS):
        doc = lang.text_doc(lang.doc_rng(BENCH_SEED, "bench-lm", i), LM_LEN)
        items.append(Item(_ids(doc.words)))
    return Benchmark("lm", _label(version), "perplexity",
                     f"{LM_DOCS} held-out running-text documents of <= {LM_LEN} tokens; perplexity over "
                     "all predicted tokens (every token after <bos>).", tuple(items))


def _facts(version: str) -> Benchmark:
    items = []
    rng = random.Random(f"{BENCH_SEED}/bench-facts")
    for relation, column in (("capital", 1), ("language", 2)):
        options = sorted({row[column] for row in lang.FACTS})
        for row in lang.FACTS:
            wrong = rng.sample([o for o in options if o != row[column]], FACT_CHOICES - 1)
            choices = wrong + [row[column]]
            rng.shuffle(choices)
            prompt = ["<bos>", "the", relation, "of", row[0], "is"]
            items.append(Item(_ids(prompt), choices=tuple(_ids([c]) for c in choices),
                              correct=choices.index(row[column]),
                              meta=(("relation", relation), ("country", row[0]))))
    return Benchmark("facts", _label(version), "accuracy",
                     f"{len(items)} world facts ('the capital|language of X is'), {FACT_CHOICES} choices, "
                     f"chance {CHANCE['facts']:.2f}; scored by choice log-likelihood.", tuple(items),
                     CHANCE["facts"])


def _needle(version: str) -> Benchmark:
    per_cell = NEEDLE_PER_CELL[version]
    items = []
    for length in NEEDLE_LENGTHS:
        for depth in NEEDLE_DEPTHS:
            for k in range(per_cell):
                doc = lang.needle_doc(lang.doc_rng(BENCH_SEED, f"bench-needle/{length}/{depth}", k), length, depth)
                items.append(Item(_ids(doc.words), doc.answer_spans,
                                  meta=(("context_len", length), ("depth", depth),
                                        ("needle_start", doc.needle_span[0]))))
    per_length = len(NEEDLE_DEPTHS) * per_cell
    return Benchmark("needle", _label(version), "exact_match",
                     f"needle in filler text: context lengths {NEEDLE_LENGTHS} x depths {NEEDLE_DEPTHS} x "
                     f"{per_cell} ({per_length} per length); exact match of the 2 value tokens (teacher-forced "
                     f"argmax), chance {CHANCE['needle']:.2f}.", tuple(items), CHANCE["needle"])


def _recall(version: str) -> Benchmark:
    items = []
    for i in range(RECALL_DOCS):
        doc = lang.recall_doc(lang.doc_rng(BENCH_SEED, "bench-recall", i), RECALL_PAIRS, RECALL_PAIRS)
        items.append(Item(_ids(doc.words), doc.answer_spans))
    return Benchmark("recall", _label(version), "exact_match",
                     f"{RECALL_DOCS} associative-recall documents, {RECALL_PAIRS} key-value pairs, every key "
                     "queried once; per item the fraction of queries whose 2 value tokens are exact, chance "
                     f"{CHANCE['recall']:.2f}.", tuple(items), CHANCE["recall"])


def _label(version: str) -> str:
    return f"{version}/{lang.LANGUAGE_VERSION}"


_BUILDERS = {"lm": _lm, "facts": _facts, "needle": _needle, "recall": _recall}


def benchmark_names() -> list[str]:
    """Names of the zoo benchmarks, in card order."""
    return list(_BUILDERS)


def check_version(version: str) -> str:
    """`version` if it can be rebuilt; MechHybridError naming the known versions otherwise."""
    if version not in BENCHMARK_VERSIONS:
        raise MechHybridError(f"unknown zoo benchmark version {version!r}; known: {', '.join(BENCHMARK_VERSIONS)}")
    return version


def get_benchmark(name: str, version: str = BENCHMARK_VERSION) -> Benchmark:
    """The benchmark `name` of `version` (built once per process; deterministic)."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown zoo benchmark {name!r}; known: {', '.join(_BUILDERS)}")
    return _build(name, check_version(version))


@functools.lru_cache(maxsize=None)
def _build(name: str, version: str) -> Benchmark:
    return _BUILDERS[name](version)


def _sequences(bench: Benchmark) -> list[Seq]:
    """The benchmark as scored sequences: lm scores every token after the first, facts one sequence per
    (item, choice) scoring the choice's tokens, needle and recall the answer spans."""
    if bench.name == "lm":
        return [Seq(it.input_ids, ((1, len(it.input_ids)),)) for it in bench.items]
    if bench.name == "facts":
        return [Seq(it.input_ids + ch, ((len(it.input_ids), len(it.input_ids) + len(ch)),))
                for it in bench.items for ch in it.choices]
    return [Seq(it.input_ids, it.answer_spans) for it in bench.items]


def score_items(bench: Benchmark, logits_fn: LogitsFn, batch_size: int = 16) -> ItemScores:
    """Per-item scores of `bench` under `logits_fn` (see the module docstring for each metric), through the
    shared teacher-forced scorer (mechhybrid.zoo.scoring) in float64."""
    import torch

    stats = score_sequences(_sequences(bench), logits_fn, batch_size, dtype=torch.float64).take(0)
    n = len(bench.items)
    values, weights = np.zeros(n), np.ones(n)
    if bench.name == "lm":
        values, weights = -stats.logp[0], stats.n_tok[0].copy()
    elif bench.name == "facts":
        cursor = 0
        for i, it in enumerate(bench.items):
            lls = stats.logp[0][cursor:cursor + len(it.choices)]
            cursor += len(it.choices)
            values[i] = float(int(np.argmax(lls)) == it.correct)
    else:
        cursor = 0
        for i, it in enumerate(bench.items):
            values[i] = float(np.mean(stats.exact[0][cursor:cursor + len(it.answer_spans)]))
            cursor += len(it.answer_spans)
    return ItemScores(values, weights)


def summarize(bench: Benchmark, scores: ItemScores) -> float:
    """One number: perplexity for `lm`, weighted mean accuracy otherwise."""
    total = float(np.sum(scores.values * (1 if bench.name == "lm" else scores.weights)))
    mean = total / float(np.sum(scores.weights))
    return math.exp(mean) if bench.name == "lm" else mean


def by_meta(bench: Benchmark, scores: ItemScores, key: str) -> dict:
    """Mean score per value of an item's meta `key` (e.g. needle accuracy per context length)."""
    groups: dict = {}
    for it, v in zip(bench.items, scores.values):
        groups.setdefault(it.meta_dict()[key], []).append(v)
    return {k: float(np.mean(v)) for k, v in sorted(groups.items())}
