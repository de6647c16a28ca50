"""gather_aggregate: Gather-and-Aggregate heads (arXiv 2504.18574) in any zoo-speaking model with softmax
attention, resumable per prompt kind and per benchmark.

The plan: score every attention head on segmented prompts of each kind (needle, recall, facts; scores.py), take
the top-scored heads of each role as candidates (`top_n`, among heads scoring at least `min_lift` x uniform
attention), then zero the candidates and as many random heads on the zoo's needle, recall and facts benchmarks
(ablation.py). Only softmax-attention heads are scored: the paper reads an implicit attention matrix from SSM
mixers; here every other mixer is left out and each Result names them (`extra.left_out`).
"""

from __future__ import annotations

import numpy as np

from mechhybrid.errors import MechHybridError

from ..common import Checkpoints, config_dict, library_versions, model_info
from ..data import speaks_zoo
from ..schema import DataInfo, Result
from .ablation import ablation_tasks, head_sets, score_sets
from .config import PROMPT_KINDS, TASKS, GatherAggregateConfig
from .prompts import scoring_prompts
from .rows import ablation_rows, score_rows, uniform_rows
from .scores import METRICS, HeadScores, attention_heads, candidates, head_scores

__all__ = ["ANALYSIS", "ROLES", "applies", "count", "run"]

ANALYSIS = "gather_aggregate"
ROLES = {"gather": "gather", "aggregate": "aggregate"}
"""Role -> the score its candidates are ranked by."""
SEMANTICS = ("AblateHeads: the chosen heads' outputs zeroed at the input of the attention output projection, at "
             "every position, in one teacher-forced forward per item (exact match of the needle's and recall's "
             "value tokens; facts by choice log-likelihood)")


def applies(hm, cfg: GatherAggregateConfig | None = None) -> str | None:
    """Why the analysis cannot run on `hm`, or None: it needs softmax-attention heads and the zoo's language."""
    if not attention_heads(hm):
        kinds = sorted({c.kind for c in hm.components if c.kind != "mlp"})
        return (f"it has no softmax-attention heads (its mixers: {', '.join(kinds) or 'none'}); the paper reads an "
                "implicit attention matrix from SSM mixers, this analysis scores attention heads only")
    if not speaks_zoo(hm):
        return "its prompts are in the zoo's language, and the model does not speak it"
    return None


def count(hm, config: GatherAggregateConfig | None = None) -> int:
    """Progress steps of `run`: one per prompt kind scored, one per benchmark ablated."""
    return len(PROMPT_KINDS) + len(TASKS)


def _tick(progress) -> None:
    if progress is not None:
        progress.update(1)


def _scores(hm, cfg, checkpoints, progress) -> HeadScores:
    parts = []
    for kind, prompts in scoring_prompts(cfg).items():
        saved = checkpoints.get(f"scores:{kind}") if checkpoints is not None else None
        if saved is None:
            got = head_scores(hm, prompts, cfg.batch_size)
            saved = {**got.values, **{f"uniform:{m}": got.uniform[m] for m in METRICS}}
            if checkpoints is not None:
                checkpoints.put(f"scores:{kind}", saved)
        parts.append((kind, len(prompts), saved))
        _tick(progress)
    heads = attention_heads(hm)
    stack = lambda key: np.concatenate([np.asarray(s[key]).reshape(n, len(heads)) for _, n, s in parts])  # noqa: E731
    return HeadScores(heads, [k for k, n, _ in parts for _ in range(n)], {m: stack(m) for m in METRICS},
                      {m: stack(f"uniform:{m}") for m in METRICS})


def _left_out(hm) -> list[str]:
    """The mixers whose mixing is not scored: every token mixer that is not softmax attention."""
    layers: dict[str, list[int]] = {}
    for c in hm.components:
        if c.kind not in ("attention", "mlp"):
            layers.setdefault(c.kind, []).append(c.layer)
    return [f"{kind} (layers {', '.join(map(str, ls))})" for kind, ls in layers.items()]


def run(hm, config: GatherAggregateConfig | None = None, *, checkpoints: Checkpoints | None = None,
        progress=None) -> Result:
    """Score every attention head of `hm`, pick the candidates, ablate them against random heads."""
    cfg = config if config is not None else GatherAggregateConfig()
    why = applies(hm, cfg)
    if why:
        raise MechHybridError(f"{ANALYSIS} does not apply to model {hm.name}: {why}")
    if progress is not None:
        progress.total = count(hm, cfg)
        progress.refresh()
    scores = _scores(hm, cfg, checkpoints, progress)
    chosen = {role: candidates(scores, metric, cfg.top_n, cfg.min_lift) for role, metric in ROLES.items()}
    notes = [f"no {role} candidate: no head scores {cfg.min_lift:g} x uniform attention"
             for role, group in chosen.items() if not group]
    sets = head_sets(scores.heads, chosen, cfg.random_sets, cfg.seed, notes)
    tasks = ablation_tasks(cfg)
    correct = {}
    for name, task in tasks.items():
        saved = checkpoints.get(f"ablation:{name}") if checkpoints is not None else None
        if saved is None:
            saved = dict(zip((s.name for s in sets), score_sets(hm, task, sets, cfg.batch_size)))
            if checkpoints is not None:
                checkpoints.put(f"ablation:{name}", saved)
        correct[name] = {k: np.asarray(v) for k, v in saved.items()}
        _tick(progress)
    rows = score_rows(scores, cfg.seed) + uniform_rows(scores, cfg.seed) + ablation_rows(sets, correct, cfg.seed)
    return Result(analysis=ANALYSIS, model=model_info(hm), config=config_dict(cfg), method="mixed",
                  data=_data(cfg, scores, tasks), seed=cfg.seed, versions=library_versions(), rows=rows,
                  extra=_extra(hm, cfg, chosen, sets, notes))


def _data(cfg, scores: HeadScores, tasks: dict) -> list[DataInfo]:
    kinds = [DataInfo(f"zoo-segmented-{k}", f"seed {cfg.seed}", scores.kinds.count(k)) for k in PROMPT_KINDS]
    return kinds + [DataInfo(f"zoo-{name}", task.version, task.n) for name, task in tasks.items()]


def _extra(hm, cfg, chosen, sets, notes) -> dict:
    from mechhybrid.zoo.benchmarks import CHANCE

    return {
        "candidates": {role: [list(lh) for lh in group] for role, group in chosen.items()},
        "rule": f"per role the top {cfg.top_n} head(s) by mean score over every scoring prompt (gather ranks by "
                f"gather, aggregate by aggregate)" + (f", among heads scoring at least {cfg.min_lift:g} x uniform "
                                                      "attention" if cfg.min_lift else ""),
        "head_sets": {s.name: [list(lh) for lh in s.heads] for s in sets},
        "chance": {name: CHANCE[name] for name in TASKS},
        "ablation": SEMANTICS,
        "left_out": _left_out(hm),
        "scored": "softmax-attention heads only (the paper reads an implicit attention matrix from SSM mixers)",
        "notes": notes,
    }
