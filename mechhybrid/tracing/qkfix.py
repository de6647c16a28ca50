"""AtP*'s QK fix (Kramar et al. 2024, sec. 3.1), for the sites where it is exact.

A first-order estimate linearises the attention softmax; where the base run's attention is saturated, its
gradient is near zero and a patch that moves the attention gets scored near zero (a false negative). AtP*
instead computes the attention probabilities under the patch exactly and linearises only what comes after them:
the term (patched probabilities - base probabilities) . d metric / d probabilities.

The patched probabilities are known exactly where the patch sets the attention's queries and keys exactly: a
residual site at the input of a decoder layer whose attention reads that input (through the layer's norm,
position by position: every family here but zamba2, whose shared attention also reads the embeddings), and the
embeddings when layer 0 has attention. Patching such a site at positions P makes the queries and keys at P the
source run's, and leaves the others. For those sites the correction added to the first-order estimate is

    sum over queries t and keys s of dM/dA[t, s] (A'[t, s] - A[t, s])
      - sum over p in P of (dM/dq_p . (q'_p - q_p) + dM/dk_p . (k'_p - k_p))

the exact softmax change in place of its first-order term in the queries and keys (the first-order term in the
residual itself differs from the second line by the layer norm's curvature, second order). Further attention
layers stay linearised; other sites get no correction (AtP*'s nodes are queries and keys themselves).

The attention runs, for these layers, through an eager attention registered with transformers'
`AttentionInterface` (as `mechhybrid.attention` does) that records q, k and the probabilities and adds a zero
tensor requiring grad to each; every other layer runs the model's own kernel.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from mechhybrid.attention.kernel import visibility
from mechhybrid.errors import MechHybridError

__all__ = ["QKPlan", "plan", "captured", "leaves", "correction"]

NAME = "mechhybrid_qkfix"
_ACTIVE: dict = {}
"""id(config) -> the capture in progress on a model with that config."""


@dataclass
class QKPlan:
    """Which attention layers the QK fix reads, which sites it corrects, and what the runs recorded."""

    layers: tuple[int, ...]
    sites: dict
    """Site name -> the layer whose queries and keys it sets exactly."""
    records: dict = field(default_factory=dict)
    """(role, track) -> layer -> Record."""


@dataclass
class Record:
    query: torch.Tensor
    """`[batch, head, seq, d]` (detached)."""
    key: torch.Tensor
    """`[batch, kv_head, seq, d]` (detached)."""
    visible: torch.Tensor
    """`bool[batch | 1, 1, seq, seq]`."""
    scaling: float
    deltas: tuple = ()
    """Zero tensors added to (query, key, probabilities), when gradients are taken."""


def plan(hm, groups) -> QKPlan | None:
    """The QK fix for these site groups (None when no site qualifies)."""
    attention = {c.layer for c in hm.components if c.kind == "attention" and c.writes_residual}
    layers_path = hm.family_spec.layers
    sites = {}
    for group in groups:
        for site in group:
            if site.point is None or site.point[1] != ("in" if site.name != "embed" else "out"):
                continue
            layer = 0 if site.name == "embed" else _layer_of(site.point[0], layers_path)
            if layer in attention:
                sites[site.name] = layer
    return QKPlan(tuple(sorted(set(sites.values()))), sites) if sites else None


def _layer_of(path: str, layers_path: str) -> int | None:
    prefix = layers_path + "."
    rest = path[len(prefix):] if path.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


@dataclass
class _Scope:
    plan: QKPlan
    key: tuple
    grad: bool
    inner: dict
    layer: int | None = None


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    scope = _ACTIVE[id(module.config)]
    name = scope.inner[id(module.config)]
    if scope.layer not in scope.plan.layers:
        inner = (getattr(sys.modules[type(module).__module__], "eager_attention_forward") if name == "eager"
                 else ALL_ATTENTION_FUNCTIONS[name])
        return inner(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    if any(kwargs.get(arg) is not None for arg in ("softcap", "s_aux", "position_bias")):
        raise MechHybridError("AtP*'s QK fix supports plain softmax attention (no softcap, sinks or biases)")
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    q_len, kv_len = query.shape[2], key.shape[2]
    visible = visibility(attention_mask, q_len, kv_len).to(query.device)
    deltas = ()
    if scope.grad:
        deltas = tuple(torch.zeros_like(t, requires_grad=True) for t in (query, key))
        query, key = query + deltas[0], key + deltas[1]
    probs = _probs(query, key, visible, scaling)
    if scope.grad:
        deltas += (torch.zeros_like(probs, requires_grad=True),)
        probs = probs + deltas[2]
    scope.plan.records.setdefault(scope.key, {})[scope.layer] = Record(
        query.detach().clone(), key.detach().clone(), visible, scaling, deltas)
    groups = query.shape[1] // value.shape[1]
    values = value.repeat_interleave(groups, dim=1) if groups > 1 else value
    return torch.matmul(probs.to(values.dtype), values).transpose(1, 2).contiguous(), None


def _probs(query, key, visible, scaling: float) -> torch.Tensor:
    """`[batch, head, query, key]` float32 softmax of q . k * scaling over the visible keys."""
    groups = query.shape[-3] // key.shape[-3]
    keys = key.repeat_interleave(groups, dim=-3) if groups > 1 else key
    scores = torch.matmul(query, keys.transpose(-1, -2)) * scaling
    probs = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1, dtype=torch.float32)
    return probs.masked_fill(~visible.any(-1, keepdim=True), 0.0)


def _mask(*args, config=None, **kwargs):
    return ALL_MASK_ATTENTION_FUNCTIONS[_ACTIVE[id(config)].inner[id(config)]](*args, config=config, **kwargs)


@contextmanager
def captured(hm, qk: QKPlan | None, key: tuple, grad: bool):
    """Run the plan's attention layers through the recording attention for one forward (nothing without a plan)."""
    if qk is None:
        with nullcontext():
            yield
        return
    if ALL_ATTENTION_FUNCTIONS._global_mapping.get(NAME) is not _attention:
        AttentionInterface.register(NAME, _attention)
        AttentionMaskInterface.register(NAME, _mask)
    components = [c for c in hm.components if c.kind == "attention" and c.layer in qk.layers]
    configs = {id(hm.module(c.path).config): hm.module(c.path).config for c in components}
    scope = _Scope(qk, key, grad, {k: c._attn_implementation for k, c in configs.items()})
    handles = []
    try:
        for k, config in configs.items():
            _ACTIVE[k] = scope
            config._attn_implementation_internal = NAME
        for index, layer in enumerate(hm.module(hm.family_spec.layers)):
            def enter(module, args, index=index):
                scope.layer = index

            handles.append(layer.register_forward_pre_hook(enter))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for k, config in configs.items():
            config._attn_implementation_internal = scope.inner[k]
            _ACTIVE.pop(k, None)


def leaves(qk: QKPlan | None) -> list[tuple]:
    """(key, zero tensor) of the base runs' queries, keys and probabilities."""
    if qk is None:
        return []
    out = []
    for (role, track), layers in qk.records.items():
        for layer, record in layers.items():
            out += [(("qk", track, layer, part), d) for part, d in zip(("q", "k", "a"), record.deltas)]
    return out


def correction(setup, grads: dict) -> torch.Tensor:
    """`[group, column]`: the QK fix's correction of every entry (module docstring), summed over the metric's
    tracks, the group's corrected sites and the rows."""
    out = torch.zeros(len(setup.groups), len(setup.columns.table))
    qk = setup.qk
    if qk is None:
        return out
    for track in range(len(setup.tracks)):
        base, source = qk.records[("base", track)], qk.records[("source", track)]
        for g, group in enumerate(setup.groups):
            for site in group:
                layer = qk.sites.get(site.name)
                if layer is None:
                    continue
                parts = [grads[("qk", track, layer, part)] for part in ("q", "k", "a")]
                for c, column in enumerate(setup.columns.table):
                    out[g, c] += sum(_one(base[layer], source[layer], parts, b, list(ps))
                                     for b, ps in enumerate(column))
    return out


def _one(base: Record, source: Record, grads, row: int, positions: list[int]) -> float:
    """The correction for one row with its positions patched."""
    dq, dk, da = (g[row] for g in grads)
    query, key = base.query[row].clone(), base.key[row].clone()
    query[:, positions] = source.query[row][:, positions]
    key[:, positions] = source.key[row][:, positions]
    visible = base.visible[min(row, base.visible.shape[0] - 1)]
    before = _probs(base.query[row], base.key[row], visible, base.scaling)
    after = _probs(query, key, visible, base.scaling)
    exact = (da * (after - before)).sum()
    linear = (dq[:, positions] * (query - base.query[row])[:, positions]).sum()
    linear += (dk[:, positions] * (key - base.key[row])[:, positions]).sum()
    return float(exact - linear)
