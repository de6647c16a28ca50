"""Training of zoo models: one recipe, seeded, resumable, deterministic on CPU.

Axis names: "batch", "seq", "vocab".

Data is a pure function of (seed, step): every step draws its documents from its own RNG
stream, so a resumed run sees exactly the batches an uninterrupted run would, and the same
seed gives the same loss curve (tests/zoo/test_train.py).

Run in the background (training is never part of the tests beyond a few steps):
    python -m mechhybrid.zoo.train hybrid-gdn --out runs/zoo/hybrid-gdn --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

from mechhybrid.mamba1_scan import training_scan
from mechhybrid.zoo import language as lang
from mechhybrid.zoo.recipes import RECIPE, Recipe, build_model, zoo_spec
from mechhybrid.zoo.tokenizer import TOKEN_ID, encode_words

__all__ = ["make_batch", "micro_batches", "train_step", "train_model", "quiet", "weighted_loss", "needle_probe"]

STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.json"


def quiet() -> None:
    """Silence the missing-fast-kernel warnings (fla, mamba_ssm, causal_conv1d) of SSM families."""
    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def _document_rows(rng, recipe: Recipe) -> list[tuple[list[int], list[float]]]:
    """`recipe.batch_size` documents, one per row: (token ids, per-token loss weights) each.

    Recipe 1 packed several documents into each row; measured 2026-11-29 (transformer, copy documents only,
    answer-only loss, 400 steps): one document per row learned to copy (answer accuracy 0.25 and rising),
    the same documents packed four to a 256-token row stayed at chance (0.003).
    """
    kinds, probs = zip(*recipe.mix)
    rows = []
    for _ in range(recipe.batch_size):
        doc = lang.sample_doc(rng, rng.choices(kinds, weights=probs)[0])
        ids = encode_words(doc.words)[:recipe.seq_len]
        w = [1.0] * len(ids)
        for p in doc.random_positions:
            if p < len(ids):
                w[p] = recipe.random_weight
        for s, e in doc.answer_spans:  # up-weight answers (issue 5 feasibility)
            for p in range(s, min(e, len(ids))):
                w[p] = recipe.answer_weight
        w[0] = 0.0  # nothing predicts a document's first token
        rows.append((ids, w))
    return rows


def make_batch(step: int, recipe: Recipe = RECIPE):
    """(input_ids [batch, seq] long, target weights [batch, seq] float) of training step `step`.

    One document (starting with <bos>) per row, rows sorted by length (longest first) and right-padded to
    the longest; weights[b, t] weighs the prediction of token t (0 on <pad> and on each row's first token).
    """
    import torch

    rng = lang.doc_rng(recipe.seed, "train", step)
    rows = sorted(_document_rows(rng, recipe), key=lambda r: -len(r[0]))  # stable: ties keep draw order
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


def needle_probe(model, lengths=(128, 256), per_depth: int = 2) -> dict:
    """Needle accuracy on a small fixed subset of the needle benchmark, per context length."""
    import torch

    from mechhybrid.zoo.benchmarks import by_meta, get_benchmark, score_items, Benchmark

    full = get_benchmark("needle")
    seen: dict = {}
    items = []
    for it in full.items:
        m = it.meta_dict()
        key = (m["context_len"], m["depth"])
        if m["context_len"] in lengths and seen.get(key, 0) < per_depth:
            seen[key] = seen.get(key, 0) + 1
            items.append(it)
    sub = Benchmark("needle", full.version, full.metric, "probe", tuple(items))
    model.eval()
    with torch.no_grad():
        scores = score_items(sub, lambda x: model(input_ids=x).logits, batch_size=10)
    model.train()
    return {str(k): v for k, v in by_meta(sub, scores, "context_len").items()}


def _save_state(out: Path, model, opt, step: int, log: dict) -> None:
    import torch

    tmp = out / (STATE_FILE + ".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "torch_rng": torch.get_rng_state()}, tmp)
    os.replace(tmp, out / STATE_FILE)  # atomic: a kill mid-save never corrupts the checkpoint
    (out / LOG_FILE).write_text(json.dumps(log))


def _load_state(out: Path, model, opt) -> tuple[int, dict]:
    import torch

    path = out / STATE_FILE
    if not path.exists():
        return 0, {"loss": [], "probe": [], "wall_s": 0.0, "cpu_s": 0.0}
    state = torch.load(path, weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], json.loads((out / LOG_FILE).read_text())


def train_model(name: str, out_dir, steps: int | None = None, seed: int | None = None,
                recipe: Recipe = RECIPE, verbose: bool = True, probe: bool = True) -> dict:
    """Train zoo model `name` into `out_dir` (resuming from its checkpoint); returns the log.

    The log holds the per-step loss, the needle probes and the wall time. `steps` and `seed`
    override the recipe's (tests use a few steps); the checkpoint is resumable at any
    multiple of recipe.checkpoint_every and at the end.
    """
    import dataclasses

    import torch

    quiet()
    if seed is not None:
        recipe = dataclasses.replace(recipe, seed=seed)
    steps = recipe.steps if steps is None else steps
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    spec = zoo_spec(name)
    model = build_model(spec, recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=recipe.betas,
                            weight_decay=recipe.weight_decay)
    start, log = _load_state(out, model, opt)
    log["recipe"] = dataclasses.asdict(recipe)
    model.train()
    # CPU seconds as well as wall seconds: on a shared machine wall time measures the neighbours.
    t0, c0 = time.time() - log["wall_s"], time.process_time() - log.get("cpu_s", 0.0)
    for step in range(start, steps):
        ids, w = make_batch(step, recipe)
        with training_scan(spec.family):  # Jamba: the reference scan, bitwise, with a linear-time backward
            log["loss"].append(train_step(model, opt, ids, w, recipe))
        log["tokens"] = log.get("tokens", 0) + int((w > 0).sum()) + ids.shape[0]  # + each row's first token
        done = step + 1
        if probe and (done % recipe.eval_every == 0 or done == steps):
            log["probe"].append({"step": done, "needle": needle_probe(model)})
        if verbose and (done % 25 == 0 or done == steps):
            recent = log["loss"][-25:]
            print(f"step {done} loss {sum(recent) / len(recent):.4f} "
                  f"{(time.time() - t0) / max(1, done):.2f}s/step "
                  f"{log['probe'][-1] if log['probe'] else ''}", flush=True)
        if done % recipe.checkpoint_every == 0 or done == steps:
            log["wall_s"], log["cpu_s"] = time.time() - t0, time.process_time() - c0
            log["steps"] = done
            _save_state(out, model, opt, done, log)
    return log


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train one zoo model (resumes from OUT's checkpoint).")
    parser.add_argument("name")
    parser.add_argument("--out", required=True, help="run directory (checkpoint, log, final model)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (2 cores are shared)")
    parser.add_argument("--finalize", action="store_true", help="write the HF checkpoint + card when done")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    train_model(args.name, args.out, steps=args.steps)
    if args.finalize:
        from mechhybrid.zoo.card import finalize

        finalize(args.name, args.out, Path(args.out) / "model")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
