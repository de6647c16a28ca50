"""A gradient-enabled run path: one forward of the base prompts with autograd on, and the gradient of a metric
with respect to the values at chosen hook points and to the recurrent states carried after chosen tokens.

Every other forward in mechhybrid runs under `no_grad`; nothing here changes them. Where a site's value flows
(a module's input or output, `mechhybrid.tracing.sites`), a zero tensor that requires grad is added to it, and
the gradient with respect to that zero tensor is the gradient with respect to the value, whatever the model
does with it afterwards (transformer-lens's trap, `retain_grad` on a reshaped hook output, silently yields
nothing: the reshaped copy is not what flows on). A module called several times in one forward (zamba2's shared
block) gets one zero tensor per call. Only these tensors are asked for: no weight gradient is formed.

States: the prompts run through the model's own cache in segments that end right after every token whose state
is wanted (one token at a time after the first segment where the family's cache continues exactly only so,
`mechhybrid.state.runner.segments`); at each boundary the cached state becomes `state + zero`, with the zero
tensor requiring grad, and the rest of the prompt is computed from it. The model updates its cache in place
(`copy_`), which autograd refuses for a tensor it saved; the tensors that share a cached state's storage are
therefore saved as copies (`saved_tensors_hooks`), and only those.

`dropped_layer`: AtP*'s GradDrop (Kramar et al. 2024, sec. 3.2). Each decoder layer's output becomes
`input + gate(output - input)`, the same value, where `gate` passes the gradient except while its layer is the
one `switch.layer` names: the gradient then reaches the layer's input only through the skip connection.

Axis names: `batch`, `seq`, `width` (a hook point's last axis), `read`, `vocab`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from mechhybrid import hook_io
from mechhybrid.state import cache as cache_ops
from mechhybrid.state.runner import segments
from mechhybrid.tracing.fast import forward, hooked

__all__ = ["Taps", "Switch", "tapped", "dropped_layer", "forward_reads", "state_forward", "gradients"]


@dataclass
class Taps:
    """What the hook points saw in one forward: per point, one entry per call of its module."""

    values: dict = field(default_factory=dict)
    """(path, "in" | "out") -> list of `[batch, seq, width]` values (detached), one per call."""
    deltas: dict = field(default_factory=dict)
    """(path, "in" | "out") -> list of the zero tensors added to them (requires_grad; None when not taken)."""
    states: dict = field(default_factory=dict)
    """(layer, position, "recurrent" | "conv") -> the cached state right after `position` (detached)."""
    state_deltas: dict = field(default_factory=dict)
    """(layer, position, "recurrent" | "conv") -> the zero tensor added to it."""

    def leaves(self) -> list:
        out = [d for ds in self.deltas.values() for d in ds if d is not None]
        return out + list(self.state_deltas.values())


@contextmanager
def tapped(hm, points, taps: Taps, grad: bool = True, mix: dict | None = None):
    """Record the value at every point (every call) and, with `grad`, add a zero tensor requiring grad to it.
    `mix[point](tensor, call)` first replaces the value (the integrated-gradients path)."""
    mix = mix or {}
    calls = {p: 0 for p in set(points) | set(mix)}

    def make(point):
        def fn(tensor):
            if point in mix:
                tensor = mix[point](tensor, calls[point])
            calls[point] += 1
            if point in points:
                taps.values.setdefault(point, []).append(tensor.detach().clone())
                delta = torch.zeros_like(tensor, requires_grad=True) if grad else None
                taps.deltas.setdefault(point, []).append(delta)
                if delta is not None:
                    tensor = tensor + delta
            return tensor if point in mix or grad else None

        return fn

    with hooked(hm, {p: make(p) for p in calls}):
        yield


@dataclass
class Switch:
    """Which decoder layer's gradient the GradDrop gates stop (None: none)."""

    layer: int | None = None


class _Gate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, layer, switch):
        ctx.layer, ctx.switch = layer, switch
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return (torch.zeros_like(grad) if ctx.switch.layer == ctx.layer else grad), None, None


@contextmanager
def dropped_layer(hm, switch: Switch):
    """Route each decoder layer's contribution (output - input) through a GradDrop gate (module docstring)."""
    handles = []
    try:
        for index, layer in enumerate(hm.module(hm.family_spec.layers)):
            def gate(module, args, kwargs, output, index=index):
                before = hook_io.input_of(args, kwargs)
                after = output[0] if isinstance(output, (tuple, list)) else output
                return hook_io.replace_output(output, before + _Gate.apply(after - before, index, switch))

            handles.append(layer.register_forward_hook(gate, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _read(hm, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`[batch, read, vocab]` float32 logits at `positions` (`[batch, read]`), differentiable."""
    index = positions.to(hidden.device)[..., None].expand(-1, -1, hidden.shape[-1])
    return hm.unembed(torch.gather(hidden, 1, index)).float()


def forward_reads(hm, ids: torch.Tensor, positions: torch.Tensor, points, grad: bool = True, mix=None):
    """One forward of right-padded `ids` without a cache: (`[batch, read, vocab]` logits at `positions`, Taps)."""
    taps = Taps()
    with torch.set_grad_enabled(grad), tapped(hm, set(points), taps, grad, mix):
        hidden = forward(hm, ids, use_cache=False)
        return _read(hm, hidden, positions), taps


def _state_slots(hm, cache, layer: int) -> dict:
    """"recurrent" / "conv" -> (holder, key) of the layer's live state tensors in `cache`."""
    rec, conv = cache_ops.slots(hm, cache, layer)
    return {"recurrent": rec, "conv": conv}


def _get(slot):
    holder, key = slot
    return holder[key] if isinstance(holder, dict) else getattr(holder, key)


def _set(slot, value) -> None:
    holder, key = slot
    if isinstance(holder, dict):
        holder[key] = value
    else:
        setattr(holder, key, value)


def _storages(hm, cache, layers) -> set:
    out = set()
    for layer in layers:
        for slot in _state_slots(hm, cache, layer).values():
            tensor = _get(slot)
            if isinstance(tensor, torch.Tensor):
                out.add(tensor.untyped_storage().data_ptr())
    return out


def state_forward(hm, ids, positions, layers, reads: torch.Tensor, grad: bool = True, mix=None):
    """The prompts through the cache in segments ending after each of `positions` (absolute, shared by the
    rows), with `state + zero` written back for every layer in `layers` there; (`[batch, read, vocab]` logits at
    `reads`, Taps with the states and their zero tensors)."""
    ids = ids.to(hm.device)
    batch, seq = ids.shape
    taps, cache, boundaries = Taps(), cache_ops.new_cache(hm, batch), set(positions)
    watched: set = set()

    def pack(tensor):  # the model overwrites its cached state in place after reading it
        return tensor.clone() if tensor.untyped_storage().data_ptr() in watched else tensor

    hidden = []
    with torch.set_grad_enabled(grad), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            tapped(hm, (), taps, False, mix):
        for a, b in segments(hm, 0, seq, boundaries, fresh=True):
            watched.clear()
            watched.update(_storages(hm, cache, layers) if a > 0 else ())
            kwargs = cache_ops.forward_kwargs(hm, cache, a, b, batch)
            hidden.append(forward(hm, ids[:, a:b], **kwargs))
            if b - 1 in boundaries:
                _mark_states(hm, cache, layers, b - 1, taps, grad)
        return _read(hm, torch.cat(hidden, dim=1), reads), taps


def _mark_states(hm, cache, layers, position: int, taps: Taps, grad: bool) -> None:
    for layer in layers:
        for name, slot in _state_slots(hm, cache, layer).items():
            tensor = _get(slot)
            if tensor is None:
                continue
            taps.states[(layer, position, name)] = tensor.detach().clone()
            if grad:
                delta = torch.zeros_like(tensor, requires_grad=True)
                taps.state_deltas[(layer, position, name)] = delta
                _set(slot, tensor + delta)


def gradients(value: torch.Tensor, leaves: list, retain: bool = False) -> list:
    """d value / d leaf for each leaf (zeros where the value does not depend on it)."""
    grads = torch.autograd.grad(value, leaves, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, grads)]
