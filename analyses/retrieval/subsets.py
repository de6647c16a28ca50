"""The random control of the head-sparsification curve: at each k, k query heads kept per attention layer,
chosen at random instead of by their attention (`selection` = `random`).

Each trial is one choice of heads, the same at every token (`KeepHeads`). A layer of n heads has C(n, k)
k-subsets. When no attention layer has more than `cap` of them (RetrievalConfig.random_head_subsets_max), the
trials enumerate them instead of sampling: trial t keeps, in the first attention layer, its t-th k-subset in
lexicographic order and, in every other layer, the t-th of a seeded shuffle of that layer's own k-subsets. Every
k-subset of every layer is then kept in exactly one trial (a layer with fewer subsets than there are trials
takes its own in turn), and which subsets of two layers share a trial is drawn rather than aligned by head
index: enumerating every combination across layers would grow as C(n, k) to the power of the layers. Otherwise
there are `cap` trials, each drawing every layer's k heads at random. A layer with at most k heads keeps them
all. Everything is seeded: the same seed gives the same trials.

Rows: every trial's rows carry its `trial`; per k the analysis adds the trials pooled (each prompt's score
averaged over the trials, its accuracy and retention with a bootstrap over prompts: what k95 reads) and the
median, minimum and maximum over the trials of every whole-grid accuracy and retention (coordinate
`statistic`, n = trials: what the k-curve's band draws).
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np

from mechhybrid.interventions import KeepHeads

from ..schema import Row
from ..stats import bootstrap_mean_ci, paired_ratio_ci
from .conditions import Condition
from .scorers import SCORERS

__all__ = ["SELECTION", "STATISTICS", "head_subsets", "random_conditions", "random_summary_rows"]

SELECTION = "random"
"""The `selection` coordinate of the random control."""
STATISTICS = ("median", "min", "max")
"""The `statistic` coordinate of the rows that summarise a k's trials."""


def _combinations(n: int, k: int) -> list[tuple[int, ...]]:
    return list(itertools.combinations(range(n), min(k, n)))


def head_subsets(layers: list, k: int, cap: int, seed: int) -> list[dict[int, tuple[int, ...]]]:
    """The trials at `k`: per trial, attention layer -> the heads it keeps (`layers`: Components with
    `n_heads`)."""
    most = max(math.comb(c.n_heads, min(k, c.n_heads)) for c in layers)
    if most <= cap:
        per_layer = {}
        for i, c in enumerate(layers):
            subsets = _combinations(c.n_heads, k)
            if i:
                random.Random(f"retrieval-random-heads/{seed}/k{k}/layer{c.layer}").shuffle(subsets)
            per_layer[c.layer] = subsets
        return [{layer: subsets[t % len(subsets)] for layer, subsets in per_layer.items()} for t in range(most)]
    rng = random.Random(f"retrieval-random-heads/{seed}/k{k}")
    return [{c.layer: tuple(sorted(rng.sample(range(c.n_heads), min(k, c.n_heads)))) for c in layers}
            for _ in range(cap)]


def random_conditions(layers: list, ks, phase: str, n_heads: int, cap: int, seed: int) -> list[Condition]:
    """The random control's trials in `phase`, for every k of `ks` (`n_heads`: the widest layer's heads, the
    denominator of `heads_fraction` as for the other selections)."""
    by_layer = {c.layer: c for c in layers}
    conds = []
    for k in ks:
        for trial, subset in enumerate(head_subsets(layers, k, cap, seed)):
            interventions = tuple(KeepHeads(by_layer[layer], heads=list(heads)) for layer, heads in subset.items())
            conds.append(Condition(f"heads:{SELECTION}:{phase}:k{k}:t{trial}", "keep_heads", interventions, phase,
                                   {"selection": SELECTION, "phase": phase, "k": k, "trial": trial,
                                    "heads_fraction": k / n_heads}))
    return conds


def _trials(conds: list[Condition]) -> dict[tuple[str, int], list[Condition]]:
    """(phase, k) -> the random control's trial conditions there, in trial order."""
    out: dict[tuple[str, int], list[Condition]] = {}
    for cond in conds:
        if cond.method == "keep_heads" and cond.coords.get("selection") == SELECTION:
            out.setdefault((cond.coords["phase"], cond.coords["k"]), []).append(cond)
    return out


def random_summary_rows(conds: list[Condition], scores: dict, rows: list[Row], seed: int) -> list[Row]:
    """Per (phase, k) of the random control: its trials pooled (`acc:<scorer>`, `retention:<scorer>` for every
    scorer) and the median / min / max over the trials of every whole-grid accuracy and retention in `rows`."""
    base = scores.get("baseline")
    whole: dict[str, list[Row]] = {}
    for r in rows:
        if r.coords.get("selection") == SELECTION and "trial" in r.coords and "context_length" not in r.coords:
            whole.setdefault(r.condition, []).append(r)
    out = []
    for (phase, k), trials in sorted(_trials(conds).items()):
        name = f"heads:{SELECTION}:{phase}:k{k}"
        coords = {key: v for key, v in trials[0].coords.items() if key != "trial"}
        ran = [c for c in trials if c.name in scores]
        if ran:
            for scorer in SCORERS:
                pooled = np.mean([np.asarray(scores[c.name][scorer]) for c in ran], axis=0)  # [prompt]
                acc, lo, hi = bootstrap_mean_ci(pooled, seed)
                out.append(Row(name, "keep_heads", f"acc:{scorer}", acc, lo, hi, n=len(pooled), seed=seed,
                               coords=coords))
                if base is not None:
                    kept, lo, hi = paired_ratio_ci(pooled, np.asarray(base[scorer]), seed)
                    out.append(Row(name, "keep_heads", f"retention:{scorer}", kept, lo, hi, n=len(pooled),
                                   seed=seed, coords=coords))
        by_metric: dict[str, list[float]] = {}
        for cond in trials:
            for r in whole.get(cond.name, []):
                if r.metric.split(":")[0] in ("acc", "retention") and r.value is not None:
                    by_metric.setdefault(r.metric, []).append(r.value)
        for metric, values in by_metric.items():
            for statistic, value in zip(STATISTICS, (np.median(values), min(values), max(values))):
                out.append(Row(name, "keep_heads", metric, float(value), n=len(values), seed=seed,
                               coords={**coords, "statistic": statistic}))
    return out
