"""CKA between two models' residual streams on the same inputs (`cka_models:<other>` rows)."""

from __future__ import annotations

import numpy as np
import torch

from ..common import Checkpoints, warn
from ..schema import Row
from ..stats import linear_cka
from ..timing import FORWARD

__all__ = ["matched_layer", "cka_between", "cka_models_rows"]


def matched_layer(layer: int, n_layers: int, n_other: int) -> int:
    """The other model's layer at the same relative depth (first to first, last to last)."""
    if n_layers == 1:
        return n_other - 1
    return round(layer * (n_other - 1) / (n_layers - 1))


def cka_between(h: torch.Tensor, h_other: torch.Tensor) -> list[float]:
    """CKA per layer of h [layer, batch, seq, d] against h_other at matched depth (d may differ)."""
    n, m = h.shape[0], h_other.shape[0]
    flat = lambda t: t.reshape(-1, t.shape[-1]).double().cpu().numpy()  # noqa: E731
    return [linear_cka(flat(h[i]), flat(h_other[matched_layer(i, n, m)])) for i in range(n)]


def _same_vocab(hm, other) -> bool:
    if hm.vocab_size != other.vocab_size:
        return False
    a, b = getattr(hm, "tokenizer", None), getattr(other, "tokenizer", None)
    return a is None or b is None or a.get_vocab() == b.get_vocab()


def cka_models_rows(hm, x: torch.Tensor, cfg, checkpoints: Checkpoints | None, progress=None) -> list[Row]:
    """Rows `cka_models:<other>` / `cka:<layer>` for every model in cfg.compare_with (same token ids fed)."""
    import mechhybrid

    rows = []
    base = None
    for source in cfg.compare_with:
        if source == hm.name:
            continue
        key = f"cka_models|{source}"
        saved = checkpoints.get(key) if checkpoints is not None else None
        if saved is None:
            other = mechhybrid.load(source)
            if not _same_vocab(hm, other):
                warn(f"cka_models: {source} has another vocabulary than {hm.name}; not compared")
                continue
            with torch.no_grad(), FORWARD:
                base = hm.hidden_states(x) if base is None else base
                h_other = other.hidden_states(x.to(other.hf_model.device))
            saved = {"name": str(other.name), "cka": np.asarray(cka_between(base, h_other))}
            if checkpoints is not None:
                checkpoints.put(key, saved)
        rows += [Row(f"cka_models:{saved['name']}", "none", f"cka:{i}", float(v), n=int(x.numel()), seed=cfg.seed)
                 for i, v in enumerate(np.asarray(saved["cka"]))]
        if progress is not None:
            progress.update(1)
    return rows
