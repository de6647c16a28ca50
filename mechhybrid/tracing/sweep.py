"""`sweep`: exact activation and state patching over sites x positions in one call, as a labelled tensor.

    result = sweep(hm, clean_ids, corrupted_ids, sites="components", metric=LogitDiff(answers, wrong))
    result.values            # [site, position]: the metric of each patched run
    result.sites, result.positions

Denoising (`direction="denoise"`) runs the corrupted prompts with one site at one position (or a group of them)
taken from the clean run; noising runs the clean prompts with corrupted values. Every entry equals one forward
of the base prompts with that one patch (`tests/core/test_tracing_sweep.py` checks it against a plain-hook loop
to 1e-4), but a sweep computes only what each patch can change (`mechhybrid.tracing.fast`).

Families whose cache continues exactly only one token at a time (`StateSpec.continuation == "token"`: jamba,
recurrent_gemma) get no position reuse: activation patches run as full forwards (layers below the patch still
replayed, runs still stacked), and state patches go through `mechhybrid.state`'s segmented runner, which
continues one token at a time after the patched position. `SweepResult.strategy` says which path ran.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.state.spec import spec_for
from mechhybrid.tracing import fast
from mechhybrid.tracing import plan as planning  # measure_costs looked up at call time: tests replace it
from mechhybrid.tracing.metrics import as_metric, check_metric, normalise, normalising_gap
from mechhybrid.tracing.pairs import as_pairs, resolve_positions
from mechhybrid.tracing.plan import (
    Reuse, Sources, make_units, merge_groups, source_reads, source_states, track_runs,
)
from mechhybrid.tracing.sites import resolve, select_sites
from mechhybrid.tracing.token import run_state_units

__all__ = ["DIRECTIONS", "SweepResult", "sweep", "Reuse"]

DIRECTIONS = ("denoise", "noise")
"""`denoise`: clean values into the corrupted run; `noise`: corrupted values into the clean run."""

ROW_BUDGET_BYTES = 256 << 20
"""Activation memory one stacked forward may use by default, estimated as rows x tokens x d_model x 4 bytes x
ACTIVATION_FACTOR (the rows' copies of the cache come on top)."""
ACTIVATION_FACTOR = 64
"""Floats of live activations per token and model dimension in one forward (an estimate with headroom: the widest
layer's intermediates, MLPs at 3-4 x d_model and a chunked mixer's [64 x 64] blocks per head)."""


@dataclass
class SweepResult:
    """The metric of every patched run, labelled."""

    values: torch.Tensor
    """`[site, position]` float32: the metric with that site group patched at that position column (normalised
    0 = corrupted, 1 = clean when `normalised`)."""
    sites: tuple[str, ...]
    """Row labels: each site group's name (members joined by `+`)."""
    positions: tuple
    """Column labels: each position as given (int, tuple of ints, or the column of an explicit tensor)."""
    row_positions: tuple
    """`row_positions[column][row]`: the token indices patched in each prompt (within its real tokens)."""
    clean_metric: float
    """The metric on the clean run (raw, before normalisation)."""
    corrupted_metric: float
    """The metric on the corrupted run (raw)."""
    metric: str
    """The metric's name (`logit_diff`, ..., or a function's `__name__`)."""
    normalised: bool
    """Whether `values` are normalised (0 = the corrupted run, 1 = the clean run)."""
    direction: str
    """`denoise` or `noise` (DIRECTIONS)."""
    strategy: str
    """Which path computed the entries, and why (see the module docstring)."""
    work: float
    """Layer x token x row computations done, as a fraction of the one-forward-per-patch loop's."""

    def __post_init__(self):
        if tuple(self.values.shape) != (len(self.sites), len(self.positions)):
            raise ValueError(f"values {tuple(self.values.shape)} != (sites {len(self.sites)}, positions "
                             f"{len(self.positions)})")
        if len(self.row_positions) != len(self.positions):
            raise ValueError("row_positions needs one entry per position column")

    def value(self, site: str, position) -> float:
        """The entry of one site (by name) at one position label."""
        if site not in self.sites or position not in self.positions:
            raise MechHybridError(f"no entry for site {site!r} at position {position!r}")
        return float(self.values[self.sites.index(site), self.positions.index(position)])


class _Collector:
    """Reads of every unit, gathered per variant; a variant is scored once all its units are in."""

    def __init__(self, n_variants: int, n_tracks: int, batch: int, score):
        self.parts = defaultdict(dict)
        self.expected = n_tracks * batch
        self.n_tracks, self.batch, self.score = n_tracks, batch, score
        self.values = torch.full((n_variants,), float("nan"))

    def put(self, unit, reads: torch.Tensor) -> None:
        parts = self.parts[unit.variant]
        parts[(unit.track, unit.row)] = reads
        if len(parts) == self.expected:
            tracks = tuple(
                torch.stack([parts[(k, b)] for b in range(self.batch)])[None] for k in range(self.n_tracks)
            )
            self.values[unit.variant] = self.score(tracks)[0]
            del self.parts[unit.variant]


def sweep(
    hm, clean, corrupted, sites, metric, positions=None, direction: str = "denoise", *, clean_mask=None,
    corrupted_mask=None, reuse: Reuse = Reuse(), max_rows: int | None = None,
) -> SweepResult:
    """Patch every site group at every position column, one at a time; the metric of each run (see the module
    docstring). `sites`: a set name (`mechhybrid.tracing.SITE_SETS`), a site, or a list of sites and tuples of
    sites; `positions`: None (every position), ints and tuples of ints (row-relative, negative from each row's
    end), or a `[batch, n]` tensor of per-row positions; `metric`: a `Metric` or `fn([batch, vocab]) -> scalar`.
    `max_rows`: rows per stacked forward (default: what ROW_BUDGET_BYTES allows)."""
    if direction not in DIRECTIONS:
        raise MechHybridError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    if max_rows is not None and max_rows < 1:
        raise MechHybridError(f"max_rows must be >= 1, got {max_rows}")
    pairs = as_pairs(hm, clean, corrupted, clean_mask, corrupted_mask)
    metric = as_metric(metric)
    groups = [[resolve(hm, s) for s in g] for g in select_sites(hm, sites)]
    columns = resolve_positions(positions, pairs.lengths)
    tracks = metric.tracks(pairs.batch)
    token = spec_for(hm).continuation == "token"
    if token:
        _refuse_mixed(hm, groups)
        reuse = replace(reuse, positions=False)
    base, source = (pairs.corrupted, pairs.clean) if direction == "denoise" else (pairs.clean, pairs.corrupted)
    runs, base_reads, source_read, sources = _base_and_source(hm, base, source, tracks, groups, columns)
    clean_reads, corrupted_reads = (source_read, base_reads) if direction == "denoise" else (base_reads, source_read)
    score = lambda reads: check_metric(metric.score(reads, clean_reads), reads[0].shape[0], metric.name)
    clean_raw, corrupted_raw = float(score(clean_reads)[0]), float(score(corrupted_reads)[0])
    if metric.normalised:
        normalising_gap(clean_raw, corrupted_raw, metric.name)  # refused before any patched run

    todo, untouched = make_units(groups, columns, runs, sources, reuse)
    limit = lambda track, start: _rows_per_forward(hm, runs[track], start, max_rows)
    merge_groups(hm, runs, todo, limit, planning.measure_costs(hm, runs[0].base_ids))
    collector = _Collector(len(groups) * len(columns.labels), len(tracks), pairs.batch, score)
    for unit in untouched:
        collector.put(unit, base_reads[unit.track][0, unit.row])
    work = _execute(hm, runs, todo, collector, max_rows, token)
    values = collector.values.view(len(groups), len(columns.labels))
    if metric.normalised:
        values = normalise(values, clean_raw, corrupted_raw, metric.name)
    loop = len(collector.values) * sum(r.base_ids.numel() for r in runs) * hm.n_layers
    return SweepResult(
        values=values, sites=tuple("+".join(r.name for r in g) for g in groups), positions=columns.labels,
        row_positions=columns.table, clean_metric=clean_raw, corrupted_metric=corrupted_raw, metric=metric.name,
        normalised=metric.normalised, direction=direction, strategy=_strategy(hm, token, reuse, todo),
        work=work / loop,
    )


def _refuse_mixed(hm, groups) -> None:
    for group in groups:
        kinds = {site.state_layer is None for site in group}
        if len(kinds) == 2:
            raise MechHybridError(
                f"{hm.family}'s cache continues exactly only one token at a time, so the site group "
                f"{'+'.join(s.name for s in group)} cannot mix states with activations; sweep them in separate groups"
            )


def _base_and_source(hm, base, source, tracks, groups, columns):
    """Per track: the base run (recorded for reuse) and both runs' reads `[1, batch, read, vocab]`; and the
    source's values at every site (activations on the first track: the prompts' positions are the same in all),
    with the base run's beside them."""
    points = sorted({r.point for g in groups for r in g if r.point is not None})
    runs, base_reads, source_read = [], [], []
    for k, track in enumerate(tracks):
        run, reads, base_full = track_runs(hm, base, track, points if k == 0 else ())
        runs.append(run)
        base_reads.append(reads[None])
        reads, source_full = source_reads(hm, source, track, points if k == 0 else ())
        source_read.append(reads[None])
        if k == 0:
            once = [p for p in points if base_full.calls[p] == source_full.calls[p] == 1]
            sources = Sources(source_full.values, source_states(hm, source, groups, columns),
                              {p: base_full.values[p] for p in once})
    return runs, tuple(base_reads), tuple(source_read), sources


def _execute(hm, runs, units, collector: _Collector, max_rows, token: bool) -> int:
    """Run every unit: stacked by (track, start, first layer), chunked; returns layer-token-rows computed."""
    work = sum(2 * r.base_ids.numel() * hm.n_layers for r in runs)  # each track's base and source runs
    if token:
        rows = _rows_per_forward(hm, runs[0], 0, max_rows)
        work += run_state_units(hm, runs, [u for u in units if u.states], collector, rows)
        units = [u for u in units if not u.states]
    by_group = defaultdict(list)
    for unit in units:
        by_group[(unit.track, unit.start, unit.layer)].append(unit)
    bases = {k: fast.BaseCache(hm, run.base_ids) for k, run in enumerate(runs)}
    for k, start, layer in sorted(by_group):
        group = by_group[(k, start, layer)]
        cache = bases[k].at_position(start) if start > 0 else None
        size = _rows_per_forward(hm, runs[k], start, max_rows)
        for i in range(0, len(group), size):
            chunk = group[i: i + size]
            rows = torch.tensor([u.row for u in chunk])
            twin = None if cache is None else fast.clone_rows(cache, rows)
            reads, done = fast.run_units(hm, runs[k], chunk, twin)
            work += done
            for unit, read in zip(chunk, reads):
                collector.put(unit, read)
    # The base runs through the cache once more, in segments up to the last start.
    return work + sum(runs[k].base_ids.shape[0] * base.at * hm.n_layers for k, base in bases.items())


def _rows_per_forward(hm, run, start: int, max_rows: int | None) -> int:
    if max_rows is not None:
        return max_rows
    tokens = max(1, run.base_ids.shape[1] - start)
    return max(1, ROW_BUDGET_BYTES // (tokens * hm.d_model * 4 * ACTIVATION_FACTOR))


def _strategy(hm, token: bool, reuse: Reuse, units) -> str:
    if token:
        states = " States: mechhybrid.state's segmented runner, one token at a time after the patched position." if any(
            u.states for u in units) else ""
        return (f"full forwards, layers below each patch replayed ({hm.family}'s cache continues exactly only one "
                f"token at a time, so no position reuse).{states}")
    parts = [name for name, on in (("position reuse (cache continuation)", reuse.positions),
                                   ("layer reuse (layers below each patch replayed)", reuse.layers)) if on]
    return "stacked forwards" + (" with " + " and ".join(parts) if parts else "") + "."
