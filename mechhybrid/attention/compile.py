"""Attention items compiled into per-layer requests, which the attention function applies inside the forward.

A request (an edit, a capture or a per-query head choice) belongs to one intervention set (its `rows` of the
stacked batch) and one layer. It selects query heads, query positions (in the layout the model runs: padded
batches run right-aligned, `mechhybrid.inputs`) and keys. Keys are held as `bool[batch, end]` over absolute
positions `0..end-1`, where `end` is the position after the forward's last query: the keys the model attends to
always end at its last query (a full forward's keys are the sequence; a cached segment's keys are what the cache
holds, a sliding window keeping only the most recent), so key `j` of `kv` keys is absolute position
`end - kv + j`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch

from mechhybrid.attention.types import (
    AttentionPattern, CaptureAttention, EditLogits, FocusKeys, KeepTopHeads, Localized, MaskKeys,
)
from mechhybrid.engine import _Op, _position_mask
from mechhybrid.errors import MechHybridError
from mechhybrid.inputs import Layout

__all__ = ["AttentionPlan", "CaptureSpec", "Request", "attention_layers", "compile_attention", "localize_attention"]

Edit = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""(scores, visible, select) of one set's rows -> (scores, visible): `[batch, head, query, key]` each."""


@dataclass
class CaptureSpec:
    """Where one `CaptureAttention` puts what it records at one layer."""

    item: CaptureAttention
    set_index: int
    index: torch.Tensor
    """`long[batch, query]`: per row, the query asked for at each place of the query axis, in the run's layout."""
    layout: Layout | None
    """The input's layout: recorded keys are rotated back to the caller's."""


@dataclass
class Request:
    """One set's edit or capture at one layer."""

    rows: slice
    heads: torch.Tensor
    """`bool[head]`: the query heads it acts on."""
    queries: torch.Tensor | None
    """`bool[batch, seq]`: the queries it acts on, in the run's layout; None = every query."""
    keys: torch.Tensor | None = None
    """`bool[batch, end]`: the keys an edit acts on (see the module docstring); None for a capture."""
    edit: Edit | None = None
    capture: CaptureSpec | None = None
    hides: bool = False
    """True for a MaskKeys: it only hides keys, which the model's own kernel can do through its mask."""
    top: KeepTopHeads | None = None
    """A head choice per query: which heads' outputs to keep is decided from the pattern (`kernel.keep_top`)."""

    @property
    def every_query(self) -> bool:
        """True when this request must see the pattern of every query (an edit or choice on all of them)."""
        return self.capture is None and self.queries is None and not (self.top is not None and self.top.k == 0)

    def needs(self, seq: int) -> torch.Tensor:
        """`bool[seq]`: the queries whose pattern this request must see computed."""
        if self.top is not None and self.top.k == 0:  # zeroing every head reads no pattern
            return torch.zeros(seq, dtype=torch.bool)
        if self.capture is not None:
            need = torch.zeros(seq, dtype=torch.bool)
            need[self.capture.index.flatten()] = True
            return need
        return torch.ones(seq, dtype=torch.bool) if self.queries is None else self.queries.any(0)


@dataclass
class AttentionPlan:
    """Every request of one stacked forward, by layer (in the order given), and what the captures recorded."""

    requests: dict[int, list[Request]] = field(default_factory=dict)
    patterns: dict[int, dict[int, AttentionPattern]] = field(default_factory=dict)
    """Set index -> layer -> the recorded pattern (filled by the forward)."""


def attention_layers(hm) -> dict[int, object]:
    """Layer -> its softmax-attention Component."""
    return {c.layer: c for c in hm.components if c.kind == "attention"}


def _resolve_layers(hm, layers, what: str) -> dict[int, object]:
    found = attention_layers(hm)
    if not found:
        raise MechHybridError(f"{what}: {hm.family} has no softmax attention layer; it needs a model with attention")
    if layers is None:
        return found
    chosen = {}
    for item in layers:
        layer = item.layer if hasattr(item, "layer") else item
        if hasattr(item, "kind") and item not in found.values():
            kind = "an attention component" if item.kind != "attention" else "a component of this model"
            raise MechHybridError(f"{what}: {item.name} ({item.path}) is not {kind}")
        if not 0 <= layer < hm.n_layers:
            raise MechHybridError(f"{what}: layer {layer} out of range: the model has layers 0..{hm.n_layers - 1}")
        if layer not in found:
            raise MechHybridError(
                f"{what}: layer {layer} has no softmax attention; attention layers: {', '.join(map(str, found))}"
            )
        if layer in chosen:
            raise MechHybridError(f"{what}: layer {layer} is selected twice")
        chosen[layer] = found[layer]
    return chosen


def _head_mask(heads, component, what: str) -> torch.Tensor:
    n_heads = component.n_heads
    mask = torch.zeros(n_heads, dtype=torch.bool)
    if heads is None:
        return ~mask
    bad = [h for h in heads if not 0 <= h < n_heads]
    if bad:
        raise MechHybridError(f"{what}: head {bad[0]} out of range: {component.name} has heads 0..{n_heads - 1}")
    mask[list(heads)] = True
    return mask


def _query_mask(plan, positions) -> torch.Tensor | None:
    """`bool[batch, seq]` of the queries an edit acts on, in the run's layout; None = every query."""
    given = _position_mask(positions, plan.seq)
    if given is None:
        return None
    internal = plan.internal(given)
    return internal if internal.ndim == 2 else internal[None].expand(plan.batch, -1)


def _key_mask(plan, keys, start: int, what: str) -> torch.Tensor:
    """`bool[batch, end]` of the keys an edit acts on, in the run's layout (`end = start + seq`)."""
    batch, seq = plan.batch, plan.seq
    end = start + seq
    mask = torch.zeros(batch, end, dtype=torch.bool)
    if isinstance(keys, torch.Tensor):
        if keys.shape[0] != batch:
            raise MechHybridError(f"{what}: keys mask has batch {keys.shape[0]}; the input has {batch}")
        if start == 0 and keys.shape[1] > seq:
            raise MechHybridError(f"{what}: keys mask covers {keys.shape[1]} positions; the sequence has {seq}")
        width = min(keys.shape[1], end)
        mask[:, :width] = keys[:, :width].to("cpu")
    else:
        for p in keys:
            if start == 0 and not -seq <= p < seq:
                raise MechHybridError(f"{what}: key position {p} out of range for a sequence of {seq} tokens")
            mask[:, p % end if start == 0 else p] = True
    return plan.internal(mask) if start == 0 else mask


def _mask_keys(scores, visible, select):
    return scores, visible & ~select


def _edit_logits(op: str, value: float) -> Edit:
    def edit(scores, visible, select):
        new = {"add": lambda: scores + value, "scale": lambda: scores * value,
               "set": lambda: torch.full_like(scores, value)}[op]()
        return torch.where(select & visible, new, scores), visible

    return edit


def _focus_keys(scale: float) -> Edit:
    def edit(scores, visible, select):
        top = scores.masked_fill(~visible, float("-inf")).amax(-1, keepdim=True)
        return torch.where(select & visible, top * scale, scores), visible

    return edit


def _edit_of(item) -> Edit:
    if isinstance(item, MaskKeys):
        return _mask_keys
    if isinstance(item, EditLogits):
        return _edit_logits(item.op, item.value)
    return _focus_keys(item.scale)


def compile_attention(hm, plan, item, rows: slice, set_index: int) -> None:
    """Add one attention item of set `set_index` (rows `rows`) to `plan.attention`, checked against the model."""
    start = 0
    if isinstance(item, Localized):
        item, start = item.item, item.start
    what = type(item).__name__
    if plan.attention is None:
        plan.attention = AttentionPlan()
    layers = _resolve_layers(hm, item.layers, what)
    top = item if isinstance(item, KeepTopHeads) else None
    if isinstance(item, CaptureAttention):
        spec = _capture_spec(plan, item, set_index)
        queries, keys, edit = None, None, None
    elif top is not None:
        spec, queries, keys, edit = None, _query_mask(plan, item.positions), None, None
        # Keeping at least every head changes nothing: such layers get no request (and run the model's kernel).
        layers = {layer: c for layer, c in layers.items() if top.k < c.n_heads}
    else:
        spec, queries, edit = None, _query_mask(plan, item.positions), _edit_of(item)
        keys = _key_mask(plan, item.keys, start, what)
    heads = {layer: _head_mask(getattr(item, "heads", None), component, what) for layer, component in layers.items()}
    if spec is None and ((keys is not None and not keys.any()) or (queries is not None and not queries.any())):
        return  # no key or no query to act on: the forward runs as if the item were absent
    if not layers:
        return
    if not plan.attention.requests:  # one guard per forward is enough: every request needs the same install
        component = next(iter(layers.values()))
        plan.add((component.layer_path, "in"), _Op(slice(None), _guard(hm, component), records=True))
    for layer in layers:
        request = Request(rows, heads[layer], queries, keys, edit, spec, hides=isinstance(item, MaskKeys), top=top)
        plan.attention.requests.setdefault(layer, []).append(request)


def _guard(hm, component) -> Callable:
    """An operation at a requested layer's input that refuses a forward run without `interface.installed`: a
    path that compiles attention items but does not install them would otherwise silently ignore them."""
    config = hm.module(component.path).config

    def guard(tensor, rows, stash):
        from mechhybrid.attention.interface import is_installed

        if not is_installed(config):
            raise MechHybridError(
                f"{component.name}: this forward does not install mechhybrid's attention function "
                "(mechhybrid.attention.interface.installed), so its attention edits would be ignored"
            )

    return guard


def _capture_spec(plan, item: CaptureAttention, set_index: int) -> CaptureSpec:
    seq = plan.seq
    asked = tuple(range(seq)) if item.positions is None else item.positions
    for p in asked:
        if not -seq <= p < seq:
            raise MechHybridError(f"CaptureAttention: query position {p} out of range for a sequence of {seq} tokens")
    absolute = torch.tensor([p % seq for p in asked], dtype=torch.long)
    offsets = torch.zeros(plan.batch, dtype=torch.long)
    if plan.layout is not None and plan.layout.rotates:
        offsets = plan.layout.offsets
    index = (absolute[None] - offsets[:, None]) % seq  # [batch, query]
    return CaptureSpec(item=dataclasses.replace(item, positions=asked), set_index=set_index, index=index,
                       layout=plan.layout)


def localize_attention(item, positions, start: int, stop: int, total: int):
    """An edit as it applies to tokens `[start, stop)` of a `total`-token run made in segments; None when it has
    nothing to do there. `positions` are its query positions already made local to the segment."""
    what = type(item).__name__
    if isinstance(item, CaptureAttention):
        raise MechHybridError(
            "CaptureAttention needs one full forward (hm.run, hm.attention_patterns): in generate or with state "
            "interventions, capture on the prompt plus generated tokens with a full forward instead"
        )
    if isinstance(item, KeepTopHeads):  # no keys: it acts on the segment's queries only
        return Localized(dataclasses.replace(item, positions=positions), start)
    keys = item.keys
    if isinstance(keys, torch.Tensor):
        if keys.shape[1] > total:
            raise MechHybridError(f"{what}: keys mask covers {keys.shape[1]} positions; the sequence has {total}")
    else:
        for p in keys:
            if not -total <= p < total:
                raise MechHybridError(f"{what}: key position {p} out of range for a sequence of {total} tokens")
        keys = tuple(p % total for p in keys if p % total < stop)  # later keys are not in this segment yet
        if not keys:
            return None
    return Localized(dataclasses.replace(item, positions=positions, keys=keys), start)
