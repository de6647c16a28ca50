"""One site set swept over one task's pairs in one direction, through `mechhybrid.tracing.sweep`.

Every entry is the logit difference normalised over the pairs' means, 0 = the corrupted run and 1 = the clean
run: (mean patched - mean corrupted) / (mean clean - mean corrupted), exactly what `sweep` with `LogitDiff`
reports for the whole batch. With `per_pair`, every pair is swept on its own (raw logit differences) and the
same ratio is rebuilt from them, with a 95% percentile bootstrap over pairs around it.

Positions before the first token where the two prompts of a pair differ are not run: there a causal model
computes the same values in both runs, so the patch is the unpatched run (`changing`). On the zoo's needle at
depth 0.5 that halves the positions and saves the longer continuations (about 2x on the quick profile).

Axis names: "pair" (one clean / corrupted pair), "site", "position", "resample".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mechhybrid.tracing import LogitDiff, component_sites, head_sites, residual_sites, state_sites, sweep
from mechhybrid.state.spec import state_components

from ..stats import bootstrap_indices
from .pairs import PairSet

__all__ = ["SiteInfo", "SetSweep", "site_infos", "positions_of", "changing", "run_sweep", "RawLogitDiff"]


class RawLogitDiff(LogitDiff):
    """`LogitDiff` left unnormalised: a single pair's sweep reports raw logit differences."""

    normalised = False


@dataclass(frozen=True)
class SiteInfo:
    """What a row says about its site: the label `sweep` gives it and its coordinates."""

    label: str
    layer: int
    kind: str | None
    """Component kind (a state: its layer's recurrent mixer's kind); None for the residual stream."""
    head: int | None


def site_infos(hm, site_set: str) -> tuple[list, list[SiteInfo]]:
    """(the sites `sweep` gets, their SiteInfo) of one site set; empty when the model has none."""
    if site_set == "residual":
        sites = residual_sites(hm, ("pre",))
        return sites, [SiteInfo(s.name, s.layer, None, None) for s in sites]
    if site_set == "components":
        sites = component_sites(hm)
        return sites, [SiteInfo(s.name, s.layer, s.kind, None) for s in sites]
    if site_set == "heads":
        sites = head_sites(hm)
        return sites, [SiteInfo(s.name, s.component.layer, s.component.kind, s.head) for s in sites]
    sites = state_sites(hm)
    kinds = state_components(hm)
    return sites, [SiteInfo(s.name, s.layer, kinds[s.layer].kind, None) for s in sites]


@dataclass(frozen=True)
class SetSweep:
    """One site set, one direction, one task: the normalised metric at every site and position."""

    task: str
    site_set: str
    direction: str
    sites: tuple[SiteInfo, ...]
    positions: tuple[int, ...]
    """Token positions (negative: counted from each prompt's end, where the prompts differ in length)."""
    values: np.ndarray
    """[site, position] normalised logit difference, 0 = corrupted, 1 = clean."""
    ci_low: np.ndarray | None
    """[site, position] 95% bootstrap interval over pairs (per_pair), else None."""
    ci_high: np.ndarray | None
    clean: float
    """Mean raw logit difference of the clean run (a key-swap pair: the clean answer's log-probability)."""
    corrupted: float
    """The same on the corrupted run."""
    n: int
    """Pairs."""
    strategy: str
    """How `sweep` computed the entries."""
    changing: tuple[bool, ...]
    """Per position: whether a patch there can change anything (`changing`); the others are the unpatched run."""

    def __post_init__(self):
        shape = (len(self.sites), len(self.positions))
        for name in ("values", "ci_low", "ci_high"):
            array = getattr(self, name)
            if array is not None and array.shape != shape:
                raise ValueError(f"{name} {array.shape} != (sites, positions) {shape}")


def positions_of(pairs: PairSet) -> tuple[int, ...]:
    """Every position: 0 .. n - 1 where the prompts have one length n, else the shortest prompt's length counted
    from each prompt's end (-n .. -1), so that a column is the same token for a pair swept alone."""
    lengths = {len(c) for c in pairs.clean}
    n = min(lengths)
    return tuple(range(n)) if len(lengths) == 1 else tuple(range(-n, 0))


def changing(pairs: PairSet, positions) -> list[bool]:
    """Per position: whether a patch there can change anything. Before the first token where a pair's two
    prompts differ, a causal model computes the same activations and states in both runs, so a patch there
    is the unpatched run exactly (0 denoising, 1 noising) in every pair; a sweep need not run it."""
    first = [next((i for i, (c, x) in enumerate(zip(cs, xs)) if c != x), len(cs))
             for cs, xs in zip(pairs.clean, pairs.corrupted)]
    return [any(p % len(cs) >= f for cs, f in zip(pairs.clean, first)) for p in positions]


def _raw(hm, pairs: PairSet, sites, direction: str, rows: slice):
    """`[site, position]` raw metric of every patch of the pairs in `rows` (the unpatched run's value where no
    pair's patch can change anything), and the clean and corrupted runs' raw metric."""
    positions = positions_of(pairs)
    keep = changing(pairs, positions)
    result = sweep(hm, pairs.clean[rows], pairs.corrupted[rows], sites,
                   RawLogitDiff(pairs.answers[rows], pairs.corrupted_answers[rows]),
                   [p for p, k in zip(positions, keep) if k], direction=direction)
    base = result.corrupted_metric if direction == "denoise" else result.clean_metric
    raw = np.full((len(result.sites), len(positions)), base)
    raw[:, np.flatnonzero(keep)] = result.values.double().numpy()
    return raw, result.clean_metric, result.corrupted_metric, result.strategy


def _ratio(raw: np.ndarray, clean: np.ndarray, corrupted: np.ndarray) -> np.ndarray:
    """(mean raw - mean corrupted) / (mean clean - mean corrupted) over the pair axis (raw `[..., pair, site,
    position]`, clean and corrupted `[..., pair]`); not finite where the two means are equal."""
    low = corrupted.mean(-1)[..., None, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (raw.mean(-3) - low) / (clean.mean(-1) - corrupted.mean(-1))[..., None, None]


def _interval(raw: np.ndarray, clean: np.ndarray, corrupted: np.ndarray, seed: int):
    """95% percentile bootstrap over pairs of the normalised ratio (`raw` `[pair, site, position]`)."""
    idx = bootstrap_indices(len(clean), seed)
    draws = _ratio(raw[idx], clean[idx], corrupted[idx])  # [resample, site, position]
    # Resamples whose clean run does not beat the corrupted one have no unit to normalise by.
    draws = draws[(clean[idx].mean(-1) - corrupted[idx].mean(-1)) > 0]
    if not len(draws):
        return None, None
    return np.percentile(draws, 2.5, axis=0), np.percentile(draws, 97.5, axis=0)


def run_sweep(hm, pairs: PairSet, site_set: str, direction: str, per_pair: bool, seed: int) -> SetSweep | None:
    """Sweep `site_set` over every position of `pairs` in `direction` (the whole batch at once, or with
    `per_pair` every pair on its own plus a bootstrap interval); None when the model has no such site."""
    sites, infos = site_infos(hm, site_set)
    if not sites:
        return None
    chunks = [slice(b, b + 1) for b in range(pairs.n)] if per_pair else [slice(0, pairs.n)]
    runs = [_raw(hm, pairs, sites, direction, rows) for rows in chunks]
    raw = np.stack([r[0] for r in runs])  # [pair (or one batch), site, position]
    clean, corrupted = np.asarray([r[1] for r in runs]), np.asarray([r[2] for r in runs])
    low, high = _interval(raw, clean, corrupted, seed) if per_pair else (None, None)
    positions = positions_of(pairs)
    return SetSweep(pairs.task, site_set, direction, tuple(infos), positions, _ratio(raw, clean, corrupted),
                    low, high, float(clean.mean()), float(corrupted.mean()), pairs.n, runs[0][3],
                    tuple(changing(pairs, positions)))
