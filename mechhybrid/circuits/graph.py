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
"""

from __future__ import annotations

import math

import torch

from mechhybrid.circuits.scores import EdgeScores
from mechhybrid.circuits.wiring import LOGITS
from mechhybrid.errors import MechHybridError

__all__ = ["prune", "ranked_edges", "circuit_graph", "graph_counts"]


def ranked_edges(scores: EdgeScores) -> torch.Tensor:
    """`[edge, 2]` (sender, receiver) of every valid edge, by |score| descending (ties: sender-major order)."""
    edges = scores.wiring.valid.nonzero()
    magnitude = scores.values[edges[:, 0], edges[:, 1]].abs()
    order = sorted(range(len(edges)), key=lambda i: (-float(magnitude[i]), i))
    return edges[order]


def _keep(scores: EdgeScores, edges: torch.Tensor) -> torch.Tensor:
    keep = torch.zeros_like(scores.wiring.valid)
    keep[edges[:, 0], edges[:, 1]] = True
    return keep


def prune(scores: EdgeScores, top_n: int | None = None, fraction: float | None = None) -> torch.Tensor:
    """`[sender, receiver]` bool: the kept edges (module docstring). Exactly one of `top_n`, `fraction`."""
    if (top_n is None) == (fraction is None):
        raise MechHybridError("circuit target: give exactly one of top_n (edges kept) and fraction (of the summed "
                              "effect kept)")
    ranked = ranked_edges(scores)
    magnitude = scores.values[ranked[:, 0], ranked[:, 1]].abs()
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
    out_sum, wiring = scores.values.sum(1), scores.wiring
    found = {LOGITS: float(scores.values[:, -1].sum())}
    for i, s in enumerate(wiring.senders):
        found[s.name] = float(out_sum[i])
        if s.head is not None:
            found[s.component.name] = found.get(s.component.name, 0.0) + float(out_sum[i])
    return found


def circuit_graph(scores: EdgeScores, keep: torch.Tensor, states=()):
    """The DiGraph of the kept edges (module docstring)."""
    import networkx as nx

    wiring, values, totals = scores.wiring, scores.values, _node_scores(scores)
    graph = nx.DiGraph(metric=scores.metric, method=scores.method, direction=scores.direction,
                       normalised=scores.normalised)
    for i, j in (keep & wiring.valid).nonzero().tolist():
        s, r = wiring.senders[i], wiring.receivers[j]
        graph.add_node(s.name, **_attrs(s.kind, s.layer, s.head, score=totals[s.name]))
        if s.head is not None:
            c = s.component
            graph.add_node(c.name, **_attrs(c.kind, c.layer, None, score=totals[c.name]))
            graph.add_edge(c.name, s.name, score=0.0, kind="internal")
        graph.add_node(r.name, **_attrs(r.kind, r.layer, None, score=totals.get(r.name, 0.0)))
        graph.add_edge(s.name, r.name, score=float(values[i, j]), kind="residual")
    _add_states(graph, scores, keep & wiring.valid, states)
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
        graph.add_edge(component.name, node.name, score=float(node.value), kind="state")
        for s in carriers[node.layer]:
            if s.head is not None and s.name in graph:
                graph.add_edge(node.name, s.name, score=float(node.value), kind="state")
        if not any(s.head is not None for s in carriers[node.layer]):
            graph.add_edge(node.name, component.name, score=float(node.value), kind="state")


def graph_counts(graph) -> dict:
    """nodes (every node but the embedding and the logits), heads, states, residual edges."""
    kinds = [d["kind"] for _, d in graph.nodes(data=True)]
    return {
        "nodes": sum(k not in ("embedding", "logits") for k in kinds),
        "heads": sum(d["head"] >= 0 for _, d in graph.nodes(data=True)),
        "states": kinds.count("state"),
        "edges": sum(d["kind"] == "residual" for *_, d in graph.edges(data=True)),
    }
