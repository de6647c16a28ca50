"""CLI verbs `run`, `study` and `results`, for mechhybrid/cli.py to wire in (`add_analysis_commands`).

Each handler takes the parsed argparse namespace and returns an exit code; user errors are raised as
MechHybridError for the main CLI to print as one line with exit code 2 (`main` here does the same, for tests).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from mechhybrid.errors import MechHybridError
from mechhybrid.load_flags import add_load_flags, load_options

from . import studies
from .configs import build_config, config_help, read_config_file
from .outdir import check_out_dir
from .registry import analysis_names, count_jobs, get_analysis, run_analysis
from .schema import result_path
from .studies import DEFAULT_PROFILE, PROFILES, profiles_help, select_steps
from .study import run_study
from .summary import summarize

__all__ = ["add_analysis_commands", "cmd_run", "cmd_study", "cmd_results", "main"]

DEFAULT_OUT = "mechhybrid-out"


def _analyses_help() -> str:
    parts = []
    for a in map(get_analysis, analysis_names()):
        parts.append(f"{a.name}: {a.summary}\n  config options (TOML/JSON keys):\n{config_help(a.config_cls)}")
    return "\n\n".join(parts)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML or JSON file of Config options (see below); CLI flags override it")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output directory (default: {DEFAULT_OUT})")
    p.add_argument("--force", action="store_true", help="recompute finished results instead of reusing them")
    p.add_argument("--limit", type=int, help="items per benchmark (a seeded sample)")
    p.add_argument("--seed", type=int, help="seed of random draws and of the bootstrap")
    p.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE,
                   help="option sizes: quick (zoo-sized, the default) or full (the published protocols, for "
                        "real models on a GPU); the config file and flags override them (see below)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_load_flags(p)


def add_analysis_commands(subparsers) -> None:
    """Add `run`, `study` and `results` to an argparse subparsers object; each sets `func` to its handler."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("run", help="run one analysis on one model", formatter_class=fmt,
                              description="Run ANALYSIS on MODEL, writing OUT/results/<model>/<analysis>.json "
                                          "and OUT/results.csv. Finished conditions are resumed.",
                              epilog=profiles_help() + "\n\n" + _analyses_help())
    p.add_argument("analysis", help=f"one of: {', '.join(analysis_names())}")
    p.add_argument("--model", required=True, help="zoo:NAME, a local checkpoint directory or a cached hub id")
    p.add_argument("--method", help="ablation method: zero, mean, resample, skip (component_ablation: or all)")
    _common(p)
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("study", help="the study's analyses on every model (default: the zoo)",
                              formatter_class=fmt, epilog=profiles_help() + "\n\n" + _analyses_help(),
                              description="Run " + ", ".join(analysis_names()) + " (or those named "
                                          "by --analyses) on each model; an analysis that does not apply to a "
                                          "model is skipped there, with a note in OUT/study.json. In the "
                                          "config file, a table per analysis (e.g. [representation]) holds its "
                                          "own options; other keys (limit, [data]) apply to every analysis.")
    p.add_argument("--analyses", help="comma-separated analyses to run, e.g. component_ablation (default: all; "
                                      "they run in the study's order)")
    p.add_argument("--models", nargs="+", help="model sources (default: every zoo model)")
    p.add_argument("--jobs", type=int, help="worker processes, one model each (default: one per CPU core for "
                                            "zoo models, else 1)")
    _common(p)
    p.set_defaults(func=cmd_study)

    p = subparsers.add_parser("results", help="print a compact text summary of finished results")
    p.add_argument("dir", help="an output directory of `run` or `study`")
    p.set_defaults(func=cmd_results)


def _options(args, analysis: str, file_options: dict) -> dict:
    """The file's options under the CLI flags. A flag goes to the analyses that have such an option; `run`
    with a flag its analysis lacks is a bad input."""
    opts = dict(file_options)
    fields = _fields(analysis)
    for flag in ("limit", "seed", "method"):
        value = getattr(args, flag, None)
        if value is None:
            continue
        if flag in fields:
            opts[flag] = value
        elif args.func is cmd_run:
            raise MechHybridError(f"--{flag} does not apply to {analysis} (its options: see "
                                  f"`mechhybrid run {analysis} --help`)")
    return opts


def _file_sections(path, analyses) -> dict[str, dict]:
    """{analysis: options} from a config file: tables named after analyses hold their own options; every
    other key (e.g. `limit`, the `data` table) applies to each analysis, which its own table overrides.
    Every analysis-named key must be a table, also for an analysis this command does not run."""
    raw = read_config_file(path) if path else {}
    names = analysis_names()
    for name in names:
        if name in raw and not isinstance(raw[name], dict):
            raise MechHybridError(f"config file {path}: {name} must be a table of options ([{name}]), "
                                  f"got {raw[name]!r}")
    shared = {k: v for k, v in raw.items() if k not in names}
    known = {name: _fields(name) for name in names}
    nowhere = sorted(k for k in shared if not any(k in fields for fields in known.values()))
    if nowhere:
        raise MechHybridError(f"config file {path}: unknown option(s) {', '.join(nowhere)}; no analysis has them")
    # A shared key goes to the analyses that have such an option (`limit` and `[data]` to Study A's, not to
    # retrieval); an analysis's own table is checked in full.
    return {name: {**{k: v for k, v in shared.items() if k in known[name]}, **raw.get(name, {})}
            for name in analyses}


def _fields(name: str) -> set[str]:
    return {f.name for f in dataclasses.fields(studies.step(name).analysis.config_cls)}


def _config(args, step: studies.Step, section: dict):
    """The Config of the study step's analysis: its profile's options, under the config file's `section`,
    under the CLI flags."""
    opts = _options(args, step.name, {**step.options(args.profile), **section})
    return build_config(step.analysis.config_cls, opts, where=f"{step.name} config")


def cmd_run(args) -> int:
    import mechhybrid
    from tqdm import tqdm

    step = studies.step(args.analysis)
    analysis = step.analysis
    cfg = _config(args, step, _file_sections(args.config, [analysis.name])[analysis.name])
    check_out_dir(args.out)  # before the model loads: a bad folder costs no time
    hm = mechhybrid.load(args.model, **load_options(args))
    # The bar's total is known before its first job (and 0 for a finished Result that is reused). Both calls
    # refuse an analysis that does not apply to the model, before any work.
    total = None if args.no_progress else count_jobs(analysis.name, hm, cfg, args.out, force=args.force)
    with tqdm(desc=f"{hm.name} {analysis.name}", total=total, unit="job", disable=args.no_progress) as bar:
        _, computed = run_analysis(analysis.name, hm, cfg, args.out, force=args.force, progress=bar)
    state = "written" if computed else "already finished (use --force to recompute)"
    print(f"{result_path(args.out, hm.name, analysis.name)}: {state}")
    return 0


def cmd_study(args) -> int:
    steps = select_steps(None if args.analyses is None else [n.strip() for n in args.analyses.split(",")])
    sections = _file_sections(args.config, [s.name for s in steps])
    configs = {s.name: _config(args, s, sections[s.name]) for s in steps}
    paths = run_study(args.models, args.out, force=args.force, progress=not args.no_progress, configs=configs,
                      analyses=[s.name for s in steps], load_options=load_options(args), jobs=args.jobs,
                      profile=args.profile)
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
