"""The zoo's Jamba on transformers' reference Mamba-1 scan vs mechhybrid.mamba1_scan, in the same run.

    python benchmarks/bench_mamba1_scan.py [--threads 1] [--repeats 3]

- training: one forward + backward on the first training batch cut to 4 x 128, 4 x 256 and 8 x 256 tokens,
  reference vs `training_scan` (goal: at least 3x at the zoo's document lengths, 128-256 tokens);
- analysis: one no-grad forward at 32 x 512 and 64 x 256 tokens, reference vs the chunked scan that
  `mechhybrid.load` installs (goal: faster, never slower).
Both paths give bitwise the same loss / logits, checked here too. The paths take turns within each round and
the minimum is reported (after one warm-up call each).

Measured 2026-11-29, 1 thread, nothing else running (reference / mechhybrid), min of 2: training 4 x 128
0.900 / 0.199 s (4.5x), 4 x 256 2.126 / 0.387 s (5.5x), 8 x 256 4.767 / 0.588 s (8.1x): the reference backward
grows with the square of the length; a whole recipe step (16 documents, 1,278 tokens, four micro-batches,
optimiser included) took 2.6 s against 0.69 s. Analysis forward: 32 x 512 2.921 / 1.345 s (2.2x), 64 x 256
2.813 / 1.278 s (2.2x).
"""

from __future__ import annotations

import argparse

import torch

from measure import interleaved_min_seconds


def _report(title: str, best: dict) -> None:
    print(f"{title}: reference {best['reference']:.3f} s, mechhybrid {best['mechhybrid']:.3f} s, "
          f"{best['reference'] / best['mechhybrid']:.1f}x", flush=True)


def bench_training(model, repeats: int) -> None:
    from mechhybrid.mamba1_scan import training_scan
    from mechhybrid.zoo.train import make_batch, weighted_loss

    ids, weights = make_batch(0)

    def step(rows, seq, fast):
        model.zero_grad(set_to_none=True)
        with training_scan("jamba") if fast else torch.enable_grad():
            loss = weighted_loss(model(input_ids=ids[:rows, :seq]).logits, ids[:rows, :seq], weights[:rows, :seq])
            loss.backward()
        return loss.item()

    for rows, seq in ((4, 128), (4, 256), (8, 256)):
        assert step(rows, seq, False) == step(rows, seq, True)
        best = interleaved_min_seconds({"reference": lambda: step(rows, seq, False),
                                        "mechhybrid": lambda: step(rows, seq, True)}, repeats, grad=True)
        _report(f"training forward+backward {rows} x {seq}", best)


def bench_analysis(model, repeats: int) -> None:
    from transformers.models.jamba import modeling_jamba

    from mechhybrid.mamba1_scan import use_bounded_scan

    reference = modeling_jamba.mamba_selective_scan
    assert use_bounded_scan("jamba"), "mamba_ssm is installed: transformers uses its kernels, nothing to compare"
    bounded = modeling_jamba.mamba_selective_scan

    def forward(ids, scan):
        modeling_jamba.mamba_selective_scan = scan
        with torch.no_grad():
            return model(input_ids=ids).logits

    try:
        for rows, seq in ((32, 512), (64, 256)):
            ids = torch.randint(3, 256, (rows, seq), generator=torch.Generator().manual_seed(0))
            assert torch.equal(forward(ids, reference), forward(ids, bounded))
            best = interleaved_min_seconds({"reference": lambda: forward(ids, reference),
                                            "mechhybrid": lambda: forward(ids, bounded)}, repeats)
            _report(f"analysis forward {rows} x {seq}", best)
    finally:
        modeling_jamba.mamba_selective_scan = reference


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from mechhybrid.zoo.recipes import build_model, zoo_spec
    from mechhybrid.zoo.train import quiet

    quiet()
    model = build_model(zoo_spec("hybrid-jamba"), 0)
    bench_training(model, args.repeats)
    bench_analysis(model.eval(), args.repeats)


if __name__ == "__main__":
    main()
