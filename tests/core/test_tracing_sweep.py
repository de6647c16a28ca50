"""Sweeps equal the one-forward-per-patch loop (test_tracing_reference.py), padded batches included, and satisfy
the identities of patching: every position from the clean run gives the clean metric, a patch that changes no
value (a shared prefix, the same input) leaves the metric."""

from __future__ import annotations

import pytest
import torch

from mechhybrid.interventions import Residual
from mechhybrid.tracing import plan
from mechhybrid.tracing import Embeddings, Head, Reuse, StateSite, head_sites, residual_sites, state_sites, sweep
from tests.conftest import ALL_MODEL_TYPES, both_shapes, random_ids
from tests.core.test_tracing_reference import loop, plain_metric

TOL = 1e-4
LENGTHS = (6, 4)


@pytest.fixture(autouse=True)
def one_group_per_start(monkeypatch):
    """No merging of runs into earlier groups (on these tiny layers nearly everything would run as one forward
    from token 0, and the cache continuation would go untested); tests that want merging restore it."""
    monkeypatch.setattr(plan, "measure_costs", lambda hm, ids: plan.Costs(0.0, 1.0, 1.0))


def _rows(seed: int, lengths=LENGTHS) -> list[list[int]]:
    return [random_ids(1, n, seed + i)[0].tolist() for i, n in enumerate(lengths)]


def _left_padded(rows) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([[7] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def _projection(hm, seed: int = 0):
    """A metric that sees every logit: the mean over rows of a fixed random projection."""
    weight = torch.randn(hm.vocab_size, generator=torch.Generator().manual_seed(seed))
    return lambda logits: (logits.float() @ weight).mean()


def _sites(hm) -> list:
    layers = hm.n_layers
    with_heads = [c for c in hm.components if c.n_heads]
    heads = head_sites(hm, with_heads[:1] + with_heads[-1:])
    return [Embeddings(), Residual(0), Residual(1, "post"), Residual(layers - 1, "post"), *hm.components, *heads]


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_sweep_equals_the_hook_loop(tiny_models, model_type, shape, monkeypatch):
    """Every site at every position of a padded batch (rows of 6 and 4 tokens), both directions; with one group
    per start and first layer (every run continues the cache at its own position) and with every run merged
    into earlier groups as far as the row budget allows."""
    _, hm = tiny_models(model_type, shape)
    clean, corrupted = _rows(1), _rows(20)
    metric = _projection(hm)
    sites = _sites(hm)
    columns = [[(p,)] * len(LENGTHS) for p in range(-4, 0)]
    if shape == "base":  # tensors, left-padded with masks
        (clean_ids, clean_mask), (corrupted_ids, corrupted_mask) = _left_padded(clean), _left_padded(corrupted)
        run = lambda: sweep(hm, clean_ids, corrupted_ids, sites, metric, clean_mask=clean_mask,
                            corrupted_mask=corrupted_mask)
        reference = loop(hm, corrupted, clean, [(s,) for s in sites], columns, metric)
    else:  # token lists, noising
        run = lambda: sweep(hm, clean, corrupted, sites, metric, direction="noise")
        reference = loop(hm, clean, corrupted, [(s,) for s in sites], columns, metric)
    separate = run()
    monkeypatch.setattr(plan, "measure_costs", lambda hm, ids: plan.Costs(1.0, 0.0, 0.0))  # all it can
    for result in (separate, run()):
        assert result.positions == (-4, -3, -2, -1) and result.sites == tuple(s.name for s in sites)
        assert result.row_positions[0] == ((2,), (0,))  # -4 in rows of 6 and 4 tokens
        assert (result.values - reference).abs().max().item() < TOL
    assert (reference - reference[0, 0]).abs().max().item() > 1e-3  # the entries differ: not vacuous


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text", "falcon_h1", "gpt2"]))
def test_groups_explicit_positions_and_options(tiny_models, model_type, shape):
    """Site groups, position spans, per-row positions; the result does not depend on reuse or chunking."""
    _, hm = tiny_models(model_type, shape)
    clean, corrupted = _rows(3, (5, 7)), _rows(30, (5, 7))
    metric = _projection(hm, 1)
    mixer, mlp = hm.components[0], hm.components.by_kind("mlp")[-1]
    groups = [(mixer, mlp), (Residual(1), Head(hm.components.by_kind("attention")[0], 0))]
    per_row = torch.tensor([[0, -1], [3, -2]])  # column 0: token 0 of row 0, token 3 of row 1; column 1: ...
    result = sweep(hm, clean, corrupted, groups, metric, positions=per_row)
    columns = [[(0,), (3,)], [(-1,), (-2,)]]
    assert (result.values - loop(hm, corrupted, clean, groups, columns, metric)).abs().max().item() < TOL
    spans = sweep(hm, clean, corrupted, groups, metric, positions=[(1, 3), -1])
    columns = [[(1, 3), (1, 3)], [(-1,), (-1,)]]
    assert spans.positions == ((1, 3), -1)
    assert (spans.values - loop(hm, corrupted, clean, groups, columns, metric)).abs().max().item() < TOL
    for reuse, max_rows in ((Reuse(positions=False), None), (Reuse(layers=False), 1), (Reuse(False, False), 3)):
        again = sweep(hm, clean, corrupted, groups, metric, positions=[(1, 3), -1], reuse=reuse, max_rows=max_rows)
        assert (again.values - spans.values).abs().max().item() < TOL
    assert spans.work < again.work  # the fixed base and source runs dominate a 4-run sweep: no absolute bound


def _cuts(hm) -> list[tuple]:
    """Site groups that carry everything the later computation reads: patched at every position they make the
    run the clean one. zamba2's shared blocks re-read the token embeddings beside the residual stream
    (docs/tracing.md), so there a residual site needs the embeddings with it."""
    extra = (Embeddings(),) if hm.family == "zamba2" else ()
    return [(Embeddings(),), *[(site, *extra) for site in residual_sites(hm)], (Embeddings(), *hm.components)]


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_every_position_from_the_clean_run_gives_the_clean_metric(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    clean, corrupted = _rows(5, (6, 6)), _rows(50, (6, 6))
    metric = _projection(hm, 2)
    for direction, target in (("denoise", clean), ("noise", corrupted)):
        result = sweep(hm, clean, corrupted, _cuts(hm), metric, positions=[tuple(range(6))], direction=direction)
        expected = plain_metric(hm, target, metric)
        assert (result.values - expected).abs().max().item() < TOL
        other = result.corrupted_metric if direction == "denoise" else result.clean_metric
        assert abs(expected - other) > 1e-3


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_patches_that_change_no_value_leave_the_metric(tiny_models, model_type, shape):
    """The prompts share their first 3 tokens, so every site's value there is the same in both runs; a state
    after the last token reaches no read; and a run patched from its own input is itself."""
    _, hm = tiny_models(model_type, shape)
    corrupted = _rows(7, (6, 6))
    clean = [row[:3] + other[3:] for row, other in zip(corrupted, _rows(70, (6, 6)))]
    metric = _projection(hm, 3)
    result = sweep(hm, clean, corrupted, _sites(hm), metric, positions=[0, 1, 2, (0, 2)])
    assert (result.values - result.corrupted_metric).abs().max().item() < TOL
    # States from token 1 on: recurrent_gemma's alt shape cannot patch the state after token 0 (transformers sizes
    # the conv state it decodes a first single token from by hidden_size, not lru_width; docs/tracing.md).
    if state_sites(hm):
        states = sweep(hm, clean, corrupted, "states", metric, positions=[1, 2, (1, 2), -1])
        assert (states.values - states.corrupted_metric).abs().max().item() < TOL
    sites = _sites(hm) + state_sites(hm)
    same = sweep(hm, corrupted, corrupted, sites, metric, positions=[1, 3, -1])
    assert (same.values - plain_metric(hm, corrupted, metric)).abs().max().item() < TOL


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text", "mamba2", "zamba2", "lfm2", "bamba"]))
def test_states_with_later_mixers_give_the_clean_run(tiny_models, model_type, shape):
    """The prompts differ only before token 3: every layer's state after token 2 plus every attention output
    from token 3 on carries all the clean run's information (a group with state writes inside the run)."""
    _, hm = tiny_models(model_type, shape)
    corrupted = _rows(9, (7, 7))
    clean = [other[:3] + row[3:] for row, other in zip(corrupted, _rows(90, (7, 7)))]
    metric = _projection(hm, 4)
    group = (*state_sites(hm), *hm.components.by_kind("attention"))
    result = sweep(hm, clean, corrupted, [group], metric, positions=[tuple(range(2, 7))])
    assert abs(result.values.item() - result.clean_metric) < TOL
    assert abs(result.clean_metric - result.corrupted_metric) > 1e-3


def test_state_sites_refuse_a_transformer(tiny_models):
    _, hm = tiny_models("qwen2")
    assert state_sites(hm) == []
    with pytest.raises(Exception, match="no recurrent state"):
        sweep(hm, _rows(1), _rows(2), [StateSite(0)], _projection(hm))


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text", "mamba2", "falcon_h1", "jamba", "zamba2",
                                                           "gpt2"]))
def test_a_shared_prefix_runs_nothing_there_and_equals_the_hook_loop(tiny_models, model_type, shape, monkeypatch):
    """Prompts that share their first 3 tokens: a patch there writes the base run's own values, so no forward
    runs for it, and every entry still equals the loop's. The skip needs bit-equal values: zamba2's shared block
    runs twice per forward (never skipped), and Jamba's MoE (alt shape) groups tokens by expert, so its prefix
    values may differ in the last bit and its patches there run; for them only the equality is checked."""
    from mechhybrid.tracing import fast

    _, hm = tiny_models(model_type, shape)
    corrupted = _rows(11, (6, 6))
    clean = [row[:3] + other[3:] for row, other in zip(corrupted, _rows(110, (6, 6)))]
    metric = _projection(hm, 5)
    sites = _sites(hm)
    ran = []
    original = fast.run_units
    monkeypatch.setattr(fast, "run_units", lambda hm, track, units, cache: ran.extend(units) or original(
        hm, track, units, cache))
    result = sweep(hm, clean, corrupted, sites, metric)
    reference = loop(hm, corrupted, clean, [(s,) for s in sites], [[(p,)] * 2 for p in range(6)], metric)
    assert (result.values - reference).abs().max().item() < TOL
    assert (reference[:, 3:] - result.corrupted_metric).abs().max().item() > 1e-3  # not vacuous
    columns = {u.variant % 6 for u in ran}
    assert columns and (min(columns) >= 3 or hm.family in ("zamba2", "jamba"))
