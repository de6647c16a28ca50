"""`mechhybrid study`: the study's analyses (analyses/studies.py) on every model (default: the whole zoo), one
model after another or one model per worker process (`jobs`); an analysis that does not apply to a model is
skipped there, with a note in OUT/study.json.

Why processes: the zoo's models are tiny (hidden 128), so a forward is too small for torch's intra-op threads
to use two cores well; one single-threaded process per core does (benchmarks/bench_study.py measures both).
Each worker writes its model's Results and checkpoints as a sequential run would (files are per model;
timings.json is locked), and results.csv is written once at the end, so an interrupted parallel study
resumes like a sequential one. Progress: every bar knows its total before its first job (a parallel study
first counts every model's jobs in the workers: 0.1 s per zoo model once a worker has imported torch).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple

from mechhybrid.errors import MechHybridError

from .common import warn
from .configs import build_config
from .outdir import atomic_write, check_out_dir
from .registry import analysis_names, count_jobs, get_analysis, not_applicable, quarantine_corrupt, run_analysis
from .schema import iter_result_paths, result_path, write_results_csv
from .studies import DEFAULT_PROFILE, PROFILES, ZOO_MEASURED, select_steps

__all__ = ["run_study", "zoo_models", "default_jobs", "read_study_notes", "STUDY_NOTES"]

STUDY_NOTES = "study.json"
"""OUT/study.json: the profile and measured zoo time of each analysis a study ran, and every (model, analysis)
it skipped with the reason, for the report."""


def zoo_models() -> list[str]:
    """Every shipped zoo model as a load source ("zoo:NAME")."""
    try:
        from mechhybrid.zoo.registry import zoo_names
    except ImportError:
        from mechhybrid.zoo.recipes import ZOO_SPECS

        return [f"zoo:{s.name}" for s in ZOO_SPECS]
    return [f"zoo:{n}" for n in zoo_names()]


def default_jobs(models: list[str]) -> int:
    """One process per core for a study of zoo models only (each needs a few MB); 1 for anything else, whose
    size mechhybrid cannot know before loading it."""
    if len(models) > 1 and all(str(m).startswith("zoo:") for m in models):
        return max(1, min(len(models), os.cpu_count() or 1))
    return 1


class ModelOutcome(NamedTuple):
    """What a study did with one model."""

    source: str
    """The model as the study named it."""
    name: str
    """The loaded model's name, as its Results name it."""
    paths: list[Path]
    """Its Result files, in the study's order."""
    skipped: dict[str, str | None]
    """{analysis: why it does not apply to this model, or None where it ran}."""


_progress_queue = None
"""In a worker process: where its analyses' progress goes (to the study's one bar in the parent)."""


def _set_progress_queue(progress_queue) -> None:
    global _progress_queue
    _progress_queue = progress_queue


class _ForwardedBar:
    """The part of a tqdm bar that analyses use (total, refresh, update, set_postfix_str), sent from a worker
    to the parent. The parent's one bar counted every model's jobs before the first one started, so the
    totals an analysis announces are not forwarded."""

    def __init__(self, progress_queue, key: str):
        self._queue, self._key = progress_queue, key

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    total = None

    def refresh(self) -> None:
        pass

    def update(self, n: int = 1) -> None:
        self._queue.put(("update", self._key, n))

    def set_postfix_str(self, text: str) -> None:
        self._queue.put(("postfix", self._key, text))


def _bar(desc: str, total: int | None, progress: bool):
    from tqdm import tqdm

    if _progress_queue is not None:
        return _ForwardedBar(_progress_queue, desc)
    return tqdm(desc=desc, total=total, unit="job", disable=not progress, leave=True)


def _prepare(source: str, models: list[str], configs: dict, analyses, load_options: dict, threads: int | None,
             quiet_notices: bool):
    """The loaded model, the Config of each analysis on it, and why each one that does not apply is skipped."""
    import mechhybrid

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if quiet_notices:  # the slow-kernel notice is said once per study, by the first model's worker
        from mechhybrid import kernels

        kernels.silence_notice()
    hm = mechhybrid.load(source, **load_options)
    cfgs = {name: get_analysis(name).in_study(configs[name], source, tuple(models)) for name in analyses}
    reasons = {name: not_applicable(name, hm, cfgs[name]) for name in analyses}
    return hm, cfgs, {name: reason for name, reason in reasons.items() if reason is not None}


def _count_model(source: str, models: list[str], out: Path, force: bool, configs: dict, analyses,
                 load_options: dict, threads: int | None = None, quiet_notices: bool = False) -> dict[str, int]:
    """{analysis: progress steps} of one model, before any of its work (a worker process's first task)."""
    hm, cfgs, skipped = _prepare(source, models, configs, analyses, load_options, threads, quiet_notices)
    return {name: count_jobs(name, hm, cfgs[name], out, force=force) for name in analyses if name not in skipped}


def _study_model(source: str, models: list[str], out: Path, force: bool, configs: dict, analyses,
                 load_options: dict, progress: bool, threads: int | None = None,
                 quiet_notices: bool = False) -> ModelOutcome:
    """Every analysis that applies to one model, and why the others do not. Runs in the caller or in a worker
    process; in the caller, each analysis's bar gets its total before the first job."""
    hm, cfgs, skipped = _prepare(source, models, configs, analyses, load_options, threads, quiet_notices)
    todo = [name for name in analyses if name not in skipped]
    for name, reason in skipped.items():
        warn(f"{name} skipped on {hm.name}: {reason}")
    counting = progress and _progress_queue is None
    totals = {name: count_jobs(name, hm, cfgs[name], out, force=force) if counting else None for name in todo}
    paths = []
    for i, name in enumerate(todo):
        with _bar(f"{hm.name} {name}", totals[name], progress) as bar:
            # --force empties the shared score cache once per model, so later analyses reuse fresh scores.
            run_analysis(name, hm, cfgs[name], out, force=force, progress=bar, write_csv=False,
                         clear_cache=force and i == 0)
        paths.append(result_path(out, hm.name, name))
    return ModelOutcome(source, str(hm.name), paths, {name: skipped.get(name) for name in analyses})


def run_study(models=None, out_dir="mechhybrid-out", force: bool = False, progress: bool = True,
              configs: dict | None = None, analyses=None, load_options: dict | None = None,
              jobs: int | None = None, profile: str = DEFAULT_PROFILE) -> list[Path]:
    """Run the study's analyses (analyses/studies.py; `analyses` names a subset, run in the study's order) on
    every model (default: the whole zoo); returns the Result paths in model order.

    `configs` maps an analysis name to its Config (else the `profile`'s options); `load_options` go to
    `mechhybrid.load` for every model (dtype, allow_pickle, trust_remote_code). An analysis's `in_study` adapts
    its Config to the study (representation compares each model with the others by CKA). An analysis that does
    not apply to a model is skipped there with a note, said on stderr and kept in OUT/study.json. `jobs`
    worker processes run one model each, single-threaded (None: `default_jobs`); with 1, models run here one
    after another.

    A model that fails stops the study with its error; results.csv and study.json are then still in step with
    every model that finished (other workers' models in flight finish first; models not started are not
    started)."""
    models = list(models) if models else zoo_models()
    if not models:
        raise MechHybridError("no zoo models are installed; name models with --models")
    jobs = default_jobs(models) if jobs is None else jobs
    if jobs < 1:
        raise MechHybridError(f"jobs must be >= 1, got {jobs}")
    if profile not in PROFILES:
        raise MechHybridError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    steps = select_steps(analyses)
    given = dict(configs or {})
    configs = {s.name: given.get(s.name) or build_config(s.analysis.config_cls, s.options(profile),
                                                         where=f"{s.name} {profile} profile") for s in steps}
    out = check_out_dir(out_dir)
    quarantine_corrupt(out)
    common = dict(models=models, out=out, force=force, configs=configs, analyses=tuple(s.name for s in steps),
                  load_options=dict(load_options or {}))
    finished: list[ModelOutcome] = []  # per model that finished, in the order they finished
    try:
        if jobs == 1 or len(models) == 1:
            for source in models:
                finished.append(_study_model(source, progress=progress, **common))
        else:
            _in_workers(models, min(jobs, len(models)), progress, common, finished)
    except BaseException:
        # The study's own error is the one line the user sees; a study that failed before its first Result
        # leaves no table behind.
        if iter_result_paths(out):
            with contextlib.suppress(MechHybridError):
                write_results_csv(out)
                _write_notes(out, profile, steps, finished)
        raise
    write_results_csv(out)
    _write_notes(out, profile, steps, finished)
    return [p for outcome in sorted(finished, key=lambda o: models.index(o.source)) for p in outcome.paths]


def _in_workers(models: list[str], jobs: int, progress: bool, common: dict, finished: list) -> None:
    """Run the models in `jobs` worker processes, appending each model's outcome to `finished` as it ends."""
    from tqdm import tqdm

    context = get_context("spawn")  # spawn, not fork: a forked torch (and its thread pools) is unsafe in the child
    progress_queue = context.Queue() if progress else None
    desc = f"study ({jobs} processes)"
    with tqdm(desc=f"{desc}, counting jobs", unit="job", disable=not progress) as bar:
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_set_progress_queue,
                                 initargs=(progress_queue,)) as pool:
            if progress:  # every model's jobs are counted before the first starts: the bar's total never moves
                counts = _all_or_first_error(pool, [pool.submit(_count_model, source, threads=1,
                                                                quiet_notices=i > 0, **common)
                                                    for i, source in enumerate(models)], bar, progress_queue, [])
                bar.total = sum(n for c in counts for n in c.values())
                bar.set_description(desc)
            futures = [pool.submit(_study_model, source, progress=False, threads=1,
                                   quiet_notices=progress or i > 0, **common) for i, source in enumerate(models)]
            _all_or_first_error(pool, futures, bar, progress_queue, finished)
        _drain(progress_queue, bar)  # the workers have exited, so their last messages are queued


def _all_or_first_error(pool, futures: list, bar, progress_queue, finished: list) -> list:
    """The futures' results in order, each also appended to `finished` as it comes in; on the first error, the
    futures not yet started are cancelled, those running finish (their results count), and the error is raised
    (a MechHybridError stays one line)."""
    pending, error = set(futures), None
    while pending:
        done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        _drain(progress_queue, bar)
        for future in done:
            if future.cancelled():
                continue
            if future.exception() is None:
                finished.append(future.result())
            elif error is None:
                error = future.exception()
                for other in pending:
                    other.cancel()
    if error is not None:
        raise error
    return [f.result() for f in futures]


def _drain(progress_queue, bar) -> None:
    """Apply the workers' progress messages so far to the study's bar."""
    while progress_queue is not None:
        try:
            kind, key, value = progress_queue.get_nowait()
        except queue.Empty:
            return
        if kind == "update":
            bar.update(value)
        else:
            bar.set_postfix_str(f"{key}: {value}")


def read_study_notes(out_dir) -> dict:
    """OUT/study.json as written by `run_study` ({} when there is none). Notes are advisory, like timings: a
    damaged file is started afresh by the next study, never an error."""
    try:
        obj = json.loads((Path(out_dir) / STUDY_NOTES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ok = (isinstance(obj, dict) and isinstance(obj.get("analyses"), list) and isinstance(obj.get("skipped"), list)
          and all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in obj["analyses"])
          and all(isinstance(e, dict) and {"model", "analysis", "reason"} <= set(e) for e in obj["skipped"]))
    return obj if ok else {}


def _write_notes(out: Path, profile: str, steps, finished: list[ModelOutcome]) -> None:
    """Merge this study into OUT/study.json: its analyses replace their earlier entries, and its decisions on
    each (model, analysis) it looked at replace earlier ones; the rest (other models, other analyses) stays."""
    old = read_study_notes(out)
    analyses = {e["name"]: e for e in old.get("analyses", [])}
    for step in steps:
        analyses[step.name] = {"name": step.name, "summary": step.analysis.summary, "profile": profile,
                               "zoo_seconds": step.zoo_seconds}
    order = analysis_names()
    rank = {name: (order.index(name) if name in order else len(order), name) for name in analyses}
    skipped = {(e["model"], e["analysis"]): e for e in old.get("skipped", [])}
    for outcome in finished:
        for name, reason in outcome.skipped.items():
            skipped.pop((outcome.name, name), None)
            if reason is not None:
                skipped[(outcome.name, name)] = {"model": outcome.name, "analysis": name, "reason": reason}
    notes = {"analyses": [analyses[n] for n in sorted(analyses, key=rank.get)], "zoo_measured": ZOO_MEASURED,
             "skipped": [skipped[k] for k in sorted(skipped)]}
    atomic_write(out / STUDY_NOTES, json.dumps(notes, indent=1, sort_keys=True) + "\n")
