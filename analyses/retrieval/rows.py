"""Per-prompt retrieval scores -> result rows.

Per condition: every scorer's accuracy over the whole grid (`acc:<scorer>`, bootstrap CI) and its drop from the
baseline on the same prompts (`drop:<scorer>`, paired bootstrap); for the chosen scorer, the accuracy per
context length and per (length, depth) cell, with those as coordinates, for the grids and curves.
"""

from __future__ import annotations

import numpy as np

from ..schema import Row
from ..stats import bootstrap_mean_ci, paired_bootstrap_diff
from .conditions import Condition
from .prompts import NeedlePrompt
from .scorers import SCORERS

__all__ = ["condition_rows"]


def _groups(prompts: list[NeedlePrompt], key) -> dict:
    out: dict = {}
    for i, p in enumerate(prompts):
        out.setdefault(key(p), []).append(i)
    return out


def condition_rows(cond: Condition, prompts: list[NeedlePrompt], scores: dict, base: dict | None, scorer: str,
                   seed: int) -> list[Row]:
    rows = []
    method, coords = cond.method, dict(cond.coords)
    for name in SCORERS:
        values = np.asarray(scores[name])
        acc, lo, hi = bootstrap_mean_ci(values, seed)
        rows.append(Row(cond.name, method, f"acc:{name}", acc, lo, hi, n=len(values), seed=seed, coords=coords))
        if base is not None and cond.name != cond.baseline_name:
            drop, lo, hi = paired_bootstrap_diff(np.asarray(base[name]), values, seed)
            rows.append(Row(cond.name, method, f"drop:{name}", drop, lo, hi, n=len(values), seed=seed,
                            coords=coords))
    values = np.asarray(scores[scorer])
    for length, idx in sorted(_groups(prompts, lambda p: p.context_length).items()):
        acc, lo, hi = bootstrap_mean_ci(values[idx], seed)
        rows.append(Row(cond.name, method, f"acc:{scorer}", acc, lo, hi, n=len(idx), seed=seed,
                        coords={**coords, "context_length": length}))
    for (length, depth), idx in sorted(_groups(prompts, lambda p: (p.context_length, p.depth)).items()):
        acc, lo, hi = bootstrap_mean_ci(values[idx], seed)
        rows.append(Row(cond.name, method, f"acc:{scorer}", acc, lo, hi, n=len(idx), seed=seed,
                        coords={**coords, "context_length": length, "depth": depth}))
    return rows
