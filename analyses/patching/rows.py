"""Sweeps and agreements -> result rows (docs/patching.md lists them).

- the exact entries: one row per (task, direction, site, position), method `patch`, metric `logit_diff`
  (normalised: 0 = the corrupted run, 1 = the clean run), its 95% bootstrap interval over pairs where the
  analysis swept every pair on its own, n = pairs;
- the unpatched runs: per task, the clean and corrupted runs' mean raw logit difference (`logit_diff_raw`);
- attribution: the estimates (method `attribution`, the same coordinates plus `estimator`), and per (task, site
  set, direction, estimator) its `spearman` with the exact entries, `spearman_effects` (the same over the entries
  whose exact effect is at least EFFECT_FLOOR; n = how many), its `top_k_overlap`, and one `top_k_missed` row per
  exact top-k entry outside its top k (value: the exact entry).

Coordinates: `layer`, `kind` (a residual site has none), `head`, `position`; and this analysis' own: `task`,
`direction`, `site` (the sweep's label), `site_set`, `token` (the first pair's clean token there, with its
corrupted token after an arrow where they differ), `estimator`.
"""

from __future__ import annotations

import math

from ..schema import Row
from .attribution import Agreement
from .pairs import PairSet
from .sweeps import SetSweep, SiteInfo

__all__ = ["METRIC", "token_labels", "entry_rows", "baseline_rows", "estimate_rows", "agreement_rows"]

METRIC = "logit_diff"
"""The normalised logit difference of every entry (and estimate)."""


def token_labels(pairs: PairSet, positions) -> dict[int, str]:
    """position -> the first pair's clean token there (`clean→corrupted` where the pair differs)."""
    clean, corrupted = pairs.clean_text[0], pairs.corrupted_text[0]
    return {p: clean[p] if clean[p] == corrupted[p] else f"{clean[p]}→{corrupted[p]}" for p in positions}


def _site_coords(info: SiteInfo) -> dict:
    coords = {"layer": info.layer, "site": info.label}
    if info.kind is not None:
        coords["kind"] = info.kind
    if info.head is not None:
        coords["head"] = info.head
    return coords


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def _entry(sweep: SetSweep, tokens: dict, method: str, i: int, j: int, value, low, high, seed: int,
           extra: dict) -> Row:
    info, position = sweep.sites[i], sweep.positions[j]
    coords = {**_site_coords(info), "position": position, "task": sweep.task, "direction": sweep.direction,
              "site_set": sweep.site_set, "token": tokens[position], **extra}
    low, high = _finite(low), _finite(high)
    if low is None or high is None:
        low = high = None
    name = f"{sweep.task}:{sweep.direction}:{info.label}:{position}"
    if "estimator" in extra:
        name += f":{extra['estimator']}"
    return Row(name, method, METRIC, _finite(value), low, high, n=sweep.n, seed=seed, coords=coords)


def entry_rows(sweep: SetSweep, tokens: dict, seed: int) -> list[Row]:
    """One row per site and position of an exact sweep."""
    rows = []
    for i in range(len(sweep.sites)):
        for j in range(len(sweep.positions)):
            low = None if sweep.ci_low is None else sweep.ci_low[i, j]
            high = None if sweep.ci_high is None else sweep.ci_high[i, j]
            rows.append(_entry(sweep, tokens, "patch", i, j, sweep.values[i, j], low, high, seed, {}))
    return rows


def baseline_rows(sweep: SetSweep, seed: int) -> list[Row]:
    """The clean and corrupted runs' mean raw logit difference of a task (the normalisation's ends)."""
    return [Row(f"{sweep.task}:{run}", "none", f"{METRIC}_raw", _finite(value), n=sweep.n, seed=seed,
                coords={"task": sweep.task, "run": run})
            for run, value in (("clean", sweep.clean), ("corrupted", sweep.corrupted))]


def estimate_rows(sweep: SetSweep, estimates, estimator: str, tokens: dict, seed: int) -> list[Row]:
    """One row per site and position of an estimator's entries (no interval: one batch)."""
    return [_entry(sweep, tokens, "attribution", i, j, estimates[i, j], None, None, seed, {"estimator": estimator})
            for i in range(len(sweep.sites)) for j in range(len(sweep.positions))]


def agreement_rows(sweep: SetSweep, found: Agreement, estimator: str, tokens: dict, seed: int) -> list[Row]:
    """Spearman, top-k overlap and the missed entries of one estimator against one exact sweep."""
    coords = {"task": sweep.task, "direction": sweep.direction, "site_set": sweep.site_set, "estimator": estimator}
    name = f"{sweep.task}:{sweep.direction}:{sweep.site_set}:{estimator}"
    rows = [Row(name, "attribution", "spearman", found.rho, found.rho_low, found.rho_high, n=found.n, seed=seed,
                coords=coords),
            Row(name, "attribution", "spearman_effects", found.rho_effects, found.rho_effects_low,
                found.rho_effects_high, n=found.n_effects, seed=seed, coords=coords),
            Row(name, "attribution", "top_k_overlap", found.overlap, n=found.k, seed=seed,
                coords={**coords, "k": found.k})]
    for rank, (i, j, exact, _) in enumerate(found.missed):
        info, position = sweep.sites[i], sweep.positions[j]
        rows.append(Row(f"{name}:missed:{info.label}:{position}", "attribution", "top_k_missed", _finite(exact),
                        n=found.k, seed=seed, coords={**coords, **_site_coords(info), "position": position,
                                                      "token": tokens[position], "k": found.k}))
    return rows
