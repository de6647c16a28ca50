"""`mechhybrid report DIR [--screenshot] [--self-contained]`: the handler the CLI wires in (mechhybrid/cli.py
owns `main`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mechhybrid.errors import MechHybridError

__all__ = ["add_report_command", "cmd_report"]


def add_report_command(subparsers) -> argparse.ArgumentParser:
    """Register `report` on an argparse subparsers object; its handler is `cmd_report`."""
    parser = subparsers.add_parser(
        "report", help="render the static HTML report of a results directory",
        description="Render DIR/index.html, DIR/models/<model>.html and DIR/compare.html from the result JSON "
                    "files under DIR/results (no model is loaded), with the chart runtime they share as "
                    "DIR/vega.js. Offline: the pages need no network.")
    parser.add_argument("dir", type=Path, metavar="DIR", help="the study's output directory (the one holding results/)")
    parser.add_argument("--screenshot", action="store_true",
                        help="also write a PNG of each page with headless Chromium")
    parser.add_argument("--self-contained", action="store_true",
                        help="inline the chart runtime (~0.9 MB) into every page instead of sharing DIR/vega.js, "
                             "so that any one page can be copied or mailed on its own")
    # `handler` is what mechhybrid.cli.main calls; `func` for callers that follow the argparse docs.
    parser.set_defaults(handler=cmd_report, func=cmd_report)
    return parser


def cmd_report(args: argparse.Namespace) -> int:
    """Render; print the pages written. Exit 2, with one line per problem on stderr, when a result file could
    not be read (the other results are still rendered) or there is nothing to render."""
    from reports.render import UnreadableResultsError, render

    try:
        pages = render(args.dir, screenshot=args.screenshot, self_contained=args.self_contained)
    except UnreadableResultsError as error:
        for line in error.problems:
            print(f"mechhybrid report: {line}", file=sys.stderr)
        for page in error.pages:
            print(page)
        return 2
    except MechHybridError as error:
        print(f"mechhybrid report: {error}", file=sys.stderr)
        return 2
    for page in pages:
        print(page)
    return 0
