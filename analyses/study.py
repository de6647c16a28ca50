"""`mechhybrid study`: every Study A analysis on every model (default: the whole zoo), one model after another
or one model per worker process (`jobs`).

Why processes: the zoo's models are tiny (hidden 128), so a forward is too small for torch's intra-op threads
to use two cores well; one single-threaded process per core does (benchmarks/bench_study.py measures both).
Each worker writes its model's Results and checkpoints as a sequential run would (files are per model;
timings.json is locked), and results.csv is written once at the end, so an interrupted parallel study
resumes like a sequential one. Progress: every bar knows its total before its first job (a parallel study
first counts every model's jobs in the workers: 0.1 s per zoo model once a worker has imported torch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from mechhybrid.errors import MechHybridError

from .outdir import check_out_dir
from .registry import STUDY_A, count_jobs, get_analysis, quarantine_corrupt, run_analysis
from .schema import iter_result_paths, result_path, write_results_csv

__all__ = ["run_study", "zoo_models", "default_jobs"]


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


def _study_config(name: str, cfg, source: str, models: list[str]):
    if name == "representation" and not cfg.compare_with:
        others = tuple(m for m in models if m != source)
        return dataclasses.replace(cfg, compare_with=others)
    return cfg


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
    """The loaded model and the Config of each analysis on it."""
    import mechhybrid

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if quiet_notices:  # the slow-kernel notice is said once per study, by the first model's worker
        from mechhybrid import kernels

        kernels.silence_notice()
    hm = mechhybrid.load(source, **load_options)
    cfgs = {name: _study_config(name, configs.get(name) or get_analysis(name).config_cls(), source, models)
            for name in analyses}
    return hm, cfgs


def _count_model(source: str, models: list[str], out: Path, force: bool, configs: dict, analyses,
                 load_options: dict, threads: int | None = None, quiet_notices: bool = False) -> dict[str, int]:
    """{analysis: progress steps} of one model, before any of its work (a worker process's first task)."""
    hm, cfgs = _prepare(source, models, configs, analyses, load_options, threads, quiet_notices)
    return {name: count_jobs(name, hm, cfgs[name], out, force=force) for name in analyses}


def _study_model(source: str, models: list[str], out: Path, force: bool, configs: dict, analyses,
                 load_options: dict, progress: bool, threads: int | None = None,
                 quiet_notices: bool = False) -> list[Path]:
    """Every analysis on one model; returns its Result paths. Runs in the caller or in a worker process; in
    the caller, each analysis's bar gets its total before the first job."""
    hm, cfgs = _prepare(source, models, configs, analyses, load_options, threads, quiet_notices)
    counting = progress and _progress_queue is None
    totals = {name: count_jobs(name, hm, cfgs[name], out, force=force) if counting else None
              for name in analyses}
    paths = []
    for i, name in enumerate(analyses):
        with _bar(f"{hm.name} {name}", totals[name], progress) as bar:
            # --force empties the shared score cache once per model, so later analyses reuse fresh scores.
            run_analysis(name, hm, cfgs[name], out, force=force, progress=bar, write_csv=False,
                         clear_cache=force and i == 0)
        paths.append(result_path(out, hm.name, name))
    return paths


def run_study(models=None, out_dir="mechhybrid-out", force: bool = False, progress: bool = True,
              configs: dict | None = None, analyses=STUDY_A, load_options: dict | None = None,
              jobs: int | None = None) -> list[Path]:
    """Run every Study A analysis on every model (default: the whole zoo); returns the Result paths in model
    order.

    `configs` maps an analysis name to its Config (defaults otherwise); `load_options` go to `mechhybrid.load`
    for every model (dtype, allow_pickle, trust_remote_code). Representation compares each model with the
    others of the study by CKA unless its config names models itself. `jobs` worker processes run one model
    each, single-threaded (None: `default_jobs`); with 1, models run here one after another.

    A model that fails stops the study with its error; results.csv is then still in step with every Result
    that finished (other workers' models in flight finish first; models not started are not started)."""
    models = list(models) if models else zoo_models()
    if not models:
        raise MechHybridError("no zoo models are installed; name models with --models")
    jobs = default_jobs(models) if jobs is None else jobs
    if jobs < 1:
        raise MechHybridError(f"jobs must be >= 1, got {jobs}")
    for name in analyses:
        get_analysis(name)
    out = check_out_dir(out_dir)
    quarantine_corrupt(out)
    common = dict(models=models, out=out, force=force, configs=dict(configs or {}), analyses=tuple(analyses),
                  load_options=dict(load_options or {}))
    try:
        if jobs == 1 or len(models) == 1:
            paths = [p for source in models for p in _study_model(source, progress=progress, **common)]
        else:
            paths = _in_workers(models, min(jobs, len(models)), progress, common)
    except BaseException:
        # The study's own error is the one line the user sees; a study that failed before its first Result
        # leaves no table behind.
        if iter_result_paths(out):
            with contextlib.suppress(MechHybridError):
                write_results_csv(out)
        raise
    write_results_csv(out)
    return paths


def _in_workers(models: list[str], jobs: int, progress: bool, common: dict) -> list[Path]:
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
                                                    for i, source in enumerate(models)], bar, progress_queue)
                bar.total = sum(n for c in counts for n in c.values())
                bar.set_description(desc)
            futures = [pool.submit(_study_model, source, progress=False, threads=1,
                                   quiet_notices=progress or i > 0, **common) for i, source in enumerate(models)]
            by_model = _all_or_first_error(pool, futures, bar, progress_queue)
        _drain(progress_queue, bar)  # the workers have exited, so their last messages are queued
    return [p for paths in by_model for p in paths]


def _all_or_first_error(pool, futures: list, bar, progress_queue) -> list:
    """The futures' results in order; on the first error, the futures not yet started are cancelled, those
    running finish (their Results count), and the error is raised (a MechHybridError stays one line)."""
    pending, error = set(futures), None
    while pending:
        finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
        _drain(progress_queue, bar)
        for future in finished:
            if error is None and not future.cancelled() and future.exception() is not None:
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
