"""Training step of the zoo's Jamba: transformers' reference Mamba-1 scan vs mechhybrid.zoo.training_scan.

    python benchmarks/bench_training_scan.py [--rows 4] [--seq 128] [--repeats 3] [--threads 1]

One forward + backward of `hybrid-jamba` on the first training batch cut to `rows` x `seq` tokens; the two
paths take turns within each round and the minimum is reported (goal: at least 3x at the zoo's
document lengths, 128-256 tokens). Both paths give the same loss, checked here too.

Measured 2026-11-29, 1 thread, another training process on the second core (reference / training scan):
4 x 128 tokens 0.643 / 0.196 s (3.3x), 4 x 256 2.070 / 0.332 s (6.2x), 8 x 256 4.712 / 0.644 s (7.3x): the
reference backward grows with the square of the length. A whole recipe step (16 documents, 1,278 tokens, four
micro-batches, optimiser included) took 2.6 s against 0.69 s.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch


def _step(model, ids, weights, fast: bool) -> float:
    from mechhybrid.zoo.train import weighted_loss
    from mechhybrid.zoo.training_scan import training_scan

    model.zero_grad(set_to_none=True)
    with training_scan("jamba") if fast else contextlib.nullcontext():
        loss = weighted_loss(model(input_ids=ids).logits, ids, weights)
        loss.backward()
    return loss.item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from mechhybrid.zoo.recipes import build_model, zoo_spec
    from mechhybrid.zoo.train import make_batch, quiet

    quiet()
    ids, weights = make_batch(0)
    ids, weights = ids[:args.rows, :args.seq], weights[:args.rows, :args.seq]
    model = build_model(zoo_spec("hybrid-jamba"), 0)
    losses = {path: _step(model, ids, weights, path == "training scan") for path in ("reference", "training scan")}
    assert losses["reference"] == losses["training scan"], losses
    times = {path: [] for path in losses}
    for _ in range(args.repeats):
        for path in times:
            start = time.perf_counter()
            _step(model, ids, weights, path == "training scan")
            times[path].append(time.perf_counter() - start)
    best = {path: min(values) for path, values in times.items()}
    print(f"hybrid-jamba forward+backward, {args.rows} x {args.seq} tokens, {args.threads} thread(s), "
          f"min of {args.repeats}:")
    for path, seconds in best.items():
        print(f"  {path:14s} {seconds:8.3f} s")
    print(f"  speed-up       {best['reference'] / best['training scan']:8.1f}x")


if __name__ == "__main__":
    main()
