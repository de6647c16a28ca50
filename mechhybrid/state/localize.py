"""Foundation interventions restricted to one segment [start, stop) of a sequence run in pieces.

A segmented forward runs tokens [start, stop) on top of a cache. Each foundation intervention is rewritten so
that, inside the segment, it does exactly what it does in one full forward: positions are filtered and shifted,
per-token head masks sliced, and anything read from another input (`Patch`, `resample`, `mean`) is taken from
one *full-length* clean forward of that input (the `SourceBank`), sliced to the segment, never from a forward of
the segment alone (which would lose the prefix's context).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from mechhybrid.attention.compile import localize_attention
from mechhybrid.attention.types import is_attention_intervention
from mechhybrid.engine import Plan, capture_sources, compile_plan
from mechhybrid.errors import MechHybridError
from mechhybrid.inputs import layout_of
from mechhybrid.interventions import Ablate, AblateHeads, Capture, KeepHeads, Patch, Steer


def resolve_position(position: int, total: int, what: str = "position") -> int:
    """A non-negative position (negative counts from the end of a `total`-token sequence), range-checked."""
    if not -total <= position < total:
        raise MechHybridError(f"{what} {position} out of range for a sequence of {total} tokens")
    return position % total


@dataclass
class SourceBank:
    """Full-length clean activations of every source input, and which placeholder reads which slice."""

    values: dict = field(default_factory=dict)
    """(source key, point) -> `[batch, seq, ...]` activation (a source key is `Plan.need_source`'s)."""
    aliases: dict = field(default_factory=dict)
    """id(placeholder ids) -> (source key, slice or None)."""
    keep: list = field(default_factory=list)
    """Placeholders kept alive so that their ids stay unique."""

    def fill(self, hm, input_ids: torch.Tensor, intervention_sets, phase: str) -> None:
        """Capture what the whole-sequence plan would read, in one clean forward per source."""
        plan = compile_plan(hm, input_ids, intervention_sets, phase=phase)
        for ids, mask, _ in plan.sources.values():
            if layout_of(ids, mask) is not None:
                raise MechHybridError("state interventions and generation need unpadded sources: "
                                      "source_mask / reference_mask must be all ones")
        capture_sources(hm, plan)
        # Every source is unpadded here, so its mask (all ones) is not part of what identifies it.
        self.values.update({((key[0], None), point): v for (key, point), v in plan.source_values.items()})

    def alias(self, source: torch.Tensor, placeholder: torch.Tensor, part: slice | None) -> torch.Tensor:
        self.keep.append(placeholder)
        self.aliases[id(placeholder)] = ((id(source), None), part)
        return placeholder

    def supply(self, plan: Plan) -> None:
        """Fill a segment plan's source values from the bank."""
        for key, (_, _, points) in plan.sources.items():
            origin, part = self.aliases.get(key[0], (key, None))
            for point in points:
                if (origin, point) not in self.values:
                    raise MechHybridError(f"no source activation for {point[0]}: this intervention needs a "
                                          "source input, which is not available in this phase")
                value = self.values[(origin, point)]
                plan.source_values[(key, point)] = value if part is None else value[:, part]


def _local_positions(positions, start: int, stop: int, total: int):
    """Positions inside [start, stop), shifted to the segment; None = all; () = none here."""
    if positions is None:
        return None
    absolute = sorted({resolve_position(p, total) for p in positions})
    return tuple(p - start for p in absolute if start <= p < stop)


def localize(item, start: int, stop: int, total: int, bank: SourceBank):
    """The intervention as it applies to tokens [start, stop) of a `total`-token sequence; None if it does not."""
    positions = _local_positions(getattr(item, "positions", None), start, stop, total)
    if positions == ():
        return None
    if is_attention_intervention(item):
        return localize_attention(item, positions, start, stop, total)
    changes: dict = {}
    if hasattr(item, "positions"):
        changes["positions"] = positions
    if isinstance(item, Patch) or (isinstance(item, Ablate) and item.method == "resample"):
        changes["source_ids"] = bank.alias(item.source_ids, item.source_ids[:, start:stop], slice(start, stop))
        changes["source_mask"] = None  # the bank holds unpadded sources only (SourceBank.fill)
    elif isinstance(item, Ablate) and item.method == "mean":
        changes["reference_mask"] = None
        if item.per_position:
            reference = item.reference_ids
            changes["reference_ids"] = bank.alias(reference, reference[:, start:], slice(start, None))
    elif isinstance(item, (AblateHeads, KeepHeads)) and isinstance(item.heads, torch.Tensor) and (
        item.heads.dtype == torch.bool
    ):
        changes["heads"] = item.heads[:, start:stop]
    elif not isinstance(item, (Ablate, AblateHeads, KeepHeads, Capture, Steer)):
        raise MechHybridError(f"not an intervention: {type(item).__name__}")
    return dataclasses.replace(item, **changes)


def capture_positions(item: Capture, start: int, stop: int, total: int) -> list[int]:
    """Absolute positions a localized Capture records in [start, stop), in recorded order."""
    if item.positions is None:
        return list(range(start, stop))
    return [p for p in sorted({resolve_position(p, total) for p in item.positions}) if start <= p < stop]


def assemble_capture(item: Capture, pieces: list[torch.Tensor], recorded: list[int], total: int) -> torch.Tensor:
    """Concatenate a Capture's per-segment pieces and put them in the order a full forward returns."""
    value = torch.cat(pieces, dim=1)
    if item.positions is None:
        return value
    index = {p: i for i, p in enumerate(recorded)}
    order = [index[resolve_position(p, total)] for p in item.positions]
    return value[:, order]
