"""Residual streams under many intervention sets at once, and the per-token quantities built on them.

Axis names: set, layer, batch, seq, d_model, vocab.
"""

from __future__ import annotations

import torch

from mechhybrid.finite import check_finite

from .timing import FORWARD

__all__ = ["hidden_states_many", "embeddings", "logit_lens_kl"]


def hidden_states_many(hm, input_ids: torch.Tensor, sets: list[list]) -> torch.Tensor:
    """[set, layer, batch, seq, d_model]: hm.hidden_states under each set, as one stacked forward (timed),
    checked finite (a non-finite residual stream is one line naming where it first appeared)."""
    with torch.no_grad(), FORWARD:
        hidden = hm.hidden_states_many(input_ids, [list(s) for s in sets])
    check_finite(hm, input_ids, hidden, what="hidden states")
    return hidden


def embeddings(hm, input_ids: torch.Tensor) -> torch.Tensor:
    """[batch, seq, d_model]: the residual stream entering layer 0 (as the model scales it, e.g. Gemma's
    sqrt(d_model)), from transformers' own hidden_states[0]."""
    with torch.no_grad(), FORWARD:
        out = hm.hf_model(input_ids.to(hm.hf_model.device), output_hidden_states=True)
    return out.hidden_states[0]


def logit_lens_kl(hm, base: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """[batch, seq] KL(p_base || p_other) of the logit lens (final norm, then unembedding) at every position.

    Study A took the last token only and skipped the final norm; the norm is part of the readout the model
    itself uses, so leaving it out measures a distribution the model never forms."""
    with torch.no_grad():
        lp = torch.log_softmax(hm.logit_lens(base).float(), -1)
        lq = torch.log_softmax(hm.logit_lens(other).float(), -1)
        return (lp.exp() * (lp - lq)).sum(-1)
