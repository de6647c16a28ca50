"""Wall time of `mechhybrid report` and the weight of its pages.

Goal: seconds, not minutes, on the zoo study's results; page weight said (the vega runtime, ~0.9 MB, is
one file, vega.js, shared by the pages). Times are also given as ratios to a reference measured in the same run, reading
and parsing every result JSON, so that numbers from different machines can be compared.

    python benchmarks/bench_report.py DIR          # a study's output directory (copied; DIR is not touched)
    python benchmarks/bench_report.py              # the test fixture, 3 x 3 models with Study A's rows

Prints one JSON object: runtime bundling (first render in a process), warm render, reference, per-page bytes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _fixture(out: Path, copies: int) -> None:
    # The tests' fixture writer, so that the benchmark runs without a study on disk; `copies` renames the three
    # models to make a zoo-sized study (the zoo has about eight models).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reports"))
    import conftest

    results = []
    for copy in range(copies):
        for result in conftest.study_results(seed=copy):
            model = dict(result["model"], name=f"{result['model']['name']}-{copy}")
            results.append(dict(result, model=model))
    conftest.write_results(out, results)


def _reference_s(out: Path) -> float:
    start = time.perf_counter()
    for path in sorted((out / "results").glob("*/*.json")):
        json.loads(path.read_text(encoding="utf-8"))
    return time.perf_counter() - start


def _weights(out: Path) -> dict:
    pages = sorted(out.rglob("*.html"))
    sizes = {p.relative_to(out).as_posix(): p.stat().st_size for p in pages}
    charts = {name: (out / name).read_text(encoding="utf-8").count('class="vega-spec"') for name in sizes}
    runtime = (out / "vega.js").stat().st_size
    return {
        "runtime_file_bytes (vega.js, once per report)": runtime,
        "pages": {name: {"bytes": size, "charts": charts[name]} for name, size in sizes.items()},
        "total_bytes (pages + vega.js)": sum(sizes.values()) + runtime,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", help="a results directory (default: the test fixture)")
    parser.add_argument("--repeat", type=int, default=3, help="warm renders to time (the best is reported)")
    parser.add_argument("--copies", type=int, default=3, help="fixture only: copies of its three models")
    args = parser.parse_args(argv)

    # Run as a script, sys.path[0] is benchmarks/: put the checkout first so `reports` is this one.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import reports
    from reports.html import vega_bundle

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        out = Path(tmp) / "out"
        if args.dir:
            shutil.copytree(Path(args.dir) / "results", out / "results")
            if (Path(args.dir) / "results.csv").is_file():
                shutil.copy(Path(args.dir) / "results.csv", out / "results.csv")
        else:
            _fixture(out, args.copies)
        start = time.perf_counter()
        vega_bundle()
        bundle_s = time.perf_counter() - start
        warm = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            reports.render(out)
            warm.append(time.perf_counter() - start)
        reference = min(_reference_s(out) for _ in range(5))
        n_results = len(list((out / "results").glob("*/*.json")))
        n_rows = sum(len(json.loads(p.read_text())["rows"]) for p in (out / "results").glob("*/*.json"))
        report = {
            "input": args.dir or f"tests/reports fixture x{args.copies}", "results": n_results, "rows": n_rows,
            "runtime_bundle_s (first render per process)": round(bundle_s, 2),
            "render_warm_s (best of repeat)": round(min(warm), 2),
            "render_cold_s (bundle + render)": round(bundle_s + min(warm), 2),
            "reference_read_json_s": round(reference, 4),
            "render_warm / reference": round(min(warm) / max(reference, 1e-9), 1),
            **_weights(out),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
