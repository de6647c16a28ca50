"""The `mechhybrid` command line: the one place that wires the library, the analyses and the reports together.

Every error a user can cause (a MechHybridError) is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from mechhybrid.errors import MechHybridError
from mechhybrid.load_flags import add_load_flags, load_from_args


def cmd_inspect(args) -> int:
    """Print the component map (name, kind, heads, params, what each output is added into and by which factor,
    path), family, topology and totals."""
    hm = load_from_args(args)
    rows = [
        {"name": c.name, "layer": c.layer, "kind": c.kind, "path": c.path, "heads": c.n_heads, "params": c.n_params,
         "writes_to": c.writes_to, "residual_scale": c.residual_scale}
        for c in hm.components
    ]
    summary = {
        "model": hm.name, "family": hm.family, "topology": hm.topology, "n_layers": hm.n_layers,
        "n_params": hm.n_params, "kinds": {k: len(hm.components.by_kind(k)) for k in hm.components.kinds()},
        "components": rows,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{hm.name}: family {hm.family}, {hm.topology}, {hm.n_layers} layers, {hm.n_params:,} parameters")
    print(f"{'name':<16}  {'kind':<16}  {'heads':>5}  {'params':>12}  {'writes to':<16}  path")
    for row in rows:
        heads = "-" if row["heads"] is None else row["heads"]
        scale = "" if row["residual_scale"] == 1 else f" x{row['residual_scale']:g}"
        print(f"{row['name']:<16}  {row['kind']:<16}  {heads:>5}  {row['params']:>12,}  "
              f"{row['writes_to'] + scale:<16}  {row['path']}")
    totals = ", ".join(f"{kind}: {count}" for kind, count in summary["kinds"].items())
    print(f"components: {len(rows)} ({totals})")
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints a usage block before its error; users get the one line that matters (and --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="mechhybrid", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    inspect = commands.add_parser("inspect", help="print a model's component map")
    inspect.add_argument("model", help="zoo:NAME, a local checkpoint directory, or a hub id in the local cache")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    add_load_flags(inspect)
    inspect.set_defaults(handler=cmd_inspect)
    for register in _extension_registrars():
        register(commands)
    return parser


def _extension_registrars():
    """Sub-command groups that live with their packages (zoo, state, analyses, reports)."""
    from mechhybrid.check_cache import add_check_cache_command
    from mechhybrid.zoo.cli import add_zoo_commands
    from reports.cli import add_report_command

    return [add_zoo_commands, add_check_cache_command, _add_analyses_then_report, add_report_command]


def _add_analyses_then_report(commands) -> None:
    """`run`, `study`, `results` from analyses/; `study` ends by rendering the HTML report (reports/)."""
    from analyses.cli import add_analysis_commands

    add_analysis_commands(commands)
    study = commands.choices["study"]
    study.add_argument("--no-report", action="store_true", help="skip rendering OUT/index.html at the end")
    study.set_defaults(func=_study_then_report)


def _study_then_report(args) -> int:
    from analyses.cli import cmd_study
    from reports.cli import cmd_report

    status = cmd_study(args)
    if status or args.no_report:
        return status
    return cmd_report(argparse.Namespace(dir=Path(args.out), screenshot=False, self_contained=False))


def _zoo_hint(args, error: MechHybridError) -> str:
    """"; did you mean zoo:NAME?" when the error is about a model source that is the bare name of a zoo model."""
    from mechhybrid.zoo.registry import suggest_zoo

    sources = [getattr(args, "model", None), *(getattr(args, "models", None) or [])]
    for source in sources:
        hint = suggest_zoo(source) if isinstance(source, str) and source in str(error) else None
        if hint:
            return f"; did you mean {hint}?"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed its one-line usage error
        return int(exit_.code or 0)
    try:
        handler = getattr(args, "handler", None) or args.func
        return int(handler(args) or 0)
    except MechHybridError as error:
        print(f"mechhybrid: error: {error}{_zoo_hint(args, error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mechhybrid: interrupted; results already written are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
