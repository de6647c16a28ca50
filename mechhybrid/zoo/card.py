"""Model cards: measure a zoo checkpoint on every benchmark, and finalise a training run into one.

A card (card.json beside the weights) holds the family, topology, sizes, recipe, data
versions, the downsampled loss curve, wall time, tokens trained, and the baseline scores on
every benchmark with their n, plus a bigram perplexity on the same held-out text. Two score
sets are recorded: ``scores`` on the full benchmarks, and ``check_scores`` on a fixed quick
subset (every QUICK_STRIDE-th item) that `zoo eval` and the tests re-measure in seconds.

Finalise a finished (or resumed-and-finished) run:
    python -m mechhybrid.zoo.card finalize NAME runs/zoo/NAME mechhybrid/zoo/models/NAME
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
from collections import Counter
from pathlib import Path

import numpy as np

from mechhybrid.zoo import benchmarks as bm
from mechhybrid.zoo import language as lang
from mechhybrid.zoo.recipes import RECIPE, Recipe, build_model, zoo_spec
from mechhybrid.zoo.tokenizer import check_auto_tokenizer, encode_words, save_tokenizer

__all__ = ["CARD_VERSION", "QUICK_STRIDE", "EVAL_BATCH", "evaluate", "bigram_perplexity",
           "load_checkpoint", "finalize", "subset", "card_summary"]

CARD_VERSION = 1
QUICK_STRIDE = {"lm": 8, "facts": 6, "needle": 10, "recall": 10}
"""Quick subset = every k-th item: 8 lm docs, 8 facts, 16 needles (every grid length), 10 recall docs."""
EVAL_BATCH = 16
"""Batch size of card evaluation (batching is fixed, so re-measurement is bit-for-bit)."""
TRAIN_CONTEXT = 256
"""The needle quality bar is read at the training context length (issue 5)."""
LOSS_CURVE_BIN = 25


def subset(bench: bm.Benchmark, stride: int) -> bm.Benchmark:
    """Every `stride`-th item of `bench` (same name and version; the description says which)."""
    items = bench.items[::stride]
    return bm.Benchmark(bench.name, bench.version, bench.metric,
                        f"{bench.description} [every {stride}th item: {len(items)}]", items)


def evaluate(model, quick: bool = False, batch_size: int = EVAL_BATCH) -> dict:
    """Score `model` (a transformers causal LM) on every zoo benchmark.

    Returns {bench: {"metric", "score", "n"} (+ "by_context_len" for needle)}. `quick` uses
    the QUICK_STRIDE subsets that cards record as ``check_scores``.
    """
    import torch

    model.eval()

    def logits_fn(ids):
        with torch.no_grad():
            return model(input_ids=ids).logits

    out = {}
    for name in bm.benchmark_names():
        bench = bm.get_benchmark(name)
        if quick:
            bench = subset(bench, QUICK_STRIDE[name])
        scores = bm.score_items(bench, logits_fn, batch_size)
        entry = {"metric": bench.metric, "score": bm.summarize(bench, scores), "n": len(bench.items)}
        if name == "needle":
            entry["by_context_len"] = {str(k): v for k, v in bm.by_meta(bench, scores, "context_len").items()}
        out[name] = entry
    return out


def bigram_perplexity(n_docs: int = 2000, alpha: float = 0.1, seed: int = RECIPE.seed) -> float:
    """Perplexity of an add-`alpha` bigram model, fit on `n_docs` training-distribution text
    documents, on the held-out `lm` benchmark (the same tokens the models are scored on)."""
    pair, first = Counter(), Counter()
    for i in range(n_docs):
        ids = encode_words(lang.text_doc(lang.doc_rng(seed, "bigram", i), 256).words)
        first.update(ids[:-1])
        pair.update(zip(ids[:-1], ids[1:]))
    vocab = len(lang.VOCAB)
    nll, count = 0.0, 0
    for item in bm.get_benchmark("lm").items:
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


def _quality(scores: dict, bigram: float, spec) -> dict:
    needle_ctx = scores["needle"]["by_context_len"][str(TRAIN_CONTEXT)]
    return {"perplexity_below_bigram": scores["lm"]["score"] < bigram,
            "needle_at_training_context": needle_ctx,
            # The pure SSM control carries no needle bar: its retrieval is a finding, not a target.
            "needle_bar": None if spec.family == "mamba2" else bool(needle_ctx >= 0.9)}


def finalize(name: str, run_dir, out_dir, recipe: Recipe = RECIPE) -> dict:
    """Turn training run `run_dir` into a shippable checkpoint + card in `out_dir`; returns the card.

    The scores are measured on the checkpoint as reloaded from `out_dir`, so a card always
    describes exactly the files beside it; the tokenizer is checked to load as itself through
    `AutoTokenizer` (MechHybridError otherwise). card.json is written last (atomically): a
    directory with a card has its weights.
    """
    import torch

    from mechhybrid.zoo.train import LOG_FILE, STATE_FILE, quiet

    quiet()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    spec = zoo_spec(name)
    log = json.loads((run_dir / LOG_FILE).read_text())
    state = torch.load(run_dir / STATE_FILE, weights_only=False)
    model = build_model(spec, recipe.seed)
    model.load_state_dict(state["model"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "card.json").unlink(missing_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    save_tokenizer(out_dir)
    # A researcher checks a finding with AutoTokenizer: refuse to ship a checkpoint on which it gives other ids.
    check_auto_tokenizer(out_dir)
    reloaded = load_checkpoint(out_dir)
    scores, check = evaluate(reloaded), evaluate(reloaded, quick=True)
    bigram = bigram_perplexity()
    steps = int(state["step"])
    card = {
        "card_version": CARD_VERSION, "name": name, "family": spec.family, "model_type": spec.model_type,
        "topology": spec.topology, "description": spec.description,
        "n_params": int(sum(p.numel() for p in reloaded.parameters())), "dtype": "float32",
        "sizes": _sizes(reloaded.config), "recipe": log.get("recipe", {}),
        "language_version": lang.LANGUAGE_VERSION, "benchmark_version": bm.BENCHMARK_VERSION,
        "steps": steps, "tokens_trained": int(log.get("tokens", 0)),
        # A partial run (stopped before the recipe's budget) can be finalised, but says so.
        "budget_complete": steps >= int(log.get("recipe", {}).get("steps", recipe.steps)),
        "wall_time_s": round(float(log["wall_s"]), 1),
        "s_per_step": round(float(log["wall_s"]) / max(1, steps), 3),
        # Wall time on the shared 2-core machine mostly measures the neighbours; CPU time does not.
        "cpu_time_s": round(float(log["cpu_s"]), 1) if "cpu_s" in log else None,
        "cpu_s_per_step": round(float(log["cpu_s"]) / max(1, steps), 3) if "cpu_s" in log else None,
        "trained_on": "cpu, 1 torch thread (2 cores shared with other jobs)",
        "loss_curve": _loss_curve(log["loss"]), "needle_probe_curve": log["probe"],
        "scores": scores, "check_scores": check, "check_strides": QUICK_STRIDE, "eval_batch_size": EVAL_BATCH,
        "bigram_perplexity": bigram, "quality": _quality(scores, bigram, spec), "versions": _versions(),
    }
    tmp = out_dir / "card.json.tmp"
    tmp.write_text(json.dumps(card, indent=1) + "\n")
    os.replace(tmp, out_dir / "card.json")
    return card


SUMMARY_KEYS = ("description", "recipe", "language_version", "benchmark_version", "steps", "tokens_trained",
                "budget_complete", "wall_time_s", "cpu_time_s", "trained_on", "dtype", "scores",
                "bigram_perplexity", "quality", "needle_probe_curve", "loss_curve")


def card_summary(card: dict) -> dict:
    """The part of a card that a Result carries (so that a report shows it without the zoo installed)."""
    return {k: card[k] for k in SUMMARY_KEYS if k in card}


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
