"""Wall time of `mechhybrid study` on the zoo, and the share of it spent inside model forwards.

Goals: the whole zoo in <= 5 minutes on 2 CPU cores; forwards >= 80% of the time.
"Forwards" is time inside HybridModel calls made by analyses (logits_many with its reduce, hidden_states,
run, generate), from analyses.timing.FORWARD, written per (model, analysis) to OUT/timings.json.

Measured 2026-11-29 on the trained 6-model zoo (recipe 4), nothing else running, defaults (limit 64, 2 worker
processes of 1 thread): this benchmark 290.0 s wall; forwards 541.5 s, 93.3% of the 580.0 process-seconds
(wall x processes), 98.6% of the 549.4 s inside the analyses. `mechhybrid study --out out --no-progress`, report
included: 273.8 s. Per model, ablation + representation (benchmark run): hybrid-jamba 165.0 s, ssm-mamba2
98.3 s, hybrid-parallel 97.8 s, hybrid-gdn 88.4 s, hybrid-griffin 58.8 s, transformer 41.2 s; no order of the
six on two workers gets their analyses under 284.5 s. (The 5-model zoo before Jamba: 222.8 s.)

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
    parser.add_argument("--jobs", type=int, help="worker processes (default: run_study's, one per core for the zoo)")
    parser.add_argument("--out", help="output directory (default: a fresh temporary one)")
    args = parser.parse_args(argv)

    import torch

    from analyses.schema import read_timings
    from analyses.study import default_jobs, run_study, zoo_models

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-study-"))
    models = args.models or zoo_models()
    jobs = min(len(models), args.jobs or default_jobs(models))
    t0 = time.perf_counter()
    run_study(models, out, force=True, progress=False, configs=_configs(args.limit), jobs=jobs)
    wall = time.perf_counter() - t0
    timings = read_timings(out)
    print(f"{'model/analysis':45s} {'wall s':>8s} {'forward s':>10s} {'share':>6s}")
    for key, t in sorted(timings.items()):
        print(f"{key:45s} {t['wall_s']:8.1f} {t['forward_s']:10.1f} {t['forward_s'] / max(t['wall_s'], 1e-9):6.1%}")
    forward = sum(t["forward_s"] for t in timings.values())
    analyses = sum(t["wall_s"] for t in timings.values())
    # With several worker processes the analyses' own times add up to more than the wall time: the share of
    # forwards is of the time the workers spent (wall x processes), which is the wall time itself with one.
    slots = wall * jobs
    threads = 1 if jobs > 1 else torch.get_num_threads()
    print(f"\nmodels: {len(models)}  processes: {jobs}  threads each: {threads}  limit: {args.limit or 'default'}")
    print(f"study wall time: {wall:.1f} s (goal <= 300 s); inside analyses: {analyses:.1f} s of {slots:.1f} "
          f"process-seconds; loading, CSV and the rest: {slots - analyses:.1f} s")
    print(f"forwards: {forward:.1f} s = {forward / slots:.1%} of the process time (goal >= 80%)")
    print(json.dumps({"wall_s": round(wall, 2), "forward_s": round(forward, 2), "forward_share": round(forward / slots, 4),
                      "models": models, "limit": args.limit, "processes": jobs, "threads": threads, "out": str(out)}))


if __name__ == "__main__":
    main()
