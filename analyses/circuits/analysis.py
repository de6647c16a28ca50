"""circuits: the retrieval circuit of a model as an edge graph, verified by intervention.

On the zoo's needle pairs (the needle's value swapped; metric: the logit difference of the clean vs the
corrupted value's first token, normalised 0 = corrupted run, 1 = clean run): every edge scored
(`mechhybrid.circuits.edge_scores`), recurrent states scored at the swapped value's tokens and the question's
last token; then measured by running the clean prompts with every other edge ablated
(`mechhybrid.circuits.faithfulness`, stacked forwards): the top-k curve (edges ranked by |score|) and random
circuits of each size. The chosen circuit is the smallest top-k circuit on the curve whose measured faithfulness
reaches `target` (or the `top_n` edges); its faithfulness and its complement alone (completeness) are reported.
With `positional`, an edge is (sender, receiver, token): the curve, the random circuits and the chosen circuit
count positional edges, and each is ablated at its token alone.
"""

from __future__ import annotations

import time

import torch

from mechhybrid.circuits import (circuit_graph, discover, edge_scores, faithfulness, graph_counts, prune,
                                 random_keeps, ranked_edges, state_nodes)
from mechhybrid.errors import MechHybridError
from mechhybrid.tracing import LogitDiff

from ..common import Checkpoints, config_dict, library_versions, model_info
from ..data import speaks_zoo
from ..patching.pairs import zoo_pairs
from ..schema import DataInfo, Result
from .config import CircuitsConfig
from .rows import baseline_rows, curve_rows, graph_rows, summary_rows

__all__ = ["ANALYSIS", "SEMANTICS", "applies", "count", "run"]

ANALYSIS = "circuits"
SEMANTICS = ("edge u -> v: sender u's value (embedding, a component's output, a head's contribution, in residual "
             "units) in the residual stream receiver v (a component's input before its norm, or the logits) reads; "
             "score: (corrupted_u - clean_u) . d metric / d input_v on the clean run (EAP, noising), normalised; "
             "verification: the clean prompts with every edge outside the circuit carrying the {ablation} value "
             "(path patching), metric = logit difference normalised 0 = corrupted run, 1 = clean run{positions}")
POSITIONS = ("; positional: an edge is (u, v, token p), scored and ablated at v's input at p alone (the clean "
             "value of u at every other token)")


def _wiring(hm):
    """The model's edge wiring; MechHybridError saying why there is none for this analysis."""
    if not speaks_zoo(hm):
        raise MechHybridError("it does not speak the zoo's language (the needle pairs are zoo token ids)")
    return discover(hm)


def applies(hm, cfg: CircuitsConfig) -> str | None:
    """Why the analysis cannot run on `hm`, or None: it needs the zoo's language and an edge wiring."""
    try:
        _wiring(hm)
    except MechHybridError as exc:
        return str(exc)
    return None


def count(hm, config: CircuitsConfig | None = None) -> int:
    """Progress steps: scoring, states, measuring."""
    return 3


def _sizes(cfg: CircuitsConfig, n_edges: int) -> list[int]:
    return sorted({k for k in cfg.sizes if k < n_edges} | {n_edges})


def _curve_keeps(scores, sizes: list[int]) -> torch.Tensor:
    ranked = ranked_edges(scores)
    out = torch.zeros(len(sizes), *scores.valid.shape, dtype=torch.bool)
    for c, k in enumerate(sizes):
        out[(torch.full((min(k, len(ranked)),), c), *ranked[:k].T)] = True
    return out


def _edge_table(scores, keep: torch.Tensor) -> list[dict]:
    """One entry per edge (per edge and token when positional): its names, score and whether it is kept."""
    wiring, out = scores.wiring, []
    edges = scores.valid.nonzero()
    values, kept = scores.values[tuple(edges.T)].tolist(), keep[tuple(edges.T)].tolist()
    for (i, j, *at), value, k in zip(edges.tolist(), values, kept):
        entry = {"sender": wiring.senders[i].name, "receiver": wiring.receivers[j].name}
        if at:
            entry["position"] = at[0]
        out.append(dict(entry, score=value, kept=k))
    return out


def _chosen(sizes: list[int], measured: list[float], target: float) -> int:
    """The index of the smallest curve size whose measured faithfulness reaches `target` (the full graph, last,
    reproduces the clean run, so one always does up to float error; failing that, the most faithful)."""
    for index, value in enumerate(measured):
        if value is not None and value >= target:
            return index
    return max(range(len(measured)), key=lambda i: measured[i] if measured[i] is not None else float("-inf"))


def _step(progress) -> None:
    if progress is not None:
        progress.update(1)


def run(hm, config: CircuitsConfig | None = None, *, checkpoints: Checkpoints | None = None,
        progress=None) -> Result:
    """Run the circuits analysis on `hm` (module docstring)."""
    cfg = config if config is not None else CircuitsConfig()
    t0 = time.process_time()
    try:  # what `applies` checks, without running the wiring's probe forward twice
        wiring = _wiring(hm)
    except MechHybridError as exc:
        raise MechHybridError(f"{ANALYSIS} does not apply to model {hm.name}: {exc}") from None
    pairs = zoo_pairs("needle_value", cfg.pairs, cfg.length, cfg.depth, cfg.seed)
    metric = LogitDiff(pairs.answers, pairs.corrupted_answers)
    timings = {}
    scores = edge_scores(hm, pairs.clean, pairs.corrupted, metric, cfg.method, cfg.ig_steps, wiring=wiring,
                         positional=cfg.positional)
    timings["scores_cpu_s"] = time.process_time() - t0
    _step(progress)
    t0 = time.process_time()
    states = state_nodes(hm, pairs.clean, pairs.corrupted, metric, wiring=wiring)
    timings["states_cpu_s"] = time.process_time() - t0
    _step(progress)
    valid = scores.valid
    n_edges = int(valid.sum())
    sizes = _sizes(cfg, n_edges)
    randoms = [(k, random_keeps(valid, k, cfg.random_trials, cfg.seed + k)) for k in sizes if k < n_edges]
    curve = _curve_keeps(scores, sizes)
    t0 = time.process_time()
    measured = faithfulness(hm, pairs.clean, pairs.corrupted, metric, torch.cat([curve] + [r for _, r in randoms]),
                            cfg.ablation, wiring=wiring)
    values = measured.values.tolist()
    top, rest = values[:len(sizes)], values[len(sizes):]
    random = {k: rest[i * cfg.random_trials:(i + 1) * cfg.random_trials] for i, (k, _) in enumerate(randoms)}
    keep = prune(scores, top_n=cfg.top_n) if cfg.top_n else curve[_chosen(sizes, top, cfg.target)]
    # The chosen circuit's own faithfulness (measured again when top_n picked it) and its complement alone.
    chosen = faithfulness(hm, pairs.clean, pairs.corrupted, metric, torch.stack([keep, valid & ~keep]),
                          cfg.ablation, wiring=wiring)
    timings["faithfulness_cpu_s"] = time.process_time() - t0
    _step(progress)
    graph = circuit_graph(scores, keep, states)
    keeps_run = len(sizes) + sum(len(r) for _, r in randoms) + 2
    faithful, complete = chosen.values.tolist()
    counts = graph_counts(graph)
    rows = summary_rows(counts, faithful, complete, pairs.n, cfg.seed)
    rows += curve_rows(sizes, top, random, pairs.n, cfg.seed)
    rows += baseline_rows(measured.clean_metric, measured.corrupted_metric, pairs.n, cfg.seed)
    rows += graph_rows(graph, pairs.n, cfg.seed)
    extra = {"semantics": SEMANTICS.format(ablation="corrupted run's" if cfg.ablation == "patch" else "mean",
                                           positions=POSITIONS if cfg.positional else ""),
             "edges": n_edges, "positional": cfg.positional, "senders": len(wiring.senders),
             "receivers": len(wiring.receivers),
             "work": {"scores": scores.work, "faithfulness": measured.forwards + chosen.forwards,
                      "circuits": keeps_run},
             "state_positions": sorted({s.position for s in states}),
             "cpu_s": {k: round(v, 2) for k, v in timings.items()}}
    result = Result(analysis=ANALYSIS, model=model_info(hm), config=config_dict(cfg), method="mixed",
                    data=[DataInfo("zoo-needle_value", f"seed {cfg.seed}", pairs.n)], seed=cfg.seed,
                    versions=library_versions(), rows=rows, extra=extra)
    result.attach("circuit", graph)
    result.attach("edges", _edge_table(scores, keep))
    return result
