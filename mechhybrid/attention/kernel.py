"""The eager attention behind captures and logit edits, for the queries they need and nothing more.

It is transformers' eager attention (`eager_attention_forward`, the same in every family here): scores
`q . k * scaling` in the query's dtype, the model's mask, a float32 softmax. Queries that no request needs keep
the output of the implementation the model runs (`sdpa` or `eager`); with only captures, that output is kept for
every query and the pattern is computed beside it, from the same q, k and mask: capturing never changes the
forward. Memory is `[rows, head, needed queries, key]`: the last query alone costs one row per head.

A `KeepTopHeads` reads the probabilities of its queries (after its own set's edits) and zeroes the heads it
drops in the output, whichever kernel computed it (`mechhybrid.attention.heads`).

`MaskKeys` alone needs no probabilities: its keys are hidden in the model's own mask, which the model's own kernel
then runs on (`[rows, 1, query, key]` booleans, or one plane per head when it hides keys from some heads only).
"""

from __future__ import annotations

from typing import Callable

import torch

from mechhybrid.attention.compile import Request
from mechhybrid.attention.heads import keep_top
from mechhybrid.attention.types import AttentionPattern
from mechhybrid.errors import MechHybridError

__all__ = ["attend", "visibility"]


def visibility(mask: torch.Tensor | None, q_len: int, kv_len: int) -> torch.Tensor:
    """`bool[batch | 1, 1, query, key]`: which keys each query may see, from the mask the model built.

    `None` is sdpa's causal shortcut (transformers passes no mask when the keys end at the last query and nothing
    is padded); a boolean mask is sdpa's (True = visible); a float mask is eager's (0 = visible, the dtype's
    minimum = hidden)."""
    if mask is None:
        causal = torch.arange(kv_len)[None] <= torch.arange(q_len)[:, None] + (kv_len - q_len)
        return causal[None, None]
    if tuple(mask.shape[-2:]) != (q_len, kv_len):
        raise MechHybridError(
            f"attention mask of shape {tuple(mask.shape)} does not match {q_len} queries x {kv_len} keys"
        )
    if mask.dtype == torch.bool:
        return mask
    hidden = mask <= torch.finfo(mask.dtype).min
    if not bool(((mask == 0) | hidden).all()):
        raise MechHybridError("the model's additive attention mask holds values other than 0 and -inf (a bias): "
                              "attention edits and captures read only causal / window / padding masks")
    return ~hidden


def _repeat_kv(tensor: torch.Tensor, groups: int) -> torch.Tensor:
    """`[rows, kv_head, kv, d] -> [rows, kv_head * groups, kv, d]`: query head h reads key/value head h // groups."""
    return tensor if groups == 1 else tensor.repeat_interleave(groups, dim=1)


def _select(request: Request, chosen: torch.Tensor, kv_len: int, device) -> torch.Tensor:
    """`bool[batch, head | 1, query, key]`: the entries of the chosen queries one edit acts on (head axis 1 when
    it acts on every head)."""
    keys, end = request.keys, request.keys.shape[1]
    if kv_len > end:  # columns before position 0 (a left-padded row's padding) hold no key to act on
        keys = torch.cat([keys.new_zeros(keys.shape[0], kv_len - end), keys], dim=1)
    heads = request.heads if not bool(request.heads.all()) else request.heads[:1]
    select = heads[None, :, None, None] & keys[:, keys.shape[1] - kv_len :][:, None, None, :]
    if request.queries is not None:
        select = select & request.queries[:, chosen][:, None, :, None]
    return select.to(device)


def attend(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask, scaling: float,
    requests: list[Request], delegate: Callable, sink: dict, layer: int,
):
    """`(attention output [rows, query, head, d_v], weights or None)` with the requests' edits applied, their
    captures written to `sink` (set -> layer -> AttentionPattern) and their head choices' dropped heads zeroed;
    `delegate(visible=None)` runs the model's own attention, on its own mask or on the boolean `visible` one."""
    rows, n_heads, q_len, _ = query.shape
    kv_len = key.shape[2]
    if all(r.hides for r in requests):
        hidden = _hide_in_mask(requests, mask, (rows, n_heads, q_len, kv_len), query.device)
        if hidden is not None:
            return delegate(hidden)
    chosen = _needed(requests, q_len)
    edits = [r for r in requests if r.edit is not None]
    choices = [r for r in requests if r.top is not None]
    full = len(chosen) == q_len
    out, weights = (None, None) if edits and full else delegate()
    probs = None
    if chosen.numel():
        probs = _pattern(query, key, mask, scaling, requests, chosen, (sink, layer))
    if edits:
        values = _repeat_kv(value, n_heads // key.shape[1])
        new = torch.matmul(probs.to(values.dtype), values).transpose(1, 2)  # [rows, query, head, d_v]
        if full:
            out, weights = new.contiguous(), None
        else:
            out = out.index_copy(1, chosen.to(out.device), new.to(out.dtype))
    if choices:
        out = keep_top(out, probs, chosen, choices)
    return out, weights


def _needed(requests: list[Request], q_len: int) -> torch.Tensor:
    """`long[chosen]`: the queries whose pattern some request needs, ascending."""
    if any(r.every_query for r in requests):
        return torch.arange(q_len)
    need = torch.zeros(q_len, dtype=torch.bool)
    for request in requests:
        need |= request.needs(q_len)
    return need.nonzero().flatten()


def _pattern(query, key, mask, scaling: float, requests: list[Request], chosen: torch.Tensor, where) -> torch.Tensor:
    """`[rows, head, chosen query, key]` float32 probabilities of the chosen queries, after every edit (in the
    order given); captures are written to `where = (sink, layer)`."""
    rows, n_heads, q_len, d = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    edits = [r for r in requests if r.edit is not None]
    if not edits and mask is None and len(chosen) == 1 and int(chosen[0]) == q_len - 1:
        # A decode step: the causal shortcut's last query sees every key, so no mask is built or applied, and the
        # query heads that share a key head are one matrix product with it (no repeated keys). With the other
        # cuts, KeepTopHeads in decode went from 1.43-1.49x to 1.19-1.27x transformers' generate at batch 1, and
        # from 1.25-1.40x to 1.01-1.19x at batch 8 (benchmarks/bench_generation.py --only keep-top-heads).
        grouped = query[:, :, -1:].reshape(rows, kv_heads, n_heads // kv_heads, d)
        scores = (torch.matmul(grouped, key.transpose(2, 3)) * scaling).view(rows, n_heads, 1, kv_len)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
        _record_all(requests, probs, scores, chosen, q_len, where)
        return probs
    keys = _repeat_kv(key, n_heads // kv_heads)
    picked = query if chosen.numel() == q_len else query[:, :, chosen.to(query.device)]
    scores = torch.matmul(picked, keys.transpose(2, 3)) * scaling  # [rows, head, query, key]
    visible = visibility(mask, q_len, kv_len).to(query.device)[:, :, chosen.to(query.device)]
    visible = visible.expand(rows, n_heads, chosen.numel(), kv_len)
    if edits:
        visible = visible.clone()
        for request in edits:
            select = _select(request, chosen, kv_len, query.device)
            scores[request.rows], visible[request.rows] = request.edit(
                scores[request.rows], visible[request.rows], select
            )
    masked = scores.masked_fill(~visible, float("-inf"))
    probs = torch.softmax(masked, dim=-1, dtype=torch.float32)
    probs = probs.masked_fill(~visible.any(-1, keepdim=True), 0.0)  # a query left with no key attends to nothing
    _record_all(requests, probs, masked, chosen, q_len, where)
    return probs


def _record_all(requests: list[Request], probs, masked, chosen, q_len: int, where) -> None:
    for request in requests:
        if request.capture is not None:
            _record(request, probs, masked, chosen, q_len, *where)


def _hide_in_mask(requests: list[Request], mask, shape: tuple, device) -> torch.Tensor | None:
    """`bool[rows, head | 1, query, key]`: the model's mask with the requests' keys hidden, for the model's own
    kernel (MaskKeys alone needs no probabilities: `[query, key]` booleans instead of float scores and
    probabilities per head); None when some query would be left with no key, which the eager path defines."""
    rows, n_heads, q_len, kv_len = shape
    per_head = any(not bool(r.heads.all()) for r in requests)
    visible = visibility(mask, q_len, kv_len).to(device)
    visible = visible.expand(rows, n_heads if per_head else 1, q_len, kv_len).clone()
    every = torch.arange(q_len)
    for request in requests:
        visible[request.rows] &= ~_select(request, every, kv_len, device)
    return visible if bool(visible.any(-1).all()) else None


def _record(request: Request, probs, masked, chosen, q_len: int, sink: dict, layer: int) -> None:
    """Write one capture's pattern: its rows, heads and queries (in the order asked), keys in the caller's layout."""
    spec = request.capture
    where = torch.full((q_len,), -1, dtype=torch.long)
    where[chosen] = torch.arange(len(chosen))
    index = where[spec.index].to(probs.device)  # [batch, query] into the computed queries
    heads = request.heads.nonzero().flatten() if spec.item.heads is None else torch.tensor(spec.item.heads)

    def pick(values: torch.Tensor) -> torch.Tensor:
        part = values[request.rows][:, heads.to(values.device)]
        gather = index[:, None, :, None].expand(part.shape[0], part.shape[1], index.shape[1], part.shape[3])
        part = part.gather(2, gather).float()
        return part if spec.layout is None else spec.layout.to_given(part, dim=3)

    sink.setdefault(spec.set_index, {})[layer] = AttentionPattern(
        layer=layer, probs=pick(probs), scores=pick(masked) if spec.item.scores else None,
        queries=tuple(spec.item.positions), heads=tuple(heads.tolist()),
    )
