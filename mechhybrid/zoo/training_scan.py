"""A training-only selective scan for Mamba-1 mixers (Jamba), so that the zoo can train one on a CPU.

Without the mamba_ssm kernels transformers runs Mamba-1's scan as a loop over positions that indexes one
position of the full discretised tensors at a time. The forward is cheap, but autograd turns every such
index into a full-size zero tensor plus a full-size add in the backward, so a step's cost grows with the
square of the document length. Measured 2026-11-29 (1 thread, zoo Jamba, forward + backward): 8 x 256 tokens
took 4.7 s on the reference path and 0.64 s with this scan; one recipe step (16 documents, 1,278 tokens) 2.6 s
against 0.69 s, so the 5,000-step recipe takes about an hour instead of about four.

`selective_scan` runs the same operations in the same order, so its forward is bitwise the reference's
(tests/zoo/test_training_scan.py); it only takes each position's slice with `unbind`, whose backward is one
stack. It is used while `mechhybrid zoo train` runs (`training_scan`) and never at analysis time: the
trained weights are a plain Jamba checkpoint that any transformers install loads.
"""

from __future__ import annotations

import contextlib

__all__ = ["selective_scan", "training_scan"]


def selective_scan(hidden_states, dt, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, **_unused):
    """transformers' Mamba-1 reference scan (same arguments, same result), with an O(L) backward.

    Axis names: hidden_states, dt, z [batch, channel, seq]; A [channel, state]; B, C [batch, state, seq].
    """
    import torch
    import torch.nn.functional as F

    batch, channels, _ = hidden_states.shape
    input_dtype = hidden_states.dtype
    if delta_bias is not None:
        dt = dt + delta_bias.to(dt.dtype)[..., None]
    if delta_softplus:
        dt = F.softplus(dt)
    B, C = B.transpose(1, 2), C.transpose(1, 2)  # [batch, seq, state]
    decay = torch.exp(A[None, :, None, :] * dt[:, :, :, None])  # [batch, channel, seq, state]
    drive = dt[:, :, :, None] * B[:, None, :, :].float() * hidden_states[:, :, :, None].float()

    state = torch.zeros(batch, channels, A.shape[-1], dtype=input_dtype, device=hidden_states.device)
    outputs = []
    for decay_t, drive_t, c_t in zip(decay.unbind(2), drive.unbind(2), C.unbind(1)):
        state = decay_t * state + drive_t
        outputs.append(torch.matmul(state.to(input_dtype), c_t.unsqueeze(-1))[:, :, 0])
    out = torch.stack(outputs, dim=-1)
    if D is not None:
        out = out + hidden_states * D[None, :, None]
    if z is not None:
        out = out * F.silu(z)
    return (out, state) if return_last_state else out


@contextlib.contextmanager
def training_scan(family: str):
    """While active, Jamba's Mamba-1 mixers use `selective_scan`; other families are left as they are."""
    if family != "jamba":
        yield
        return
    from transformers.models.jamba import modeling_jamba

    original = modeling_jamba.mamba_selective_scan
    modeling_jamba.mamba_selective_scan = selective_scan
    try:
        yield
    finally:
        modeling_jamba.mamba_selective_scan = original
