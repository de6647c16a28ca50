"""Analyses by name, and running one into an output directory: resume, force, corrupt-file handling, timings,
results.csv. The study over many models is analyses/study.py.

Layout and files: docs/results-schema.md. Every run leaves `OUT/results.csv` in step with the Results.
"""

from __future__ import annotations

import time
from pathlib import Path

from mechhybrid.errors import MechHybridError

from . import studies
from .common import Checkpoints, ScoreCache, config_dict, fingerprint, model_info, warn, weights_fingerprint
from .outdir import check_out_dir, check_writable, move_aside, prune
from .spec import Analysis
from .schema import (CorruptResultError, Result, iter_result_paths, model_slug, partial_dir, read_result,
                     result_path, update_timings, write_result, write_results_csv)
from .timing import FORWARD

__all__ = ["Analysis", "analysis_names", "get_analysis", "not_applicable", "check_applies", "check_out_dir",
           "quarantine_corrupt", "count_jobs", "run_analysis"]


def analysis_names() -> list[str]:
    """Every analysis, by name: those of the study definition (analyses/studies.py), in its order."""
    return [step.name for step in studies.STUDY]


def get_analysis(name: str) -> Analysis:
    """The analysis `name` (a one-line error naming the valid ones for any other name)."""
    return studies.step(name).analysis


def not_applicable(name: str, hm, config) -> str | None:
    """Why analysis `name` cannot run on `hm` with `config` (None: it can); a study skips it with this note."""
    return get_analysis(name).applies_to(hm, config)


def check_applies(name: str, hm, config) -> None:
    """A one-line bad-input error when analysis `name` is asked for on a model it does not apply to."""
    reason = not_applicable(name, hm, config)
    if reason is not None:
        raise MechHybridError(f"{name} does not apply to model {hm.name}: {reason}")


def quarantine_corrupt(out_dir) -> list[Path]:
    """Move every unreadable results JSON aside (`.json.corrupt`, bytes kept) and say so; returns the
    original paths. A corrupt file is never trusted: its analysis is recomputed by the next run."""
    moved = []
    for path in iter_result_paths(out_dir):
        try:
            read_result(path)
        except CorruptResultError as exc:
            _set_aside(path, exc)
            moved.append(path)
    return moved


def _set_aside(path: Path, exc: CorruptResultError) -> None:
    target = path.with_name(path.name + ".corrupt")
    move_aside(path, target)
    warn(f"{exc}; moved to {target.name}, it will be recomputed")


def _stored(path: Path, cfg_dict: dict, info: dict, weights: str) -> str | CorruptResultError:
    """What `path` holds: "finished" (a valid Result of this very model, weights and config), "other" (of
    another config or model), "none", or the error that makes it corrupt. Reads only."""
    if not path.exists():
        return "none"
    try:
        res = read_result(path)
    except CorruptResultError as exc:
        return exc
    same = res.config == cfg_dict and res.model == info and res.extra.get("weights_fingerprint") == weights
    return "finished" if same else "other"


def _finished(path: Path, cfg_dict: dict, info: dict, weights: str) -> bool:
    """The resume test: True if `path` holds this very Result; a corrupt one is set aside, said once."""
    state = _stored(path, cfg_dict, info, weights)
    if isinstance(state, CorruptResultError):
        _set_aside(path, state)
    elif state == "other":
        warn(f"{path} was computed with another config or model; recomputing")
    return state == "finished"


def _checkpoints(out: Path, hm, name: str, cfg_dict: dict, weights: str, force: bool, clear_cache: bool):
    slug_dir = out / "results" / model_slug(hm.name)
    cache = ScoreCache(slug_dir / "_scores", hm)
    if clear_cache:
        cache.clear()
    part = partial_dir(out, hm.name, name)
    ckpt = Checkpoints(part, fingerprint(name, model_info(hm), cfg_dict, weights), cache=cache)
    if force:
        ckpt.clear()
    return ckpt


def count_jobs(name: str, hm, config, out_dir, *, force: bool = False) -> int:
    """How many progress steps `run_analysis` will report for these arguments (0 for a finished Result it
    will reuse), known before its first job: a study's bar shows its whole total from the start."""
    analysis = get_analysis(name)
    check_applies(name, hm, config)
    path = result_path(out_dir, hm.name, name)
    if not force and _stored(path, config_dict(config), model_info(hm), weights_fingerprint(hm)) == "finished":
        return 0
    return analysis.count(hm, config)


def run_analysis(name: str, hm, config, out_dir, *, force: bool = False, progress=None,
                 write_csv: bool = True, clear_cache: bool | None = None) -> tuple[Result, bool]:
    """Run one analysis into out_dir unless a finished Result exists (`force` recomputes, and by default
    also empties the model's shared score cache: `clear_cache`).

    Returns (result, computed): computed is False when the stored Result was reused. A failure leaves the
    output folder as it was, less nothing that was finished (analyses/outdir.py)."""
    analysis = get_analysis(name)
    check_applies(name, hm, config)
    out = check_out_dir(out_dir)
    model_dir = out / "results" / model_slug(hm.name)
    check_writable(model_dir)
    out_existed = out.exists()
    info, cfg_dict, weights = model_info(hm), config_dict(config), weights_fingerprint(hm)
    path = result_path(out, hm.name, name)
    if not force and _finished(path, cfg_dict, info, weights):
        if progress is not None:
            progress.set_postfix_str("done earlier")
        return read_result(path), False
    try:
        return _compute(analysis, hm, config, out, force, progress, write_csv, clear_cache, weights), True
    except BaseException:
        prune(out, model_dir, remove_out=not out_existed)
        raise


def _compute(analysis: Analysis, hm, config, out: Path, force: bool, progress, write_csv: bool,
             clear_cache: bool | None, weights: str) -> Result:
    cfg_dict = config_dict(config)
    ckpt = _checkpoints(out, hm, analysis.name, cfg_dict, weights, force,
                        force if clear_cache is None else clear_cache)
    FORWARD.reset()
    t0 = time.perf_counter()
    result = analysis.run(hm, config, checkpoints=ckpt, progress=progress)
    wall = time.perf_counter() - t0
    result.extra["weights_fingerprint"] = weights
    write_result(result, out)
    ckpt.clear()
    update_timings(out, f"{model_slug(hm.name)}/{analysis.name}",
                   {"wall_s": round(wall, 3), "forward_s": round(FORWARD.total, 3), "forwards": FORWARD.calls})
    if write_csv:
        write_results_csv(out)
    return result
