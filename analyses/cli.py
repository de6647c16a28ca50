"""CLI verbs `run`, `study` and `results`, for mechhybrid/cli.py to wire in (`add_analysis_commands`).

Each handler takes the parsed argparse namespace and returns an exit code; user errors are raised as
MechHybridError for the main CLI to print as one line with exit code 2 (`main` here does the same, for tests).
"""

from __future__ import annotations

import argparse
import sys

from mechhybrid.errors import MechHybridError
from mechhybrid.load_flags import add_load_flags, load_options

from .configs import build_config, config_help, read_config_file
from .outdir import check_out_dir
from .registry import ANALYSES, STUDY_A, count_jobs, get_analysis, run_analysis
from .study import run_study
from .schema import result_path
from .summary import summarize

__all__ = ["add_analysis_commands", "cmd_run", "cmd_study", "cmd_results", "main"]

DEFAULT_OUT = "mechhybrid-out"


def _analyses_help() -> str:
    parts = []
    for a in ANALYSES.values():
        parts.append(f"{a.name}: {a.summary}\n  config options (TOML/JSON keys):\n{config_help(a.config_cls)}")
    return "\n\n".join(parts)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML or JSON file of Config options (see below); CLI flags override it")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument("--force", action="store_true", help="recompute finished results instead of reusing them")
    p.add_argument("--limit", type=int, help="items per benchmark (a seeded sample)")
    p.add_argument("--seed", type=int, help="seed of random draws and of the bootstrap")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_load_flags(p)


def add_analysis_commands(subparsers) -> None:
    """Add `run`, `study` and `results` to an argparse subparsers object; each sets `func` to its handler."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("run", help="run one analysis on one model", formatter_class=fmt,
                              description="Run ANALYSIS on MODEL, writing OUT/results/<model>/<analysis>.json "
                                          "and OUT/results.csv. Finished conditions are resumed.",
                              epilog=_analyses_help())
    p.add_argument("analysis", help=f"one of: {', '.join(ANALYSES)}")
    p.add_argument("--model", required=True, help="zoo:NAME, a local checkpoint directory or a cached hub id")
    p.add_argument("--method", help="ablation method: zero, mean, resample, skip (component_ablation: or all)")
    _common(p)
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("study", help="every Study A analysis on every model (default: the zoo)",
                              formatter_class=fmt, epilog=_analyses_help(),
                              description="Run " + ", ".join(STUDY_A) + " on each model. In the config "
                                          "file, a table per analysis (e.g. [representation]) holds its own "
                                          "options; other keys (limit, [data]) apply to every analysis.")
    p.add_argument("--models", nargs="+", help="model sources (default: every zoo model)")
    p.add_argument("--jobs", type=int, help="worker processes, one model each (default: one per CPU core for "
                                            "zoo models, else 1)")
    _common(p)
    p.set_defaults(func=cmd_study)

    p = subparsers.add_parser("results", help="print a compact text summary of finished results")
    p.add_argument("dir", help="an output directory of `run` or `study`")
    p.set_defaults(func=cmd_results)


def _options(args, analysis: str, file_options: dict) -> dict:
    opts = dict(file_options)
    for flag in ("limit", "seed", "method"):
        value = getattr(args, flag, None)
        if value is not None:
            opts[flag] = value
    return opts


def _file_sections(path, analyses) -> dict[str, dict]:
    """{analysis: options} from a config file: tables named after analyses hold their own options; every
    other key (e.g. `limit`, the `data` table) applies to each analysis, which its own table overrides.
    Every analysis-named key must be a table, also for an analysis this command does not run."""
    raw = read_config_file(path) if path else {}
    for name in ANALYSES:
        if name in raw and not isinstance(raw[name], dict):
            raise MechHybridError(f"config file {path}: {name} must be a table of options ([{name}]), "
                                  f"got {raw[name]!r}")
    shared = {k: v for k, v in raw.items() if k not in ANALYSES}
    return {name: {**shared, **raw.get(name, {})} for name in analyses}


def cmd_run(args) -> int:
    import mechhybrid
    from tqdm import tqdm

    analysis = get_analysis(args.analysis)
    opts = _options(args, analysis.name, _file_sections(args.config, [analysis.name])
                    .get(analysis.name, {}))
    cfg = build_config(analysis.config_cls, opts, where=f"{analysis.name} config")
    check_out_dir(args.out)  # before the model loads: a bad folder costs no time
    hm = mechhybrid.load(args.model, **load_options(args))
    # The bar's total is known before its first job (and 0 for a finished Result that is reused).
    total = None if args.no_progress else count_jobs(analysis.name, hm, cfg, args.out, force=args.force)
    with tqdm(desc=f"{hm.name} {analysis.name}", total=total, unit="job", disable=args.no_progress) as bar:
        _, computed = run_analysis(analysis.name, hm, cfg, args.out, force=args.force, progress=bar)
    state = "written" if computed else "already finished (use --force to recompute)"
    print(f"{result_path(args.out, hm.name, analysis.name)}: {state}")
    return 0


def cmd_study(args) -> int:
    sections = _file_sections(args.config, STUDY_A)
    configs = {}
    for name in STUDY_A:
        analysis = get_analysis(name)
        opts = _options(args, name, sections.get(name, {}))
        configs[name] = build_config(analysis.config_cls, opts, where=f"{name} config")
    paths = run_study(args.models, args.out, force=args.force, progress=not args.no_progress, configs=configs,
                      load_options=load_options(args), jobs=args.jobs)
    print(f"{len(paths)} results under {args.out}/results; table: {args.out}/results.csv")
    return 0


def cmd_results(args) -> int:
    sys.stdout.write(summarize(args.dir))
    return 0


def main(argv=None) -> int:
    """A stand-alone entry with only these verbs (tests; `python -m analyses.cli`)."""
    parser = argparse.ArgumentParser(prog="mechhybrid")
    add_analysis_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MechHybridError as exc:
        print(f"mechhybrid: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
