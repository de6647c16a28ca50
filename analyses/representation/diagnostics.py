"""Per-component representation diagnostics from residual streams (pure tensor functions).

Axis names: layer, batch, seq, d_model. "Token" means one (batch, seq) position; every diagnostic is a mean
over all tokens (Study A used the last token only).
"""

from __future__ import annotations

import torch

from ..hidden import logit_lens_kl
from ..stats import linear_cka

__all__ = ["DIAGNOSTICS", "rel_norm_change", "cosine", "out_in_norm_ratio", "cka_per_layer", "component_diagnostics"]

DIAGNOSTICS = ("rel_norm_change", "cosine", "out_in_norm_ratio", "kl_logit_lens", "cka")
EPS = 1e-12


def rel_norm_change(base: torch.Tensor, ablated: torch.Tensor) -> float:
    """Mean over tokens of (|h_ablated| - |h_base|) / |h_base|: signed, so shrinking and growing differ."""
    nb, na = base.float().norm(dim=-1), ablated.float().norm(dim=-1)
    return float(((na - nb) / nb.clamp_min(EPS)).mean())


def cosine(base: torch.Tensor, ablated: torch.Tensor) -> float:
    """Mean over tokens of cos(h_base, h_ablated)."""
    return float(torch.nn.functional.cosine_similarity(base.float(), ablated.float(), dim=-1, eps=EPS).mean())


def out_in_norm_ratio(out: torch.Tensor, inp: torch.Tensor) -> float:
    """Mean over tokens of |component output| / |residual stream entering its layer| (baseline run)."""
    return float((out.float().norm(dim=-1) / inp.float().norm(dim=-1).clamp_min(EPS)).mean())


def cka_per_layer(base: torch.Tensor, ablated: torch.Tensor) -> list[float]:
    """Linear CKA between baseline and ablated residual streams [layer, batch, seq, d_model], tokens as samples."""
    d = base.shape[-1]
    return [linear_cka(base[i].reshape(-1, d).double().cpu().numpy(),
                       ablated[i].reshape(-1, d).double().cpu().numpy()) for i in range(base.shape[0])]


def component_diagnostics(hm, layer: int, base: torch.Tensor, ablated: torch.Tensor,
                          out: torch.Tensor, inp: torch.Tensor) -> dict[str, float | list[float]]:
    """Every diagnostic of one ablated component at `layer`: base/ablated are [layer, batch, seq, d_model];
    out is the component's baseline output and inp the residual entering its layer, [batch, seq, d_model]."""
    cka = cka_per_layer(base, ablated)
    return {
        "rel_norm_change": rel_norm_change(base[layer], ablated[layer]),
        "cosine": cosine(base[layer], ablated[layer]),
        "out_in_norm_ratio": out_in_norm_ratio(out, inp),
        "kl_logit_lens": float(logit_lens_kl(hm, base[layer], ablated[layer]).mean()),
        "cka": cka[layer],
        "cka_layers": cka,
    }
