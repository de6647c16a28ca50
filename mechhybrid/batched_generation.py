"""The pieces of `mechhybrid.generation` that batch prompts of different lengths, and the per-row stop rules.

Axis names: `batch` (one row per prompt), `seq` (columns of the batch), `new` (generated tokens), `vocab`.

Two strategies give every row exactly what its prompt gets alone; `Family.left_padding_exact` picks one per family:

- `left_padded`: one batch. Prompts are left-padded to the longest, so that every row's prompt ends in the same
  column and every decode step is one column for all rows; the model runs with the attention mask and with
  `position_ids` counted from each row's first real token (as transformers' own `generate` does). Exact where
  the family's mask handling is (attention masks the padding keys; Mamba-1/2, Gated DeltaNet and the short
  convolutions zero the padding inputs before they reach their state).
- `grouped`: one aligned batch per prompt length (`generation.generate` loops over them), for families whose
  cache is not padding-exact (recurrent_gemma).

Interventions in a left-padded batch are given per row, in that row's own coordinates (token p of the prompt is
position p), and moved here to the columns the row occupies. Rows whose interventions land on the same columns
share one intervention set; otherwise each row is its own set of the stacked forward (`engine.compile_plan`),
always so for attention edits, whose keys sit at columns that depend on the row's padding. An intervention on
every position (`positions=None`) also writes the padding columns, which no real token reads in a padding-exact
family.
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass, field
from typing import Sequence

import torch

from mechhybrid.attention.interface import installed
from mechhybrid.attention.types import is_attention_intervention
from mechhybrid.engine import compile_plan
from mechhybrid.errors import MechHybridError
from mechhybrid.inputs import check_input_ids, layout_of
from mechhybrid.interventions import Ablate, AblateHeads, Capture, KeepHeads, Patch
from mechhybrid.state import cache as cache_ops
from mechhybrid.state.localize import SourceBank, localize
from mechhybrid.state.runner import forward_with_ops
from mechhybrid.state.spec import spec_for
from mechhybrid.state.types import is_state_intervention

__all__ = [
    "ROW_FIELDS", "STRATEGIES", "StopRule", "Progress", "check_ragged_items", "for_rows", "read_prompts",
    "run_left_padded",
]

STRATEGIES = ("aligned", "left_padded", "grouped")
"""How `generate` ran a batch: `aligned` (every prompt has one length: no padding), `left_padded` or `grouped`."""
ROW_FIELDS = ("keys",)
"""Intervention fields that may hold one row per prompt (an attention edit's boolean `keys` mask `[batch, n]`, a
needle at a different depth in each prompt): split with the prompts when they run in groups or row by row."""


def _as_tuple(value) -> tuple:
    """None -> (), one value -> (value,), a list -> a tuple (its items are checked by the caller)."""
    if value is None:
        return ()
    if isinstance(value, (str, bytes, int, float)) or not hasattr(value, "__iter__"):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class StopRule:
    """When a row stops before `max_new_tokens`: on generating one of `eos` or a token that completes one of
    `strings` in the decoded answer (the stopping token is kept, as transformers keeps it)."""

    eos: tuple[int, ...] = ()
    strings: tuple[str, ...] = ()
    tokenizer: object = None

    @classmethod
    def make(cls, eos_token_id, stop_strings, tokenizer, vocab: int) -> "StopRule":
        """Checked arguments of `generate` -> a rule (one line for each bad value)."""
        eos = _as_tuple(eos_token_id)
        bad = [e for e in eos if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e < vocab]
        if bad:
            raise MechHybridError(f"eos_token_id {bad[0]!r} is not a token id of the model's vocabulary "
                                  f"(0..{vocab - 1})")
        strings = _as_tuple(stop_strings)
        if any(not isinstance(s, str) or not s for s in strings):
            raise MechHybridError(f"stop_strings must be non-empty strings, got {stop_strings!r}")
        if strings and tokenizer is None:
            raise MechHybridError("stop_strings need the model's tokenizer to read the answer; this model has none")
        return cls(eos, strings, tokenizer if strings else None)

    def stops(self, generated: list[int]) -> bool:
        """True when the row that has generated `generated` (its last token just chosen) is done."""
        if generated[-1] in self.eos:
            return True
        if not self.strings:
            return False
        text = self.tokenizer.decode(generated)
        return any(s in text for s in self.strings)


@dataclass
class Progress:
    """Every row's generated tokens (and the logits they were chosen from) so far, and which rows are done."""

    rule: StopRule
    batch: int
    keep_logits: bool = True
    tokens: list[list[int]] = field(default_factory=list)
    done: list[bool] = field(default_factory=list)
    steps: list[torch.Tensor] = field(default_factory=list)
    """Per step: `[batch, vocab]` logits (kept only with `keep_logits`)."""

    def __post_init__(self):
        self.tokens = [[] for _ in range(self.batch)]
        self.done = [False] * self.batch

    @property
    def finished(self) -> bool:
        return all(self.done)

    def record(self, logits: torch.Tensor) -> torch.Tensor:
        """Choose every row's next token greedily from `[batch, vocab]` logits; `[batch]` tokens to feed next (a
        row that is done is still fed its argmax: rows never read each other, and its outputs are dropped)."""
        chosen = logits.argmax(-1)
        if self.keep_logits:
            self.steps.append(logits.detach().float().cpu())
        for row, token in enumerate(chosen.tolist()):
            if not self.done[row]:
                self.tokens[row].append(token)
                self.done[row] = self.rule.stops(self.tokens[row])
        return chosen

    def counts(self) -> torch.Tensor:
        """`[batch]` long: tokens each row generated."""
        return torch.tensor([len(t) for t in self.tokens], dtype=torch.long)

    def logits(self) -> torch.Tensor | None:
        """`[batch, new, vocab]` (new = the most any row generated), zeros past each row's end; None when not kept."""
        if not self.keep_logits:
            return None
        new = max(len(t) for t in self.tokens)
        logits = torch.stack(self.steps[:new], 1)
        counts = self.counts()
        logits[torch.arange(new)[None] >= counts[:, None]] = 0
        return logits


def check_ragged_items(items: Sequence) -> None:
    """Refuse what a batch of prompts of different lengths cannot carry: values returned over one shared sequence
    (Capture, states) and inputs given as one `[batch, seq]` tensor (sources, per-token head masks)."""
    for item in items:
        name = type(item).__name__
        if is_state_intervention(item) or isinstance(item, Capture):
            raise MechHybridError(
                f"{name} in generate needs prompts of one length (it returns tensors over one shared sequence); "
                "call generate once per prompt length"
            )
        if isinstance(item, Patch) or (isinstance(item, Ablate) and item.method == "resample"):
            raise MechHybridError(f"{name} takes a source of the input's shape, which prompts of different lengths "
                                  "do not have; call generate once per prompt length")
        if isinstance(item, Ablate) and item.per_position:
            raise MechHybridError("a per-position mean ablation needs prompts of one length")
        heads = getattr(item, "heads", None)
        if isinstance(item, (AblateHeads, KeepHeads)) and isinstance(heads, torch.Tensor) and heads.dtype == torch.bool:
            raise MechHybridError(f"{name} with a per-token head mask needs prompts of one length")


def read_prompts(hm, input_ids, attention_mask) -> list[torch.Tensor]:
    """The prompts as 1-D long tensors (on the CPU), each checked against the model; one line for bad input."""
    if isinstance(input_ids, torch.Tensor):
        ids = check_input_ids(hm, input_ids)
        layout = layout_of(ids, attention_mask)
        ids = ids.detach().cpu().long()
        if layout is None:
            return list(ids)
        return [ids[row, o : o + n] for row, (o, n) in enumerate(zip(layout.offsets.tolist(), layout.lengths.tolist()))]
    if attention_mask is not None:
        raise MechHybridError("attention_mask goes with a [batch, seq] tensor of ids; a list of prompts needs none")
    if not isinstance(input_ids, (list, tuple)) or not input_ids:
        raise MechHybridError("input_ids must be a [batch, seq] tensor or a non-empty list of prompts (each a list "
                              f"or 1-D tensor of token ids), got {type(input_ids).__name__}")
    prompts = []
    for index, prompt in enumerate(input_ids):
        row = _prompt_row(prompt, index)
        check_input_ids(hm, row[None])
        prompts.append(row)
    return prompts


def _prompt_row(prompt, index: int) -> torch.Tensor:
    if isinstance(prompt, torch.Tensor):
        if prompt.ndim != 1 or prompt.is_floating_point() or prompt.is_complex() or prompt.dtype == torch.bool:
            raise MechHybridError(f"prompt {index} must be a 1-D tensor of integer token ids, got shape "
                                  f"{tuple(prompt.shape)} and dtype {prompt.dtype}")
        row = prompt.detach().cpu().long()
    else:
        try:
            if isinstance(prompt, (str, bytes)) or any(isinstance(t, bool) for t in prompt):
                raise TypeError
            row = torch.tensor([operator.index(t) for t in prompt], dtype=torch.long)
        except TypeError:
            raise MechHybridError(f"prompt {index} must be a list of integer token ids or a 1-D tensor, got "
                                  f"{type(prompt).__name__} {str(prompt)[:40]}") from None
    if row.numel() == 0:
        raise MechHybridError(f"prompt {index} is empty: every prompt needs at least one token")
    return row


def for_rows(items: Sequence, rows: list[int], batch: int) -> list:
    """The interventions as they apply to prompts `rows` of `batch`: per-prompt fields (ROW_FIELDS) sliced."""
    out = []
    for item in items:
        changes = {}
        for name in ROW_FIELDS:
            value = getattr(item, name, None)
            if not isinstance(value, torch.Tensor):
                continue
            if value.shape[0] != batch:
                raise MechHybridError(f"{type(item).__name__} {name} mask has {value.shape[0]} rows; there are "
                                      f"{batch} prompts")
            sliced = value[rows]
            # Columns past a row group's last True key change nothing (a narrower mask leaves later keys alone):
            # trimmed, so that a mask as wide as the longest prompt fits a shorter prompt's own sequence.
            named = sliced.any(0).nonzero()
            changes[name] = sliced[:, :int(named[-1]) + 1 if len(named) else 1]
        out.append(dataclasses.replace(item, **changes) if changes else item)
    return out


def _mean_bank(hm, row_items: list[list], width: int) -> SourceBank:
    """The clean runs every mean ablation reads (one per reference batch), shared by every row and step."""
    bank = SourceBank()
    means = {id(i): dataclasses.replace(i, positions=None, phase="all") for items in row_items for i in items
             if isinstance(i, Ablate) and i.method == "mean"}
    if means:
        bank.fill(hm, torch.zeros(1, width, dtype=torch.long), [list(means.values())], "all")
    return bank


def _row_sets(row_items, origins, starts: list[int], length: int, totals: list[int], bank, phase: str) -> list[list]:
    """Each row's interventions localized to its own tokens [start, start + length); one shared set
    when every row's land on the same columns."""
    sets, signatures = [], []
    for items, origin, start, total in zip(row_items, origins, starts, totals):
        local, signature = [], []
        for item, source in zip(items, origin):
            if item.phase not in ("all", phase):
                continue
            piece = localize(item, start, start + length, total, bank)
            if piece is not None:
                local.append(piece)
                # An attention edit's keys sit at columns that depend on the row's own start.
                where = start if is_attention_intervention(piece) else getattr(piece, "positions", None)
                signature.append((source, item.phase, where))
        sets.append(local)
        signatures.append(tuple(signature))
    return sets[:1] if len(set(signatures)) == 1 else sets


def _segment(hm, cache, ids, mask, start: int, stop: int, sets: list[list], phase: str, bank) -> torch.Tensor:
    """Columns [start, stop) of every row through the cache, masked; `[batch, stop - start, vocab]` logits."""
    segment = ids[:, start:stop].to(hm.device)
    shape = segment if len(sets) == 1 else segment[:1]  # one row per set when rows differ
    plan = compile_plan(hm, shape, sets, phase=phase)
    bank.supply(plan)
    seen = mask[:, :stop].to(hm.device)
    kwargs = {"cache": cache, "use_cache": True, "attention_mask": seen}
    if spec_for(hm).pass_positions:
        kwargs["position_ids"] = (seen.cumsum(1) - 1).clamp(min=0)[:, start:stop]
    with installed(hm, plan.attention):
        return forward_with_ops(hm, plan.ops, segment, kwargs)


def run_left_padded(hm, prompts: list[torch.Tensor], row_items: list[list], origins: list[list], max_new: int,
                    progress: Progress) -> None:
    """Greedy generation of prompts of different lengths as one left-padded batch, into `progress`.

    `row_items[b]`: row b's foundation interventions, positions already in its own coordinates (negative prefill
    positions resolved against its prompt); `origins[b][i]`: the index of the caller's intervention that
    `row_items[b][i]` came from (rows sharing origins and columns share one intervention set)."""
    lengths = [len(p) for p in prompts]
    width, batch = max(lengths), len(prompts)
    ids = torch.zeros(batch, width + max_new, dtype=torch.long)
    mask = torch.ones(batch, width + max_new, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) : width] = prompt
        mask[row, : width - len(prompt)] = 0
    offsets = [width - n for n in lengths]
    totals = [n + max_new for n in lengths]
    bank = _mean_bank(hm, row_items, width)
    cache = cache_ops.new_cache(hm, batch)
    sets = _row_sets(row_items, origins, [-o for o in offsets], width, totals, bank, "prefill")
    last = _segment(hm, cache, ids, mask, 0, width, sets, "prefill", bank)[:, -1]
    for step in range(max_new):
        column = width + step
        ids[:, column] = progress.record(last).cpu()
        if progress.finished or step == max_new - 1:
            return
        sets = _row_sets(row_items, origins, [column - o for o in offsets], 1, totals, bank, "decode")
        last = _segment(hm, cache, ids, mask, column, column + 1, sets, "decode", bank)[:, -1]
