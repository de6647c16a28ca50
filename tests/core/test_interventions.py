"""Every intervention against plain torch hooks on the transformers model (tests/core/reference.py), to 1e-5."""

from __future__ import annotations

import pytest
import torch

from mechhybrid import Ablate, AblateHeads, Capture, KeepHeads, Patch, Steer
from tests.conftest import ALL_MODEL_TYPES, both_shapes, random_ids
from tests.core import reference as ref

ATOL = 1e-5
BATCH, SEQ = 2, 9


def close(a, b):
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_zero_each_kind_and_all_mixers(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(BATCH, SEQ, seed=1)
    groups = [hm.components.by_kind(kind) for kind in hm.components.kinds()] + [hm.components.mixers()]
    for group in groups:
        expected = ref.logits(model, ids, [(c.path, "out", torch.zeros_like) for c in group])
        close(hm.logits(ids, [Ablate(group)]), expected)
        assert not torch.allclose(expected, ref.logits(model, ids), atol=1e-4)  # the ablation does something


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_zero_one_component_at_positions(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(BATCH, SEQ, seed=2)
    component = hm.components[len(hm.components) // 2]
    positions = [1, 4]
    expected = ref.logits(model, ids, [(component.path, "out", ref.at_positions(positions, torch.zeros_like))])
    close(hm.logits(ids, [Ablate([component], positions=positions)]), expected)


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_mean_over_batch_and_per_position(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids, reference_ids = random_ids(BATCH, SEQ, seed=3), random_ids(5, SEQ + 2, seed=4)
    group = hm.components.mixers()[:2]
    seen = ref.capture(model, reference_ids, [c.path for c in group])
    spec = [(c.path, "out", lambda t, m=seen[c.path].mean((0, 1)): m.expand_as(t).clone()) for c in group]
    close(hm.logits(ids, [Ablate(group, "mean", reference_ids=reference_ids)]), ref.logits(model, ids, spec))
    spec = [(c.path, "out", lambda t, m=seen[c.path].mean(0)[:SEQ]: m.expand_as(t).clone()) for c in group]
    ablate = Ablate(group, "mean", reference_ids=reference_ids, per_position=True)
    close(hm.logits(ids, [ablate]), ref.logits(model, ids, spec))


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_resample_at_positions(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids, source = random_ids(BATCH, SEQ, seed=5), random_ids(BATCH, SEQ, seed=6)
    group = hm.components.by_layers([1])
    seen = ref.capture(model, source, [c.path for c in group])
    positions = [0, 3, 8]
    spec = [(c.path, "out", ref.at_positions(positions, lambda t, s=seen[c.path]: s)) for c in group]
    ablate = Ablate(group, "resample", source_ids=source, positions=positions)
    close(hm.logits(ids, [ablate]), ref.logits(model, ids, spec))


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_skip_layer_and_positions(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(BATCH, SEQ, seed=7)
    component = hm.components.by_layers([1])[0]
    spec = [(component.layer_path, "layer_skip", lambda out, hidden: hidden.clone())]
    close(hm.logits(ids, [Ablate([component], "skip")]), ref.logits(model, ids, spec))

    def partial(out, hidden):
        out = out.clone()
        out[:, [2, 5]] = hidden[:, [2, 5]]
        return out

    spec = [(component.layer_path, "layer_skip", partial)]
    close(hm.logits(ids, [Ablate([component], "skip", positions=[2, 5])]), ref.logits(model, ids, spec))


HEAD_CASES = both_shapes([
    ("qwen3_5_text", "attention"), ("qwen3_5_text", "linear_attention"), ("falcon_h1", "ssm"),
    ("falcon_h1", "attention"), ("qwen2", "attention"), ("gpt2", "attention"), ("zamba2", "ssm"),
]) + both_shapes([
    # Second shape only: head_dim 12 on hidden 48 (llama), an o_proj bias (recurrent_gemma), biased Mamba-2
    # out_proj (nemotron_h, bamba), LFM2's `out_proj`, granite's attention multiplier, Jamba's attention first.
    ("llama", "attention"), ("recurrent_gemma", "attention"), ("nemotron_h", "ssm"), ("bamba", "ssm"),
    ("lfm2", "attention"), ("granitemoehybrid", "attention"), ("jamba", "attention"), ("mamba2", "ssm"),
], shapes=("alt",))


def _heads_fn(n_heads, mask):
    """Reference: zero (mask True) head slices of the output projection's input. mask: [batch, seq, head]."""
    def fn(x):
        view = x.reshape(*x.shape[:-1], n_heads, -1)
        return (view * (~mask)[..., None]).reshape(x.shape)

    return fn


@pytest.mark.parametrize("model_type,shape,kind", HEAD_CASES)
def test_head_ablation_lists_and_per_token_masks(tiny_models, model_type, shape, kind):
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(BATCH, SEQ, seed=8)
    component = hm.components.by_kind(kind)[0]
    n = component.n_heads
    mask = torch.zeros(BATCH, SEQ, n, dtype=torch.bool)
    mask[:, :, [0, n - 1]] = True
    expected = ref.logits(model, ids, [(component.out_proj, "in", _heads_fn(n, mask))])
    close(hm.logits(ids, [AblateHeads(component, [0, n - 1])]), expected)
    per_token = torch.rand(BATCH, SEQ, n, generator=torch.Generator().manual_seed(0)) < 0.5
    expected = ref.logits(model, ids, [(component.out_proj, "in", _heads_fn(n, ~per_token))])
    close(hm.logits(ids, [KeepHeads(component, per_token)]), expected)
    positioned = mask.clone()
    positioned[:, [0, 1, 2]] = False
    expected = ref.logits(model, ids, [(component.out_proj, "in", _heads_fn(n, positioned))])
    close(hm.logits(ids, [AblateHeads(component, [0, n - 1], positions=range(3, SEQ))]), expected)


@pytest.mark.parametrize("model_type,shape,kind", HEAD_CASES)
def test_head_patching_and_per_head_capture(tiny_models, model_type, shape, kind):
    model, hm = tiny_models(model_type, shape)
    ids, source = random_ids(BATCH, SEQ, seed=9), random_ids(BATCH, SEQ, seed=10)
    component = hm.components.by_kind(kind)[0]
    n = component.n_heads
    seen = ref.capture(model, source, [component.out_proj], where="in")[component.out_proj]

    def patch(x):
        view, src = x.reshape(*x.shape[:-1], n, -1).clone(), seen.reshape(*x.shape[:-1], n, -1)
        view[:, 4:, 1] = src[:, 4:, 1]
        return view.reshape(x.shape)

    expected = ref.logits(model, ids, [(component.out_proj, "in", patch)])
    close(hm.logits(ids, [Patch([component], source, positions=range(4, SEQ), heads=[1])]), expected)

    result = hm.run(ids, [Capture([component], per_head=True), Capture(hm.components[-1:])])
    contributions = result.captures[component]
    assert contributions.shape == (BATCH, SEQ, n, hm.d_model)
    output = ref.capture(model, ids, [component.path])[component.path]
    bias = getattr(hm.module(component.out_proj), "bias", None)
    summed = contributions.sum(2) + (0 if bias is None else bias)
    torch.testing.assert_close(summed, output, atol=ATOL, rtol=0)


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text", "falcon_h1", "mamba2"]))
def test_capture_and_steer(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(BATCH, SEQ, seed=11)
    component = hm.components[1]
    plain = ref.capture(model, ids, [component.path])[component.path]
    captured = hm.run(ids, [Capture([component], positions=[2, 3])]).captures[component]
    torch.testing.assert_close(captured, plain[:, [2, 3]], atol=0, rtol=0)
    vector = torch.randn(hm.d_model, generator=torch.Generator().manual_seed(1))
    spec = [(component.path, "out", ref.at_positions([5], lambda t: t + 0.5 * vector))]
    close(hm.logits(ids, [Steer(component, vector, positions=[5], scale=0.5)]), ref.logits(model, ids, spec))
