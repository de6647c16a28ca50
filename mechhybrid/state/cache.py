"""Reading and writing a layer's state in the model's own cache, and the kwargs of a cached forward."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from mechhybrid.errors import MechHybridError
from mechhybrid.state.spec import spec_for, state_components
from mechhybrid.state.types import State


def new_cache(hm, batch: int):
    """An empty cache for `batch` rows, as `generate` prepares it (recurrent_gemma also resets its modules)."""
    config = hm.config
    cache = DynamicCache(config=config)
    if spec_for(hm).store == "module":
        inner = hm.hf_model.model
        inner._setup_cache(config, batch, hm.device, next(hm.hf_model.parameters()).dtype)
    return cache


def forward_kwargs(hm, cache, start: int, stop: int, batch: int) -> dict:
    """kwargs for a forward over tokens [start, stop) that continues `cache`."""
    kwargs = {"cache": cache, "use_cache": True}
    if spec_for(hm).pass_positions:
        kwargs["position_ids"] = torch.arange(start, stop, device=hm.device)[None].expand(batch, -1)
    return kwargs


def slots(hm, cache, layer: int):
    """(holder, recurrent attribute, conv attribute) for one layer, with the holder's tensors indexable."""
    if spec_for(hm).store == "module":
        block = hm.module(state_components(hm)[layer].path)
        return (block.rg_lru, "recurrent_states"), (block, "conv1d_state")
    cache_layer = cache.layers[layer]
    return (cache_layer.recurrent_states, 0), (cache_layer.conv_states, 0)


def _get(slot):
    holder, key = slot
    return holder[key] if isinstance(holder, dict) else getattr(holder, key)


def read(hm, cache, layer: int, position: int, rows=slice(None)) -> State:
    """A copy of the layer's current state (its rows `rows`), labelled as taken after `position`."""
    component = state_components(hm)[layer]
    layout = spec_for(hm).layouts[component.kind]
    rec_slot, conv_slot = slots(hm, cache, layer)
    conv = _get(conv_slot)
    if conv is None:
        raise MechHybridError(f"layer {layer} has no state yet: no token has been read")
    recurrent = _get(rec_slot) if layout.recurrent is not None else None
    return State(
        layer=layer, position=position, kind=component.kind,
        recurrent=None if recurrent is None else recurrent[rows].clone(),
        conv=conv[rows].clone(), recurrent_axes=layout.recurrent, conv_axes=layout.conv,
    )


def write(hm, cache, layer: int, state: State, rows=slice(None)) -> None:
    """Write `state` into the layer's cached state rows `rows`, in place (batch 1 broadcasts)."""
    current = read(hm, cache, layer, state.position, rows)
    for name, new, old in (("recurrent", state.recurrent, current.recurrent), ("conv", state.conv, current.conv)):
        if old is None:
            if new is not None:
                raise MechHybridError(f"layer {layer} has no {name} state to write")
            continue
        if new is None or tuple(new.shape[1:]) != tuple(old.shape[1:]) or new.shape[0] not in (1, old.shape[0]):
            shape = None if new is None else tuple(new.shape)
            raise MechHybridError(
                f"state for layer {layer} has the wrong {name} shape {shape}; expected {tuple(old.shape)} "
                f"(axes {current.recurrent_axes if name == 'recurrent' else current.conv_axes})"
            )
    rec_slot, conv_slot = slots(hm, cache, layer)
    if state.recurrent is not None:
        target = _get(rec_slot)
        target[rows] = state.recurrent.to(target.device, target.dtype).expand_as(target[rows])
    target = _get(conv_slot)
    target[rows] = state.conv.to(target.device, target.dtype).expand_as(target[rows])
