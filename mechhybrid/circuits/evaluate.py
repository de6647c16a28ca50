"""Verify circuits by intervention: run the model with every edge outside a circuit ablated, and measure.

A circuit is a set of edges (`keep[sender, receiver]`, bool). The clean prompts run with every receiver v reading

    input_v = its input in this run - sum over v's edges u -> v outside the circuit of (value_u - ablated_u)

where value_u is sender u's value in this very run and ablated_u its value in the corrupted run (`ablation=
"patch"`, default: path patching, the corrupted values reach v through exactly those edges) or its mean over the
clean run's rows and real tokens (`"mean"`). The residual stream itself is not changed: every receiver gets its
own input. Every edge ablated is the corrupted run (each receiver reads the corrupted senders' sum, which is the
corrupted residual); no edge ablated is the clean run (tests/core/test_circuits.py checks both to 1e-4).

`faithfulness(...)` -> the metric of each circuit's run, normalised like a sweep: 0 = the corrupted run, 1 = the
clean run (the full model). Circuits run stacked, one row per (circuit, prompt), `max_rows` rows a forward.

Positional circuits (`keeps[circuit, sender, receiver, position]`, from positional edge scores): an edge is ablated
at chosen positions only: v's input at position p gets u's ablated value there where (u -> v, p) is outside the
circuit, and u's value in this run at every other position. Prompts of one length; the position axis is the
longest track's (prompt + the metric's suffix), as in the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mechhybrid.circuits.run import edge_forward, sender_values
from mechhybrid.circuits.scores import Setup, check_one_length, collect_ends, sender_stack, setup_runs, track_width
from mechhybrid.circuits.wiring import Wiring
from mechhybrid.errors import MechHybridError
from mechhybrid.tracing.metrics import check_metric, normalise, normalising_gap

__all__ = ["ABLATIONS", "Faithfulness", "faithfulness", "random_keeps"]

ABLATIONS = ("patch", "mean")
"""patch: the corrupted run's values through the ablated edges; mean: the clean run's mean value of each sender."""


@dataclass
class Faithfulness:
    """The measured runs of a batch of circuits."""

    values: torch.Tensor
    """`[circuit]` the metric, normalised (0 = corrupted, 1 = clean) when the metric is."""
    raw: torch.Tensor
    """`[circuit]` the metric in its own units."""
    clean_metric: float
    corrupted_metric: float
    forwards: float
    """Forward-equivalents spent (one forward of the prompts on every track = 1)."""


def _ablated_values(setup: Setup, ablation: str, ends: list) -> list[torch.Tensor]:
    """Per track: `[sender, batch, seq, d_model]` (or broadcastable) values the ablated edges carry, from the
    clean and corrupted runs (`ends[track][role]`, `collect_ends`)."""
    out = []
    for k, track in enumerate(setup.tracks):
        if ablation == "patch":
            out.append(sender_stack(setup, ends[k]["corrupted"][1]))
            continue
        values = sender_stack(setup, ends[k]["clean"][1])
        lengths = track.reads.max(1).values + 1  # the last read is each row's last real token
        real = (torch.arange(values.shape[2])[None] < lengths[:, None]).to(values)  # [batch, seq]
        mean = (values * real[None, :, :, None]).sum((1, 2)) / real.sum()
        out.append(mean[:, None, None, :].expand_as(values))
    return out


def _run_chunk(setup: Setup, track: int, ablate: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """`[circuit, batch, read, vocab]` logits of one track with `ablate[circuit, sender, receiver(, position)]`
    edges ablated."""
    t = setup.tracks[track]
    n_circuits, batch = ablate.shape[0], t.base.shape[0]
    ids, reads = t.base.repeat(n_circuits, 1), t.reads.repeat(n_circuits, 1)
    rows = ablate.repeat_interleave(batch, 0).to(source.dtype)  # [row, sender, receiver(, position)]
    if rows.ndim == 4:
        rows = rows[..., :ids.shape[1]]  # this track's positions (a shorter track has fewer)
    pending: dict = {}

    def on_senders(indices, tensor):
        values = sender_values(setup.hm, setup.wiring, indices, tensor)
        diff = values - source[indices].repeat(1, n_circuits, 1, 1)  # [k, row, seq, d_model]
        if rows.ndim == 4:
            add = torch.einsum("rkvp,krpd->vrpd", rows[:, indices], diff)
        else:
            add = torch.einsum("rkv,krpd->vrpd", rows[:, indices, :], diff)
        for j in range(add.shape[0]):
            if bool(rows[:, indices, j].any()):
                pending[j] = pending[j] + add[j] if j in pending else add[j]

    def delta(j, residual):
        return -pending[j].to(residual.dtype) if j in pending else None

    with torch.no_grad():
        logits = edge_forward(setup.hm, setup.wiring, ids, reads, on_senders, delta)
    return logits.reshape(n_circuits, batch, *logits.shape[1:])


def faithfulness(hm, clean, corrupted, metric, keeps: torch.Tensor, ablation: str = "patch",
                 wiring: Wiring | None = None, max_rows: int = 64) -> Faithfulness:
    """Run the clean prompts once per circuit in `keeps` (`[circuit, sender, receiver]` bool, or
    `[circuit, sender, receiver, position]` for positional circuits) with every other edge ablated (module
    docstring); measured, never estimated."""
    if ablation not in ABLATIONS:
        raise MechHybridError(f"unknown ablation {ablation!r}; choose one of {', '.join(ABLATIONS)}")
    setup = setup_runs(hm, clean, corrupted, metric, wiring)
    valid = setup.wiring.valid
    if keeps.ndim == 4:
        check_one_length(setup, "positional circuits")
        valid = valid[:, :, None].expand(-1, -1, track_width(setup))
    if keeps.ndim not in (3, 4) or tuple(keeps.shape[1:]) != tuple(valid.shape):
        shape = ", ".join(map(str, valid.shape))
        raise MechHybridError(f"keeps must be [circuit, {shape}] (sender x receiver{' x position' * (keeps.ndim == 4)}"
                              f"), got {tuple(keeps.shape)}")
    ablate = valid[None] & ~keeps.bool()
    # The clean and corrupted runs give the metric's ends and the ablated values (one of them records senders).
    ends = [collect_ends(setup, k, ("corrupted" if ablation == "patch" else "clean",))
            for k in range(len(setup.tracks))]
    source = _ablated_values(setup, ablation, ends)
    reads_clean = [end["clean"][0] for end in ends]
    reads_corrupted = [end["corrupted"][0] for end in ends]
    reference = tuple(r[None] for r in reads_clean)
    clean_raw = float(_score(setup, [r[None] for r in reads_clean], reference)[0])
    corrupted_raw = float(_score(setup, [r[None] for r in reads_corrupted], reference)[0])
    per = max(1, max_rows // setup.pairs.batch)
    raw = []
    for start in range(0, ablate.shape[0], per):
        chunk = ablate[start:start + per]
        reads = [_run_chunk(setup, k, chunk, source[k]) for k in range(len(setup.tracks))]
        raw.append(_score(setup, reads, reference))
    raw = torch.cat(raw)
    values = raw
    if setup.metric.normalised:
        normalising_gap(clean_raw, corrupted_raw, setup.metric.name)
        values = normalise(raw, clean_raw, corrupted_raw, setup.metric.name)
    forwards = (2 + ablate.shape[0]) * 1.0
    return Faithfulness(values.float(), raw.float(), clean_raw, corrupted_raw, forwards)


def _score(setup: Setup, reads: list, reference: tuple) -> torch.Tensor:
    return check_metric(setup.metric.score(tuple(reads), reference), reads[0].shape[0], setup.metric.name)


def random_keeps(valid: torch.Tensor, k: int, trials: int, seed: int) -> torch.Tensor:
    """`[trial, *valid.shape]`: `trials` circuits of `k` edges drawn uniformly (seeded) from the valid ones
    (`valid`: `[sender, receiver]`, or `[sender, receiver, position]` for positional edges)."""
    edges = valid.nonzero()
    if not 1 <= k <= len(edges):
        raise MechHybridError(f"a random circuit of {k} edges: the model has {len(edges)} edges")
    generator = torch.Generator().manual_seed(seed)
    out = torch.zeros(trials, *valid.shape, dtype=torch.bool)
    for t in range(trials):
        pick = edges[torch.randperm(len(edges), generator=generator)[:k]]
        out[(torch.full((k,), t), *pick.T)] = True
    return out
