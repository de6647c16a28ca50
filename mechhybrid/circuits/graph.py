"""Pruning edge scores to a circuit, and the circuit as a networkx DiGraph.

`prune(scores, top_n=...)` keeps the n edges of largest |score|; `prune(scores, fraction=f)` the smallest set of
edges, taken in order of |score|, whose summed |score| reaches f of the sum over every edge. Ties keep the
earlier edge (sender-major order), so pruning is deterministic.

`circuit_graph(scores, keep, states)`: nodes are the senders and receivers the kept edges touch. A component
without heads is one node (it receives, then sends); a component with heads is a receiver node (its input) and
one sender node per head, joined by `internal` edges (the head reads the component's input; no score, never
ablated). Node attributes: `kind` (embedding, logits, state or the component kind), `layer` (-1 for the
embedding, n_layers for the logits), `head` (-1 for none), `position` ("all", or a state node's token), `score`
(the embedding, a component and a head: the sum of its edges' scores over every receiver, its first-order
effect, a component with heads its heads' total; the logits: the sum over every edge into them; a state: its
state attribution), all over every valid edge, not only the kept ones.
Edge attributes: `score`, `kind` (`residual`, `internal`, `state`).

State nodes (`mechhybrid.circuits.states`) join where their layer's mixer is in the circuit and their |score| is
at least the smallest |score| of a kept residual edge, with two `state` edges: mixer input -> state (the mixer
writes it from its input at tokens <= p) and state -> the mixer's sender nodes in the circuit (its output at
tokens > p reads it). Both carry the state's score. They describe; they are not ablated on their own: the
evaluation ablates residual edges, so a state's part is measured through its mixer's edges.

Positional scores (`edge_scores(..., positional=True)`): an edge is (sender, receiver, position), ranked and
pruned the same way (`keep` is `[sender, receiver, position]`). Nodes stay per component and head; the graph is a
networkx MultiDiGraph whose residual edges are keyed by their position (int) and carry `position` (the token, as
a str) besides `score` and `kind`; internal and state edges have key -1 and position "all". Node scores are the
summed (non-positional) ones. node-link JSON reads back as it is; GraphML reads back identically with
`networkx.read_graphml(path, force_multigraph=True)` (without it, a file with no parallel edges becomes a DiGraph).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mechhybrid.circuits.scores import EdgeScores
from mechhybrid.circuits.wiring import LOGITS
from mechhybrid.errors import MechHybridError

__all__ = ["NO_POSITION", "prune", "ranked_edges", "circuit_graph", "graph_counts"]


NO_POSITION = -1
"""The edge key of internal and state edges in a positional graph (residual edges are keyed by their token)."""


def ranked_edges(scores: EdgeScores) -> torch.Tensor:
    """`[edge, 2]` (sender, receiver) of every valid edge, or `[edge, 3]` (sender, receiver, position) for
    positional scores, by |score| descending (ties: sender-major order)."""
    edges = scores.valid.nonzero()
    magnitude = scores.values[tuple(edges.T)].abs()
    order = torch.from_numpy(np.lexsort((np.arange(len(edges)), -magnitude.double().numpy())))
    return edges[order]


def _keep(scores: EdgeScores, edges: torch.Tensor) -> torch.Tensor:
    keep = torch.zeros_like(scores.valid)
    keep[tuple(edges.T)] = True
    return keep


def prune(scores: EdgeScores, top_n: int | None = None, fraction: float | None = None) -> torch.Tensor:
    """`[sender, receiver]` (positional: `[sender, receiver, position]`) bool: the kept edges (module docstring).
    Exactly one of `top_n`, `fraction`."""
    if (top_n is None) == (fraction is None):
        raise MechHybridError("circuit target: give exactly one of top_n (edges kept) and fraction (of the summed "
                              "effect kept)")
    ranked = ranked_edges(scores)
    magnitude = scores.values[tuple(ranked.T)].abs()
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1 \
                or not math.isfinite(fraction):
            raise MechHybridError(f"circuit target fraction {fraction!r} is outside (0, 1]")
        total = float(magnitude.sum())
        cumulative = magnitude.double().cumsum(0)
        n = int((cumulative < fraction * total * (1 - 1e-9)).sum()) + 1 if total > 0 else 0
    else:
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise MechHybridError(f"circuit target top_n {top_n!r} must be an integer >= 1")
        n = min(top_n, len(ranked))
    kept = ranked[:n][magnitude[:n] > 0]
    if len(kept) == 0:
        raise MechHybridError(f"the circuit is empty after pruning: every one of the {len(ranked)} edges scores 0 "
                              f"on metric {scores.metric} (do the clean and corrupted prompts differ where it reads?)")
    return _keep(scores, kept)


def _attrs(kind: str, layer: int, head, position="all", score: float = 0.0) -> dict:
    return {"kind": kind, "layer": int(layer), "head": -1 if head is None else int(head), "position": str(position),
            "score": float(score)}


def _node_scores(scores: EdgeScores) -> dict:
    """name -> score: a sender's summed edge scores, a component with heads its heads' total, the logits the sum
    over the edges into them (every valid edge, not only the kept ones)."""
    scores = scores.summed()
    out_sum, wiring = scores.values.sum(1), scores.wiring
    found = {LOGITS: float(scores.values[:, -1].sum())}
    for i, s in enumerate(wiring.senders):
        found[s.name] = float(out_sum[i])
        if s.head is not None:
            found[s.component.name] = found.get(s.component.name, 0.0) + float(out_sum[i])
    return found


def _edge(graph, u: str, v: str, score: float, kind: str, position=None) -> None:
    """One edge: plain in a DiGraph; keyed by its position (NO_POSITION for none) in a positional MultiDiGraph."""
    if not graph.is_multigraph():
        graph.add_edge(u, v, score=score, kind=kind)
        return
    key = NO_POSITION if position is None else int(position)
    graph.add_edge(u, v, key=key, score=score, kind=kind, position="all" if position is None else str(position))


def circuit_graph(scores: EdgeScores, keep: torch.Tensor, states=()):
    """The DiGraph (positional scores: MultiDiGraph) of the kept edges (module docstring)."""
    import networkx as nx

    if tuple(keep.shape) != tuple(scores.values.shape):
        raise MechHybridError(f"keep has shape {tuple(keep.shape)}, the scores {tuple(scores.values.shape)}")
    wiring, values, totals = scores.wiring, scores.values, _node_scores(scores)
    kind = nx.MultiDiGraph if scores.positional else nx.DiGraph
    graph = kind(metric=scores.metric, method=scores.method, direction=scores.direction,
                 normalised=scores.normalised)
    kept = keep & scores.valid
    for i, j, *at in kept.nonzero().tolist():
        s, r = wiring.senders[i], wiring.receivers[j]
        graph.add_node(s.name, **_attrs(s.kind, s.layer, s.head, score=totals[s.name]))
        if s.head is not None:
            c = s.component
            graph.add_node(c.name, **_attrs(c.kind, c.layer, None, score=totals[c.name]))
            _edge(graph, c.name, s.name, 0.0, "internal")
        graph.add_node(r.name, **_attrs(r.kind, r.layer, None, score=totals.get(r.name, 0.0)))
        _edge(graph, s.name, r.name, float(values[(i, j, *at)]), "residual", at[0] if at else None)
    _add_states(graph, scores, kept, states)
    return graph


def _add_states(graph, scores: EdgeScores, keep: torch.Tensor, states) -> None:
    if not states:
        return
    kept = scores.values[keep].abs()
    floor = float(kept.min()) if len(kept) else math.inf
    carriers = {}
    for s in scores.wiring.senders:
        if s.component is not None and s.kind != "mlp":
            carriers.setdefault(s.component.layer, []).append(s)
    for node in states:
        mixer = [s for s in carriers.get(node.layer, ()) if s.name in graph or s.component.name in graph]
        if not mixer or abs(node.value) < floor:
            continue
        component = mixer[0].component
        graph.add_node(node.name, **_attrs("state", node.layer, None, node.position, node.value))
        graph.add_node(component.name, **dict(graph.nodes.get(component.name) or _attrs(
            component.kind, component.layer, None)))
        _edge(graph, component.name, node.name, float(node.value), "state")
        for s in carriers[node.layer]:
            if s.head is not None and s.name in graph:
                _edge(graph, node.name, s.name, float(node.value), "state")
        if not any(s.head is not None for s in carriers[node.layer]):
            _edge(graph, node.name, component.name, float(node.value), "state")


def graph_counts(graph) -> dict:
    """nodes (every node but the embedding and the logits), heads, states, residual edges."""
    kinds = [d["kind"] for _, d in graph.nodes(data=True)]
    return {
        "nodes": sum(k not in ("embedding", "logits") for k in kinds),
        "heads": sum(d["head"] >= 0 for _, d in graph.nodes(data=True)),
        "states": kinds.count("state"),
        "edges": sum(d["kind"] == "residual" for *_, d in graph.edges(data=True)),
    }
