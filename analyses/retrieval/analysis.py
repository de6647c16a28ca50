"""retrieval: Study B's needle-in-a-haystack analysis on any checkpoint, resumable per condition.

The plan: the needle grid (length x depth) at baseline; each mixer kind zeroed in prefill, generation and
both; optionally just-read-twice prompts; head sparsification (with its random control: subsets.py), needle
exposure and retrieval heads where the model has softmax attention (heads.py). Each condition generates the
whole grid once; its per-prompt scores are a checkpoint, so an interrupted run resumes at the next condition.
"""

from __future__ import annotations

from mechhybrid.errors import MechHybridError

from ..common import Checkpoints, config_dict, library_versions, model_info
from ..data import speaks_zoo
from ..schema import DataInfo, Result
from .conditions import BASELINE, Condition, kind_conditions, mixer_kinds
from .config import RetrievalConfig
from .generate import decoder, generate_scores
from .heads import HeadState, head_conditions, head_extra, score_rows_of
from .prompts import NeedlePrompt, just_read_twice, text_grid, zoo_grid
from .retention import RETENTION_TASKS, retention_rows
from .rows import condition_rows, k95_rows
from .subsets import random_summary_rows

__all__ = ["ANALYSIS", "run", "count", "plan", "prompts_for", "applies"]

ANALYSIS = "retrieval"
ZOO_TRAINED_LENGTH = 256
"""The zoo's training context (recipe seq_len): just-read-twice runs only up to half of it."""
ZOO_CHANCE = 0.01
"""Exact match of a zoo value (2 digits) by guessing: 1 in 100."""


def applies(hm, cfg: RetrievalConfig) -> str | None:
    """Why the analysis cannot run on `hm`, or None: it needs the zoo's language or a haystack file."""
    if cfg.haystack or speaks_zoo(hm):
        return None
    return ("it does not speak the zoo's language: give a haystack text file (haystack = \"essays.txt\") "
            "and, if needed, the needle, question, answer_prefix and answer")


def prompts_for(hm, cfg: RetrievalConfig) -> tuple[list[NeedlePrompt], bool]:
    """(the grid's prompts, whether they are the zoo's)."""
    why = applies(hm, cfg)
    if why:
        raise MechHybridError(f"{ANALYSIS} does not apply to model {hm.name}: {why}")
    if cfg.haystack:
        if hm.tokenizer is None:
            raise MechHybridError(f"{ANALYSIS}: a haystack file needs model {hm.name}'s tokenizer")
        return text_grid(hm.tokenizer, cfg.haystack, cfg.lengths, cfg.depths, cfg.needle, cfg.question,
                         cfg.answer_prefix, cfg.answer), False
    return zoo_grid(cfg.lengths, cfg.depths, cfg.per_cell, cfg.seed), True


def _jrt_prompts(prompts: list[NeedlePrompt], zoo: bool, notes: list[str]) -> list[NeedlePrompt]:
    if zoo:
        kept = [p for p in prompts if p.context_length <= ZOO_TRAINED_LENGTH // 2]
        if len(kept) < len(prompts):
            notes.append(f"just-read-twice: lengths above {ZOO_TRAINED_LENGTH // 2} left out (the doubled prompt "
                         f"would exceed the {ZOO_TRAINED_LENGTH} tokens the zoo was trained on)")
        return [just_read_twice(p) for p in kept]
    return [just_read_twice(p, context_start=0) for p in prompts]


def plan(hm, cfg: RetrievalConfig, state: HeadState | None = None) -> list[Condition]:
    """Every condition of the run, baseline first (`state`: what the head conditions learn as the run goes)."""
    kinds = mixer_kinds(hm, cfg.kinds)
    if cfg.kinds and not kinds:
        raise MechHybridError(f"{ANALYSIS}: model {hm.name} has none of the kinds {list(cfg.kinds)}")
    conds = [BASELINE] + kind_conditions(hm, kinds, cfg.phases)
    if cfg.jrt:
        conds += [Condition("jrt:baseline", "none", coords={"prompt": "jrt"}, jrt=True)]
        conds += kind_conditions(hm, [k for k in kinds if k == "attention"], ("all",), jrt=True)
    conds += head_conditions(hm, cfg, state)
    return conds


def count(hm, config: RetrievalConfig | None = None) -> int:
    """Progress steps of `run`: one per condition."""
    return len(plan(hm, config if config is not None else RetrievalConfig()))


def run(hm, config: RetrievalConfig | None = None, *, checkpoints: Checkpoints | None = None,
        progress=None) -> Result:
    """Run the retrieval analysis on `hm`: every condition of `plan` over the whole grid, then its rows."""
    cfg = config if config is not None else RetrievalConfig()
    prompts, zoo = prompts_for(hm, cfg)
    notes: list[str] = []
    jrt = _jrt_prompts(prompts, zoo, notes) if cfg.jrt else []
    state = HeadState(hm, cfg, prompts)
    conds = plan(hm, cfg, state)
    if progress is not None:
        progress.total = len(conds)
        progress.refresh()
    decode = decoder(hm, zoo)
    scorer = cfg.scorer or ("exact" if zoo else "substring")
    scores: dict[str, dict] = {}
    for cond in conds:
        if cond.applies is not None and not cond.applies():
            if progress is not None:
                progress.update(1)
            continue
        saved = checkpoints.get(cond.name) if checkpoints is not None else None
        if saved is None:
            saved = generate_scores(hm, jrt if cond.jrt else prompts, cond, max_new_tokens=cfg.max_new_tokens,
                                    batch_size=cfg.batch_size, generation_phase=cfg.generation_phase,
                                    decode=decode)
            if checkpoints is not None:
                checkpoints.put(cond.name, saved)
        scores[cond.name] = saved
        if progress is not None:
            progress.update(1)
    rows = []
    for cond in (c for c in conds if c.name in scores):
        grid = jrt if cond.jrt else prompts
        rows += condition_rows(cond, grid, scores[cond.name], scores.get(cond.baseline_name), scorer, cfg.seed,
                               cells=not (cond.method == "keep_heads" and "trial" in cond.coords))
    if zoo and cfg.retention_items and cfg.head_curve:
        from ..zoo_tasks import zoo_task

        tasks = {name: zoo_task(name, cfg.retention_items, cfg.seed) for name in RETENTION_TASKS}
        rows += retention_rows(hm, conds, tasks, cfg.batch_size, cfg.seed, checkpoints)
    rows += random_summary_rows(conds, scores, rows, cfg.seed)
    chance = ZOO_CHANCE if zoo and scorer == "exact" else None
    rows += k95_rows(rows, scorer, chance, cfg.seed, notes) + score_rows_of(state, cfg, cfg.seed)
    if cfg.haystack and cfg.head_curve and "static" in cfg.head_selections:
        notes.append("static head ranking: calibrated on the first prompts of the grid (a text haystack has no "
                     "separate calibration draw)")
    extra = {"notes": notes, "scorer": scorer, "chance": chance, "generation_phase": cfg.generation_phase,
             "haystack": "zoo" if zoo else cfg.haystack, **head_extra(state, cfg)}
    data = [DataInfo("zoo-needle-grid" if zoo else f"haystack:{cfg.haystack}",
                     f"seed {cfg.seed}" if zoo else "file", len(prompts))]
    methods = sorted({c.method for c in conds} - {"none"})
    return Result(analysis=ANALYSIS, model=model_info(hm), config=config_dict(cfg),
                  method=methods[0] if len(methods) == 1 else ("mixed" if methods else "none"), data=data,
                  seed=cfg.seed, versions=library_versions(), rows=rows, extra=extra)
