"""Greedy generation through the cache, for one prompt or many of different lengths, with phase-aware interventions.

Prompts: a `[batch, seq]` tensor of token ids, the same with an `attention_mask` (1 = real token; padding on the
left or on the right), or a list of prompts (each a list or 1-D tensor of token ids) of any lengths. Every row
gets exactly what its prompt gets alone: the same tokens, and logits equal to ~1e-6 in float32
(tests/core/test_generation_batched.py). Prompts of one length run as one aligned batch; prompts of different
lengths run left-padded in one batch where the family's mask handling is exact, or grouped by length where it is
not (`Family.left_padding_exact`; `mechhybrid.batched_generation`). `Generation.strategy` says which ran.

Stopping: greedy, `max_new_tokens` per row, or fewer where a row generates one of `eos_token_id` or completes one
of `stop_strings` (the stopping token is kept). A finished row stops growing: its tokens and logits end there.

Phases. Every intervention says when it applies: `prefill` (while the prompt is read), `decode` (while the answer
is generated, one token per step) or `all`. The first answer token is chosen from the logits of the last prompt
position, which the prefill computes: a `decode` intervention never touches it. Study B's "generation" has two
readings, offered as `generate(..., phase="generation", generation_phase=...)`:
- `answer` (default): every token of the answer, the first included: the last prompt position plus every decode
  step (an intervention on every position becomes a `prefill` copy at the last prompt position and a `decode`
  copy). Study B's "prefill only" condition (`phase="prefill"`) also covers the last prompt position.
- `decode`: decode steps only (`phase="decode"`); the first answer token is as without the intervention.
`Generation.phase` and `Generation.generation_phase` record which was used.

Positions are each row's own token indices, prompt + generated tokens. A negative position counts from the end of
the prompt in a `prefill` intervention (as in `logits`: -1 is the last prompt token), and from the end of the row's
whole sequence (`prompt + max_new_tokens`) in `decode` and `all`. A position its phase never runs is an error, never
silently dropped; the model never reads the last generated token, so no foundation intervention applies there.
`ReadState(positions=None)` reads the state after every token of its phase (the state after each generated token,
in decode). Capture, state interventions, sources of the input's shape (`Patch`, `resample`) and per-token head
masks need prompts of one length; a batch that carries a Capture or a state intervention runs every step even
when its rows have stopped (their positions are fixed in advance).

Study B's central experiment is an ablation that applies only while the answer is generated: `generate(hm, ids,
[Ablate(attention)], phase="generation")`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import torch

from mechhybrid.batched_generation import (
    STRATEGIES, Progress, StopRule, check_ragged_items, for_rows, read_prompts, run_left_padded,
)
from mechhybrid.errors import MechHybridError
from mechhybrid.interventions import PHASES, Ablate, Capture, Patch
from mechhybrid.state import cache as cache_ops
from mechhybrid.state.runner import Run, finish_captures, resolve_ops, run_segment, run_span, apply_ops
from mechhybrid.state.runner import split_interventions
from mechhybrid.state.types import PatchState, State, is_state_intervention

__all__ = ["GENERATION_PHASES", "PHASE_CHOICES", "Generation", "generate", "greedy_reference"]

GENERATION_PHASES = ("answer", "decode")
"""The readings of "generation" that `phase="generation"` takes: `answer` = the last prompt position plus every
decode step; `decode` = decode steps only (see the module docstring)."""
PHASE_CHOICES = PHASES + ("generation",)
"""Values of `generate`'s `phase` override: an intervention phase, or `generation` (read as `generation_phase`)."""


@dataclass
class Generation:
    """The result of `generate`: per row, the prompt, the generated tokens and the logits they came from (tokens
    and logits on the CPU)."""

    tokens: torch.Tensor
    """`[batch, seq]`: each row's prompt, then its generated tokens, then `pad_token_id` up to the longest row."""
    prompt_lengths: torch.Tensor
    """`[batch]` long: prompt tokens at the start of each row."""
    n_generated: torch.Tensor
    """`[batch]` long: tokens each row generated (at most `max_new_tokens`; a stopping token counts)."""
    logits: torch.Tensor | None
    """`[batch, new, vocab]`, new = the most any row generated: `logits[b, t]` is what row b's t-th generated token
    was chosen from; zeros past `n_generated[b]`. None when generate ran with `keep_logits=False`."""
    strategy: str = "aligned"
    """How the batch ran: `aligned` (one prompt length), `left_padded` or `grouped` (see
    `mechhybrid.batched_generation`)."""
    phase: str | None = None
    """The `phase` override generate ran with (None: every intervention kept its own)."""
    generation_phase: str = "answer"
    """The reading of `phase="generation"` in force: `answer` or `decode` (GENERATION_PHASES)."""
    states: dict[tuple[int, int], State] = field(default_factory=dict)
    """(layer, position) -> State, for every ReadState that applied."""
    captures: dict = field(default_factory=dict)
    """Phase -> component -> captured output over that phase's tokens (`prefill`, `decode`)."""

    def __post_init__(self):
        batch, seq = self.tokens.shape
        if tuple(self.prompt_lengths.shape) != (batch,) or tuple(self.n_generated.shape) != (batch,):
            raise ValueError(f"prompt_lengths / n_generated must have shape ({batch},)")
        if int((self.prompt_lengths + self.n_generated).max()) > seq:
            raise ValueError(f"tokens [{batch}, {seq}] cannot hold every row's prompt and generated tokens")
        new = int(self.n_generated.max())
        if self.logits is not None and tuple(self.logits.shape[:2]) != (batch, new):
            raise ValueError(f"logits {tuple(self.logits.shape)} do not match {new} new tokens x batch {batch}")
        if self.strategy not in STRATEGIES or self.generation_phase not in GENERATION_PHASES:
            raise ValueError(f"unknown strategy {self.strategy!r} or generation_phase {self.generation_phase!r}")

    @property
    def prompt_len(self) -> int:
        """The prompts' common length (prompts of different lengths: see `prompt_lengths`)."""
        lengths = set(self.prompt_lengths.tolist())
        if len(lengths) != 1:
            raise MechHybridError("the prompts have different lengths: use Generation.prompt_lengths")
        return lengths.pop()

    @property
    def attention_mask(self) -> torch.Tensor:
        """`[batch, seq]` long: 1 at each row's prompt and generated tokens, 0 at the padding after them."""
        ends = self.prompt_lengths + self.n_generated
        return (torch.arange(self.tokens.shape[1])[None] < ends[:, None]).long()

    @property
    def new_tokens(self) -> torch.Tensor:
        """`[batch, new]`: each row's generated tokens, `pad_token_id`-padded like `tokens`."""
        index = self.prompt_lengths[:, None] + torch.arange(int(self.n_generated.max()))[None]
        return self.tokens.gather(1, index.clamp(max=self.tokens.shape[1] - 1))

    def generated(self, row: int) -> torch.Tensor:
        """Row `row`'s generated tokens, trimmed."""
        start = int(self.prompt_lengths[row])
        return self.tokens[row, start : start + int(self.n_generated[row])]


def _generation_copies(item, reading: str, prompt_len: int, total: int) -> list:
    """An intervention given `phase="generation"`, as the code's phases under the chosen reading."""
    name = type(item).__name__
    if is_state_intervention(item) or not hasattr(item, "positions"):
        raise MechHybridError(f"phase='generation' takes interventions with positions; give {name} phase "
                              "'prefill', 'decode' or 'all'")
    decode = dataclasses.replace(item, phase="decode")
    if reading == "decode":
        return [decode]
    last = prompt_len - 1
    if item.positions is None:
        return [dataclasses.replace(item, phase="prefill", positions=(last,)), decode]
    absolute = [p + total if p < 0 else p for p in item.positions]
    early = [p for p, a in zip(item.positions, absolute) if a < last]
    if early:
        raise MechHybridError(f"{name} position {early[0]} is not part of the answer: phase='generation' covers the "
                              f"last prompt token ({last}) and the decode steps")
    copies = [dataclasses.replace(item, phase="prefill", positions=(last,))] if last in absolute else []
    later = tuple(a for a in absolute if a > last)
    return copies + ([dataclasses.replace(item, phase="decode", positions=later)] if later else [])


def _prompt_relative(item, prompt_len: int):
    """A prefill-phase intervention with its negative positions counted from the end of the prompt."""
    if hasattr(item, "prompt_relative"):  # attention edits: keys count from the prompt's end in every phase
        return item.prompt_relative(prompt_len)
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


def _for_prompt(interventions, phase, reading: str, prompt_len: int, max_new: int) -> tuple[list, list[int]]:
    """The interventions as they apply to one prompt length: phases resolved, prefill negatives made absolute,
    checked; plus, per resulting item, the index of the caller's intervention it came from."""
    items, origins = [], []
    total = prompt_len + max_new
    for index, item in enumerate(interventions):
        if phase == "generation":
            copies = _generation_copies(item, reading, prompt_len, total)
        else:
            copies = [item if phase is None else dataclasses.replace(item, phase=phase)]
        items += [_prompt_relative(copy, prompt_len) for copy in copies]
        origins += [index] * len(copies)
    foundation = [i for i in items if not is_state_intervention(i)]
    _check_decode_items(foundation)
    _check_foundation_positions(foundation, prompt_len, total)
    return items, origins


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
            raise MechHybridError(
                f"{type(item).__name__} with a per-token head mask [batch, seq, head] covers the prompt only (no mask "
                "exists for tokens not yet generated): give it phase='prefill'"
            )


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


def _run_aligned(hm, input_ids: torch.Tensor, items: list, max_new_tokens: int, progress: Progress):
    """Greedy generation of prompts of one length into `progress`; returns (states, captures)."""
    input_ids = input_ids.to(hm.device)
    batch, prompt_len = input_ids.shape
    total = prompt_len + max_new_tokens
    foundation, state_items = split_interventions(items)
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
    # The state after the last generated token is only computed when someone reads it there.
    steps = max_new_tokens if any(op.position == total - 1 for op in decode_ops) else max_new_tokens - 1
    may_stop = not state_items and not any(isinstance(i, Capture) for i in foundation)
    for step in range(max_new_tokens):
        position = prompt_len + step
        tokens[:, position] = progress.record(last)
        if may_stop and progress.finished:
            break
        if step < steps:
            last = run_segment(decode, cache, tokens, position, position + 1, "decode")[:, -1]
            apply_ops(decode, cache, position)
    states = {**prefill.states[0], **decode.states[0]}
    return states, {"prefill": finish_captures(prefill)[0], "decode": finish_captures(decode)[0]}


def _check_options(hm, max_new_tokens, phase, generation_phase, pad_token_id, longest: int) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise MechHybridError(f"max_new_tokens must be an integer of at least 1, got {max_new_tokens!r}")
    if isinstance(pad_token_id, bool) or not isinstance(pad_token_id, int):
        raise MechHybridError(f"pad_token_id must be an integer, got {pad_token_id!r}")
    if phase is not None and phase not in PHASE_CHOICES:
        raise MechHybridError(f"unknown phase {phase!r}; choose one of {', '.join(PHASE_CHOICES)}")
    if generation_phase not in GENERATION_PHASES:
        raise MechHybridError(
            f"unknown generation_phase {generation_phase!r}; choose one of {', '.join(GENERATION_PHASES)}"
        )
    table = hm.family_spec.learned_positions
    limit = None if table is None else getattr(hm.config, table, None)
    needed = longest + max_new_tokens - 1  # the last generated token is never read
    if limit is not None and needed > limit:
        raise MechHybridError(f"a {longest}-token prompt and {max_new_tokens} new tokens need {needed} positions; "
                              f"{hm.name}'s learned position table ({table}) has {limit}")


def _assemble(prompts, parts, keep_logits: bool, pad_token_id: int, vocab: int) -> dict:
    """Per-row outputs of one or more runs (`parts`: (row indices, Progress)) -> Generation's tensor fields."""
    batch = len(prompts)
    lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long)
    counts = torch.zeros(batch, dtype=torch.long)
    for rows, progress in parts:
        counts[rows] = progress.counts()
    new = int(counts.max())
    tokens = torch.full((batch, int((lengths + counts).max())), pad_token_id, dtype=torch.long)
    logits = torch.zeros(batch, new, vocab) if keep_logits else None
    for rows, progress in parts:
        part_logits = progress.logits()
        for index, row in enumerate(rows):
            n, generated = len(prompts[row]), progress.tokens[index]
            tokens[row, :n] = prompts[row]
            tokens[row, n : n + len(generated)] = torch.tensor(generated, dtype=torch.long)
            if logits is not None:
                logits[row, : part_logits.shape[1]] = part_logits[index]
    return {"tokens": tokens, "prompt_lengths": lengths, "n_generated": counts, "logits": logits}


def generate(
    hm, input_ids, interventions: Sequence = (), max_new_tokens: int = 16, phase: str | None = None, *,
    attention_mask=None, generation_phase: str = "answer", eos_token_id=None, stop_strings=None,
    keep_logits: bool = True, pad_token_id: int = 0,
) -> Generation:
    """Greedy generation of up to `max_new_tokens` per prompt through the cache, with phase-aware interventions.

    `input_ids`: a `[batch, seq]` tensor (with `attention_mask` for padded rows) or a list of prompts of any
    lengths; each row gets what its prompt gets alone (see the module docstring). `phase`, if given, overrides
    every intervention's own phase: `prefill`, `decode`, `all`, or `generation`, read as `generation_phase`
    (`answer`: the last prompt position and every decode step; `decode`: decode steps only). `eos_token_id` (an
    id or a list) and `stop_strings` (needs the tokenizer) stop a row early; None: every row generates
    `max_new_tokens` (transformers' `generate` matches with `eos_token_id=None`). `keep_logits=False` saves the
    `[batch, new, vocab]` logits; `pad_token_id` fills `Generation.tokens` past each row's end.
    """
    prompts = read_prompts(hm, input_ids, attention_mask)
    lengths = [len(p) for p in prompts]
    _check_options(hm, max_new_tokens, phase, generation_phase, pad_token_id, max(lengths))
    rule = StopRule.make(eos_token_id, stop_strings, hm.tokenizer, hm.vocab_size)
    interventions = list(interventions)
    meta = {"phase": phase, "generation_phase": generation_phase}
    if len(set(lengths)) == 1:
        items, _ = _for_prompt(interventions, phase, generation_phase, lengths[0], max_new_tokens)
        progress = Progress(rule, len(prompts), keep_logits)
        states, captures = _run_aligned(hm, torch.stack(prompts), items, max_new_tokens, progress)
        fields = _assemble(prompts, [(list(range(len(prompts))), progress)], keep_logits, pad_token_id, hm.vocab_size)
        return Generation(**fields, strategy="aligned", states=states, captures=captures, **meta)
    check_ragged_items(interventions)

    def resolve(rows: list[int]) -> tuple[list, list[int]]:  # the interventions of prompts of one length
        n = lengths[rows[0]]
        try:
            own = for_rows(interventions, rows, len(prompts))
            return _for_prompt(own, phase, generation_phase, n, max_new_tokens)
        except MechHybridError as error:
            raise MechHybridError(f"prompt {rows[0]} ({n} tokens): {error}") from None

    if hm.family_spec.left_padding_exact:
        resolved = [resolve([row]) for row in range(len(prompts))]
        progress = Progress(rule, len(prompts), keep_logits)
        run_left_padded(hm, prompts, [r[0] for r in resolved], [r[1] for r in resolved], max_new_tokens, progress)
        parts, strategy = [(list(range(len(prompts))), progress)], "left_padded"
    else:
        parts, strategy = [], "grouped"
        for n in sorted(set(lengths)):
            rows = [row for row, length in enumerate(lengths) if length == n]
            progress = Progress(rule, len(rows), keep_logits)
            _run_aligned(hm, torch.stack([prompts[r] for r in rows]), resolve(rows)[0], max_new_tokens, progress)
            parts.append((rows, progress))
    return Generation(**_assemble(prompts, parts, keep_logits, pad_token_id, hm.vocab_size), strategy=strategy, **meta)


def greedy_reference(hm, input_ids, max_new_tokens: int) -> torch.Tensor:
    """`[batch, prompt + new]`: greedy tokens from full no-cache forwards (the slow, trusted reference)."""
    tokens = input_ids.to(hm.device)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = hm.hf_model(tokens, use_cache=False).logits[:, -1]
            tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], dim=1)
    return tokens
