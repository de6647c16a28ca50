"""A state patch in a sweep equals a cache transplant driven by hand with transformers' own cache.

The hand-driven run shares no code with mechhybrid: the clean prompt runs to token t through a fresh cache, the
corrupted prompt runs to token t through another, the layer's recurrent state and conv window are copied from
the first into the second, and the corrupted prompt continues from there (one token at a time where the
family's multi-token continuation is not exact)."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from mechhybrid.tracing import StateSite, plan, sweep
from tests.conftest import both_shapes, random_ids
from tests.core.reference import resolve
from tests.state.helpers import EXPECTED_STATE_LAYERS, STATEFUL

TOL = 1e-4
ONE_TOKEN_AT_A_TIME = ("jamba", "recurrent_gemma")


class Hand:
    """Cache plumbing written from transformers' classes, for one family."""

    def __init__(self, hm, model_type: str):
        self.model, self.model_type = hm.hf_model, model_type
        self.layers = resolve(self.model, hm.family_spec.layers)

    def fresh(self):
        cache = DynamicCache(config=self.model.config)
        if self.model_type == "recurrent_gemma":  # its recurrent blocks keep their state on the module
            self.model.model._setup_cache(self.model.config, 1, torch.device("cpu"), torch.float32)
        return cache

    def run(self, ids, cache, start: int):
        positions = torch.arange(start, start + ids.shape[1])[None]
        kwargs = {} if self.model_type == "mamba2" else {"position_ids": positions}  # mamba2 takes none
        with torch.no_grad():
            return self.model(ids, cache=cache, use_cache=True, **kwargs).logits

    def tensors(self, cache, layer: int) -> list:
        """(holder, key) of the layer's recurrent state and conv window."""
        if self.model_type == "recurrent_gemma":
            block = self.layers[layer].temporal_block
            return [(block.rg_lru, "recurrent_states"), (block, "conv1d_state")]
        slots = cache.layers[layer]
        found = [(slots.conv_states, 0)]
        if slots.recurrent_states.get(0) is not None:
            found.append((slots.recurrent_states, 0))
        return found

    def transplant(self, clean, corrupted, layer: int, t: int) -> torch.Tensor:
        """Last-token logits `[vocab]` of `corrupted` with `layer`'s state after token t taken from `clean`."""
        source = self.fresh()
        self.run(clean[:, : t + 1], source, 0)
        saved = [_get(h, k).clone() for h, k in self.tensors(source, layer)]
        cache = self.fresh()
        logits = self.run(corrupted[:, : t + 1], cache, 0)
        for (holder, key), value in zip(self.tensors(cache, layer), saved):
            _set(holder, key, value)
        rest = corrupted.shape[1]
        if self.model_type in ONE_TOKEN_AT_A_TIME:
            for p in range(t + 1, rest):
                logits = self.run(corrupted[:, p: p + 1], cache, p)
        elif t + 1 < rest:
            logits = self.run(corrupted[:, t + 1:], cache, t + 1)
        return logits[0, -1]


def _get(holder, key):
    return holder[key] if isinstance(holder, dict) else getattr(holder, key)


def _set(holder, key, value):
    if isinstance(holder, dict):
        holder[key] = value
    else:
        setattr(holder, key, value)


@pytest.mark.parametrize("model_type,shape,merge", both_shapes([(t, m) for t in STATEFUL for m in (True, False)]))
def test_state_patch_equals_a_hand_driven_transplant(tiny_models, model_type, shape, merge, monkeypatch):
    """Every recurrent layer, at two positions, in a batch of two prompts of different lengths; with the runs
    of several first layers merged into one forward and without."""
    costs = plan.Costs(1.0, 0.0, 0.0) if merge else plan.Costs(0.0, 1.0, 1.0)
    monkeypatch.setattr(plan, "measure_costs", lambda hm, ids: costs)
    _, hm = tiny_models(model_type, shape)
    lengths = (8, 6)
    clean = [random_ids(1, n, 11 + i) for i, n in enumerate(lengths)]
    corrupted = [random_ids(1, n, 31 + i) for i, n in enumerate(lengths)]
    weight = torch.randn(hm.vocab_size, generator=torch.Generator().manual_seed(5))
    metric = lambda logits: (logits.float() @ weight).mean()
    layers = EXPECTED_STATE_LAYERS[shape][model_type]
    result = sweep(hm, [c[0].tolist() for c in clean], [x[0].tolist() for x in corrupted],
                   [StateSite(layer) for layer in layers], metric, positions=[-4, -2])
    assert result.sites == tuple(f"L{layer}.state" for layer in layers)
    hand = Hand(hm, model_type)
    for i, layer in enumerate(layers):
        for j, p in enumerate((-4, -2)):
            rows = [hand.transplant(c, x, layer, n + p) for c, x, n in zip(clean, corrupted, lengths)]
            assert abs(result.values[i, j].item() - metric(torch.stack(rows)).item()) < TOL
    assert (result.values - result.corrupted_metric).abs().max().item() > 2 * TOL  # a missed patch would show
