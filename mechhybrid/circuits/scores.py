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
forward of the prompts on every track of the metric counts 1, one backward through it 1. EAP-IG runs its two ends
as one forward (both without grad) and its midpoints stacked along the batch (`IG_TOKENS` a forward), each
stack with one backward. While scoring, the model's parameters require no grad (autograd records only the paths
to the receivers); each gets its own flag back.

`positional=True` keeps the position axis: the score of (u -> v, p) is the same product at position p alone (v's
input there, summed over rows), so summing over p gives the edge's score. Position p is the token index in each
track (prompt + the metric's suffix), shared by rows, so every prompt must have one length; a track's padding
scores 0. Same forwards and backward; the scores take `[sender, receiver, position]` floats.

Axis names: `sender`, `receiver`, `batch`, `seq`, `d_model`, `read`, `vocab`, `position` (= `seq`, kept).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from mechhybrid.circuits.run import edge_forward, embedding_path, sender_values
from mechhybrid.circuits.wiring import Wiring, discover
from mechhybrid.errors import MechHybridError
from mechhybrid.tracing.attribution import track_inputs
from mechhybrid.tracing.metrics import AnswerRank, as_metric, check_metric, normalising_gap
from mechhybrid.tracing.pairs import as_pairs
from mechhybrid.tracing.sweep import DIRECTIONS

__all__ = ["EDGE_METHODS", "EdgeScores", "edge_scores", "Setup", "setup_runs", "collect", "collect_ends",
           "sender_stack", "check_one_length", "track_width"]

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


def collect(setup: Setup, role: str, track: int, grad: bool, embed_mix=None, stack: int = 1, senders: bool = True):
    """One forward of the `role` ("clean" | "corrupted") prompts of one track, `stack` copies of them along the
    batch (the rows of copy c are `c * batch + b`): (`[stack * batch, read, vocab]` logits, the senders' tensors
    as recorded (`{indices: tensor}` per point, `mechhybrid.circuits.run`; None without `senders`), per receiver
    the zero tensor added to its input (grad only))."""
    hm, wiring, t = setup.hm, setup.wiring, setup.tracks[track]
    ids = (t.base if role == "clean" else t.source).repeat(stack, 1)
    points = {} if senders else None
    leaves = [None] * len(wiring.receivers)

    def on_senders(indices, tensor):
        points[tuple(indices)] = tensor.clone()  # kept past the hook: the model may reuse its buffer

    def delta(j, residual):
        if not grad:
            return None
        leaves[j] = torch.zeros_like(residual, requires_grad=True)
        return leaves[j]

    with torch.set_grad_enabled(grad):
        reads = edge_forward(hm, wiring, ids, t.reads.repeat(stack, 1), on_senders if senders else None, delta,
                             embed_mix)
    return reads, points, leaves


def collect_ends(setup: Setup, track: int, record: tuple = ("clean", "corrupted")) -> dict:
    """The clean and the corrupted prompts of one track in one forward, stacked along the batch (no grad; a pair's
    prompts have one length, so the two halves share their padding): role -> (`[batch, read, vocab]` logits, the
    senders' tensors (`collect`; None for a role not in `record`))."""
    hm, wiring, t = setup.hm, setup.wiring, setup.tracks[track]
    batch = t.base.shape[0]
    halves = {"clean": slice(0, batch), "corrupted": slice(batch, 2 * batch)}
    points = {role: {} for role in record}

    def on_senders(indices, tensor):
        for role in record:
            points[role][tuple(indices)] = tensor[halves[role]].clone()

    with torch.no_grad():
        reads = edge_forward(hm, wiring, torch.cat([t.base, t.source]), t.reads.repeat(2, 1),
                             on_senders if record else None, lambda j, residual: None)
    return {role: (reads[rows], points.get(role)) for role, rows in halves.items()}


def sender_stack(setup: Setup, points: dict) -> torch.Tensor:
    """`[sender, batch, seq, d_model]` every sender's values from a run's recorded tensors (`collect`)."""
    out = [None] * len(setup.wiring.senders)
    for indices, tensor in points.items():
        for i, value in zip(indices, sender_values(setup.hm, setup.wiring, list(indices), tensor)):
            out[i] = value
    return torch.stack(out)


def _score(setup: Setup, reads: list, reference: tuple, sets: int = 1) -> torch.Tensor:
    """`[sets]` the metric of `sets` runs stacked along the batch (`reads[k]`: `[sets * batch, read, vocab]`)."""
    stacked = tuple(r.reshape(sets, -1, *r.shape[1:]) for r in reads)
    return check_metric(setup.metric.score(stacked, reference), sets, setup.metric.name)


def _backward(value: torch.Tensor, leaves: list) -> list:
    if not value.requires_grad:
        raise MechHybridError("the metric does not depend differentiably on the logits (its value carries no "
                              "gradient): edge attribution needs a differentiable metric")
    grads = torch.autograd.grad(value, leaves, allow_unused=True)
    return [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads)]


def _path_mix(base_embed: torch.Tensor, source_embed: torch.Tensor, alphas: torch.Tensor):
    """The embeddings of copy c of the base prompts moved `alphas[c]` of the way to the source's."""
    step = (source_embed - base_embed).repeat(len(alphas), 1, 1)
    weights = alphas.repeat_interleave(len(base_embed))[:, None, None]
    return lambda t: t + weights.to(t) * step.to(t)


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
    with torch.enable_grad(), _frozen(hm.hf_model):  # the caller may be under no_grad
        return _edge_scores(setup, method, ig_steps, direction, positional)


@contextmanager
def _frozen(model):
    """Within: the model's parameters require no grad (restored after), so that autograd records only what leads
    to the receivers' zero tensors, never the weights' paths (transformer zoo model: EAP-IG 8-15% faster)."""
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def check_one_length(setup: Setup, what: str) -> None:
    """A one-line error unless every prompt has one length (positions are shared by rows)."""
    lengths = sorted(set(setup.pairs.lengths))
    if len(lengths) != 1:
        raise MechHybridError(f"{what} need prompts of one length (positions are shared by rows); got lengths "
                              f"{lengths}")


def track_width(setup: Setup) -> int:
    """The position axis of positional edges: the longest track (prompt + the metric's suffix)."""
    return max(t.base.shape[1] for t in setup.tracks)


def _gradient_matrix(grads: list, positional: bool) -> torch.Tensor:
    """The receivers' gradients `[receiver, batch, seq, d_model]` as the float64 right factor of `_contract`:
    `[batch * seq * d_model, receiver]`, or per position `[seq, batch * d_model, receiver]`."""
    g = torch.stack(grads).double()
    return g.permute(2, 1, 3, 0).flatten(1, 2) if positional else g.flatten(1).T


def _contract(diff: torch.Tensor, grad: torch.Tensor, width: int | None) -> torch.Tensor:
    """`[sender, receiver]` (or, with a width, `[sender, receiver, position]`) sums of diff . grad in float64, as
    matrix products (`grad` from `_gradient_matrix`; einsum would permute and copy both operands first)."""
    diff = diff.double()
    if width is None:
        return diff.flatten(1) @ grad
    out = (diff.permute(2, 0, 1, 3).flatten(2) @ grad).permute(1, 2, 0)  # [sender, receiver, seq]
    return torch.nn.functional.pad(out, (0, width - out.shape[-1]))


def _edge_scores(setup: Setup, method: str, ig_steps: int, direction: str, positional: bool) -> EdgeScores:
    base_role, source_role = ("clean", "corrupted") if direction == "noise" else ("corrupted", "clean")
    n = len(setup.tracks)
    if method == "eap":  # the base run carries the gradient
        source = [collect(setup, source_role, k, grad=False) for k in range(n)]
        base = [collect(setup, base_role, k, grad=True) for k in range(n)]
    else:  # both ends without grad (the midpoints carry it): one forward
        ends = [collect_ends(setup, k) for k in range(n)]
        source, base = [e[source_role] for e in ends], [e[base_role] for e in ends]
    work = 2.0
    reads = {base_role: [b[0].detach() for b in base], source_role: [s[0] for s in source]}
    reference = tuple(r[None] for r in reads["clean"])
    clean_raw = float(_score(setup, reads["clean"], reference)[0])
    corrupted_raw = float(_score(setup, reads["corrupted"], reference)[0])
    if setup.metric.normalised:
        normalising_gap(clean_raw, corrupted_raw, setup.metric.name)
    if method == "eap":
        value = _score(setup, [b[0] for b in base], reference)[0]
        grads = _backward(value, [leaf for b in base for leaf in b[2]])
        per_track = [grads[k * len(base[0][2]):(k + 1) * len(base[0][2])] for k in range(n)]
        work += 1
    else:
        per_track = _integrated(setup, base_role, source_role, reference, ig_steps)
        work += 2 * ig_steps
    width = track_width(setup) if positional else None
    raw = torch.zeros(setup.wiring.valid.shape + ((width,) if positional else ()), dtype=torch.float64)
    for k in range(n):
        g = _gradient_matrix(per_track[k], positional)
        for indices, tensor in source[k][1].items():  # per point: its senders' differences, projected once
            diff = sender_values(setup.hm, setup.wiring, list(indices), tensor - base[k][1][indices])
            raw[list(indices)] += _contract(diff, g, width)
    valid = setup.wiring.valid[:, :, None] if positional else setup.wiring.valid
    raw = torch.where(valid, raw, torch.zeros((), dtype=raw.dtype)).float()
    # An effect (a difference of the metric) is normalised by the gap alone.
    values = raw / (clean_raw - corrupted_raw) if setup.metric.normalised else raw
    return EdgeScores(setup.wiring, values.float(), raw, clean_raw, corrupted_raw, setup.metric.name,
                      setup.metric.normalised, direction, method, work)


IG_TOKENS = 768
"""The most tokens (rows x track length) one EAP-IG forward stacks, at least one midpoint. Stacked midpoints share
one forward and one backward, which on a CPU pays each layer's fixed costs and a recurrent scan's per-token loop
once; but the graph kept for the backward grows with the stack, and past a few hundred MB glibc hands the freed
memory back and faults it in again on every call (zoo Jamba, 8 prompts of 32 tokens, 5 midpoints, in forwards:
all 40 rows in one stack 14.5-18.7, stacks of 24 + 16 rows 10.9-14.0; Griffin 10.0-11.5 against 10.6-12.2)."""


def _integrated(setup: Setup, base_role: str, source_role: str, reference: tuple, steps: int) -> list:
    """Per track: per receiver, the gradient averaged over the embedding path's midpoints."""
    n = len(setup.tracks)
    embeds = [(_embeddings(setup, base_role, k), _embeddings(setup, source_role, k)) for k in range(n)]
    alphas = torch.tensor([(s + 0.5) / steps for s in range(steps)], dtype=torch.float32)
    per = max(1, IG_TOKENS // (setup.pairs.batch * track_width(setup)))
    total = None
    for group in alphas.tensor_split(-(-steps // per)):  # as few forwards as fit, of near-equal sizes
        runs = [collect(setup, base_role, k, grad=True, embed_mix=_path_mix(*embeds[k], group), stack=len(group),
                        senders=False) for k in range(n)]
        value = _score(setup, [r[0] for r in runs], reference, sets=len(group)).sum()
        grads = _backward(value, [leaf for r in runs for leaf in r[2]])
        width = len(runs[0][2])
        # [copy * batch, seq, d_model] -> the sum over this group's copies
        step = [[g.reshape(len(group), -1, *g.shape[1:]).sum(0) for g in grads[k * width:(k + 1) * width]]
                for k in range(n)]
        total = step if total is None else [[a + b for a, b in zip(x, y)] for x, y in zip(total, step)]
    return [[g / steps for g in per_track] for per_track in total]
