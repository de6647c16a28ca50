"""Circuit measurements -> result rows (docs/circuits.md lists them).

- summary (condition `circuit`): `circuit_nodes`, `circuit_heads`, `circuit_states` (method `attribution`: what
  the pruned graph holds), `faithfulness` and `completeness` (method `patch`: measured by running the model), each
  with coordinate `k` = the circuit's edges;
- the curve: condition `curve:top`, metric `faithfulness`, coordinate `k` (edges kept, by |score|); condition
  `curve:random`, the same with `trial` (one random circuit of k edges each);
- the unablated runs: condition `baseline`, metric `logit_diff_raw`, coordinate `run` (clean | corrupted);
- the drawing: one `node_score` row per node of the chosen circuit (coords `node`, `kind`, `layer`, `head` where
  it is one, `position` where it is a state) and one `edge_score` row per edge (coords `sender`, `receiver`,
  `edge_kind`, `layer` = the sender's, and `position` = its token where edges are positional).
"""

from __future__ import annotations

import math

from ..schema import Row

__all__ = ["summary_rows", "curve_rows", "baseline_rows", "graph_rows"]


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def summary_rows(counts: dict, faithful: float, complete: float, n: int, seed: int) -> list[Row]:
    coords = {"k": counts["edges"]}
    rows = [Row("circuit", "attribution", f"circuit_{what}", float(counts[what]), n=n, seed=seed, coords=coords)
            for what in ("nodes", "heads", "states")]
    rows.append(Row("circuit", "patch", "faithfulness", _finite(faithful), n=n, seed=seed, coords=coords))
    rows.append(Row("circuit", "patch", "completeness", _finite(complete), n=n, seed=seed, coords=coords))
    return rows


def curve_rows(sizes: list[int], top: list[float], random: dict, n: int, seed: int) -> list[Row]:
    """`random[k]`: the faithfulness of each random circuit of k edges."""
    rows = [Row("curve:top", "patch", "faithfulness", _finite(v), n=n, seed=seed, coords={"k": k})
            for k, v in zip(sizes, top)]
    for k, values in random.items():
        rows += [Row("curve:random", "patch", "faithfulness", _finite(v), n=n, seed=seed,
                     coords={"k": k, "trial": t}) for t, v in enumerate(values)]
    return rows


def baseline_rows(clean: float, corrupted: float, n: int, seed: int) -> list[Row]:
    return [Row("baseline", "none", "logit_diff_raw", _finite(v), n=n, seed=seed, coords={"run": run})
            for run, v in (("clean", clean), ("corrupted", corrupted))]


def graph_rows(graph, n: int, seed: int) -> list[Row]:
    rows = []
    for node, d in sorted(graph.nodes(data=True)):
        coords = {"node": node, "kind": d["kind"], "layer": d["layer"]}
        if d["head"] >= 0:
            coords["head"] = d["head"]
        if d["position"] != "all":
            coords["position"] = int(d["position"])
        rows.append(Row(f"node:{node}", "attribution", "node_score", _finite(d["score"]), n=n, seed=seed,
                        coords=coords))
    for u, v, d in sorted(_edges(graph), key=lambda e: (e[0], e[1], e[2].get("position", ""))):
        coords = {"sender": u, "receiver": v, "edge_kind": d["kind"], "layer": graph.nodes[u]["layer"]}
        name = f"edge:{u}->{v}"
        if d.get("position", "all") != "all":
            coords["position"] = int(d["position"])
            name += f"@{d['position']}"
        rows.append(Row(name, "attribution", "edge_score", _finite(d["score"]), n=n, seed=seed, coords=coords))
    return rows


def _edges(graph) -> list[tuple]:
    """(u, v, attributes) of every edge; a positional graph's parallel edges each once."""
    if graph.is_multigraph():
        return [(u, v, d) for u, v, _, d in graph.edges(keys=True, data=True)]
    return list(graph.edges(data=True))
