"""The memory lens against hand computations: the state read with the public `read_state`, the keys, queries, B
and C recomputed here with plain torch from the mixer's input, the output path written out (gated RMSNorm,
out_proj, final norm, unembedding). Tiny random models (tests/tiny_configs.py: hidden 32, 4 layers, vocab 97)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import mechhybrid
from mechhybrid.errors import MechHybridError
from mechhybrid.lens import (Alternative, carried, direct_logits, last_token_logits, lens_components, memory_lens,
                             with_head, write_associations, write_readouts)
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


def _mamba_step_by_hand(module, h):
    """Per token: decay exp(dt A) (Mamba-2 `[batch, seq, head, 1]`, Mamba-1 `[batch, seq, d_inner, d_state]`),
    dt, x, B and C, from the mixer input h, as the transformers step writes them (softplus(dt + bias), A =
    -exp(A_log))."""
    A = -torch.exp(module.A_log.float())
    if hasattr(module, "num_heads"):  # Mamba-2
        proj = module.in_proj(h * getattr(module, "ssm_in_multiplier", 1.0)) * getattr(module, "mup_vector", 1.0)
        x, b, c, _ = _mamba2_by_hand(module, h)
        dt = F.softplus(proj[..., -module.num_heads:] + module.dt_bias)  # [batch, seq, head]
        return torch.exp(dt * A)[..., None], dt[..., None], x, b[:, :, None], c[:, :, None]
    x, _ = module.in_proj(h).chunk(2, -1)
    x = _conv(module, x)
    r, n = module.time_step_rank, module.ssm_state_size
    parts = module.x_proj(x)
    dt = F.softplus(module.dt_proj(module.dt_layernorm(parts[..., :r])))  # [batch, seq, d_inner]
    b, c = module.b_layernorm(parts[..., r:r + n]), module.c_layernorm(parts[..., r + n:])
    return torch.exp(dt[..., None] * A), dt[..., None], x[..., None], b[:, :, None], c[:, :, None]


def _read(state, vectors):
    """A Mamba state read with per-head (Mamba-1: per-channel) vectors: `[batch, head, head_dim]` / `[batch,
    d_inner]`."""
    if state.ndim == 4:
        return torch.einsum("bhpn,bhn->bhp", state, vectors)
    return torch.einsum("bdn,bdn->bd", state, vectors.expand_as(state))


@pytest.mark.parametrize("model_type", ["mamba2", "falcon_h1", "jamba"])
def test_mamba_carried_readout_is_what_the_last_token_reads(tiny_models, model_type):
    """h_t C_t = h_{t-1} (exp(dt_t A) C_t) + dt_t (B_t . C_t) x_t: the state after the last token read with its
    C (the lens's query readout) splits into the earlier state read with the carried vectors and its own write."""
    _, hm = tiny_models(model_type)
    ids = random_ids(BATCH, SEQ, seed=6)
    pre, lenses = memory_lens(hm, ids)
    for layer, lens in lenses.items():
        module = hm.module(lens_components(hm)[layer].path)
        h, _ = _mixer_inputs(hm, lens_components(hm)[layer].path, ids)
        with torch.no_grad():
            decay, dt, x, b, c = (t[:, -1] for t in _mamba_step_by_hand(module, h))
            before = read_state(hm, ids, layer, [SEQ - 2])[(layer, SEQ - 2)].recurrent
            vectors = decay * c  # [batch, head, n] / [batch, d_inner, n]
            took = _read(before, vectors)
            own = dt * (b * c).sum(-1, keepdim=True) * x  # [batch, head, head_dim] / [batch, d_inner, 1]
            query = lens.readouts["query"]
            assert ((took + own.reshape(took.shape)) - query.reshape(took.shape)).abs().max() < TOL
            got_vectors, got = carried(pre, lens)
            assert (got_vectors - vectors).abs().max() < TOL
            assert (got.reshape(took.shape) - took).abs().max() < TOL


@pytest.mark.parametrize("model_type", ["mamba2", "jamba"])
def test_write_readouts_sets_the_readout_and_nothing_else(tiny_models, model_type):
    _, hm = tiny_models(model_type)
    ids = random_ids(BATCH, SEQ, seed=7)
    pre, lenses = memory_lens(hm, ids)
    generator = torch.Generator().manual_seed(1)
    for layer, lens in lenses.items():
        state = read_state(hm, ids, layer, [SEQ - 2])[(layer, SEQ - 2)]
        h = state.recurrent
        vectors, _ = carried(pre, lens)
        heads, width = (h.shape[1], h.shape[2]) if h.ndim == 4 else (1, h.shape[1])
        target = torch.randn(BATCH, heads, width, generator=generator)
        edited = write_readouts(vectors, target)(state).recurrent
        assert (_read(edited, vectors).reshape(target.shape) - target).abs().max() < TOL
        # Minimal norm: the change lies along c alone (zero on every direction orthogonal to c).
        change = (edited - h).reshape(BATCH, -1, h.shape[-1])
        c = vectors.expand(BATCH, change.shape[1] if h.ndim == 3 else heads, -1)
        c = c if h.ndim == 3 else c.repeat_interleave(h.shape[2], 1)
        unit = c / c.norm(dim=-1, keepdim=True)
        assert (change - (change * unit).sum(-1, keepdim=True) * unit).abs().max() < TOL
        # The current readout written back changes nothing.
        same = write_readouts(vectors, _read(h, vectors).reshape(target.shape))(state).recurrent
        assert (same - h).abs().max() < 1e-6
        if h.ndim == 4:  # a state of another layout (a GDN memory's axes) is refused in one line
            with pytest.raises(MechHybridError, match="Mamba state"):
                write_readouts(vectors, target)(dataclasses.replace(state, recurrent_axes=("batch", "head", "d_k",
                                                                                           "d_v")))


def _hand_transplant(hf, ids, layer: int, edited: torch.Tensor) -> torch.Tensor:
    """Reference: the prompt but its last token through transformers' own cache, the layer's ssm state there
    overwritten with `edited`, then the last token: its logits."""
    from transformers import DynamicCache

    cache = DynamicCache(config=hf.config)
    with torch.no_grad():
        hf(ids[:, :-1], cache=cache, use_cache=True)
        assert cache.layers[layer].recurrent_states[0].shape == edited.shape
        cache.layers[layer].recurrent_states[0] = edited.clone()
        return hf(ids[:, -1:], cache=cache, use_cache=True).logits[:, -1]


@pytest.mark.parametrize("model_type", ["mamba2", "jamba"])
def test_mamba_edit_equals_a_hand_cache_transplant(tiny_models, model_type):
    hf, hm = tiny_models(model_type)
    ids = random_ids(BATCH, SEQ, seed=8)
    other = ids.clone()
    other[:, :-1] = random_ids(BATCH, SEQ - 1, seed=9)  # the alternative prompt: another context, the same last token
    pre, lenses = memory_lens(hm, ids)
    other_pre, other_lenses = memory_lens(hm, other)
    layer = min(lenses)
    vectors, _ = carried(pre, lenses[layer])
    _, wanted = carried(other_pre, other_lenses[layer])
    # Tiny random Mamba layers write little into the residual: a large readout makes the edit show in the logits.
    wanted = 20 * wanted / wanted.abs().max()
    fn = write_readouts(vectors, wanted)
    got = last_token_logits(hm, pre, lens_components(hm), [Alternative(edits={layer: fn}), Alternative()])
    with torch.no_grad():
        h = read_state(hm, ids, layer, [SEQ - 2])[(layer, SEQ - 2)].recurrent
        c = vectors.expand(h.shape[0], h.shape[1], -1)
        y = wanted.reshape(*h.shape[:-1]) if h.ndim == 3 else wanted
        now = _read(h, vectors).reshape(y.shape)
        edited = h + (y - now)[..., None] * (c / (c * c).sum(-1, keepdim=True)).reshape(
            *c.shape[:2], *([1] if h.ndim == 4 else []), -1)
        assert (_read(edited, vectors).reshape(y.shape) - y).abs().max() < TOL
        reference = _hand_transplant(hf, ids, layer, edited)
        plain = _hand_transplant(hf, ids, layer, h)
    assert (got[0] - reference).abs().max() < TOL
    assert (got[1] - plain).abs().max() < TOL and (plain - pre.logits).abs().max() < TOL
    assert (got[0] - pre.logits).abs().max() > 1e-3  # the edit reaches the logits


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
