"""Recurrent states as circuit nodes: a layer's state right after chosen tokens, scored by state attribution.

A state node `L{layer}.state@{p}` is the recurrent state (recurrent tensor and conv window) of a recurrent layer
right after token p. Its score is the state attribution of `mechhybrid.tracing` (`StateSite`): (source state -
base state) . d metric / d state, summed over rows, the gradient taken on the state carried in the cache
(`mechhybrid.tracing.gradients.state_forward`: the prompts run through the cache in segments ending after each
chosen token, and `state + zero` is written back there). Normalised like edge scores.

Default tokens: every position where a pair's clean and corrupted prompts differ (the needle's swapped value)
and the question's last token, as the state that token reads: the state right after the token before it
(the state after the last token itself feeds nothing the metric reads). All rows must have one length (positions are
shared by rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mechhybrid.circuits.scores import Setup
from mechhybrid.errors import MechHybridError
from mechhybrid.state.spec import state_components
from mechhybrid.tracing.gradients import state_forward
from mechhybrid.tracing.sweep import DIRECTIONS

__all__ = ["StateNode", "state_positions", "state_nodes"]


@dataclass(frozen=True)
class StateNode:
    layer: int
    position: int
    """Absolute token index (the state right after it)."""
    value: float
    """The attribution, normalised as the metric."""
    raw: float

    @property
    def name(self) -> str:
        return f"L{self.layer}.state@{self.position}"


def state_positions(setup: Setup, positions=None) -> list[int]:
    """Absolute positions of the state nodes: `positions` (ints, negative from the end) or the default."""
    lengths = set(setup.pairs.lengths)
    if len(lengths) != 1:
        raise MechHybridError(f"state nodes need prompts of one length (positions shared by rows); got lengths "
                              f"{sorted(lengths)}")
    (n,) = lengths
    if positions is None:
        differ = {p for c, x in zip(setup.pairs.clean, setup.pairs.corrupted) for p in range(n) if c[p] != x[p]}
        # The state the question's last token is computed from is the one right after the token before it.
        return sorted(differ | {max(n - 2, 0)})
    out = []
    for p in positions:
        if not isinstance(p, int) or isinstance(p, bool) or not -n <= p < n:
            raise MechHybridError(f"state node position {p!r} out of range for prompts of {n} tokens")
        out.append(p % n)
    return sorted(set(out))


def state_nodes(hm, clean, corrupted, metric, positions=None, direction: str = "noise",
                wiring=None) -> list[StateNode]:
    """One StateNode per recurrent layer and chosen position (none in a model without recurrent layers);
    `positions`: ints (negative from the end) or None for the default (module docstring)."""
    from mechhybrid.circuits.scores import setup_runs

    if direction not in DIRECTIONS:
        raise MechHybridError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    setup = setup_runs(hm, clean, corrupted, metric, wiring)
    chosen = state_positions(setup, positions)
    layers = sorted(state_components(hm))
    if not layers:
        return []
    with torch.enable_grad():
        totals = _state_totals(setup, chosen, layers, direction)
    return [StateNode(layer, p, totals["values"].get((layer, p), 0.0), totals["raw"].get((layer, p), 0.0))
            for layer in layers for p in chosen]


def _state_totals(setup: Setup, positions: list[int], layers: list[int], direction: str) -> dict:
    base_clean = direction == "noise"
    reads, base_taps, source_reads, source_taps = [], [], [], []
    for t in setup.tracks:
        base_ids, source_ids = (t.base, t.source) if base_clean else (t.source, t.base)
        read, taps = state_forward(setup.hm, base_ids, positions, layers, t.reads, grad=True)
        reads.append(read)
        base_taps.append(taps)
        read, taps = state_forward(setup.hm, source_ids, positions, layers, t.reads, grad=False)
        source_reads.append(read)
        source_taps.append(taps)
    clean_reads = [r.detach() for r in reads] if base_clean else source_reads
    corrupted_reads = source_reads if base_clean else [r.detach() for r in reads]
    reference = tuple(r[None] for r in clean_reads)
    score = lambda rs: setup.metric.score(tuple(r[None] for r in rs), reference)[0]  # noqa: E731
    gap = float(score(clean_reads)) - float(score(corrupted_reads)) if setup.metric.normalised else 1.0
    keys = [(k, key) for k, taps in enumerate(base_taps) for key in taps.state_deltas]
    grads = torch.autograd.grad(score(reads), [base_taps[k].state_deltas[key] for k, key in keys],
                                allow_unused=True)
    raw: dict = {}
    for (k, key), grad in zip(keys, grads):
        if grad is None:
            continue
        diff = source_taps[k].states[key] - base_taps[k].states[key]
        layer, position, _ = key
        raw[(layer, position)] = raw.get((layer, position), 0.0) + float((diff.double() * grad.double()).sum())
    return {"raw": raw, "values": {key: value / gap for key, value in raw.items()}}
