"""An independent reference for interventions: plain torch forward hooks on the transformers model.

Written without the mechhybrid engine, so that the engine is checked against something that shares none of
its code: each hook replaces a module's output (or the input of an output projection) directly.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


def resolve(model, dotted: str):
    for part in dotted.split("."):
        model = model[int(part)] if part.isdigit() else getattr(model, part)
    return model


def first(value):
    return value[0] if isinstance(value, tuple) else value


def with_first(value, new):
    return (new,) + tuple(value[1:]) if isinstance(value, tuple) else new


@contextmanager
def hooks(model, spec):
    """spec: list of (path, "out" | "in" | "layer_skip", fn); fn maps the tensor to its replacement."""
    handles = []
    try:
        for path, where, fn in spec:
            module = resolve(model, path)
            if where == "out":
                handles.append(module.register_forward_hook(lambda m, a, o, fn=fn: with_first(o, fn(first(o)))))
            elif where == "in":
                handles.append(module.register_forward_pre_hook(lambda m, a, fn=fn: (fn(a[0]),) + tuple(a[1:])))
            else:  # skip: the layer's output becomes its input hidden state
                def skip(m, args, kwargs, out, fn=fn):
                    hidden = args[0] if args else kwargs["hidden_states"]
                    return with_first(out, fn(first(out), hidden))

                handles.append(module.register_forward_hook(skip, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture(model, ids, paths, where="out"):
    """{path: tensor} of module outputs (or first inputs) on ids."""
    seen = {}
    handles = []

    def keep(path, value):  # returns None, so that the hook observes without replacing anything
        seen.setdefault(path, value.clone())

    for path in paths:
        module = resolve(model, path)
        if where == "out":
            handles.append(module.register_forward_hook(lambda m, a, o, p=path: keep(p, first(o))))
        else:
            handles.append(module.register_forward_pre_hook(lambda m, a, p=path: keep(p, a[0])))
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def logits(model, ids, spec=()):
    with torch.no_grad(), hooks(model, spec):
        return model(ids).logits


def at_positions(positions, new_fn):
    """fn(tensor) that replaces only the given positions (all when None) by new_fn(tensor)."""
    def fn(tensor):
        replacement = new_fn(tensor).expand_as(tensor)
        if positions is None:
            return replacement.clone()
        out = tensor.clone()
        out[:, list(positions)] = replacement[:, list(positions)]
        return out

    return fn
