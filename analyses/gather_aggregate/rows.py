"""Gather and Aggregate scores and ablation scores -> Result rows.

- `scores`: per head (coords layer, head) and prompt kind (coord benchmark: needle, recall, facts, or `all`
  pooled), metrics `gather`, `aggregate`, `aggregate_answer`, mean over prompts with a bootstrap CI;
- `uniform`: per attention layer and prompt kind, the same metrics under uniform attention (the baseline the
  candidates' `min_lift` is measured against), no CI: they depend on the prompts only;
- per head set (coords removal = candidate | random, head_role, k, trial, layer and head for one head) and zoo
  benchmark: `acc:<benchmark>` with a bootstrap CI and, against the baseline on the same items,
  `drop:<benchmark>` with a paired bootstrap CI.
"""

from __future__ import annotations

import numpy as np

from ..schema import Row
from ..stats import bootstrap_mean_ci, paired_bootstrap_diff
from .ablation import HeadSet
from .scores import METRICS, HeadScores

__all__ = ["score_rows", "uniform_rows", "ablation_rows", "POOLED"]

POOLED = "all"
"""The benchmark coordinate of scores pooled over every prompt kind."""


def _kinds(scores: HeadScores) -> list[tuple[str, np.ndarray]]:
    """(prompt kind, its prompt indices), each kind then every prompt pooled."""
    kinds = np.asarray(scores.kinds)
    out = [(k, np.flatnonzero(kinds == k)) for k in dict.fromkeys(scores.kinds)]
    return out + [(POOLED, np.arange(len(kinds)))]


def score_rows(scores: HeadScores, seed: int) -> list[Row]:
    rows = []
    for kind, idx in _kinds(scores):
        for metric in METRICS:
            table = scores.values[metric][idx]  # [prompt, head]
            for i, (layer, head) in enumerate(scores.heads):
                mean, lo, hi = bootstrap_mean_ci(table[:, i], seed)
                rows.append(Row("scores", "none", metric, mean, lo, hi, n=len(idx), seed=seed,
                                coords={"layer": layer, "head": head, "benchmark": kind}))
    return rows


def uniform_rows(scores: HeadScores, seed: int) -> list[Row]:
    rows = []
    first = {}
    for i, (layer, _) in enumerate(scores.heads):
        first.setdefault(layer, i)  # every head of a layer sees the same keys
    for kind, idx in _kinds(scores):
        for metric in METRICS:
            for layer, i in first.items():
                rows.append(Row("uniform", "none", metric, float(scores.uniform[metric][idx, i].mean()),
                                n=len(idx), seed=seed, coords={"layer": layer, "benchmark": kind}))
    return rows


def ablation_rows(sets: list[HeadSet], correct: dict[str, dict[str, np.ndarray]], seed: int) -> list[Row]:
    """`correct`: benchmark -> head-set name -> per-item correctness."""
    rows = []
    for bench, per_set in correct.items():
        base = per_set["baseline"]
        for s in sets:
            values = per_set[s.name]
            method = "none" if s.name == "baseline" else "zero"
            acc, lo, hi = bootstrap_mean_ci(values, seed)
            rows.append(Row(s.name, method, f"acc:{bench}", acc, lo, hi, n=len(values), seed=seed, coords=s.coords))
            if s.name != "baseline":
                drop, lo, hi = paired_bootstrap_diff(base, values, seed)
                rows.append(Row(s.name, method, f"drop:{bench}", drop, lo, hi, n=len(values), seed=seed,
                                coords=s.coords))
    return rows
