"""Wall time of `mechhybrid study` on the zoo, and the share of it spent inside model forwards.

Goals (issue 6): the whole zoo in <= 5 minutes on 2 CPU cores; forwards >= 80% of the time.
"Forwards" is time inside HybridModel calls made by analyses (logits_many with its reduce, hidden_states,
run, generate), from analyses.timing.FORWARD, written per (model, analysis) to OUT/timings.json.

Measured 2026-11-25 on the 5 zoo architectures with random weights (the trained zoo had not landed), limit 16,
--threads 1, 2 cores shared with the zoo's training jobs (load average 4-8): 500-990 s wall (contention-bound:
the same transformer ablation took 32 s in one run and 177 s in another), forwards 92.5% of it.

    python benchmarks/bench_study.py                      # every zoo model, default configs
    python benchmarks/bench_study.py --limit 32 --threads 1 --models zoo:transformer zoo:hybrid-gdn
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def _configs(limit: int | None):
    from analyses.ablation import ComponentAblationConfig
    from analyses.representation import RepresentationConfig

    if limit is None:
        return None
    return {"component_ablation": ComponentAblationConfig(limit=limit),
            "representation": RepresentationConfig(limit=limit)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="model sources (default: every zoo model)")
    parser.add_argument("--limit", type=int, help="items per benchmark (default: the Configs' default)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--out", help="output directory (default: a fresh temporary one)")
    args = parser.parse_args(argv)

    import torch

    from analyses.registry import run_study, zoo_models
    from analyses.schema import read_timings

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-study-"))
    models = args.models or zoo_models()
    t0 = time.perf_counter()
    run_study(models, out, force=True, progress=False, configs=_configs(args.limit))
    wall = time.perf_counter() - t0
    timings = read_timings(out)
    print(f"{'model/analysis':45s} {'wall s':>8s} {'forward s':>10s} {'share':>6s}")
    for key, t in sorted(timings.items()):
        print(f"{key:45s} {t['wall_s']:8.1f} {t['forward_s']:10.1f} {t['forward_s'] / max(t['wall_s'], 1e-9):6.1%}")
    forward = sum(t["forward_s"] for t in timings.values())
    analyses = sum(t["wall_s"] for t in timings.values())
    print(f"\nmodels: {len(models)}  threads: {torch.get_num_threads()}  limit: {args.limit or 'default'}")
    print(f"study wall time: {wall:.1f} s (goal <= 300 s); inside analyses: {analyses:.1f} s; "
          f"loading, CSV and the rest: {wall - analyses:.1f} s")
    print(f"forwards: {forward:.1f} s = {forward / wall:.1%} of the study wall time (goal >= 80%)")
    print(json.dumps({"wall_s": round(wall, 2), "forward_s": round(forward, 2), "forward_share": round(forward / wall, 4),
                      "models": models, "limit": args.limit, "threads": torch.get_num_threads(), "out": str(out)}))


if __name__ == "__main__":
    main()
