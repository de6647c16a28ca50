"""PatchState / EditState carry forward through the recurrence, and compose with the foundation interventions."""

from __future__ import annotations

import pytest
import torch

from mechhybrid import Ablate, AblateHeads, Capture, Patch, Steer
from mechhybrid.state import (
    EditState, PatchState, ReadState, logits_many_with_state, read_state, run_with_state, zero_state,
)
from tests.conftest import both_shapes, random_ids
from tests.state.helpers import STATEFUL, TOL, max_gap

SEQ, T = 10, 6


def _clean_corrupt(seed: int):
    clean = random_ids(2, SEQ, seed)
    corrupt = clean.clone()
    corrupt[:, :T] = random_ids(2, T, seed + 100)
    return clean, corrupt


@pytest.mark.parametrize("model_type,shape", both_shapes(STATEFUL))
def test_transplant_identity(tiny_models, model_type, shape):
    """Corrupt differs from clean only before T: transplanting every state after T-1 from clean (and patching
    attention outputs at >= T, in hybrids) makes the corrupt run's logits from T on equal the clean run's."""
    _, hm = tiny_models(model_type, shape)
    clean, corrupt = _clean_corrupt(seed=5)
    attention = list(hm.components.by_kind("attention")) if "attention" in hm.components.kinds() else []
    items = [PatchState(None, T - 1, source_ids=clean)]
    if attention:
        items.append(Patch(attention, clean, positions=range(T, SEQ)))
    clean_logits, corrupt_logits = hm.logits(clean), hm.logits(corrupt)
    patched = run_with_state(hm, corrupt, items).logits
    assert (patched[:, T:] - clean_logits[:, T:]).abs().max().item() < TOL
    assert (corrupt_logits[:, T:] - clean_logits[:, T:]).abs().max().item() > 1e-2  # not vacuous
    # The state alone is not enough in hybrids (attention still sees the corrupt prefix) -- and is in mamba2.
    state_only = run_with_state(hm, corrupt, items[:1]).logits
    gap = (state_only[:, T:] - clean_logits[:, T:]).abs().max().item()
    assert (gap > 1e-3) if attention else (gap < TOL)


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text"]))
def test_patch_from_a_state_object_equals_patch_from_source(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    clean, corrupt = _clean_corrupt(seed=6)
    states = read_state(hm, clean, None, [T - 1])
    by_layer = {layer: state for (layer, _), state in states.items()}
    a = run_with_state(hm, corrupt, [PatchState(None, T - 1, state=by_layer)]).logits
    b = run_with_state(hm, corrupt, [PatchState(None, T - 1, source_ids=clean)]).logits
    assert (a - b).abs().max().item() < 1e-6
    # And the patched state is what a read after it sees.
    read = run_with_state(hm, corrupt, [PatchState([1], T - 1, source_ids=clean), ReadState([1], T - 1)])
    assert max_gap(read.states[(1, T - 1)], by_layer[1]) < 1e-6


@pytest.mark.parametrize("model_type,shape", both_shapes(["mamba2"]))
def test_zeroed_state_equals_a_fresh_start(tiny_models, model_type, shape):
    """Mamba-2 only (no attention, no positions): zeroing every state after T-1 == running tokens T.. alone."""
    _, hm = tiny_models(model_type, shape)
    ids = random_ids(2, SEQ, seed=7)
    edited = run_with_state(hm, ids, [EditState(None, T - 1, zero_state)]).logits
    fresh = hm.logits(ids[:, T:])
    assert (edited[:, T:] - fresh).abs().max().item() < TOL
    assert (hm.logits(ids)[:, T:] - fresh).abs().max().item() > 1e-2


@pytest.mark.parametrize("model_type,shape", both_shapes(["mamba2"]))
def test_edit_carries_forward_but_not_backward(tiny_models, model_type, shape):
    # Not falcon_h1: its random-init Mamba-2 state is ~1e-4, so scaling it moves the logits by only ~1e-7.
    _, hm = tiny_models(model_type, shape)
    ids = random_ids(1, SEQ, seed=8)
    plain = hm.logits(ids)
    scaled = run_with_state(hm, ids, [EditState([1], 4, lambda s: s.replace(recurrent=s.recurrent * 3))]).logits
    assert (scaled[:, :5] - plain[:, :5]).abs().max().item() < 1e-6
    assert (scaled[:, 5:] - plain[:, 5:]).abs().max().item() > 1e-3


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text", "jamba", "zamba2"]))
def test_foundation_interventions_unchanged_by_segmenting(tiny_models, model_type, shape):
    """Foundation interventions run in segments (forced by reads at 2 and 6) == the same in one nnsight forward."""
    _, hm = tiny_models(model_type, shape)
    ids, other = random_ids(2, SEQ, seed=9), random_ids(2, SEQ, seed=10)
    attention = hm.components.by_kind("attention")[0]
    mixer = [c for c in hm.components if c.kind != "attention" and c.kind != "mlp"][0]
    mlp = hm.components.by_kind("mlp")[-1]
    items = [
        Ablate([attention], "zero", positions=[1, 7]),
        Patch([mixer], other, positions=range(3, 9)),
        Steer(mlp, torch.ones(hm.d_model), positions=[-1], scale=0.5),
        Ablate([mlp], "mean", reference_ids=other, per_position=True, positions=[4, 5]),
        Capture([mixer], positions=[8, 2, 5]),
        AblateHeads(attention, [0, 1], positions=[5, 6]),
        Ablate([mlp], "skip", positions=[4]),
        Capture([attention], per_head=True),
    ]
    reference = hm.run(ids, items)
    segmented = run_with_state(hm, ids, items + [ReadState(None, [2, 6])])
    assert (segmented.logits - reference.logits).abs().max().item() < TOL
    for component in (mixer, attention):
        assert (segmented.captures[component] - reference.captures[component]).abs().max().item() < TOL


@pytest.mark.parametrize("model_type,shape", both_shapes(["granitemoehybrid", "jamba"]))
def test_logits_many_with_state_equals_one_by_one(tiny_models, model_type, shape):
    """Stacked sets with different boundaries (a chunk family, and a token family continuing one token at a time)."""
    _, hm = tiny_models(model_type, shape)
    clean, corrupt = _clean_corrupt(seed=11)
    attention = hm.components.by_kind("attention")[0]
    sets = [
        [],
        [PatchState(None, T - 1, source_ids=clean)],
        [Ablate([attention]), EditState([2], 3, zero_state)],
    ]
    many = logits_many_with_state(hm, corrupt, sets)
    assert many.shape == (3, 2, SEQ, hm.vocab_size)
    for index, items in enumerate(sets):
        one = run_with_state(hm, corrupt, items).logits
        assert (many[index] - one).abs().max().item() < TOL
    assert (many[1] - many[0]).abs().max().item() > 1e-4  # jamba: 8.3e-4 (its Mamba-1 state decays fast)


def test_write_association_makes_the_memory_return_the_value():
    """After the delta-rule write with beta = 1 and a unit key, reading S^T k returns v exactly."""
    from mechhybrid.state import State, write_association

    generator = torch.Generator().manual_seed(12)
    memory = torch.randn(2, 3, 4, 5, generator=generator)
    state = State(0, 0, "linear_attention", memory, torch.zeros(2, 6, 4), ("batch", "head", "d_k", "d_v"))
    key = torch.nn.functional.normalize(torch.randn(4, generator=generator), dim=0)
    value = torch.randn(5, generator=generator)
    written = write_association(key, value, head=1)(state)
    assert torch.allclose(torch.einsum("bkv,k->bv", written.recurrent[:, 1], key), value.expand(2, 5), atol=1e-5)
    assert torch.equal(written.recurrent[:, 0], memory[:, 0]) and torch.equal(state.recurrent, memory)


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text"]))
def test_project_out_and_add_to_state(tiny_models, model_type, shape):
    """Projecting a value direction out of a DeltaNet memory leaves nothing along it for any key; adding a delta
    and subtracting it again is the identity, through the recurrence."""
    from mechhybrid.state import add_to_state, project_out

    _, hm = tiny_models(model_type, shape)
    ids = random_ids(1, SEQ, seed=13)
    _, heads, d_k, d_v = read_state(hm, ids, [1], [4])[(1, 4)].recurrent.shape  # base 4, 8, 8; alt 6, 8, 4
    direction = torch.randn(d_v, generator=torch.Generator().manual_seed(14))
    edited = run_with_state(hm, ids, [EditState([1], 4, project_out(direction, "d_v")), ReadState([1], 4)])
    memory = edited.states[(1, 4)].recurrent  # [batch, head, d_k, d_v]
    assert (memory @ torch.nn.functional.normalize(direction, dim=0)).abs().max().item() < 1e-6
    # The tiny random memory is small (norm ~5e-3), so the projection moves later logits by ~1.5e-5: well
    # above float32 noise (~1e-7), below TOL.
    assert (edited.logits[:, 5:] - hm.logits(ids)[:, 5:]).abs().max().item() > 1e-6
    delta = torch.randn(heads, d_k, d_v, generator=torch.Generator().manual_seed(15))
    round_trip = run_with_state(hm, ids, [EditState([1], 4, add_to_state(delta)),
                                          EditState([1], 4, add_to_state(delta, scale=-1.0))]).logits
    assert (round_trip - hm.logits(ids)).abs().max().item() < TOL
    with pytest.raises(Exception, match="no axis 'd_x'"):
        run_with_state(hm, ids, [EditState([1], 4, project_out(direction, "d_x"))])
