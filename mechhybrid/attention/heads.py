"""Per-query head choice (`KeepTopHeads`, Study B's head sparsification): score every query head from its own
post-softmax distribution at that query, keep the `k` most peaked, zero the others' attention outputs.

Axis names: `batch`, `head` (query heads), `query`, `key`, `d_v`. The attention output `[batch, query, head, d_v]`
is what the module reshapes to `[batch, query, head * d_v]` and gates / projects, so zeroing a head there is
zeroing it at the output projection's input (a gate multiplies zero by its sigmoid).
"""

from __future__ import annotations

import torch

from mechhybrid.attention.compile import Request

__all__ = ["keep_top", "peakedness"]


def peakedness(probs: torch.Tensor, score: str) -> torch.Tensor:
    """`[..., key] -> [...]`: how peaked each distribution is, higher = more peaked. `entropy`: sum p ln p, the
    negated entropy in nats (0 ln 0 = 0, so hidden keys add nothing; nats rank as bits do, without the division);
    `l2`: the L2 norm of p."""
    if score == "entropy":
        return torch.special.xlogy(probs, probs).sum(-1)
    return torch.linalg.vector_norm(probs, dim=-1)


def _dropped_heads(probs: torch.Tensor, k: int, score: str) -> torch.Tensor:
    """`[batch, head, query, key] -> bool[batch, query, head]`: True for every head but the `k` most peaked at
    each query; equal scores keep the lower head index (a stable sort over the head axis)."""
    order = torch.sort(peakedness(probs, score), dim=1, descending=True, stable=True).indices  # [batch, head, query]
    dropped = torch.ones(order.shape, dtype=torch.bool, device=probs.device)
    dropped.scatter_(1, order[:, :k], False)
    return dropped.transpose(1, 2)


def _dropped(request: Request, probs, chosen: torch.Tensor, shape: tuple, device) -> torch.Tensor:
    """`bool[batch, query, head]` over one request's rows and every query of the forward: the heads it zeroes."""
    batch, q_len, n_heads = shape
    queries = torch.ones(batch, q_len, dtype=torch.bool) if request.queries is None else request.queries
    queries = queries.to(device)[:, :, None]
    if request.top.k == 0:
        return queries.expand(batch, q_len, n_heads)
    drop = torch.zeros(shape, dtype=torch.bool, device=device)
    drop[:, chosen.to(device)] = _dropped_heads(probs[request.rows], request.top.k, request.top.score)
    return drop & queries


def keep_top(out: torch.Tensor, probs: torch.Tensor | None, chosen: torch.Tensor, requests: list[Request]):
    """`out` (`[rows, query, head, d_v]`) with every head that a request drops at one of its queries zeroed.

    `probs` is `[rows, head, chosen query, key]` for the queries `chosen` (every query a request with `k > 0`
    acts on is among them); None when no request reads a pattern (every `k` is 0)."""
    rows, q_len, n_heads = out.shape[:3]
    only = requests[0] if len(requests) == 1 else None
    if (only is not None and only.top.k > 0 and only.queries is None and range(rows)[only.rows] == range(rows)
            and len(chosen) == q_len):
        # One choice over every row and query (each decode step of the k-curve): its dropped heads are zeroed
        # directly, without the general path's per-request masks over the whole forward's queries
        # (benchmarks/bench_generation.py --only keep-top-heads).
        return out.masked_fill(_dropped_heads(probs, only.top.k, only.top.score)[..., None], 0)
    drop = torch.zeros(rows, q_len, n_heads, dtype=torch.bool, device=out.device)
    for request in requests:
        batch = len(range(rows)[request.rows])
        drop[request.rows] |= _dropped(request, probs, chosen, (batch, q_len, n_heads), out.device)
    return out.masked_fill(drop[..., None], 0)
