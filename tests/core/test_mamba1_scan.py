"""Mamba-1's scan (Jamba) without mamba_ssm: transformers' reference scan bit for bit, chunked or not, and installed
only where it replaces that reference."""

import pytest
import torch
import torch.nn.functional as F

from mechhybrid import mamba1_scan
from mechhybrid.mamba1_scan import selective_scan, training_scan, use_bounded_scan
from mechhybrid.zoo.recipes import build_model, zoo_spec
from mechhybrid.zoo.train import make_batch, quiet, weighted_loss


@pytest.fixture
def reference_scan(monkeypatch):
    """transformers' own scan, restored after the test whatever a test (or `load`) installed."""
    from transformers.models.jamba import modeling_jamba

    original = modeling_jamba.mamba_selective_scan
    while hasattr(original, "mechhybrid_chunk_len"):
        original = original.__wrapped__  # a scan that `load` installed earlier in this process
    monkeypatch.setattr(modeling_jamba, "mamba_selective_scan", original)
    return original


@pytest.fixture
def scan_calls(monkeypatch):
    """The chunk_len of every call that reaches mechhybrid's scan (proof that a model really runs it)."""
    calls = []
    real = mamba1_scan.selective_scan

    def spy(*args, **kwargs):
        calls.append(kwargs.get("chunk_len"))
        return real(*args, **kwargs)

    monkeypatch.setattr(mamba1_scan, "selective_scan", spy)
    return calls


def _loss_and_grads(fast: bool):
    ids, weights = make_batch(3)
    ids, weights = ids[:2, :96], weights[:2, :96]
    model = build_model(zoo_spec("hybrid-jamba"), 0)
    with training_scan("jamba") if fast else torch.enable_grad():
        logits = model(input_ids=ids).logits
        weighted_loss(logits, ids, weights).backward()
    return logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_training_forward_and_gradients_equal_the_reference_path(reference_scan, scan_calls):
    quiet()
    ref_logits, ref_grads = _loss_and_grads(fast=False)
    assert scan_calls == []
    logits, grads = _loss_and_grads(fast=True)
    assert scan_calls == [None] * 3  # the zoo Jamba's three Mamba-1 layers, unchunked
    assert torch.equal(logits, ref_logits)
    assert grads.keys() == ref_grads.keys() and any("A_log" in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-5, atol=1e-7, msg=name)


def _inputs(batch=2, channels=8, state=4, seq=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(hidden_states=torch.randn(batch, channels, seq, generator=g),
                dt=torch.randn(batch, channels, seq, generator=g),
                A=-torch.rand(channels, state, generator=g) * 2,
                B=torch.randn(batch, seq, state, generator=g).transpose(1, 2),
                C=torch.randn(batch, seq, state, generator=g).transpose(1, 2),
                D=torch.randn(channels, generator=g), z=torch.randn(batch, channels, seq, generator=g),
                delta_bias=torch.randn(channels, generator=g), delta_softplus=True, return_last_state=True)


@pytest.mark.parametrize("shape", [dict(), dict(batch=3, channels=256, state=16, seq=70), dict(batch=1, channels=3, state=5, seq=11)])
@pytest.mark.parametrize("chunk_len", [None, 1, 16, 64])
def test_scan_is_bitwise_the_reference_at_any_chunk_length(reference_scan, shape, chunk_len):
    x = _inputs(**shape)
    with torch.no_grad():
        ref_out, ref_state = reference_scan(**x)
        out, state = selective_scan(**x, chunk_len=chunk_len)
    assert torch.equal(out, ref_out) and torch.equal(state, ref_state)


def test_scan_matches_a_per_token_float64_recurrence():
    x = _inputs()
    out, last = selective_scan(**x, chunk_len=5)
    d = {k: v.double() for k, v in x.items() if torch.is_tensor(v)}
    dt = F.softplus(d["dt"] + d["delta_bias"][:, None])
    h = torch.zeros(2, 8, 4, dtype=torch.float64)
    for t in range(37):
        h = torch.exp(dt[:, :, t, None] * d["A"]) * h + dt[:, :, t, None] * d["B"][:, None, :, t] * d["hidden_states"][:, :, t, None]
        y = (h * d["C"][:, None, :, t]).sum(-1) + d["D"] * d["hidden_states"][:, :, t]
        torch.testing.assert_close(out[:, :, t].double(), y * F.silu(d["z"][:, :, t]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(last.double(), h, rtol=1e-5, atol=1e-6)


def test_load_installs_the_chunked_scan_for_jamba_only_and_outputs_do_not_change(reference_scan, scan_calls):
    import mechhybrid
    from transformers.models.jamba import modeling_jamba

    from tests.conftest import build_tiny

    model = build_tiny("jamba").eval()
    ids = torch.randint(3, 60, (2, 40))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    mechhybrid.load(build_tiny("qwen2"))
    assert modeling_jamba.mamba_selective_scan is reference_scan
    mechhybrid.load(model)
    installed = modeling_jamba.mamba_selective_scan
    assert installed.mechhybrid_chunk_len == mamba1_scan.ANALYSIS_CHUNK
    mechhybrid.load(model)
    assert modeling_jamba.mamba_selective_scan is installed  # installed once, not wrapped twice
    scan_calls.clear()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, before)
    layers = model.config.layers_block_type.count("mamba")
    assert scan_calls == [mamba1_scan.ANALYSIS_CHUNK] * layers and layers > 0


def test_nothing_is_installed_where_mamba_ssm_is(reference_scan, monkeypatch):
    from transformers.models.jamba import modeling_jamba

    real_find_spec = mamba1_scan.importlib.util.find_spec
    monkeypatch.setattr(mamba1_scan.importlib.util, "find_spec",
                        lambda name, *a: object() if name == "mamba_ssm" else real_find_spec(name, *a))
    assert use_bounded_scan("jamba") is False
    assert modeling_jamba.mamba_selective_scan is reference_scan


def test_only_algorithms_the_reference_would_really_run_go_to_it(reference_scan, scan_calls, monkeypatch):
    """Jamba's config asks for the associative scan, which the reference ignores in eager mode: that call is
    ours. mambapy's parallel scan, asked for and installed, stays the reference's."""
    from transformers.models.jamba import modeling_jamba

    calls = []
    monkeypatch.setattr(modeling_jamba, "mamba_selective_scan", lambda *a, **k: calls.append(k) or "reference")
    x = _inputs()
    with training_scan("jamba"):
        modeling_jamba.mamba_selective_scan(**x, use_mambapy=False, use_associative_scan=True)
        assert calls == [] and scan_calls == [None]
        real_find_spec = mamba1_scan.importlib.util.find_spec
        monkeypatch.setattr(mamba1_scan.importlib.util, "find_spec",
                            lambda name, *a: object() if name == "mambapy" else real_find_spec(name, *a))
        assert modeling_jamba.mamba_selective_scan(use_mambapy=True) == "reference"
    assert calls == [{"use_mambapy": True, "use_associative_scan": False}]


def test_training_patch_is_scoped_to_jamba_and_undone_on_error(reference_scan):
    from transformers.models.jamba import modeling_jamba

    with training_scan("qwen3_5"):
        assert modeling_jamba.mamba_selective_scan is reference_scan
    with pytest.raises(RuntimeError):
        with training_scan("jamba"):
            assert modeling_jamba.mamba_selective_scan.mechhybrid_chunk_len is None
            raise RuntimeError("interrupted step")
    assert modeling_jamba.mamba_selective_scan is reference_scan


def _grads_of_inputs(x, chunk_len, weights, names=None):
    """Gradients of a weighted sum of the scan's outputs and last state w.r.t. the tensor inputs `names` (None:
    every one; the others need none)."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in x.items()
              if torch.is_tensor(v) and (names is None or k in names)}
    out, last = selective_scan(**{**x, **leaves}, chunk_len=chunk_len)
    ((out * weights[0]).sum() + (last * weights[1]).sum()).backward()
    return out.detach(), last.detach(), {k: v.grad for k, v in leaves.items()}


def _weights(x):
    """Seeded weights for the scan's outputs `[batch, channel, seq]` and last state `[batch, channel, state]`."""
    g = torch.Generator().manual_seed(1)
    return (torch.randn(x["z"].shape, generator=g), torch.randn(x["z"].shape[0], *x["A"].shape, generator=g))


@pytest.mark.parametrize("shape", [dict(), dict(batch=3, channels=16, state=16, seq=70),
                                   dict(batch=1, channels=3, state=5, seq=1)])
@pytest.mark.parametrize("chunk_len", [1, 5, 16])
def test_analysis_backward_equals_autograd_through_the_reference_loop(reference_scan, shape, chunk_len):
    """The hand-written backward (chunked scan, grad on) against autograd through the unchunked loop; its forward
    stays bitwise the reference's."""
    x = _inputs(**shape)
    weights = _weights(x)
    ref_out, ref_last, ref_grads = _grads_of_inputs(x, None, weights)
    with torch.no_grad():
        assert torch.equal(ref_out, reference_scan(**x)[0])
    out, last, grads = _grads_of_inputs(x, chunk_len, weights)
    assert torch.equal(out, ref_out) and torch.equal(last, ref_last)
    assert grads.keys() == ref_grads.keys() == {"hidden_states", "dt", "A", "B", "C", "D", "z", "delta_bias"}
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-5, atol=1e-5, msg=name)


def test_analysis_backward_passes_float64_gradcheck():
    """Against finite differences (an independent reference), outputs and last state both differentiated. Only dt,
    A and C: the reference casts x and B to fp32 (`.float()`), so finite differences in them measure rounding (their
    gradients are checked against autograd above)."""
    x = {k: (v.double() if torch.is_tensor(v) else v) for k, v in _inputs(batch=2, channels=3, state=2, seq=7).items()}
    names = ("dt", "A", "C")

    def scan(*tensors):
        return selective_scan(**{**x, **dict(zip(names, tensors))}, chunk_len=3)

    inputs = tuple(x[n].detach().clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(scan, inputs, eps=1e-6, atol=1e-7)


def test_analysis_backward_is_the_one_taken_with_grad_only(monkeypatch):
    calls = []
    real = mamba1_scan._ScanWithBackward.apply
    monkeypatch.setattr(mamba1_scan._ScanWithBackward, "apply", lambda *a: calls.append(a[-1]) or real(*a))
    x = _inputs()
    with torch.no_grad():
        selective_scan(**x, chunk_len=16)
    selective_scan(**x, chunk_len=16)  # grad on, but nothing requires it
    assert calls == []
    selective_scan(**{**x, "dt": x["dt"].requires_grad_(True)}, chunk_len=16)
    selective_scan(**{**x, "dt": x["dt"].requires_grad_(True)}, chunk_len=None)  # training keeps autograd's loop
    assert calls == [16]


def test_analysis_backward_with_a_frozen_A(reference_scan):
    """Edge attribution freezes the weights: A (from A_log) needs no gradient and gets none; the rest still equal
    autograd's."""
    x = _inputs(batch=2, channels=8, state=4, seq=21)
    names = ("hidden_states", "dt", "B", "C")
    *_, ours = _grads_of_inputs(x, 4, _weights(x), names)
    *_, reference = _grads_of_inputs(x, None, _weights(x), names)
    assert ours.keys() == reference.keys() == set(names)
    for name in reference:
        torch.testing.assert_close(ours[name], reference[name], rtol=1e-5, atol=1e-5, msg=name)
    assert not x["A"].requires_grad
