"""The forwards behind the memory lens: the prompt once, its last token on top, then the last token again under
many alternatives (a layer's output there replaced, or its state before it edited), stacked along the batch.

The prompt's first `seq - 1` tokens run once through the model's own cache; every alternative continues a copy
of that cache by the last token only, so an alternative costs one token's forward, not the prompt's (a 1-token
continuation is exact in every family with state: `mechhybrid check-cache`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.state import cache as cache_ops
from mechhybrid.state.api import check_ids
from mechhybrid.state.types import State

__all__ = ["Prefill", "Alternative", "prefill", "last_token_logits"]


@dataclass
class Prefill:
    """The prompt run once: the cache before its last token, and what the lens reads at the last token."""

    input_ids: torch.Tensor
    """`[batch, seq]` the prompt."""
    cache: object
    """The model's cache after tokens [0, seq - 1) (copied, never continued in place)."""
    projections: dict[int, dict[str, torch.Tensor]]
    """layer -> projection module name -> `[batch, seq, ...]` its output at every position."""
    states: dict[int, State]
    """layer -> its state right after the last token (what the last token's own output read)."""
    before: dict[int, State]
    """layer -> its state right before the last token (what the last token's step starts from, and edits edit)."""
    logits: torch.Tensor
    """`[batch, vocab]` the model's logits at the last token."""


@dataclass
class Alternative:
    """One way to run the last token: mixer outputs replaced there and/or states before it edited."""

    outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    """layer -> `[batch, d_model]` the stateful mixer's output at the last token, replaced by this."""
    edits: dict[int, Callable[[State], State]] = field(default_factory=dict)
    """layer -> an EditState fn applied to the state right after token seq - 2 (what the last token reads)."""


def _capture_hooks(hm, components: dict, names: dict, sink: dict) -> list:
    handles = []
    for layer, component in components.items():
        mixer = hm.module(component.path)
        for name in names[layer]:
            def hook(module, args, out, layer=layer, name=name):
                sink.setdefault(layer, {}).setdefault(name, []).append(out.detach())
            handles.append(getattr(mixer, name).register_forward_hook(hook))
    return handles


def prefill(hm, input_ids, components: dict, names: dict) -> Prefill:
    """Run the prompt; `components`: layer -> stateful Component, `names`: layer -> projection modules to keep."""
    input_ids = check_ids(hm, input_ids)
    batch, seq = input_ids.shape
    if seq < 2:
        raise MechHybridError("the memory lens needs prompts of at least 2 tokens")
    pieces: dict = {}
    handles = _capture_hooks(hm, components, names, pieces)
    try:
        cache = cache_ops.new_cache(hm, batch)
        with torch.no_grad():
            hm.hf_model(input_ids[:, :-1], **cache_ops.forward_kwargs(hm, cache, 0, seq - 1, batch))
            before = {layer: cache_ops.read(hm, cache, layer, seq - 2) for layer in components}
            last_cache = copy.deepcopy(cache)
            logits = hm.hf_model(input_ids[:, -1:], **cache_ops.forward_kwargs(hm, last_cache, seq - 1, seq, batch))
    finally:
        for handle in handles:
            handle.remove()
    projections = {layer: {name: torch.cat(parts, dim=1) for name, parts in by_name.items()}
                   for layer, by_name in pieces.items()}
    states = {layer: cache_ops.read(hm, last_cache, layer, seq - 1) for layer in components}
    return Prefill(input_ids, cache, projections, states, before, logits.logits[:, -1])


def _replace_hooks(hm, components: dict, alternatives: list[Alternative], batch: int) -> list:
    handles = []
    for layer, component in components.items():
        rows = [(i, alt.outputs[layer]) for i, alt in enumerate(alternatives) if layer in alt.outputs]
        if not rows:
            continue

        def hook(module, args, out, rows=rows):
            tensor = out[0] if isinstance(out, tuple) else out
            for i, value in rows:
                tensor[i * batch:(i + 1) * batch, -1] = value.to(tensor.dtype)
            return out
        handles.append(hm.module(component.path).register_forward_hook(hook))
    return handles


def last_token_logits(hm, pre: Prefill, components: dict, alternatives: list[Alternative]) -> torch.Tensor:
    """`[alternative, batch, vocab]` logits at the last token under each alternative."""
    batch, seq = pre.input_ids.shape
    n = len(alternatives)
    cache = copy.deepcopy(pre.cache)
    cache.reorder_cache(torch.arange(batch).repeat(n).to(hm.device))
    for i, alt in enumerate(alternatives):
        rows = slice(i * batch, (i + 1) * batch)
        for layer, fn in alt.edits.items():
            edited = fn(cache_ops.read(hm, cache, layer, seq - 2, rows))
            if not isinstance(edited, State):
                raise MechHybridError("an edit fn must return a State (use state.replace(...))")
            cache_ops.write(hm, cache, layer, edited, rows)
    handles = _replace_hooks(hm, components, alternatives, batch)
    try:
        with torch.no_grad():
            out = hm.hf_model(pre.input_ids[:, -1:].repeat(n, 1),
                              **cache_ops.forward_kwargs(hm, cache, seq - 1, seq, batch * n))
    finally:
        for handle in handles:
            handle.remove()
    return out.logits[:, -1].reshape(n, batch, -1)
