"""The circuits analysis on a zoo hybrid (small sizes), its view, and its bad inputs through the CLI."""

from __future__ import annotations

import json

import networkx as nx
import pytest
import torch

import mechhybrid
from analyses.circuits import CircuitsConfig, run
from analyses.cli import main
from analyses.patching.pairs import zoo_pairs
from mechhybrid.circuits import discover, faithfulness, graph_counts
from mechhybrid.errors import MechHybridError
from mechhybrid.results import read_result, read_side
from mechhybrid.tracing import LogitDiff
from reports.views import view_for

CFG = dict(pairs=4, length=24, sizes=(5, 20), random_trials=2)


@pytest.fixture(scope="module")
def hm_griffin():
    return mechhybrid.load("zoo:hybrid-griffin")


def _rows(result, condition, metric=None):
    return [r for r in result.rows if r.condition == condition and (metric is None or r.metric == metric)]


def test_rows_measured_by_running_the_model(hm_griffin):
    cfg = CircuitsConfig(**CFG)
    result = run(hm_griffin, cfg)
    summary = {r.metric: r for r in _rows(result, "circuit")}
    assert set(summary) == {"circuit_nodes", "circuit_heads", "circuit_states", "faithfulness", "completeness"}
    k = summary["faithfulness"].coords["k"]
    edges = [r for r in result.rows if r.metric == "edge_score" and r.coords["edge_kind"] == "residual"]
    assert len(edges) == k
    # The summary's faithfulness is a forward of the model with every other edge ablated, here redone by hand.
    wiring = discover(hm_griffin)
    names = ([s.name for s in wiring.senders], [r.name for r in wiring.receivers])
    keep = torch.zeros_like(wiring.valid)
    for row in edges:
        keep[names[0].index(row.coords["sender"]), names[1].index(row.coords["receiver"])] = True
    pairs = zoo_pairs("needle_value", cfg.pairs, cfg.length, cfg.depth, cfg.seed)
    metric = LogitDiff(pairs.answers, pairs.corrupted_answers)
    again = faithfulness(hm_griffin, pairs.clean, pairs.corrupted, metric, torch.stack([keep, wiring.valid & ~keep]))
    assert summary["faithfulness"].value == pytest.approx(float(again.values[0]), abs=1e-5)
    assert summary["completeness"].value == pytest.approx(float(again.values[1]), abs=1e-5)
    top = {r.coords["k"]: r.value for r in _rows(result, "curve:top")}
    assert sorted(top) == [5, 20, wiring.n_edges] and top[wiring.n_edges] == pytest.approx(1.0, abs=1e-4)
    randoms = _rows(result, "curve:random")
    assert sorted((r.coords["k"], r.coords["trial"]) for r in randoms) == [(5, 0), (5, 1), (20, 0), (20, 1)]
    assert result.extra["state_positions"] == sorted(result.extra["state_positions"])


def test_written_graph_reloads_and_view_draws_it(hm_griffin, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("[circuits]\npairs = 4\nlength = 24\nsizes = [5]\nrandom_trials = 2\n")
    out = tmp_path / "out"
    code = main(["run", "circuits", "--model", "zoo:hybrid-griffin", "--out", str(out), "--config", str(config),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    (path,) = out.glob("results/*/circuits.json")
    result = read_result(path)
    graph = read_side(result, "circuit", out)
    (graphml,) = out.glob("results/*/*.graphml")
    other = nx.read_graphml(graphml)
    assert dict(other.nodes(data=True)) == dict(graph.nodes(data=True))
    summary = {r.metric: r.value for r in _rows(result, "circuit")}
    counts = graph_counts(graph)
    assert (summary["circuit_nodes"], summary["circuit_heads"], summary["circuit_states"]) == (
        counts["nodes"], counts["heads"], counts["states"])
    view = view_for("circuits")
    saved = json.loads(path.read_text())
    charts = view.charts(saved, None)
    assert len(charts) == 2
    for chart in charts:
        chart.to_dict()  # validates against the Vega-Lite schema
    from reports.views.circuits import circuit_findings, layout_records

    points, rules = layout_records(saved)
    assert {p["node"] for p in points} == set(graph.nodes)
    assert len(rules) == graph.number_of_edges()
    found = circuit_findings(saved)
    kept = sum(kind == "residual" for _, _, kind in graph.edges(data="kind"))  # the others: head -> component
    inner = sum(kind not in ("embedding", "logits") for _, kind in graph.nodes(data="kind"))
    assert f'keeps <data value="{kept}">{kept}</data> edges over <data value="{inner}">{inner}</data> nodes' in found[0]
    heads = [n for n, d in graph.nodes(data=True) if d["kind"] == "attention" and d["head"] >= 0]
    assert ("no attention head" in " ".join(found)) == (not heads)


@pytest.mark.parametrize("line, words", [("target = 1.5", "outside (0, 1]"), ("target = 0.0", "outside (0, 1]"),
                                         ("method = \"acdc\"", "method"), ("ablation = \"zero\"", "ablation")])
def test_bad_config_through_the_cli_is_one_line(tmp_path, capsys, line, words):
    config = tmp_path / "c.toml"
    config.write_text(f"[circuits]\n{line}\n")
    out = tmp_path / "out"
    code = main(["run", "circuits", "--model", "zoo:hybrid-griffin", "--out", str(out), "--config", str(config),
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0]
    assert not out.exists()


def test_config_bad_values():
    with pytest.raises(MechHybridError, match="outside"):
        CircuitsConfig(target=-0.1)
    with pytest.raises(MechHybridError, match="sizes"):
        CircuitsConfig(sizes=(0,))


def test_positional_circuit_rows_measured_and_drawn(hm_griffin):
    """positional = true: edge rows carry their token, the chosen circuit's faithfulness is a forward with exactly
    those (edge, token) pairs kept, and the view places and names the tokens."""
    from reports.views.circuits import circuit_findings, layout_records, position_records

    cfg = CircuitsConfig(**{**CFG, "sizes": (5, 20), "positional": True})
    result = run(hm_griffin, cfg)
    summary = {r.metric: r for r in _rows(result, "circuit")}
    edges = [r for r in result.rows if r.metric == "edge_score" and r.coords["edge_kind"] == "residual"]
    assert len(edges) == summary["faithfulness"].coords["k"] and all("position" in r.coords for r in edges)
    wiring = discover(hm_griffin)
    assert result.extra["positional"] and result.extra["edges"] == wiring.n_edges * cfg.length
    names = ([s.name for s in wiring.senders], [r.name for r in wiring.receivers])
    keep = torch.zeros(*wiring.valid.shape, cfg.length, dtype=torch.bool)
    for row in edges:
        keep[names[0].index(row.coords["sender"]), names[1].index(row.coords["receiver"]), row.coords["position"]] = 1
    valid = wiring.valid[:, :, None].expand_as(keep)
    pairs = zoo_pairs("needle_value", cfg.pairs, cfg.length, cfg.depth, cfg.seed)
    metric = LogitDiff(pairs.answers, pairs.corrupted_answers)
    again = faithfulness(hm_griffin, pairs.clean, pairs.corrupted, metric, torch.stack([keep, valid & ~keep]))
    assert summary["faithfulness"].value == pytest.approx(float(again.values[0]), abs=1e-5)
    assert summary["completeness"].value == pytest.approx(float(again.values[1]), abs=1e-5)
    top = {r.coords["k"]: r.value for r in _rows(result, "curve:top")}
    assert sorted(top) == [5, 20, result.extra["edges"]] and top[result.extra["edges"]] == pytest.approx(1.0, abs=1e-4)
    saved = json.loads(json.dumps(result.to_dict()))
    points, rules = layout_records(saved)
    residual = [r for r in rules if r["edge_kind"] == "residual"]
    assert sorted(r["position"] for r in residual) == sorted(r.coords["position"] for r in edges)
    tokens = position_records(rules)
    assert sum(t["edges"] for t in tokens) == len(edges)
    # Left to right by token inside each receiver's band.
    for receiver in {r["receiver"] for r in residual}:
        ends = sorted((r["position"], r["x2"]) for r in residual if r["receiver"] == receiver)
        assert [x for _, x in ends] == sorted(x for _, x in ends)
    assert any("per token" in line for line in circuit_findings(saved))
    for chart in view_for("circuits").charts(saved, None):
        chart.to_dict()
