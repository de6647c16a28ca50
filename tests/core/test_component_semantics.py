"""What a component's output means: unique names, where it is written (`writes_to`), and in which units
(`residual_scale`), checked against transformers' own forward with plain torch hooks (no nnsight, no engine)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import mechhybrid as mh
from mechhybrid import MechHybridError, UnsupportedFamilyError
from mechhybrid.components import Component, ComponentMap, build_components, from_residual_units, to_residual_units
from mechhybrid.families import Slot, get_family
from tests.conftest import ALL_MODEL_TYPES, both_shapes, random_ids
from tests.tiny_configs import TINY_CONFIGS

# Non-default multipliers on both sides of every module (inside it, before it, after it), so that a scale
# declared on the wrong slot, or a multiplier the module applies itself counted twice, breaks the identity.
VARIANTS = {
    "falcon_h1": dict(
        attention_out_multiplier=0.7, ssm_out_multiplier=1.3, mlp_multipliers=[1.1, 0.6], attention_in_multiplier=0.9,
        ssm_in_multiplier=1.2, key_multiplier=0.8, embedding_multiplier=2.0,
    ),
    "granitemoehybrid": dict(residual_multiplier=0.5, embedding_multiplier=3.0, attention_multiplier=0.2),
}
# residual_scale by component kind / label, read off modeling_falcon_h1.py and modeling_granitemoehybrid.py for
# the values above (falcon_h1's MLP applies its `mlp_multipliers` inside the module: scale 1).
EXPECTED_SCALES = {
    "falcon_h1": {"ssm": 1.3, "attention": 0.7, "mlp": 1.0},
    "granitemoehybrid": {"ssm": 0.5, "attention": 0.5, "mlp": 0.5, "shared_mlp": 0.5},
}


def _build(model_type: str, **overrides):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **{**TINY_CONFIGS[model_type], **overrides})
    model = AutoModelForCausalLM.from_config(config).eval()
    return model, mh.load(model)


@pytest.fixture(scope="module")
def variants():
    return {model_type: _build(model_type, **overrides) for model_type, overrides in VARIANTS.items()}


def _tensor_out(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _layer_input(args, kwargs) -> torch.Tensor:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    return kwargs["hidden_states"] if "hidden_states" in kwargs else kwargs["activations"]


def _record(model, hm, ids):
    """(layer inputs, layer outputs, residual writers' outputs by component) from one plain forward."""
    layer_in, layer_out, outputs, handles = {}, {}, {}, []
    for index in range(hm.n_layers):
        layer = hm.module(f"{hm.family_spec.layers}.{index}")
        handles.append(layer.register_forward_pre_hook(
            lambda m, a, k, i=index: layer_in.__setitem__(i, _layer_input(a, k).detach().clone()), with_kwargs=True))
        handles.append(layer.register_forward_hook(
            lambda m, a, o, i=index: layer_out.__setitem__(i, _tensor_out(o).detach().clone())))
    for component in hm.components.residual_writers():
        handles.append(hm.module(component.path).register_forward_hook(
            lambda m, a, o, c=component: outputs.__setitem__(c, _tensor_out(o).detach().clone())))
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for handle in handles:
            handle.remove()
    return layer_in, layer_out, outputs


def _check_residual_identity(model, hm):
    """Assert layer_out - layer_in == sum of the layer's residual writers in residual units; return the largest
    change the scales make (so that a caller can check that the identity could have failed)."""
    layer_in, layer_out, outputs = _record(model, hm, random_ids(2, 7, seed=5))
    assert len(layer_out) == hm.n_layers and set(outputs) == set(hm.components.residual_writers())
    scale_effect = 0.0
    for index in range(hm.n_layers):
        writers = [c for c in hm.components.residual_writers() if c.layer == index]
        assert writers, f"layer {index} has no residual writer"
        delta = layer_out[index] - layer_in[index]
        total = sum(to_residual_units(c, outputs[c]) for c in writers)
        torch.testing.assert_close(delta, total, atol=1e-5, rtol=1e-5)
        scale_effect = max(scale_effect, float((sum(outputs[c] for c in writers) - delta).abs().max()))
    return scale_effect


@pytest.mark.parametrize("model_type, shape", both_shapes(ALL_MODEL_TYPES))
def test_layer_delta_is_the_sum_of_residual_writers(tiny_models, model_type, shape):
    _check_residual_identity(*tiny_models(model_type, shape))


@pytest.mark.parametrize("model_type", sorted(VARIANTS))
def test_family_multipliers_give_residual_units(variants, model_type):
    model, hm = variants[model_type]
    assert {(c.label or c.kind, c.residual_scale) for c in hm.components} == set(EXPECTED_SCALES[model_type].items())
    # Without the scales the sum misses the layer's change by 100x the tolerance or more (measured: 9.6e-3 in
    # falcon_h1, whose random-init outputs are small).
    assert _check_residual_identity(model, hm) > 1e-3


def test_zamba2_shared_block_feeds_the_mamba_not_the_residual(tiny_models):
    model, hm = tiny_models("zamba2")
    shared = [c for c in hm.components if not c.writes_residual]
    assert [(c.name, c.writes_to) for c in shared] == [
        ("L1.attention", "mlp_input"), ("L1.mlp", "mamba_input"),
        ("L3.attention", "mlp_input"), ("L3.mlp", "mamba_input"),
    ]
    assert [c.name for c in hm.components.residual_writers()] == ["L0.ssm", "L1.ssm", "L2.ssm", "L3.ssm"]
    attn_out, ff_in, ff_out, mamba_extra, handles = {}, {}, {}, {}, []
    for i in (1, 3):
        block = hm.module(f"model.layers.{i}.shared_transformer")
        handles += [
            block.self_attn.register_forward_hook(lambda m, a, o, i=i: attn_out.__setitem__(i, _tensor_out(o))),
            block.feed_forward.register_forward_pre_hook(lambda m, a, i=i: ff_in.__setitem__(i, a[0])),
            block.feed_forward.register_forward_hook(lambda m, a, o, i=i: ff_out.__setitem__(i, o)),
            hm.module(f"model.layers.{i}.mamba_decoder").register_forward_pre_hook(
                lambda m, a, k, i=i: mamba_extra.__setitem__(i, k["transformer_hidden_states"]), with_kwargs=True),
        ]
    try:
        with torch.no_grad():
            model(random_ids(2, 7, seed=6))
            for i in (1, 3):
                # mlp_input: the attention's output, normalised, is the MLP's whole input (no residual around it).
                norm = hm.module(f"model.layers.{i}.shared_transformer.pre_ff_layernorm")
                torch.testing.assert_close(ff_in[i], norm(attn_out[i]), atol=0, rtol=0)
                # mamba_input: the MLP's output, through the layer's `linear`, is what joins the Mamba's input.
                linear = hm.module(f"model.layers.{i}.linear")
                torch.testing.assert_close(mamba_extra[i], linear(ff_out[i]), atol=0, rtol=0)
                assert float(attn_out[i].abs().max()) > 1e-3 and float(ff_out[i].abs().max()) > 1e-3
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("model_type, shape", both_shapes(ALL_MODEL_TYPES))
def test_component_names_are_unique(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    names = [c.name for c in hm.components]
    assert len(set(names)) == len(names)
    assert all(hm.components.named(name) is c for name, c in zip(names, hm.components))


def test_granite_names_its_two_mlps_apart(tiny_models):
    _, hm = tiny_models("granitemoehybrid")
    layer = [(c.name, c.kind, c.path) for c in hm.components if c.layer == 1]
    assert layer == [
        ("L1.attention", "attention", "model.layers.1.self_attn"),
        ("L1.mlp", "mlp", "model.layers.1.block_sparse_moe"),
        ("L1.shared_mlp", "mlp", "model.layers.1.shared_mlp"),
    ]
    assert len(hm.components.by_kind("mlp")) == 8  # the kind stays `mlp` for both
    with pytest.raises(MechHybridError, match=r"2 component\(s\) of kind 'mlp' \(L1.mlp, L1.shared_mlp"):
        hm.components.find(1, "mlp")
    with pytest.raises(MechHybridError, match="no component named 'L1.moe'"):
        hm.components.named("L1.moe")


def test_repeated_names_are_refused():
    a = Component(0, "mlp", "model.layers.0.block_sparse_moe")
    b = Component(0, "mlp", "model.layers.0.shared_mlp")
    with pytest.raises(UnsupportedFamilyError, match=r"component names repeat \(L0.mlp\)"):
        ComponentMap([a, b], n_layers=1)
    labelled = ComponentMap([a, replace(b, label="shared_mlp")], n_layers=1)
    assert [c.name for c in labelled] == ["L0.mlp", "L0.shared_mlp"]


def test_unit_conversions():
    scaled = Component(2, "attention", "model.layers.2.self_attn", residual_scale=0.7)
    per_head = torch.arange(24.0).reshape(1, 2, 3, 4)  # [batch, seq, head, d_model]
    torch.testing.assert_close(to_residual_units(scaled, per_head), per_head * 0.7)
    torch.testing.assert_close(from_residual_units(scaled, to_residual_units(scaled, per_head)), per_head)
    feeder = Component(1, "mlp", "model.layers.1.shared_transformer.feed_forward", writes_to="mamba_input")
    for convert in (to_residual_units, from_residual_units):
        with pytest.raises(MechHybridError, match="L1.mlp writes to mamba_input, not to the residual stream"):
            convert(feeder, per_head)
    with pytest.raises(MechHybridError, match="residual_scale 0"):
        from_residual_units(replace(scaled, residual_scale=0.0), per_head)


def test_scale_needs_a_number_in_the_config(tiny_models):
    model, _ = tiny_models("falcon_h1")
    family = get_family("falcon_h1")
    broken = replace(family, slots=(Slot("self_attn", "attention", scale_from="no_such_multiplier"),))
    with pytest.raises(UnsupportedFamilyError, match=r"falcon_h1: config.no_such_multiplier .* got None"):
        build_components(model, broken)
    with pytest.raises(ValueError, match="writes_to 'logits'"):
        Slot("self_attn", "attention", writes_to="logits")


def test_inspect_shows_where_each_output_goes(tmp_path, capsys):
    from mechhybrid.cli import main

    _build("zamba2")[0].save_pretrained(tmp_path / "zamba2")
    _build("falcon_h1", **VARIANTS["falcon_h1"])[0].save_pretrained(tmp_path / "falcon_h1")
    assert main(["inspect", str(tmp_path / "zamba2")]) == 0
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:-1]}
    assert lines["L1.attention"][4:] == ["mlp_input", "model.layers.1.shared_transformer.self_attn"]
    assert lines["L1.mlp"][4:] == ["mamba_input", "model.layers.1.shared_transformer.feed_forward"]
    assert lines["L1.ssm"][4:] == ["residual", "model.layers.1.mamba_decoder.mamba"]
    assert main(["inspect", str(tmp_path / "falcon_h1"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["components"]
    assert [(r["name"], r["writes_to"], r["residual_scale"]) for r in rows[:3]] == [
        ("L0.ssm", "residual", 1.3), ("L0.attention", "residual", 0.7), ("L0.mlp", "residual", 1.0),
    ]
