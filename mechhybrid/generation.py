"""Greedy generation through the model's cache, with phase-aware interventions (foundation and state).

Every intervention says when it applies: `prefill` (while the prompt is read), `decode` (while the answer is
generated, one token per step) or `all`. Positions are absolute token indices in prompt + generated tokens. A
negative position counts from the end of the prompt in a `prefill` intervention (as in `logits`: -1 is the last
prompt token), and from the end of the whole sequence (`prompt + max_new_tokens`) in `decode` and `all`. A
position its phase never runs is an error, never silently dropped; the model never reads the last generated
token, so no foundation intervention applies there. `ReadState(positions=None)` reads the state after every
token of its phase (the state after each generated token, in decode).

Study B's central experiment is an ablation that applies only while the answer is generated: `generate(hm, ids,
[Ablate(attention, phase="decode")])`, or `phase="decode"` to put every intervention in that phase.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.interventions import PHASES, Ablate, Patch
from mechhybrid.state import cache as cache_ops
from mechhybrid.state.api import check_ids
from mechhybrid.state.runner import Run, finish_captures, resolve_ops, run_segment, run_span, apply_ops
from mechhybrid.state.runner import split_interventions
from mechhybrid.state.types import PatchState, ReadState, State


@dataclass
class Generation:
    """The result of `generate`."""

    tokens: torch.Tensor
    """`[batch, seq]`: prompt followed by the generated tokens."""
    prompt_len: int
    """Number of prompt tokens at the start of `tokens`."""
    logits: torch.Tensor
    """`[batch, new, vocab]`: the logits each generated token was chosen from."""
    states: dict[tuple[int, int], State] = field(default_factory=dict)
    """(layer, position) -> State, for every ReadState that applied."""
    captures: dict = field(default_factory=dict)
    """Phase -> component -> captured output over that phase's tokens (`prefill`, `decode`)."""

    def __post_init__(self):
        batch, seq = self.tokens.shape
        new = seq - self.prompt_len
        if tuple(self.logits.shape[:2]) != (batch, new):
            raise ValueError(f"logits {tuple(self.logits.shape)} do not match {new} new tokens x batch {batch}")

    @property
    def new_tokens(self) -> torch.Tensor:
        """`[batch, new]` generated tokens."""
        return self.tokens[:, self.prompt_len :]


def _with_phase(items, phase: str | None) -> list:
    if phase is None:
        return list(items)
    if phase not in PHASES:
        raise MechHybridError(f"unknown phase {phase!r}; choose one of {', '.join(PHASES)}")
    return [dataclasses.replace(item, phase=phase) for item in items]


def _prompt_relative(item, prompt_len: int):
    """A prefill-phase intervention with its negative positions counted from the end of the prompt."""
    if item.phase != "prefill":
        return item
    if hasattr(item, "positions"):  # foundation interventions and ReadState
        positions = item.positions
        if positions is None or all(p >= 0 for p in positions):
            return item
        return dataclasses.replace(item, positions=tuple(p + prompt_len if p < 0 else p for p in positions))
    if hasattr(item, "position") and item.position < 0:
        changes = {"position": item.position + prompt_len}
        if isinstance(item, PatchState) and item.source_ids is not None and item.source_position is None:
            changes["source_position"] = item.position  # still counted from the end of the source
        return dataclasses.replace(item, **changes)
    return item


def _check_foundation_positions(items, prompt_len: int, total: int) -> None:
    """Every listed position of a foundation intervention falls on a token that its phase runs."""
    spans = {"prefill": range(0, prompt_len), "decode": range(prompt_len, total - 1), "all": range(0, total - 1)}
    for item in items:
        positions = getattr(item, "positions", None)
        if positions is None:
            continue
        span = spans[item.phase]
        for p in positions:
            absolute = p + total if p < 0 else p
            if absolute not in span:
                raise MechHybridError(
                    f"{type(item).__name__} position {p} (token {absolute}) is never run in phase {item.phase!r}: "
                    f"the prompt is tokens 0..{prompt_len - 1}, decode runs tokens {prompt_len}..{total - 2} "
                    "(the last generated token is never read)"
                )


def _needs_source(item) -> bool:
    return isinstance(item, Patch) or (isinstance(item, Ablate) and item.method in ("resample", "mean"))


def _check_decode_items(items) -> None:
    for item in items:
        if item.phase == "prefill":
            continue
        if isinstance(item, Patch) or (isinstance(item, Ablate) and (item.method == "resample" or item.per_position)):
            raise MechHybridError(
                f"{type(item).__name__} reads another input position by position, which has no generated "
                "tokens: give it phase='prefill'"
            )
        heads = getattr(item, "heads", None)
        if isinstance(heads, torch.Tensor) and heads.dtype == torch.bool:
            raise MechHybridError("a per-token head mask covers the prompt only: give it phase='prefill'")


def _phase_ops(hm, state_items, total: int, batch: int, prompt_len: int, phase: str):
    """State operations of one phase, each checked to fall inside that phase's tokens."""
    span = range(0, prompt_len) if phase == "prefill" else range(prompt_len, total)
    ops = resolve_ops(hm, state_items, total, phase, batch, default_positions=list(span))
    kept = []
    for op in ops:
        if op.position in span:
            kept.append(op)
        elif op.item.phase == phase:
            raise MechHybridError(
                f"{type(op.item).__name__} at position {op.position} has phase {op.item.phase!r} but that "
                f"position is read during {'decode' if phase == 'prefill' else 'prefill'}"
            )
    return kept


def _prefill_run(hm, ids, foundation, state_items, total):
    batch, prompt_len = ids.shape
    run = Run(hm, batch, total, [foundation], [_phase_ops(hm, state_items, total, batch, prompt_len, "prefill")])
    sourced = [dataclasses.replace(i, positions=None) if hasattr(i, "positions") else i
               for i in foundation if _needs_source(i) and i.phase != "decode"]
    if sourced:
        run.bank.fill(hm, ids, [sourced], "prefill")
    return run


def generate(
    hm, input_ids, interventions: Sequence = (), max_new_tokens: int = 16, phase: str | None = None,
) -> Generation:
    """Greedy generation of `max_new_tokens` through the cache, with phase-aware interventions.

    `phase`, if given, overrides every intervention's own phase. Prompts in a batch share one length (no padding),
    and there is no EOS stop: every row gets `max_new_tokens` (transformers' `generate` matches with
    `eos_token_id=None`).
    """
    input_ids = check_ids(hm, input_ids).to(hm.device)
    if max_new_tokens < 1:
        raise MechHybridError("max_new_tokens must be at least 1")
    batch, prompt_len = input_ids.shape
    total = prompt_len + max_new_tokens
    items = [_prompt_relative(item, prompt_len) for item in _with_phase(interventions, phase)]
    foundation, state_items = split_interventions(items)
    _check_decode_items(foundation)
    _check_foundation_positions(foundation, prompt_len, total)
    tokens = torch.cat([input_ids, input_ids.new_zeros(batch, max_new_tokens)], dim=1)
    prefill = _prefill_run(hm, input_ids, foundation, state_items, total)
    decode_ops = _phase_ops(hm, state_items, total, batch, prompt_len, "decode")
    decode = Run(hm, batch, total, [foundation], [decode_ops], prefill.bank)
    if any(i.phase != "prefill" and isinstance(i, Ablate) and i.method == "mean" for i in foundation):
        means = [dataclasses.replace(i, positions=None) for i in foundation if isinstance(i, Ablate)
                 and i.method == "mean" and i.phase != "prefill"]
        decode.bank.fill(hm, input_ids, [means], "decode")
    cache = cache_ops.new_cache(hm, batch)
    last = run_span(prefill, cache, tokens, 0, prompt_len, "prefill", fresh=True)[:, -1]
    chosen = []
    # The state after the last generated token is only computed when someone reads it there.
    steps = max_new_tokens if any(op.position == total - 1 for op in decode_ops) else max_new_tokens - 1
    for step in range(max_new_tokens):
        chosen.append(last)
        position = prompt_len + step
        tokens[:, position] = last.argmax(-1)
        if step < steps:
            last = run_segment(decode, cache, tokens, position, position + 1, "decode")[:, -1]
            apply_ops(decode, cache, position)
    states = {**prefill.states[0], **decode.states[0]}
    captures = {"prefill": finish_captures(prefill)[0], "decode": finish_captures(decode)[0]}
    return Generation(tokens=tokens, prompt_len=prompt_len, logits=torch.stack(chosen, 1), states=states,
                      captures=captures)


def greedy_reference(hm, input_ids, max_new_tokens: int) -> torch.Tensor:
    """`[batch, prompt + new]`: greedy tokens from full no-cache forwards (the slow, trusted reference)."""
    tokens = input_ids.to(hm.device)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = hm.hf_model(tokens, use_cache=False).logits[:, -1]
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens
