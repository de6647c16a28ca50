"""One forward with edge hooks: every sender's value recorded as it is written, every receiver's input replaced.

`edge_forward(hm, wiring, ids, reads, on_senders, receiver_delta)` runs `ids` (right-padded, no cache) with plain
torch hooks:

- at each sender's point, the tensor there (detached: nothing differentiates through a sender's value) is handed
  to `on_senders(indices, tensor)` with the indices of the senders read from it (every head of a component at
  once; `on_senders=None`: none, a gradient-only run). `sender_values(hm, wiring, indices, tensor)` turns it into
  their values in residual units, `[sender, batch, seq, d_model]`; it is linear, so a difference of two runs'
  values is the values of their tensors' difference (one head projection instead of two);
- each receiver's residual (its norm's input, recorded as the norm runs) becomes `residual + delta`, with
  `delta = receiver_delta(j, residual)` (None: unchanged), and the receiver alone reads
  `in_scale * norm(residual + delta)`: where the norm's output is that receiver's input alone (the logits' final
  norm, any sequential layer), the delta is added to the norm's input and the model's own norm and scale run on
  it; where several receivers read one norm (parallel mixers), the norm's `forward` is recomputed for each,
  without hooks. The residual stream itself, and every other receiver, are untouched.

Returns `[batch, read, vocab]` float32 logits at `reads`. Autograd records whatever the hooks do when grad is on.
Chunked scans (Gated DeltaNet, Mamba-2) run with chunks fitted to the forward's length on the CPU
(`mechhybrid.tracing.fast.forward`): the zoo's 64-token chunk would make a 32-token forward pay for 64.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch

from mechhybrid import hook_io
from mechhybrid.circuits.wiring import LOGITS, Wiring
from mechhybrid.tracing.fast import forward

__all__ = ["edge_forward", "sender_values", "head_values", "embedding_path"]


def embedding_path(hm) -> str:
    """Path of the input embedding module (integrated gradients interpolate its output)."""
    from mechhybrid.tracing.sites import Embeddings, resolve

    return resolve(hm, Embeddings()).point[0]


def head_values(hm, component, x: torch.Tensor) -> torch.Tensor:
    """`[head, batch, seq, d_model]`: each head's slice of `x` (the output projection's input) through its columns
    of the projection, in residual units."""
    weight = hm.out_proj_weight(component)  # [d_model, head * head_dim]
    heads = component.n_heads
    w = weight.reshape(weight.shape[0], heads, -1).to(x.dtype)
    return torch.einsum("bphk,dhk->hbpd", x.reshape(*x.shape[:-1], heads, -1), w) * component.residual_scale


def _groups(wiring: Wiring) -> dict:
    """point -> indices of the senders whose values are computed there."""
    out: dict = {}
    for i, s in enumerate(wiring.senders):
        out.setdefault(s.point, []).append(i)
    return out


def sender_values(hm, wiring: Wiring, indices: list[int], tensor: torch.Tensor) -> torch.Tensor:
    """`[sender, batch, seq, d_model]` the values of the senders `indices` from the tensor at their point (a head:
    its slice through its columns of the output projection; any other sender: the tensor, times the component's
    residual scale)."""
    sender = wiring.senders[indices[0]]
    if sender.head is not None:
        return head_values(hm, sender.component, tensor)
    scale = 1.0 if sender.component is None else sender.component.residual_scale
    return (tensor * scale)[None]


def _register(hm, point, fn, replace: bool):
    path, io = point
    module = hm.module(path)
    if io == "in":
        def pre(m, args, kwargs):
            new = fn(hook_io.input_of(args, kwargs))
            return hook_io.replace_input(args, kwargs, new) if replace else None

        return module.register_forward_pre_hook(pre, with_kwargs=True)

    def post(m, args, output):
        fn(hook_io.first(output))
        return None

    return module.register_forward_hook(post)


@contextmanager
def _hooks(hm, wiring: Wiring, on_senders, receiver_delta):
    handles, residual = [], {}
    try:
        for point, indices in _groups(wiring).items() if on_senders is not None else ():
            handles.append(_register(hm, point, lambda t, indices=indices: on_senders(indices, t.detach()), False))
        readers = Counter(r.norm for r in wiring.receivers)
        for norm in {r.norm for r in wiring.receivers if readers[r.norm] > 1}:
            handles.append(_register(hm, (norm, "in"), lambda t, norm=norm: residual.__setitem__(norm, t), False))
        for j, r in enumerate(wiring.receivers):
            if readers[r.norm] == 1:  # the norm's output is this receiver's input alone: its delta goes in there
                def alone(t, j=j):
                    delta = receiver_delta(j, t)
                    return t if delta is None else t + delta
                handles.append(_register(hm, (r.norm, "in"), alone, replace=True))
                continue

            def read(x, j=j, r=r):
                base = residual[r.norm]
                delta = receiver_delta(j, base)
                if delta is None:
                    return x
                return hm.module(r.norm).forward(base + delta) * r.in_scale

            handles.append(_register(hm, (r.component.path, "in"), read, replace=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def edge_forward(hm, wiring: Wiring, ids: torch.Tensor, reads: torch.Tensor, on_senders, receiver_delta,
                 embed_mix=None) -> torch.Tensor:
    """The forward of the module docstring; `embed_mix(tensor) -> tensor` first replaces the token embeddings
    (the integrated-gradients path)."""
    extra = []
    if embed_mix is not None:
        module = hm.module(embedding_path(hm))
        mix = lambda m, a, o: hook_io.replace_output(o, embed_mix(hook_io.first(o)))
        extra.append(module.register_forward_hook(mix))
    try:
        with _hooks(hm, wiring, on_senders, receiver_delta):
            hidden = forward(hm, ids, use_cache=False)
    finally:
        for handle in extra:
            handle.remove()
    index = reads.to(hidden.device)[..., None].expand(-1, -1, hidden.shape[-1])
    return hm.unembed(torch.gather(hidden, 1, index)).float()
