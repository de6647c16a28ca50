"""The component map of every family, written out by hand from the tiny configs (not from the code)."""

from __future__ import annotations

import pytest

from mechhybrid import MechHybridError
from tests.conftest import ALL_MODEL_TYPES
from tests.tiny_configs import TINY_CONFIGS

A, S, G, R, C, M = "attention", "ssm", "linear_attention", "recurrent", "conv", "mlp"

# (layer, kind) in forward order, read off each family's modeling code for the configs in tiny_configs.py.
EXPECTED = {
    "qwen3_5_text": [(0, G), (0, M), (1, G), (1, M), (2, G), (2, M), (3, A), (3, M)],
    "qwen3_next": [(0, G), (0, M), (1, G), (1, M), (2, G), (2, M), (3, A), (3, M)],
    "falcon_h1": [(i, k) for i in range(4) for k in (S, A, M)],
    "jamba": [(0, S), (0, M), (1, A), (1, M), (2, S), (2, M), (3, A), (3, M)],
    "recurrent_gemma": [(0, R), (0, M), (1, R), (1, M), (2, A), (2, M), (3, R), (3, M)],
    "zamba2": [(0, S), (1, A), (1, M), (1, S), (2, S), (3, A), (3, M), (3, S)],
    "nemotron_h": [(0, S), (1, A), (2, M), (3, M)],
    "bamba": [(0, S), (0, M), (1, A), (1, M), (2, S), (2, M), (3, A), (3, M)],
    "granitemoehybrid": [(0, S), (0, M), (0, M), (1, A), (1, M), (1, M), (2, S), (2, M), (2, M), (3, A), (3, M), (3, M)],
    "lfm2": [(0, C), (0, M), (1, C), (1, M), (2, A), (2, M), (3, C), (3, M)],
    "mamba2": [(i, S) for i in range(4)],
    "qwen2": [(i, k) for i in range(4) for k in (A, M)],
    "llama": [(i, k) for i in range(4) for k in (A, M)],
    "gpt2": [(i, k) for i in range(4) for k in (A, M)],
}
FAMILY = {"qwen3_5_text": "qwen3_5"}


def test_every_tiny_config_has_an_expectation():
    assert set(EXPECTED) == set(TINY_CONFIGS)


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_component_map_matches_the_family(tiny_models, model_type):
    model, hm = tiny_models(model_type)
    assert hm.n_layers == 4 and hm.d_model == 32  # the tiny size we meant
    assert hm.family == FAMILY.get(model_type, model_type)
    assert [(c.layer, c.kind) for c in hm.components] == EXPECTED[model_type]
    for component in hm.components:
        module = hm.module(component.path)
        assert component.n_params == sum(p.numel() for p in module.parameters()) > 0
        assert hm.envoy(component) is hm.envoy_at(component.path)
        if component.n_heads is not None:
            width = hm.out_proj_weight(component).shape[1]
            assert width % component.n_heads == 0


def test_selection_helpers(tiny_models):
    _, hm = tiny_models("qwen3_5_text")
    comps = hm.components
    assert [c.layer for c in comps.by_kind("attention")] == [3]
    assert len(comps.mixers()) == 4 and all(c.kind != "mlp" for c in comps.mixers())
    assert {c.layer for c in comps.by_layers([0, 3])} == {0, 3}
    assert [list(comps.third_layers(t)) for t in ("early", "middle", "late")] == [[0], [1], [2, 3]]
    assert comps.third("late", "attention") == comps.by_kind("attention")
    assert comps.named("L3.attention") is comps.find(3, "attention") is comps.by_kind("attention")[0]
    assert comps.residual_writers() == list(comps) and {c.residual_scale for c in comps} == {1.0}
    like = comps.by_kind("linear_attention")
    drawn = comps.sample_matched(like, seed=3)
    assert len(drawn) == 3 and not set(drawn) & set(like)
    assert drawn == comps.sample_matched(like, seed=3)  # seeded
    assert {c.kind for c in comps.sample_matched(like[:1], seed=0, same_kind_mix=True, pool=comps)} == {G}
    with pytest.raises(MechHybridError, match="layer"):
        comps.by_layers([4])
    with pytest.raises(MechHybridError, match="kind"):
        comps.by_kind("transformer")
    with pytest.raises(MechHybridError, match="non-empty"):
        comps.sample_matched([], seed=0)
    with pytest.raises(MechHybridError, match="cannot draw"):
        comps.sample_matched(like, seed=0, same_kind_mix=True)
