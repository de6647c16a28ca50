"""Per-item scores -> result rows: accuracies, drops with paired bootstrap CIs, perplexities and ratios."""

from __future__ import annotations

import numpy as np

from ..schema import Row
from ..stats import (bootstrap_mean_ci, geometric_mean, median, paired_bootstrap_diff, ppl_from_nll,
                     ppl_ratio_ci)

__all__ = ["score_rows", "resilience_summary_rows"]


def _lm_rows(name: str, method: str, s: dict, base: dict | None, seed: int, coords: dict) -> list[Row]:
    n = len(s["nll"])
    rows = [Row(name, method, "ppl", ppl_from_nll(s["nll"], s["tok"]), n=n, seed=seed, coords=coords),
            # Study A clamps the per-token loss at 20; the share of tokens that hit the clamp says how much
            # the reported perplexity understates the damage.
            Row(name, method, "clamp_frac", float(np.sum(s["clamped"]) / np.sum(s["tok"])), n=n, seed=seed,
                coords=coords)]
    if base is not None:
        ratio, lo, hi = ppl_ratio_ci(base["nll"], base["tok"], s["nll"], s["tok"], seed)
        rows.append(Row(name, method, "ppl_ratio", ratio, lo, hi, n=n, seed=seed, coords=coords))
    return rows


def _acc_rows(name: str, method: str, bench: str, s: dict, base: dict | None, seed: int, coords: dict) -> list[Row]:
    correct = s["correct"]
    n = len(correct)
    acc, lo, hi = bootstrap_mean_ci(correct, seed)
    rows = [Row(name, method, f"acc:{bench}", acc, lo, hi, n=n, seed=seed, coords=coords)]
    if base is not None:
        drop, lo, hi = paired_bootstrap_diff(base["correct"], correct, seed)
        rows.append(Row(name, method, f"drop:{bench}", drop, lo, hi, n=n, seed=seed, coords=coords))
    return rows


def score_rows(name: str, method: str, bench: str, kind: str, s: dict, base: dict | None, seed: int,
               coords: dict) -> list[Row]:
    """Rows of one condition on one benchmark, each with the condition's `coords`; `base` is the baseline's
    scores on the same items (None for the baseline itself)."""
    if kind == "lm":
        return _lm_rows(name, method, s, base, seed, coords)
    return _acc_rows(name, method, bench, s, base, seed, coords)


def resilience_summary_rows(k: int, trials: list[dict], base: dict, seed: int) -> list[Row]:
    """`resilience:<k>:summary`: median and geometric mean over trials, never an arithmetic mean alone
    (Study A's Transformer mean was dominated by one outlier trial)."""
    ppl = [ppl_from_nll(s["nll"], s["tok"]) for s in trials]
    base_ppl = ppl_from_nll(base["nll"], base["tok"])
    ratio = [p / base_ppl for p in ppl]
    name, n = f"resilience:{k}:summary", len(trials)
    coords = {"removal": "resilience", "n_removed": k}  # no trial: a statistic over all of them
    return [Row(name, "skip", metric, value, n=n, seed=seed, coords=coords) for metric, value in (
        ("ppl_median", median(ppl)), ("ppl_geomean", geometric_mean(ppl)),
        ("ppl_ratio_median", median(ratio)), ("ppl_ratio_geomean", geometric_mean(ratio)))]
