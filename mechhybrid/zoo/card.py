"""Model cards: measure a zoo checkpoint on every benchmark, and finalise a training run into one.

A card (card.json beside the weights) holds the family, topology, sizes, the recipe (with its stopping
rule), data versions, the stopping step and reason, the downsampled loss curve, the training probe's curve
and the steps at which it first crossed 0.5 and 0.9 (`steps_to_retrieval`), wall and CPU time, tokens
trained, and the baseline scores on every benchmark of its `benchmark_version` with their n and chance
level, plus a bigram perplexity on the same held-out text. Two score sets are recorded: ``scores`` on the
full benchmarks, and ``check_scores`` on a fixed quick subset (every `check_strides`-th item) that
`zoo eval` and the tests re-measure in seconds. `rescore` moves a card to the newest benchmark version.

Finalise a finished (or resumed-and-finished) run:
    python -m mechhybrid.zoo.card finalize NAME RUN_DIR mechhybrid/zoo/models/NAME
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
from collections import Counter
from pathlib import Path

import numpy as np

from mechhybrid.zoo import benchmarks as bm
from mechhybrid.errors import MechHybridError
from mechhybrid.zoo import language as lang
from mechhybrid.zoo.curves import crossing_steps, with_summary
from mechhybrid.zoo.recipes import RECIPE, Recipe, build_model, zoo_spec
from mechhybrid.zoo.tokenizer import check_auto_tokenizer, encode_words, save_tokenizer

__all__ = ["CARD_VERSION", "QUICK_STRIDE", "EVAL_BATCH", "evaluate", "bigram_perplexity",
           "load_checkpoint", "finalize", "subset", "card_summary", "card_benchmark_version", "rescore",
           "steps_to_retrieval", "write_card"]

CARD_VERSION = 2
"""2: stopping step and reason, probe curve with standard errors, steps to retrieval, chance levels."""
QUICK_STRIDE = {"lm": 8, "facts": 6, "needle": 10, "recall": 10}
"""Quick subset = every k-th item: 8 lm docs, 8 facts, 16 needles (every grid length), 10 recall docs."""
EVAL_BATCH = 16
"""Batch size of card evaluation (batching is fixed, so re-measurement is bit-for-bit)."""
TRAIN_CONTEXT = 256
"""The needle quality bar is read at the training context length."""
LOSS_CURVE_BIN = 25


def subset(bench: bm.Benchmark, stride: int) -> bm.Benchmark:
    """Every `stride`-th item of `bench` (same name and version; the description says which)."""
    items = bench.items[::stride]
    return dataclasses.replace(bench, description=f"{bench.description} [every {stride}th item: {len(items)}]",
                               items=items)


def evaluate(model, quick: bool = False, batch_size: int = EVAL_BATCH, version: str = bm.BENCHMARK_VERSION,
             strides: dict | None = None) -> dict:
    """Score `model` (a transformers causal LM) on every zoo benchmark of `version`.

    Returns {bench: {"metric", "score", "n"} (+ "chance" where guessing scores above 0, "by_context_len"
    for needle)}. `quick` uses the every-k-th-item subsets of `strides` (default QUICK_STRIDE) that cards
    record as ``check_scores``.
    """
    import torch

    model.eval()

    def logits_fn(ids):
        with torch.no_grad():
            return model(input_ids=ids).logits

    out = {}
    for name in bm.benchmark_names():
        bench = bm.get_benchmark(name, version)
        if quick:
            bench = subset(bench, (strides or QUICK_STRIDE)[name])
        scores = bm.score_items(bench, logits_fn, batch_size)
        entry = {"metric": bench.metric, "score": bm.summarize(bench, scores), "n": len(bench.items)}
        if bench.chance is not None:
            entry["chance"] = bench.chance
        if name == "needle":
            entry["by_context_len"] = {str(k): v for k, v in bm.by_meta(bench, scores, "context_len").items()}
        out[name] = entry
    return out


def bigram_perplexity(n_docs: int = 2000, alpha: float = 0.1, seed: int = RECIPE.seed,
                      version: str = bm.BENCHMARK_VERSION) -> float:
    """Perplexity of an add-`alpha` bigram model, fit on `n_docs` training-distribution text
    documents, on the held-out `lm` benchmark (the same tokens the models are scored on)."""
    pair, first = Counter(), Counter()
    for i in range(n_docs):
        ids = encode_words(lang.text_doc(lang.doc_rng(seed, "bigram", i), 256).words)
        first.update(ids[:-1])
        pair.update(zip(ids[:-1], ids[1:]))
    vocab = len(lang.VOCAB)
    nll, count = 0.0, 0
    for item in bm.get_benchmark("lm", version).items:
        for a, b in zip(item.input_ids[:-1], item.input_ids[1:]):
            nll -= math.log((pair[(a, b)] + alpha) / (first[a] + alpha * vocab))
            count += 1
    return math.exp(nll / count)


def load_checkpoint(directory):
    """A zoo checkpoint directory as a float32 transformers model, offline."""
    import torch
    from transformers import AutoModelForCausalLM

    from mechhybrid.zoo.train import quiet

    quiet()
    return AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32, local_files_only=True)


def _loss_curve(losses: list[float]) -> list[list[float]]:
    # Mean per bin of LOSS_CURVE_BIN steps: a readable curve, small enough for the card.
    curve = []
    for start in range(0, len(losses), LOSS_CURVE_BIN):
        chunk = losses[start:start + LOSS_CURVE_BIN]
        curve.append([start + len(chunk), round(float(np.mean(chunk)), 5)])
    return curve


def _sizes(config) -> dict:
    keys = ("hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size", "num_attention_heads",
            "num_key_value_heads", "layer_types", "block_types", "attention_window_size", "state_size",
            "mamba_d_ssm", "mamba_d_state", "num_experts", "tie_word_embeddings")
    return {k: getattr(config, k) for k in keys if getattr(config, k, None) is not None}


def _versions() -> dict:
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__, "python": platform.python_version()}


def _quality(scores: dict, bigram: float, family: str) -> dict:
    needle_ctx = scores["needle"]["by_context_len"][str(TRAIN_CONTEXT)]
    return {"perplexity_below_bigram": scores["lm"]["score"] < bigram,
            "needle_at_training_context": needle_ctx,
            # The pure SSM control carries no needle bar: its retrieval is a finding, not a target.
            "needle_bar": None if family == "mamba2" else bool(needle_ctx >= 0.9)}


def steps_to_retrieval(card: dict) -> dict | None:
    """The first probe steps at which the card's needle probe (mean over its lengths) reached 0.5 and 0.9
    ({"0.5": step or None, "0.9": ...}); None for a card without a probe curve."""
    curve = card.get("needle_probe_curve")
    return crossing_steps(curve) if curve else None


def write_card(out_dir, card: dict) -> None:
    """card.json in `out_dir`, written atomically (a reader never sees half a card)."""
    tmp = Path(out_dir) / "card.json.tmp"
    tmp.write_text(json.dumps(card, indent=1) + "\n")
    os.replace(tmp, Path(out_dir) / "card.json")


def _scores(model, version: str, family: str) -> dict:
    """Everything a card measures on a checkpoint with benchmark `version`."""
    scores = evaluate(model, version=version)
    bigram = bigram_perplexity(version=version)
    return {"benchmark_version": version, "scores": scores,
            "check_scores": evaluate(model, quick=True, version=version), "check_strides": QUICK_STRIDE,
            "eval_batch_size": EVAL_BATCH, "bigram_perplexity": bigram,
            "quality": _quality(scores, bigram, family)}


def _training(log: dict, steps: int) -> dict:
    """What a card says about how its model was trained, from the run's log."""
    return {
        "recipe": log["recipe"], "steps": steps, "tokens_trained": int(log["tokens"]),
        # A partial run (paused before the rule stopped it) can be finalised, but says so: stop is null.
        "stop": log.get("stop"),
        # A run begun under an earlier recipe that differs only in when a run stops (train.carry_over).
        "carried_from": log.get("carried_from"),
        "wall_time_s": round(float(log["wall_s"]), 1), "s_per_step": round(float(log["wall_s"]) / max(1, steps), 3),
        # Wall time on the shared 2-core machine mostly measures the neighbours; CPU time does not.
        "cpu_time_s": round(float(log["cpu_s"]), 1),
        "cpu_s_per_step": round(float(log["cpu_s"]) / max(1, steps), 3),
        "trained_on": "cpu, 1 torch thread (2 cores shared with other jobs)",
        "loss_curve": _loss_curve(log["loss"]), "needle_probe_curve": log["probe"],
        "steps_to_retrieval": crossing_steps(log["probe"]) if log["probe"] else None,
    }


def finalize(name: str, run_dir, out_dir, recipe: Recipe = RECIPE) -> dict:
    """Turn training run `run_dir` into a shippable checkpoint + card in `out_dir`; returns the card.

    The scores are measured on the checkpoint as reloaded from `out_dir` with the newest benchmark
    version, so a card always describes exactly the files beside it; the tokenizer is checked to load as
    itself through `AutoTokenizer` (MechHybridError otherwise). card.json is written last (atomically):
    a directory with a card has its weights.
    """
    import torch

    from mechhybrid.zoo.train import STATE_FILE, quiet

    quiet()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    spec = zoo_spec(name)
    state = torch.load(run_dir / STATE_FILE, weights_only=True)  # tensors and plain data: no pickled code runs
    model = build_model(spec, recipe.seed)
    model.load_state_dict(state["model"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "card.json").unlink(missing_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    save_tokenizer(out_dir)
    # A researcher checks a finding with AutoTokenizer: refuse to ship a checkpoint on which it gives other ids.
    check_auto_tokenizer(out_dir)
    reloaded = load_checkpoint(out_dir)
    card = {
        "card_version": CARD_VERSION, "name": name, "family": spec.family, "model_type": spec.model_type,
        "topology": spec.topology, "description": spec.description,
        "n_params": int(sum(p.numel() for p in reloaded.parameters())), "dtype": "float32",
        "sizes": _sizes(reloaded.config), "language_version": lang.LANGUAGE_VERSION,
        **_training(state["log"], int(state["step"])),
        **_scores(reloaded, bm.BENCHMARK_VERSION, spec.family), "versions": _versions(),
    }
    write_card(out_dir, card)
    return card


def card_benchmark_version(card: dict) -> str:
    """The benchmark version a card was scored with (MechHybridError when it records none or an unknown one)."""
    version = card.get("benchmark_version")
    if not isinstance(version, str):
        raise MechHybridError(f"zoo card of {card.get('name')!r} records no benchmark_version")
    return bm.check_version(version)


def rescore(directory, card: dict, version: str = bm.BENCHMARK_VERSION) -> dict:
    """`card` re-measured on the checkpoint in `directory` with benchmark `version` (default: the newest):
    new scores, check scores, bigram perplexity and quality bars, and `rescored_from` holding the version
    and scores it replaces. Returns the new card; the caller writes it (`write_card`)."""
    previous = {"benchmark_version": card_benchmark_version(card), "scores": card["scores"]}
    measured = _scores(load_checkpoint(directory), bm.check_version(version), card["family"])
    return {**card, **measured, "rescored_from": previous}


SUMMARY_KEYS = ("description", "recipe", "language_version", "benchmark_version", "steps", "stop", "tokens_trained",
                "budget_complete", "wall_time_s", "cpu_time_s", "trained_on", "dtype", "scores",
                "bigram_perplexity", "quality", "needle_probe_curve", "steps_to_retrieval", "loss_curve")


def card_summary(card: dict) -> dict:
    """The part of a card that a Result carries (so that a report shows it without the zoo installed): its
    probe points with their summary statistic and its steps to retrieval (computed here too for cards
    written before either was recorded), so that the report only reads them."""
    summary = {k: card[k] for k in SUMMARY_KEYS if k in card}
    if summary.get("needle_probe_curve"):
        summary["needle_probe_curve"] = [with_summary(p) for p in summary["needle_probe_curve"]]
        summary["steps_to_retrieval"] = steps_to_retrieval(card)
    return summary


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Finalise a zoo training run into a checkpoint + card.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    fin = sub.add_parser("finalize")
    fin.add_argument("name")
    fin.add_argument("run_dir")
    fin.add_argument("out_dir")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    card = finalize(args.name, args.run_dir, args.out_dir)
    print(json.dumps({k: card[k] for k in ("name", "n_params", "steps", "wall_time_s", "scores",
                                           "bigram_perplexity", "quality")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
