"""representation: what removing each component does to the residual stream, and whether that predicts
what it does to behaviour (Study A exp. 7)."""

from __future__ import annotations

import math

import numpy as np
import torch

from mechhybrid.errors import MechHybridError

from ..ablation.conditions import BASELINE, ablated_kinds, sweep_conditions
from ..common import Checkpoints, config_dict, library_versions, model_info
from ..data import TaskSet, load_tasks, model_max_len
from ..evaluate import Job, evaluate_jobs
from ..hidden import embeddings, hidden_states_many
from ..schema import Result, Row
from ..scoring import interventions_for
from ..stats import ppl_from_nll, spearman_ci
from .config import RepresentationConfig
from .diagnostics import DIAGNOSTICS, component_diagnostics
from .models import cka_models_rows

__all__ = ["run", "count", "ANALYSIS"]

ANALYSIS = "representation"


def diag_inputs(hm, ts: TaskSet, cfg: RepresentationConfig) -> torch.Tensor:
    """[batch, seq] windows of the language-modelling text, equal length (no padding to confound norms)."""
    if ts.lm is None:
        raise MechHybridError(f"{ANALYSIS}: model {hm.name} has no language-modelling benchmark to compute "
                              "hidden-state diagnostics on; add data.wikitext")
    stream = [t for d in ts.tasks[ts.lm].docs for t in d]
    length = min(cfg.diag_length, len(stream), model_max_len(hm, cfg.max_tokens) or cfg.diag_length)
    n = max(1, min(cfg.diag_items, len(stream) // length))
    return torch.tensor(stream[: n * length], dtype=torch.long).view(n, length)


def _diagnostics(hm, x, conds, refs, cfg, checkpoints) -> dict[str, dict]:
    """{condition key: diagnostics}, conditions stacked per forward, checkpointed one by one."""
    from mechhybrid import Capture

    out = {}
    todo = []
    for c in conds:
        saved = checkpoints.get("diag|" + c.key) if checkpoints is not None else None
        if saved is not None:
            out[c.key] = saved
        else:
            todo.append(c)
    if not todo:
        return out
    x = x.to(hm.hf_model.device)
    base = hidden_states_many(hm, x, [[]])[0]  # checked finite
    with torch.no_grad():
        caps = hm.run(x, [Capture([c.components[0] for c in todo])]).captures
    emb = embeddings(hm, x)
    per_set = base.numel() * base.element_size()
    chunk = max(1, min(cfg.conditions_per_forward, int(cfg.budget_mb * 2**20 // max(1, per_set))))
    for c0 in range(0, len(todo), chunk):
        part = todo[c0:c0 + chunk]
        ablated = hidden_states_many(hm, x, [interventions_for(c, x, refs) for c in part])
        for c, abl in zip(part, ablated):
            comp = c.components[0]
            inp = emb if comp.layer == 0 else base[comp.layer - 1]
            d = component_diagnostics(hm, comp.layer, base, abl, caps[comp], inp)
            d = {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in d.items()}
            out[c.key] = d
            if checkpoints is not None:
                checkpoints.put("diag|" + c.key, d)
    return out


def _behaviour(ts: TaskSet, scores: dict, conds) -> dict[str, list[float]]:
    """{benchmark: drop per condition}: accuracy drop, or log perplexity ratio for the lm benchmark."""
    out = {}
    for name, task in ts.tasks.items():
        base = scores[Job(name, BASELINE).key]
        vals = []
        for c in conds:
            s = scores[Job(name, c).key]
            if task.kind == "lm":
                vals.append(math.log(ppl_from_nll(s["nll"], s["tok"]) / ppl_from_nll(base["nll"], base["tok"])))
            else:
                vals.append(float(np.mean(base["correct"]) - np.mean(s["correct"])))
        out[name] = vals
    return out


def _rows(conds, diags, behaviour, cfg, n_tokens) -> list[Row]:
    rows = []
    for c in conds:
        d = diags[c.key]
        rows += [Row(c.name, c.method, k, float(d[k]), n=n_tokens, seed=cfg.seed, coords=c.coords)
                 for k in DIAGNOSTICS]
    for k in DIAGNOSTICS:
        x = np.array([float(diags[c.key][k]) for c in conds])
        for bench, drops in behaviour.items():
            y = np.asarray(drops)
            ok = np.isfinite(x) & np.isfinite(y)
            rho, lo, hi = spearman_ci(x[ok], y[ok], cfg.seed) if ok.sum() >= 2 else (None, None, None)
            rows.append(Row(f"corr:{k}:{bench}", cfg.method, "spearman", rho, lo, hi, n=int(ok.sum()), seed=cfg.seed,
                            coords={"diagnostic": k, "benchmark": bench}))
    return rows


def _plan(hm, cfg: RepresentationConfig, ts: TaskSet):
    """(diagnostic inputs, conditions, scoring jobs, other models to compare with)."""
    x = diag_inputs(hm, ts, cfg)
    conds = sweep_conditions(hm, ablated_kinds(hm, cfg), cfg.method)
    if not conds:
        raise MechHybridError(f"{ANALYSIS}: model {hm.name} has no component of the selected kinds")
    jobs = [Job(b, c) for c in [BASELINE] + conds for b in ts.tasks]
    others = [m for m in dict.fromkeys(cfg.compare_with) if m != hm.name]
    return x, conds, jobs, others


def count(hm, config: RepresentationConfig | None = None, *, tasks: TaskSet | None = None) -> int:
    """The progress steps `run` reports: the diagnostics of each condition, each scoring job, each model
    compared with."""
    cfg = config if config is not None else RepresentationConfig()
    _, conds, jobs, others = _plan(hm, cfg, tasks if tasks is not None else load_tasks(hm, cfg, ANALYSIS))
    return len(conds) + len(jobs) + len(others)


def run(hm, config: RepresentationConfig | None = None, *, tasks: TaskSet | None = None,
        checkpoints: Checkpoints | None = None, progress=None) -> Result:
    """Run the representation diagnostics on `hm`; `tasks` overrides the benchmarks."""
    cfg = config if config is not None else RepresentationConfig()
    ts = tasks if tasks is not None else load_tasks(hm, cfg, ANALYSIS)
    x, conds, jobs, others = _plan(hm, cfg, ts)
    if progress is not None:
        progress.total = len(conds) + len(jobs) + len(others)
        progress.refresh()
    diags = _diagnostics(hm, x, conds, ts.refs, cfg, checkpoints)
    if progress is not None:
        progress.update(len(conds))
    scores = evaluate_jobs(hm, jobs, ts.tasks, ts.refs, chunk=cfg.conditions_per_forward,
                           batch_size=cfg.batch_size, budget_mb=cfg.budget_mb, checkpoints=checkpoints,
                           progress=progress)
    behaviour = _behaviour(ts, scores, conds)
    rows = _rows(conds, diags, behaviour, cfg, int(x.numel()))
    rows += cka_models_rows(hm, x, others, cfg.seed, checkpoints, progress)
    extra = {
        "diagnostic_inputs": {"benchmark": ts.lm, "items": int(x.shape[0]), "tokens": int(x.shape[1])},
        "behaviour": {b: dict(zip((c.name for c in conds), v)) for b, v in behaviour.items()},
        "behaviour_measure": "accuracy drop (baseline - ablated); lm: log(ppl_ablated / ppl_baseline)",
        "site": "diagnostics at the ablated layer's output; kl_logit_lens over all positions, final norm applied",
        "cka_per_layer": {c.name: [float(v) for v in np.asarray(diags[c.key]["cka_layers"])] for c in conds},
        "notes": ts.notes,
        "cka_models_layer_match": "layer l of this model vs the other model's layer at the same relative depth",
    }
    return Result(analysis=ANALYSIS, model=model_info(hm), config=config_dict(cfg), method=cfg.method,
                  data=ts.data, seed=cfg.seed, versions=library_versions(), rows=rows, extra=extra)
