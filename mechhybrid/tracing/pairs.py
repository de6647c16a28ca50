"""Clean / corrupted prompt pairs, and the positions a sweep patches in each row.

Pairs may have different lengths from row to row (never within a pair: position-by-position patching puts the
clean value at token p into the corrupted run's token p). They arrive as `[batch, seq]` tensors with masks
(padding on the left or the right) or as lists of token lists; inside, every row is right-padded, so a row's
real tokens are `0 .. length - 1` in every layout.

Positions count within each row's real tokens: `p >= 0` is the row's token p, `p < 0` counts from the row's end
(right-aligned: `-1` is every row's last token whatever its length).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.inputs import check_input_ids, layout_of

__all__ = ["Pairs", "as_pairs", "Columns", "resolve_positions"]


@dataclass(frozen=True)
class Pairs:
    """Clean and corrupted prompts, row by row, without padding."""

    clean: tuple[tuple[int, ...], ...]
    corrupted: tuple[tuple[int, ...], ...]

    @property
    def batch(self) -> int:
        return len(self.clean)

    @property
    def lengths(self) -> tuple[int, ...]:
        return tuple(len(row) for row in self.clean)


def _rows(hm, ids, mask, what: str) -> list[tuple[int, ...]]:
    if isinstance(ids, torch.Tensor):
        ids = check_input_ids(hm, ids)
        layout = layout_of(ids, mask, f"{what}_mask")
        if layout is None:
            return [tuple(row) for row in ids.tolist()]
        spans = zip(layout.offsets.tolist(), layout.lengths.tolist())
        return [tuple(ids[b, o: o + n].tolist()) for b, (o, n) in enumerate(spans)]
    if mask is not None:
        raise MechHybridError(f"{what}_mask applies to a tensor of ids; {what} is a list of token lists")
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise MechHybridError(f"{what} must be a [batch, seq] tensor of token ids or a list of token lists")
    rows = [tuple(int(t) for t in row) for row in ids]
    if not rows or any(not row for row in rows):
        raise MechHybridError(f"{what} has an empty row (or no rows): every prompt needs at least one token")
    width = max(len(r) for r in rows)
    check_input_ids(hm, torch.tensor([r + (r[0],) * (width - len(r)) for r in rows]))
    return rows


def as_pairs(hm, clean, corrupted, clean_mask=None, corrupted_mask=None) -> Pairs:
    """The prompts row by row, checked: same number of rows, and each pair of one length."""
    clean_rows = _rows(hm, clean, clean_mask, "clean")
    corrupted_rows = _rows(hm, corrupted, corrupted_mask, "corrupted")
    if len(clean_rows) != len(corrupted_rows):
        raise MechHybridError(f"clean has {len(clean_rows)} rows, corrupted {len(corrupted_rows)}: one pair per row")
    for b, (c, x) in enumerate(zip(clean_rows, corrupted_rows)):
        if len(c) != len(x):
            raise MechHybridError(
                f"pair {b}: clean prompt has {len(c)} tokens, corrupted {len(x)}; patching position by position "
                "needs the two prompts of a pair to have equal lengths"
            )
    return Pairs(tuple(clean_rows), tuple(corrupted_rows))


@dataclass(frozen=True)
class Columns:
    """The positions of a sweep: one column per label, each row's (absolute, right-padded) positions in it."""

    labels: tuple
    """Per column: the position as given (an int, a tuple of ints patched together, or the column index of an
    explicit `[batch, n]` tensor)."""
    table: tuple[tuple[tuple[int, ...], ...], ...]
    """`table[column][row]`: the row's token indices patched in that column (non-negative, sorted)."""

    def at(self, column: int) -> torch.Tensor:
        """`[batch]` the first patched index of each row in a column."""
        return torch.tensor([row[0] for row in self.table[column]])


def _resolve_one(p: int, length: int, row: int) -> int:
    if not -length <= p < length:
        raise MechHybridError(f"position {p} out of range for row {row} ({length} tokens)")
    return p % length


def resolve_positions(positions, lengths: tuple[int, ...]) -> Columns:
    """Positions (None: every position, one column each; ints; tuples of ints patched together; or a `[batch,
    n]` tensor of per-row positions) -> Columns. With None and rows of different lengths, the columns are the
    shortest row's positions counted from each row's end (`-n .. -1`)."""
    batch = len(lengths)
    if isinstance(positions, torch.Tensor) and positions.ndim == 2:
        if positions.shape[0] != batch or positions.is_floating_point():
            raise MechHybridError(f"per-row positions must be an integer [batch={batch}, n] tensor, "
                                  f"got {positions.dtype} {tuple(positions.shape)}")
        table = tuple(
            tuple((_resolve_one(int(positions[b, j]), lengths[b], b),) for b in range(batch))
            for j in range(positions.shape[1])
        )
        labels = tuple(range(positions.shape[1]))
    else:
        if positions is None:
            shortest = min(lengths)
            uniform = len(set(lengths)) == 1
            positions = list(range(shortest)) if uniform else list(range(-shortest, 0))
        elif isinstance(positions, int) or (isinstance(positions, torch.Tensor) and positions.ndim == 0):
            positions = [int(positions)]
        elif isinstance(positions, torch.Tensor):
            positions = positions.tolist()
        labels, table = [], []
        for entry in positions:
            group = tuple(int(p) for p in entry) if isinstance(entry, (tuple, list)) else (int(entry),)
            if not group:
                raise MechHybridError("an empty tuple of positions patches nothing; give at least one position")
            labels.append(group if isinstance(entry, (tuple, list)) else group[0])
            table.append(tuple(tuple(sorted({_resolve_one(p, n, b) for p in group})) for b, n in enumerate(lengths)))
        labels, table = tuple(labels), tuple(table)
    if not labels:
        raise MechHybridError("empty position selection: name at least one position to patch")
    return Columns(labels, table)
