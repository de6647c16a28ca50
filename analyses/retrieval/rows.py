"""Per-prompt retrieval scores -> result rows.

Per condition: every scorer's accuracy over the whole grid (`acc:<scorer>`, bootstrap CI) and its drop from the
baseline on the same prompts (`drop:<scorer>`, paired bootstrap); for the chosen scorer, the accuracy per
context length and per (length, depth) cell, with those as coordinates, for the grids and curves.
"""

from __future__ import annotations

import numpy as np

from ..schema import Row
from ..stats import bootstrap_mean_ci, paired_bootstrap_diff, paired_ratio_ci
from .conditions import Condition
from .prompts import NeedlePrompt
from .scorers import SCORERS

__all__ = ["condition_rows", "k95_rows", "RETAINED"]

RETAINED = 0.95
"""The retention a head budget must reach (the upper end of its bootstrap interval) to keep retrieval."""


def _groups(prompts: list[NeedlePrompt], key) -> dict:
    out: dict = {}
    for i, p in enumerate(prompts):
        out.setdefault(key(p), []).append(i)
    return out


def condition_rows(cond: Condition, prompts: list[NeedlePrompt], scores: dict, base: dict | None, scorer: str,
                   seed: int, cells: bool = True) -> list[Row]:
    """The rows of one condition; without `cells`, the whole grid's only (no row per length or cell)."""
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
            if method == "keep_heads":
                kept, lo, hi = paired_ratio_ci(values, np.asarray(base[name]), seed)
                rows.append(Row(cond.name, method, f"retention:{name}", kept, lo, hi, n=len(values), seed=seed,
                                coords=coords))
    if not cells:
        return rows
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


def k95_rows(rows: list[Row], scorer: str, chance: float | None, seed: int, notes: list[str]) -> list[Row]:
    """Per (selection, phase) of the head curve: the smallest k whose retention interval reaches RETAINED
    (`heads:<selection>:<phase>:k95`, metric `k95:<scorer>`; null when no k does). The random selection is read
    from its trials pooled per k (rows without a `trial` or `statistic`). Where the baseline's interval reaches
    down to chance there is nothing to retain: no k is drawn and a note says so."""
    base = next((r for r in rows if r.condition == "baseline" and r.metric == f"acc:{scorer}"
                 and "context_length" not in r.coords), None)
    curves: dict[tuple, list[Row]] = {}
    for r in rows:
        if (r.method == "keep_heads" and r.metric == f"retention:{scorer}" and "trial" not in r.coords
                and "statistic" not in r.coords):
            curves.setdefault((r.coords["selection"], r.coords["phase"]), []).append(r)
    out = []
    for (selection, phase), curve in sorted(curves.items()):
        k = None
        if base is not None and chance is not None and base.ci_low is not None and base.ci_low <= chance:
            notes.append(f"head curve {selection}/{phase}: the baseline's {scorer} accuracy "
                         f"{base.value:.2f} [{base.ci_low:.2f}, {base.ci_high:.2f}] reaches chance ({chance}); "
                         "no k is drawn")
        else:
            k = next((r.coords["k"] for r in sorted(curve, key=lambda r: r.coords["k"])
                      if r.ci_high is not None and r.ci_high >= RETAINED), None)
        out.append(Row(f"heads:{selection}:{phase}:k95", "keep_heads", f"k95:{scorer}", k, n=len(curve), seed=seed,
                       coords={"selection": selection, "phase": phase}))
    return out
