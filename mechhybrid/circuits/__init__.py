"""Edge-level circuits for hybrid models: edge attribution between every writer and reader of the residual
stream (embedding, components, per-head contributions of attention and multi-head mixers, the logits), recurrent
states as nodes, pruning to a networkx graph, and verification by intervention (path patching).

    wiring = discover(hm)                                  # senders, receivers, edges (mechhybrid.circuits.wiring)
    scores = edge_scores(hm, clean, corrupted, metric)     # [sender, receiver] first-order effects (EAP, EAP-IG)
    keep = prune(scores, fraction=0.8)                     # or top_n=20
    graph = circuit_graph(scores, keep, state_nodes(hm, clean, corrupted, metric))
    measured = faithfulness(hm, clean, corrupted, metric, keep[None])   # every other edge ablated, run
    edge_scores(..., positional=True)                      # [sender, receiver, position]: edges per token

docs/circuits.md has the semantics.
"""

from mechhybrid.circuits.evaluate import ABLATIONS, Faithfulness, faithfulness, random_keeps
from mechhybrid.circuits.graph import NO_POSITION, circuit_graph, graph_counts, prune, ranked_edges
from mechhybrid.circuits.scores import EDGE_METHODS, EdgeScores, edge_scores
from mechhybrid.circuits.states import StateNode, state_nodes, state_positions
from mechhybrid.circuits.wiring import EMBED, LOGITS, Receiver, Sender, Wiring, discover

__all__ = [
    "ABLATIONS", "EDGE_METHODS", "EMBED", "LOGITS", "NO_POSITION", "EdgeScores", "Faithfulness", "Receiver",
    "Sender", "StateNode", "Wiring", "circuit_graph", "discover", "edge_scores", "faithfulness", "graph_counts",
    "prune", "random_keeps", "ranked_edges", "state_nodes", "state_positions",
]
