"""Attribution patching against the exact sweep: the estimates over the same sites, and how well they agree.

`mechhybrid.tracing.attribute(hm, clean, corrupted, sites, metric, positions, direction, method, ig_steps)`
returns a `SweepResult` labelled like `sweep`'s, so entries line up site by site and position by position.
Agreement per (task, site set, direction, estimator), over the entries that can change anything (positions
before the first token where the prompts differ are the unpatched run in both, exactly, and would only add ties):

- Spearman's rank correlation of the estimates with the exact entries (bootstrap interval over entries), and the
  same over the entries whose exact effect reaches EFFECT_FLOOR alone (most entries change almost nothing, and
  their order is rounding: a low rho over all entries beside a high one over these says the estimator ranks what
  matters and only the tail disagrees);
- top-k overlap: the share of the k largest exact effects that are among the estimator's k largest;
- the entries it misses: those of the exact top k that are not in its top k.

An effect is the entry's distance from the unpatched run: the entry itself when denoising (0 = corrupted), one
less it when noising (1 = clean); the top k are the k largest effects in absolute value among those of at least
EFFECT_FLOOR (fewer than k where fewer entries reach it: entries that change nothing tie, and no order among
them is missed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import mechhybrid.tracing as tracing
from mechhybrid.errors import MechHybridError
from mechhybrid.tracing import LogitDiff

from ..stats import spearman_ci
from .pairs import PairSet
from .sweeps import SetSweep, positions_of, site_infos

__all__ = ["Agreement", "available", "NOT_AVAILABLE", "EFFECT_FLOOR", "estimate", "agreement", "effects"]

EFFECT_FLOOR = 0.01
"""Smallest exact effect (normalised units: 1% of the clean - corrupted gap) that counts towards the top k."""
NOT_AVAILABLE = "attribution: not available (this mechhybrid has no mechhybrid.tracing.attribute)"


def available() -> bool:
    """Whether the library offers attribution patching (`mechhybrid.tracing.attribute`)."""
    return callable(getattr(tracing, "attribute", None))


def estimate(hm, pairs: PairSet, exact: SetSweep, method: str, ig_steps: int) -> np.ndarray:
    """`[site, position]` the estimator's normalised metric for every entry of `exact` (same sites, positions
    and direction); a MechHybridError when its labels do not line up with the sweep's."""
    sites, _ = site_infos(hm, exact.site_set)
    result = tracing.attribute(hm, pairs.clean, pairs.corrupted, sites, LogitDiff(pairs.answers,
                               pairs.corrupted_answers), positions=list(positions_of(pairs)),
                               direction=exact.direction, method=method, ig_steps=ig_steps)
    labels = tuple(s.label for s in exact.sites)
    if tuple(result.sites) != labels or tuple(result.positions) != exact.positions:
        raise MechHybridError(f"attribution ({method}) labelled its entries {list(result.sites)[:3]}... at "
                              f"positions {list(result.positions)[:3]}...; the sweep's are {list(labels)[:3]}... "
                              f"at {list(exact.positions)[:3]}...")
    return result.values.double().numpy()


def effects(values: np.ndarray, direction: str) -> np.ndarray:
    """Each entry's distance from the unpatched run (see the module docstring)."""
    return values if direction == "denoise" else values - 1.0


@dataclass(frozen=True)
class Agreement:
    """How one estimator's entries agree with the exact sweep's."""

    rho: float | None
    rho_low: float | None
    rho_high: float | None
    n: int
    """Entries compared (finite in both)."""
    k: int
    """The top k compared: the configured k, or fewer where fewer exact effects reach EFFECT_FLOOR."""
    overlap: float | None
    """Share of the exact top k in the estimator's top k (None where no exact effect reaches EFFECT_FLOOR)."""
    missed: tuple[tuple[int, int, float, float], ...]
    """(site index, position index, exact value, estimate) of every exact top-k entry outside its top k, by
    exact effect, largest first."""
    rho_effects: float | None = None
    rho_effects_low: float | None = None
    rho_effects_high: float | None = None
    n_effects: int = 0
    """Spearman (and its interval) over the entries whose exact effect reaches EFFECT_FLOOR, and their count
    (None below 3 such entries)."""


def _top(scores: np.ndarray, k: int) -> list[int]:
    order = np.argsort(-np.abs(scores), kind="stable")
    return [int(i) for i in order[:k]]


def agreement(exact: SetSweep, estimates: np.ndarray, k: int, seed: int) -> Agreement:
    """Spearman, top-k overlap and the missed entries of `estimates` against `exact` (over the positions that
    can change anything; non-finite entries of either left out)."""
    x, y = exact.values.ravel(), estimates.ravel()
    columns = np.broadcast_to(np.asarray(exact.changing), exact.values.shape).ravel()
    keep = np.flatnonzero(np.isfinite(x) & np.isfinite(y) & columns)
    if len(keep) < 2:
        return Agreement(None, None, None, len(keep), k, None, ())
    rho, low, high = spearman_ci(x[keep], y[keep], seed)
    exact_effects = effects(x[keep], exact.direction)
    moving = np.abs(exact_effects) >= EFFECT_FLOOR
    k = min(k, int(moving.sum()))
    rho = float(rho) if np.isfinite(rho) else None
    over_effects = _spearman_over(x[keep][moving], y[keep][moving], seed)
    if k == 0:
        return Agreement(rho, low, high, len(keep), 0, None, (), *over_effects)
    truth = _top(exact_effects, k)
    found = set(_top(effects(y[keep], exact.direction), k))
    width = exact.values.shape[1]
    missed = tuple((int(keep[i]) // width, int(keep[i]) % width, float(x[keep[i]]), float(y[keep[i]]))
                   for i in truth if i not in found)
    return Agreement(rho, low, high, len(keep), k, 1.0 - len(missed) / k, missed, *over_effects)


def _spearman_over(x: np.ndarray, y: np.ndarray, seed: int) -> tuple:
    """(rho, low, high, n) of Spearman over these entries; rho None below 3 entries or where it is undefined."""
    if len(x) < 3:
        return None, None, None, len(x)
    rho, low, high = spearman_ci(x, y, seed)
    return (float(rho), low, high, len(x)) if np.isfinite(rho) else (None, None, None, len(x))
