"""Public entry points: read the state, and run foundation + state interventions in one call (or many sets)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.inputs import check_input_ids, layout_of
from mechhybrid.state import cache as cache_ops
from mechhybrid.state.localize import resolve_position
from mechhybrid.state.runner import Run, finish_captures, resolve_ops, run_span, split_interventions
from mechhybrid.state.spec import resolve_layers, spec_for
from mechhybrid.state.types import ReadState, State


READ_SEGMENT = 512
"""Tokens per forward when `read_state` runs a long prefix through the cache (chunk families): the model's
activations then scale with 512 tokens, not with the prefix (the attention KV cache still grows with it)."""


@dataclass
class StateRunResult:
    """What one forward with state interventions returns (the foundation `RunResult` plus the states read)."""

    logits: torch.Tensor
    """`[batch, seq, vocab]` logits after the interventions."""
    captures: dict = field(default_factory=dict)
    """Component -> captured output, as in `RunResult.captures`."""
    states: dict[tuple[int, int], State] = field(default_factory=dict)
    """(layer, position) -> the State read there (`[batch, ...]`)."""

    def __post_init__(self):
        if self.logits.ndim != 3:
            raise ValueError(f"logits must be [batch, seq, vocab], got {tuple(self.logits.shape)}")
        for (layer, position), state in self.states.items():
            if state.batch != self.logits.shape[0] or state.layer != layer or state.position != position:
                raise ValueError(f"state ({layer}, {position}) does not match its key or the batch")


def check_ids(hm, input_ids, attention_mask=None) -> torch.Tensor:
    """Token ids checked against the model (`mechhybrid.inputs`); a padded mask is refused: the segmented run
    continues every row through one cache, position by position, so rows must be aligned."""
    input_ids = check_input_ids(hm, input_ids)
    if layout_of(input_ids, attention_mask) is not None:
        raise MechHybridError("state interventions need unpadded inputs: attention_mask must be all ones")
    return input_ids


def run_sets(hm, input_ids, intervention_sets: Sequence[Sequence], phase: str = "prefill"):
    """`([set * batch, seq, vocab] logits, captures per set, states per set)` for stacked sets."""
    batch, seq = input_ids.shape
    split = [split_interventions(items) for items in intervention_sets]
    foundation = [f for f, _ in split]
    ops = [resolve_ops(hm, s, seq, phase, batch) for _, s in split]
    run = Run(hm, batch, seq, foundation, ops)
    run.bank.fill(hm, input_ids, foundation, phase)
    if spec_for(hm).continuation == "token" and not run.modifies() and run.boundaries():
        # Read-only on a family whose multi-token continuation drifts: logits from one forward, states from
        # one fresh prefill per position (exact, and no 1-token steps over the whole sequence).
        main = Run(hm, batch, seq, foundation, [[] for _ in ops], run.bank)
        logits = run_span(main, _fresh(hm, main), input_ids, 0, seq, phase, fresh=True)
        _prefix_reads(run, input_ids, phase)
        return logits, finish_captures(main), run.states
    logits = run_span(run, _fresh(hm, run), input_ids, 0, seq, phase, fresh=True)
    return logits, finish_captures(run), run.states


def _fresh(hm, run: Run):
    return cache_ops.new_cache(hm, run.batch * run.n_sets)


def _prefix_reads(run: Run, input_ids, phase: str) -> None:
    for position in run.boundaries():
        ops = [[op for op in ops if op.position == position] for ops in run.ops]
        sub = Run(run.hm, run.batch, run.total, run.foundation, ops, run.bank, keep_logits=False)
        run_span(sub, _fresh(run.hm, sub), input_ids, 0, position + 1, phase, fresh=True)
        for index, states in enumerate(sub.states):
            run.states[index].update(states)


def read_state(hm, input_ids, layers=None, positions=(-1,), interventions: Sequence = ()) -> dict:
    """(layer, position) -> State right after each position, as the model's recurrence carries it (with
    `interventions` applied); only tokens up to the last requested position are run."""
    input_ids = check_ids(hm, input_ids)
    batch, seq = input_ids.shape
    layers = resolve_layers(hm, layers)
    if isinstance(positions, int):
        positions = (positions,)
    wanted = sorted({resolve_position(p, seq, "ReadState position") for p in positions})
    if not wanted:
        raise MechHybridError("read_state needs at least one position")
    items = list(interventions) + [ReadState(layers, wanted)]
    head = input_ids[:, : wanted[-1] + 1]
    # Negative positions were resolved against the full sequence, so the truncated run sees absolute ones;
    # foundation interventions with negative positions still count from the end of the *full* sequence.
    foundation, state_items = split_interventions(items)
    ops = resolve_ops(hm, state_items, seq, "prefill", batch)
    run = Run(hm, batch, seq, [foundation], [ops], keep_logits=False, max_segment=READ_SEGMENT)
    run.bank.fill(hm, input_ids, [foundation], "prefill")
    if spec_for(hm).continuation == "token" and not run.modifies():
        _prefix_reads(run, head, "prefill")
    else:
        run_span(run, _fresh(hm, run), head, 0, head.shape[1], "prefill", fresh=True)
    return run.states[0]


def run_with_state(hm, input_ids, interventions: Sequence = (), attention_mask=None) -> StateRunResult:
    """One forward with foundation and state interventions: logits, captures and the states read."""
    input_ids = check_ids(hm, input_ids, attention_mask)
    logits, captures, states = run_sets(hm, input_ids, [list(interventions)])
    return StateRunResult(logits=logits, captures=captures[0], states=states[0])


def logits_many_with_state(
    hm, input_ids, intervention_sets: Sequence[Sequence], attention_mask=None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None, max_rows: int | None = None,
) -> torch.Tensor:
    """`[set, batch, seq, vocab]` (or reduced): like `HybridModel.logits_many`, state interventions allowed."""
    input_ids = check_ids(hm, input_ids, attention_mask)
    if not intervention_sets:
        raise MechHybridError("logits_many needs at least one intervention set")
    batch = input_ids.shape[0]
    per_forward = max(1, (max_rows or 8 * batch) // batch)
    results = []
    for start in range(0, len(intervention_sets), per_forward):
        chunk = [list(s) for s in intervention_sets[start : start + per_forward]]
        logits, _, _ = run_sets(hm, input_ids, chunk)
        for index in range(len(chunk)):
            part = logits[index * batch : (index + 1) * batch]
            results.append(part if reduce is None else reduce(part))
    return torch.stack(results)
