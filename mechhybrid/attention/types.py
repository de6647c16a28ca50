"""Attention items as data: capture the softmax pattern, edit the pre-softmax logits of chosen keys, and keep the
most peaked heads at each query (`KeepTopHeads`).

Axis names: `batch`, `head` (query heads: with grouped-query attention each query head is addressed on its own,
whatever key/value head it shares), `query`, `key`.

Selections shared by the items:
- `layers`: layer indices or attention `Component`s; None = every layer with softmax attention.
- `heads` (captures and edits): query head indices; None = every head.
- `positions`: the query positions where the item applies (None = every query), as in every intervention:
  negative ones count from the end (in `generate`, from the end of the prompt for a `prefill` item and of the
  whole sequence otherwise).
- `keys` (edits): the key positions to act on (negative ones count from the end of the input; in `generate`,
  from the end of the prompt in every phase), or a boolean tensor `[batch, n]` (True = act on that key) so that
  each row may name its own positions (a needle at a different depth per prompt); a mask narrower than the
  sequence leaves the later keys alone.
- `phase`: `all`, `prefill` or `decode`, as for every intervention.

Logits are the scaled scores `q . k * scaling` that the softmax receives (after the model's own multipliers). An
edit only ever acts on keys the model's own mask lets the query see (causal order, sliding window): it never
reveals a key the model hides. Several edits at one layer apply in the order given, each on the result of the
previous; a `CaptureAttention` records the pattern after every edit of its set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence, Union

import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.interventions import Positions, _Base, as_positions

__all__ = [
    "EDIT_OPS", "HEAD_SCORES", "AttentionPattern", "CaptureAttention", "EditLogits", "FocusKeys", "KeepTopHeads",
    "Localized", "MaskKeys", "is_attention_intervention",
]

EDIT_OPS = ("add", "scale", "set")
"""`EditLogits.op`: `add` adds `value` to the logit, `scale` multiplies it by `value`, `set` replaces it."""

HEAD_SCORES = ("entropy", "l2")
"""`KeepTopHeads.score`: how peaked a head's post-softmax distribution is at one query. `entropy`: -sum p log2 p
over the keys (lower = more peaked); `l2`: the L2 norm of p (higher = more peaked), Study B's alternative."""

Keys = Union[Sequence[int], torch.Tensor]


def _as_layers(value) -> tuple | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, int) or hasattr(value, "layer") else tuple(value)
    for item in items:
        if not (isinstance(item, int) or hasattr(item, "layer")):
            raise MechHybridError(f"layers must be layer indices or attention Components, got {type(item).__name__}")
    return items


def _as_keys(value, name: str):
    if isinstance(value, torch.Tensor) and value.dtype == torch.bool:
        if value.ndim != 2:
            raise MechHybridError(f"{name} keys mask must be 2-D [batch, n], got shape {tuple(value.shape)}")
        return value
    if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex()):
        raise MechHybridError(f"{name} keys must be integer positions or a boolean mask, got dtype {value.dtype}")
    return as_positions(value)


class _AttentionItem(_Base):
    """Shared normalisation and the prompt-relative rewrite `generate` applies to prefill items."""

    def _normalise_attention(self) -> None:
        self._normalise(components_field=None)
        object.__setattr__(self, "layers", _as_layers(self.layers))
        if getattr(self, "heads", None) is not None:
            object.__setattr__(self, "heads", tuple(int(h) for h in as_positions(self.heads)))
        if hasattr(self, "keys"):
            object.__setattr__(self, "keys", _as_keys(self.keys, type(self).__name__))

    def prompt_relative(self, prompt_len: int):
        """This item as `generate` reads it on a `prompt_len`-token prompt: negative keys count from the end of
        the prompt in every phase (keys name prompt tokens, such as a needle); negative query positions do so in
        a `prefill` item only (elsewhere they count from the end of the whole sequence, as for every
        intervention)."""
        changes = {}
        for name in ("positions", "keys") if self.phase == "prefill" else ("keys",):
            value = getattr(self, name, None)
            if isinstance(value, tuple) and any(p < 0 for p in value):
                changes[name] = tuple(p + prompt_len if p < 0 else p for p in value)
        return dataclasses.replace(self, **changes) if changes else self


@dataclass(frozen=True, eq=False)
class CaptureAttention(_AttentionItem):
    """Record post-softmax probabilities (and the logits the softmax received) at chosen layers, heads and
    query positions, over every key: `[batch, head, query, key]` per layer, in `RunResult.attention`.

    The default records the last query position only, so memory grows with the sequence, not with its square;
    `positions=None` records every query (the full `[head, seq, seq]` per layer: ask for it knowingly). Recorded
    in a full forward (`hm.run`, `hm.attention_patterns`); `generate` refuses it: the pattern of a generated
    token is the one a full forward over prompt and generated tokens computes at that position.
    """

    layers: Sequence | None = None
    positions: Positions = (-1,)
    heads: Sequence[int] | None = None
    scores: bool = True
    """Also record the pre-softmax logits (hidden keys as -inf)."""
    phase: str = "all"

    def __post_init__(self):
        self._normalise_attention()


@dataclass(frozen=True, eq=False)
class MaskKeys(_AttentionItem):
    """Hide `keys` from the chosen heads' softmax, as the causal mask hides future tokens: the remaining keys
    share the probability (hide the needle). A query left with no visible key gets a zero attention output."""

    keys: Keys
    layers: Sequence | None = None
    heads: Sequence[int] | None = None
    positions: Positions = None
    phase: str = "all"

    def __post_init__(self):
        self._normalise_attention()


@dataclass(frozen=True, eq=False)
class EditLogits(_AttentionItem):
    """Add to, scale, or set the pre-softmax logits of `keys` at the chosen heads (`op`, `value`)."""

    keys: Keys
    op: str
    value: float
    layers: Sequence | None = None
    heads: Sequence[int] | None = None
    positions: Positions = None
    phase: str = "all"

    def __post_init__(self):
        self._normalise_attention()
        if self.op not in EDIT_OPS:
            raise MechHybridError(f"unknown EditLogits op {self.op!r}; choose one of {', '.join(EDIT_OPS)}")
        object.__setattr__(self, "value", float(self.value))


@dataclass(frozen=True, eq=False)
class FocusKeys(_AttentionItem):
    """Study B's needle focus: the logits of `keys` become `scale x` the query's largest logit over the keys it
    sees (taken before this edit), at the chosen heads. With a negative largest logit, `scale > 1` lowers it:
    that is the published rule, kept as is."""

    keys: Keys
    scale: float = 1.0
    layers: Sequence | None = None
    heads: Sequence[int] | None = None
    positions: Positions = None
    phase: str = "all"

    def __post_init__(self):
        self._normalise_attention()
        object.__setattr__(self, "scale", float(self.scale))


@dataclass(frozen=True, eq=False)
class KeepTopHeads(_AttentionItem):
    """Study B's head sparsification per query token: at every chosen query, keep the `k` query heads whose
    attention is most peaked there and zero the others' attention outputs before the output projection.

    Each head is scored from that query's own post-softmax distribution in the same forward (after any logit edit
    of the same set at that layer), by `score` (HEAD_SCORES). Equal scores keep the lower head index. `k=0`
    zeroes every head (attention ablated at the output projection's input); `k` at least the layer's heads
    changes nothing. With grouped-query attention each query head is kept or dropped on its own. A query whose
    keys are all hidden (by a MaskKeys) gives its heads entropy 0 and norm 0; their outputs are zero anyway.
    """

    k: int
    score: str = "entropy"
    layers: Sequence | None = None
    positions: Positions = None
    phase: str = "all"

    def __post_init__(self):
        self._normalise_attention()
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 0:
            raise MechHybridError(f"KeepTopHeads k must be a non-negative integer (heads kept per query), "
                                  f"got {self.k!r}")
        if self.score not in HEAD_SCORES:
            raise MechHybridError(f"unknown KeepTopHeads score {self.score!r}; choose one of {', '.join(HEAD_SCORES)}")


ITEM_TYPES = (CaptureAttention, MaskKeys, EditLogits, FocusKeys, KeepTopHeads)


@dataclass(frozen=True)
class Localized:
    """An edit restricted to tokens `[start, start + seq)` of a run made in segments (`generate`, state runs):
    its query positions local to the segment, its integer keys absolute and non-negative."""

    item: MaskKeys | EditLogits | FocusKeys | KeepTopHeads
    start: int

    @property
    def phase(self) -> str:
        return self.item.phase


def is_attention_intervention(item) -> bool:
    """True for the items this package compiles (including their segment-local form)."""
    return isinstance(item, ITEM_TYPES + (Localized,))


@dataclass
class AttentionPattern:
    """What `CaptureAttention` recorded at one layer, in the caller's layout (padded batches as given)."""

    layer: int
    probs: torch.Tensor
    """`[batch, head, query, key]` float32 post-softmax probabilities (rows sum to 1 over the visible keys)."""
    scores: torch.Tensor | None
    """`[batch, head, query, key]` pre-softmax logits, hidden keys -inf; None when not asked for."""
    queries: tuple[int, ...]
    """The query positions along the query axis, as asked (negative ones count from the end)."""
    heads: tuple[int, ...]
    """The query heads along the head axis."""

    def __post_init__(self):
        if self.probs.ndim != 4:
            raise ValueError(f"probs must be [batch, head, query, key], got shape {tuple(self.probs.shape)}")
        if self.probs.shape[1:3] != (len(self.heads), len(self.queries)):
            raise ValueError(
                f"probs shape {tuple(self.probs.shape)} does not match {len(self.heads)} heads x "
                f"{len(self.queries)} queries"
            )
        if self.scores is not None and self.scores.shape != self.probs.shape:
            raise ValueError(f"scores shape {tuple(self.scores.shape)} differs from probs {tuple(self.probs.shape)}")
