"""Mathematical properties of the engine, on every family."""

from __future__ import annotations

import pytest
import torch

from mechhybrid import Ablate, Patch
from tests.conftest import ALL_MODEL_TYPES, both_shapes, random_ids
from tests.core import reference as ref
from tests.tiny_configs import TINY_CONFIGS, TINY_CONFIGS_ALT

BATCH, SEQ = 2, 8

A, S, G, R, C, M = "attention", "ssm", "linear_attention", "recurrent", "conv", "mlp"

# (layer, kind) in forward order, read off each family's modeling code for TINY_CONFIGS_ALT.
ALT_COMPONENTS = {
    "qwen3_5_text": [(0, A), (0, M), (1, G), (1, M), (2, A), (2, M), (3, G), (3, M)],
    "qwen3_next": [(0, G), (0, M), (1, A), (1, M), (2, G), (2, M), (3, G), (3, M)],
    "falcon_h1": [(i, k) for i in range(4) for k in (S, A, M)],
    "jamba": [(0, A), (0, M), (1, S), (1, M), (2, S), (2, M), (3, A), (3, M)],
    "recurrent_gemma": [(0, A), (0, M), (1, R), (1, M), (2, A), (2, M), (3, R), (3, M)],
    "zamba2": [(0, A), (0, M), (0, S), (1, A), (1, M), (1, S), (2, S), (3, A), (3, M), (3, S)],
    "nemotron_h": [(0, A), (1, M), (2, S), (3, M), (4, S)],
    "bamba": [(0, A), (0, M), (1, S), (1, M), (2, A), (2, M), (3, S), (3, M)],
    "granitemoehybrid": [(0, A), (0, M), (0, M), (1, S), (1, M), (1, M), (2, S), (2, M), (2, M), (3, A), (3, M),
                         (3, M)],
    "lfm2": [(0, A), (0, M), (1, C), (1, M), (2, A), (2, M), (3, C), (3, M)],
    "mamba2": [(i, S) for i in range(4)],
    "qwen2": [(i, k) for i in range(4) for k in (A, M)],
    "llama": [(i, k) for i in range(4) for k in (A, M)],
    "gpt2": [(i, k) for i in range(4) for k in (A, M)],
}

# What the second shape was built to exercise, read back from the built modules (a config kwarg that
# transformers renamed or ignored would leave the default here): (module path, attribute, value).
ALT_MODULE_VALUES = {
    # Gated DeltaNet with 6 value heads on 2 key heads and a width-3 short convolution.
    "qwen3_5_text": [("model.layers.1.linear_attn", "num_v_heads", 6), ("model.layers.1.linear_attn", "num_k_heads", 2),
                     ("model.layers.1.linear_attn", "conv_kernel_size", 3)],
    "qwen3_next": [("model.layers.0.linear_attn", "num_v_heads", 6), ("model.layers.0.linear_attn", "num_k_heads", 2),
                   ("model.layers.0.linear_attn", "conv_kernel_size", 3)],
    "falcon_h1": [
        ("model", "embedding_multiplier", 2.0), ("model", "lm_head_multiplier", 0.5),
        ("model.layers.0", "attn_out_multiplier", 0.6), ("model.layers.0", "ssm_out_multiplier", 1.7),
        ("model.layers.0", "attention_in_multiplier", 1.3), ("model.layers.0.self_attn", "key_multiplier", 0.8),
        ("model.layers.0.mamba", "ssm_in_multiplier", 1.2), ("model.layers.0.feed_forward", "gate_multiplier", 0.7),
        ("model.layers.0.feed_forward", "down_multiplier", 1.5), ("model.layers.0.mamba", "n_groups", 2),
    ],
    "granitemoehybrid": [
        ("model", "embedding_multiplier", 4.0), ("model.layers.0", "residual_multiplier", 0.5),
        ("model.layers.0.self_attn", "scaling", 0.2), ("config", "logits_scaling", 2.5),
    ],
    "nemotron_h": [("model.layers.1.mixer.gate", "routed_scaling_factor", 2.5),
                   ("model.layers.1.mixer.gate", "num_experts", 3)],
    # A window of 4 tokens, shorter than every sequence the exactness tests run (>= 5).
    "recurrent_gemma": [("model.layers.0.temporal_block", "sliding_window", 4), ("config", "logits_soft_cap", 5.0),
                        ("model.layers.1.temporal_block", "lru_width", 24)],
    "qwen2": [("model.layers.0.self_attn", "sliding_window", 4), ("model.layers.1.self_attn", "sliding_window", None)],
    # A dt limit that binds (~15% of the tiny model's dt values are above 0.1).
    "mamba2": [("backbone.layers.0.mixer", "time_step_limit", (0.0, 0.1)), ("backbone.layers.0.mixer", "n_groups", 2)],
    "lfm2": [("model.layers.1.feed_forward.w1", "out_features", 80)],  # 72 -> 2/3 -> x1.5 -> multiple of 16
    "gpt2": [("transformer.h.0.attn", "scale_attn_by_inverse_layer_idx", True)],
    "llama": [("model.layers.0.self_attn.q_proj", "out_features", 72)],  # head_dim 12 on hidden 48
    "zamba2": [("model.layers.2.mamba", "n_groups", 2)],
}

# One bias parameter per family that the second shape turns on (name suffix in `named_parameters`).
ALT_BIAS = {
    "qwen3_5_text": "layers.0.self_attn.q_proj.bias", "qwen3_next": "layers.1.self_attn.q_proj.bias",
    "falcon_h1": "layers.0.mamba.out_proj.bias", "jamba": "layers.1.mamba.out_proj.bias",
    "recurrent_gemma": "layers.0.temporal_block.q_proj.bias", "zamba2": "layers.2.mamba.out_proj.bias",
    "nemotron_h": "layers.2.mixer.out_proj.bias", "bamba": "layers.0.self_attn.q_proj.bias",
    "granitemoehybrid": "layers.0.self_attn.q_proj.bias", "lfm2": "layers.1.conv.conv.bias",
    "mamba2": "layers.0.mixer.out_proj.bias", "qwen2": "layers.0.self_attn.q_proj.bias",
    "llama": "layers.0.mlp.down_proj.bias", "gpt2": "h.0.attn.c_proj.bias",
}


def test_every_family_has_a_second_shape():
    assert set(TINY_CONFIGS_ALT) == set(TINY_CONFIGS) == set(ALT_COMPONENTS) == set(ALT_BIAS)


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_second_shape_is_the_shape_we_meant(tiny_models, model_type):
    model, hm = tiny_models(model_type, "alt")
    assert hm.d_model == 48 and hm.n_layers == (5 if model_type == "nemotron_h" else 4)
    assert [(c.layer, c.kind) for c in hm.components] == ALT_COMPONENTS[model_type]
    for component in hm.components.by_kind(A):
        assert component.n_heads == 6
        # GQA ratio 3 (6 query heads on 2 key/value heads) wherever the family has GQA (GPT-2 has none).
        assert getattr(hm.module(component.path), "num_key_value_groups", 3) == 3
    for path, attribute, value in ALT_MODULE_VALUES.get(model_type, ()):
        assert getattr(ref.resolve(model, path), attribute) == value, (path, attribute)
    assert any(name.endswith(ALT_BIAS[model_type]) for name, _ in model.named_parameters())


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_traced_forward_without_interventions_is_the_plain_forward(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(BATCH, SEQ, seed=20)
    torch.testing.assert_close(hm.logits(ids), ref.logits(model, ids), atol=0, rtol=0)
    torch.testing.assert_close(hm.logits(ids, [Ablate([])]), ref.logits(model, ids), atol=0, rtol=0)


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_patching_every_component_from_the_clean_run_restores_it(tiny_models, model_type, shape):
    """Corrupt by zeroing every component, then patch every component from the clean run: clean logits again."""
    _, hm = tiny_models(model_type, shape)
    ids = random_ids(BATCH, SEQ, seed=21)
    clean = hm.logits(ids)
    everything = list(hm.components)
    corrupted = hm.logits(ids, [Ablate(everything)])
    assert (corrupted - clean).abs().max() > 1e-3  # the corruption is real, so the restoration is not vacuous
    restored = hm.logits(ids, [Ablate(everything), Patch(everything, source_ids=ids)])
    torch.testing.assert_close(restored, clean, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen2", "gpt2"]))
def test_patching_every_component_from_another_input_matches_the_hook_reference(tiny_models, model_type, shape):
    """With a different source input the residual keeps the target's embeddings: a hook reference says so."""
    model, hm = tiny_models(model_type, shape)
    ids, source = random_ids(BATCH, SEQ, seed=22), random_ids(BATCH, SEQ, seed=23)
    seen = ref.capture(model, source, [c.path for c in hm.components])
    spec = [(c.path, "out", lambda t, s=seen[c.path]: s.clone()) for c in hm.components]
    torch.testing.assert_close(
        hm.logits(ids, [Patch(list(hm.components), source)]), ref.logits(model, ids, spec), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_logits_many_equals_one_call_per_set(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    ids, source = random_ids(BATCH, SEQ, seed=24), random_ids(BATCH, SEQ, seed=25)
    sets = [[]] + [[Ablate([c])] for c in hm.components]
    sets += [[Ablate(hm.components.mixers(), "skip")], [Patch(hm.components[:2], source, positions=[3])]]
    many = hm.logits_many(ids, sets)
    assert many.shape == (len(sets), BATCH, SEQ, hm.vocab_size)
    loop = torch.stack([hm.logits(ids, s) for s in sets])
    torch.testing.assert_close(many, loop, atol=1e-5, rtol=0)
    chunked = hm.logits_many(ids, sets, max_rows=BATCH * 3)  # several forwards of 3 sets each
    torch.testing.assert_close(chunked, loop, atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_per_position_mean_over_the_input_itself_leaves_one_item_unchanged(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    ids = random_ids(1, SEQ, seed=26)
    ablate = Ablate(list(hm.components), "mean", reference_ids=ids, per_position=True)
    torch.testing.assert_close(hm.logits(ids, [ablate]), hm.logits(ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_hidden_states_and_logit_lens(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(BATCH, SEQ, seed=27)
    hidden = hm.hidden_states(ids)
    assert hidden.shape == (hm.n_layers, BATCH, SEQ, hm.d_model)
    layer_outputs = ref.capture(model, ids, [f"{hm.family_spec.layers}.{i}" for i in range(hm.n_layers)])
    for index in range(hm.n_layers):
        torch.testing.assert_close(hidden[index], layer_outputs[f"{hm.family_spec.layers}.{index}"], atol=0, rtol=0)
    torch.testing.assert_close(hm.logit_lens(hidden[-1]), ref.logits(model, ids), atol=1e-5, rtol=0)
