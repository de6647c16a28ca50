"""Fitted chunk sizes (`mechhybrid.state.chunks`): the chunked scans give the model's own result at every chunk size,
from scratch and continuing a cache with a short suffix, and the size really reaches the kernel."""

from __future__ import annotations

import importlib

import pytest
import torch

from mechhybrid.state import cache as cache_ops
from mechhybrid.state.chunks import fitted_chunk, fitted_chunks
from mechhybrid.state.spec import spec_for, state_components
from mechhybrid.tracing.fast import inner
from tests.conftest import both_shapes, random_ids

CHUNKED = ("qwen3_5_text", "qwen3_next", "falcon_h1", "zamba2", "nemotron_h", "bamba", "granitemoehybrid", "mamba2")
"""Tiny model types with a chunked scan (Gated DeltaNet, Mamba-2)."""
TOL = 1e-5
SEQ, PREFIX = 40, 29


def _knobs(hm) -> list:
    spec = spec_for(hm)
    return [(hm.module(c.path), spec.layouts[c.kind]) for c in state_components(hm).values()
            if spec.layouts[c.kind].chunk is not None]


def test_fitted_chunk_is_the_next_power_of_two_within_the_cap():
    assert [fitted_chunk(n, 16) for n in (0, 1, 2, 3, 5, 8, 9, 16, 17, 64)] == [1, 1, 2, 4, 8, 8, 16, 16, 16, 16]


@pytest.mark.parametrize("model_type,shape", both_shapes(CHUNKED))
def test_every_chunk_size_gives_the_models_result(tiny_models, model_type, shape):
    """A 40-token forward from scratch at fitted sizes 1, 4 and 40 (1 to 40 chunks), and a 3-token suffix and an
    11-token suffix continuing a 29-token prefix's cache, equal the plain forward (the model's own chunk size)."""
    _, hm = tiny_models(model_type, shape)
    assert _knobs(hm), f"{model_type} should have a chunked mixer"
    ids = random_ids(2, SEQ, 5)
    with torch.no_grad():
        reference = inner(hm)(ids, use_cache=False).last_hidden_state
        for tokens in (1, 4, SEQ):
            with fitted_chunks(hm, tokens):
                got = inner(hm)(ids, use_cache=False).last_hidden_state
            assert (got - reference).abs().max().item() < TOL
        for stop in (PREFIX + 3, SEQ):
            cache = cache_ops.new_cache(hm, 2)
            inner(hm)(ids[:, :PREFIX], **cache_ops.forward_kwargs(hm, cache, 0, PREFIX, 2))
            with fitted_chunks(hm, stop - PREFIX):
                suffix = inner(hm)(ids[:, PREFIX:stop], **cache_ops.forward_kwargs(hm, cache, PREFIX, stop, 2))
            assert (suffix.last_hidden_state - reference[:, PREFIX:stop]).abs().max().item() < TOL
    assert reference[:, -1].abs().max().item() > 1e-2  # not vacuous


@pytest.mark.parametrize("model_type", CHUNKED)
def test_the_fitted_size_reaches_the_kernel_and_is_restored(tiny_models, model_type, monkeypatch):
    """Mamba-2 mixers read their `chunk_size` attribute; Gated DeltaNet's kernel is spied on for its argument."""
    _, hm = tiny_models(model_type)
    seen = []
    gdn = [layout for _, layout in _knobs(hm) if layout.chunk == "argument"]
    if gdn:
        module = importlib.import_module(type(_knobs(hm)[0][0]).__module__)
        original = module.torch_chunk_gated_delta_rule
        monkeypatch.setattr(module, "torch_chunk_gated_delta_rule",
                            lambda *a, **kw: seen.append(kw.get("chunk_size")) or original(*a, **kw))
    before = [getattr(m, "chunk_size", None) for m, _ in _knobs(hm)]
    with torch.no_grad(), fitted_chunks(hm, 3):
        for m, layout in _knobs(hm):
            if layout.chunk == "attribute":
                assert m.chunk_size == fitted_chunk(3, layout.max_chunk) == 4
        inner(hm)(random_ids(1, 3, 1), use_cache=False)
    assert [getattr(m, "chunk_size", None) for m, _ in _knobs(hm)] == before
    if gdn:
        assert seen and set(seen) == {4}
        seen.clear()
        with torch.no_grad():
            inner(hm)(random_ids(1, 3, 1), use_cache=False)
        assert seen and set(seen) == {None}  # the hook is gone: the kernel's own default again
