"""Attribution patching: cost in forward-equivalents and agreement with the exact sweep, on the zoo, one thread.

    python benchmarks/bench_attribution.py [--models hybrid-gdn transformer] [--batch 4] [--seq 32]
                                           [--methods atp atp* ig] [--repeats 2] [--skip-tl]

For each zoo model, every component at every position of a batch of `batch` prompts of `seq` tokens whose
corrupted versions differ at 4 tokens (benchmarks/bench_tracing.py's inputs), denoising, scored by a random
projection of the last token's logits. Timed in turns (benchmarks/measure.py), as multiples of one plain forward
of the batch (`hm.hf_model(corrupted)`, no grad):
- `attribute(method=...)` for each method (its `work` count beside its measured time);
- the exact `sweep` of the same entries;
- transformer-lens 4.3's `attribution_patch` (node granularity) on its TransformerBridge, where it runs (its
  refusal is printed otherwise).
Agreement: Spearman's rank correlation of each method's entries with the exact sweep's, over the positions from
the first corrupted token on (before it the two runs are the same: every entry is 0 in both, ties of no rank).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os

import torch

from bench_tracing import MODELS, _inputs
from measure import interleaved_min_seconds


def _ranks(values: torch.Tensor) -> torch.Tensor:
    return values.flatten().argsort().argsort().float()


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = _ranks(a), _ranks(b)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x.norm() * y.norm()))


def _tl(hm, name: str, clean, corrupted, metric):
    """A function running transformer-lens's attribution_patch on a bridge of the same weights, or the reason it
    does not run."""
    try:
        from transformer_lens.model_bridge import TransformerBridge
        from transformer_lens.tools.analysis import attribution_patch

        import mechhybrid.zoo

        path = os.path.join(os.path.dirname(mechhybrid.zoo.__file__), "models", name)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            bridge = TransformerBridge.boot_transformers(path, hf_model=copy.deepcopy(hm.hf_model),
                                                         tokenizer=hm.tokenizer)
        bridge.eval()
        def run():
            with torch.enable_grad():  # the timing loop runs without autograd
                return attribution_patch(bridge, clean, corrupted, lambda logits: metric(logits[:, -1]))

        run()
        return run, None
    except Exception as error:  # a refusal is a result here: print it
        return None, f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"


def bench(name: str, batch: int, seq: int, methods, repeats: int, skip_tl: bool) -> None:
    import mechhybrid
    from mechhybrid.tracing import attribute, sweep

    torch.manual_seed(0)
    hm = mechhybrid.load(f"zoo:{name}")
    clean, corrupted, metric = _inputs(hm, batch, seq)
    fns = {"forward": lambda: hm.hf_model(corrupted)}
    results = {}
    for method in methods:
        fns[method] = lambda method=method: results.__setitem__(
            method, attribute(hm, clean, corrupted, "components", metric, method=method, ig_steps=5))
    fns["sweep"] = lambda: results.__setitem__("sweep", sweep(hm, clean, corrupted, "components", metric))
    if not skip_tl:
        tl, reason = _tl(hm, name, clean, corrupted, metric)
        if tl is not None:
            fns["transformer-lens"] = tl
    times = interleaved_min_seconds(fns, repeats)
    unit = times["forward"]
    print(f"{name}: {len(hm.components)} components x {seq} positions, batch {batch}; forward {unit * 1e3:.1f} ms")
    first = int((clean != corrupted).any(0).nonzero()[0])
    exact = results["sweep"].values[:, first:]
    print(f"  sweep                {times['sweep'] / unit:7.2f} forwards")
    for method in methods:
        result = results[method]
        print(f"  {method:<20} {times[method] / unit:7.2f} forwards (work {result.work:.1f})  "
              f"spearman vs exact {spearman(result.values[:, first:], exact):.3f}")
    if skip_tl:
        return
    if "transformer-lens" in times:
        print(f"  transformer-lens     {times['transformer-lens'] / unit:7.2f} forwards (attribution_patch)")
    else:
        print(f"  transformer-lens     not run: {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--methods", nargs="+", default=["atp", "atp*", "ig"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-tl", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        bench(name, args.batch, args.seq, args.methods, args.repeats, args.skip_tl)


if __name__ == "__main__":
    main()
