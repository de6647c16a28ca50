"""Non-finite logits are refused with the place where the first non-finite value appeared.

The reference is where the test itself broke the model: a NaN written into one module's weights, an overflow
forced in one half-precision MLP. Every component of every family is broken in turn, so a hook that fires out of
order or a module the search misses names the wrong place.
"""

from __future__ import annotations

import pytest
import torch

import mechhybrid
from mechhybrid import MechHybridError
from mechhybrid.finite import check_finite, first_nonfinite
from tests.conftest import ALL_MODEL_TYPES, build_tiny, random_ids

NAN = float("nan")


def _break(hm, component) -> None:
    """NaN where the component's output must turn NaN: its output projection, or every weight of a headless MLP."""
    with torch.no_grad():
        if component.out_proj is not None:
            hm.module(component.out_proj).weight.fill_(NAN)
        else:
            for parameter in hm.module(component.path).parameters():
                parameter.fill_(NAN)


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_each_broken_component_is_named(model_type):
    ids = random_ids(2, 6, seed=40)
    clean = mechhybrid.load(build_tiny(model_type))
    assert first_nonfinite(clean, ids) is None
    check_finite(clean, ids, clean.logits(ids))  # finite: returns quietly
    assert len(clean.components) >= 4
    for index, component in enumerate(clean.components):
        hm = mechhybrid.load(build_tiny(model_type))
        _break(hm, hm.components[index])
        assert first_nonfinite(hm, ids) == f"{component.name} ({component.path})"


def test_check_finite_raises_one_line_naming_model_and_place():
    hm = mechhybrid.load(build_tiny("qwen2"))
    with torch.no_grad():
        hm.module("model.layers.2.self_attn.o_proj").weight[3, 5] = NAN
    ids = random_ids(1, 5, seed=41)
    logits = hm.logits(ids)
    assert torch.isnan(logits).all()
    with pytest.raises(MechHybridError) as caught:
        check_finite(hm, ids, logits)
    assert str(caught.value) == (
        "model Qwen2ForCausalLM produced non-finite logits; first non-finite value in "
        "L2.attention (model.layers.2.self_attn)"
    )
    assert "\n" not in str(caught.value)


def test_embedding_and_position_table():
    hm = mechhybrid.load(build_tiny("qwen2"))
    ids = random_ids(1, 5, seed=42)
    with torch.no_grad():
        hm.module("model.embed_tokens").weight[ids[0, 2]] = NAN
    assert first_nonfinite(hm, ids) == "the embedding (model.embed_tokens)"
    gpt2 = mechhybrid.load(build_tiny("gpt2"))
    with torch.no_grad():
        gpt2.module("transformer.wpe").weight[4] = NAN  # position 4: not the token embedding
    assert first_nonfinite(gpt2, ids) == "the input of L0 (transformer.h.0)"


def test_half_precision_overflow_in_an_mlp():
    model = build_tiny("qwen2").to(torch.float16)
    hm = mechhybrid.load(model)
    ids = random_ids(1, 6, seed=43)
    assert first_nonfinite(hm, ids) is None
    mlp = hm.module("model.layers.1.mlp")
    with torch.no_grad():
        # Gate and up equal and large: every hidden unit is silu(z) * z >= -0.28, up to thousands; each weight
        # stays finite in float16 (max 65504), the down projection's sums do not.
        mlp.gate_proj.weight.mul_(500.0)
        mlp.up_proj.weight.copy_(mlp.gate_proj.weight)
        mlp.down_proj.weight.fill_(60000.0)
        assert all(torch.isfinite(p).all() for p in mlp.parameters())
    assert first_nonfinite(hm, ids) == "L1.mlp (model.layers.1.mlp)"
    with pytest.raises(MechHybridError, match="first non-finite value in L1.mlp"):
        check_finite(hm, ids, hm.logits(ids))


def test_padded_positions_are_not_checked_and_interventions_are_blamed():
    hm = mechhybrid.load(build_tiny("llama"))
    ids = random_ids(2, 5, seed=44)
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[1, :2] = 0  # left padding in the second row
    logits = hm.logits(ids, attention_mask=mask).clone()
    logits[1, 0, 3] = NAN
    check_finite(hm, ids, logits, attention_mask=mask)  # the NaN sits at a pad position
    check_finite(hm, ids, logits.repeat(3, 1, 1), attention_mask=mask)  # three stacked sets
    logits[1, 2, 3] = NAN
    # The plain forward is finite, so the NaN came from whatever produced these logits (the interventions).
    with pytest.raises(MechHybridError, match="non-finite logits although a plain forward of the same input is"):
        check_finite(hm, ids, logits, attention_mask=mask)
    with pytest.raises(MechHybridError, match=r"^model LlamaForCausalLM produced non-finite loss although"):
        check_finite(hm, ids, torch.tensor(float("inf")), what="loss")
    with pytest.raises(MechHybridError, match="do not match an attention_mask"):
        check_finite(hm, ids, logits[:, :4], attention_mask=mask)
