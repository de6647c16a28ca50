"""A sweep as units of work: the base and source runs it reads from, and one unit per (patched run, track, row).

A patched run (a *variant*) is one site group patched at one position column. For each of the metric's tracks
and each prompt it becomes a `Unit`: the source's values to write, where they go, and from which position and
layer on the run can differ from the base run (`mechhybrid.tracing.fast`). A unit that cannot reach any position
the metric reads is not run (its reads are the base run's); units a few tokens or a layer apart share a forward
where that is cheaper than one forward each (`merge_groups`); a unit whose writes are the base run's own values
(a prefix both prompts share) is not run either.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from mechhybrid.state.api import read_state
from mechhybrid.tracing.fast import PAD_ID, FullRun, TrackRuns, Unit, Write, forward, full_run, unembed_rows
from mechhybrid.tracing.metrics import Track
from mechhybrid.tracing.pairs import Columns
from mechhybrid.tracing.sites import Resolved


def padded(rows) -> torch.Tensor:
    """`[batch, seq]` right-padded ids of token rows."""
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [PAD_ID] * (width - len(r)) for r in rows])


@dataclass
class Sources:
    """What the source (the run values are taken from) supplies: activations at every hook point the sites
    use, and states after the positions the state sites need; and the base run's activations to compare."""

    values: dict
    """(module path, "in" | "out") -> `[batch, seq, width]` on the source prompts (right-padded)."""
    states: dict
    """(row, layer, position) -> the one-row State of the source right after `position`."""
    base: dict = field(default_factory=dict)
    """(module path, "in" | "out") -> `[batch, seq, width]` on the base prompts, for the points whose module
    runs once per forward in both runs (a write there of the value already there changes nothing)."""


def track_runs(hm, prompts, track: Track, points=()) -> tuple[TrackRuns, torch.Tensor, FullRun]:
    """The base run of one track (prompts + suffix), recorded layer by layer and at `points`; its reads
    `[batch, read, vocab]`; and the forward's record."""
    rows = [tuple(p) + tuple(s) for p, s in zip(prompts, track.suffix)]
    runs = TrackRuns(base_ids=padded(rows), lengths=[len(r) for r in rows], reads=list(track.reads))
    full = full_run(hm, runs.base_ids, points, layers=True)
    runs.hidden, runs.rests = full.layers, full.rests
    runs.base_reads = unembed_rows(hm, full.hidden, runs.read_positions(torch.arange(len(rows))))
    return runs, runs.base_reads, full


def source_reads(hm, prompts, track: Track, points=()) -> tuple[torch.Tensor, FullRun]:
    """The source's reads on one track, and the forward's record (its activations at `points`)."""
    rows = [tuple(p) + tuple(s) for p, s in zip(prompts, track.suffix)]
    twin = TrackRuns(base_ids=padded(rows), lengths=[len(r) for r in rows], reads=list(track.reads))
    full = full_run(hm, twin.base_ids, points)
    return unembed_rows(hm, full.hidden, twin.read_positions(torch.arange(len(rows)))), full


def source_states(hm, prompts, groups: list[list[Resolved]], columns: Columns) -> dict:
    """(row, layer, position) -> one-row State, for every state site and position column: one exact
    `read_state` per set of prompts of one length that need the same positions (all of them, usually)."""
    layers = sorted({r.state_layer for g in groups for r in g if r.state_layer is not None})
    if not layers:
        return {}
    together: dict = {}
    for b, prompt in enumerate(prompts):
        positions = tuple(sorted({p for column in columns.table for p in column[b]}))
        together.setdefault((len(prompt), positions), []).append(b)
    out = {}
    for (_, positions), rows in together.items():
        states = read_state(hm, torch.tensor([list(prompts[b]) for b in rows]), layers, list(positions))
        for (layer, position), state in states.items():
            for i, b in enumerate(rows):
                out[(b, layer, position)] = state.select(slice(i, i + 1))
    return out


@dataclass(frozen=True)
class Reuse:
    """Which savings a sweep may take (all True by default; the benchmark turns them off one by one)."""

    positions: bool = True
    """Continue each patched run from the base run's cache at its first changed position."""
    layers: bool = True
    """Replay the layers below a patched run's first changed layer from the base run."""
    unchanged: bool = True
    """Run no forward for a patch whose values equal the base run's own (a prefix both prompts share)."""


def make_units(
    groups: list[list[Resolved]], columns: Columns, runs: list[TrackRuns], sources: Sources, reuse: Reuse,
) -> tuple[list[Unit], list[Unit]]:
    """(units that must run, units whose patch cannot reach any position the metric reads)."""
    todo, untouched = [], []
    for g, group in enumerate(groups):
        local = reuse.positions and all(site.local for site in group)
        for c, column in enumerate(columns.table):
            variant = g * len(columns.table) + c
            for k, track in enumerate(runs):
                for b, positions in enumerate(column):
                    if local:  # only the patched positions change: keep those the metric reads
                        read = range(track.lengths[b] - track.reads[b], track.lengths[b])
                        positions = tuple(p for p in positions if p in read)
                    if not positions or (reuse.unchanged and _unchanged(group, positions, b, sources)):
                        untouched.append(Unit(variant, k, b, track.lengths[b], 0))
                        continue
                    unit = _unit(group, positions, variant, k, b, sources, reuse)
                    (untouched if unit.start > track.lengths[b] - 1 else todo).append(unit)
    return todo, untouched


def _unchanged(group, positions, row: int, sources: Sources) -> bool:
    """Whether every site of the group would write, at these positions of this row, exactly the base run's own
    value (causal tracing's prompt pairs share most tokens, and the prefix before the first differing one gives
    both runs the same activations): the patched run is then the base run, and its reads are the base run's."""
    index = list(positions)
    for site in group:
        if site.point not in sources.base:
            return False  # a state, or a module that runs more than once
        channels = site.channels or slice(None)
        if not torch.equal(sources.values[site.point][row, index, channels],
                           sources.base[site.point][row, index, channels]):
            return False
    return True


def _unit(group, positions, variant: int, track: int, row: int, sources: Sources, reuse: Reuse) -> Unit:
    writes, states, starts = [], [], []
    for site in group:
        if site.state_layer is None:
            value = sources.values[site.point][row, list(positions)]
            if site.channels is not None:
                value = value[..., site.channels]
            writes.append(Write(site.point, site.channels, positions, value))
        else:
            states += [(site.state_layer, p, sources.states[(row, site.state_layer, p)]) for p in positions]
        starts.append(min(positions) + site.shift)
    start = min(starts) if reuse.positions else 0
    inside = any(p + 1 > start for _, p, _ in states)  # a state write after the run's first token
    layer = min(site.layer for site in group) if reuse.layers and not inside else 0
    return Unit(variant, track, row, start, layer, writes, states)


@dataclass(frozen=True)
class Costs:
    """What a forward costs on this model and machine, in seconds (`measure_costs`)."""

    fixed: float
    """One forward, whatever its size (module calls, small-tensor ops)."""
    row_layer: float
    """Each row through each layer, at one token (what a chunked scan pays for its padding lands here)."""
    token: float
    """Each further token of a row through a layer."""


MEASURE_ROWS = 8
"""Rows of the forwards `measure_costs` times."""


def measure_costs(hm, ids: torch.Tensor) -> Costs:
    """Time three forwards of the first prompt (1 row x 1 token, MEASURE_ROWS rows x 1 token, MEASURE_ROWS rows x
    the whole prompt) and solve for the fixed, per-row-layer and per-token costs (negative noise clipped to 0)."""
    rows = ids[:1].repeat(MEASURE_ROWS, 1).to(hm.device)
    times = []
    with torch.no_grad():
        for part in (rows[:1, :1], rows[:, :1], rows):
            begin = time.perf_counter()
            forward(hm, part, use_cache=False)
            times.append(time.perf_counter() - begin)
    layers, tokens = hm.n_layers, ids.shape[1]
    row_layer = max(times[1] - times[0], 0.0) / ((MEASURE_ROWS - 1) * layers)
    token = max(times[2] - times[1], 0.0) / (MEASURE_ROWS * layers * max(tokens - 1, 1))
    return Costs(fixed=max(times[0] - row_layer * layers, 0.0), row_layer=row_layer, token=token)


def merge_groups(hm, runs: list[TrackRuns], units: list[Unit], limit, costs: Costs) -> None:
    """Let units start earlier (first position) or lower (first layer) than they must where running them with
    another group costs less than the forward saved (`costs`); what they recompute is exact (nothing is patched
    there yet). Starts merge within one first layer (not for units with state writes, which are written right
    before their start); then whole groups merge into a lower first layer, where they are small enough (a
    state x position sweep's). `limit(track, start)`: the rows one forward may hold there (a merged group must
    still run as one forward to save one)."""
    by_layer: dict = {}
    for unit in units:
        if not unit.states:
            by_layer.setdefault((unit.track, unit.layer), {}).setdefault(unit.start, []).append(unit)
    for (track, layer), starts in by_layer.items():
        per_token = (hm.n_layers - layer) * costs.token
        _greedy(starts, lambda n, gap: n * gap * per_token, lambda key: costs.fixed, limit(track, min(starts)),
                "start")
    by_start: dict = {}
    for unit in units:
        by_start.setdefault((unit.track, unit.start), {}).setdefault(unit.layer, []).append(unit)
    for (track, start), layers in by_start.items():
        per_layer = costs.row_layer + (max(runs[track].lengths) - start) * costs.token
        # The forward a group would have had costs its fixed part in proportion to the layers it runs.
        saved = lambda layer: costs.fixed * (hm.n_layers - layer) / hm.n_layers
        _greedy(layers, lambda n, gap: n * gap * per_layer, saved, limit(track, start), "layer")


def _greedy(groups: dict, extra, saved, rows: int, field: str) -> None:
    """Walk the groups in ascending key; fold a group into the current first one while the recomputation it
    adds (`extra(rows, key gap)`, seconds) stays within what its own forward would cost (`saved(key)`) and the
    merged group within `rows` rows."""
    first, size = None, 0
    for key in sorted(groups):
        n = len(groups[key])
        if first is not None and size + n <= rows and extra(n, key - first) <= saved(key):
            for unit in groups[key]:
                setattr(unit, field, first)
            size += n
        else:
            first, size = key, n
