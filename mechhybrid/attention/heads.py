"""Per-query head choice (`KeepTopHeads`, Study B's head sparsification): score every query head from its own
post-softmax distribution at that query, keep the `k` most peaked, zero the others' attention outputs.

Axis names: `batch`, `head` (query heads), `query`, `key`, `d_v`. The attention output `[batch, query, head, d_v]`
is what the module reshapes to `[batch, query, head * d_v]` and gates / projects, so zeroing a head there is
zeroing it at the output projection's input (a gate multiplies zero by its sigmoid).
"""

from __future__ import annotations

import math

import torch

from mechhybrid.attention.compile import Request

__all__ = ["keep_top", "peak_order_key"]


def peak_order_key(probs: torch.Tensor, score: str) -> torch.Tensor:
    """`[..., key] -> [...]`: a value that sorts the most peaked distribution first (ascending). `entropy`:
    -sum p log2 p (0 log 0 = 0, so hidden keys add nothing); `l2`: minus the L2 norm of p."""
    if score == "entropy":
        return -torch.special.xlogy(probs, probs).sum(-1) / math.log(2)
    return -torch.linalg.vector_norm(probs, dim=-1)


def _kept(probs: torch.Tensor, k: int, score: str) -> torch.Tensor:
    """`[batch, head, query, key] -> bool[batch, query, head]`: the `k` most peaked heads at each query; equal
    scores keep the lower head index (a stable sort over the head axis)."""
    order = torch.sort(peak_order_key(probs, score), dim=1, stable=True).indices  # [batch, head, query]
    kept = torch.zeros(order.shape, dtype=torch.bool, device=probs.device)
    kept.scatter_(1, order[:, :k], True)
    return kept.transpose(1, 2)


def _dropped(request: Request, probs, chosen: torch.Tensor, shape: tuple, device) -> torch.Tensor:
    """`bool[batch, query, head]` over one request's rows and every query of the forward: the heads it zeroes."""
    batch, q_len, n_heads = shape
    queries = torch.ones(batch, q_len, dtype=torch.bool) if request.queries is None else request.queries
    queries = queries.to(device)[:, :, None]
    if request.top.k == 0:
        return queries.expand(batch, q_len, n_heads)
    drop = torch.zeros(shape, dtype=torch.bool, device=device)
    drop[:, chosen.to(device)] = ~_kept(probs[request.rows], request.top.k, request.top.score)
    return drop & queries


def keep_top(out: torch.Tensor, probs: torch.Tensor | None, chosen: torch.Tensor, requests: list[Request]):
    """`out` (`[rows, query, head, d_v]`) with every head that a request drops at one of its queries zeroed.

    `probs` is `[rows, head, chosen query, key]` for the queries `chosen` (every query a request with `k > 0`
    acts on is among them); None when no request reads a pattern (every `k` is 0)."""
    rows, q_len, n_heads = out.shape[:3]
    drop = torch.zeros(rows, q_len, n_heads, dtype=torch.bool, device=out.device)
    for request in requests:
        batch = len(range(rows)[request.rows])
        drop[request.rows] |= _dropped(request, probs, chosen, (batch, q_len, n_heads), out.device)
    return out.masked_fill(drop[..., None], 0)
