"""`mechhybrid zoo ...`: list, show, train and re-evaluate the zoo models.

`add_zoo_commands(subparsers)` registers the group on the main parser; every handler takes
the parsed args, returns an exit code, and raises MechHybridError for user errors (the main
CLI prints it as one line and exits 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from mechhybrid.errors import MechHybridError
from mechhybrid.zoo import registry

__all__ = ["add_zoo_commands", "cmd_zoo_list", "cmd_zoo_show", "cmd_zoo_train", "cmd_zoo_eval", "EVAL_TOLERANCE"]

EVAL_TOLERANCE = 1e-6
"""`zoo eval` passes when every re-measured score is within this of the card's (the zoo's reproduction bar)."""


def _summary(card: dict) -> dict:
    from mechhybrid.zoo.card import steps_to_retrieval

    scores = card["scores"]
    return {
        "name": card["name"], "family": card["family"], "topology": card.get("topology"),
        "n_params": card["n_params"], "steps": card.get("steps"), "tokens_trained": card.get("tokens_trained"),
        "wall_time_s": card.get("wall_time_s"), "cpu_time_s": card.get("cpu_time_s"), "stop": card.get("stop"),
        "steps_to_retrieval": steps_to_retrieval(card), "benchmark_version": card.get("benchmark_version"),
        "perplexity": scores["lm"]["score"], "bigram_perplexity": card.get("bigram_perplexity"),
        "needle_by_context_len": scores["needle"].get("by_context_len"),
        "needle": scores["needle"]["score"], "recall": scores["recall"]["score"],
        "facts": scores["facts"]["score"], "scores": scores, "quality": card.get("quality"),
    }


def cmd_zoo_list(args) -> int:
    """Table of shipped models with their baseline scores and quality bars (`--json`: a list)."""
    root = getattr(args, "root", None)
    rows = [_summary(registry.load_card(n, root)) for n in registry.zoo_names(root)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no zoo models shipped")
        return 0
    lengths = sorted({k for r in rows for k in (r["needle_by_context_len"] or {})}, key=int)
    head = f"{'name':<16} {'family':<16} {'params':>8} {'steps':>6} {'to0.5':>6} {'to0.9':>6} {'ppl':>6} " + \
        f"{'bigram':>6} " + " ".join(f"{'n@' + k:>6}" for k in lengths) + f" {'recall':>6} {'facts':>6}  bars"
    print(head)
    for r in rows:
        q = r["quality"] or {}
        bars = ("ppl<bigram " if q.get("perplexity_below_bigram") else "PPL>=BIGRAM ") + \
            {True: "needle>=0.9", False: "NEEDLE<0.9", None: "needle: no bar"}[q.get("needle_bar")]
        needles = " ".join(f"{r['needle_by_context_len'].get(k, float('nan')):>6.2f}" for k in lengths)
        crossed = r["steps_to_retrieval"] or {}
        to_5, to_9 = (str(crossed.get(t) or "-") for t in ("0.5", "0.9"))
        print(f"{r['name']:<16} {r['family']:<16} {r['n_params']:>8,} {r['steps'] or 0:>6} {to_5:>6} {to_9:>6} "
              f"{r['perplexity']:>6.2f} {r['bigram_perplexity'] or float('nan'):>6.2f} {needles} "
              f"{r['recall']:>6.2f} {r['facts']:>6.2f}  {bars}")
    return 0


def cmd_zoo_show(args) -> int:
    """The full model card (`--json`: the card as stored)."""
    card = registry.load_card(args.name, getattr(args, "root", None))
    if args.json:
        print(json.dumps(card, indent=1))
        return 0
    from mechhybrid.zoo.card import steps_to_retrieval

    for key in ("name", "family", "model_type", "topology", "description", "n_params", "dtype",
                "steps", "stop", "tokens_trained", "wall_time_s", "cpu_time_s", "s_per_step", "language_version",
                "benchmark_version", "bigram_perplexity"):
        print(f"{key:<18} {card.get(key)}")
    print(f"{'steps to 0.5/0.9':<18} {steps_to_retrieval(card)}")
    print(f"{'sizes':<18} {json.dumps(card.get('sizes', {}))}")
    print(f"{'recipe':<18} {json.dumps(card.get('recipe', {}))}")
    for name, entry in card["scores"].items():
        extra = f"  by context length {entry['by_context_len']}" if "by_context_len" in entry else ""
        print(f"score {name:<12} {entry['metric']:<12} {entry['score']:.4f} (n={entry['n']}){extra}")
    print(f"{'quality':<18} {json.dumps(card.get('quality'))}")
    curve = card.get("loss_curve", [])
    if curve:
        marks = curve[:: max(1, len(curve) // 10)]
        marks += [] if marks[-1] == curve[-1] else [curve[-1]]
        print("loss curve         " + "  ".join(f"{int(s)}:{v:.3f}" for s, v in marks))
    return 0


def cmd_zoo_train(args) -> int:
    """Train a zoo model from its recipe in a run directory outside the repository, then finalise it there
    (RUN_DIR/model: checkpoint + card). A run already in the directory needs --resume or --fresh."""
    import torch

    from mechhybrid.zoo.card import finalize
    from mechhybrid.zoo.recipes import RECIPE, zoo_spec
    from mechhybrid.zoo.train import carry_over, default_run_dir, prepare_run_dir, train_model

    zoo_spec(args.name)  # unknown name -> MechHybridError before any work
    if args.steps is not None and args.steps < 1:
        raise MechHybridError(f"--steps must be >= 1, got {args.steps}")
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(args.name, RECIPE)
    if args.carry_over is not None:
        if args.fresh or args.run_dir:
            raise MechHybridError("--carry-over continues the default run of another recipe version: drop "
                                  "--fresh / --run-dir")
        source = default_run_dir(args.name, dataclasses.replace(RECIPE, version=args.carry_over))
        print(carry_over(source, run_dir, args.name, RECIPE), flush=True)
        args.resume = True
    plan = prepare_run_dir(run_dir, args.resume, args.fresh)
    if not args.quiet:
        print(plan, flush=True)
    torch.set_num_threads(args.threads)
    log = train_model(args.name, run_dir, steps=args.steps, verbose=not args.quiet, recipe=RECIPE)
    card = finalize(args.name, run_dir, run_dir / "model", RECIPE)
    stop = log.get("stop")
    print(f"trained {args.name}: {card['steps']} steps "
          f"({'stopped: ' + stop['reason'] if stop else 'paused: continue with --resume'}), final loss "
          f"{log['loss'][-1]:.4f}, checkpoint {run_dir / 'model'}")
    return 0


def compare_scores(card_scores: dict, measured: dict) -> float:
    """Largest absolute difference between two score sets (all benchmarks, needle per length)."""
    worst = 0.0
    for name, entry in card_scores.items():
        if name not in measured:
            return float("inf")
        worst = max(worst, abs(entry["score"] - measured[name]["score"]))
        for k, v in entry.get("by_context_len", {}).items():
            worst = max(worst, abs(v - measured[name].get("by_context_len", {}).get(k, float("inf"))))
    return worst


def _rescore(args, directory: Path, card: dict) -> int:
    from mechhybrid.zoo.card import rescore, write_card

    new = rescore(directory, card)
    write_card(directory, new)
    if args.json:
        print(json.dumps({"name": args.name, "from": new["rescored_from"]["benchmark_version"],
                          "to": new["benchmark_version"], "scores": new["scores"]}, indent=1))
        return 0
    for name, entry in new["scores"].items():
        old = card["scores"].get(name, {})
        print(f"{name:<8} {old.get('score', float('nan')):.6f} (n={old.get('n')}) -> {entry['score']:.6f} "
              f"(n={entry['n']})")
    print(f"rescored {directory / 'card.json'}: {card.get('benchmark_version')} -> {new['benchmark_version']}")
    return 0


def cmd_zoo_eval(args) -> int:
    """Re-measure a model's card scores with the card's own benchmark version (quick check subset; `--full`:
    every item); exit 1 on mismatch. `--rescore`: measure with the newest version and rewrite the card."""
    import torch

    from mechhybrid.zoo.card import card_benchmark_version, evaluate, load_checkpoint

    root = getattr(args, "root", None)
    directory = registry.zoo_dir(args.name, root)
    card = registry.load_card(args.name, root)
    torch.set_num_threads(args.threads)
    if getattr(args, "rescore", False):
        return _rescore(args, directory, card)
    measured = evaluate(load_checkpoint(directory), quick=not args.full, batch_size=card.get("eval_batch_size", 16),
                        version=card_benchmark_version(card), strides=card.get("check_strides"))
    expected = card["scores" if args.full else "check_scores"]
    diff = compare_scores(expected, measured)
    if args.json:
        print(json.dumps({"name": args.name, "full": args.full, "benchmark_version": card["benchmark_version"],
                          "card": expected, "measured": measured, "max_abs_diff": diff,
                          "ok": diff <= EVAL_TOLERANCE}, indent=1))
    else:
        for name, entry in measured.items():
            print(f"{name:<8} card {expected[name]['score']:.6f}  measured {entry['score']:.6f}  (n={entry['n']})")
        print(f"max |difference| {diff:.2e} ({card['benchmark_version']}): "
              f"{'reproduced' if diff <= EVAL_TOLERANCE else 'MISMATCH'}")
    return 0 if diff <= EVAL_TOLERANCE else 1


def add_zoo_commands(subparsers) -> argparse.ArgumentParser:
    """Register `zoo list|show|train|eval` on the main CLI's subparsers; returns the `zoo` parser."""
    zoo = subparsers.add_parser("zoo", help="the embedded zoo of tiny trained hybrids")
    sub = zoo.add_subparsers(dest="zoo_command", required=True, metavar="ZOO_COMMAND")
    p = sub.add_parser("list", help="table of shipped models and their baseline scores")
    p.add_argument("--json", action="store_true", help="a list with one object per model")
    p.set_defaults(handler=cmd_zoo_list)
    p = sub.add_parser("show", help="a model's card")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="the card as stored")
    p.set_defaults(handler=cmd_zoo_show)
    p = sub.add_parser("train", help="reproduce a model from its recipe (same seed -> same loss curve)")
    p.add_argument("name")
    p.add_argument("--run-dir", default=None,
                   help="run directory (default CACHE/zoo-runs/NAME-rVERSION, CACHE = $MECHHYBRID_CACHE, "
                        "$XDG_CACHE_HOME/mechhybrid or ~/.cache/mechhybrid)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in the run directory")
    again.add_argument("--fresh", action="store_true", help="delete the run in the run directory and start over")
    p.add_argument("--steps", type=int, default=None,
                   help="pause after this step (continue later with --resume); the recipe's budget and "
                        "stopping rule still apply")
    p.add_argument("--carry-over", type=int, default=None, metavar="VERSION",
                   help="continue this model's run of recipe VERSION as a run of the current recipe (allowed when "
                        "the two differ only in when a run stops), then resume it")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=cmd_zoo_train)
    p = sub.add_parser("eval", help="re-measure a model's card scores")
    p.add_argument("name")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--full", action="store_true", help="every item (slower) instead of the card's check subset")
    how.add_argument("--rescore", action="store_true",
                     help="score with the newest benchmark version and rewrite the card (instead of checking it)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.set_defaults(handler=cmd_zoo_eval)
    return zoo
