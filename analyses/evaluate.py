"""Evaluate (task, condition) jobs in chunks, resuming from per-condition checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from .common import Checkpoints, ScoreCache
from .scoring import Condition, References, score_task

__all__ = ["Job", "evaluate_jobs"]


@dataclass(frozen=True)
class Job:
    """Score task `task` under `condition`."""

    task: str
    condition: Condition

    @property
    def key(self) -> str:
        return f"{self.task}|{self.condition.key}"


def _saved(job: Job, tasks, refs, checkpoints, cache) -> dict | None:
    saved = checkpoints.get(job.key) if checkpoints is not None else None
    if saved is None and cache is not None:
        saved = cache.get(cache.key(tasks[job.task], job.condition, refs))
    return saved


def evaluate_jobs(hm, jobs: list[Job], tasks: dict, refs: References | None, *, chunk: int = 8,
                  batch_size: int = 16, budget_mb: float = 512, checkpoints: Checkpoints | None = None,
                  progress=None) -> dict[str, dict]:
    """Per-item scores of every job, keyed by Job.key.

    Jobs on the same task are evaluated `chunk` conditions per batched forward; each finished job is
    checkpointed at once, so an interrupted run redoes at most the chunk in flight. A `ScoreCache` hung on
    the checkpoints (`checkpoints.cache`) shares identical jobs between analyses of one model."""
    cache: ScoreCache | None = getattr(checkpoints, "cache", None)
    out: dict[str, dict] = {}
    pending: dict[str, list[Job]] = {}
    for job in dict.fromkeys(jobs):
        saved = _saved(job, tasks, refs, checkpoints, cache)
        if saved is not None:
            out[job.key] = saved
            if progress is not None:
                progress.update(1)
        else:
            pending.setdefault(job.task, []).append(job)
    pad_id = _pad_id(hm)
    for task_name, task_jobs in pending.items():
        for c0 in range(0, len(task_jobs), chunk):
            part = task_jobs[c0:c0 + chunk]
            scores = score_task(hm, tasks[task_name], [j.condition for j in part], refs,
                                batch_size=batch_size, budget_mb=budget_mb, pad_id=pad_id)
            for job, s in zip(part, scores):
                out[job.key] = s
                if checkpoints is not None:
                    checkpoints.put(job.key, s)
                if cache is not None:
                    cache.put(cache.key(tasks[task_name], job.condition, refs), s)
            if progress is not None:
                progress.update(len(part))
    return out


def _pad_id(hm) -> int:
    tok = getattr(hm, "tokenizer", None)
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    return int(pad) if pad is not None else 0
