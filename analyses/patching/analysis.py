"""patching: causal tracing on any checkpoint, resumable per sweep.

The plan: for every task (the zoo's needle, recall and facts pairs, or a user's JSONL pairs), every site set
(the residual stream before every layer, components, heads, recurrent states) and every direction (denoise,
noise), one exact sweep over every position (`mechhybrid.tracing.sweep`); each finished sweep is a checkpoint,
so an interrupted run resumes at the next. Then each attribution estimator over the same sites and its
agreement with the exact entries (when `mechhybrid.tracing.attribute` exists).
"""

from __future__ import annotations

import numpy as np

from mechhybrid.errors import MechHybridError

from ..common import Checkpoints, config_dict, library_versions, model_info
from ..data import speaks_zoo
from ..schema import DataInfo, Result
from . import attribution as attr
from .config import PatchingConfig
from .pairs import PairSet, file_pairs, zoo_pairs
from .rows import agreement_rows, baseline_rows, entry_rows, estimate_rows, token_labels
from .sweeps import SetSweep, changing, positions_of, run_sweep, site_infos

__all__ = ["ANALYSIS", "applies", "pair_sets", "jobs", "count", "run"]

ANALYSIS = "patching"
SEMANTICS = ("patch: a site's value at one token taken from the other prompt of the pair (denoise: clean into "
             "the corrupted run; noise: corrupted into the clean run); a state site replaces the recurrent state "
             "right after the token, carried forward. Metric: logit difference of the clean vs the corrupted "
             "answer at the prompt's last token (no corrupted answer: the clean answer's log-probability), "
             "normalised over the pairs' means, 0 = corrupted run, 1 = clean run")
"""What was done and measured, stated in every Result (`extra.semantics`)."""
MIN_GAP = 0.5
"""Clean minus corrupted logit difference (nats or logits) below which a task's corruption barely changes the
metric, so that its normalised entries are mostly noise (0.5: a probability ratio of about 1.6); noted."""


def applies(hm, cfg: PatchingConfig) -> str | None:
    """Why the analysis cannot run on `hm`, or None: it needs the zoo's language or a pairs file."""
    if cfg.pairs_file or speaks_zoo(hm):
        return None
    return ("it does not speak the zoo's language: give a JSONL file of pairs (pairs_file = \"pairs.jsonl\", one "
            "object per line with prompt, corrupted_prompt, answer, corrupted_answer)")


def pair_sets(hm, cfg: PatchingConfig) -> list[PairSet]:
    """The pairs of every task: the file's, else one set per zoo task."""
    why = applies(hm, cfg)
    if why:
        raise MechHybridError(f"{ANALYSIS} does not apply to model {hm.name}: {why}")
    if cfg.pairs_file:
        return [file_pairs(cfg.pairs_file, hm.tokenizer, cfg.pairs)]
    return [zoo_pairs(task, cfg.pairs, cfg.length, cfg.depth, cfg.seed) for task in cfg.tasks]


def jobs(hm, cfg: PatchingConfig) -> list[tuple[str, str, str]]:
    """(task, site set, direction) of every sweep, in run order; site sets the model lacks are left out."""
    tasks = ["file"] if cfg.pairs_file else list(cfg.tasks)
    sets = [s for s in cfg.sites if site_infos(hm, s)[0]]
    return [(t, s, d) for t in tasks for s in sets for d in cfg.directions]


def count(hm, config: PatchingConfig | None = None) -> int:
    """Progress steps of `run`: one per sweep."""
    return len(jobs(hm, config if config is not None else PatchingConfig()))


def _saved(sweep: SetSweep) -> dict:
    return {"values": sweep.values, "ci_low": sweep.ci_low, "ci_high": sweep.ci_high, "clean": sweep.clean,
            "corrupted": sweep.corrupted, "strategy": sweep.strategy, "positions": list(sweep.positions)}


def _restored(hm, pairs: PairSet, site_set: str, direction: str, saved: dict) -> SetSweep:
    infos = site_infos(hm, site_set)[1]
    return SetSweep(pairs.task, site_set, direction, tuple(infos), tuple(int(p) for p in saved["positions"]),
                    saved["values"], saved["ci_low"], saved["ci_high"], saved["clean"], saved["corrupted"],
                    pairs.n, saved["strategy"], tuple(changing(pairs, positions_of(pairs))))


def _sweeps(hm, cfg, sets: dict[str, PairSet], checkpoints, progress) -> list[SetSweep]:
    out = []
    for task, site_set, direction in jobs(hm, cfg):
        key = f"{task}/{site_set}/{direction}"
        saved = checkpoints.get(key) if checkpoints is not None else None
        if saved is None:
            sweep = run_sweep(hm, sets[task], site_set, direction, cfg.per_pair, cfg.seed)
            if checkpoints is not None:
                checkpoints.put(key, _saved(sweep))
        else:
            sweep = _restored(hm, sets[task], site_set, direction, saved)
        out.append(sweep)
        if progress is not None:
            progress.update(1)
    return out


def _attribution(hm, cfg, sets, sweeps, tokens, notes) -> list:
    """Estimates and agreement rows of every estimator over every exact sweep."""
    rows = []
    for sweep in sweeps:
        for method in cfg.attribution:
            try:
                estimates = attr.estimate(hm, sets[sweep.task], sweep, method, cfg.ig_steps)
            except MechHybridError as exc:
                notes.append(f"attribution ({method}) over {sweep.site_set}, {sweep.task}, {sweep.direction}: {exc}")
                continue
            found = attr.agreement(sweep, estimates, cfg.top_k, cfg.seed)
            rows += estimate_rows(sweep, estimates, method, tokens[sweep.task], cfg.seed)
            rows += agreement_rows(sweep, found, method, tokens[sweep.task], cfg.seed)
    return rows


def _notes(hm, cfg, sweeps: list[SetSweep]) -> list[str]:
    notes = [f"{s}: model {hm.name} has no such site; not swept" for s in cfg.sites if not site_infos(hm, s)[0]]
    for sweep in {s.task: s for s in sweeps}.values():
        gap = sweep.clean - sweep.corrupted
        if not np.isfinite(gap) or gap < MIN_GAP:
            notes.append(f"{sweep.task}: the clean run's logit difference ({sweep.clean:.4g}) is not above the "
                         f"corrupted run's ({sweep.corrupted:.4g}) by {MIN_GAP}; its normalised entries hardly "
                         "measure recovery")
    return notes


def run(hm, config: PatchingConfig | None = None, *, checkpoints: Checkpoints | None = None,
        progress=None) -> Result:
    """Run the patching analysis on `hm`: every sweep of `jobs`, then attribution, then the rows."""
    cfg = config if config is not None else PatchingConfig()
    sets = {p.task: p for p in pair_sets(hm, cfg)}
    if progress is not None:
        progress.total = count(hm, cfg)
        progress.refresh()
    sweeps = _sweeps(hm, cfg, sets, checkpoints, progress)
    tokens = {task: token_labels(p, positions_of(p)) for task, p in sets.items()}
    notes = _notes(hm, cfg, sweeps)
    rows = []
    for task in sets:
        mine = [s for s in sweeps if s.task == task]
        rows += baseline_rows(mine[0], cfg.seed) if mine else []
        for sweep in mine:
            rows += entry_rows(sweep, tokens[task], cfg.seed)
    if cfg.attribution and not attr.available():
        notes.append(attr.NOT_AVAILABLE)
    elif cfg.attribution:
        rows += _attribution(hm, cfg, sets, sweeps, tokens, notes)
    extra = {"semantics": SEMANTICS, "notes": notes, "per_pair": cfg.per_pair,
             "attribution": (list(cfg.attribution) if attr.available() else attr.NOT_AVAILABLE),
             "strategies": {f"{s.task}/{s.site_set}/{s.direction}": s.strategy for s in sweeps}}
    data = [DataInfo(f"zoo-{p.task}" if p.task != "file" else f"pairs:{cfg.pairs_file}",
                     f"seed {cfg.seed}" if p.task != "file" else "file", p.n) for p in sets.values()]
    methods = {r.method for r in rows} - {"none"}
    result = Result(analysis=ANALYSIS, model=model_info(hm), config=config_dict(cfg),
                    method="patch" if methods <= {"patch"} else "mixed", data=data, seed=cfg.seed,
                    versions=library_versions(), rows=rows, extra=extra)
    result.attach("tokens", [row for p in sets.values() for row in p.token_table()])
    return result
