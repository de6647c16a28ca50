"""The memory lens against hand computations: the state read with the public `read_state`, the keys, queries, B
and C recomputed here with plain torch from the mixer's input, the output path written out (gated RMSNorm,
out_proj, final norm, unembedding). Tiny random models (tests/tiny_configs.py: hidden 32, 4 layers, vocab 97)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import mechhybrid
from mechhybrid.errors import MechHybridError
from mechhybrid.lens import (Alternative, direct_logits, last_token_logits, lens_components, memory_lens,
                             with_head, write_associations)
from mechhybrid.state import EditState, read_state, run_with_state
from tests.conftest import random_ids

TOL = 1e-5
SEQ, BATCH = 12, 2
NEEDLE = torch.tensor([3, 6])
"""Per row, the position whose key the tests read the state with."""


def _mixer_inputs(hm, layer_path: str, ids) -> tuple[torch.Tensor, list]:
    """(the mixer's input over the whole prompt from one plain forward, the model's logits)."""
    seen = []
    module = hm.module(layer_path)
    handle = module.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0] if args else kwargs["hidden_states"]).detach()),
        with_kwargs=True)
    try:
        with torch.no_grad():
            logits = hm.hf_model(ids).logits
    finally:
        handle.remove()
    return seen[0], logits


def _conv(module, x):
    w = module.conv1d.weight
    out = F.conv1d(x.transpose(1, 2), w, module.conv1d.bias, padding=w.shape[-1] - 1, groups=w.shape[0])
    return F.silu(out[..., : x.shape[1]]).transpose(1, 2)


def _pre_norm_output(hm, path: str, ids, at: str = "norm") -> torch.Tensor:
    """The layer's own input to its norm (or out_proj) at the last token, from a plain forward."""
    seen = []
    sub = getattr(hm.module(path), at)
    handle = sub.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            hm.hf_model(ids)
    finally:
        handle.remove()
    return seen[0]


def _gdn_by_hand(module, h):
    """Unit keys and scaled queries [batch, seq, v_head, d_k] and gate z, from the mixer input h."""
    if hasattr(module, "in_proj_qkvz"):  # qwen3_next interleaves q, k, v, z per key head
        q, k, v, z, _, _ = module.fix_query_key_value_ordering(module.in_proj_qkvz(h), module.in_proj_ba(h))
        mixed = torch.cat([t.flatten(2) for t in (q, k, v)], -1)
    else:
        mixed, z = module.in_proj_qkv(h), module.in_proj_z(h)
    mixed = _conv(module, mixed)
    b, s = h.shape[:2]
    dk, nk, nv = module.head_k_dim, module.num_k_heads, module.num_v_heads
    q, k = mixed[..., :nk * dk], mixed[..., nk * dk:2 * nk * dk]
    q, k = (t.reshape(b, s, nk, dk).repeat_interleave(nv // nk, 2) for t in (q, k))
    unit = lambda t: t / torch.sqrt((t * t).sum(-1, keepdim=True) + 1e-6)  # noqa: E731
    return unit(k), unit(q) / dk ** 0.5, z.reshape(b, s, nv, -1)


def _gdn_output(module, y, z):
    eps = module.norm.variance_epsilon
    normed = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps) * module.norm.weight * F.silu(z)
    return module.out_proj(normed.flatten(1))


@pytest.mark.parametrize("model_type", ["qwen3_5_text", "qwen3_next"])
def test_gdn_readout_equals_hand_computation(tiny_models, model_type):
    _, hm = tiny_models(model_type)
    ids = random_ids(BATCH, SEQ, seed=1)
    pre, lenses = memory_lens(hm, ids, {"needle": NEEDLE})
    assert sorted(lenses) == [0, 1, 2] and all(lens.n_heads == 4 for lens in lenses.values())
    rows = torch.arange(BATCH)
    for layer, lens in lenses.items():
        path = lens_components(hm)[layer].path
        h, _ = _mixer_inputs(hm, path, ids)
        module = hm.module(path)
        with torch.no_grad():
            k, q, z = _gdn_by_hand(module, h)
            S = read_state(hm, ids, layer, [-1])[(layer, SEQ - 1)].recurrent
            # The identity that can fail: S_t^T q_t (the layer's scaling) is the layer's own pre-norm output.
            own = _pre_norm_output(hm, path, ids).reshape(BATCH, SEQ, 4, -1)[:, -1]
            by_hand = torch.einsum("bhkv,bhk->bhv", S, q[:, -1])
            assert (by_hand - own).abs().max() < TOL
            assert (lens.readouts["query"] - by_hand).abs().max() < TOL
            y = torch.einsum("bhkv,bhk->bhv", S, k[rows, NEEDLE] / module.head_k_dim ** 0.5)
            assert (lens.readouts["needle"] - y).abs().max() < TOL
            expected = hm.logit_lens(_gdn_output(module, y, z[:, -1]))
            assert (direct_logits(hm, lens, lens.readouts["needle"]) - expected).abs().max() < TOL


def _mamba2_by_hand(module, h):
    """C, B and x per head, gate z, from the mixer input h (Falcon-H1's in-multiplier and muP vector too)."""
    proj = module.in_proj(h * getattr(module, "ssm_in_multiplier", 1.0)) * getattr(module, "mup_vector", 1.0)
    inner, n, heads = module.intermediate_size, module.ssm_state_size, module.num_heads
    z, xbc = proj[..., :inner], _conv(module, proj[..., inner:inner + module.conv_dim])
    x, b, c = xbc[..., :inner], xbc[..., inner:inner + n], xbc[..., inner + n:inner + 2 * n]
    return x.reshape(*x.shape[:2], heads, -1), b, c, z


@pytest.mark.parametrize("model_type", ["mamba2", "falcon_h1", "bamba"])
def test_mamba2_readout_equals_hand_computation(tiny_models, model_type):
    _, hm = tiny_models(model_type)
    ids = random_ids(BATCH, SEQ, seed=2)
    pre, lenses = memory_lens(hm, ids, {"needle": NEEDLE})
    rows = torch.arange(BATCH)
    for layer, lens in lenses.items():
        path = lens_components(hm)[layer].path
        module = hm.module(path)
        assert module.n_groups == 1  # the hand computation below reads one B / C group
        h, _ = _mixer_inputs(hm, path, ids)
        with torch.no_grad():
            x, b, c, z = _mamba2_by_hand(module, h)
            state = read_state(hm, ids, layer, [-1])[(layer, SEQ - 1)].recurrent  # [batch, head, head_dim, n]
            y_query = torch.einsum("bhpn,bn->bhp", state, c[:, -1])
            skip = module.D[None, :, None] * x[:, -1]
            plain_norm = isinstance(module.norm, torch.nn.Identity)
            own = _pre_norm_output(hm, path, ids, "out_proj" if plain_norm else "norm")[:, -1]
            mine = (y_query + skip).flatten(1)
            assert (own - (mine * F.silu(z[:, -1]) if plain_norm else mine)).abs().max() < TOL
            assert (lens.readouts["query"] - y_query).abs().max() < TOL
            y = torch.einsum("bhpn,bn->bhp", state, b[rows, NEEDLE])
            assert (lens.readouts["needle"] - y).abs().max() < TOL
            gated = y.flatten(1) * F.silu(z[:, -1])
            if not plain_norm:
                gated = gated * torch.rsqrt(gated.pow(2).mean(-1, keepdim=True) + module.norm.variance_epsilon)
                gated = gated * module.norm.weight
            expected = hm.logit_lens(module.out_proj(gated))
            assert (direct_logits(hm, lens, y) - expected).abs().max() < TOL


def test_mamba1_readout_reproduces_the_layer(tiny_models):
    _, hm = tiny_models("jamba")
    ids = random_ids(BATCH, SEQ, seed=3)
    _, lenses = memory_lens(hm, ids)
    for layer, lens in lenses.items():
        path = lens_components(hm)[layer].path
        module = hm.module(path)
        h, _ = _mixer_inputs(hm, path, ids)
        with torch.no_grad():
            x, z = module.in_proj(h).chunk(2, -1)
            x = _conv(module, x)
            c = module.c_layernorm(module.x_proj(x)[..., -module.ssm_state_size:])
            state = read_state(hm, ids, layer, [-1])[(layer, SEQ - 1)].recurrent  # [batch, d_inner, n]
            y = torch.einsum("bdn,bn->bd", state, c[:, -1])
            own = _pre_norm_output(hm, path, ids, "out_proj")[:, -1]
            assert (own - (y + module.D * x[:, -1]) * F.silu(z[:, -1])).abs().max() < TOL
            assert (lens.readouts["query"][:, 0] - y).abs().max() < TOL


def _replaced_forward(hm, path: str, ids, value: torch.Tensor) -> torch.Tensor:
    """Reference: one plain forward of the whole prompt with the mixer's last-token output set to `value`."""
    def hook(module, args, out):
        out = out.clone()
        out[:, -1] = value
        return out

    handle = hm.module(path).register_forward_hook(hook)
    try:
        with torch.no_grad():
            return hm.hf_model(ids).logits[:, -1]
    finally:
        handle.remove()


@pytest.mark.parametrize("model_type", ["qwen3_5_text", "falcon_h1"])
def test_through_the_model_equals_a_plain_replaced_forward(tiny_models, model_type):
    _, hm = tiny_models(model_type)
    ids = random_ids(BATCH, SEQ, seed=4)
    pre, lenses = memory_lens(hm, ids, {"needle": NEEDLE})
    components = lens_components(hm)
    layer = min(lenses)
    lens = lenses[layer]
    swapped = lens.output(with_head(lens.actual, lens.readouts["needle"], 1))
    everything = lens.output(lens.readouts["needle"])
    got = last_token_logits(hm, pre, components, [Alternative(outputs={layer: swapped}),
                                                   Alternative(outputs={layer: everything}), Alternative()])
    for out, value in zip(got, (swapped, everything)):
        assert (out - _replaced_forward(hm, components[layer].path, ids, value)).abs().max() < TOL
    with torch.no_grad():
        plain = hm.hf_model(ids).logits[:, -1]
    assert (got[2] - plain).abs().max() < TOL and (pre.logits - plain).abs().max() < TOL
    if model_type == "qwen3_5_text":  # GDN: the query readout through the output path is the layer itself
        identity = last_token_logits(
            hm, pre, components, [Alternative(outputs={layer: lens.output(lens.readouts["query"])})])
        assert (identity[0] - plain).abs().max() < TOL


def test_edit_equals_edit_state_and_writes_the_association(tiny_models):
    _, hm = tiny_models("qwen3_5_text")
    ids = random_ids(BATCH, SEQ, seed=5)
    pre, lenses = memory_lens(hm, ids, {"needle": NEEDLE})
    lens = lenses[1]
    key = lens.parts.keys[torch.arange(BATCH), NEEDLE]
    value = torch.randn(BATCH, 4, 8, generator=torch.Generator().manual_seed(0))
    fn = write_associations(key, value, beta=1.0)
    got = last_token_logits(hm, pre, lens_components(hm), [Alternative(edits={1: fn})])[0]
    reference = run_with_state(hm, ids, [EditState(1, SEQ - 2, fn)]).logits[:, -1]
    assert (got - reference).abs().max() < TOL
    state = read_state(hm, ids, 1, [SEQ - 2])[(1, SEQ - 2)]
    written = fn(state).recurrent
    unit = key / key.norm(dim=-1, keepdim=True)
    assert (torch.einsum("bhkv,bhk->bhv", written, unit) - value).abs().max() < TOL
    assert (got - pre.logits).abs().max() > 1e-4  # the write reaches the logits


@pytest.mark.parametrize("model_type", ["llama", "recurrent_gemma"])
def test_no_gdn_or_mamba_layer_is_one_clear_error(tiny_models, model_type):
    _, hm = tiny_models(model_type)
    with pytest.raises(MechHybridError, match="has no Gated DeltaNet or Mamba layer") as info:
        memory_lens(hm, random_ids(1, 6, seed=0))
    assert "\n" not in str(info.value)


def test_bad_lens_layer_and_short_prompt(tiny_models):
    _, hm = tiny_models("qwen3_5_text")
    with pytest.raises(MechHybridError, match="layer 3 has no Gated DeltaNet or Mamba state"):
        memory_lens(hm, random_ids(1, 6, seed=0), layers=[3])
    with pytest.raises(MechHybridError, match="at least 2 tokens"):
        memory_lens(hm, random_ids(1, 1, seed=0))
