"""Mathematical properties of the engine, on every family."""

from __future__ import annotations

import pytest
import torch

from mechhybrid import Ablate, Patch
from tests.conftest import ALL_MODEL_TYPES, random_ids
from tests.core import reference as ref

BATCH, SEQ = 2, 8


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_traced_forward_without_interventions_is_the_plain_forward(tiny_models, model_type):
    model, hm = tiny_models(model_type)
    ids = random_ids(BATCH, SEQ, seed=20)
    torch.testing.assert_close(hm.logits(ids), ref.logits(model, ids), atol=0, rtol=0)
    torch.testing.assert_close(hm.logits(ids, [Ablate([])]), ref.logits(model, ids), atol=0, rtol=0)


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_patching_every_component_from_the_clean_run_restores_it(tiny_models, model_type):
    """Corrupt by zeroing every component, then patch every component from the clean run: clean logits again."""
    _, hm = tiny_models(model_type)
    ids = random_ids(BATCH, SEQ, seed=21)
    clean = hm.logits(ids)
    everything = list(hm.components)
    corrupted = hm.logits(ids, [Ablate(everything)])
    assert (corrupted - clean).abs().max() > 1e-3  # the corruption is real, so the restoration is not vacuous
    restored = hm.logits(ids, [Ablate(everything), Patch(everything, source_ids=ids)])
    torch.testing.assert_close(restored, clean, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ["qwen2", "gpt2"])
def test_patching_every_component_from_another_input_matches_the_hook_reference(tiny_models, model_type):
    """With a different source input the residual keeps the target's embeddings: a hook reference says so."""
    model, hm = tiny_models(model_type)
    ids, source = random_ids(BATCH, SEQ, seed=22), random_ids(BATCH, SEQ, seed=23)
    seen = ref.capture(model, source, [c.path for c in hm.components])
    spec = [(c.path, "out", lambda t, s=seen[c.path]: s.clone()) for c in hm.components]
    torch.testing.assert_close(
        hm.logits(ids, [Patch(list(hm.components), source)]), ref.logits(model, ids, spec), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_logits_many_equals_one_call_per_set(tiny_models, model_type):
    _, hm = tiny_models(model_type)
    ids, source = random_ids(BATCH, SEQ, seed=24), random_ids(BATCH, SEQ, seed=25)
    sets = [[]] + [[Ablate([c])] for c in hm.components]
    sets += [[Ablate(hm.components.mixers(), "skip")], [Patch(hm.components[:2], source, positions=[3])]]
    many = hm.logits_many(ids, sets)
    assert many.shape == (len(sets), BATCH, SEQ, hm.vocab_size)
    loop = torch.stack([hm.logits(ids, s) for s in sets])
    torch.testing.assert_close(many, loop, atol=1e-5, rtol=0)
    chunked = hm.logits_many(ids, sets, max_rows=BATCH * 3)  # several forwards of 3 sets each
    torch.testing.assert_close(chunked, loop, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_per_position_mean_over_the_input_itself_leaves_one_item_unchanged(tiny_models, model_type):
    _, hm = tiny_models(model_type)
    ids = random_ids(1, SEQ, seed=26)
    ablate = Ablate(list(hm.components), "mean", reference_ids=ids, per_position=True)
    torch.testing.assert_close(hm.logits(ids, [ablate]), hm.logits(ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_hidden_states_and_logit_lens(tiny_models, model_type):
    model, hm = tiny_models(model_type)
    ids = random_ids(BATCH, SEQ, seed=27)
    hidden = hm.hidden_states(ids)
    assert hidden.shape == (hm.n_layers, BATCH, SEQ, hm.d_model)
    layer_outputs = ref.capture(model, ids, [f"{hm.family_spec.layers}.{i}" for i in range(hm.n_layers)])
    for index in range(hm.n_layers):
        torch.testing.assert_close(hidden[index], layer_outputs[f"{hm.family_spec.layers}.{index}"], atol=0, rtol=0)
    torch.testing.assert_close(hm.logit_lens(hidden[-1]), ref.logits(model, ids), atol=1e-5, rtol=0)
