"""Gather and Aggregate scores of every softmax-attention head, from its post-softmax attention.

On a segmented prompt (prompts.SegmentedPrompt), for one head:
- `gather`: at each segment's last token, the attention mass on that segment's own tokens (the last token
  included), averaged over the segments: a Gather head condenses a segment into its last token;
- `aggregate`: at the final query position, the mass on the segments' last tokens: an Aggregate head reads the
  condensed segments there;
- `aggregate_answer`: at the final query position, the mass on the answer segment's last token alone.

Each has a `uniform` counterpart: the same mass under uniform attention over the keys the query may see (its
causal or sliding-window mask, read from the captured logits: hidden keys are -inf), the baseline a candidate
must beat (`candidates`). A head that attends to itself or to the previous token also scores high as a Gather
head: the ablations, not the scores, tell what a head does.

Axis names: "prompt", "head" (every attention head of the model, in `HeadScores.heads` order), "query", "key".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .prompts import SegmentedPrompt

__all__ = ["METRICS", "HeadScores", "head_scores", "attention_heads", "candidates"]

METRICS = ("gather", "aggregate", "aggregate_answer")
"""The per-head scores, in report order."""


def attention_heads(hm) -> list[tuple[int, int]]:
    """(layer, head) of every query head of the model's softmax-attention components, in order."""
    return [(c.layer, h) for c in hm.components if c.kind == "attention" and c.n_heads for h in range(c.n_heads)]


@dataclass
class HeadScores:
    """Per-prompt scores of every head, and what uniform attention would score."""

    heads: list[tuple[int, int]]
    """(layer, head) along the head axis."""
    kinds: list[str]
    """The prompt kind along the prompt axis."""
    values: dict[str, np.ndarray]
    """metric -> [prompt, head] float64."""
    uniform: dict[str, np.ndarray]
    """metric -> [prompt, head] float64: the score of uniform attention over the visible keys."""

    def __post_init__(self):
        shape = (len(self.kinds), len(self.heads))
        for table in (self.values, self.uniform):
            if set(table) != set(METRICS) or any(a.shape != shape for a in table.values()):
                raise ValueError(f"HeadScores tables must hold {METRICS}, each [prompt, head] = {shape}")


def _pad(prompts: list[SegmentedPrompt]) -> torch.Tensor:
    """[prompt, seq] right-padded ids: a causal model's real positions never see the padding after them."""
    ids = torch.zeros(len(prompts), max(len(p.ids) for p in prompts), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, :len(p.ids)] = torch.tensor(p.ids)
    return ids


def _masses(probs: torch.Tensor, p: SegmentedPrompt) -> list[torch.Tensor]:
    """[head] gather, aggregate, aggregate_answer masses of one prompt from its [head, query, key] matrix."""
    gather = torch.stack([probs[:, end - 1, start:end].sum(-1) for start, end in p.segments]).mean(0)
    ends = list(p.ends)
    at_query = probs[:, p.query]  # [head, key]
    return [gather, at_query[:, ends].sum(-1), at_query[:, ends[p.answer]]]


def _batch_scores(hm, prompts: list[SegmentedPrompt]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """([metric] -> [prompt, head], the same under uniform attention) for one batch of prompts."""
    ids = _pad(prompts)
    with torch.no_grad():
        patterns = hm.attention_patterns(ids, positions=None)
    values = [[] for _ in METRICS]
    uniform = [[] for _ in METRICS]
    for row, p in enumerate(prompts):
        got, flat = [[] for _ in METRICS], [[] for _ in METRICS]
        for layer in sorted(patterns):
            pat = patterns[layer]
            probs = pat.probs[row].double()  # [head, query, key]
            visible = torch.isfinite(pat.scores[row]).double()
            even = visible / visible.sum(-1, keepdim=True).clamp_min(1.0)
            for m, (a, b) in enumerate(zip(_masses(probs, p), _masses(even, p))):
                got[m].append(a)
                flat[m].append(b)
        for m in range(len(METRICS)):
            values[m].append(torch.cat(got[m]).numpy())
            uniform[m].append(torch.cat(flat[m]).numpy())
    return [np.stack(v) for v in values], [np.stack(u) for u in uniform]


def head_scores(hm, prompts: list[SegmentedPrompt], batch_size: int = 16) -> HeadScores:
    """Every attention head's scores on every prompt (a model without attention heads: no heads)."""
    heads = attention_heads(hm)
    values = {m: [] for m in METRICS}
    uniform = {m: [] for m in METRICS}
    for start in range(0, len(prompts), batch_size):
        got, flat = _batch_scores(hm, prompts[start:start + batch_size])
        for m, metric in enumerate(METRICS):
            values[metric].append(got[m])
            uniform[metric].append(flat[m])
    join = lambda parts: np.concatenate(parts) if parts else np.zeros((0, len(heads)))  # noqa: E731
    return HeadScores(heads, [p.kind for p in prompts], {m: join(v) for m, v in values.items()},
                      {m: join(u) for m, u in uniform.items()})


def candidates(scores: HeadScores, metric: str, top_n: int, min_lift: float) -> list[tuple[int, int]]:
    """The `top_n` heads with the highest mean `metric` over every prompt, among those whose mean is at least
    `min_lift` x the mean of uniform attention on the same prompts; ties go to the lower (layer, head)."""
    mean, flat = scores.values[metric].mean(0), scores.uniform[metric].mean(0)
    passing = [i for i in range(len(scores.heads)) if mean[i] >= min_lift * flat[i]]
    ranked = sorted(passing, key=lambda i: (-mean[i], scores.heads[i]))
    return [scores.heads[i] for i in ranked[:top_n]]
