"""An independent eager attention, written by hand per family, for the attention-pattern and logit-edit tests.

It shares no code with `mechhybrid.attention`: the attention module's input is taken with a plain torch pre-hook,
the queries, keys and values are rebuilt from the module's own projections and norms as each family's source
writes them, RoPE is applied by the family's own `apply_rotary_pos_emb` (the one piece of model code reused:
the rotation itself is not what is under test), and the scale, the causal mask, the sliding window, the softmax
and the output projection are written out here from the config.
"""

from __future__ import annotations

import inspect
import sys
from contextlib import contextmanager

import torch

NO_ROPE = {"jamba", "nemotron_h", "gpt2"}
GATED = {"qwen3_5_text", "qwen3_next"}
"""Families whose q_proj also emits an output gate: out = o_proj(attention * sigmoid(gate))."""


def attention_module(hm, layer: int):
    component = next(c for c in hm.components if c.kind == "attention" and c.layer == layer)
    return component, hm.module(component.path)


def _bind(module, args, kwargs) -> dict:
    # The class's forward: nnsight replaces the instance's bound method with its own wrapper.
    bound = inspect.signature(type(module).forward).bind(module, *args, **kwargs)
    return {**bound.arguments, **bound.arguments.get("kwargs", {})}


@contextmanager
def inputs_of(hm, layers, outputs: dict | None = None):
    """{layer: bound forward arguments of its attention module} (and, into `outputs`, {layer: its output}),
    recorded in every forward under the context. zamba2's shared block is one module for several layers: a
    layer's call is the one made inside that layer."""
    seen, handles, inside = {}, [], {}
    for layer in layers:
        component, module = attention_module(hm, layer)
        layer_module = hm.module(component.layer_path)
        handles.append(layer_module.register_forward_pre_hook(lambda m, a, layer=layer: inside.update(now=layer)))
        handles.append(layer_module.register_forward_hook(lambda m, a, o: inside.update(now=None)))

        def keep(m, args, kwargs, layer=layer):
            if inside.get("now") == layer:
                seen[layer] = _bind(m, args, kwargs)

        def keep_out(m, args, out, layer=layer):
            if inside.get("now") == layer and outputs is not None:
                outputs[layer] = (out[0] if isinstance(out, tuple) else out).clone()

        handles.append(module.register_forward_pre_hook(keep, with_kwargs=True))
        handles.append(module.register_forward_hook(keep_out))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def _split(x, heads: int):
    batch, seq, width = x.shape
    return x.view(batch, seq, heads, width // heads).transpose(1, 2)


def qkv(hm, layer: int, bound: dict):
    """(q [b, head, s, d], k [b, kv_head, s, d], v [b, kv_head, s, d_v], gate [b, s, head * d_v] or None)."""
    mt, config = hm.config.model_type, hm.config
    _, module = attention_module(hm, layer)
    h = bound["hidden_states"]
    n_heads = config.num_attention_heads if mt != "gpt2" else config.n_head
    n_kv = getattr(config, "num_key_value_heads", n_heads)
    gate = None
    if mt == "gpt2":
        q, k, v = module.c_attn(h).split(config.n_embd, dim=2)
        q, k, v = _split(q, n_heads), _split(k, n_kv), _split(v, n_kv)
    elif mt in GATED:
        b, s, _ = h.shape
        both = module.q_proj(h).view(b, s, n_heads, -1)
        q, gate = both.chunk(2, dim=-1)
        gate = gate.reshape(b, s, -1)
        q = module.q_norm(q).transpose(1, 2)
        k = module.k_norm(module.k_proj(h).view(b, s, n_kv, -1)).transpose(1, 2)
        v = _split(module.v_proj(h), n_kv)
    else:
        q, k, v = _split(module.q_proj(h), n_heads), _split(module.k_proj(h), n_kv), _split(module.v_proj(h), n_kv)
        if mt == "lfm2":
            q = module.q_layernorm(q.transpose(1, 2)).transpose(1, 2)
            k = module.k_layernorm(k.transpose(1, 2)).transpose(1, 2)
        if mt == "falcon_h1":
            k = k * config.key_multiplier
    rope = sys.modules[type(module).__module__].__dict__.get("apply_rotary_pos_emb")
    if mt == "recurrent_gemma":
        cos, sin = module.rotary_emb(v, bound["position_ids"])
        q, k = rope(q, k, cos, sin)
    elif mt not in NO_ROPE and bound.get("position_embeddings") is not None:
        q, k = rope(q, k, *bound["position_embeddings"])
    return q, k, v, gate


def scaling(hm, layer: int, head_dim: int) -> float:
    config, mt = hm.config, hm.config.model_type
    if mt == "granitemoehybrid":
        return config.attention_multiplier
    if mt == "zamba2":
        return (head_dim / 2) ** -0.5
    if mt == "gpt2" and config.scale_attn_by_inverse_layer_idx:
        return head_dim**-0.5 / (layer + 1)
    return head_dim**-0.5


def window(hm, layer: int) -> int | None:
    config, mt = hm.config, hm.config.model_type
    if mt == "recurrent_gemma":
        return config.attention_window_size
    if mt == "qwen2" and config.layer_types[layer] == "sliding_attention":
        return config.sliding_window
    return None


def visible(hm, layer: int, seq: int) -> torch.Tensor:
    """`bool[query, key]`: causal, and inside the window where the layer has one."""
    i, j = torch.arange(seq)[:, None], torch.arange(seq)[None]
    ok = j <= i
    w = window(hm, layer)
    return ok if w is None else ok & (i - j < w)


def scores(hm, layer: int, bound: dict):
    """(logits [b, head, s, s] with hidden keys -inf, v repeated [b, head, s, d_v], gate)."""
    q, k, v, gate = qkv(hm, layer, bound)
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    logits = (q @ k.transpose(-1, -2)) * scaling(hm, layer, q.shape[-1])
    return logits.masked_fill(~visible(hm, layer, q.shape[2]), float("-inf")), v, gate


def softmax(logits: torch.Tensor) -> torch.Tensor:
    probs = torch.softmax(logits.float(), -1)
    return torch.nan_to_num(probs, nan=0.0)  # a query with every key hidden attends to nothing


def output(hm, layer: int, probs: torch.Tensor, v: torch.Tensor, gate) -> torch.Tensor:
    """The attention module's output from probabilities: heads concatenated, gated, projected."""
    _, module = attention_module(hm, layer)
    mixed = (probs.to(v.dtype) @ v).transpose(1, 2)
    mixed = mixed.reshape(*mixed.shape[:2], -1)
    if gate is not None:
        mixed = mixed * torch.sigmoid(gate)
    out_proj = {"gpt2": "c_proj", "lfm2": "out_proj"}.get(hm.config.model_type, "o_proj")
    return getattr(module, out_proj)(mixed)


@contextmanager
def replace_output(hm, layer: int, fn):
    """Under the context, the attention module of `layer` returns `fn(bound inputs)` instead of its output."""
    component, module = attention_module(hm, layer)
    layer_module = hm.module(component.layer_path)
    inside, handles = {}, []
    handles.append(layer_module.register_forward_pre_hook(lambda m, a: inside.update(now=True)))
    handles.append(layer_module.register_forward_hook(lambda m, a, o: inside.update(now=False)))

    def swap(m, args, kwargs, out):
        if not inside.get("now"):
            return None
        new = fn(_bind(m, args, kwargs))
        return (new,) + tuple(out[1:]) if isinstance(out, tuple) else new

    handles.append(module.register_forward_hook(swap, with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
