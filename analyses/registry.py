"""Analyses by name, and running them into an output directory: resume, force, corrupt-file handling,
timings, results.csv, and the study over many models.

Layout and files: docs/results-schema.md. Every run leaves `OUT/results.csv` in step with the Results.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mechhybrid.errors import MechHybridError

from .common import Checkpoints, config_dict, fingerprint, model_info, warn
from .schema import (CorruptResultError, Result, iter_result_paths, model_slug, partial_dir, read_result,
                     result_path, update_timings, write_result, write_results_csv)
from .timing import FORWARD

__all__ = ["Analysis", "ANALYSES", "STUDY_A", "get_analysis", "check_out_dir", "quarantine_corrupt",
           "run_analysis", "zoo_models", "run_study"]


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


def _finished(path: Path, cfg_dict: dict, info: dict) -> bool:
    """True if `path` holds a valid Result of this very model and config (the resume test)."""
    if not path.exists():
        return False
    try:
        res = read_result(path)
    except CorruptResultError as exc:
        target = path.with_name(path.name + ".corrupt")
        os.replace(path, target)
        warn(f"{exc}; moved to {target.name}, recomputing")
        return False
    if res.config != cfg_dict or res.model.get("name") != info["name"]:
        warn(f"{path} was computed with another config or model; recomputing")
        return False
    return True


def run_analysis(name: str, hm, config, out_dir, *, force: bool = False, progress=None,
                 write_csv: bool = True) -> tuple[Result, bool]:
    """Run one analysis into out_dir unless a finished Result exists (`force` recomputes).

    Returns (result, computed): computed is False when the stored Result was reused."""
    analysis = get_analysis(name)
    out = check_out_dir(out_dir)
    info, cfg_dict = model_info(hm), config_dict(config)
    path = result_path(out, hm.name, name)
    if not force and _finished(path, cfg_dict, info):
        if progress is not None:
            progress.set_postfix_str("done earlier")
        return read_result(path), False
    ckpt = Checkpoints(partial_dir(out, hm.name, name), fingerprint(name, info, cfg_dict))
    if force:
        ckpt.clear()
        ckpt = Checkpoints(partial_dir(out, hm.name, name), fingerprint(name, info, cfg_dict))
    FORWARD.reset()
    t0 = time.perf_counter()
    result = analysis.run(hm, config, checkpoints=ckpt, progress=progress)
    wall = time.perf_counter() - t0
    write_result(result, out)
    ckpt.clear()
    update_timings(out, f"{model_slug(hm.name)}/{name}",
                   {"wall_s": round(wall, 3), "forward_s": round(FORWARD.total, 3), "forwards": FORWARD.calls})
    if write_csv:
        write_results_csv(out)
    return result, True


def zoo_models() -> list[str]:
    """Every shipped zoo model as a load source ("zoo:NAME")."""
    try:
        from mechhybrid.zoo.registry import zoo_names
    except ImportError:
        from mechhybrid.zoo.recipes import ZOO_SPECS

        return [f"zoo:{s.name}" for s in ZOO_SPECS]
    return [f"zoo:{n}" for n in zoo_names()]


def run_study(models=None, out_dir="mechhybrid-out", force: bool = False, progress: bool = True,
              configs: dict | None = None, analyses=STUDY_A) -> list[Path]:
    """Run every Study A analysis on every model (default: the whole zoo); returns the Result paths.

    `configs` maps an analysis name to its Config (defaults otherwise). Representation compares each model
    with the others of the study by CKA unless its config names models itself."""
    import mechhybrid
    from tqdm import tqdm

    out = check_out_dir(out_dir)
    quarantine_corrupt(out)
    models = list(models) if models else zoo_models()
    configs = dict(configs or {})
    for name in analyses:
        get_analysis(name)
    paths = []
    for source in models:
        hm = mechhybrid.load(source)
        for name in analyses:
            cfg = configs.get(name) or get_analysis(name).config_cls()
            cfg = _study_config(name, cfg, source, models)
            with tqdm(desc=f"{hm.name} {name}", unit="job", disable=not progress, leave=True) as bar:
                run_analysis(name, hm, cfg, out, force=force, progress=bar, write_csv=False)
            paths.append(result_path(out, hm.name, name))
    write_results_csv(out)
    return paths


def _study_config(name: str, cfg, source: str, models: list[str]):
    import dataclasses

    if name == "representation" and not cfg.compare_with:
        others = tuple(m for m in models if m != source)
        return dataclasses.replace(cfg, compare_with=others)
    return cfg
