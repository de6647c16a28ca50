"""ReadState is exact: equal to the final state of a run on the prefix alone, and to a plain per-token recurrence."""

from __future__ import annotations

import importlib

import pytest
import torch

from mechhybrid.state import ReadState, read_state, resolve_layers, run_with_state
from mechhybrid.state import cache as cache_ops
from tests.conftest import both_shapes, random_ids
from tests.state.helpers import EXPECTED_STATE_LAYERS, STATEFUL, TOL, max_gap, peak_cpu_bytes


def _final_state(hm, ids):
    """Every state layer's state after one plain cached forward of `ids` (the model's own prefill)."""
    batch, seq = ids.shape
    cache = cache_ops.new_cache(hm, batch)
    with torch.no_grad():
        hm.hf_model(ids, **cache_ops.forward_kwargs(hm, cache, 0, seq, batch))
    return {layer: cache_ops.read(hm, cache, layer, seq - 1) for layer in resolve_layers(hm, None)}


@pytest.mark.parametrize("model_type,shape", both_shapes(STATEFUL))
def test_read_state_equals_prefix_run(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    assert resolve_layers(hm, None) == EXPECTED_STATE_LAYERS[shape][model_type]
    ids = random_ids(2, 10, seed=1)
    states = read_state(hm, ids, None, [3, 8])
    for t in (3, 8):
        prefix = _final_state(hm, ids[:, : t + 1])
        for layer, state in prefix.items():
            assert max_gap(states[(layer, t)], state) < TOL, (layer, t)
    # The same reads inside a run leave its logits equal to the plain forward's.
    result = run_with_state(hm, ids, [ReadState(None, [3, 8])])
    assert (result.logits - hm.logits(ids)).abs().max().item() < TOL
    assert max_gap(result.states[(resolve_layers(hm, None)[0], 8)], states[(resolve_layers(hm, None)[0], 8)]) < TOL
    # Non-vacuous: the state moves between the two positions.
    assert max_gap(states[(resolve_layers(hm, None)[0], 3)], states[(resolve_layers(hm, None)[0], 8)]) > 1e-3


def _capture_kernel_args(monkeypatch, module, name):
    calls = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


GDN_MODULES = {
    "qwen3_5_text": "transformers.models.qwen3_5.modeling_qwen3_5",
    "qwen3_next": "transformers.models.qwen3_next.modeling_qwen3_next",
}


@pytest.mark.parametrize("model_type,shape", both_shapes(GDN_MODULES))
def test_gated_deltanet_state_equals_plain_recurrence(tiny_models, monkeypatch, model_type, shape):
    """S_t = exp(g_t) S_{t-1} + k_t beta_t (v_t - S^T k_t)^T, per token (Yang et al. 2024, eq. 10)."""
    _, hm = tiny_models(model_type, shape)
    layer = resolve_layers(hm, None)[0]  # the first Gated DeltaNet layer makes the first kernel call
    ids = random_ids(1, 9, seed=2)
    calls = _capture_kernel_args(monkeypatch, importlib.import_module(GDN_MODULES[model_type]),
                                 "torch_chunk_gated_delta_rule")
    hm.hf_model(ids, use_cache=False)
    q, k, v = calls[0][0][:3]  # [batch, seq, head, d_k|d_v]
    g, beta = calls[0][1]["g"], calls[0][1]["beta"]  # [batch, seq, head]
    monkeypatch.undo()
    k = k.repeat_interleave(v.shape[2] // k.shape[2], dim=2)  # key heads shared by value heads (GQA-style)
    k = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    memory = torch.zeros(1, k.shape[2], k.shape[3], v.shape[3])
    states = read_state(hm, ids, [layer], list(range(9)))
    for t in range(9):
        memory = memory * g[:, t].exp()[..., None, None]
        read = torch.einsum("bhkv,bhk->bhv", memory, k[:, t])
        memory = memory + torch.einsum("bhk,bhv->bhkv", k[:, t], (v[:, t] - read) * beta[:, t][..., None])
        assert (states[(layer, t)].recurrent - memory).abs().max().item() < TOL, t
    assert states[(layer, 8)].recurrent_axes == ("batch", "head", "d_k", "d_v")


@pytest.mark.parametrize("model_type,shape", both_shapes(["mamba2"]))
def test_mamba2_state_equals_plain_recurrence(tiny_models, monkeypatch, model_type, shape):
    """h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T, per token (Dao & Gu 2024, eq. 1 with scalar A per head)."""
    import transformers.models.mamba2.modeling_mamba2 as mamba2

    _, hm = tiny_models(model_type, shape)
    ids = random_ids(1, 11, seed=3)
    calls = _capture_kernel_args(monkeypatch, mamba2, "mamba2_chunk_scan")
    hm.hf_model(ids, use_cache=False)
    args, kwargs = calls[0]
    monkeypatch.undo()
    x, dt, a, b = args[:4]  # x [batch, seq, head, head_dim], dt [batch, seq, head], b [batch, seq, group, d_state]
    dt = torch.nn.functional.softplus(dt + kwargs["dt_bias"]).clamp(*kwargs["dt_limit"])
    b = b.repeat_interleave(x.shape[2] // b.shape[2], dim=2)
    h = torch.zeros(1, x.shape[2], x.shape[3], b.shape[3])
    states = read_state(hm, ids, [0], list(range(11)))
    for t in range(11):
        decay = torch.exp(dt[:, t] * a)[..., None, None]
        h = h * decay + dt[:, t][..., None, None] * x[:, t][..., None] * b[:, t][:, :, None, :]
        assert (states[(0, t)].recurrent - h).abs().max().item() < TOL, t


def test_read_state_memory_does_not_grow_with_sequence(tiny_models):
    """Reading after token 255 costs the same whatever follows it (1.39 MiB at 512 and 2,048 tokens), and reading
    after the last token runs the prefix through the cache 512 tokens at a time, so only the attention layer's KV
    cache grows with the sequence (measured 2.77 -> 3.96 MiB from the last of 512 to the last of 2,048 tokens;
    one 2,048-token forward peaks at 11.0 MiB, and the state trajectory alone would be 6 MiB)."""
    _, hm = tiny_models("qwen3_5_text")
    short, long = random_ids(1, 512, seed=4), random_ids(1, 2048, seed=4)
    fixed_short = peak_cpu_bytes(lambda: read_state(hm, short, None, [255]))
    fixed_long = peak_cpu_bytes(lambda: read_state(hm, long, None, [255]))
    assert fixed_long / fixed_short < 1.1
    last_short = peak_cpu_bytes(lambda: read_state(hm, short, None, [-1]))
    last_long = peak_cpu_bytes(lambda: read_state(hm, long, None, [-1]))
    print(f"peak MiB: @255 {fixed_short / 2**20:.2f} / {fixed_long / 2**20:.2f}; last {last_short / 2**20:.2f} / "
          f"{last_long / 2**20:.2f}")
    assert last_long / last_short < 1.6
