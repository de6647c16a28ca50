"""Positional edges (an edge per token: sender -> receiver at position p) against the independent references of
tests/core/test_circuits.py: plain torch hooks read the senders, a plain pre-hook gives the receiver alone
`in_scale * norm(residual + eps * direction)` with the direction zero at every position but p, and autograd takes
d metric / d eps at 0; one (edge, position) ablated is the same forward at eps = 1.
"""

from __future__ import annotations

import networkx as nx
import pytest
import torch

import mechhybrid
from mechhybrid.circuits import (NO_POSITION, circuit_graph, discover, edge_scores, faithfulness, graph_counts,
                                 prune, random_keeps, ranked_edges, state_nodes)
from mechhybrid.errors import MechHybridError
from mechhybrid.tracing import LogitDiff
from tests.core.test_circuits import (ANSWERS, WRONG, _injected, _pairs, _picked_edges, _raw, _sender_value,
                                      models, written_and_read_back)  # noqa: F401 (models: the shared module-scoped fixture)

FAMILIES = ("llama", "qwen3_5_text", "mamba2", "falcon_h1", "jamba", "recurrent_gemma")
SEQ = 7
"""The prompts' length (tests/core/test_circuits.py `_pairs`): the position axis."""


def _at(direction: torch.Tensor, p: int) -> torch.Tensor:
    """The direction at position p alone (zero elsewhere)."""
    out = torch.zeros_like(direction)
    out[:, p] = direction[:, p]
    return out


def _direction(hf, hm, family, sender, clean, corrupted) -> torch.Tensor:
    return (_sender_value(hf, hm, family, sender, corrupted) - _sender_value(hf, hm, family, sender, clean)).detach()


@pytest.mark.parametrize("family", FAMILIES)
def test_positional_scores_sum_to_the_edge_scores_and_equal_first_order_terms(models, family):
    hf, hm = models(family)
    clean, corrupted = _pairs()
    metric = LogitDiff(ANSWERS, WRONG)
    plain = edge_scores(hm, clean, corrupted, metric)
    scores = edge_scores(hm, clean, corrupted, metric, positional=True, wiring=plain.wiring)
    assert scores.positional and scores.values.shape == (*plain.wiring.valid.shape, SEQ)
    assert scores.work == plain.work == 3
    assert (scores.values.sum(-1) - plain.values).abs().max() < 1e-6
    assert (scores.summed().raw - plain.raw).abs().max() < 1e-6
    assert not bool(scores.values[~scores.valid].any())
    for i, j in _picked_edges(scores.wiring)[:3]:
        sender, receiver = scores.wiring.senders[i], scores.wiring.receivers[j]
        direction = _direction(hf, hm, family, sender, clean, corrupted)
        for p in (0, 2, SEQ - 1):
            eps = torch.zeros((), requires_grad=True)
            with torch.enable_grad():
                value = _raw(_injected(hf, family, receiver, _at(direction, p), clean, eps))
                (grad,) = torch.autograd.grad(value, eps)
            assert abs(float(scores.raw[i, j, p]) - float(grad)) < 1e-5, (sender.name, receiver.name, p)


@pytest.mark.parametrize("family", FAMILIES)
def test_positional_path_patching_identities(models, family):
    """Every (edge, position) kept: the clean run; every one ablated: the corrupted run; one ablated: the hand
    injection of that sender's corrupted value at that position alone."""
    hf, hm = models(family)
    clean, corrupted = _pairs()
    metric = LogitDiff(ANSWERS, WRONG)
    wiring = discover(hm)
    valid = wiring.valid[:, :, None].expand(-1, -1, SEQ)
    scores = edge_scores(hm, clean, corrupted, metric, positional=True, wiring=wiring)
    # The (edge, position) of largest first-order effect, so that its injection shows in the metric.
    i, j, p = (int(x) for x in torch.unravel_index(scores.raw.abs().argmax(), scores.raw.shape))
    minus_one = valid.clone()
    minus_one[i, j, p] = False
    keeps = torch.stack([valid, torch.zeros_like(valid), minus_one])
    measured = faithfulness(hm, clean, corrupted, metric, keeps, wiring=wiring)
    with torch.no_grad():
        clean_raw, corrupted_raw = float(_raw(hf(clean).logits)), float(_raw(hf(corrupted).logits))
        direction = _direction(hf, hm, family, wiring.senders[i], clean, corrupted)
        one_raw = float(_raw(_injected(hf, family, wiring.receivers[j], _at(direction, p), clean, 1.0)))
    assert abs(measured.raw[0] - clean_raw) < 1e-4
    assert abs(measured.raw[1] - corrupted_raw) < 1e-4
    assert abs(measured.raw[2] - one_raw) < 1e-4
    assert abs(one_raw - clean_raw) > 1e-6  # the injection reaches the metric


def test_positional_edge_ablated_at_every_position_is_the_edge_ablated(models):
    hf, hm = models("falcon_h1")
    clean, corrupted = _pairs()
    metric = LogitDiff(ANSWERS, WRONG)
    wiring = discover(hm)
    i, j = _picked_edges(wiring)[1]
    edge = wiring.valid.clone()
    edge[i, j] = False
    positional = wiring.valid[:, :, None].repeat(1, 1, SEQ)
    positional[i, j, :] = False
    plain = faithfulness(hm, clean, corrupted, metric, edge[None], wiring=wiring)
    per_token = faithfulness(hm, clean, corrupted, metric, positional[None], wiring=wiring)
    assert abs(float(plain.raw[0]) - float(per_token.raw[0])) < 1e-5


def test_positional_pruning_graph_and_round_trip(models, tmp_path):
    hf, hm = models("mamba2")
    clean, corrupted = _pairs()
    metric = LogitDiff(ANSWERS, WRONG)
    scores = edge_scores(hm, clean, corrupted, metric, positional=True)
    ranked = ranked_edges(scores)
    assert ranked.shape[1] == 3
    magnitude = scores.values[tuple(ranked.T)].abs()
    assert bool((magnitude[:-1] >= magnitude[1:]).all())
    keep = prune(scores, top_n=12)
    assert keep.shape == scores.values.shape and int(keep.sum()) == 12
    assert float(scores.values.abs()[keep].min()) >= float(scores.values.abs()[~keep].max())
    frac = prune(scores, fraction=0.5)
    assert float(scores.values.abs()[frac].sum()) >= 0.5 * float(scores.values.abs().sum())
    draws = random_keeps(scores.valid, 7, 2, seed=3)
    assert draws.shape == (2, *scores.values.shape) and draws.sum((1, 2, 3)).tolist() == [7, 7]
    graph = circuit_graph(scores, keep, state_nodes(hm, clean, corrupted, metric))
    assert isinstance(graph, nx.MultiDiGraph) and graph_counts(graph)["edges"] == 12
    for u, v, key, d in graph.edges(keys=True, data=True):
        if d["kind"] == "residual":
            i = [s.name for s in scores.wiring.senders].index(u)
            j = [r.name for r in scores.wiring.receivers].index(v)
            assert d["position"] == str(key) and keep[i, j, key] and d["score"] == float(scores.values[i, j, key])
        else:
            assert key == NO_POSITION and d["position"] == "all"
    # Node scores are the summed (non-positional) ones.
    summed = circuit_graph(scores.summed(), keep.any(-1))
    for node, d in graph.nodes(data=True):
        if node in summed:
            assert d["score"] == pytest.approx(summed.nodes[node]["score"], abs=1e-6)
    back, graphml = written_and_read_back(hm, graph, tmp_path)
    edges = lambda g: {(u, v, k): d for u, v, k, d in g.edges(keys=True, data=True)}  # noqa: E731
    for other in (back, nx.read_graphml(graphml, force_multigraph=True)):
        assert isinstance(other, nx.MultiDiGraph)
        assert dict(other.nodes(data=True)) == dict(graph.nodes(data=True))
        assert edges(other) == edges(graph)


def test_positional_bad_input_is_one_line(models):
    hf, hm = models("llama")
    metric = LogitDiff(ANSWERS, WRONG)
    clean = [[5, 6, 7, 8, 9, 10, 11], [5, 6, 7, 8, 9]]
    corrupted = [[5, 6, 20, 8, 9, 10, 11], [5, 6, 20, 8, 9]]
    edge_scores(hm, clean, corrupted, metric)  # rows of two lengths are fine without positions
    checks = [lambda: edge_scores(hm, clean, corrupted, metric, positional=True),
              lambda: faithfulness(hm, clean, corrupted, metric,
                                   discover(hm).valid[None, :, :, None].expand(1, -1, -1, 7))]
    for check in checks:
        with pytest.raises(MechHybridError, match="one length") as info:
            check()
        assert "\n" not in str(info.value)
    a, b = _pairs()
    scores = edge_scores(hm, a, b, metric, positional=True)
    with pytest.raises(MechHybridError) as info:  # a position axis of the wrong width
        faithfulness(hm, a, b, metric, scores.valid[None, :, :, :3])
    assert "\n" not in str(info.value)
    with pytest.raises(MechHybridError) as info:
        circuit_graph(scores, scores.wiring.valid)
    assert "\n" not in str(info.value)
