"""transformers' `AttentionInterface` as the extension point: one registered attention function, installed only
for the forwards that need it.

Every attention module of every family in `mechhybrid.families` calls
`ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)` on its rotated
(and normed, gated, multiplied) queries and keys, after the cache update, with the mask the model built for its
layer type (causal, sliding window). So one function registered under `NAME` sees, in each family, exactly the
q, k, v and mask the model's own attention receives. `installed(hm, plan)` points the model's config(s) at it
for one forward and restores the previous implementation afterwards, also on error.

The registered mask function hands mask building back to the implementation the model runs (`sdpa` or `eager`),
and the attention function hands every layer without a request back to it too: layers nobody asked about run
the model's own kernel on the model's own mask, bit for bit. The layer in progress is known from hooks on the
decoder layers (zamba2's shared attention block is one module called from several layers).
"""

from __future__ import annotations

import sys
import weakref
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from mechhybrid.attention.compile import AttentionPlan, attention_layers
from mechhybrid.attention.kernel import attend
from mechhybrid.errors import MechHybridError

__all__ = ["NAME", "SUPPORTED_INNER", "installed", "is_installed"]

NAME = "mechhybrid"
"""The name the attention and mask functions are registered under."""
SUPPORTED_INNER = ("sdpa", "eager")
"""Implementations a model may run for captures and edits: both take and build dense masks on any device."""
_UNSUPPORTED_KWARGS = ("softcap", "s_aux", "position_bias")
"""Attention arguments that change the scores and that the eager kernel here does not apply: refused, not ignored."""

_ACTIVE: dict[int, "_Scope"] = {}
"""id(config) -> the scope of the forward in progress on a model with that config."""


@dataclass
class _Scope:
    plan: AttentionPlan
    inner: dict[int, str]
    """id(config) -> the implementation the model runs."""
    layer: int | None = None
    """The decoder layer in progress (set by hooks)."""


def _inner_function(module, name: str):
    """The function the model itself would call: sdpa from the interface, eager from the module's own file."""
    if name == "eager":
        return getattr(sys.modules[type(module).__module__], "eager_attention_forward")
    return ALL_ATTENTION_FUNCTIONS[name]


def attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The registered attention function: the model's own attention, with the requests of its layer applied."""
    scope = _ACTIVE.get(id(module.config))
    if scope is None:
        raise MechHybridError(f"attention implementation {NAME!r} runs only inside mechhybrid's own forwards")
    name = scope.inner[id(module.config)]
    inner = _inner_function(module, name)
    requests = scope.plan.requests.get(scope.layer) if scope.layer is not None else None

    def delegate(visible=None):
        """The model's own attention, on its own mask or on `visible` (True = attend) in its kernel's format."""
        mask = attention_mask
        if visible is not None:
            low = torch.finfo(query.dtype).min
            mask = visible if name == "sdpa" else torch.where(visible, 0.0, low).to(query.dtype)
        return inner(module, query, key, value, mask, scaling=scaling, dropout=dropout, **kwargs)

    if not requests:
        return delegate()
    given = [arg for arg in _UNSUPPORTED_KWARGS if kwargs.get(arg) is not None]
    if given:
        raise MechHybridError(f"attention edits and captures do not support the attention argument {given[0]!r}")
    if dropout:
        raise MechHybridError("attention edits and captures need the model in eval mode (attention dropout is on)")
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    return attend(query, key, value, attention_mask, scaling, requests, delegate, scope.plan.patterns, scope.layer)


def mask_forward(*args, config=None, **kwargs):
    """The registered mask function: the mask of the implementation the model runs, after checking that the keys
    end at the last query (what the kernel's key positions rely on)."""
    scope = _ACTIVE.get(id(config))
    if scope is None:
        raise MechHybridError(f"attention implementation {NAME!r} runs only inside mechhybrid's own forwards")
    q_offset, q_length = int(kwargs.get("q_offset", 0)), int(kwargs["q_length"])
    kv_offset, kv_length = int(kwargs.get("kv_offset", 0)), int(kwargs["kv_length"])
    if kv_offset + kv_length != q_offset + q_length:
        raise MechHybridError(
            f"the cache holds keys {kv_offset}..{kv_offset + kv_length - 1} for queries "
            f"{q_offset}..{q_offset + q_length - 1}: attention edits need keys that end at the last query"
        )
    return ALL_MASK_ATTENTION_FUNCTIONS[scope.inner[id(config)]](*args, config=config, **kwargs)


def is_installed(config) -> bool:
    """True while a forward with attention requests runs on a model with this config."""
    return id(config) in _ACTIVE


def _register() -> None:
    if ALL_ATTENTION_FUNCTIONS._global_mapping.get(NAME) is not attention_forward:
        AttentionInterface.register(NAME, attention_forward)
        AttentionMaskInterface.register(NAME, mask_forward)


@dataclass(frozen=True)
class _Targets:
    """What `installed` touches on one model: its attention configs, and each attention layer's decoder layer."""

    configs: dict
    """id(config) -> config of the attention modules."""
    layer_modules: dict
    """Attention layer index -> its decoder layer module."""


_TARGETS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
"""HybridModel -> its _Targets, found once: generate installs the function at every decode step, where resolving
the module paths again cost ~3% of a llama decode step (benchmarks/bench_generation.py --only keep-top-heads)."""


def _targets(hm) -> _Targets:
    found = _TARGETS.get(hm)
    if found is None:
        layers = attention_layers(hm)
        modules = [hm.module(c.path) for c in layers.values()]
        found = _Targets({id(m.config): m.config for m in modules},
                         {layer: hm.module(c.layer_path) for layer, c in layers.items()})
        _TARGETS[hm] = found
    return found


@contextmanager
def installed(hm, plan: AttentionPlan | None):
    """Run the model's attention through `NAME` for the duration, applying `plan`; nothing when it is empty."""
    if plan is None or not plan.requests:
        yield
        return
    _register()
    targets = _targets(hm)
    configs = targets.configs
    inner = {key: config._attn_implementation for key, config in configs.items()}
    for name in inner.values():
        if name not in SUPPORTED_INNER:
            raise MechHybridError(
                f"attention patterns and edits need the {' or '.join(SUPPORTED_INNER)} attention implementation; "
                f"{hm.name} runs {name!r}: load it with attn_implementation='sdpa'"
            )
    if any(key in _ACTIVE for key in configs):
        raise MechHybridError("a forward with attention edits or captures is already running on this model")
    scope = _Scope(plan=plan, inner=inner)
    handles = []
    try:
        for key, config in configs.items():
            _ACTIVE[key] = scope
            config._attn_implementation_internal = NAME  # this config only: not its sub-configs (a vision tower)
        for layer in plan.requests:
            module = targets.layer_modules[layer]
            handles.append(module.register_forward_pre_hook(lambda m, a, layer=layer: setattr(scope, "layer", layer)))
            handles.append(module.register_forward_hook(lambda m, a, o: setattr(scope, "layer", None)))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for key, config in configs.items():
            config._attn_implementation_internal = inner[key]
            _ACTIVE.pop(key, None)
