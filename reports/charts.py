"""One altair chart per kind of finding. Charts only encode: records come from `reports.tables`, numbers
are never derived here (Study A's figures, see /work/shared/REFERENCE.md, experiments 1-7).

Each Study A function takes one Result dict or a sequence of them (a model page passes one, the comparison
page passes all models), an optional `palette` (family -> colour, `palette.family_palette`) so that a family
has one colour on every page, and returns an altair chart, or None when the Results hold no rows for it. The
shared pieces (`family_colour`, `describe`, `drawable`, `model_order`, sizes) are public for the views of
other analyses (`reports.views`).
No selections or params are used: altair numbers those from a global counter, which would make two
renders of the same results differ in bytes.
"""

from __future__ import annotations

import altair as alt

from reports import tables
from reports.findings import metric_words
from reports.palette import FAMILY_COLOURS, NEUTRAL, Palette, family_palette

__all__ = [
    "group_bars", "ppl_ratio_bars", "layer_heatmap", "thirds_bars", "resilience_strip",
    "context_lines", "diagnostic_scatter", "correlation_bars", "TOOLTIP", "is_drop", "is_ratio",
    "cka_models_heatmap", "probe_curves", "family_colour", "describe", "drawable", "model_order", "WIDTH", "HEIGHT",
    "PAGE_WIDTH",
]

# Exact text of every number (the repr that results.csv holds), plus where it came from. Integers (n, seed,
# layer) are nominal too, so that no number format (a theme's, a config's) can ever reach them.
TOOLTIP = [
    alt.Tooltip("model:N"), alt.Tooltip("family:N"), alt.Tooltip("condition:N"), alt.Tooltip("metric:N"),
    alt.Tooltip("value_exact:N", title="value"), alt.Tooltip("ci_low_exact:N", title="95% CI low"),
    alt.Tooltip("ci_high_exact:N", title="95% CI high"), alt.Tooltip("method:N"), alt.Tooltip("n:N"),
    alt.Tooltip("seed:N"),
]
WIDTH, HEIGHT = 220, 200
PAGE_WIDTH = 1000
"""The widest a chart should draw, legends included: the page's text column is 1,200 px at most."""
_LOG_FORMAT = ",.3~r"
"""Log colour legends: '1,350', never '1,353.35974996' (log axes keep vega's own labels, powers of ten)."""
_RULE = {"strokeDash": [4, 4], "color": NEUTRAL, "aria": False}
"""A reference line (no change, a threshold): said in the chart's description, so hidden from screen readers."""
_OWN_X = alt.Resolve(scale=alt.ScaleResolveMap(x="independent"))
"""Stacked blocks whose values share no unit (a drop and a ratio): each its own x axis. Passed to the
constructor: altair copies the whole chart, data included, on every chained call (half the render time)."""


def _colour(results, records: list[dict], palette: Palette | None) -> alt.Color:
    """`family_colour`, with the palette of `results`' own models when no report-wide one is given."""
    return family_colour(records, palette or family_palette(r["model"] for r in tables.as_results(results)))


def family_colour(records: list[dict], palette: Palette) -> alt.Color:
    """Family colour from the report-wide palette, with the legend listing only the families drawn here."""
    present = {r["family"] for r in records}
    shown = {family: colour for family, colour in palette.items() if family in present}
    return alt.Color("family:N", scale=alt.Scale(domain=list(shown), range=list(shown.values())),
                     legend=alt.Legend(title="family"))


def describe(text: str, records: list[dict]) -> str:
    """A chart's `description` (what screen readers announce): what it shows, and which models."""
    return f"{text} Models: {', '.join(model_order(records))}."


def drawable(records: list[dict]) -> bool:
    """Anything to draw: a chart of only missing values would be an empty frame (and vega warns)."""
    return any(r["value"] is not None for r in records)


def model_order(records: list[dict]) -> list[str]:
    """Models in the order the records list them (pages order hybrids first, then the controls); a vega
    facet or offset left unsorted would order them alphabetically."""
    return list(dict.fromkeys(r["model"] for r in records))


def _base(records: list[dict]) -> alt.Chart:
    return alt.Chart(alt.Data(values=records))


def _bars_with_whiskers(records, value_title: str, colour, log: bool = False, null: float | None = None,
                        width: float = WIDTH):
    """Per model (named on the y axis): the targeted removal as a bar (a dot on a log axis, where a bar has
    no baseline), its CI whisker, one diamond per random-control trial, and a dashed rule at `null` (the
    no-effect value). Records without a `removal` field count as targeted. Data sits on the layer, so the
    result can be faceted."""
    scale = alt.Scale(type="log") if log else alt.Scale(zero=True)
    x = alt.X("value:Q", title=value_title, scale=scale)
    y = alt.Y("model:N", title=None, sort=model_order(records))
    targeted = alt.Chart().transform_filter("datum.removal !== 'random'")
    marks = targeted.mark_point(filled=True, size=80, opacity=0.9) if log else targeted.mark_bar(opacity=0.85)
    layers = [
        marks.encode(x=x, y=y, color=colour, tooltip=TOOLTIP),
        targeted.mark_errorbar(ticks=True, color="#333333").encode(
            x=alt.X("ci_low:Q", title=value_title, scale=scale), x2="ci_high:Q", y=y, tooltip=TOOLTIP),
    ]
    # The random-control layer only when there are random rows: an empty layer gives vega an infinite extent.
    if any(r.get("removal") == "random" for r in records):
        layers.append(alt.Chart().transform_filter("datum.removal === 'random'").mark_point(
            shape="diamond", filled=True, color="#333333", size=30).encode(
            x=x, y=y, tooltip=TOOLTIP + [alt.Tooltip("trial:N")]))
    if null is not None:
        layers.append(alt.Chart().mark_rule(**_RULE).encode(x=alt.datum(null)))
    return alt.layer(*layers, data=alt.Data(values=records)).properties(width=width, height=alt.Step(20))


def _panel_width(n_panels: int) -> float:
    """Each of `n_panels` side-by-side panels as wide as fits the page (less the model names' axis)."""
    return max(120, min(WIDTH, (PAGE_WIDTH - 160) // max(1, n_panels) - 20))


def group_bars(results, palette: Palette | None = None):
    """Study A exp. 1-2: accuracy drop when every component of a kind is off, one row of panels per benchmark
    and one column per kind; whiskers are the paired-bootstrap CI, diamonds the matched random removals."""
    records = tables.group_records(results)
    if not drawable(records):
        return None
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    layered = _bars_with_whiskers(records, "accuracy drop (0-1)", _colour(results, records, palette),
                                  width=_panel_width(len(kinds)))
    return layered.facet(row=alt.Row("benchmark:N", title="benchmark", sort=None),
                         column=alt.Column("kind:N", title="components removed", sort=kinds)).properties(
        description=describe(
            "Bar chart: accuracy drop, in absolute accuracy on a 0-1 scale, when every component of one kind is "
            "removed; one bar per model, one column of panels per kind removed, one row per benchmark. Whiskers "
            "are 95% confidence intervals; diamonds are random removals of as many other components.", records))


def ppl_ratio_bars(results, palette: Palette | None = None):
    """Study A exp. 5: ablated / baseline perplexity on a log axis (ratios span 1x to 10^5x), one panel per kind."""
    records = tables.ppl_ratio_records(results)
    if not drawable(records):
        return None
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    layered = _bars_with_whiskers(records, "perplexity ratio (log)", _colour(results, records, palette), log=True,
                                  null=1, width=_panel_width(len(kinds)))
    return layered.facet(column=alt.Column("kind:N", title="components removed", sort=kinds)).properties(
        title="ablated / intact perplexity (dashed: no change)", description=describe(
            "Dot chart on a log axis: perplexity with every component of one kind removed divided by the intact "
            "model's perplexity; one dot per model, one panel per kind removed. Whiskers are 95% confidence "
            "intervals, diamonds random removals of as many other components, the dashed line 1x (no change).",
            records))


def layer_heatmap(results, analysis: str = "component_ablation", palette: Palette | None = None,
                  metric=None, log: bool = False):
    """Study A exp. 3 and 7: one cell per (layer, component kind), one panel per model, one block of panels
    per metric, for the rows whose metric passes `metric` (a predicate). Metrics of one family (every
    accuracy drop; the perplexity ratio) share one colour scale, so a colour means the same number in every
    panel; each representation diagnostic has its own (their units differ). `log` for ratios. (`palette` is
    taken for a uniform signature and unused: the colour here is the value, not the family.)"""
    records = tables.layer_records(results, analysis, metric)
    if not drawable(records):
        return None
    metrics = list(dict.fromkeys(r["metric"] for r in records))
    families = {"drop" if is_drop(m) else m for m in metrics}
    blocks = [_heat_block([r for r in records if r["metric"] == m], m, log) for m in metrics]
    description = describe(
        "Heatmaps: the effect of removing one component at a time, one cell per layer (columns) and component "
        "kind (rows), one panel per model and one block per metric (" + ", ".join(metrics) + "); the colour "
        "legend gives the scale and the table under the chart every value.", records)
    if len(blocks) == 1:
        return blocks[0].properties(description=description)
    shared = "shared" if len(families) == 1 else "independent"
    return alt.vconcat(*blocks, description=description, resolve=alt.Resolve(scale=alt.ScaleResolveMap(color=shared)))


def _heat_scale(metric: str, log: bool) -> tuple[alt.Scale, str, str]:
    """Colour scale, legend title and number format of a heatmap of `metric` (one per metric family)."""
    if is_drop(metric):  # diverging at 0: a removal that helps reads as the opposite of one that hurts
        return alt.Scale(scheme="blueorange", domainMid=0, zero=True), "accuracy drop (0-1)", ".2f"
    if log:
        return alt.Scale(scheme="viridis", type="log"), "ratio (log)", _LOG_FORMAT
    return alt.Scale(scheme="viridis"), metric_words(metric), alt.Undefined


def _wrap(n_items: int, panel: float) -> int:
    """How many panels of width `panel` fit side by side on the page."""
    return max(1, min(n_items, int((PAGE_WIDTH - 200) // (panel + 30))))


def _heat_block(records: list[dict], metric: str, log: bool):
    """One metric's heatmaps, one panel per model, wrapped to the page width."""
    scale, title, number_format = _heat_scale(metric, log)
    n_layers = len(dict.fromkeys(r["layer"] for r in records))
    width = max(60, min(16 * n_layers, PAGE_WIDTH - 200))
    models = model_order(records)
    cells = _base(records).mark_rect().encode(
        x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)), y=alt.Y("kind:N", title=None, sort=None),
        color=alt.Color("value:Q", scale=scale, title=title, legend=alt.Legend(format=number_format)),
        tooltip=TOOLTIP + [alt.Tooltip("layer:N")],
    ).properties(width=width, height=alt.Step(22))
    return cells.facet(facet=alt.Facet("model:N", title=None, sort=models), columns=_wrap(len(models), width),
                       title=metric_words(metric))


def is_drop(metric: str) -> bool:
    return metric.startswith("drop:")


def is_ratio(metric: str) -> bool:
    return metric == "ppl_ratio"


def thirds_bars(results, palette: Palette | None = None):
    """Study A exp. 4: early / middle / late third of the depth off, one row of panels per (kind, metric)
    with its own axis (a ratio and a drop share no unit), the three thirds side by side on one axis."""
    records = tables.third_records(results)
    if not drawable(records):
        return None
    colour = _colour(results, records, palette)
    rows = []
    for kind, metric in dict.fromkeys((r["kind"], r["metric"]) for r in records):
        part = [r for r in records if (r["kind"], r["metric"]) == (kind, metric)]
        layered = _bars_with_whiskers(part, metric_words(metric) + (" (log)" if is_ratio(metric) else ""), colour,
                                      log=is_ratio(metric), null=1 if is_ratio(metric) else None,
                                      width=_panel_width(3))
        rows.append(layered.facet(column=alt.Column(
            "position:N", sort=list(tables.THIRDS), title=f"{kind} removed in one third of the depth")))
    return alt.vconcat(*rows, resolve=_OWN_X, description=describe(
        "Bar charts: the effect of removing one kind of component in the early, middle or late third of the "
        "depth; one bar per model, the three thirds side by side, one row per kind and metric (accuracy drops "
        "on a 0-1 scale, perplexity ratios as dots on a log axis with a dashed line at 1x). Whiskers are 95% "
        "confidence intervals.", records))


def resilience_strip(results, palette: Palette | None = None):
    """Study A exp. 6: every random-layer-removal trial as a dot and the median trial as a tick, log axis
    (a Transformer's mean is dominated by outlier trials, so no mean is drawn); one block per metric."""
    trials = tables.resilience_records(results)
    if not drawable(trials):
        return None
    records = [dict(r, statistic="trial") for r in trials] + tables.resilience_medians(trials, results)
    colour = _colour(results, records, palette)
    blocks = []
    for panel in dict.fromkeys(r["panel"] for r in records):
        part = [r for r in records if r["panel"] == panel]
        x = alt.X("value:Q", title=f"{metric_words(panel)} (log)", scale=alt.Scale(type="log"))
        y = alt.Y("model:N", title=None, sort=model_order(part))
        dots = alt.Chart().transform_filter("datum.statistic === 'trial'").mark_circle(size=45, opacity=0.75).encode(
            x=x, y=y, color=colour, tooltip=TOOLTIP + [alt.Tooltip("trial:N")])
        medians = alt.Chart().transform_filter("datum.statistic === 'median'").mark_tick(
            color="#000000", thickness=2).encode(
            x=x, y=y, tooltip=[alt.Tooltip("statistic:N")] + TOOLTIP + [alt.Tooltip("n_trials:N")])
        layered = alt.layer(dots, medians, data=alt.Data(values=part)).properties(width=WIDTH * 1.6,
                                                                                  height=alt.Step(20))
        blocks.append(layered.facet(row=alt.Row("n_removed:O", title="random layers skipped")))
    return alt.vconcat(*blocks, resolve=_OWN_X, description=describe(
        "Strip charts on a log axis: perplexity and perplexity ratio with random whole layers skipped; one dot per "
        "trial, a black tick at the median trial, one row per model and per number of layers skipped.", records))


def context_lines(results, palette: Palette | None = None):
    """Study A exp. 5, context stress: the metric against context length, baseline and each kind removed."""
    records = tables.context_records(results)
    # Baselines alone are no stress test (they also ride along with every semantics' rows).
    if not drawable([r for r in records if r["series"] != "baseline"]):
        return None
    x = alt.X("tokens:Q", title="context (tokens, log2)", scale=alt.Scale(type="log", base=2))
    y = alt.Y("value:Q", title="value (log)", scale=alt.Scale(type="log"))
    dash = alt.StrokeDash("series:N", title="condition", sort=None)
    base = _base(records).encode(x=x, y=y, color=_colour(results, records, palette), strokeDash=dash,
                                 detail="model:N")
    lines = base.mark_line(point=False)
    points = base.mark_point(filled=True, size=40).encode(
        shape=alt.Shape("series:N", sort=None, title="condition"), tooltip=TOOLTIP + [alt.Tooltip("tokens:N")])
    layered = alt.layer(lines, points).properties(width=WIDTH * 1.4, height=HEIGHT)
    faceted = layered.facet(row=alt.Row("model:N", title=None, sort=model_order(records)),
                            column=alt.Column("metric:N", title=None, sort=None)).resolve_scale(y="independent")
    return faceted.properties(description=describe(
        "Line charts on log axes: perplexity and perplexity ratio against context length (tokens), for the intact "
        "model (baseline) and with each kind of component removed (one line style per condition); one row of "
        "panels per model.", records))


def diagnostic_scatter(representation, ablation, palette: Palette | None = None):
    """Study A exp. 7: each ablated component's representation diagnostic against its accuracy drop, one panel
    per (diagnostic, benchmark), titled with the rank correlation of the dots it draws (reports.tables)."""
    records = tables.diagnostic_records(representation, ablation)
    if not drawable(records):
        return None
    points = _base(records).mark_point(filled=True, size=55, opacity=0.8).encode(
        x=alt.X("value:Q", title="diagnostic", scale=alt.Scale(zero=False)),
        y=alt.Y("drop:Q", title="effect of removing it"),
        color=_colour(representation, records, palette), shape=alt.Shape("kind:N", title="component", sort=None),
        tooltip=TOOLTIP + [alt.Tooltip("drop_metric:N", title="effect metric"),
                           alt.Tooltip("drop_exact:N", title="effect"), alt.Tooltip("drop_n:N", title="effect n"),
                           alt.Tooltip("rho_drawn_exact:N", title="Spearman rho of this panel's dots"),
                           alt.Tooltip("layer:N")],
    ).properties(width=WIDTH * 0.8, height=HEIGHT * 0.8)
    return points.facet(facet=alt.Facet("panel:N", title=None, sort=None, header=alt.Header(labelLimit=300)),
                        columns=3).resolve_scale(
        x="independent", y="independent").properties(description=describe(
            "Scatter plots: each dot is one ablated component, its representation diagnostic (horizontal) against "
            "the effect of removing it (vertical: accuracy drop, or perplexity ratio for language modelling); one "
            "panel per diagnostic and benchmark, titled with the Spearman rank correlation of the dots drawn in "
            "it.", records))


def cka_models_heatmap(representation, palette: Palette | None = None):
    """CKA between this model's residual stream and each other model's, per layer (1 = the same geometry up
    to rotation and scale), one panel per model, one colour scale (0-1) for all. (`palette` unused, as in
    `layer_heatmap`.)"""
    records = tables.cka_model_records(representation)
    if not drawable(records):
        return None
    models = model_order(records)
    width = max(60, min(16 * len(dict.fromkeys(r["layer"] for r in records)), PAGE_WIDTH - 200))
    cells = _base(records).mark_rect().encode(
        x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("other:N", title="compared with", sort=None),
        color=alt.Color("value:Q", scale=alt.Scale(scheme="viridis", domain=[0, 1]), title="CKA"),
        tooltip=TOOLTIP + [alt.Tooltip("other:N", title="compared with"), alt.Tooltip("layer:N")],
    ).properties(width=width, height=alt.Step(22))
    return cells.facet(facet=alt.Facet("model:N", title=None, sort=models), columns=_wrap(len(models), width)
                       ).properties(description=describe(
                           "Heatmaps: linear CKA between one model's residual stream and each other model's, layer "
                           "by layer at the same relative depth, on a 0-1 colour scale (1: the same geometry up to "
                           "rotation and scale); one panel per model.", records))


def correlation_bars(representation, palette: Palette | None = None):
    """Study A exp. 7: the rank correlation of each diagnostic with each benchmark's drop, with its CI: one
    row per model (named on the axis), one row of panels per diagnostic, one column per benchmark."""
    records = tables.correlation_records(representation)
    if not drawable(records):
        return None
    x = alt.X("value:Q", title="Spearman rank correlation", scale=alt.Scale(domain=[-1, 1]))
    y = alt.Y("model:N", title=None, sort=model_order(records))
    dots = alt.Chart().mark_point(filled=True, size=60).encode(
        x=x, y=y, color=_colour(representation, records, palette), tooltip=TOOLTIP)
    whiskers = alt.Chart().mark_errorbar(ticks=True, color="#333333").encode(
        x=alt.X("ci_low:Q", title="Spearman rank correlation"), x2="ci_high:Q", y=y, tooltip=TOOLTIP)
    zero = alt.Chart().mark_rule(**_RULE).encode(x=alt.datum(0))
    benchmarks = len(dict.fromkeys(r["benchmark"] for r in records))
    layered = alt.layer(dots, whiskers, zero, data=alt.Data(values=records)).properties(
        width=_panel_width(benchmarks), height=alt.Step(18))
    return layered.facet(row=alt.Row("diagnostic:N", title=None, sort=None),
                         column=alt.Column("benchmark:N", title="drop on", sort=None)).properties(
        description=describe(
            "Dot charts: how well each representation diagnostic ranks the components by the effect of removing "
            "them (Spearman rank correlation, -1 to 1, dashed line at 0), with 95% confidence intervals; one dot "
            "per model, one row of panels per diagnostic, one column per benchmark.", records))


def probe_curves(records: list[dict], thresholds=(), palette: Palette | None = None):
    """Steps to retrieval: a zoo model's training-probe needle accuracy against its optimiser step, one line
    per record `series` (a model on the comparison page, a context length on a model page), labelled at its
    last point, with +-1 standard error whiskers where the card records them and a dashed rule at each of
    `thresholds`. Colour is the family from `palette` when one is given, else the series. Records come from
    `reports.cards` and hold the card's numbers as they are."""
    if not any(r["accuracy"] is not None for r in records):
        return None
    if palette is not None:
        present = list(dict.fromkeys(r["family"] for r in records))
        colour = alt.Color("family:N", title="family", legend=alt.Legend(orient="bottom"), scale=alt.Scale(
            domain=present, range=[palette.get(f, "#999999") for f in present]))
    else:
        colour = alt.Color("series:N", title="context length", sort=None, legend=alt.Legend(orient="bottom"),
                           scale=alt.Scale(range=list(FAMILY_COLOURS)))  # 3:1 on white, as the families
    # The legend sits below: on the right it would cover the line labels.
    x = alt.X("step:Q", title="optimiser step", scale=alt.Scale(zero=True))
    y = alt.Y("accuracy:Q", title="needle accuracy (training probe)", scale=alt.Scale(domain=[0, 1]))
    tooltip = [alt.Tooltip("series:N", title="model" if palette is not None else "context length"),
               alt.Tooltip("step:N"), alt.Tooltip("accuracy_exact:N", title="accuracy"),
               alt.Tooltip("se_exact:N", title="standard error"), alt.Tooltip("n:N")]
    base = alt.Chart().encode(x=x, y=y, color=colour, detail="series:N")
    layers = [base.mark_line(point=True).encode(tooltip=tooltip),
              base.transform_filter("datum.last").mark_text(align="left", dx=6, fontSize=11).encode(
                  text="series:N", tooltip=tooltip)]
    if any(r["se"] is not None for r in records):  # an empty layer would give vega an infinite extent
        layers.append(base.transform_filter("isValid(datum.se)").mark_errorbar(ticks=True).encode(
            yError="se:Q", tooltip=tooltip))
    layers += [alt.Chart().mark_rule(**_RULE).encode(y=alt.datum(t)) for t in thresholds]
    what = "each model's" if palette is not None else "this model's"
    lines = "one line per model" if palette is not None else "one line per context length"
    return alt.layer(*layers, data=alt.Data(values=records)).properties(
        width=WIDTH * 2, height=HEIGHT, description=(
            f"Line chart: {what} training-probe needle accuracy (0-1) against optimiser step, {lines}, labelled "
            "at its last point; whiskers are +-1 standard error, dashed lines the retrieval thresholds"
            + (f" ({', '.join(str(t) for t in thresholds)})." if thresholds else ".")))
