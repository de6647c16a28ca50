"""Edge attribution: the first-order effect of every edge sender -> receiver, from one backward.

    scores = edge_scores(hm, clean, corrupted, LogitDiff(answers, wrong), method="eap")
    scores.values          # [sender, receiver]; 0 where the edge does not exist

The score of edge u -> v is (source_u - base_u) . d metric / d input_v, summed over rows and positions: the
first-order change of the metric when v alone receives u's value from the source run instead of the base run
(path patching of that one edge). `input_v` is the residual v reads, before its norm, taken for v alone
(`mechhybrid.circuits.run`): a zero tensor requiring grad is added to it and the gradient read there.

`direction="noise"` (default, EAP as in Hanna et al. 2024): the base run is the clean prompts, the source the
corrupted ones, so a score estimates what corrupting that edge does (important edges score negative for a metric
the clean run maximises); `"denoise"`: base corrupted, source clean. Values are normalised as the metric is
(`LogitDiff`: divided by clean - corrupted), `raw` keeps the metric's units.

Methods: `eap`, the gradient on the base run (work: 3 forward-equivalents: the source forward, the base forward
and its backward); `eap-ig`, the gradient averaged over `ig_steps` midpoints of the straight path from the base to
the source token embeddings (EAP-IG, Hanna et al. 2024), times the same differences (work 2 + 2 x steps). One
forward of the prompts on every track of the metric counts 1, one backward through it 1.

`positional=True` keeps the position axis: the score of (u -> v, p) is the same product at position p alone (v's
input there, summed over rows), so summing over p gives the edge's score. Position p is the token index in each
track (prompt + the metric's suffix), shared by rows, so every prompt must have one length; a track's padding
scores 0. Same forwards and backward; the scores take `[sender, receiver, position]` floats.

Axis names: `sender`, `receiver`, `batch`, `seq`, `d_model`, `read`, `vocab`, `position` (= `seq`, kept).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from mechhybrid.circuits.run import edge_forward, embedding_path
from mechhybrid.circuits.wiring import Wiring, discover
from mechhybrid.errors import MechHybridError
from mechhybrid.tracing.attribution import track_inputs
from mechhybrid.tracing.metrics import AnswerRank, as_metric, check_metric, normalising_gap
from mechhybrid.tracing.pairs import as_pairs
from mechhybrid.tracing.sweep import DIRECTIONS

__all__ = ["EDGE_METHODS", "EdgeScores", "edge_scores", "Setup", "setup_runs", "collect", "check_one_length",
           "track_width"]

EDGE_METHODS = ("eap", "eap-ig")


@dataclass
class EdgeScores:
    """Every edge's score, with what it was computed from."""

    wiring: Wiring
    values: torch.Tensor
    """`[sender, receiver]` float32, normalised as the metric (0 where the edge does not exist); positional
    scores: `[sender, receiver, position]`."""
    raw: torch.Tensor
    """The same in the metric's own units."""
    clean_metric: float
    corrupted_metric: float
    metric: str
    normalised: bool
    direction: str
    method: str
    work: float
    """Forward-equivalents spent (module docstring)."""

    def __post_init__(self):
        if self.values.shape != self.raw.shape or self.values.ndim not in (2, 3) \
                or tuple(self.values.shape[:2]) != tuple(self.wiring.valid.shape):
            raise MechHybridError(f"edge scores of shape {tuple(self.values.shape)} / {tuple(self.raw.shape)} do "
                                  f"not fit {tuple(self.wiring.valid.shape)} (sender x receiver [x position])")

    @property
    def positional(self) -> bool:
        """Whether the scores keep the position axis (`[sender, receiver, position]`)."""
        return self.values.ndim == 3

    @property
    def valid(self) -> torch.Tensor:
        """Which entries of `values` are edges: the wiring's, at every position when positional."""
        valid = self.wiring.valid
        return valid[:, :, None].expand_as(self.values) if self.positional else valid

    def summed(self) -> "EdgeScores":
        """The scores summed over positions (the non-positional scores); itself when not positional."""
        if not self.positional:
            return self
        return replace(self, values=self.values.sum(-1), raw=self.raw.sum(-1))


@dataclass
class Setup:
    """The prompts of a circuit computation: its tracks (prompt + the metric's suffix), the metric, the pairs."""

    hm: object
    wiring: Wiring
    metric: object
    pairs: object
    tracks: list
    """`_Track`s with base = clean, source = corrupted."""


def setup_runs(hm, clean, corrupted, metric, wiring: Wiring | None = None) -> Setup:
    """The pairs checked, the metric bound to them, the wiring discovered (or the one given)."""
    pairs = as_pairs(hm, clean, corrupted)
    metric = as_metric(metric)
    if isinstance(metric, AnswerRank):
        raise MechHybridError("AnswerRank is a count (not differentiable): edge attribution needs a differentiable "
                              "metric such as LogitDiff, AnswerProb or KLToClean")
    tracks = track_inputs(pairs.clean, pairs.corrupted, metric.tracks(pairs.batch))
    return Setup(hm, wiring if wiring is not None else discover(hm), metric, pairs, tracks)


def collect(setup: Setup, role: str, track: int, grad: bool, embed_mix=None):
    """One forward of the `role` ("clean" | "corrupted") prompts of one track: (`[batch, read, vocab]` logits,
    `[sender, batch, seq, d_model]` sender values, per receiver the zero tensor added to its input (grad only))."""
    hm, wiring, t = setup.hm, setup.wiring, setup.tracks[track]
    ids = t.base if role == "clean" else t.source
    values = [None] * len(wiring.senders)
    leaves = [None] * len(wiring.receivers)

    def on_senders(indices, vals):
        for k, i in enumerate(indices):
            values[i] = vals[k].detach()

    def delta(j, residual):
        if not grad:
            return None
        leaves[j] = torch.zeros_like(residual, requires_grad=True)
        return leaves[j]

    with torch.set_grad_enabled(grad):
        reads = edge_forward(hm, wiring, ids, t.reads, on_senders, delta, embed_mix)
    return reads, torch.stack(values), leaves


def _score(setup: Setup, reads: list, reference: tuple) -> torch.Tensor:
    value = check_metric(setup.metric.score(tuple(r[None] for r in reads), reference), 1, setup.metric.name)[0]
    return value


def _backward(value: torch.Tensor, leaves: list) -> list:
    if not value.requires_grad:
        raise MechHybridError("the metric does not depend differentiably on the logits (its value carries no "
                              "gradient): edge attribution needs a differentiable metric")
    grads = torch.autograd.grad(value, leaves, allow_unused=True)
    return [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads)]


def _path_mix(base_embed: torch.Tensor, source_embed: torch.Tensor, alpha: float):
    return lambda t: t + alpha * (source_embed - base_embed).to(t)


def _embeddings(setup: Setup, role: str, track: int) -> torch.Tensor:
    t = setup.tracks[track]
    ids = (t.base if role == "clean" else t.source).to(setup.hm.device)
    with torch.no_grad():
        return setup.hm.module(embedding_path(setup.hm))(ids)


def edge_scores(hm, clean, corrupted, metric, method: str = "eap", ig_steps: int = 5, direction: str = "noise",
                wiring: Wiring | None = None, positional: bool = False) -> EdgeScores:
    """Score every edge (module docstring). `clean` / `corrupted`: pairs as for `mechhybrid.tracing.sweep`;
    `positional`: one score per edge and position (prompts of one length)."""
    if method not in EDGE_METHODS:
        raise MechHybridError(f"unknown edge attribution method {method!r}; choose one of {', '.join(EDGE_METHODS)}")
    if direction not in DIRECTIONS:
        raise MechHybridError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    if method == "eap-ig" and (not isinstance(ig_steps, int) or isinstance(ig_steps, bool) or ig_steps < 1):
        raise MechHybridError(f"ig_steps must be an integer >= 1, got {ig_steps!r}")
    setup = setup_runs(hm, clean, corrupted, metric, wiring)
    if positional:
        check_one_length(setup, "positional edges")
    with torch.enable_grad():  # the caller may be under no_grad
        return _edge_scores(setup, method, ig_steps, direction, positional)


def check_one_length(setup: Setup, what: str) -> None:
    """A one-line error unless every prompt has one length (positions are shared by rows)."""
    lengths = sorted(set(setup.pairs.lengths))
    if len(lengths) != 1:
        raise MechHybridError(f"{what} need prompts of one length (positions are shared by rows); got lengths "
                              f"{lengths}")


def track_width(setup: Setup) -> int:
    """The position axis of positional edges: the longest track (prompt + the metric's suffix)."""
    return max(t.base.shape[1] for t in setup.tracks)


def _contract(diff: torch.Tensor, grad: torch.Tensor, width: int | None) -> torch.Tensor:
    """`[sender, receiver]` (or, with a width, `[sender, receiver, position]`) sums of diff . grad in float64."""
    if width is None:
        return torch.einsum("ubpd,vbpd->uv", diff.double(), grad.double())
    out = torch.einsum("ubpd,vbpd->uvp", diff.double(), grad.double())
    return torch.nn.functional.pad(out, (0, width - out.shape[-1]))


def _edge_scores(setup: Setup, method: str, ig_steps: int, direction: str, positional: bool) -> EdgeScores:
    base_role, source_role = ("clean", "corrupted") if direction == "noise" else ("corrupted", "clean")
    n = len(setup.tracks)
    source = [collect(setup, source_role, k, grad=False) for k in range(n)]
    base = [collect(setup, base_role, k, grad=method == "eap") for k in range(n)]
    work = 2.0
    reads = {base_role: [b[0].detach() for b in base], source_role: [s[0] for s in source]}
    reference = tuple(r[None] for r in reads["clean"])
    clean_raw = float(_score(setup, reads["clean"], reference))
    corrupted_raw = float(_score(setup, reads["corrupted"], reference))
    if setup.metric.normalised:
        normalising_gap(clean_raw, corrupted_raw, setup.metric.name)
    if method == "eap":
        value = _score(setup, [b[0] for b in base], reference)
        grads = _backward(value, [leaf for b in base for leaf in b[2]])
        per_track = [grads[k * len(base[0][2]):(k + 1) * len(base[0][2])] for k in range(n)]
        work += 1
    else:
        per_track = _integrated(setup, base_role, source_role, reference, ig_steps)
        work += 2 * ig_steps
    width = track_width(setup) if positional else None
    raw = torch.zeros(setup.wiring.valid.shape + ((width,) if positional else ()), dtype=torch.float64)
    for k in range(n):
        diff = source[k][1] - base[k][1]  # [sender, batch, seq, d_model]
        g = torch.stack(per_track[k])  # [receiver, batch, seq, d_model]
        raw += _contract(diff, g, width)
    valid = setup.wiring.valid[:, :, None] if positional else setup.wiring.valid
    raw = torch.where(valid, raw, torch.zeros((), dtype=raw.dtype)).float()
    # An effect (a difference of the metric) is normalised by the gap alone.
    values = raw / (clean_raw - corrupted_raw) if setup.metric.normalised else raw
    return EdgeScores(setup.wiring, values.float(), raw, clean_raw, corrupted_raw, setup.metric.name,
                      setup.metric.normalised, direction, method, work)


def _integrated(setup: Setup, base_role: str, source_role: str, reference: tuple, steps: int) -> list:
    """Per track: per receiver, the gradient averaged over the embedding path's midpoints."""
    n = len(setup.tracks)
    embeds = [(_embeddings(setup, base_role, k), _embeddings(setup, source_role, k)) for k in range(n)]
    total = None
    for s in range(steps):
        alpha = (s + 0.5) / steps
        runs = [collect(setup, base_role, k, grad=True, embed_mix=_path_mix(*embeds[k], alpha)) for k in range(n)]
        value = _score(setup, [r[0] for r in runs], reference)
        grads = _backward(value, [leaf for r in runs for leaf in r[2]])
        width = len(runs[0][2])
        step = [[g / steps for g in grads[k * width:(k + 1) * width]] for k in range(n)]
        total = step if total is None else [[a + b for a, b in zip(x, y)] for x, y in zip(total, step)]
    return total
