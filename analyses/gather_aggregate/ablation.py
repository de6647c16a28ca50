"""The causal check: candidate heads zeroed, against as many random heads, on the zoo's benchmarks.

Head sets (`HeadSet`): each role's candidates together (`gather`, `aggregate`), each candidate alone where a
role has more than one, and every candidate together (`both`) where that differs from each role's set; then for
every size among those, random sets of that many heads drawn from the heads that are no candidate (every subset
when there are at most `random_sets` of them, else that many seeded draws, never one twice). A size with fewer
non-candidate heads than it needs gets no random set (the Result's notes say so).

Ablation semantics: `AblateHeads`, the heads' outputs zeroed at the input of the attention output projection, at
every position. Scoring: teacher forced through the zoo's scorer (mechhybrid.zoo.scoring), every head set of a
batch in one stacked forward (`hm.logits_many`).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from mechhybrid.interventions import AblateHeads
from mechhybrid.finite import check_finite
from mechhybrid.zoo.scoring import STAT_NAMES, SeqScores, span_masks, span_stats

from ..timing import FORWARD

__all__ = ["HeadSet", "head_sets", "interventions", "score_sets", "ablation_tasks"]


@dataclass(frozen=True)
class HeadSet:
    """Heads zeroed together: a condition of the ablation table."""

    name: str
    """The rows' condition: baseline, ablate:<role>, ablate:<role>:L<layer>H<head> or random:k<k>:<trial>."""
    heads: tuple[tuple[int, int], ...]
    coords: dict = field(default_factory=dict, compare=False)


def _random_sets(pool: list[tuple[int, int]], k: int, wanted: int, seed: int) -> list[tuple]:
    if math.comb(len(pool), k) <= wanted:
        return list(itertools.combinations(pool, k))
    rng = random.Random(f"gather-aggregate/{seed}/{k}")
    drawn: list[tuple] = []
    while len(drawn) < wanted:
        pick = tuple(sorted(rng.sample(pool, k)))
        if pick not in drawn:
            drawn.append(pick)
    return drawn


def head_sets(heads: list[tuple[int, int]], chosen: dict[str, list[tuple[int, int]]], random_sets: int,
              seed: int, notes: list[str]) -> list[HeadSet]:
    """Baseline, the candidate sets, then the random ones (see the module docstring)."""
    sets = [HeadSet("baseline", ())]
    for role, group in chosen.items():
        if not group:
            continue
        one = {"layer": group[0][0], "head": group[0][1]} if len(group) == 1 else {}
        sets.append(HeadSet(f"ablate:{role}", tuple(sorted(group)),
                            {"removal": "candidate", "head_role": role, "k": len(group), **one}))
        if len(group) > 1:
            sets += [HeadSet(f"ablate:{role}:L{l}H{h}", ((l, h),), {"removal": "candidate", "head_role": role,
                                                                    "k": 1, "layer": l, "head": h})
                     for l, h in group]
    union = tuple(sorted({lh for group in chosen.values() for lh in group}))
    if union and all(set(union) != set(g) for g in chosen.values()):
        sets.append(HeadSet("ablate:both", union, {"removal": "candidate", "head_role": "both", "k": len(union)}))
    pool = [lh for lh in heads if lh not in union]
    for k in sorted({len(s.heads) for s in sets[1:]}):
        if k > len(pool):
            notes.append(f"no random control for {k} heads: only {len(pool)} attention heads are no candidate")
            continue
        drawn = _random_sets(pool, k, random_sets, seed)
        if len(drawn) < random_sets:
            notes.append(f"{len(drawn)} random set(s) of {k} heads: every subset of the {len(pool)} heads that "
                         "are no candidate")
        sets += [HeadSet(f"random:k{k}:{t}", tuple(d), {"removal": "random", "k": k, "trial": t})
                 for t, d in enumerate(drawn)]
    return sets


def interventions(hm, head_set: HeadSet) -> list:
    """The AblateHeads of one head set, one per attention component it touches."""
    by_layer = {c.layer: c for c in hm.components if c.kind == "attention" and c.n_heads}
    chosen: dict[int, list[int]] = {}
    for layer, head in head_set.heads:
        chosen.setdefault(layer, []).append(head)
    return [AblateHeads(by_layer[layer], heads=hs) for layer, hs in sorted(chosen.items())]


def _finite(hm, ids, logits):
    """`logits`, after checking they are finite: a damaged model ends in one line, not in a wrong accuracy."""
    check_finite(hm, ids, logits)
    return logits


def score_sets(hm, task, sets: list[HeadSet], batch_size: int) -> list[np.ndarray]:
    """Per-item correctness of `task` (a zoo SpanTask or ChoiceTask) under each head set, in order."""
    seqs = task.sequences()
    offsets = np.cumsum([0] + [len(s.spans) for s in seqs])
    stats = np.zeros((len(sets), len(STAT_NAMES), int(offsets[-1])))
    order = sorted(range(len(seqs)), key=lambda i: (-len(seqs[i].ids), i))
    groups = [interventions(hm, s) for s in sets]
    for b0 in range(0, len(order), batch_size):
        idx = order[b0:b0 + batch_size]
        ids = torch.zeros(len(idx), len(seqs[idx[0]].ids), dtype=torch.long)  # right-padded with <pad>
        for row, i in enumerate(idx):
            ids[row, :len(seqs[i].ids)] = torch.tensor(seqs[i].ids)
        masks = span_masks(ids, [seqs[i] for i in idx])
        cols = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in idx])
        with torch.no_grad(), FORWARD:
            got = hm.logits_many(ids, groups, reduce=lambda part: span_stats(_finite(hm, ids, part), ids, masks,
                                                                             torch.float64))
        stats[:, :, cols] = got.double().numpy()
    return [task.reduce(SeqScores(*(stats[s, k][None] for k in range(len(STAT_NAMES)))))["correct"]
            for s in range(len(sets))]


def ablation_tasks(cfg) -> dict:
    """name -> the zoo benchmark as a Task: needle items of the config's lengths, recall and facts (a seeded
    sample of `items` each)."""
    from mechhybrid.zoo.benchmarks import get_benchmark

    from ..sampling import sample_indices
    from ..tasks import SpanItem, SpanTask
    from ..zoo_tasks import zoo_task

    bench = get_benchmark("needle")
    kept = [it for it in bench.items if it.meta_dict()["context_len"] in cfg.needle_lengths]
    needle = SpanTask("needle", bench.version, tuple(
        SpanItem(tuple(kept[i].input_ids), tuple(tuple(s) for s in kept[i].answer_spans), tuple(kept[i].meta))
        for i in sample_indices(len(kept), cfg.items, cfg.seed)))
    return {"needle": needle, "recall": zoo_task("recall", cfg.items, cfg.seed),
            "facts": zoo_task("facts", cfg.items, cfg.seed)}
