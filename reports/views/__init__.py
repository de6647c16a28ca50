"""Views: how each analysis is shown, found by the analysis name.

    view_for("component_ablation")            # its View; an analysis without one gets the generic view
    register_view("retrieval", RetrievalView())  # what an analysis' view module adds below

A view (`reports.views.base.View`) owns its analysis' records, charts, findings and front-page headline; the
pages ask the view of each analysis they show, so a new analysis appears in the report with no edit here (the
generic view: a chart per metric over its coordinates, every row in a table), and one with something of its own
to say adds its module to this folder and one `register_view` line below.
"""

from __future__ import annotations

import altair as alt

from reports import tables
from reports.palette import Palette
from reports.views.base import Headline, Section, View
from reports.views.circuits import CircuitsView
from reports.views.component_ablation import ComponentAblationView
from reports.views.gather_aggregate import GatherAggregateView
from reports.views.generic import GenericView
from reports.views.memory_lens import MemoryLensView
from reports.views.patching import PatchingView
from reports.views.representation import RepresentationView
from reports.views.retrieval import RetrievalView

__all__ = ["View", "Section", "Headline", "register_view", "view_for", "chart_for_result", "GENERIC"]

GENERIC = GenericView()
"""The view of every analysis without one of its own."""

_VIEWS: dict[str, View] = {}


def register_view(name: str, view: View) -> None:
    """Show analysis `name` through `view` from now on (a later registration of the same name replaces it)."""
    if not isinstance(view, View):
        raise TypeError(f"the view of {name!r} must be a reports.views.View, got {type(view).__name__}")
    _VIEWS[name] = view


def view_for(name: str) -> View:
    """The view registered for analysis `name`, else the generic view."""
    return _VIEWS.get(name, GENERIC)


def chart_for_result(result, palette: Palette | None = None):
    """Every chart one Result supports, stacked: what a notebook shows for `Result.chart()`. Raises ValueError
    when the Result has no rows to chart."""
    result = tables.as_results(result)[0]
    charts = view_for(str(result.get("analysis"))).charts(result, palette)
    if not charts:
        raise ValueError(f"the {result.get('analysis')!r} result has no rows to chart")
    if len(charts) == 1:
        return charts[0]
    return alt.vconcat(*charts, title=str(result["model"].get("name"))).resolve_scale(color="independent")


register_view("component_ablation", ComponentAblationView())
register_view("representation", RepresentationView())
register_view("retrieval", RetrievalView())
register_view("gather_aggregate", GatherAggregateView())
register_view("memory_lens", MemoryLensView())
register_view("patching", PatchingView())
register_view("circuits", CircuitsView())
