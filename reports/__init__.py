"""Static, offline HTML reports of mechhybrid results: Result JSON -> altair charts -> pages.

Reads only the results directory (docs/results-schema.md); never imports torch or loads a model, so a report
can be rebuilt anywhere from the JSON alone.

    mechhybrid report OUT [--screenshot] [--self-contained]
        # OUT/index.html, OUT/models/<model>.html, OUT/compare.html, and OUT/vega.js, the chart runtime they
        # share (--self-contained: inlined into every page instead)
    reports.render("OUT")                     # the same from Python; returns the pages written
    reports.chart_for(result)                 # every chart of one Result, for a notebook cell

Modules, in data-flow order: `load` (files -> dicts, one line per unreadable file), `study_notes` (what the
study ran and skipped), `tables` (rows -> chart records), `charts` (records -> altair, no computing),
`findings` (records -> sentences with their CIs), `views` (one per analysis, found by its name, with a generic
one for the rest: which records, charts and findings an analysis shows on each page, and its front-page
headline), `terms` (what the words mean, on every page), `html` / `pages` / `index_page` (the shell:
escaping, CSP, accessible chart blocks, page layout), `render`, `screenshot`, `cli`.
"""

from reports.cli import add_report_command, cmd_report
from reports.load import load_results
from reports.render import UnreadableResultsError, render
from reports.views import chart_for_result, register_view, view_for

__all__ = ["render", "chart_for", "chart_for_result", "load_results", "add_report_command", "cmd_report",
           "UnreadableResultsError", "register_view", "view_for"]


def chart_for(result, palette=None):
    """The altair chart of one Result (a dict, or an analyses Result with `to_dict()`), for notebooks."""
    return chart_for_result(result, palette=palette)
