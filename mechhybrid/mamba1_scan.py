"""Mamba-1's selective scan (Jamba) on a CPU: transformers' reference scan, bit for bit, at a fraction of its cost.

Without the mamba_ssm kernels transformers runs Mamba-1's scan as a loop over positions over discretised
tensors of size [batch, channel, seq, state], built whole. Two costs follow, both avoidable without changing
a single bit of the result:

- Analysis (forward only): the whole-sequence tensors are too big for the allocator to reuse, so each forward
  pays fresh page faults for them, and each step reads a strided slice. Measured 2026-11-29 (1 thread, one
  layer, 32 x 512 tokens, 256 channels, 16 states): 0.79-1.05 s on the reference path (0.44-0.65 s of it
  system time); 0.29 s over position-major chunks of 16 positions. The zoo Jamba's whole forward: 3.0 -> 1.7 s
  at 32 x 512 tokens, 3.0 -> 1.3 s at 64 x 256.
- Training (backward): the loop indexes one position of the whole tensors at a time, and autograd turns every
  such index into a full-size zero tensor plus a full-size add, so a step costs the square of the length.
  Taking the slices with `unbind` (whose backward is one stack) instead: one zoo step (16 documents, 1,278
  tokens) took 0.69 s against 2.6 s, and 8 x 256 tokens forward + backward 0.64 s against 4.7 s.
- Analysis gradients (attribution, edge attribution): the chunked scan has a hand-written backward
  (`_ScanWithBackward`, one reverse recurrence, then whole-chunk gradients) instead of autograd's replay of the
  position loop; same gradients to fp32 rounding (tests/core/test_mamba1_scan.py, and float64 gradcheck).

`selective_scan` runs the reference's operations in the reference's order on each element, so its outputs
and final state are bitwise the reference's (tests/core/test_mamba1_scan.py). `mechhybrid.load` installs the
chunked forward for the families in BOUNDED_SCANS when mamba_ssm is not installed; zoo training uses the
unchunked form (`training_scan`), with which the shipped Jamba was trained, so that its loss curve reproduces.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["selective_scan", "training_scan", "use_bounded_scan", "BOUNDED_SCANS", "ANALYSIS_CHUNK"]

BOUNDED_SCANS = {"jamba": "transformers.models.jamba.modeling_jamba"}
"""Family -> the transformers module whose `mamba_selective_scan` is replaced (Mamba-1 reference scans)."""
ANALYSIS_CHUNK = 16
"""Positions per chunk at analysis time: [16, batch, channel, state] float32 tensors (17 MB at batch 64, 256
channels, 16 states) stay under glibc's 32 MB mmap ceiling, so freed chunks are reused instead of being
faulted in afresh."""


def selective_scan(hidden_states, dt, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, chunk_len: int | None = None, **_unused):
    """transformers' Mamba-1 reference scan (same arguments, same result); `chunk_len` positions of the
    discretised tensors exist at a time (None: the whole sequence, as in training).

    Axis names: hidden_states, dt, z [batch, channel, seq]; A [channel, state]; B, C [batch, state, seq].
    """
    batch, channels, _ = hidden_states.shape
    if delta_bias is not None:
        dt = dt + delta_bias.to(dt.dtype)[..., None]
    if delta_softplus:
        dt = F.softplus(dt)
    B, C = B.transpose(1, 2), C.transpose(1, 2)  # [batch, seq, state]
    if chunk_len is not None and _wants_scan_backward(hidden_states, dt, A, B, C):
        out, state = _ScanWithBackward.apply(hidden_states, dt, A, B, C, chunk_len)
    else:
        steps = (_whole_sequence_steps(hidden_states, dt, A, B, C) if chunk_len is None
                 else _chunked_steps(hidden_states, dt, A, B, C, chunk_len))
        out, state = _recur(steps, hidden_states.new_zeros(batch, channels, A.shape[-1]))
    if D is not None:
        out = out + hidden_states * D[None, :, None]
    if z is not None:
        out = out * F.silu(z)
    return (out, state) if return_last_state else out


def _recur(steps, state, states=None):
    """The reference's recurrence over (decay, drive, C) steps from `state`: outputs [batch, channel, seq] and the
    last state; each state also written to `states[t]` when given."""
    output_dtype = state.dtype  # the input's: the state is promoted to fp32 by the first step, outputs are not
    outputs = []
    for t, (decay_t, drive_t, c_t) in enumerate(steps):
        state = decay_t * state + drive_t
        if states is not None:
            states[t] = state
        outputs.append(torch.matmul(state.to(output_dtype), c_t.unsqueeze(-1))[:, :, 0])
    return torch.stack(outputs, dim=-1), state


def _wants_scan_backward(hidden_states, dt, A, B, C) -> bool:
    """Whether the analysis scan takes `_ScanWithBackward`: a gradient is wanted and every input has one float
    dtype (fp32 or fp64), so that the reference's dtype casts are all no-ops."""
    tensors = (hidden_states, dt, A, B, C)
    return (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
            and len({t.dtype for t in tensors}) == 1 and hidden_states.dtype in (torch.float32, torch.float64))


class _ScanWithBackward(torch.autograd.Function):
    """The chunked scan with a hand-written backward: autograd through the position loop records several small
    operations per position and layer and replays each. Here the backward runs one reverse recurrence for the
    state's gradient (two operations a position) and computes every input's gradient from it per chunk, in
    whole-chunk tensor operations (zoo Jamba, 8 x 32 tokens, one thread: forward + backward 1.75-1.78 plain
    forwards against 1.89-2.18 through autograd, measured in the same runs).

    Forward: bitwise `_chunked_steps` + `_recur` (the same operations in the same order), keeping every state
    ([seq, batch, channel, state]: what autograd would keep for the loop's multiplications). Backward, with
    h_t = exp(A dt_t) h_{t-1} + dt_t x_t B_t and y_t = h_t C_t, G_t = dL/dh_t (through y_t and h_{t+1}):
    G_t = gy_t C_t + exp(A dt_{t+1}) G_{t+1}; dC_t = sum_channel gy_t h_t; d(A dt_t) = G_t h_{t-1} exp(A dt_t);
    the drive's gradient G_t goes to dt, x and B by the product rule.
    """

    @staticmethod
    def forward(ctx, hidden_states, dt, A, B, C, chunk_len):
        batch, channels, seq_len = hidden_states.shape
        states = hidden_states.new_empty(seq_len, batch, channels, A.shape[-1])
        out, state = _recur(_chunked_steps(hidden_states, dt, A, B, C, chunk_len),
                            hidden_states.new_zeros(batch, channels, A.shape[-1]), states)
        ctx.save_for_backward(hidden_states, dt, A, B, C, states)
        ctx.chunk_len = chunk_len
        return out, state

    @staticmethod
    @once_differentiable  # a second derivative through it raises instead of being silently wrong
    def backward(ctx, grad_out, grad_last):
        x, dt, A, B, C, states = ctx.saved_tensors
        seq_len = x.shape[-1]
        grad_state = torch.zeros_like(states[0]) if grad_last is None else grad_last.clone()
        if grad_out is None:
            grad_out = torch.zeros_like(x)
        grad_x, grad_dt = torch.empty_like(x), torch.empty_like(dt)
        grad_A, grad_B, grad_C = torch.zeros_like(A), torch.empty_like(B), torch.empty_like(C)
        for end in range(seq_len, 0, -ctx.chunk_len):
            start = max(0, end - ctx.chunk_len)
            span = slice(start, end)
            dt_s = dt[:, :, span].permute(2, 0, 1)  # [n, batch, channel]
            x_s = x[:, :, span].permute(2, 0, 1)
            gy = grad_out[:, :, span].permute(2, 0, 1)
            b_s, c_s = B[:, span].transpose(0, 1), C[:, span].transpose(0, 1)  # [n, batch, state]
            decay = torch.exp(A * dt_s[..., None])  # [n, batch, channel, state]
            grads = torch.empty_like(decay)
            for j in range(end - start - 1, -1, -1):
                torch.addcmul(grad_state, gy[j, :, :, None], c_s[j, :, None, :], out=grads[j])
                grad_state = grads[j] * decay[j]
            h = states[span]
            h_prev = states[start - 1:end - 1] if start > 0 else torch.cat([torch.zeros_like(h[:1]), h[:-1]])
            # Batched matmuls over (position, batch) in the tensors' own layout: einsum would permute copies.
            grad_C[:, span] = torch.matmul(gy[:, :, None, :], h)[:, :, 0].transpose(0, 1)
            grad_exponent = grads * h_prev * decay
            if ctx.needs_input_grad[2]:  # A: not with frozen weights (edge attribution), which skips a pass
                grad_A += (grad_exponent * dt_s[..., None]).sum((0, 1))
            grad_drive_b = torch.matmul(grads, b_s[..., None])[..., 0]  # [n, batch, channel]
            grad_dt[:, :, span] = ((grad_exponent * A).sum(-1) + x_s * grad_drive_b).permute(1, 2, 0)
            grad_x[:, :, span] = (dt_s * grad_drive_b).permute(1, 2, 0)
            grad_B[:, span] = torch.matmul((dt_s * x_s)[:, :, None, :], grads)[:, :, 0].transpose(0, 1)
        return grad_x, grad_dt, grad_A if ctx.needs_input_grad[2] else None, grad_B, grad_C, None


def _whole_sequence_steps(hidden_states, dt, A, B, C):
    """(decay, drive, C) per position from [batch, channel, seq, state] tensors: the reference's layout, kept
    for training because the shipped Jamba was trained with it (another layout sums gradients in another order,
    and the loss curve would differ in the eighth digit)."""
    decay = torch.exp(A[None, :, None, :] * dt[:, :, :, None])
    drive = dt[:, :, :, None] * B[:, None, :, :].float() * hidden_states[:, :, :, None].float()
    return zip(decay.unbind(2), drive.unbind(2), C.unbind(1))


def _chunked_steps(hidden_states, dt, A, B, C, chunk_len: int):
    """The same per position, built `chunk_len` positions at a time as position-major [chunk, batch, channel,
    state] tensors, so that each step reads contiguous memory (1.5x faster than the reference's layout)."""
    for start in range(0, hidden_states.shape[-1], chunk_len):
        span = slice(start, start + chunk_len)
        dt_span = dt[:, :, span].permute(2, 0, 1).contiguous()
        decay = torch.exp(A[None, None] * dt_span[..., None])
        drive = (dt_span[..., None] * B[:, span].transpose(0, 1)[:, :, None, :].float()
                 * hidden_states[:, :, span].permute(2, 0, 1)[..., None].float())
        yield from zip(decay.unbind(0), drive.unbind(0), C[:, span].unbind(1))


def _other_algorithm(use_mambapy: bool, use_associative_scan: bool) -> bool:
    """Whether the reference would run something other than its recurrent loop: mambapy's parallel scan (when
    asked for and installed) or torch's associative scan (when asked for, under torch.compile). Jamba's config
    asks for the associative scan by default, which eager mode ignores."""
    if use_mambapy and importlib.util.find_spec("mambapy") is not None:
        return True
    return bool(use_associative_scan) and torch.compiler.is_compiling()


def _recurrent_unless_asked_otherwise(original, chunk_len):
    """`selective_scan` with `chunk_len` wherever the reference would run its recurrent loop; the original
    wherever it would run another algorithm."""

    @functools.wraps(original)
    def scan(*args, use_mambapy=False, use_associative_scan=False, **kwargs):
        if _other_algorithm(use_mambapy, use_associative_scan):
            return original(*args, use_mambapy=use_mambapy, use_associative_scan=use_associative_scan, **kwargs)
        return selective_scan(*args, chunk_len=chunk_len, **kwargs)

    scan.mechhybrid_chunk_len = chunk_len
    return scan


def use_bounded_scan(family: str) -> bool:
    """Install the chunked scan for `family`'s models in this process (idempotent); False where the family has
    no Mamba-1 reference scan or mamba_ssm's kernels are installed (transformers then uses those)."""
    if family not in BOUNDED_SCANS or importlib.util.find_spec("mamba_ssm") is not None:
        return False
    module = importlib.import_module(BOUNDED_SCANS[family])
    if not hasattr(module.mamba_selective_scan, "mechhybrid_chunk_len"):  # not already one of ours
        module.mamba_selective_scan = _recurrent_unless_asked_otherwise(module.mamba_selective_scan, ANALYSIS_CHUNK)
    return True


@contextlib.contextmanager
def training_scan(family: str):
    """While active, `family`'s Mamba-1 mixers use the unchunked `selective_scan`; other families are left as
    they are."""
    if family not in BOUNDED_SCANS:
        yield
        return
    module = importlib.import_module(BOUNDED_SCANS[family])
    original = module.mamba_selective_scan
    module.mamba_selective_scan = _recurrent_unless_asked_otherwise(original, None)
    try:
        yield
    finally:
        module.mamba_selective_scan = original
