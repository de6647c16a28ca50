"""The retrieval analysis per zoo model at the study's `quick` profile: CPU seconds of one thread (process
time, which a busy machine inflates far less than wall time) and wall seconds, against the quick budget.

Goal (issue: Study B): <= 120 s for the whole zoo on 2 cores, i.e. the CPU seconds summed over the six models,
shared out over 2 workers. The summed CPU seconds are what `analyses/studies.py` records as the step's
`zoo_seconds`.

    python benchmarks/bench_retrieval.py                          # every zoo model
    python benchmarks/bench_retrieval.py --models zoo:hybrid-gdn --out retrieval.json
    python benchmarks/bench_retrieval.py --models zoo:hybrid-gdn --head-selections entropy random
"""

from __future__ import annotations

import argparse
import json
import time

ZOO = ("hybrid-gdn", "hybrid-parallel", "hybrid-jamba", "hybrid-griffin", "transformer", "ssm-mamba2")


def _findings(result) -> dict:
    """The whole-grid numbers of the chosen scorer per condition (value, CI, n), for the closing table."""
    scorer = result.extra["scorer"]
    wanted = (f"acc:{scorer}", f"drop:{scorer}", f"k95:{scorer}", "retention:facts", "retention:lm")
    return {f"{r.condition} {r.metric}": [r.value, r.ci_low, r.ci_high, r.n] for r in result.rows
            if r.metric in wanted and "context_length" not in r.coords}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[f"zoo:{name}" for name in ZOO])
    parser.add_argument("--skip", nargs="*", default=[], help="model sources to leave out")
    parser.add_argument("--profile", default="quick", choices=("quick", "full"))
    parser.add_argument("--out", help="write the measurements to this JSON file as they come")
    parser.add_argument("--head-selections", nargs="+", help="override the profile's head selections (e.g. "
                        "entropy random: what adding the random control to the profile would cost)")
    args = parser.parse_args(argv)

    import torch

    import mechhybrid as mh
    from analyses.retrieval import RetrievalConfig, run
    from analyses.studies import ZOO_CORES, step

    torch.set_num_threads(1)
    options = step("retrieval").options(args.profile)
    if args.head_selections:
        options = {**options, "head_selections": tuple(args.head_selections)}
    found = {}
    for source in [m for m in args.models if m not in args.skip]:
        hm = mh.load(source)
        cpu, wall = time.process_time(), time.perf_counter()
        result = run(hm, RetrievalConfig(**options))
        found[source] = {"cpu_s": round(time.process_time() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2),
                         "rows": len(result.rows), "findings": _findings(result)}
        print(source, found[source], flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(found, f, indent=1)
    total = sum(m["cpu_s"] for m in found.values())
    print(f"summed CPU seconds {total:.1f}; on {ZOO_CORES} cores about {total / ZOO_CORES:.1f} s (goal <= 120 s)")


if __name__ == "__main__":
    main()
