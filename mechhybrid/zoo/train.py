"""Training of zoo models: one recipe, seeded, resumable, deterministic on CPU.

Axis names: "batch", "seq", "vocab".

Data is a pure function of (seed, step): every step draws its documents from its own RNG
stream, so a resumed run sees exactly the batches an uninterrupted run would, and the same
seed gives the same loss curve (tests/zoo/test_train.py, tests/zoo/test_resume.py).

A run lives in a run directory outside the repository, by default
`cache_root()/zoo-runs/NAME-r{recipe version}/`: `train_state.pt` (weights, optimiser, RNG and the log,
written atomically every recipe.checkpoint_every steps), `train_log.json` (a readable copy of the log) and,
once finalised, `model/` (checkpoint + card). Train in the background (never part of the tests beyond a
few steps), and continue in a later session with --resume:

    mechhybrid zoo train hybrid-gdn [--run-dir DIR] [--resume | --fresh] [--steps N]
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from pathlib import Path

from mechhybrid.errors import MechHybridError
from mechhybrid.mamba1_scan import training_scan
from mechhybrid.zoo import language as lang
from mechhybrid.zoo.curves import MAX_STEPS_REASON, stop_reason, with_summary
from mechhybrid.zoo.recipes import RECIPE, STOPPING_FIELDS, Recipe, build_model, zoo_spec
from mechhybrid.zoo.tokenizer import TOKEN_ID, encode_words

__all__ = ["make_batch", "micro_batches", "train_step", "train_model", "quiet", "weighted_loss", "cache_root",
           "default_run_dir", "prepare_run_dir", "read_log", "carry_over", "STATE_FILE", "LOG_FILE"]

STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.json"


def cache_root() -> Path:
    """The user cache of mechhybrid: $MECHHYBRID_CACHE, else $XDG_CACHE_HOME/mechhybrid, else
    ~/.cache/mechhybrid."""
    if os.environ.get("MECHHYBRID_CACHE"):
        return Path(os.environ["MECHHYBRID_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "mechhybrid"
    return Path.home() / ".cache" / "mechhybrid"


def default_run_dir(name: str, recipe: Recipe = RECIPE) -> Path:
    """Where `mechhybrid zoo train NAME` keeps its run: one directory per model and recipe version."""
    return cache_root() / "zoo-runs" / f"{name}-r{recipe.version}"


def quiet() -> None:
    """Silence the missing-fast-kernel warnings (fla, mamba_ssm, causal_conv1d) of SSM families."""
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def _document_rows(rng, recipe: Recipe, warmup: bool = False) -> list[tuple[list[int], list[float]]]:
    """`recipe.batch_size` documents, one per row: (token ids, per-token loss weights) each.

    In the induction warm-up (`warmup`) documents are drawn from `recipe.warmup_mix` and only their answers
    are weighed, with weight 1. One document per row: packing four copy documents into a 256-token row
    kept the Transformer control at chance (0.003 after 400 steps, answers only) where one per row learned.
    """
    mix = recipe.warmup_mix if warmup and recipe.warmup_mix is not None else recipe.mix
    kinds, probs = zip(*mix)
    rows = []
    for _ in range(recipe.batch_size):
        doc = lang.sample_doc(rng, rng.choices(kinds, weights=probs)[0])
        ids = encode_words(doc.words)[:recipe.seq_len]
        w = [0.0 if warmup else 1.0] * len(ids)
        for p in doc.random_positions:
            if p < len(ids) and not warmup:
                w[p] = recipe.random_weight
        for s, e in doc.answer_spans:
            for p in range(s, min(e, len(ids))):
                w[p] = 1.0 if warmup else recipe.answer_weight
        w[0] = 0.0  # nothing predicts a document's first token
        rows.append((ids, w))
    return rows


def make_batch(step: int, recipe: Recipe = RECIPE):
    """(input_ids [batch, seq] long, target weights [batch, seq] float) of training step `step`.

    One document (starting with <bos>) per row, rows sorted by length (longest first) and right-padded to
    the longest; weights[b, t] weighs the prediction of token t (0 on <pad> and on each row's first token).
    Steps before `recipe.induction_warmup_steps` weigh answers only (the warm-up, drawn from recipe.warmup_mix).
    """
    import torch

    rng = lang.doc_rng(recipe.seed, "train", step)
    warmup = step < recipe.induction_warmup_steps
    rows = sorted(_document_rows(rng, recipe, warmup), key=lambda r: -len(r[0]))  # stable: ties keep draw order
    width = len(rows[0][0])
    ids = torch.full((len(rows), width), TOKEN_ID["<pad>"], dtype=torch.long)
    w = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, (row_ids, row_w) in enumerate(rows):
        ids[i, :len(row_ids)] = torch.tensor(row_ids)
        w[i, :len(row_w)] = torch.tensor(row_w)
    return ids, w


def micro_batches(ids, weights, rows: int):
    """Consecutive `rows`-row slices of a length-sorted batch, each cut to its own longest row: the forward
    then costs about the real tokens, not batch x the longest document."""
    for start in range(0, ids.shape[0], rows):
        w = weights[start:start + rows]
        width = int((w.sum(0) > 0).nonzero().max()) + 1 if w.any() else 1
        yield ids[start:start + rows, :width], w[:, :width]


def weighted_loss(logits, ids, weights, total_weight=None):
    """Weighted next-token cross-entropy: sum(w * nll) / sum(w) over predicted tokens.

    `total_weight` replaces sum(w) when this is one micro-batch of a larger step, so that the micro-batch
    losses add up to the step's loss exactly."""
    import torch.nn.functional as F

    nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1),
                          reduction="none")
    w = weights[:, 1:].reshape(-1)
    return (nll * w).sum() / (w.sum() if total_weight is None else total_weight)


def train_step(model, opt, ids, weights, recipe: Recipe) -> float:
    """One optimiser step over a batch, as length-sorted micro-batches whose gradients accumulate."""
    import torch

    total = weights[:, 1:].sum()
    opt.zero_grad(set_to_none=True)
    loss = 0.0
    for mids, mw in micro_batches(ids, weights, recipe.micro_batch):
        part = weighted_loss(model(input_ids=mids).logits, mids, mw, total)
        part.backward()
        loss += float(part.detach())
    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    opt.step()
    return loss


def _fresh_log(name: str, recipe: Recipe) -> dict:
    return {"name": name, "recipe": _plain(dataclasses.asdict(recipe)), "loss": [], "probe": [], "tokens": 0,
            "wall_s": 0.0, "cpu_s": 0.0, "steps": 0}


def _plain(value):
    """JSON's view of a value (tuples become lists), so a stored recipe compares equal to the current one."""
    return json.loads(json.dumps(value))


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)  # atomic: a kill mid-save never leaves a half-written file


def _save_state(out: Path, model, opt, step: int, log: dict) -> None:
    import torch

    # One file holds weights, optimiser, RNG and the log, so they can never disagree after a kill.
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
             "torch_rng": torch.get_rng_state(), "log": log}
    _write_atomic(out / STATE_FILE, lambda tmp: torch.save(state, tmp))
    _write_atomic(out / LOG_FILE, lambda tmp: tmp.write_text(json.dumps(log)))


def _load_state(out: Path, model, opt, name: str, recipe: Recipe) -> tuple[int, dict]:
    import torch

    path = out / STATE_FILE
    if not path.exists():
        return 0, _fresh_log(name, recipe)
    try:
        state = torch.load(path, weights_only=True)  # tensors and plain data: no pickled code runs
        log = state["log"]
    except Exception as error:  # any unreadable checkpoint is the same one-line problem for the user
        raise MechHybridError(f"training checkpoint unreadable ({type(error).__name__}): {path}; "
                              "pass --fresh to start over") from None
    if log.get("name") != name or log.get("recipe") != _plain(dataclasses.asdict(recipe)):
        raise MechHybridError(f"the run in {out} was started for {log.get('name')!r} with recipe version "
                              f"{log.get('recipe', {}).get('version')} and other fields than this one; pass "
                              "--fresh to start over, or another --run-dir")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), log


def read_log(run_dir) -> dict | None:
    """The log of the run in `run_dir` (its readable copy; {} when that copy is damaged), None when there is
    no run there (no checkpoint)."""
    path = Path(run_dir) / LOG_FILE
    if not (Path(run_dir) / STATE_FILE).exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def prepare_run_dir(run_dir, resume: bool, fresh: bool) -> str:
    """Check what `run_dir` holds against --resume / --fresh; returns one line saying what will happen.

    A run already there needs --resume (continue) or --fresh (its checkpoint and log are deleted);
    --resume with no run there is an error too (a mistyped --run-dir would otherwise start from scratch).
    """
    run_dir = Path(run_dir)
    log = read_log(run_dir)
    if resume and fresh:
        raise MechHybridError("--resume and --fresh contradict each other: pass one")
    if log is not None and not (resume or fresh):
        raise MechHybridError(f"{run_dir} already holds a run (step {log.get('steps', '?')}); pass --resume to "
                              "continue it or --fresh to start over")
    if log is None and resume:
        raise MechHybridError(f"nothing to resume in {run_dir} (no {STATE_FILE}); drop --resume to start a run")
    if fresh:
        for stale in (STATE_FILE, LOG_FILE, STATE_FILE + ".tmp", LOG_FILE + ".tmp"):
            (run_dir / stale).unlink(missing_ok=True)
        return f"starting {run_dir} afresh"
    return f"resuming {run_dir} at step {log.get('steps', '?')}" if log else f"starting a run in {run_dir}"


def carry_over(source_dir, target_dir, name: str, recipe: Recipe = RECIPE) -> str:
    """Continue the run in `source_dir` (another recipe version) as a run of `recipe` in `target_dir`: allowed
    when the two recipes differ only in STOPPING_FIELDS, so every step it took is a step of `recipe` too. The
    checkpoint is copied with the log's recipe replaced and its stop judged again by `recipe`'s rule at the step
    the run reached (a run that `recipe` would also have stopped there stays stopped; any other goes on with
    `--resume`); the log records where it came from. Returns one line."""
    import torch

    source, target = Path(source_dir), Path(target_dir)
    if read_log(target) is not None:
        raise MechHybridError(f"{target} already holds a run; pass --resume to continue it (or --fresh)")
    path = source / STATE_FILE
    if not path.exists():
        raise MechHybridError(f"nothing to carry over: no {STATE_FILE} in {source}")
    try:
        state = torch.load(path, weights_only=True)  # tensors and plain data: no pickled code runs
        log = state["log"]
    except Exception as error:
        raise MechHybridError(f"training checkpoint unreadable ({type(error).__name__}): {path}") from None
    ours, theirs = _plain(dataclasses.asdict(recipe)), log.get("recipe") or {}
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k) and k not in STOPPING_FIELDS)
    if log.get("name") != name or differ:
        raise MechHybridError(f"the run in {source} ({log.get('name')!r}, recipe {theirs.get('version')}) cannot "
                              f"continue as {name!r} under recipe {recipe.version}: "
                              + (f"they differ in {', '.join(differ)}" if differ else "another model"))
    step = int(state["step"])
    if step > recipe.steps:
        raise MechHybridError(f"the run in {source} is at step {step}, past recipe {recipe.version}'s budget of "
                              f"{recipe.steps}")
    log = dict(log, recipe=ours, carried_from={"recipe": theirs.get("version"), "step": step,
                                               "stop": log.get("stop")})
    log.pop("stop", None)
    # Judged again at the step it reached, as an uninterrupted run of `recipe` would have been there.
    reason = stop_reason(log["probe"], step, recipe)
    if reason is not None:
        log["stop"] = {"step": step, "reason": reason}
    target.mkdir(parents=True, exist_ok=True)
    _write_atomic(target / STATE_FILE, lambda tmp: torch.save(dict(state, log=log), tmp))
    _write_atomic(target / LOG_FILE, lambda tmp: tmp.write_text(json.dumps(log)))
    return (f"carried {source} (recipe {theirs.get('version')}, step {step}) over to {target}"
            + (f"; stopped there under recipe {recipe.version} too: {reason}" if reason else ""))


def _progress(done: int, log: dict, t0: float) -> str:
    recent = log["loss"][-25:]
    line = f"step {done} loss {sum(recent) / len(recent):.4f} {(time.time() - t0) / max(1, done):.2f}s/step"
    if log["probe"] and log["probe"][-1]["step"] == done:
        point = log["probe"][-1]
        line += (f" probe needle {point['needle_mean']:.3f}+-{point['needle_mean_se']:.3f} {point['needle']} "
                 f"recall {point['recall']:.3f}")
    return line


def train_model(name: str, out_dir, steps: int | None = None, seed: int | None = None,
                recipe: Recipe = RECIPE, verbose: bool = True, probe: bool = True) -> dict:
    """Train zoo model `name` into run directory `out_dir`, resuming from its checkpoint; returns the log.

    The log holds the name, the recipe, the per-step loss, the probe curve (every recipe.eval_every steps and
    at the budget's end: mechhybrid.zoo.probe), tokens, wall and CPU seconds, and, once the run has finished,
    "stop": {"step", "reason"} (the budget, recipe.steps, or the recipe's stopping rule). `steps` pauses the
    run after that step (a partial run that a later call resumes), never past the budget; `seed` overrides
    the recipe's. A finished run is returned as it is. `probe=False` (tests) skips the probe, and so the
    stopping rule, which needs it.
    """
    import torch

    from mechhybrid.zoo.probe import run_probe

    quiet()
    if seed is not None:
        recipe = dataclasses.replace(recipe, seed=seed)
    if not probe and recipe.stop_patience_steps is not None:
        raise MechHybridError("the recipe's stopping rule (stop_patience_steps) needs the training probe")
    pause = recipe.steps if steps is None else min(steps, recipe.steps)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    spec = zoo_spec(name)
    model = build_model(spec, recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=recipe.betas,
                            weight_decay=recipe.weight_decay)
    start, log = _load_state(out, model, opt, name, recipe)
    if "stop" in log:
        return log
    model.train()
    # CPU seconds as well as wall seconds: on a shared machine wall time measures the neighbours.
    t0, c0 = time.time() - log["wall_s"], time.process_time() - log["cpu_s"]
    for step in range(start, pause):
        ids, w = make_batch(step, recipe)
        with training_scan(spec.family):  # Jamba: the reference scan, bitwise, with a linear-time backward
            log["loss"].append(train_step(model, opt, ids, w, recipe))
        log["tokens"] += int((w > 0).sum()) + ids.shape[0]  # + each row's first token
        done = step + 1
        if probe and (done % recipe.eval_every == 0 or done == recipe.steps):
            log["probe"].append(with_summary({"step": done, **run_probe(model, recipe)}))
        reason = stop_reason(log["probe"], done, recipe) if probe else (
            MAX_STEPS_REASON if done >= recipe.steps else None)
        if reason is not None:
            log["stop"] = {"step": done, "reason": reason}
        if verbose and (done % 25 == 0 or done == pause or reason):
            print(_progress(done, log, t0) + (f"; stopped: {reason}" if reason else ""), flush=True)
        if reason or done % recipe.checkpoint_every == 0 or done == pause:
            log["wall_s"], log["cpu_s"] = time.time() - t0, time.process_time() - c0
            log["steps"] = done
            _save_state(out, model, opt, done, log)
        if reason:
            break
    return log
