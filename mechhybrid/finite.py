"""Damaged models must not produce numbers: find non-finite logits, and where in the forward they first appeared.

A NaN weight or a half-precision overflow turns every later activation non-finite, so the logits alone do not say
what broke. `first_nonfinite` runs one plain forward with a forward hook on the embedding, every component, every
decoder layer, the final norm and the unembedding; hooks fire as each module returns, in execution order, so the
first hook that sees a non-finite output names the module where the first non-finite value appeared (a component
before the layer that holds it; a layer only when its components were finite and a norm or residual sum was not).
"""

from __future__ import annotations

import torch

from mechhybrid.errors import MechHybridError

__all__ = ["check_finite", "first_nonfinite"]


def check_finite(hm, input_ids: torch.Tensor, logits: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 what: str = "logits") -> None:
    """Raise MechHybridError, naming the model and where the first non-finite value appeared, if `logits` holds a
    NaN or an infinity (at a valid position); return None, running nothing, when all are finite.

    `logits`: computed from `input_ids` `[batch, seq]`; with an `attention_mask`, `[batch, seq, vocab]` or
    `[set * batch, seq, vocab]` (intervention sets stacked along the batch), of which padded positions are not
    checked (their values are never read). Without a mask any shape, e.g. a loss with `what="loss"`: `what`
    names the values in the message.
    """
    values = logits if attention_mask is None else logits[_valid_positions(logits, attention_mask)]
    if bool(torch.isfinite(values).all()):
        return
    where = first_nonfinite(hm, input_ids, attention_mask)
    if where is None:
        raise MechHybridError(
            f"model {hm.name} produced non-finite {what} although a plain forward of the same input is finite "
            "everywhere: the interventions, or what was computed from the logits, made them non-finite"
        )
    raise MechHybridError(f"model {hm.name} produced non-finite {what}; first non-finite value in {where}")


def _valid_positions(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`[set * batch, seq]` mask of the positions to check: the attention mask, repeated for each stacked set."""
    mask = attention_mask.to(device=logits.device, dtype=torch.bool)
    if logits.ndim != 3 or logits.shape[1] != mask.shape[1] or logits.shape[0] % mask.shape[0]:
        raise MechHybridError(
            f"logits of shape {list(logits.shape)} do not match an attention_mask of shape {list(mask.shape)}"
        )
    return mask.repeat(logits.shape[0] // mask.shape[0], 1)


def first_nonfinite(hm, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> str | None:
    """Where the first non-finite value appears in one plain forward of `input_ids` (no interventions), e.g.
    `"L2.attention (model.layers.2.self_attn)"`, `"the embedding (model.embed_tokens)"`, `"the input of L0
    (model.layers.0)"` (position embeddings), `"L3 (model.layers.3), outside its components"`; None when that
    forward is finite everywhere. With an `attention_mask`, only outputs at valid positions count."""
    found: list[str] = []
    mask = None if attention_mask is None else attention_mask.to(device=hm.device, dtype=torch.bool)

    def note(name: str, value) -> None:
        if not found and _has_nonfinite(value, mask):
            found.append(name)

    first_layer = f"{hm.family_spec.layers}.0"
    handles = [
        # The first layer's hidden-states input: what the embeddings (token plus, in GPT-2, learned position)
        # hand to the stack, checked before any component runs on it.
        hm.module(first_layer).register_forward_pre_hook(
            lambda module, args, kwargs: note(f"the input of L0 ({first_layer})",
                                              args[0] if args else kwargs.get("hidden_states")),
            with_kwargs=True,
        )
    ]
    for path, name in _sites(hm):
        handles.append(hm.module(path).register_forward_hook(lambda m, a, output, name=name: note(name, output)))
    kwargs = {} if mask is None else {"attention_mask": attention_mask.to(hm.device)}
    try:
        with torch.no_grad():
            logits = hm.hf_model(input_ids.to(hm.device), **kwargs).logits
    finally:
        for handle in handles:
            handle.remove()
    if found:
        return found[0]
    if _has_nonfinite(logits, mask):
        return "the family's logit scaling (after the unembedding)"
    return None


def _sites(hm) -> list[tuple[str, str]]:
    """(module path, how the message names it) for every module whose output is checked."""
    family = hm.family_spec
    embedding = _path_of(hm, hm.hf_model.get_input_embeddings())
    unembedding = _path_of(hm, hm.hf_model.get_output_embeddings())
    sites = [
        (embedding, f"the embedding ({embedding})"),
        (family.final_norm, f"the final norm ({family.final_norm})"),
        (unembedding, f"the unembedding ({unembedding})"),
    ]
    sites += [(c.path, f"{c.name} ({c.path})") for c in hm.components]
    layers = [f"{family.layers}.{i}" for i in range(hm.n_layers)]
    return sites + [(path, f"L{i} ({path}), outside its components") for i, path in enumerate(layers)]


def _path_of(hm, module: torch.nn.Module) -> str:
    return next(name for name, candidate in hm.hf_model.named_modules() if candidate is module)


def _has_nonfinite(output, mask: torch.Tensor | None) -> bool:
    """Whether any floating tensor in a module's output (a tensor, or a tuple / model output holding some) is
    non-finite; `[batch, seq, ...]` tensors are checked at the mask's valid positions only."""
    if isinstance(output, torch.Tensor):
        if not output.is_floating_point():
            return False
        if mask is not None and output.shape[:2] == mask.shape:
            output = output[mask]
        return not bool(torch.isfinite(output).all())
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return any(_has_nonfinite(item, mask) for item in output)
    return False
