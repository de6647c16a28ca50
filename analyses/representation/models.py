"""CKA between two models' residual streams on the same inputs (`cka_models:<other>` rows)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..common import Checkpoints, warn
from ..schema import Row
from ..stats import linear_cka
from ..hidden import hidden_states_many

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


def _vocab(hm) -> tuple:
    tok = getattr(hm, "tokenizer", None)
    return hm.vocab_size, (tuple(sorted(tok.get_vocab().items())) if tok is not None else None)


def _same_vocab(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and (a[1] is None or b[1] is None or a[1] == b[1])


_HIDDEN: dict[tuple[str, str], tuple[tuple, torch.Tensor]] = {}
"""(model source, input hash) -> (vocabulary, hidden states on CPU): a study compares every model with every
other on the same inputs, so each model's stream is computed (and each model loaded) once per process."""
MAX_CACHED = 2**26  # floats: a 24-layer, d=1024 model on 16 x 128 tokens (200 MB) still fits


def _remember(source: str, xkey: str, vocab: tuple, hidden: torch.Tensor) -> None:
    if hidden.numel() <= MAX_CACHED:
        _HIDDEN[(source, xkey)] = (vocab, hidden.detach().cpu())


def _hidden_of(source: str, x: torch.Tensor, xkey: str, load_options: dict) -> tuple[tuple, torch.Tensor]:
    import mechhybrid

    if (source, xkey) not in _HIDDEN:
        other = mechhybrid.load(source, **load_options)
        hidden = hidden_states_many(other, x.to(other.hf_model.device), [[]])[0]
        _remember(source, xkey, _vocab(other), hidden)
        return _vocab(other), hidden.cpu()
    return _HIDDEN[(source, xkey)]


def cka_models_rows(hm, x: torch.Tensor, others, seed: int, checkpoints: Checkpoints | None,
                    progress=None) -> list[Row]:
    """Rows `cka_models:<other>` / `cka:<layer>` for every other model (same token ids fed); one progress
    step per model, also for one left out for its other vocabulary."""
    xkey = hashlib.sha256(x.cpu().numpy().tobytes()).hexdigest()[:16]
    base = hidden_states_many(hm, x.to(hm.hf_model.device), [[]])[0].cpu()
    vocab = _vocab(hm)
    _remember(hm.name, xkey, vocab, base)
    rows = []
    for source in others:
        rows += _rows_against(hm, source, x, xkey, vocab, base, seed, checkpoints)
        if progress is not None:
            progress.update(1)
    return rows


def _rows_against(hm, source: str, x, xkey: str, vocab: tuple, base, seed: int, checkpoints) -> list[Row]:
    key = f"cka_models|{source}"
    saved = checkpoints.get(key) if checkpoints is not None else None
    if saved is None:
        other_vocab, h_other = _hidden_of(source, x, xkey, hm.load_options)
        if not _same_vocab(vocab, other_vocab):
            warn(f"cka_models: {source} has another vocabulary than {hm.name}; not compared")
            return []
        saved = {"cka": np.asarray(cka_between(base, h_other))}
        if checkpoints is not None:
            checkpoints.put(key, saved)
    return [Row(f"cka_models:{source}", "none", f"cka:{i}", float(v), n=int(x.numel()), seed=seed,
                coords={"other_model": source, "layer": i}) for i, v in enumerate(np.asarray(saved["cka"]))]
