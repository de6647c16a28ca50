"""The training-only Mamba-1 scan is transformers' reference scan, bit for bit, and is active only in training."""

import pytest
import torch

from mechhybrid.zoo.recipes import build_model, zoo_spec
from mechhybrid.zoo.train import make_batch, quiet, weighted_loss
from mechhybrid.zoo.training_scan import selective_scan, training_scan


def _loss_and_grads(fast: bool):
    ids, weights = make_batch(3)
    ids, weights = ids[:2, :96], weights[:2, :96]
    model = build_model(zoo_spec("hybrid-jamba"), 0)
    if fast:
        with training_scan("jamba"):
            logits = model(input_ids=ids).logits
            weighted_loss(logits, ids, weights).backward()
    else:
        logits = model(input_ids=ids).logits
        weighted_loss(logits, ids, weights).backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_jamba_training_forward_and_gradients_equal_the_reference_path():
    quiet()
    ref_logits, ref_grads = _loss_and_grads(fast=False)
    logits, grads = _loss_and_grads(fast=True)
    assert torch.equal(logits, ref_logits)
    assert grads.keys() == ref_grads.keys() and any("A_log" in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def _inputs(seed=0, batch=2, channels=6, state=4, seq=9):
    g = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(batch, channels, seq, generator=g),
                dt=torch.randn(batch, channels, seq, generator=g),
                A=-torch.rand(channels, state, generator=g) * 2,
                B=torch.randn(batch, state, seq, generator=g), C=torch.randn(batch, state, seq, generator=g),
                D=torch.randn(channels, generator=g), z=torch.randn(batch, channels, seq, generator=g),
                delta_bias=torch.randn(channels, generator=g))


def test_scan_matches_a_per_token_float64_recurrence():
    x = _inputs()
    out, last = selective_scan(**x, delta_softplus=True, return_last_state=True)
    d = {k: v.double() for k, v in x.items()}
    dt = torch.nn.functional.softplus(d["dt"] + d["delta_bias"][:, None])
    h = torch.zeros(2, 6, 4, dtype=torch.float64)
    for t in range(9):
        h = torch.exp(dt[:, :, t, None] * d["A"]) * h + dt[:, :, t, None] * d["B"][:, None, :, t] * d["hidden_states"][:, :, t, None]
        y = (h * d["C"][:, None, :, t]).sum(-1) + d["D"] * d["hidden_states"][:, :, t]
        torch.testing.assert_close(out[:, :, t].double(), y * torch.nn.functional.silu(d["z"][:, :, t]),
                                   rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last.double(), h, rtol=1e-5, atol=1e-6)


def test_patch_is_scoped_to_jamba_and_undone_on_error():
    from transformers.models.jamba import modeling_jamba

    original = modeling_jamba.mamba_selective_scan
    with training_scan("qwen3_5"):
        assert modeling_jamba.mamba_selective_scan is original
    with pytest.raises(RuntimeError):
        with training_scan("jamba"):
            assert modeling_jamba.mamba_selective_scan is selective_scan
            raise RuntimeError("interrupted step")
    assert modeling_jamba.mamba_selective_scan is original
