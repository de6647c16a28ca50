"""The nodes of an edge-level circuit and how they are wired: who writes into the residual stream that whom reads.

Senders write into the residual stream, in residual units (`mechhybrid.components.to_residual_units`):

- `embed`: the residual stream the first layer receives (`Residual(0, "pre")`: the token embeddings after any
  multiplier the family applies);
- a component without heads (MLP / MoE, Mamba-1, RG-LRU, LFM2's convolution): its output times its residual scale;
- each head of a component with heads (attention, Gated DeltaNet, Mamba-2): the head's slice of the output
  projection's input through its columns of that projection, times the residual scale (the heads of a component
  sum to its output less the projection's bias, which is the same in every run and cancels in every difference).

Receivers read the residual stream: each component reads `in_scale * norm(residual)` (the residual before its
norm: `norm` is the module of its decoder layer whose output it reads, `in_scale` the factor the layer applies
after that norm, falcon_h1's `attention_in_multiplier`), and the logits read the final norm's input. A receiver's
input is replaced per receiver (`receiver input + delta`, the norm recomputed for that receiver alone), so the
two branches of a parallel block (falcon_h1: attention and Mamba read one normed residual) are separate
receivers, and the heads of every mixer separate senders.

Edge u -> v exists where u's value is added to the residual stream before v's norm reads it (the model's own
execution order): in a parallel block neither branch feeds the other.

`discover(hm)` finds the norms and scales once per model with one probe forward and checks them: a component
whose input is not a multiple of the output of a norm in its layer, or that does not write to the residual
stream (zamba2's shared block), is refused in one line.

Axis names: `batch`, `seq`, `d_model`, `head`, `head_dim`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mechhybrid import hook_io
from mechhybrid.components import Component
from mechhybrid.errors import MechHybridError, UnsupportedFamilyError

__all__ = ["Sender", "Receiver", "Wiring", "discover", "LOGITS", "EMBED"]

EMBED = "embed"
"""The embedding sender's name."""
LOGITS = "logits"
"""The logits receiver's name."""


@dataclass(frozen=True)
class Sender:
    """One writer into the residual stream."""

    name: str
    kind: str
    """`embedding`, or the component's kind (a head carries its component's kind)."""
    layer: int
    """-1 for the embedding."""
    point: tuple[str, str]
    """(module path, "in" | "out"): the tensor the value is computed from."""
    component: Component | None = None
    head: int | None = None


@dataclass(frozen=True)
class Receiver:
    """One reader of the residual stream."""

    name: str
    kind: str
    """The component's kind, or `logits`."""
    layer: int
    """`n_layers` for the logits."""
    norm: str
    """Path of the module whose input is the residual this receiver reads (the final norm for the logits)."""
    in_scale: float = 1.0
    component: Component | None = None


@dataclass(frozen=True)
class Wiring:
    """Senders, receivers and which edges exist."""

    senders: tuple[Sender, ...]
    receivers: tuple[Receiver, ...]
    valid: torch.Tensor
    """`[sender, receiver]` bool: whether the edge exists."""

    @property
    def n_edges(self) -> int:
        return int(self.valid.sum())

    def edges(self) -> list[tuple[int, int]]:
        """(sender index, receiver index) of every edge, sender-major."""
        return [tuple(e) for e in self.valid.nonzero().tolist()]


def _head_senders(hm, component: Component) -> list[Sender]:
    return [Sender(f"{component.name}.h{h}", component.kind, component.layer, (component.out_proj, "in"),
                   component, h) for h in range(component.n_heads)]


def _senders(hm) -> list[Sender]:
    out = [Sender(EMBED, "embedding", -1, (f"{hm.family_spec.layers}.0", "in"))]
    for c in hm.components:
        if c.n_heads:
            out += _head_senders(hm, c)
        else:
            out.append(Sender(c.name, c.kind, c.layer, (c.path, "out"), c))
    return out


def _norm_candidates(hm, component: Component) -> list[str]:
    """Paths of the norm modules of the component's layer that run before it (outside every component)."""
    inside = [c.path + "." for c in hm.components]
    before = hm.execution_index((component.path, "in"))
    found = []
    for name, module in hm.module(component.layer_path).named_modules(prefix=component.layer_path):
        if "norm" not in type(module).__name__.lower() or any(name.startswith(p) for p in inside):
            continue
        try:
            if hm.execution_index((name, "in")) < before:
                found.append(name)
        except MechHybridError:  # a norm the forward never calls
            continue
    return sorted(found, key=lambda n: hm.execution_index((n, "in")))


def _probe(hm, paths: list[str], inputs: list[str]) -> dict:
    """One forward of a few tokens: the output of every module in `paths`, the input of every one in `inputs`."""

    seen: dict = {}

    def keep(key, tensor) -> None:  # a hook that returns None changes nothing
        seen.setdefault(key, tensor.detach())

    handles = []
    for path in paths:
        handles.append(hm.module(path).register_forward_hook(
            lambda m, a, o, path=path: keep((path, "out"), hook_io.first(o))))
    for path in inputs:
        handles.append(hm.module(path).register_forward_pre_hook(
            lambda m, a, k, path=path: keep((path, "in"), hook_io.input_of(a, k)), with_kwargs=True))
    ids = torch.arange(5, dtype=torch.long)[None] % hm.vocab_size + 1
    try:
        with torch.no_grad():
            hm.hf_model(ids.to(hm.device))
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _receivers(hm) -> list[Receiver]:
    for c in hm.components:
        if not c.writes_residual:
            raise UnsupportedFamilyError(
                f"{hm.family}: {c.name} writes to {c.writes_to}, not to the residual stream; edge circuits need "
                "every component to read and write the residual stream"
            )
    norms = {c: _norm_candidates(hm, c) for c in hm.components}
    seen = _probe(hm, sorted({n for ns in norms.values() for n in ns}), [c.path for c in hm.components])
    out = []
    for c in hm.components:
        x = seen[(c.path, "in")].float()
        for norm in reversed(norms[c]):  # the latest norm before the component is the one it reads
            n = seen[(norm, "out")].float()
            if n.shape != x.shape:
                continue
            scale = float((x * n).sum() / (n * n).sum())
            scale = 1.0 if abs(scale - 1.0) < 1e-5 else scale  # a measured 1 is the identity, not 1 +- rounding
            if torch.allclose(x, scale * n, rtol=1e-4, atol=1e-5 * float(x.abs().max())):
                out.append(Receiver(c.name, c.kind, c.layer, norm, scale, c))
                break
        else:
            raise UnsupportedFamilyError(
                f"{hm.family}: {c.name}'s input is not a multiple of the output of a norm in its layer "
                f"(candidates: {', '.join(norms[c]) or 'none'}); edge circuits cannot find the residual it reads"
            )
    out.append(Receiver(LOGITS, "logits", hm.n_layers, hm.family_spec.final_norm))
    return out


def _written_at(hm, sender: Sender) -> int:
    if sender.component is None:
        return -1
    return hm.execution_index((sender.component.path, "out"))


def discover(hm) -> Wiring:
    """The model's senders, receivers and edges (the module docstring)."""
    senders, receivers = _senders(hm), _receivers(hm)
    valid = torch.zeros(len(senders), len(receivers), dtype=torch.bool)
    for j, r in enumerate(receivers):
        reads_at = hm.execution_index((r.norm, "in"))
        for i, s in enumerate(senders):
            valid[i, j] = r.name == LOGITS or _written_at(hm, s) < reads_at
    return Wiring(tuple(senders), tuple(receivers), valid)
