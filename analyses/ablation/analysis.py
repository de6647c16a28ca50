"""component_ablation: Study A experiments 1-6 on any supported model, batched and resumable."""

from __future__ import annotations

import dataclasses

from mechhybrid.errors import MechHybridError

from ..common import Checkpoints, config_dict, library_versions, model_info, warn
from ..data import TaskSet, load_tasks, model_max_len
from ..evaluate import Job, evaluate_jobs
from ..schema import Result
from ..tasks import LMTask
from . import conditions as C
from .config import ComponentAblationConfig
from .rows import resilience_summary_rows, score_rows

__all__ = ["run", "plan", "count", "ANALYSIS"]

ANALYSIS = "component_ablation"


def _context_tasks(hm, ts: TaskSet, cfg: ComponentAblationConfig) -> dict[int, str]:
    """Add one windowed copy of the lm benchmark per context length the model allows: {length: task name}."""
    if not cfg.context_lengths:
        return {}
    lm = ts.tasks[ts.lm]
    max_len = model_max_len(hm, cfg.max_tokens)
    stream = [t for d in lm.docs for t in d]
    out = {}
    for length in sorted(set(cfg.context_lengths)):
        if max_len is not None and length > max_len:
            ts.notes.append(f"context length {length} skipped: the model's maximum is {max_len}")
            continue
        n = min(cfg.limit, len(stream) // length)
        if n == 0:
            ts.notes.append(f"context length {length} skipped: the lm text has fewer than {length} tokens")
            continue
        docs = tuple(tuple(stream[i * length:(i + 1) * length]) for i in range(n))
        name = f"{ts.lm}@{length}"
        ts.tasks[name] = LMTask(lm.name, lm.version, docs)
        out[length] = name
    return out


def plan(hm, cfg: ComponentAblationConfig, ts: TaskSet,
         say=warn) -> tuple[list[tuple[str, Job]], dict[int, str]]:
    """Every (row condition name, job) of the run, and the context tasks by length; `say` tells the user
    what is left out (the count before a run says nothing, the run itself says it once)."""
    needs_lm = bool(cfg.context_lengths) or cfg.resilience_removed != ()
    if needs_lm and ts.lm is None:
        raise MechHybridError(f"{ANALYSIS}: context stress and resilience need a language-modelling benchmark "
                              f"and model {hm.name} has none; add data.wikitext or set context_lengths = [] "
                              "and resilience_removed = []")
    kinds = C.ablated_kinds(hm, cfg)
    if not kinds:
        raise MechHybridError(f"{ANALYSIS}: model {hm.name} has no component of the selected kinds")
    main = [C.BASELINE]
    for m in cfg.methods:
        main += C.group_conditions(hm, kinds, m)
        if cfg.random_trials:
            main += C.random_conditions(hm, kinds, m, cfg, ts.notes, say)
        if cfg.thirds:
            main += C.third_conditions(hm, kinds, m)
        if cfg.sweep:
            main += C.sweep_conditions(hm, kinds, m)
    bench = [n for n in ts.tasks]
    jobs = [(c.name, Job(b, c)) for c in main for b in bench]
    ctx = _context_tasks(hm, ts, cfg)
    for length, task in ctx.items():
        groups = [g for m in cfg.methods for g in C.group_conditions(hm, kinds, m)]
        # The same conditions (same jobs, same checkpoints) on a shorter window: their rows say its length.
        jobs += [(f"context:{length}:{c.name}",
                  Job(task, dataclasses.replace(c, coords={"context_length": length, **c.coords})))
                 for c in [C.BASELINE] + groups]
    if cfg.resilience_removed != ():
        jobs += [(c.name, Job(ts.lm, c)) for c in C.resilience_conditions(hm, cfg, ts.notes)]
    return jobs, ctx


def _rows(jobs, scores, ts: TaskSet, cfg: ComponentAblationConfig) -> list:
    rows = []
    for name, job in jobs:
        task = ts.tasks[job.task]
        base = None
        if job.condition.method != "none":
            base = scores[Job(job.task, C.BASELINE).key]
        rows += score_rows(name, job.condition.method, task.name, task.kind, scores[job.key], base, cfg.seed,
                           job.condition.coords)
    by_k: dict[int, list] = {}
    for _, job in jobs:
        if job.condition.coords.get("removal") == "resilience":
            by_k.setdefault(job.condition.coords["n_removed"], []).append(scores[job.key])
    for k, trials in by_k.items():
        rows += resilience_summary_rows(k, trials, scores[Job(ts.lm, C.BASELINE).key], cfg.seed)
    return rows


def count(hm, config: ComponentAblationConfig | None = None, *, tasks: TaskSet | None = None) -> int:
    """The progress steps `run` reports with these arguments: one per distinct (benchmark, condition) job."""
    cfg = config if config is not None else ComponentAblationConfig()
    ts = tasks if tasks is not None else load_tasks(hm, cfg, ANALYSIS)
    jobs, _ = plan(hm, cfg, TaskSet(dict(ts.tasks), ts.refs, list(ts.notes)), say=lambda message: None)
    return len(dict.fromkeys(j for _, j in jobs))


def run(hm, config: ComponentAblationConfig | None = None, *, tasks: TaskSet | None = None,
        checkpoints: Checkpoints | None = None, progress=None) -> Result:
    """Run the component ablation on `hm`; `tasks` overrides the benchmarks (else loaded for the model)."""
    cfg = config if config is not None else ComponentAblationConfig()
    ts = tasks if tasks is not None else load_tasks(hm, cfg, ANALYSIS)
    ts = TaskSet(dict(ts.tasks), ts.refs, list(ts.notes))  # context tasks are added to a copy
    jobs, _ = plan(hm, cfg, ts)
    if progress is not None:
        progress.total = len(dict.fromkeys(j for _, j in jobs))
        progress.refresh()
    scores = evaluate_jobs(hm, [j for _, j in jobs], ts.tasks, ts.refs, chunk=cfg.conditions_per_forward,
                           batch_size=cfg.batch_size, budget_mb=cfg.budget_mb, checkpoints=checkpoints,
                           progress=progress)
    rows = _rows(jobs, scores, ts, cfg)
    methods = sorted({r.method for r in rows} - {"none"})
    extra = {
        "loss_clamp": 20.0,
        "conditions": {f"{n}|{j.condition.method}": [c.name for c in j.condition.components]
                       for n, j in jobs if j.condition.components},
        "notes": ts.notes,
    }
    main_data = [d for name, d in zip(ts.tasks, ts.data) if "@" not in name]
    return Result(analysis=ANALYSIS, model=model_info(hm), config=config_dict(cfg),
                  method=methods[0] if len(methods) == 1 else "mixed", data=main_data, seed=cfg.seed,
                  versions=library_versions(), rows=rows, extra=extra)
