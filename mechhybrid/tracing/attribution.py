"""Attribution patching: the effect of every patch of a sweep, estimated from gradients instead of one run each.

    result = attribute(hm, clean_ids, corrupted_ids, sites="components", metric=LogitDiff(answers, wrong))
    result.values            # [site, position], labelled exactly as sweep(...) with the same arguments

For a site group patched at a position column the estimate of the patched run's metric is

    metric(base) + sum over the group's sites, the rows and the column's positions of
                   (source value - base value) . d metric / d value

(`values` normalised as the sweep's when the metric is). The gradient is taken where the value flows
(`mechhybrid.tracing.gradients`): a hook point's tensor for activations (a head: its slice of the output
projection's input), the state carried in the cache after the token for `StateSite`s. Methods (`METHODS`):

- `atp`: first order (Nanda 2022; Syed et al. 2023): the gradient on the base run; two forwards and one backward
  (and as many again for state sites, which go through the cache in segments).
- `atp*`: AtP* (Kramar et al. 2024, arXiv 2403.00745). Its QK fix, where it is exact for our sites
  (`mechhybrid.tracing.qkfix`): for a residual site at the input of a layer with softmax attention (and the
  embeddings before a first attention layer), the first-order term of that attention's queries and keys is
  replaced by the exact change of its softmax times the gradient at its probabilities. Then GradDrop (sec. 3.2):
  one more backward per decoder layer l with the gradient through layer l's residual contribution stopped;
  the score is sum_l |estimate_l| / (L - 1), a magnitude, reported with the sign of the QK-fixed estimate.
  `atp*` values rank effects by size (what the paper estimates); they are not a better estimate of the metric.
- `ig`: integrated gradients along the straight path from the base to the source input embeddings (EAP-IG,
  Hanna et al. 2024; Marks et al. 2024): the gradient averaged over `ig_steps` points (midpoints
  alpha = (k + 1/2) / steps), times the same activation difference. Where the path is the patch itself (the
  embeddings at every position) it converges to the exact effect.

`work` counts forward-equivalents: one forward of the base prompts on every track of the metric is 1, and so is
one backward through it (only activation gradients are formed: one matrix product per weight, as in the
forward). atp: 3 (6 with state sites); atp*: 3 + L; ig: 2 + 2 x steps (twice that with state sites).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.tracing import qkfix
from mechhybrid.tracing.gradients import Switch, dropped_layer, forward_reads, gradients, state_forward
from mechhybrid.tracing.metrics import AnswerRank, as_metric, check_metric, normalise, normalising_gap
from mechhybrid.tracing.pairs import as_pairs, resolve_positions
from mechhybrid.tracing.plan import padded
from mechhybrid.tracing.sites import Embeddings, resolve, select_sites
from mechhybrid.tracing.sweep import DIRECTIONS, SweepResult

__all__ = ["METHODS", "attribute"]

METHODS = ("atp", "atp*", "ig")
"""`atp`: first order; `atp*`: AtP*'s QK fix and GradDrop; `ig`: integrated gradients (module docstring)."""

_STRATEGY = {
    "atp": "atp: attribution patching, first order: (source - base) . gradient of the metric on the base run",
    "atp*": "atp*: AtP*'s QK fix (exact softmax of the attention a residual site feeds) and GradDrop (one backward per "
            "layer with its gradient stopped; sum |estimate| / (L - 1), signed by the QK-fixed estimate)",
    "ig": "ig: integrated gradients, (source - base) . gradient averaged along the input-embedding path, {} midpoints",
}


@dataclass
class _Track:
    """One track of the metric: base and source prompts plus its suffix, right-padded, and the read positions."""

    base: torch.Tensor
    source: torch.Tensor
    reads: torch.Tensor
    """`[batch, read]` absolute positions read per row (a row with fewer reads repeats its last one)."""


def track_inputs(base, source, tracks) -> list[_Track]:
    """Per metric track: the base and source prompts with the track's suffix appended, padded, and the positions
    each row reads (shared with `mechhybrid.circuits`, which scores the same tracks)."""
    out = []
    for track in tracks:
        lengths = [len(p) + len(s) for p, s in zip(base, track.suffix)]
        width = max(track.reads)
        reads = torch.tensor([[n - r + min(j, r - 1) for j in range(width)] for n, r in zip(lengths, track.reads)])
        out.append(_Track(
            padded([tuple(p) + tuple(s) for p, s in zip(base, track.suffix)]),
            padded([tuple(p) + tuple(s) for p, s in zip(source, track.suffix)]), reads,
        ))
    return out


def _check(direction: str, method: str, ig_steps: int, metric) -> None:
    if direction not in DIRECTIONS:
        raise MechHybridError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    if method not in METHODS:
        raise MechHybridError(f"unknown attribution method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "ig" and (not isinstance(ig_steps, int) or ig_steps < 1):
        raise MechHybridError(f"ig_steps must be an integer >= 1, got {ig_steps!r}")
    if isinstance(metric, AnswerRank):
        raise MechHybridError("AnswerRank is a count (not differentiable): attribution needs a differentiable "
                              "metric such as LogitDiff, AnswerProb or KLToClean")


class _Setup:
    """Everything an attribution reads: sites, positions, tracks, and the source run's values."""

    def __init__(self, hm, pairs, metric, groups, columns, direction: str):
        self.hm, self.metric, self.groups, self.columns = hm, metric, groups, columns
        base, source = (pairs.corrupted, pairs.clean) if direction == "denoise" else (pairs.clean, pairs.corrupted)
        self.tracks = track_inputs(base, source, metric.tracks(pairs.batch))
        self.width = max(pairs.lengths)
        self.points = sorted({r.point for g in groups for r in g if r.point is not None})
        self.layers = sorted({r.state_layer for g in groups for r in g if r.state_layer is not None})
        self.state_positions = sorted({p for column in columns.table for row in column for p in row})
        self.selection = torch.zeros(len(columns.table), len(self.tracks[0].base), self.width, dtype=torch.float64)
        """`[column, batch, seq]` 1 where a column patches that row's position."""
        where = [(c, b, p) for c, column in enumerate(columns.table) for b, row in enumerate(column) for p in row]
        self.selection[tuple(torch.tensor(where).T)] = 1.0
        self.work = 0.0
        self.extra: list = []
        """Points recorded besides the sites' (the embeddings, for integrated gradients)."""
        self.qk = None
        """The QK fix's plan (`mechhybrid.tracing.qkfix`), for atp*."""
        self.switch = Switch()
        """GradDrop's switch, for atp*."""

    def count(self, forwards: float) -> None:
        """Add `forwards` track-forwards (or backwards through them), in forward-equivalents."""
        self.work += forwards / len(self.tracks)

    def score(self, reads, clean) -> torch.Tensor:
        return check_metric(self.metric.score(tuple(r[None] for r in reads), clean), 1, self.metric.name)[0]


def _passes(setup: _Setup, role: str, grad: bool, mixes=None) -> "_Pass":
    """Every track's forward of the `role` ("base" | "source") prompts (and its state forward, with state sites).
    `mixes[k]()`: a fresh integrated-gradients replacement of track k's embeddings, for each forward."""
    hm, out = setup.hm, _Pass()
    for k, track in enumerate(setup.tracks):
        ids = getattr(track, role)
        mix = (lambda: None) if mixes is None else mixes[k]
        with qkfix.captured(hm, setup.qk, (role, k), grad):
            read, taps = forward_reads(hm, ids, track.reads, setup.points + setup.extra, grad, mix())
        setup.count(1)
        if setup.layers:
            state_read, state_taps = state_forward(hm, ids, setup.state_positions, setup.layers, track.reads,
                                                   grad, mix())
            setup.count(1)
            out.states.append(state_taps)
            # Both forwards are the same run: the value of one, the gradient paths of both.
            read = read + (state_read - state_read.detach())
        out.reads.append(read)
        out.taps.append(taps)
    return out


@dataclass
class _Pass:
    reads: list = field(default_factory=list)
    """Per track: `[batch, read, vocab]` logits."""
    taps: list = field(default_factory=list)
    """Per track: the activation forward's Taps."""
    states: list = field(default_factory=list)
    """Per track: the state forward's Taps (empty without state sites)."""

    def detached(self) -> list:
        return [r.detach() for r in self.reads]


def _leaves(setup: _Setup, run: _Pass) -> list[tuple]:
    """(key, zero tensor) for every gradient wanted: activations and states summed over tracks by key, the QK
    fix's per track."""
    out = []
    for k, taps in enumerate(run.taps):
        for point, deltas in taps.deltas.items():
            out += [(("act", point, i), d) for i, d in enumerate(deltas)]
    for taps in run.states:
        out += [(("state", *key), d) for key, d in taps.state_deltas.items()]
    return out + qkfix.leaves(setup.qk)


def _backward(setup: _Setup, value: torch.Tensor, leaves: list[tuple], retain: bool) -> dict:
    grads = gradients(value, [d for _, d in leaves], retain)
    setup.count(len(setup.tracks) * (1 + bool(setup.layers)))
    out: dict = {}
    for (key, _), grad in zip(leaves, grads):
        if key[0] == "act":
            grad = grad[:, : setup.width]
        out[key] = out[key] + grad if key in out else grad
    return out


def _site_effects(setup: _Setup, base: _Pass, source: _Pass, grads: dict) -> torch.Tensor:
    """`[group, column]`: sum over each group's sites, rows and column positions of (source - base) . grad."""
    width, batch = setup.width, setup.tracks[0].base.shape[0]
    sites: dict = {}  # each site once, in order of first appearance
    for group in setup.groups:
        for site in group:
            sites.setdefault(site.name, site)
    index = {name: i for i, name in enumerate(sites)}
    cells = torch.zeros(len(sites), batch, width)  # [site, batch, seq]: the effect at each row and position
    for site, per in zip(sites.values(), cells):
        if site.point is not None:
            channels = site.channels or slice(None)
            first = source.taps[0].values[site.point][0][:, :width, channels]
            for i, value in enumerate(base.taps[0].values[site.point]):
                diff = first - value[:, :width, channels]
                per += (diff * grads[("act", site.point, i)][..., channels]).sum(-1)
        else:
            for (layer, p, name), value in base.states[0].states.items():
                if layer == site.state_layer:
                    diff = source.states[0].states[(layer, p, name)] - value
                    per[:, p] += (diff * grads[("state", layer, p, name)]).flatten(1).sum(1)
    # One product instead of a Python sum per (group, column, row): the membership of sites in groups times the
    # cells summed over each column's positions (float64, as the Python floats summed them).
    membership = torch.zeros(len(setup.groups), len(sites), dtype=torch.float64)
    for g, group in enumerate(setup.groups):
        for site in group:
            membership[g, index[site.name]] += 1
    per_column = cells.double().flatten(1) @ setup.selection.flatten(1).T
    return (membership @ per_column).float()


def _differentiable(value: torch.Tensor, name: str) -> torch.Tensor:
    if not value.requires_grad:
        raise MechHybridError(f"metric {name} does not depend differentiably on the logits (its value carries no "
                              "gradient): attribution needs a differentiable metric")
    return value


def _first_order(setup: _Setup, base: _Pass, source: _Pass, clean: tuple, method: str) -> torch.Tensor:
    """atp, or atp*: the QK-fixed first-order estimate, then GradDrop's magnitude with its sign."""
    value = _differentiable(setup.score(base.reads, clean), setup.metric.name)
    leaves = _leaves(setup, base)
    if method == "atp":
        return _site_effects(setup, base, source, _backward(setup, value, leaves, retain=False))
    switch, n_layers = setup.switch, setup.hm.n_layers
    estimates = []
    for layer in (None, *range(n_layers)):
        switch.layer = layer
        grads = _backward(setup, value, leaves, retain=layer != n_layers - 1)
        estimates.append(_site_effects(setup, base, source, grads) + qkfix.correction(setup, grads))
    switch.layer = None
    magnitude = torch.stack(estimates[1:]).abs().sum(0) / max(n_layers - 1, 1)
    return torch.where(estimates[0] < 0, -magnitude, magnitude)


def _integrated(setup: _Setup, base: _Pass, source: _Pass, clean: tuple, steps: int) -> torch.Tensor:
    """The gradient averaged over `steps` midpoints of the embedding path, times (source - base)."""
    embed = setup.extra[0]
    total: dict = {}
    for k in range(steps):
        alpha = (k + 0.5) / steps
        mixes = [
            lambda t=t: {embed: _path(base.taps[t].values[embed][0], source.taps[t].values[embed][0], alpha)}
            for t in range(len(setup.tracks))
        ]
        run = _passes(setup, "base", True, mixes)
        value = _differentiable(setup.score(run.reads, clean), setup.metric.name)
        grads = _backward(setup, value, _leaves(setup, run), retain=False)
        for key, grad in grads.items():
            total[key] = total[key] + grad / steps if key in total else grad / steps
    return _site_effects(setup, base, source, total)


def _path(base: torch.Tensor, source: torch.Tensor, alpha: float):
    """Replace the embeddings (in the calls' order, whatever their length) by base + alpha (source - base)."""
    offset = [0]

    def mix(tensor, call):
        start = offset[0]
        offset[0] += tensor.shape[1]
        stop = offset[0]
        return tensor + alpha * (source[:, start:stop] - base[:, start:stop]).to(tensor)

    return mix


def attribute(
    hm, clean, corrupted, sites, metric, positions=None, direction: str = "denoise", method: str = "atp",
    ig_steps: int = 5, clean_mask=None, corrupted_mask=None,
) -> SweepResult:
    """Estimate every entry of `sweep(hm, clean, corrupted, sites, metric, positions, direction)` from gradients
    (the module docstring); the result is labelled as the sweep's, entry for entry. `method`: one of METHODS;
    `ig_steps`: interpolation points of `ig`."""
    _check(direction, method, ig_steps, metric)
    with torch.enable_grad():  # the caller may be under no_grad; the forwards set their own mode
        return _attribute(hm, clean, corrupted, sites, metric, positions, direction, method, ig_steps, clean_mask,
                          corrupted_mask)


def _attribute(hm, clean, corrupted, sites, metric, positions, direction, method, ig_steps, clean_mask,
               corrupted_mask) -> SweepResult:
    pairs = as_pairs(hm, clean, corrupted, clean_mask, corrupted_mask)
    metric = as_metric(metric)
    groups = [[resolve(hm, s) for s in g] for g in select_sites(hm, sites)]
    columns = resolve_positions(positions, pairs.lengths)
    setup = _Setup(hm, pairs, metric, groups, columns, direction)
    if method == "ig":
        setup.extra = [resolve(hm, Embeddings()).point]
    if method == "atp*":
        setup.qk = qkfix.plan(hm, groups)
    source = _passes(setup, "source", grad=False)
    graded = method != "ig"
    with dropped_layer(hm, setup.switch) if method == "atp*" else nullcontext():
        base = _passes(setup, "base", grad=graded)
    base_reads = base.detached()
    clean_reads, corrupted_reads = (source.reads, base_reads) if direction == "denoise" else (base_reads, source.reads)
    reference = tuple(r[None] for r in clean_reads)
    clean_raw = float(setup.score(clean_reads, reference))
    corrupted_raw = float(setup.score(corrupted_reads, reference))
    if metric.normalised:
        normalising_gap(clean_raw, corrupted_raw, metric.name)
    if method == "ig":
        effects = _integrated(setup, base, source, reference, ig_steps)
    else:
        effects = _first_order(setup, base, source, reference, method)
    values = (corrupted_raw if direction == "denoise" else clean_raw) + effects
    if metric.normalised:
        values = normalise(values, clean_raw, corrupted_raw, metric.name)
    strategy = _STRATEGY[method].format(ig_steps)
    if setup.layers:
        strategy += "; states through the cache in segments ending after each patched token"
    return SweepResult(
        values=values.float(), sites=tuple("+".join(r.name for r in g) for g in groups), positions=columns.labels,
        row_positions=columns.table, clean_metric=clean_raw, corrupted_metric=corrupted_raw, metric=metric.name,
        normalised=metric.normalised, direction=direction, strategy=strategy + ".", work=setup.work,
    )
