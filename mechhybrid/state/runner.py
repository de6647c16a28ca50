"""The segmented forward: foundation interventions and state interventions composed in one call.

The sequence runs through the model's own cache in segments that end right after every position where a state is
read, patched or edited; at each boundary the state is copied (read) or overwritten in the cache (patch, edit),
so later tokens are computed from it through the model's own recurrence. Memory is the model's forward over one
segment plus one state per requested (layer, position): the `[seq, state]` trajectory is never materialised.
Families whose multi-token continuation drifts (`StateSpec.continuation == "token"`: jamba, recurrent_gemma)
continue one token at a time after the first segment, which is exact.

Alternative intervention sets are stacked along the batch, as in `HybridModel.logits_many`: set `i` owns rows
`[i * batch, (i + 1) * batch)` of every segment and of the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mechhybrid import hook_io
from mechhybrid.attention.interface import installed
from mechhybrid.engine import compile_plan
from mechhybrid.errors import MechHybridError
from mechhybrid.interventions import Capture
from mechhybrid.state import cache as cache_ops
from mechhybrid.state.localize import (
    SourceBank, assemble_capture, capture_positions, localize, resolve_position,
)
from mechhybrid.state.spec import resolve_layers, spec_for
from mechhybrid.state.types import EditState, PatchState, ReadState, State, is_state_intervention


@dataclass(frozen=True)
class StateOp:
    """One state operation of one set, resolved: at absolute `position`, on `layers`."""

    position: int
    layers: tuple[int, ...]
    item: object
    source: dict | None = None
    """Layer -> State to write (PatchState), already read from its source."""


@dataclass
class Run:
    """The bookkeeping of one segmented forward over stacked intervention sets."""

    hm: object
    batch: int
    total: int
    """Length of the whole sequence (negative positions count from its end)."""
    foundation: list[list]
    """Per set: the foundation interventions active in this phase."""
    ops: list[list[StateOp]]
    """Per set: the state operations active in this phase."""
    bank: SourceBank = field(default_factory=SourceBank)
    keep_logits: bool = True
    """False when only states are wanted: the unembedding then runs on the last token only (`logits_to_keep`),
    which saves `seq x vocab` floats (1.2 GB at 2,048 tokens x a 150k vocabulary)."""
    max_segment: int | None = None
    """Longest piece run at once where continuation is exact: bounds the forward's activations by this many
    tokens instead of the sequence (read_state: 512; peak 71 -> 21 MiB at 2,048 tokens in benchmarks/bench_state.py)."""
    captures: list[dict] = field(default_factory=list)
    """Per set: component -> (Capture, pieces, recorded absolute positions)."""
    states: list[dict] = field(default_factory=list)
    """Per set: (layer, position) -> State."""

    def __post_init__(self):
        self.captures = [{} for _ in self.foundation]
        self.states = [{} for _ in self.foundation]

    @property
    def n_sets(self) -> int:
        return len(self.foundation)

    def rows(self, index: int) -> slice:
        return slice(index * self.batch, (index + 1) * self.batch)

    def boundaries(self) -> list[int]:
        return sorted({op.position for ops in self.ops for op in ops})

    def modifies(self) -> bool:
        return any(not isinstance(op.item, ReadState) for ops in self.ops for op in ops)


def split_interventions(interventions) -> tuple[list, list]:
    """(foundation interventions, state interventions), each in the given order."""
    foundation = [i for i in interventions if not is_state_intervention(i)]
    return foundation, [i for i in interventions if is_state_intervention(i)]


def resolve_ops(hm, items, total: int, phase: str, batch: int, default_positions=None) -> list[StateOp]:
    """State interventions active in `phase`, checked against the model and a `total`-token sequence."""
    ops = []
    for item in items:
        if item.phase not in ("all", phase):
            continue
        layers = resolve_layers(hm, item.layers)
        if isinstance(item, ReadState):
            positions = item.positions if item.positions is not None else default_positions
            if positions is None:
                raise MechHybridError("ReadState(positions=None) means every generated token: use it in generate")
            ops += [StateOp(resolve_position(p, total, "ReadState position"), layers, item) for p in positions]
            continue
        position = resolve_position(item.position, total, f"{type(item).__name__} position")
        source = _patch_source(hm, item, layers, batch) if isinstance(item, PatchState) else None
        ops.append(StateOp(position, layers, item, source))
    return ops


def _patch_source(hm, item: PatchState, layers, batch: int) -> dict:
    if item.state is not None:
        missing = [layer for layer in layers if layer not in item.state]
        if missing:
            raise MechHybridError(f"PatchState state has no entry for layer {missing[0]}")
        return {layer: item.state[layer] for layer in layers}
    source = item.source_ids
    if source.shape[0] not in (1, batch):
        raise MechHybridError(f"PatchState source_ids has batch {source.shape[0]}; the input has {batch}")
    from mechhybrid.state.api import read_state

    wanted = item.position if item.source_position is None else item.source_position
    at = resolve_position(wanted, source.shape[1], "PatchState source position")
    states = read_state(hm, source, layers, [at])
    return {layer: states[(layer, at)] for layer in layers}


def apply_ops(run: Run, cache, position: int) -> None:
    """Apply every set's state operations at `position`, in the order they were given."""
    for index, ops in enumerate(run.ops):
        rows = run.rows(index)
        for op in ops:
            if op.position != position:
                continue
            for layer in op.layers:
                if isinstance(op.item, ReadState):
                    run.states[index][(layer, position)] = cache_ops.read(run.hm, cache, layer, position, rows)
                elif isinstance(op.item, PatchState):
                    cache_ops.write(run.hm, cache, layer, op.source[layer], rows)
                else:
                    current = cache_ops.read(run.hm, cache, layer, position, rows)
                    edited = op.item.fn(current)
                    if not isinstance(edited, State):
                        raise MechHybridError("EditState fn must return a State (use state.replace(...))")
                    cache_ops.write(run.hm, cache, layer, edited, rows)


def run_segment(run: Run, cache, input_ids: torch.Tensor, start: int, stop: int, phase: str) -> torch.Tensor:
    """Tokens [start, stop) of every set through the cache, with the foundation interventions localized."""
    hm = run.hm
    local_sets = []
    for index, items in enumerate(run.foundation):
        local = []
        for item in items:
            piece = localize(item, start, stop, run.total, run.bank)
            if piece is not None:
                local.append(piece)
        local_sets.append(local)
    segment = input_ids[:, start:stop]
    plan = compile_plan(hm, segment, local_sets, phase=phase)
    run.bank.supply(plan)
    stacked = segment.repeat(run.n_sets, 1).to(hm.device)
    kwargs = cache_ops.forward_kwargs(hm, cache, start, stop, stacked.shape[0])
    if not run.keep_logits:
        kwargs["logits_to_keep"] = 1
    with installed(hm, plan.attention):
        logits = forward_with_ops(hm, plan.ops, stacked, kwargs)
    _collect_captures(run, plan, start, stop, phase)
    return logits


def forward_with_ops(hm, ops: dict, input_ids: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """One forward applying a compiled plan's operations with plain torch hooks; `[rows, seq, vocab]` logits.

    The operations are the engine's own (`compile_plan`), applied in place to the same tensors that nnsight's
    `visit_points` would hand them (a module's first input, its first output). Plain hooks because a segmented
    run makes one forward per segment (one per token in generation): nnsight's trace setup cost ~25 ms per
    forward on the tiny models (benchmarks/bench_state.py), more than the forward itself.
    """
    stash: dict = {}
    handles = []

    def run_ops(point, tensor):
        for op in ops[point]:
            op.fn(tensor, op.rows, stash)

    try:
        for point in ops:
            path, io = point
            module = hm.module(path)
            if io == "in":
                hook = lambda m, args, kw, point=point: run_ops(point, hook_io.input_of(args, kw))
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            else:
                hook = lambda m, a, out, point=point: run_ops(point, hook_io.first(out))
                handles.append(module.register_forward_hook(hook))
        with torch.no_grad():
            return hm.hf_model(input_ids, **kwargs).logits
    finally:
        for handle in handles:
            handle.remove()


def _collect_captures(run: Run, plan, start: int, stop: int, phase: str) -> None:
    for index, items in enumerate(run.foundation):
        for item in items:
            if not isinstance(item, Capture) or item.phase not in ("all", phase):
                continue
            recorded = capture_positions(item, start, stop, run.total)
            if not recorded:
                continue
            for component in item.components:
                _, pieces, seen = run.captures[index].setdefault(component, (item, [], []))
                pieces.append(plan.captures[index][component])
                seen.extend(recorded)


def finish_captures(run: Run) -> list[dict]:
    return [
        {c: assemble_capture(item, pieces, seen, run.total) for c, (item, pieces, seen) in captures.items()}
        for captures in run.captures
    ]


def segments(hm, start: int, stop: int, boundaries, fresh: bool, max_len: int | None = None) -> list[tuple[int, int]]:
    """[a, b) pieces of [start, stop) that end right after each boundary (and, with `max_len`, are at most that
    long); one-token pieces after the first piece where the family's multi-token continuation is not exact."""
    cuts = {p + 1 for p in boundaries if start < p + 1 < stop} | {stop}
    if max_len is not None and spec_for(hm).continuation == "chunk":
        cuts |= set(range(start + max_len, stop, max_len))
    pieces, a = [], start
    for b in sorted(cuts):
        pieces.append((a, b))
        a = b
    if spec_for(hm).continuation == "chunk":
        return pieces
    out = []
    for a, b in pieces:
        if a == 0 and fresh:
            out.append((a, b))
        else:
            out.extend((t, t + 1) for t in range(a, b))
    return out


def run_span(run: Run, cache, input_ids, start: int, stop: int, phase: str, fresh: bool) -> torch.Tensor:
    """Tokens [start, stop) in segments, applying state operations at the boundaries; `[rows, seq, vocab]`."""
    boundaries = set(run.boundaries())
    pieces = []
    for a, b in segments(run.hm, start, stop, boundaries, fresh, run.max_segment):
        pieces.append(run_segment(run, cache, input_ids, a, b, phase))
        if b - 1 in boundaries:
            apply_ops(run, cache, b - 1)
    return torch.cat(pieces, dim=1)
