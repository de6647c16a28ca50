"""Side data: what an analysis measures that is not rows (graphs, arrays, small tables), in files beside its Result.

Byte-deterministic: the same payload gives the same bytes, whatever order its nodes, edges or attributes were
added in. Graphs are node-link JSON (read back exactly: node ids are int or str, attribute values bool, int,
finite float or str) plus a GraphML copy for other tools (Gephi, Cytoscape); arrays are `.npy` (no pickles);
tables are JSON lists of objects. numpy and networkx are imported only when side data is used.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

from mechhybrid.results.schema import CorruptResultError, finite_json, side_file
from mechhybrid.results.vocabulary import SIDE_VERSION

__all__ = ["describe", "encode", "read_side"]

_SCALARS = (bool, int, float, str)


def _kind(payload) -> str:
    if isinstance(payload, list):
        return "table"
    import numpy as np

    if isinstance(payload, np.ndarray):
        return "array"
    import networkx as nx

    if isinstance(payload, nx.Graph):
        return "graph"
    raise TypeError(f"side data is a networkx graph, a numpy array or a list of dicts, not {type(payload).__name__}")


def _node_key(node):
    return (0, node, "") if isinstance(node, int) else (1, 0, node)


def _check_graph(graph, name: str) -> None:
    for node in graph.nodes:
        if isinstance(node, bool) or not isinstance(node, (int, str)):
            raise TypeError(f"side graph {name!r}: node {node!r} is not an int or str")
    attrs = [graph.graph] + [d for _, d in graph.nodes(data=True)] + [d for *_, d in graph.edges(data=True)]
    for found in attrs:
        for key, value in found.items():
            if not isinstance(key, str) or not isinstance(value, _SCALARS) or (
                    isinstance(value, float) and not math.isfinite(value)):
                raise TypeError(f"side graph {name!r}: attribute {key!r} = {value!r} is not a bool, int, finite "
                                "float or str")


def _canonical_graph(graph):
    """A copy with graph attributes, nodes (and their attributes) and edges in sorted order."""
    out = graph.__class__()
    out.graph.update(sorted(graph.graph.items()))
    for node in sorted(graph.nodes, key=_node_key):
        out.add_node(node, **dict(sorted(graph.nodes[node].items())))
    ends = (lambda u, v: (u, v)) if graph.is_directed() else (lambda u, v: tuple(sorted((u, v), key=_node_key)))
    if graph.is_multigraph():
        edges = [(*ends(u, v), k, d) for u, v, k, d in graph.edges(keys=True, data=True)]
        edges.sort(key=lambda e: (_node_key(e[0]), _node_key(e[1]), repr(e[2])))
        for u, v, k, d in edges:
            out.add_edge(u, v, key=k, **dict(sorted(d.items())))
    else:
        edges = sorted(((*ends(u, v), d) for u, v, d in graph.edges(data=True)),
                       key=lambda e: (_node_key(e[0]), _node_key(e[1])))
        for u, v, d in edges:
            out.add_edge(u, v, **dict(sorted(d.items())))
    return out


def _table_columns(rows: list, name: str) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        if not isinstance(row, dict) or not all(isinstance(k, str) for k in row):
            raise TypeError(f"side table {name!r}: every row is a dict with str keys")
        for key, value in row.items():
            if value is not None and not isinstance(value, _SCALARS):
                raise TypeError(f"side table {name!r}: {key} = {value!r} is not a JSON scalar")
            columns.setdefault(key)
    return list(columns)


def describe(payload, name: str) -> tuple[str, list[int], int]:
    """(kind, shape, format version) of a side payload; TypeError if it is not one this module writes."""
    kind = _kind(payload)
    if kind == "graph":
        _check_graph(payload, name)
        return kind, [payload.number_of_nodes(), payload.number_of_edges()], SIDE_VERSION
    if kind == "array":
        if payload.dtype.hasobject:
            raise TypeError(f"side array {name!r}: object arrays cannot be stored without pickles")
        return kind, [int(d) for d in payload.shape], SIDE_VERSION
    return kind, [len(payload), len(_table_columns(payload, name))], SIDE_VERSION


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n").encode("utf-8")


def encode(analysis: str, name: str, payload) -> dict[str, bytes]:
    """file name -> bytes of side data `name` (a graph: its node-link JSON and GraphML; else one file)."""
    kind = describe(payload, name)[0]
    if kind == "graph":
        import networkx as nx

        graph = _canonical_graph(payload)
        data = nx.node_link_data(graph, edges="edges")
        graphml = io.BytesIO()
        nx.write_graphml(graph, graphml, prettyprint=True)
        return {side_file(analysis, name, kind): _json_bytes(data),
                side_file(analysis, name, kind, "graphml"): graphml.getvalue()}
    if kind == "array":
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(payload), allow_pickle=False)
        return {side_file(analysis, name, kind): buffer.getvalue()}
    return {side_file(analysis, name, kind): _json_bytes(finite_json(payload))}


def _entry(result, name: str) -> tuple[str, dict]:
    obj = result if isinstance(result, dict) else result.to_dict()
    for entry in obj["side"]:
        if entry["name"] == name:
            return obj["model"]["name"], dict(entry, analysis=obj["analysis"])
    listed = ", ".join(e["name"] for e in obj["side"]) or "none"
    raise KeyError(f"{obj['analysis']} of {obj['model']['name']} has no side data {name!r} (it has: {listed})")


def _decode(kind: str, path: Path):
    if kind == "graph":
        import networkx as nx

        return nx.node_link_graph(json.loads(path.read_text(encoding="utf-8")), edges="edges")
    if kind == "array":
        import numpy as np

        return np.load(path, allow_pickle=False)
    rows = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("not a list of objects")
    return rows


def read_side(result, name: str, root):
    """Side data `name` of `result` (a Result or its dict) under the output folder `root`: a networkx graph,
    a numpy array or a list of dicts. CorruptResultError if its file is missing, unreadable, of another
    format version, or not of the listed shape."""
    from mechhybrid.results.files import result_path

    model, entry = _entry(result, name)
    path = result_path(root, model, entry["analysis"]).parent / entry["file"]
    if entry["version"] != SIDE_VERSION:
        raise CorruptResultError(path, f"side data version {entry['version']}, this mechhybrid reads "
                                       f"{SIDE_VERSION}; re-run the analysis")
    try:
        payload = _decode(entry["kind"], path)
        shape = describe(payload, name)[1]
    except (OSError, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptResultError(path, f"side data {name!r} unreadable ({reason})") from None
    if shape != entry["shape"]:
        raise CorruptResultError(path, f"side data {name!r} has shape {shape}, the Result lists {entry['shape']}")
    return payload

