"""`Residual` targets in Patch / Steer / Capture and per-row Steer vectors, against plain torch hooks."""

from __future__ import annotations

import pytest
import torch

from mechhybrid.interventions import Capture, Patch, Residual, Steer
from mechhybrid.state import ReadState, run_with_state
from tests.conftest import both_shapes, random_ids
from tests.core import reference as ref

FAMILIES = ["qwen3_5_text", "falcon_h1", "zamba2", "recurrent_gemma", "gpt2"]
TOL = 1e-5


def _layer(hm, index: int) -> str:
    return f"{hm.family_spec.layers}.{index}"


@pytest.mark.parametrize("model_type,shape", both_shapes(FAMILIES))
def test_capture_and_patch_the_residual_stream(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids, other = random_ids(2, 7, 1), random_ids(2, 7, 2)
    pre, post = Residual(1), Residual(2, "post")
    run = hm.run(ids, [Capture([pre, post], positions=[1, 5])])
    inputs = ref.capture(model, ids, [_layer(hm, 1)], where="in")[_layer(hm, 1)]
    outputs = ref.capture(model, ids, [_layer(hm, 2)])[_layer(hm, 2)]
    assert (run.captures[pre] - inputs[:, [1, 5]]).abs().max().item() < TOL
    assert (run.captures[post] - outputs[:, [1, 5]]).abs().max().item() < TOL
    assert (hm.hidden_states(ids)[2] - outputs).abs().max().item() < TOL
    # Patch: the source's residual at positions 3 and 4, before layer 1 and after layer 2.
    source_in = ref.capture(model, other, [_layer(hm, 1)], where="in")[_layer(hm, 1)]
    source_out = ref.capture(model, other, [_layer(hm, 2)])[_layer(hm, 2)]
    spec = [(_layer(hm, 1), "in", ref.at_positions([3, 4], lambda t: source_in)),
            (_layer(hm, 2), "out", ref.at_positions([3, 4], lambda t: source_out))]
    expected = ref.logits(model, ids, spec)
    patched = hm.logits(ids, [Patch([pre, post], other, positions=[3, 4])])
    assert (patched - expected).abs().max().item() < TOL
    assert (patched - hm.logits(ids)).abs().max().item() > 1e-4


@pytest.mark.parametrize("model_type,shape", both_shapes(FAMILIES))
def test_steer_with_one_vector_per_row(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(2, 6, 3)
    vectors = torch.randn(2, hm.d_model, generator=torch.Generator().manual_seed(0))
    mlp = hm.components.by_kind("mlp")[0]
    items = [Steer(Residual(1), vectors, positions=[-1], scale=2.0), Steer(mlp, vectors, positions=[2])]
    per_row = lambda t: t + torch.stack([2.0 * vectors[0], 2.0 * vectors[1]])[:, None]
    spec = [(_layer(hm, 1), "in", ref.at_positions([5], per_row)),
            (mlp.path, "out", ref.at_positions([2], lambda t: t + vectors[:, None]))]
    assert (hm.logits(ids, items) - ref.logits(model, ids, spec)).abs().max().item() < TOL
    with pytest.raises(Exception, match="Steer has 3 vectors .one per row.; the input has 2 rows"):
        hm.logits(ids, [Steer(mlp, torch.zeros(3, hm.d_model))])


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text", "jamba"]))
def test_residual_targets_in_segmented_runs(tiny_models, model_type, shape):
    """The state runner localizes Residual targets like components (reads at 2 and 4 cut the sequence)."""
    _, hm = tiny_models(model_type, shape)
    ids, other = random_ids(2, 7, 4), random_ids(2, 7, 5)
    vectors = torch.randn(2, hm.d_model, generator=torch.Generator().manual_seed(1))
    items = [Patch([Residual(2)], other, positions=[1, 5]), Steer(Residual(0, "post"), vectors, positions=[3]),
             Capture([Residual(3, "post")], positions=[6, 0])]
    plain = hm.run(ids, items)
    segmented = run_with_state(hm, ids, items + [ReadState(None, [2, 4])])
    assert (segmented.logits - plain.logits).abs().max().item() < 1e-4
    target = Residual(3, "post")
    assert (segmented.captures[target] - plain.captures[target]).abs().max().item() < 1e-4
