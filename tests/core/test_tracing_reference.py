"""An independent reference for causal-tracing sweeps: one plain-hooked forward per patch and prompt.

Shares no code with `mechhybrid.tracing`: every patched run is a full transformers forward of one unpadded prompt,
with a torch hook that overwrites the site's tensor at the patched positions by the source prompt's value there.
The tests in test_tracing_sweep.py compare sweeps against `loop`; this file checks the reference itself.
"""

from __future__ import annotations

import pytest
import torch

from mechhybrid.interventions import Residual
from mechhybrid.tracing import Embeddings, Head
from tests.conftest import both_shapes, random_ids
from tests.core.reference import first, resolve, with_first


def site_tensor(hm, site):
    """(module, "in" | "out", channel slice) where the site's value flows."""
    model = hm.hf_model
    if isinstance(site, Embeddings):
        return model.get_input_embeddings(), "out", slice(None)
    if isinstance(site, Residual):
        layer = resolve(model, hm.family_spec.layers)[site.layer]
        return layer, "in" if site.where == "pre" else "out", slice(None)
    if isinstance(site, Head):
        module = resolve(model, site.component.out_proj)
        fan_in = module.weight.shape[0] if type(module).__name__ == "Conv1D" else module.weight.shape[1]
        width = fan_in // site.component.n_heads
        return module, "in", slice(site.head * width, (site.head + 1) * width)
    return resolve(model, site.path), "out", slice(None)


def _hook(module, io, fn):
    if io == "in":
        return module.register_forward_pre_hook(lambda m, args: (fn(args[0]),) + tuple(args[1:]))
    return module.register_forward_hook(lambda m, args, out: with_first(out, fn(first(out))))


def value_at(hm, ids: torch.Tensor, site) -> torch.Tensor:
    """The site's tensor on one unpadded prompt `[1, seq]`."""
    module, io, _ = site_tensor(hm, site)
    seen = []
    handle = _hook(module, io, lambda t: seen.append(t.clone()) or t)
    try:
        with torch.no_grad():
            hm.hf_model(ids)
    finally:
        handle.remove()
    return seen[0]


def patched_logits(hm, ids: torch.Tensor, patches) -> torch.Tensor:
    """`[1, seq, vocab]` logits of one prompt with `patches`: (site, positions, source tensor) each."""
    handles = []

    def make(channels, positions, source):
        def fn(tensor):
            out = tensor.clone()
            out[:, positions, channels] = source[:, positions, channels].to(out.dtype)
            return out

        return fn

    try:
        for site, positions, source in patches:
            module, io, channels = site_tensor(hm, site)
            handles.append(_hook(module, io, make(channels, list(positions), source)))
        with torch.no_grad():
            return hm.hf_model(ids).logits
    finally:
        for handle in handles:
            handle.remove()


def loop(hm, base_rows, source_rows, groups, columns, metric):
    """`[group, column]`: metric([batch, vocab] last-token logits) with each group patched at each column, one
    forward per prompt and patch. `columns[c][b]`: the positions patched in prompt b (row-relative, may be
    negative)."""
    out = torch.zeros(len(groups), len(columns))
    for g, group in enumerate(groups):
        sources = [[value_at(hm, torch.tensor([row]), site) for site in group] for row in source_rows]
        for c, column in enumerate(columns):
            rows = []
            for b, row in enumerate(base_rows):
                positions = [p % len(row) for p in column[b]]
                patches = [(site, positions, sources[b][i]) for i, site in enumerate(group)]
                rows.append(patched_logits(hm, torch.tensor([row]), patches)[0, -1])
            out[g, c] = metric(torch.stack(rows))
    return out


def plain_metric(hm, rows, metric) -> float:
    """metric([batch, vocab]) on each prompt's own unpatched last-token logits."""
    with torch.no_grad():
        return float(metric(torch.stack([hm.hf_model(torch.tensor([r])).logits[0, -1] for r in rows])))


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text", "falcon_h1", "gpt2"]))
def test_reference_patch_from_itself_is_the_plain_forward(tiny_models, model_type, shape):
    """Writing a prompt's own values back is the plain forward; writing another prompt's changes it."""
    _, hm = tiny_models(model_type, shape)
    ids, other = random_ids(1, 6, 1), random_ids(1, 6, 2)
    sites = [Embeddings(), Residual(1, "post"), hm.components[0]]
    heads = [c for c in hm.components if c.n_heads]
    sites.append(Head(heads[0], 1))
    with torch.no_grad():
        plain = hm.hf_model(ids).logits
    for site in sites:
        same = patched_logits(hm, ids, [(site, [2, 4], value_at(hm, ids, site))])
        assert (same - plain).abs().max().item() == 0
        moved = patched_logits(hm, ids, [(site, [2], value_at(hm, other, site))])
        assert (moved[:, :2] - plain[:, :2]).abs().max().item() == 0
        assert (moved[:, 2:] - plain[:, 2:]).abs().max().item() > 1e-7  # falcon_h1's mixers move it by ~1e-5
