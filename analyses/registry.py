"""Analyses by name, and running one into an output directory: resume, force, corrupt-file handling, timings,
results.csv. The study over many models is analyses/study.py.

Layout and files: docs/results-schema.md. Every run leaves `OUT/results.csv` in step with the Results.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mechhybrid.errors import MechHybridError

from .common import Checkpoints, ScoreCache, config_dict, fingerprint, model_info, warn, weights_fingerprint
from .schema import (CorruptResultError, Result, iter_result_paths, model_slug, partial_dir, read_result,
                     result_path, update_timings, write_result, write_results_csv)
from .timing import FORWARD

__all__ = ["Analysis", "ANALYSES", "STUDY_A", "get_analysis", "check_out_dir", "quarantine_corrupt",
           "run_analysis"]


@dataclass(frozen=True)
class Analysis:
    """One analysis: its Config class and its run(hm, config, *, checkpoints, progress) -> Result."""

    name: str
    config_cls: type
    run: Callable
    summary: str


def _analyses() -> dict[str, Analysis]:
    from . import ablation, representation

    return {
        "component_ablation": Analysis("component_ablation", ablation.ComponentAblationConfig, ablation.run,
                                       "Study A exp. 1-6: group, random, layer, thirds, perplexity, context, "
                                       "resilience"),
        "representation": Analysis("representation", representation.RepresentationConfig, representation.run,
                                   "Study A exp. 7: residual-stream diagnostics per ablated component"),
    }


ANALYSES: dict[str, Analysis] = _analyses()
STUDY_A = ("component_ablation", "representation")
"""What `mechhybrid study` runs, in order."""


def get_analysis(name: str) -> Analysis:
    if name not in ANALYSES:
        raise MechHybridError(f"unknown analysis {name!r}; analyses: {', '.join(ANALYSES)}")
    return ANALYSES[name]


def check_out_dir(out_dir) -> Path:
    """The output directory, created if needed; a clear error if it is a file or cannot be written."""
    out = Path(out_dir)
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise MechHybridError(f"output path {parent} exists and is not a directory")
    try:
        (out / "results").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MechHybridError(f"cannot create output directory {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise MechHybridError(f"output directory {out} is not writable")
    return out


def quarantine_corrupt(out_dir) -> list[Path]:
    """Move every unreadable results JSON aside (`.json.corrupt`, bytes kept) and say so; returns the
    original paths. A corrupt file is never trusted: its analysis is recomputed by the next run."""
    moved = []
    for path in iter_result_paths(out_dir):
        try:
            read_result(path)
        except CorruptResultError as exc:
            target = path.with_name(path.name + ".corrupt")
            os.replace(path, target)
            warn(f"{exc}; moved to {target.name}, it will be recomputed")
            moved.append(path)
    return moved


def _finished(path: Path, cfg_dict: dict, info: dict, weights: str) -> bool:
    """True if `path` holds a valid Result of this very model, weights and config (the resume test)."""
    if not path.exists():
        return False
    try:
        res = read_result(path)
    except CorruptResultError as exc:
        target = path.with_name(path.name + ".corrupt")
        os.replace(path, target)
        warn(f"{exc}; moved to {target.name}, recomputing")
        return False
    if (res.config != cfg_dict or res.model != info or res.extra.get("weights_fingerprint") != weights):
        warn(f"{path} was computed with another config or model; recomputing")
        return False
    return True


def _checkpoints(out: Path, hm, name: str, cfg_dict: dict, weights: str, force: bool, clear_cache: bool):
    slug_dir = out / "results" / model_slug(hm.name)
    cache = ScoreCache(slug_dir / "_scores", hm)
    if clear_cache:
        cache.clear()
        cache = ScoreCache(slug_dir / "_scores", hm)
    part = partial_dir(out, hm.name, name)
    fp = fingerprint(name, model_info(hm), cfg_dict, weights)
    if force:
        Checkpoints(part, fp).clear()
    return Checkpoints(part, fp, cache=cache)


def run_analysis(name: str, hm, config, out_dir, *, force: bool = False, progress=None,
                 write_csv: bool = True, clear_cache: bool | None = None) -> tuple[Result, bool]:
    """Run one analysis into out_dir unless a finished Result exists (`force` recomputes, and by default
    also empties the model's shared score cache: `clear_cache`).

    Returns (result, computed): computed is False when the stored Result was reused."""
    analysis = get_analysis(name)
    out = check_out_dir(out_dir)
    info, cfg_dict, weights = model_info(hm), config_dict(config), weights_fingerprint(hm)
    path = result_path(out, hm.name, name)
    if not force and _finished(path, cfg_dict, info, weights):
        if progress is not None:
            progress.set_postfix_str("done earlier")
        return read_result(path), False
    ckpt = _checkpoints(out, hm, name, cfg_dict, weights, force, force if clear_cache is None else clear_cache)
    FORWARD.reset()
    t0 = time.perf_counter()
    result = analysis.run(hm, config, checkpoints=ckpt, progress=progress)
    wall = time.perf_counter() - t0
    result.extra["weights_fingerprint"] = weights
    write_result(result, out)
    ckpt.clear()
    update_timings(out, f"{model_slug(hm.name)}/{name}",
                   {"wall_s": round(wall, 3), "forward_s": round(FORWARD.total, 3), "forwards": FORWARD.calls})
    if write_csv:
        write_results_csv(out)
    return result, True
