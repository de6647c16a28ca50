"""The one teacher-forced scorer behind every benchmark number: the zoo's cards and training probe
(`benchmarks.score_items`) and the analyses' sweeps (`analyses/scoring.py`, which runs it once per intervention
set inside `hm.logits_many`). It lives here, not in `analyses/`, because training and `zoo eval` cannot import
the analyses.

A benchmark becomes `Seq`s (token ids and their scored spans); one forward over a right-padded batch gives, per
span, the statistics every metric is reduced from (`SeqScores`): summed log-probability (perplexity, multiple
choice by log-likelihood), summed clamped loss, token counts, and whether every token of the span is the argmax
prediction (exact match of a needle's value, of a recall answer). Right padding cannot change the logits at a
causal model's real positions.

Axis names: "span" (one scored span), "batch", "seq" (token position), "vocab".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["LOSS_CLAMP", "Seq", "SeqScores", "STAT_NAMES", "span_masks", "span_stats", "score_sequences"]

LOSS_CLAMP = 20.0
"""Per-token loss clamp for perplexity (Study A exp. 5): one broken token cannot reach exp(inf)."""

STAT_NAMES = ("logp", "nll_clamped", "n_tok", "n_clamped", "exact")
"""The rows of `span_stats`' output, in order: the fields of `SeqScores`."""


@dataclass(frozen=True)
class Seq:
    """A token sequence and its scored spans: [start, end) token positions, each token predicted from the
    one before it (so 1 <= start < end <= len(ids))."""

    ids: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]

    def __post_init__(self):
        if not self.spans:
            raise ValueError("Seq needs at least one scored span")
        for start, end in self.spans:
            if not 1 <= start < end <= len(self.ids):
                raise ValueError(f"span [{start}, {end}) is not inside [1, {len(self.ids)}]")


@dataclass
class SeqScores:
    """Per-span log-likelihood statistics for every intervention set: arrays [set, span], spans in the order
    of the sequences and, within one, of its spans."""

    logp: np.ndarray
    """Sum of log p(token) over the scored span."""
    nll_clamped: np.ndarray
    """Sum of min(-log p, LOSS_CLAMP) over the scored span."""
    n_tok: np.ndarray
    """Scored tokens."""
    n_clamped: np.ndarray
    """Scored tokens whose loss reached the clamp."""
    exact: np.ndarray
    """1.0 where every scored token is the argmax prediction (teacher forced), else 0.0."""

    def __post_init__(self):
        shape = self.logp.shape
        for name in STAT_NAMES[1:]:
            if getattr(self, name).shape != shape:
                raise ValueError(f"SeqScores.{name} has shape {getattr(self, name).shape}, expected {shape}")
        if len(shape) != 2:
            raise ValueError(f"SeqScores arrays are [set, span], got {shape}")

    def take(self, i: int) -> "SeqScores":
        """The scores of set i, as a one-set SeqScores."""
        return SeqScores(*(getattr(self, k)[i:i + 1] for k in STAT_NAMES))


def span_masks(ids, seqs: list[Seq]):
    """[span, batch, seq-1] bool: True where position j predicts token j+1 of that span (of that row)."""
    import torch

    pos = torch.arange(ids.shape[1] - 1)
    masks = []
    for row, s in enumerate(seqs):
        for start, end in s.spans:
            m = torch.zeros(ids.shape[0], ids.shape[1] - 1, dtype=torch.bool)
            m[row] = (pos >= start - 1) & (pos < end - 1)
            masks.append(m)
    return torch.stack(masks).to(ids.device)


def span_stats(logits, ids, masks, dtype=None):
    """One batch's logits [batch, seq, vocab] -> [5, span] (rows in STAT_NAMES order).

    `dtype`: what the log-probabilities are computed in (float32 by default: real vocabularies are large;
    the zoo's cards use float64, which its 256-token vocabulary makes cheap)."""
    import torch

    logits = logits[:, :-1].to(dtype or torch.float32)
    targets = ids[:, 1:].to(logits.device)
    lp = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    miss = (logits.argmax(-1) != targets).to(lp.dtype)
    nll = (-lp).clamp(max=LOSS_CLAMP)
    m = masks.to(lp.device).to(lp.dtype)  # [span, batch, seq-1]
    total = lambda x: (m * x.unsqueeze(0)).sum((1, 2))  # noqa: E731
    return torch.stack([total(lp), total(nll), m.sum((1, 2)), total((-lp >= LOSS_CLAMP).to(lp.dtype)),
                        (total(miss) == 0).to(lp.dtype)])


def score_sequences(seqs: list[Seq], logits_fn: Callable, batch_size: int, pad_id: int = 0,
                    dtype=None) -> SeqScores:
    """SeqScores [1, span] of `seqs` under `logits_fn(ids[batch, seq]) -> logits[batch, seq, vocab]`, one
    forward per batch of right-padded sequences, batched in a fixed length-sorted order so that the same call
    gives the same floats every time."""
    import torch

    offsets = np.cumsum([0] + [len(s.spans) for s in seqs])
    out = np.zeros((len(STAT_NAMES), int(offsets[-1])))
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i].ids), i))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(seqs[i].ids) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, :len(seqs[i].ids)] = torch.tensor(seqs[i].ids)
        with torch.no_grad():
            stats = span_stats(logits_fn(ids), ids, span_masks(ids, [seqs[i] for i in chunk]), dtype)
        cols = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in chunk])
        out[:, cols] = stats.double().cpu().numpy()
    return SeqScores(*(row[None] for row in out))
