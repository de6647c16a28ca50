"""Attribution patching against independent references.

The first-order reference shares no code with mechhybrid.tracing: each prompt runs alone (unpadded) through the
transformers model with plain torch hooks that add a zero tensor requiring grad at the site's module; the batch
metric's gradient comes from plain autograd and is dotted with (source - base) by hand. For states, the prompt
runs to token t through transformers' own cache, the cached state becomes a tensor requiring grad, and the rest
continues one token at a time (every saved tensor copied, since the models overwrite their cache in place).
"""

from __future__ import annotations

import pytest
import torch

import mechhybrid
from mechhybrid.errors import MechHybridError
from mechhybrid.interventions import Residual
from mechhybrid.tracing import AnswerRank, Embeddings, Head, LogitDiff, StateSite, attribute, state_sites, sweep
from tests.conftest import build_tiny, random_ids
from tests.core.reference import first, with_first
from tests.core.test_tracing_reference import site_tensor, value_at
from tests.core.test_tracing_states import Hand, _get, _set

TOL = 1e-5
LENGTHS = (6, 4)
COLUMNS = (-1, -3, (-4, -2))
FAMILIES = ("llama", "qwen3_5_text", "mamba2", "falcon_h1", "jamba", "recurrent_gemma")


def _rows(seed: int) -> list[list[int]]:
    return [random_ids(1, n, seed + i)[0].tolist() for i, n in enumerate(LENGTHS)]


def _projection(hm, seed: int = 0):
    weight = torch.randn(hm.vocab_size, generator=torch.Generator().manual_seed(seed))
    return lambda logits: (logits.float() @ weight).mean()


def _sites(hm) -> list:
    heads = [c for c in hm.components if c.n_heads]
    sites = [Embeddings(), Residual(1), Residual(hm.n_layers - 1, "post"), *hm.components]
    return sites + ([Head(heads[0], 1)] if heads else [])


def _hook(module, io, delta_of):
    if io == "in":
        return module.register_forward_pre_hook(lambda m, args: (args[0] + delta_of(args[0]),) + tuple(args[1:]))
    return module.register_forward_hook(lambda m, args, out: with_first(out, first(out) + delta_of(first(out))))


def _activation_terms(hm, base_rows, source_rows, site, metric) -> torch.Tensor:
    """`[row, seq]`: (source - base) . d metric / d value at each token, by plain hooks and autograd."""
    module, io, channels = site_tensor(hm, site)
    deltas, logits, values = [], [], []
    for row in base_rows:
        ids = torch.tensor([row])
        values.append(value_at(hm, ids, site)[0])
        handle = _hook(module, io, lambda t: deltas.append(torch.zeros_like(t, requires_grad=True)) or deltas[-1])
        try:
            with torch.enable_grad():
                logits.append(hm.hf_model(ids).logits[0, -1])
        finally:
            handle.remove()
    with torch.enable_grad():
        grads = torch.autograd.grad(metric(torch.stack(logits)), deltas)
    out = torch.zeros(len(base_rows), max(LENGTHS))
    for b, (row, grad) in enumerate(zip(source_rows, grads)):
        diff = value_at(hm, torch.tensor([row]), site)[0] - values[b]
        out[b, : len(row)] = (diff[..., channels] * grad[0][..., channels]).sum(-1)
    return out


def _state_terms(hm, model_type, base_rows, source_rows, layer, metric) -> torch.Tensor:
    """`[row, seq]`: (source state - base state) . d metric / d state after each token, by hand."""
    hand = Hand(hm, model_type)
    out = torch.zeros(len(base_rows), max(LENGTHS))
    for t in range(max(LENGTHS) - 1):
        live = [b for b, row in enumerate(base_rows) if t < len(row) - 1]
        leaves, logits, diffs = [], [], []
        for b in range(len(base_rows)):
            row = base_rows[b]
            if b not in live:
                logits.append(hand.run(torch.tensor([row]), hand.fresh(), 0)[0, -1])
                continue
            source = hand.fresh()
            hand.run(torch.tensor([source_rows[b][: t + 1]]), source, 0)
            saved = [_get(h, k).clone() for h, k in hand.tensors(source, layer)]
            cache = hand.fresh()
            hand.run(torch.tensor([row[: t + 1]]), cache, 0)
            mine = []
            for (holder, key), value in zip(hand.tensors(cache, layer), saved):
                leaf = _get(holder, key).clone().requires_grad_()
                diffs.append(value - leaf.detach())
                mine.append(leaf)
                _set(holder, key, leaf.clone())
            leaves.append(mine)
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(lambda x: x.clone(), lambda x: x):
                for s in range(t + 1, len(row)):
                    kwargs = {} if model_type == "mamba2" else {"position_ids": torch.tensor([[s]])}
                    last = hm.hf_model(torch.tensor([[row[s]]]), cache=cache, use_cache=True, **kwargs).logits
            logits.append(last[0, -1])
        with torch.enable_grad():
            flat = [leaf for mine in leaves for leaf in mine]
            grads = torch.autograd.grad(metric(torch.stack(logits)), flat)
        k = 0
        for b, mine in zip(live, leaves):
            for _ in mine:
                out[b, t] += (diffs[k] * grads[k]).sum()
                k += 1
    return out


def _entry(terms: torch.Tensor, column) -> float:
    """Sum of a `[row, seq]` table over each row's positions of one column (row-relative, negative from the end)."""
    positions = column if isinstance(column, tuple) else (column,)
    return float(sum(terms[b, p % n] for b, n in enumerate(LENGTHS) for p in positions))


@pytest.mark.parametrize("model_type", FAMILIES)
def test_atp_equals_an_independent_first_order_term(tiny_models, model_type):
    """Activations (embeddings, residual, every component, a head) and states, rows of different lengths,
    a metric that sees every logit (raw) and the normalised logit difference."""
    _, hm = tiny_models(model_type)
    clean, corrupted = _rows(1), _rows(20)
    sites = _sites(hm) + state_sites(hm)
    projection = _projection(hm)
    result = attribute(hm, clean, corrupted, sites, projection, positions=list(COLUMNS))
    assert result.sites == tuple(s.name for s in sites) and result.positions == COLUMNS
    with torch.no_grad():
        base = float(projection(torch.stack([hm.hf_model(torch.tensor([r])).logits[0, -1] for r in corrupted])))
    assert result.corrupted_metric == pytest.approx(base, abs=TOL) and not result.normalised
    expected = torch.zeros(len(sites), len(COLUMNS))
    for i, site in enumerate(sites):
        if isinstance(site, StateSite):
            terms = _state_terms(hm, model_type, corrupted, clean, site.layer, projection)
        else:
            terms = _activation_terms(hm, corrupted, clean, site, projection)
        expected[i] = torch.tensor([base + _entry(terms, c) for c in COLUMNS])
    assert (result.values - expected).abs().max().item() < TOL * max(1.0, expected.abs().max().item())
    assert (expected - base).abs().max().item() > 1e-3  # the terms are not all zero

    answers, wrong = [[3], [5]], [[7], [9]]
    normalised = attribute(hm, clean, corrupted, sites[:3], LogitDiff(answers, wrong), positions=[-1],
                           direction="noise")
    diff = lambda logits: (logits[[0, 1], [3, 5]] - logits[[0, 1], [7, 9]]).mean()
    with torch.no_grad():
        raw = {name: float(diff(torch.stack([hm.hf_model(torch.tensor([r])).logits[0, -1] for r in rows])))
               for name, rows in (("clean", clean), ("corrupted", corrupted))}
    for i, site in enumerate(sites[:3]):
        term = _entry(_activation_terms(hm, clean, corrupted, site, diff), -1)
        hand = (raw["clean"] + term - raw["corrupted"]) / (raw["clean"] - raw["corrupted"])
        assert normalised.values[i, 0].item() == pytest.approx(hand, abs=TOL)


def test_atp_is_exact_where_the_effect_is_linear():
    """Without a final norm, the logits are linear in the last MLP's output at the last token: there attribution
    patching equals the exact sweep, and elsewhere it does not."""
    model = build_tiny("llama")
    model.model.norm = torch.nn.Identity()
    hm = mechhybrid.load(model)
    clean, corrupted = _rows(1), _rows(20)
    last_mlp = [c for c in hm.components if c.kind == "mlp"][-1]
    sites = [last_mlp, hm.components[0]]
    projection = _projection(hm)
    metric = lambda logits: 100 * projection(logits)  # the tiny model's logits move by ~1e-4 without the norm
    exact = sweep(hm, clean, corrupted, sites, metric, positions=[-1])
    estimate = attribute(hm, clean, corrupted, sites, metric, positions=[-1])
    assert estimate.sites == exact.sites and estimate.row_positions == exact.row_positions
    assert abs(estimate.values[0, 0] - exact.values[0, 0]).item() < TOL * max(1.0, abs(exact.values[0, 0].item()))
    assert abs(exact.values[0, 0] - exact.corrupted_metric).item() > 1e-2
    assert abs(estimate.values[1, 0] - exact.values[1, 0]).item() > 1e-4  # a nonlinear site is not exact


def test_integrated_gradients_converge_where_the_path_is_the_patch(tiny_models):
    """The embeddings at every position: the IG path is the patch itself, so 32 steps land near the exact
    effect, closer than first order and than 2 steps."""
    _, hm = tiny_models("qwen3_5_text")
    clean, corrupted = random_ids(2, 6, 3).tolist(), random_ids(2, 6, 4).tolist()
    metric = LogitDiff([[3], [5]], [[7], [9]])
    everywhere = [tuple(range(6))]
    exact = sweep(hm, clean, corrupted, Embeddings(), metric, positions=everywhere).values[0, 0].item()
    assert exact == pytest.approx(1.0, abs=1e-4)  # every embedding patched is the clean run
    error = {}
    for method, steps in (("atp", 1), ("ig", 2), ("ig", 32)):
        result = attribute(hm, clean, corrupted, Embeddings(), metric, positions=everywhere, method=method,
                           ig_steps=steps)
        error[method, steps] = abs(result.values[0, 0].item() - exact)
    assert error["ig", 32] < 1e-2 and error["ig", 32] < error["ig", 2] < error["atp", 1]


@pytest.mark.parametrize("model_type", ["llama", "falcon_h1"])
def test_atp_star_and_ig_return_the_sweeps_labels(tiny_models, model_type):
    """AtP* (QK fix on the residual before an attention layer, GradDrop) and IG: same labels as the sweep,
    finite values, cost in forward-equivalents as documented."""
    _, hm = tiny_models(model_type)
    clean, corrupted = _rows(1), _rows(20)
    sites = [Residual(hm.components.by_kind("attention")[0].layer), *hm.components]
    metric = LogitDiff([[3], [5]], [[7], [9]])
    exact = sweep(hm, clean, corrupted, sites, metric, positions=[-2, -1])
    for method, work in (("atp", 3), ("atp*", 3 + hm.n_layers), ("ig", 2 + 2 * 3)):
        with torch.no_grad():  # attribution takes its gradients whatever the caller's mode
            result = attribute(hm, clean, corrupted, sites, metric, positions=[-2, -1], method=method, ig_steps=3)
        assert (result.sites, result.positions, result.row_positions) == (exact.sites, exact.positions,
                                                                        exact.row_positions)
        assert torch.isfinite(result.values).all() and result.work == pytest.approx(work)
        assert result.strategy.startswith(method + ":")


@pytest.mark.parametrize("call,message", [
    (lambda hm, c, x: attribute(hm, c, x, "components", AnswerRank([[3], [5]])), "AnswerRank"),
    (lambda hm, c, x: attribute(hm, c, [x[0], x[1] + [1]], "components", LogitDiff([[3], [5]], [[7], [9]])),
     "equal lengths"),
    (lambda hm, c, x: attribute(hm, c, x, [], LogitDiff([[3], [5]], [[7], [9]])), "empty site selection"),
    (lambda hm, c, x: attribute(hm, c, x, "components", lambda logits: 1.0), "differentiabl"),
    (lambda hm, c, x: attribute(hm, c, x, "components", lambda logits: logits[:, 0]), "one number"),
    (lambda hm, c, x: attribute(hm, c, x, "components", LogitDiff([[3], [5]]), method="eap"), "unknown"),
    (lambda hm, c, x: attribute(hm, c, x, "components", LogitDiff([[3], [5]]), method="ig", ig_steps=0),
     "ig_steps"),
])
def test_bad_input_is_one_line(tiny_models, call, message):
    _, hm = tiny_models("llama")
    with pytest.raises(MechHybridError) as error:
        call(hm, _rows(1), _rows(20))
    assert message in str(error.value) and "\n" not in str(error.value)
