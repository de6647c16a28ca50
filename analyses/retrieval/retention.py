"""What head sparsification costs beyond retrieval (Study B's MMLU retention): multiple choice and language
modelling on the zoo's held-out benchmarks, scored teacher forced with the same heads kept as the k-curve.

Retention of multiple choice: accuracy / the unablated accuracy (paired bootstrap over items); of language
modelling: the unablated loss per token / the ablated loss per token (documents resampled jointly), so that 1
means nothing lost in both.
"""

from __future__ import annotations

import numpy as np
import torch

from mechhybrid.zoo.scoring import score_sequences

from ..schema import Row
from ..stats import bootstrap_indices, paired_ratio_ci, percentile_interval
from .conditions import Condition

__all__ = ["RETENTION_TASKS", "retention_rows"]

RETENTION_TASKS = ("facts", "lm")
"""The zoo benchmarks the head curve's retention is measured on."""


def _scores(hm, task, interventions: list, batch_size: int) -> dict:
    seqs = task.sequences()
    logits_fn = lambda ids: hm.logits(ids, interventions)  # noqa: E731
    return task.reduce(score_sequences(seqs, logits_fn, batch_size))


def _lm_retention(base: dict, other: dict, seed: int):
    """(base loss / other loss per token, CI), documents resampled jointly."""
    ratio = lambda b, o, t: (b.sum(-1) / t.sum(-1)) / (o.sum(-1) / t.sum(-1))  # noqa: E731
    idx = bootstrap_indices(len(base["nll"]), seed)
    value = float(ratio(base["nll"], other["nll"], base["tok"]))
    return value, *percentile_interval(ratio(base["nll"][idx], other["nll"][idx], base["tok"][idx]))


def retention_rows(hm, conds: list[Condition], tasks: dict, batch_size: int, seed: int, checkpoints=None) -> list[Row]:
    """`retention:<task>` rows of every head-curve condition (method keep_heads), on the zoo `tasks`
    ({name: Task}); each condition's interventions are the ones its needle prompts got (they name no prompt)."""
    rows = []
    for name, task in tasks.items():
        base = _cached(checkpoints, f"retention/{name}/baseline", lambda: _scores(hm, task, [], batch_size))
        for cond in conds:
            if cond.method != "keep_heads" or cond.coords.get("phase") != "all":
                continue  # one teacher-forced forward has no phases: the curve kept in every phase
            with torch.no_grad():
                got = _cached(checkpoints, f"retention/{name}/{cond.name}",
                              lambda: _scores(hm, task, cond.for_prompts([]), batch_size))
            if name == "lm":
                value, lo, hi = _lm_retention(base, got, seed)
                n = len(got["nll"])
            else:
                value, lo, hi = paired_ratio_ci(np.asarray(got["correct"]), np.asarray(base["correct"]), seed)
                n = len(got["correct"])
            rows.append(Row(cond.name, cond.method, f"retention:{name}", value, lo, hi, n=n, seed=seed,
                            coords=dict(cond.coords)))
    return rows


def _cached(checkpoints, key: str, compute):
    saved = checkpoints.get(key) if checkpoints is not None else None
    if saved is None:
        saved = {k: np.asarray(v, dtype=np.float64) for k, v in compute().items()}
        if checkpoints is not None:
            checkpoints.put(key, saved)
    return saved
