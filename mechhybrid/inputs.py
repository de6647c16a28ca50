"""Input checks and padded batches that give every row what it gets alone.

Axis names: `batch`, `seq` (plus whatever trailing axes a tensor carries).

A causal model's outputs at a row's real tokens depend only on the tokens before them, so padding that sits
after each row's tokens (right padding) changes nothing at the real positions, in every family, with no mask at
all. Left padding is not exact in transformers: positions shift (learned absolute positions; RoPE without
`position_ids`), and recurrences and short convolutions that never look at the mask fold the pad tokens into
their state (valid-position logits off by up to 13 in a zoo model). So mechhybrid runs every padded batch
right-padded: each row is rotated so that its first real token comes first, the model runs unmasked, and every
output is rotated back. Positions that interventions name stay in the layout the caller gave; the engine
rotates their masks the same way. Outputs at padding positions are unspecified.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mechhybrid.errors import MechHybridError

__all__ = ["Layout", "layout_of", "check_input_ids", "roll_rows"]


@dataclass(frozen=True)
class Layout:
    """Where each row's real tokens sit in a padded batch (one contiguous run of ones per mask row)."""

    offsets: torch.Tensor
    """`[batch]` long: padding tokens before each row's first real token."""
    lengths: torch.Tensor
    """`[batch]` long: real tokens per row."""

    @property
    def batch(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def rotates(self) -> bool:
        """True when some row starts with padding (left padding): only then do tensors need rotating."""
        return bool(self.offsets.any())

    def valid(self, seq: int) -> torch.Tensor:
        """`bool[batch, seq]`: the real tokens, in the caller's layout."""
        index = torch.arange(seq)[None]
        return (index >= self.offsets[:, None]) & (index < (self.offsets + self.lengths)[:, None])

    def to_internal(self, tensor: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """Caller's layout -> the right-padded layout the model runs (rows may be a multiple of the batch)."""
        return roll_rows(tensor, self.offsets, dim) if self.rotates else tensor

    def to_given(self, tensor: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """The right-padded layout the model ran -> the caller's layout."""
        return roll_rows(tensor, -self.offsets, dim) if self.rotates else tensor


def roll_rows(tensor: torch.Tensor, shifts: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Row b rotated left by `shifts[b]` along `dim`: `out[b, t] = x[b, (t + shifts[b]) % seq]`.

    `tensor`'s rows may be several stacked copies of the batch (intervention sets): `shifts` repeats over them.
    """
    rows, seq = tensor.shape[0], tensor.shape[dim]
    shifts = shifts.to(tensor.device).repeat(rows // shifts.shape[0])
    index = (torch.arange(seq, device=tensor.device)[None] + shifts[:, None]) % seq  # [rows, seq]
    shape = [rows] + [1] * (tensor.ndim - 1)
    shape[dim] = seq
    index = index.reshape(shape).expand_as(tensor)
    return torch.gather(tensor, dim, index)


def layout_of(input_ids: torch.Tensor, mask, what: str = "attention_mask") -> Layout | None:
    """The layout a mask describes; None when there is no mask or no padding. One line for a bad mask."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise MechHybridError(f"{what} must be a tensor of 0/1 with the ids' shape, got {type(mask).__name__}")
    if tuple(mask.shape) != tuple(input_ids.shape):
        raise MechHybridError(f"{what} has shape {tuple(mask.shape)}; the ids have shape {tuple(input_ids.shape)}")
    if mask.dtype != torch.bool and not bool(((mask == 0) | (mask == 1)).all()):
        raise MechHybridError(f"{what} must hold only 0 and 1")
    valid = mask.detach().to("cpu").bool()
    if bool(valid.all()):
        return None
    lengths = valid.sum(1)
    empty = (lengths == 0).nonzero()
    if len(empty):
        raise MechHybridError(f"{what} row {int(empty[0])} masks every token: nothing to run")
    offsets = valid.long().argmax(1)
    layout = Layout(offsets=offsets, lengths=lengths)
    holes = (layout.valid(valid.shape[1]) != valid).any(1).nonzero()
    if len(holes):
        raise MechHybridError(
            f"{what} row {int(holes[0])} has padding between real tokens; pad on the left or on the right only"
        )
    return layout


def check_input_ids(hm, input_ids) -> torch.Tensor:
    """A `[batch, seq]` integer tensor of token ids the model has embeddings (and positions) for."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise MechHybridError(f"input_ids must be a 2-D integer tensor [batch, seq], got {shape}")
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise MechHybridError(f"input_ids must hold integer token ids, got dtype {input_ids.dtype}")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise MechHybridError(f"input_ids is empty (shape {tuple(input_ids.shape)})")
    vocab = hm.hf_model.get_input_embeddings().weight.shape[0]
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= vocab:
        bad = low if low < 0 else high
        raise MechHybridError(f"token id {bad} is outside the model's vocabulary (0..{vocab - 1})")
    table = hm.family_spec.learned_positions
    limit = None if table is None else getattr(hm.config, table, None)
    if limit is not None and input_ids.shape[1] > limit:
        raise MechHybridError(
            f"{input_ids.shape[1]} tokens exceed {hm.name}'s table of {limit} learned positions ({table})"
        )
    return input_ids
