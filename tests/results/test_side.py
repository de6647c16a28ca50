"""Side data: graphs, arrays and tables written beside their Result, read back equal, byte for byte the same."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

from mechhybrid.errors import MechHybridError
from mechhybrid.results import (CorruptResultError, Result, Row, iter_result_paths, read_result, read_result_dict,
                                read_side, result_path, write_result)
from tests.results.helpers import MODEL


def _result(analysis="tracing") -> Result:
    return Result(analysis=analysis, model=MODEL, config={}, method="patch", data=[], seed=0, versions={},
                  rows=[Row("patch:0", "patch", "effect", 0.5, coords={"layer": 0, "position": "last"})])


def _graph(order=1, directed=True):
    """The same circuit whichever order its parts are added in (order = 1 or -1)."""
    graph = nx.DiGraph() if directed else nx.Graph()
    graph.graph["title"] = "circuit"
    nodes = [("L0.attention", {"layer": 0, "kind": "attention", "score": 0.5}), ("logits", {"layer": 4}),
             (7, {"kind": "head", "layer": 1, "keep": True})]
    edges = [("L0.attention", 7, {"weight": 0.25}), (7, "logits", {"weight": 1 / 3, "sign": "+"}),
             ("L0.attention", "logits", {"weight": -2.0})]
    for node, attrs in nodes[::order]:
        graph.add_node(node, **dict(list(attrs.items())[::order]))
    for u, v, attrs in edges[::order]:
        graph.add_edge(*((u, v) if directed or order == 1 else (v, u)), **dict(list(attrs.items())[::order]))
    return graph


def _same_graph(a, b) -> bool:
    def edges(g):  # an undirected edge has no orientation
        return {(u, v) if g.is_directed() else frozenset((u, v)): d for u, v, d in g.edges(data=True)}
    return (a.is_directed() == b.is_directed() and a.graph == b.graph
            and dict(a.nodes(data=True)) == dict(b.nodes(data=True)) and edges(a) == edges(b))


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("directed", [True, False])
def test_graph_round_trip_and_the_same_bytes_whatever_the_order(tmp_path, directed):
    res = _result()
    entry = res.attach("circuit", _graph(1, directed))
    assert (entry.kind, entry.file, entry.shape, entry.version) == ("graph", "tracing.circuit.json", [3, 3], 1)
    path = write_result(res, tmp_path / "a")
    back = read_side(read_result(path), "circuit", tmp_path / "a")
    assert _same_graph(back, _graph(1, directed))
    assert isinstance(back, nx.DiGraph if directed else nx.Graph) and back.nodes[7]["keep"] is True
    # GraphML beside it, for other tools: the same nodes, edges and attributes (GraphML ids are strings).
    graphml = nx.read_graphml(path.parent / "tracing.circuit.graphml")
    assert sorted(graphml.nodes) == ["7", "L0.attention", "logits"]
    assert graphml.edges["7", "logits"]["weight"] == 1 / 3 and graphml.nodes["7"]["keep"] is True
    # Built in the opposite order: identical bytes, Result JSON included.
    other = _result()
    other.attach("circuit", _graph(-1, directed))
    write_result(other, tmp_path / "b")
    folder = path.parent
    assert _files(folder) == _files(tmp_path / "b" / folder.relative_to(tmp_path / "a"))
    data = json.loads((folder / "tracing.circuit.json").read_text())
    assert [n["id"] for n in data["nodes"]] == [7, "L0.attention", "logits"]  # sorted, ints first


def test_array_and_table_round_trip_deterministic(tmp_path):
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)[:, ::-1]  # not contiguous
    array[0, 0, 0] = np.nan
    table = [{"head": 1, "score": 0.5, "name": "a"}, {"head": 2, "score": None, "name": "b", "extra": True}]
    texts = []
    for folder in ("a", "b"):
        res = _result()
        assert res.attach("scores", array).shape == [2, 3, 4]
        assert res.attach("heads", table).shape == [2, 4]
        texts.append(_files(write_result(res, tmp_path / folder).parent))
    assert texts[0] == texts[1] and sorted(texts[0]) == ["tracing.heads.json", "tracing.json", "tracing.scores.npy"]
    res = read_result_dict(result_path(tmp_path / "a", MODEL["name"], "tracing"))
    back = read_side(res, "scores", tmp_path / "a")
    assert back.dtype == np.float32 and np.array_equal(back, array, equal_nan=True)
    assert read_side(res, "heads", tmp_path / "a") == table
    assert [e["name"] for e in res["side"]] == ["scores", "heads"]


def test_side_files_are_not_results(tmp_path):
    res = _result()
    res.attach("heads", [{"head": 1}])
    write_result(res, tmp_path)
    assert [p.name for p in iter_result_paths(tmp_path)] == ["tracing.json"]


def test_bad_payloads_and_names_are_refused():
    with pytest.raises(TypeError, match="object arrays"):
        _result().attach("x", np.array([{}, 1], dtype=object))
    with pytest.raises(TypeError, match="not a bool, int, finite float or str"):
        _result().attach("g", nx.Graph([(1, 2, {"w": [1]})]))
    with pytest.raises(TypeError, match=r"node \(1, 2\) is not an int or str"):
        _result().attach("g", nx.Graph([((1, 2), 3)]))
    with pytest.raises(TypeError, match="a networkx graph, a numpy array or a list of dicts"):
        _result().attach("x", {"a": 1})
    with pytest.raises(ValueError, match="name 'Bad name' is not a unique lower_case name"):
        _result().attach("Bad name", [{"a": 1}])
    res = _result()
    res.attach("x", [{"a": 1}])
    with pytest.raises(MechHybridError, match="attached twice"):
        res.attach("x", [{"a": 2}])


def test_missing_or_altered_side_files_are_named(tmp_path):
    res = _result()
    res.attach("scores", np.zeros((2, 2)))
    res.attach("heads", [{"head": 1}])
    path = write_result(res, tmp_path)
    with pytest.raises(KeyError, match="has no side data 'nope'"):
        read_side(res, "nope", tmp_path)
    np.save(path.parent / "tracing.scores.npy", np.zeros(3))
    with pytest.raises(CorruptResultError, match=r"tracing.scores.npy: side data 'scores' has shape \[3\], the "
                                                 r"Result lists \[2, 2\]"):
        read_side(res, "scores", tmp_path)
    (path.parent / "tracing.heads.json").unlink()
    with pytest.raises(CorruptResultError, match="tracing.heads.json: side data 'heads' unreadable"):
        read_side(res, "heads", tmp_path)
    # Read back from disk, the Result holds no payloads: writing it elsewhere needs its side files there.
    with pytest.raises(MechHybridError, match="side data 'scores' has no payload"):
        write_result(read_result(path), tmp_path / "elsewhere")
