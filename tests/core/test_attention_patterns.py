"""Attention patterns (`CaptureAttention`, `hm.attention_patterns`) against an eager attention written by hand.

For every family with softmax attention, in both tiny shapes (GQA 2:1 and 3:1, sliding windows that bind in
qwen2 and recurrent_gemma's second shape, zamba2's shared block, Qwen3.5's gated attention), the recorded
probabilities and logits equal tests/core/attention_reference.py's to 1e-5.
"""

from __future__ import annotations

import pytest
import torch

from mechhybrid import MechHybridError
from mechhybrid.attention import CaptureAttention, MaskKeys
from tests.conftest import ALL_MODEL_TYPES, both_shapes, build_tiny, random_ids
from tests.core import attention_reference as ref

ATTENTION_TYPES = tuple(t for t in ALL_MODEL_TYPES if t != "mamba2")


def _layers(hm) -> list[int]:
    return sorted({c.layer for c in hm.components if c.kind == "attention"})


def _hand_patterns(model, hm, ids):
    """{layer: (probs, logits)} of every attention layer, from a plain forward of the transformers model."""
    layers = _layers(hm)
    with ref.inputs_of(hm, layers) as seen, torch.no_grad():
        model(ids)
        out = {}
        for layer in layers:
            logits, _, _ = ref.scores(hm, layer, seen[layer])
            out[layer] = (ref.softmax(logits), logits.float())
    return out


@pytest.mark.parametrize("model_type, shape", both_shapes(ATTENTION_TYPES))
def test_every_pattern_equals_hand_attention(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(2, 7, seed=1)
    hand = _hand_patterns(model, hm, ids)
    result = hm.run(ids, [CaptureAttention(positions=None)])
    assert sorted(result.attention) == sorted(hand) and hand
    n_heads = next(c.n_heads for c in hm.components if c.kind == "attention")
    for layer, (probs, logits) in hand.items():
        got = result.attention[layer]
        assert tuple(got.probs.shape) == (2, n_heads, 7, 7)
        torch.testing.assert_close(got.probs, probs, atol=1e-5, rtol=0)
        finite = torch.isfinite(logits)
        assert torch.equal(torch.isfinite(got.scores), finite)
        torch.testing.assert_close(got.scores[finite], logits[finite], atol=1e-5, rtol=0)
    # Capturing reads the forward without touching it.
    assert torch.equal(result.logits, hm.logits(ids))


@pytest.mark.parametrize("model_type, shape", both_shapes(["qwen2", "recurrent_gemma"], shapes=("alt",)))
def test_sliding_window_binds(tiny_models, model_type, shape):
    """The second shape's window (4) is shorter than the sequence: keys before it get exactly zero."""
    _, hm = tiny_models(model_type, shape)
    layer = _layers(hm)[0]
    probs = hm.attention_patterns(random_ids(1, 9, seed=2), layers=[layer], positions=[8])[layer].probs
    assert torch.all(probs[..., :5] == 0) and torch.all(probs[..., 5:] > 0)


@pytest.mark.parametrize("model_type, shape", both_shapes(["llama", "qwen3_5_text", "zamba2", "gpt2"]))
def test_selection_is_a_slice_of_the_full_pattern(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(2, 8, seed=3)
    hand = _hand_patterns(model, hm, ids)
    layer = _layers(hm)[-1]
    got = hm.attention_patterns(ids, layers=[layer], positions=[-1, 2, 5], heads=[1, 0])
    assert list(got) == [layer]
    pattern = got[layer]
    assert pattern.queries == (-1, 2, 5) and pattern.heads == (1, 0)
    assert tuple(pattern.probs.shape) == (2, 2, 3, 8)
    torch.testing.assert_close(pattern.probs, hand[layer][0][:, [1, 0]][:, :, [7, 2, 5]], atol=1e-5, rtol=0)


def test_default_is_the_last_query_of_every_attention_layer(tiny_models):
    _, hm = tiny_models("jamba", "base")
    got = hm.attention_patterns(random_ids(3, 10, seed=4))
    assert sorted(got) == _layers(hm)
    for pattern in got.values():
        assert tuple(pattern.probs.shape) == (3, 4, 1, 10) and pattern.queries == (-1,)
        torch.testing.assert_close(pattern.probs.sum(-1), torch.ones(3, 4, 1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("model_type, shape", both_shapes(["llama", "bamba", "qwen2"], shapes=("alt",)))
def test_left_padding_gives_each_row_its_own_pattern(tiny_models, model_type, shape):
    """A left-padded row's pattern, in the caller's layout, is the row alone shifted right; padding keys get 0."""
    model, hm = tiny_models(model_type, shape)
    short, full = random_ids(1, 5, seed=5), random_ids(1, 8, seed=6)
    ids = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), short], 1), full])
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[0, :3] = 0
    got = hm.attention_patterns(ids, positions=[-1, -2], attention_mask=mask)
    alone = _hand_patterns(model, hm, short)
    for layer, pattern in got.items():
        assert torch.all(pattern.probs[0, ..., :3] == 0)
        torch.testing.assert_close(pattern.probs[0, :, :, 3:], alone[layer][0][0][:, [4, 3]], atol=1e-5, rtol=0)
        torch.testing.assert_close(pattern.probs[1], _hand_patterns(model, hm, full)[layer][0][0][:, [7, 6]],
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "falcon_h1"])
def test_eager_models_are_captured_through_their_own_kernel(model_type):
    """A model loaded with eager attention: same pattern, and logits untouched by capturing."""
    import mechhybrid

    model = build_tiny(model_type, shape="alt")
    model.config._attn_implementation = "eager"
    hm = mechhybrid.load(model)
    ids = random_ids(2, 6, seed=7)
    hand = _hand_patterns(model, hm, ids)
    result = hm.run(ids, [CaptureAttention(positions=None)])
    for layer, (probs, _) in hand.items():
        torch.testing.assert_close(result.attention[layer].probs, probs, atol=1e-5, rtol=0)
    assert torch.equal(result.logits, hm.logits(ids))
    assert model.config._attn_implementation == "eager"  # restored after the forward


def test_implementation_is_restored_after_an_error_in_the_forward(tiny_models):
    _, hm = tiny_models("llama", "base")
    before = hm.config._attn_implementation
    ids = random_ids(1, 4, seed=8)
    plain = hm.logits(ids)

    def fail(module, args, out):
        raise RuntimeError("boom")

    handle = hm.module("model.layers.2").register_forward_hook(fail)
    try:
        with pytest.raises(Exception, match="boom"):
            hm.run(ids, [CaptureAttention(), MaskKeys(keys=[1])])
        assert hm.config._attn_implementation == before
    finally:
        handle.remove()
    assert torch.equal(hm.logits(ids), plain)
    assert hm.run(ids, [CaptureAttention()]).attention  # a later forward installs it again


def _one_line_error(fn, *needles):
    with pytest.raises(MechHybridError) as caught:
        fn()
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_bad_selections_are_one_line_errors(tiny_models):
    _, hm = tiny_models("qwen3_5_text", "base")  # attention only at layer 3, 4 heads
    ids = random_ids(1, 6, seed=9)
    _one_line_error(lambda: hm.attention_patterns(ids, layers=[7]), "layer 7 out of range", "0..3")
    _one_line_error(lambda: hm.attention_patterns(ids, layers=[0]), "layer 0 has no softmax attention", "3")
    _one_line_error(lambda: hm.attention_patterns(ids, heads=[4]), "head 4 out of range", "0..3")
    _one_line_error(lambda: hm.attention_patterns(ids, positions=[6]), "position 6 out of range", "6 tokens")
    _one_line_error(lambda: hm.attention_patterns(ids, layers=["3"]), "layers must be")
    mlp = hm.components.find(3, "mlp")
    _one_line_error(lambda: hm.attention_patterns(ids, layers=[mlp]), "not an attention component")


def test_a_family_without_softmax_attention_is_refused(tiny_models):
    _, hm = tiny_models("mamba2", "base")
    _one_line_error(lambda: hm.attention_patterns(random_ids(1, 5, seed=10)), "mamba2 has no softmax attention")


def test_capture_in_generate_is_refused(tiny_models):
    _, hm = tiny_models("llama", "base")
    _one_line_error(lambda: hm.generate(random_ids(1, 4, seed=11), [CaptureAttention(positions=[1])], max_new_tokens=2),
                    "CaptureAttention needs one full forward")
