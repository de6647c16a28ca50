"""Attention patterns and attention-logit edits, through transformers' `AttentionInterface`.

`CaptureAttention` records post-softmax probabilities and pre-softmax logits; `MaskKeys`, `EditLogits` and
`FocusKeys` (Study B's needle focus) change the logits of chosen keys, per layer, head, query and phase;
`KeepTopHeads` (Study B's head sparsification) keeps the k most peaked heads at every query. They are
intervention data like `Ablate` and compose with it in `hm.run`, `hm.logits`, `hm.logits_many` and `generate`.
How each family routes its attention: docs/attention.md.
"""

from mechhybrid.attention.types import (
    EDIT_OPS, HEAD_SCORES, AttentionPattern, CaptureAttention, EditLogits, FocusKeys, KeepTopHeads, MaskKeys,
    is_attention_intervention,
)

__all__ = [
    "EDIT_OPS", "HEAD_SCORES", "AttentionPattern", "CaptureAttention", "EditLogits", "FocusKeys", "KeepTopHeads",
    "MaskKeys", "is_attention_intervention",
]
