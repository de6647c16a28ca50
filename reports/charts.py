"""One altair chart per kind of finding. Charts only encode: records come from `reports.tables`, numbers
are never derived here (Study A's figures, see /work/shared/REFERENCE.md, experiments 1-7).

Each function takes one Result dict or a sequence of them (a model page passes one, the comparison page
passes all models), an optional `palette` (family -> colour, `palette.family_palette`) so that a family has
one colour on every page, and returns an altair chart, or None when the Results hold no rows for it.
No selections or params are used: altair numbers those from a global counter, which would make two
renders of the same results differ in bytes.
"""

from __future__ import annotations

from functools import partial

import altair as alt

from reports import tables
from reports.palette import Palette, family_palette

__all__ = [
    "group_bars", "ppl_ratio_bars", "layer_heatmap", "thirds_bars", "resilience_strip",
    "context_lines", "diagnostic_scatter", "correlation_bars", "generic_points", "chart_for_result", "TOOLTIP",
    "is_drop", "is_ratio", "cka_models_heatmap",
]

# Exact text of every number (the repr that results.csv holds), plus where it came from. Integers (n, seed,
# layer) are nominal too, so that no number format (a theme's, a config's) can ever reach them.
TOOLTIP = [
    alt.Tooltip("model:N"), alt.Tooltip("family:N"), alt.Tooltip("condition:N"), alt.Tooltip("metric:N"),
    alt.Tooltip("value_exact:N", title="value"), alt.Tooltip("ci_low_exact:N", title="95% CI low"),
    alt.Tooltip("ci_high_exact:N", title="95% CI high"), alt.Tooltip("method:N"), alt.Tooltip("n:N"),
    alt.Tooltip("seed:N"),
]
_WIDTH, _HEIGHT = 220, 200


def _colour(results, records: list[dict], palette: Palette | None) -> alt.Color:
    """Family colour from the report-wide palette, with the legend listing only the families drawn here."""
    palette = palette or family_palette(r["model"] for r in tables.as_results(results))
    present = {r["family"] for r in records}
    shown = {family: colour for family, colour in palette.items() if family in present}
    return alt.Color("family:N", scale=alt.Scale(domain=list(shown), range=list(shown.values())),
                     legend=alt.Legend(title="family"))


def _drawable(records: list[dict]) -> bool:
    """Anything to draw: a chart of only missing values would be an empty frame (and vega warns)."""
    return any(r["value"] is not None for r in records)


def _models(records: list[dict]) -> list[str]:
    """Models in the order the records list them (pages order hybrids first, then the controls); a vega
    facet or offset left unsorted would order them alphabetically."""
    return list(dict.fromkeys(r["model"] for r in records))


def _base(records: list[dict]) -> alt.Chart:
    return alt.Chart(alt.Data(values=records))


def _bars_with_whiskers(records, x: str, x_title: str, y_title: str, colour, log: bool = False):
    """Bars (targeted removal) with CI whiskers and one dot per random-control trial, one panel per `facet`."""
    scale = alt.Scale(type="log") if log else alt.Scale(zero=True)
    y = alt.Y("value:Q", title=y_title, scale=scale)
    x_enc = alt.X(f"{x}:N", title=x_title, sort=None)
    offset = alt.XOffset("model:N", sort=_models(records))
    base = _base(records)
    targeted = base.transform_filter("datum.removal === 'targeted'")
    # A bar on a log axis has no baseline (log 0 is -inf), so ratios are drawn as dots.
    marks = targeted.mark_point(filled=True, size=80, opacity=0.9) if log else targeted.mark_bar(opacity=0.85)
    layers = [
        marks.encode(x=x_enc, xOffset=offset, y=y, color=colour, tooltip=TOOLTIP),
        targeted.mark_errorbar(ticks=True, color="#333333").encode(
            x=x_enc, xOffset=offset, y=alt.Y("ci_low:Q", title=y_title, scale=scale), y2="ci_high:Q",
            tooltip=TOOLTIP),
    ]
    # The random-control layer only when there are random rows: an empty layer gives vega an infinite extent.
    if any(r["removal"] == "random" for r in records):
        layers.append(base.transform_filter("datum.removal === 'random'").mark_point(
            shape="diamond", filled=True, color="#333333", size=30).encode(
            x=x_enc, xOffset=offset, y=y, tooltip=TOOLTIP + [alt.Tooltip("trial:N")]))
    return alt.layer(*layers).properties(width=_WIDTH, height=_HEIGHT)


def group_bars(results, palette: Palette | None = None):
    """Study A exp. 1-2: accuracy drop when every component of a kind is off, one panel per benchmark;
    whiskers are the paired-bootstrap CI, diamonds the matched random removals."""
    records = tables.group_records(results)
    if not _drawable(records):
        return None
    colour = _colour(results, records, palette)
    layered = _bars_with_whiskers(records, "kind", "components removed", "accuracy drop", colour)
    return layered.facet(column=alt.Column("benchmark:N", title="benchmark", sort=None))


def ppl_ratio_bars(results, palette: Palette | None = None):
    """Study A exp. 5: ablated / baseline perplexity on a log axis (ratios span 1x to 10^5x)."""
    records = tables.ppl_ratio_records(results)
    if not _drawable(records):
        return None
    layered = _bars_with_whiskers(records, "kind", "components removed", "perplexity ratio (log)",
                                  _colour(results, records, palette), log=True)
    no_effect = alt.Chart().mark_rule(strokeDash=[4, 4], color="#777777").encode(y=alt.datum(1))
    return alt.layer(layered, no_effect, data=alt.Data(values=records)).properties(
        title="ablated / baseline perplexity (dashed: no change)")


def layer_heatmap(results, analysis: str = "component_ablation", palette: Palette | None = None,
                  metric=None, log: bool = False):
    """Study A exp. 3 and 7: one cell per (layer, component kind), one panel per metric and model, for the
    rows whose metric passes `metric` (a predicate). Each panel has its own colour scale because drops and
    diagnostics do not share units; `log` for ratios, which span orders of magnitude. (`palette` is taken
    for a uniform signature and unused: the colour here is the value, not the family.)"""
    records = tables.layer_records(results, analysis, metric)
    if not _drawable(records):
        return None
    scale = alt.Scale(scheme="viridis", type="log") if log else alt.Scale(scheme="viridis")
    cells = _base(records).mark_rect().encode(
        x=alt.X("layer:O", title="layer"), y=alt.Y("kind:N", title=None, sort=None),
        color=alt.Color("value:Q", scale=scale, title=None),
        tooltip=TOOLTIP + [alt.Tooltip("layer:N")],
    ).properties(width=alt.Step(16), height=alt.Step(22))
    return cells.facet(row=alt.Row("metric:N", title=None, sort=None),
                       column=alt.Column("model:N", title=None, sort=_models(records))
                       ).resolve_scale(color="independent")


def is_drop(metric: str) -> bool:
    return metric.startswith("drop:")


def is_ratio(metric: str) -> bool:
    return metric == "ppl_ratio"


def thirds_bars(results, palette: Palette | None = None):
    """Study A exp. 4: early / middle / late third of the depth off, per kind, one panel per metric."""
    records = tables.third_records(results)
    if not _drawable(records):
        return None
    colour = _colour(results, records, palette)
    x = alt.X("position:N", title="third of the depth", sort=list(tables.THIRDS))
    y = alt.Y("value:Q", title="effect", scale=alt.Scale(zero=True))
    base = _base(records)
    bars = base.mark_bar(opacity=0.85).encode(x=x, xOffset=alt.XOffset("model:N", sort=_models(records)), y=y,
                                              color=colour, tooltip=TOOLTIP)
    whiskers = base.mark_errorbar(ticks=True, color="#333333").encode(
        x=x, xOffset=alt.XOffset("model:N", sort=_models(records)), y=alt.Y("ci_low:Q", title="effect"), y2="ci_high:Q",
        tooltip=TOOLTIP)
    layered = alt.layer(bars, whiskers).properties(width=_WIDTH * 0.7, height=_HEIGHT * 0.8)
    return layered.facet(row=alt.Row("kind:N", title=None, sort=None),
                         column=alt.Column("metric:N", title=None, sort=None)).resolve_scale(y="independent")


def resilience_strip(results, palette: Palette | None = None):
    """Study A exp. 6: every random-layer-removal trial as a dot and the median trial as a bar, log axis
    (a Transformer's mean is dominated by outlier trials, so no mean is drawn)."""
    trials = tables.resilience_records(results)
    if not _drawable(trials):
        return None
    records = [dict(r, statistic="trial") for r in trials] + tables.resilience_medians(trials, results)
    x = alt.X("n_removed:O", title="random layers removed")
    y = alt.Y("value:Q", title="value (log)", scale=alt.Scale(type="log"))
    offset = alt.XOffset("model:N", sort=_models(records))
    base = _base(records)
    dots = base.transform_filter("datum.statistic === 'trial'").mark_circle(size=45, opacity=0.75).encode(
        x=x, xOffset=offset, y=y, color=_colour(results, records, palette), tooltip=TOOLTIP + [alt.Tooltip("trial:N")])
    medians = base.transform_filter("datum.statistic === 'median'").mark_tick(
        color="#000000", thickness=2, size=18).encode(
        x=x, xOffset=offset, y=y, tooltip=[alt.Tooltip("statistic:N")] + TOOLTIP + [alt.Tooltip("n_trials:N")])
    layered = alt.layer(dots, medians).properties(width=_WIDTH, height=_HEIGHT)
    return layered.facet(column=alt.Column("panel:N", title=None, sort=None)).resolve_scale(y="independent")


def context_lines(results, palette: Palette | None = None):
    """Study A exp. 5, context stress: the metric against context length, baseline and each kind removed."""
    records = tables.context_records(results)
    # Baselines alone are no stress test (they also ride along with every semantics' rows).
    if not _drawable([r for r in records if r["series"] != "baseline"]):
        return None
    x = alt.X("tokens:Q", title="context (tokens, log2)", scale=alt.Scale(type="log", base=2))
    y = alt.Y("value:Q", title="value (log)", scale=alt.Scale(type="log"))
    dash = alt.StrokeDash("series:N", title="condition", sort=None)
    base = _base(records).encode(x=x, y=y, color=_colour(results, records, palette), strokeDash=dash,
                                 detail="model:N")
    lines = base.mark_line(point=False)
    points = base.mark_point(filled=True, size=40).encode(
        shape=alt.Shape("series:N", sort=None, title="condition"), tooltip=TOOLTIP + [alt.Tooltip("tokens:N")])
    layered = alt.layer(lines, points).properties(width=_WIDTH * 1.4, height=_HEIGHT)
    return layered.facet(row=alt.Row("model:N", title=None, sort=_models(records)),
                         column=alt.Column("metric:N", title=None, sort=None)).resolve_scale(y="independent")


def diagnostic_scatter(representation, ablation, palette: Palette | None = None):
    """Study A exp. 7: each ablated component's representation diagnostic against its accuracy drop, one panel
    per (diagnostic, benchmark), titled with the rank correlation the analysis computed."""
    records = tables.diagnostic_records(representation, ablation)
    if not _drawable(records):
        return None
    points = _base(records).mark_point(filled=True, size=55, opacity=0.8).encode(
        x=alt.X("value:Q", title="diagnostic", scale=alt.Scale(zero=False)),
        y=alt.Y("drop:Q", title="effect of removing it"),
        color=_colour(representation, records, palette), shape=alt.Shape("kind:N", title="component", sort=None),
        tooltip=TOOLTIP + [alt.Tooltip("drop_metric:N", title="effect metric"),
                           alt.Tooltip("drop_exact:N", title="effect"), alt.Tooltip("drop_n:N", title="effect n"),
                           alt.Tooltip("spearman_exact:N", title="Spearman rho"), alt.Tooltip("layer:N")],
    ).properties(width=_WIDTH * 0.8, height=_HEIGHT * 0.8)
    return points.facet(facet=alt.Facet("panel:N", title=None, sort=None), columns=3).resolve_scale(
        x="independent", y="independent")


def cka_models_heatmap(representation, palette: Palette | None = None):
    """CKA between this model's residual stream and each other model's, per layer (1 = the same geometry up
    to rotation and scale), one panel per model. (`palette` unused, as in `layer_heatmap`.)"""
    records = tables.cka_model_records(representation)
    if not _drawable(records):
        return None
    cells = _base(records).mark_rect().encode(
        x=alt.X("layer:O", title="layer"), y=alt.Y("other:N", title="compared with", sort=None),
        color=alt.Color("value:Q", scale=alt.Scale(scheme="viridis", domain=[0, 1]), title="CKA"),
        tooltip=TOOLTIP + [alt.Tooltip("other:N", title="compared with"), alt.Tooltip("layer:N")],
    ).properties(width=alt.Step(16), height=alt.Step(22))
    return cells.facet(column=alt.Column("model:N", title=None, sort=_models(records)))


def correlation_bars(representation, palette: Palette | None = None):
    """Study A exp. 7: the rank correlation of each diagnostic with each benchmark's drop, with its CI."""
    records = tables.correlation_records(representation)
    if not _drawable(records):
        return None
    x = alt.X("value:Q", title="Spearman rank correlation", scale=alt.Scale(domain=[-1, 1]))
    y = alt.Y("diagnostic:N", title=None, sort=None)
    base = alt.Chart()  # data goes on the layer: a facet needs it at the top
    dots = base.mark_point(filled=True, size=60).encode(
        x=x, y=y, yOffset=alt.YOffset("model:N", sort=_models(records)),
        color=_colour(representation, records, palette),
        tooltip=TOOLTIP)
    whiskers = base.mark_errorbar(ticks=True, color="#333333").encode(
        x=alt.X("ci_low:Q", title="Spearman rank correlation"), x2="ci_high:Q", y=y,
        yOffset=alt.YOffset("model:N", sort=_models(records)), tooltip=TOOLTIP)
    zero = alt.Chart().mark_rule(strokeDash=[4, 4], color="#777777").encode(x=alt.datum(0))
    layered = alt.layer(dots, whiskers, zero, data=alt.Data(values=records)).properties(
        width=_WIDTH, height=alt.Step(22))
    return layered.facet(column=alt.Column("benchmark:N", title="drop on", sort=None))


def generic_points(results, palette: Palette | None = None):
    """Any analysis without a dedicated chart: one dot per row with its CI, one panel per metric."""
    records = tables.all_records(results)
    if not _drawable(records):
        return None
    y = alt.Y("condition:N", title=None, sort=None)
    base = _base(records)
    dots = base.mark_point(filled=True, size=50).encode(
        x=alt.X("value:Q", title="value", scale=alt.Scale(zero=False)), y=y,
        yOffset=alt.YOffset("model:N", sort=_models(records)), color=_colour(results, records, palette),
        tooltip=TOOLTIP)
    whiskers = base.mark_errorbar(ticks=True, color="#333333").encode(
        x=alt.X("ci_low:Q", title="value"), x2="ci_high:Q", y=y, yOffset=alt.YOffset("model:N", sort=_models(records)),
        tooltip=TOOLTIP)
    layered = alt.layer(dots, whiskers).properties(width=_WIDTH * 1.3, height=alt.Step(18))
    return layered.facet(column=alt.Column("metric:N", title=None, sort=None)).resolve_scale(x="independent")


_BY_ANALYSIS = {
    "component_ablation": (
        group_bars, ppl_ratio_bars, partial(layer_heatmap, metric=is_drop),
        partial(layer_heatmap, metric=is_ratio, log=True), thirds_bars, resilience_strip, context_lines),
    "representation": (partial(layer_heatmap, analysis="representation"), correlation_bars, cka_models_heatmap),
}


def chart_for_result(result, palette: Palette | None = None):
    """Every chart one Result supports, stacked: what a notebook shows for `Result.chart()`."""
    result = tables.as_results(result)[0]
    makers = _BY_ANALYSIS.get(result.get("analysis"), (generic_points,))
    # One chart set per ablation semantics, as on the report's pages (a zero and a mean bar must not overlap).
    parts = [tables.only_method(result, m)[0] for m in tables.methods_of(result)] or [result]
    charts = [chart for part in parts for make in makers if (chart := make(part, palette=palette)) is not None]
    if not charts:
        raise ValueError(f"the {result.get('analysis')!r} result has no rows to chart")
    if len(charts) == 1:
        return charts[0]
    return alt.vconcat(*charts, title=str(result["model"].get("name"))).resolve_scale(color="independent")
