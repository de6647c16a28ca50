"""Edge circuits: the cost of edge attribution and of verifying circuits, on the zoo, one thread.

    python benchmarks/bench_circuits.py [--models hybrid-gdn transformer] [--pairs 8] [--length 32]
                                        [--ig-steps 5] [--sizes 1 4 16] [--repeats 2]

For each zoo model, the zoo's needle pairs (the value swapped; analyses.patching.pairs), metric the logit
difference. Timed in turns (benchmarks/measure.py), as multiples of one plain forward of the clean prompts
(`hm.hf_model(clean)`, no grad) and of one forward + backward of it (the sum of the logit difference, grad on):
- `edge_scores(method="eap")` (goal: <= 4 forward-equivalents, in plain forwards) and `"eap-ig"` (goal: <= 2 x
  steps + 2), each beside its own `work` count;
- `faithfulness` of 1, 4 and 16 circuits stacked (the analysis' curve and random circuits run so): the cost per
  circuit, in forwards; the edge count does not change a run's cost (every receiver gets its delta either way);
- positional edges (`positional=True`, an edge per token): `eap` and `faithfulness` of the largest stack again,
  as ratios to the per-edge ones (the same forwards; the position axis in the scores and the ablation masks).
"""

from __future__ import annotations

import argparse

import torch

from measure import interleaved_min_seconds

MODELS = ("hybrid-gdn", "hybrid-parallel", "hybrid-jamba", "hybrid-griffin", "ssm-mamba2", "transformer")


def bench(name: str, pairs_n: int, length: int, steps: int, sizes, repeats: int) -> None:
    import mechhybrid
    from analyses.patching.pairs import zoo_pairs
    from mechhybrid.circuits import discover, edge_scores, faithfulness, random_keeps
    from mechhybrid.tracing import LogitDiff

    hm = mechhybrid.load(f"zoo:{name}")
    pairs = zoo_pairs("needle_value", pairs_n, length, 0.5, 0)
    metric = LogitDiff(pairs.answers, pairs.corrupted_answers)
    clean = torch.tensor(pairs.clean)
    answers = torch.tensor([a[0] for a in pairs.answers])
    wiring = discover(hm)
    found = {}

    def forward_backward():
        logits = hm.hf_model(clean).logits[:, -1]
        logits[torch.arange(len(answers)), answers].sum().backward()

    fns = {"forward": lambda: hm.hf_model(clean),
           "eap": lambda: found.__setitem__("eap", edge_scores(hm, pairs.clean, pairs.corrupted, metric,
                                                               wiring=wiring)),
           "eap-ig": lambda: found.__setitem__("eap-ig", edge_scores(hm, pairs.clean, pairs.corrupted, metric,
                                                                     "eap-ig", steps, wiring=wiring))}
    for k in sizes:
        keeps = random_keeps(wiring.valid, min(10, wiring.n_edges), k, seed=k)
        fns[f"faithfulness x{k}"] = lambda keeps=keeps: faithfulness(hm, pairs.clean, pairs.corrupted, metric,
                                                                     keeps, wiring=wiring)
    fns["eap positional"] = lambda: found.__setitem__("positional", edge_scores(
        hm, pairs.clean, pairs.corrupted, metric, wiring=wiring, positional=True))
    valid_at = wiring.valid[:, :, None].expand(-1, -1, length)
    most = max(sizes)
    per_token = random_keeps(valid_at, min(10 * length, int(valid_at.sum())), most, seed=most)
    fns["faithfulness positional"] = lambda: faithfulness(hm, pairs.clean, pairs.corrupted, metric, per_token,
                                                          wiring=wiring)
    times = interleaved_min_seconds(fns, repeats)
    fb = interleaved_min_seconds({"fb": forward_backward}, repeats, grad=True)["fb"]
    hm.hf_model.zero_grad(set_to_none=True)
    unit = times["forward"]
    print(f"{name}: {len(wiring.senders)} senders x {len(wiring.receivers)} receivers = {wiring.n_edges} edges; "
          f"{pairs_n} pairs of {length} tokens; forward {unit * 1e3:.1f} ms, forward + backward {fb * 1e3:.1f} ms")
    for method in ("eap", "eap-ig"):
        goal = 4 if method == "eap" else 2 * steps + 2
        print(f"  {method:<8} {times[method] / unit:6.2f} forwards = {times[method] / fb:5.2f} forward+backward "
              f"(work {found[method].work:.0f}; goal {goal} forward-equivalents)")
    print("  faithfulness (2 forwards of each call are the clean and corrupted runs, stacked in one; shared):")
    for k in sizes:
        seconds = times[f"faithfulness x{k}"]
        print(f"    {k:>2} circuit(s) stacked: {seconds / unit:6.2f} forwards, {seconds / unit / k:5.2f} per circuit")
    print(f"  positional: eap {times['eap positional'] / times['eap']:5.2f}x the per-edge eap; faithfulness of "
          f"{most} circuits {times['faithfulness positional'] / times[f'faithfulness x{most}']:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--ig-steps", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        bench(name, args.pairs, args.length, args.ig_steps, args.sizes, args.repeats)


if __name__ == "__main__":
    main()
