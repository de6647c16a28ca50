"""The forwards of a sweep, computing only what a patch can change.

A patch at position p in layer l changes nothing before p and nothing below l. So a patched run

- continues from the model's own cache after p tokens of the unpatched (base) run (`BaseCache`: the base runs
  once, in segments that end at each start, through `mechhybrid.state`'s exact cache continuation) instead of
  recomputing the prefix;
- replays layers below l (`replayed`): each is swapped, for that forward, for a module that returns the base
  run's recorded output at those positions, so only layers l.. compute;
- unembeds only the positions the metric reads (the inner model runs, `hm.unembed` maps the few read rows);
- runs stacked with every other patched run of the same start and layer, one row per (run, prompt).

Which runs share a start and a layer, and which need not run at all, is planned in `mechhybrid.tracing.plan`.

Activation writes are plain torch hooks on the module at the site's hook point (`mechhybrid.tracing.sites`);
state writes go into the continued cache (`mechhybrid.state.cache.write`).

Axis names: `rows` (stacked units: one patched run x one prompt), `seq`, `d_model`, `read`, `vocab`.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from mechhybrid import hook_io
from mechhybrid.state import cache as cache_ops
from mechhybrid.state.chunks import fitted_chunks
from mechhybrid.state.types import State

PAD_ID = 0
"""Right padding after a row's real tokens: never read, never before a real token, so any id does."""


@dataclass
class Write:
    """One activation write of one unit: the source's values at `positions` into the tensor at `point`."""

    point: tuple[str, str]
    channels: slice | None
    positions: tuple[int, ...]
    values: torch.Tensor
    """`[len(positions), width]`, width = the channel slice's (or the tensor's last axis)."""


@dataclass
class Unit:
    """One prompt (row) of one patched run, on one track of the metric."""

    variant: int
    track: int
    row: int
    start: int
    """First position whose computation the patch changes (0 when positions are not reused)."""
    layer: int
    """First layer whose computation the patch changes (0 when layers are not reused)."""
    writes: list[Write] = field(default_factory=list)
    states: list[tuple[int, int, State]] = field(default_factory=list)
    """(layer, position, one-row State) written into the cache right after `position`."""


@dataclass
class TrackRuns:
    """The base run of one metric track, right-padded, and what the patched runs reuse of it."""

    base_ids: torch.Tensor
    """`[batch, seq]` the base run's prompts plus the track's suffix."""
    lengths: list[int]
    """Per row: real tokens (prompt + suffix)."""
    reads: list[int]
    """Per row: trailing positions the metric reads."""
    hidden: list[torch.Tensor] = field(default_factory=list)
    """Per layer: the base run's layer output `[batch, seq, d_model]` (what a replayed layer returns)."""
    rests: list = field(default_factory=list)
    """Per layer: what the layer returns besides its hidden state (a tuple tail, or None for a bare tensor)."""
    base_reads: torch.Tensor | None = None
    """`[batch, read, vocab]` the base run's logits at the read positions (a run starting later keeps them)."""

    def read_positions(self, rows: torch.Tensor) -> torch.Tensor:
        """`[rows, read]` absolute positions read per row (a row with fewer reads repeats its last one)."""
        width = max(self.reads)
        out = []
        for b in rows.tolist():
            first = self.lengths[b] - self.reads[b]
            out.append([first + min(j, self.reads[b] - 1) for j in range(width)])
        return torch.tensor(out)


def inner(hm):
    """The model below the unembedding (its output is the final-normed hidden state)."""
    return hm.hf_model.base_model


def forward(hm, ids: torch.Tensor, **kwargs) -> torch.Tensor:
    """`[rows, seq, d_model]` final-normed hidden state of `ids` through `inner(hm)`, chunked scans fitted to the
    forward's length (`mechhybrid.state.chunks`: continuing a cache with a few tokens then costs a few tokens)."""
    with fitted_chunks(hm, ids.shape[1]):
        return inner(hm)(ids.to(hm.device), **kwargs).last_hidden_state


@contextmanager
def hooked(hm, fns: dict):
    """Plain torch hooks: `fns[(path, "in" | "out")]` maps the tensor there to its replacement (or records it and
    returns None)."""
    handles = []
    try:
        for (path, io), fn in fns.items():
            module = hm.module(path)
            if io == "in":
                def pre(m, args, kwargs, fn=fn):
                    new = fn(hook_io.input_of(args, kwargs))
                    return None if new is None else hook_io.replace_input(args, kwargs, new)

                handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            else:
                def post(m, args, output, fn=fn):
                    new = fn(hook_io.first(output))
                    return None if new is None else hook_io.replace_output(output, new)

                handles.append(module.register_forward_hook(post))
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class FullRun:
    """One unpatched forward without a cache (`full_run`)."""

    hidden: torch.Tensor
    """`[batch, seq, d_model]` the final-normed hidden state."""
    values: dict
    """point -> the tensor there at the module's first call."""
    calls: dict
    """point -> how many times its module ran (zamba2's shared blocks run several times)."""
    layers: list = field(default_factory=list)
    """Per layer: its output `[batch, seq, d_model]` (when asked for)."""
    rests: list = field(default_factory=list)
    """Per layer: what it returns besides its hidden state (a tuple tail, or None for a bare tensor)."""


def full_run(hm, ids: torch.Tensor, points=(), layers: bool = False) -> FullRun:
    """One unpatched forward of `ids` without a cache, recording `points` (and, with `layers`, every decoder
    layer's output)."""
    run = FullRun(None, {}, {p: 0 for p in points})

    def recorder(point):
        def fn(tensor):
            run.calls[point] += 1
            run.values.setdefault(point, tensor.clone())  # a hook that returns None changes nothing

        return fn

    fns = {p: recorder(p) for p in points}
    handles = []
    if layers:
        for layer in hm.module(hm.family_spec.layers):
            def keep(m, a, output):
                run.layers.append(hook_io.first(output).clone())
                run.rests.append(tuple(output[1:]) if isinstance(output, (tuple, list)) else None)

            handles.append(layer.register_forward_hook(keep))
    try:
        with torch.no_grad(), hooked(hm, fns):
            run.hidden = forward(hm, ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return run


def unembed_rows(hm, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`[rows, read, vocab]` logits at `positions` (`[rows, read]`, indices into `hidden`'s seq axis)."""
    index = positions.to(hidden.device)[..., None].expand(-1, -1, hidden.shape[-1])
    with torch.no_grad():
        return hm.unembed(torch.gather(hidden, 1, index)).float()


class _Replay(nn.Module):
    """Stands in for a decoder layer whose output is known: returns it without computing. Attribute look-ups the
    model's layer loop makes (a layer's type, index) fall through to the layer it replaces."""

    def __init__(self, layer: nn.Module, value: torch.Tensor, rest):
        super().__init__()
        object.__setattr__(self, "_layer", layer)
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_rest", rest)

    def forward(self, *args, **kwargs):
        value = object.__getattribute__(self, "_value")
        rest = object.__getattribute__(self, "_rest")
        return value if rest is None else (value, *rest)

    def __getattr__(self, name):
        return getattr(object.__getattribute__(self, "_layer"), name)


@contextmanager
def replayed(hm, track: TrackRuns, below: int, rows: torch.Tensor, start: int, stop: int):
    """Layers `0 .. below - 1` return the base run's outputs for `rows` at positions [start, stop)."""
    layers = hm.module(hm.family_spec.layers)
    originals = [layers[i] for i in range(below)]
    try:
        for i, layer in enumerate(originals):
            layers[i] = _Replay(layer, track.hidden[i][rows, start:stop], track.rests[i])
        yield
    finally:
        for i, layer in enumerate(originals):
            layers[i] = layer


def clone_rows(cache, rows: torch.Tensor):
    """A new cache holding rows `rows` of `cache` (which stays as it is): every layer copied, its tensors
    index-selected by the layer's own `reorder_cache`, its bookkeeping containers copied so neither sees the
    other's updates."""
    twin = copy.copy(cache)
    twin.layers = []
    for layer in cache.layers:
        new = copy.copy(layer)
        for key, value in vars(layer).items():
            if isinstance(value, (dict, list)):
                setattr(new, key, copy.copy(value))
        device = getattr(layer, "device", None)
        new.reorder_cache(rows.to(device) if isinstance(device, torch.device) else rows)
        twin.layers.append(new)
    return twin


class BaseCache:
    """The base run of one track through the model's own cache, advanced in segments to each start in turn."""

    def __init__(self, hm, ids: torch.Tensor):
        self.hm, self.ids, self.cache, self.at = hm, ids, None, 0

    def at_position(self, start: int):
        """The cache after the base run's first `start` tokens (starts must come in ascending order)."""
        if start > self.at:
            if self.cache is None:
                self.cache = cache_ops.new_cache(self.hm, self.ids.shape[0])
            kwargs = cache_ops.forward_kwargs(self.hm, self.cache, self.at, start, self.ids.shape[0])
            with torch.no_grad():
                forward(self.hm, self.ids[:, self.at:start], **kwargs)
            self.at = start
        return self.cache


def _write_fns(units: list[Unit], start: int, stop: int) -> dict:
    """Hook functions that put every unit's writes at positions in [start, stop) into its own row."""
    by_point: dict = defaultdict(list)
    for r, unit in enumerate(units):
        for write in unit.writes:
            for i, p in enumerate(write.positions):
                if start <= p < stop:
                    by_point[write.point].append((write.channels, r, p - start, write.values[i]))
    fns = {}
    for point, entries in by_point.items():
        groups: dict = defaultdict(list)
        for channels, r, j, value in entries:
            groups[(None, None) if channels is None else (channels.start, channels.stop)].append((r, j, value))
        plan = [
            (slice(*key) if key != (None, None) else slice(None), torch.tensor([e[0] for e in items]),
             torch.tensor([e[1] for e in items]), torch.stack([e[2] for e in items]))
            for key, items in groups.items()
        ]

        def fn(tensor, plan=plan):
            out = tensor.clone()
            for channels, r, j, values in plan:
                out[r.to(out.device), j.to(out.device), channels] = values.to(out.device, out.dtype)
            return out

        fns[point] = fn
    return fns


def _write_states(hm, cache, units: list[Unit], position: int) -> None:
    """Every unit's state writes right after `position`, into its own row of `cache`."""
    by_layer: dict = defaultdict(list)
    for r, unit in enumerate(units):
        for layer, p, state in unit.states:
            if p == position:
                by_layer[layer].append((r, state))
    for layer, items in by_layer.items():
        rows = torch.tensor([r for r, _ in items])
        states = [s for _, s in items]
        recurrent = None if states[0].recurrent is None else torch.cat([s.recurrent for s in states])
        state = states[0].replace(recurrent=recurrent, conv=torch.cat([s.conv for s in states]))
        cache_ops.write(hm, cache, layer, state, rows)


def pieces(units: list[Unit], start: int, stop: int) -> list[tuple[int, int]]:
    """[a, b) segments of [start, stop) that end right after every state write after `start`."""
    cuts = sorted({p + 1 for u in units for _, p, _ in u.states if start < p + 1 < stop} | {stop})
    out, a = [], start
    for b in cuts:
        out.append((a, b))
        a = b
    return out


def run_units(hm, track: TrackRuns, units: list[Unit], cache) -> tuple[torch.Tensor, int]:
    """Continue stacked units (one shared start and first layer) from `cache` (None: from scratch); returns
    `([rows, read, vocab]` logits at each row's read positions, layer-token-rows computed).

    Units whose state writes fall inside the run (not right before its start) are run in pieces through the
    cache; the sweep gives them first layer 0, because a replayed layer's cache would lag behind the others'."""
    start, layer = units[0].start, units[0].layer
    rows = torch.tensor([u.row for u in units])
    stop = max(track.lengths[b] for b in rows.tolist())
    want = track.read_positions(rows)
    segments = pieces(units, start, stop)
    if cache is None and any(u.states for u in units):
        cache = cache_ops.new_cache(hm, len(units))
    if cache is not None and start > 0:
        _write_states(hm, cache, units, start - 1)
    finals, work = [], 0
    for a, b in segments:
        ids = track.base_ids[rows, a:b].to(hm.device)
        if cache is None:
            kwargs = {"use_cache": False}
        else:
            kwargs = cache_ops.forward_kwargs(hm, cache, a, b, len(units))
        with torch.no_grad(), replayed(hm, track, layer, rows, a, b), hooked(hm, _write_fns(units, a, b)):
            finals.append(forward(hm, ids, **kwargs))
        work += len(units) * (b - a) * (hm.n_layers - layer)
        if cache is not None and b < stop:
            _write_states(hm, cache, units, b - 1)
    hidden = torch.cat(finals, dim=1)
    # A read before the start (teacher forcing past a state patched after the prompt) is the base run's.
    before = want < start
    reads = unembed_rows(hm, hidden, (want - start).clamp(min=0))
    if before.any():
        reads = torch.where(before[..., None].to(reads.device), track.base_reads[rows].to(reads), reads)
    return reads, work
