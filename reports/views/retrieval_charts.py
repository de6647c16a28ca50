"""The retrieval analysis' charts. They only encode the records of `retrieval_records` (never compute a
number), name the models in their titles or on their axes, fit the page (`charts.PAGE_WIDTH`) and say what
they show in their `description`. Each returns an altair chart, or None when its records hold no number.
"""

from __future__ import annotations

import altair as alt

from reports.charts import PAGE_WIDTH, TOOLTIP, describe, drawable, family_colour, model_order
from reports.palette import FAMILY_COLOURS, NEUTRAL, Palette
from reports.views.retrieval_records import PHASE_ORDER

__all__ = ["grid_heatmaps", "k_curves", "phase_table", "head_map", "head_ablation", "RETENTION_LINE"]

RETENTION_LINE = 0.95
"""The retention the k-curve's dashed line marks: Study B's 'k95' is the smallest k whose retained
retrieval's interval reaches it."""
_RULE = {"strokeDash": [4, 4], "color": NEUTRAL, "aria": False}
_CELL = 22
"""px per cell of a grid or head map."""
_BAND_NOTE = "shaded: k heads kept at random, min-max over the trials at each k; dotted: their median"
"""The k-curve panel's subtitle where the random control's band is drawn."""
_UNIT = alt.Scale(domain=[0, 1], scheme="viridis")
"""One colour scale for every accuracy and retrieval score (0..1), on every panel and page."""


def _per_model(records: list[dict], draw) -> alt.VConcatChart | None:
    """One chart per model (titled with its name, hybrids first as the records list them), stacked."""
    parts = [draw([r for r in records if r["model"] == model]).properties(title=model)
             for model in model_order(records)]
    return alt.vconcat(*parts) if parts else None


def grid_heatmaps(records: list[dict]):
    """Needle accuracy per (context length, depth) cell, one panel per condition, one row of panels per
    model, one colour scale 0..1 for all of them."""
    if not drawable(records):
        return None
    scorer = records[0]["scorer"]

    def draw(mine):
        lengths = len(dict.fromkeys(r["context_length"] for r in mine))
        conditions = list(dict.fromkeys(r["condition"] for r in mine))
        width = max(140, _CELL * lengths)
        columns = max(1, min(len(conditions), (PAGE_WIDTH - 200) // (width + 50)))
        cells = alt.Chart(alt.Data(values=mine)).mark_rect(stroke="#ffffff", strokeWidth=0.5).encode(
            x=alt.X("context_length:O", title="context length (tokens)", axis=alt.Axis(labelAngle=-45)),
            y=alt.Y("depth_text:N", title="needle depth", sort=list(dict.fromkeys(r["depth_text"] for r in mine))),
            color=alt.Color("value:Q", scale=_UNIT, title=f"accuracy ({scorer})"),
            tooltip=TOOLTIP + [alt.Tooltip("context_length:N", title="context length"),
                               alt.Tooltip("depth:N", title="depth")],
        ).properties(width=width, height=alt.Step(_CELL))
        return cells.facet(facet=alt.Facet("condition:N", title=None, sort=conditions,
                                           header=alt.Header(labelLimit=width + 40)), columns=columns)

    return _per_model(records, draw).properties(description=describe(
        f"Heatmaps: needle accuracy ({scorer}, 0-1, one colour scale for all) in each cell of context length "
        "(columns, tokens) by needle depth (rows, 0% = start of the context); one panel per condition, one "
        "block of panels per model.", records))


def _panels(lines: list[dict], bands: list[dict]) -> list[tuple[str, list[dict], list[dict]]]:
    """(title, lines, band) per panel: one per (model, selection, phase) of the per-token and static selections,
    each with the random control's band of its model and phase; a (model, phase) with the random control only
    gets a panel of its band alone."""
    out = []
    hosts = set()
    for panel in dict.fromkeys(r["panel"] for r in lines):
        mine = [r for r in lines if r["panel"] == panel]
        host = (mine[0]["model"], mine[0]["phase"])
        hosts.add(host)
        out.append((panel, mine, [b for b in bands if (b["model"], b["phase"]) == host]))
    for panel in dict.fromkeys(b["panel"] for b in bands if (b["model"], b["phase"]) not in hosts):
        out.append((panel, [], [b for b in bands if b["panel"] == panel]))
    return out


def k_curves(curve: list[dict], k95: list[dict], bands: list[dict] = ()):
    """Head sparsification: accuracy and retention against k (query heads kept per attention layer) and, beside
    it, against the fraction of heads kept; one pair per (model, selection, phase), whiskers for the CIs, a
    dashed line at RETENTION_LINE and a solid one at the analysis' k95 where it found one. The random control
    (`bands`) is a shaded band from the minimum to the maximum over its trials at each k, with their median
    dotted, on the panels of its model and phase."""
    lines = [r for r in curve if not r.get("pooled")]
    if not drawable(lines) and not drawable(list(bands)):
        return None
    colour = alt.Color("series:N", title="measure", sort=None, scale=alt.Scale(range=list(FAMILY_COLOURS)),
                       legend=alt.Legend(labelLimit=240))
    tooltip = TOOLTIP + [alt.Tooltip("selection:N"), alt.Tooltip("phase:N"), alt.Tooltip("k:N"),
                         alt.Tooltip("heads_fraction_exact:N", title="fraction of heads kept")]
    marks = [r for r in k95 if r["value"] is not None]
    rows = []
    for panel, mine, band in _panels(lines, list(bands)):
        mark = [r for r in marks if r["panel"] == panel]
        # Every k its own tick: vega's tickMinStep still put half-integer ticks on a 0-2 axis.
        whole = alt.Axis(format="d", values=list(dict.fromkeys(r["k"] for r in mine + band)))
        pair = [_k_panel(mine, band, mark, field, title, axis, colour, tooltip)
                for field, title, axis in (("k", "query heads kept per layer (k)", whole),
                                           ("heads_fraction", "fraction of heads kept", alt.Axis(format=".0%")))]
        title = alt.TitleParams(panel, subtitle=[_BAND_NOTE] if band else [])
        rows.append(alt.hconcat(*pair, title=title))
    return alt.vconcat(*rows).properties(description=describe(
        "Line charts: needle accuracy and retention (accuracy, or multiple-choice and language-modelling "
        "scores, as a share of the unablated model's) against the number of query heads kept per attention "
        f"layer (left) and the fraction of heads kept (right), with 95% confidence intervals as whiskers, a "
        f"dashed line at retention {RETENTION_LINE} and a solid line at k95 (the smallest k whose retention "
        "interval reaches it) where there is one; one pair of panels per model, head selection and phase. "
        "Where the random control ran, a shaded band spans the minimum to the maximum over its trials of random "
        "heads at each k, with their median as a dotted line.", list(curve) + list(bands)))


def _k_panel(curve, band, k95, field, title, axis, colour, tooltip):
    x = alt.X(f"{field}:Q", title=title, axis=axis, scale=alt.Scale(zero=True))
    y = alt.Y("value:Q", title="accuracy or retention", scale=alt.Scale(zero=True))
    rule = alt.Chart().mark_rule(**_RULE).encode(y=alt.datum(RETENTION_LINE))
    layers = []
    if band:
        band_tip = tooltip + [alt.Tooltip("band_low_exact:N", title="min over trials"),
                              alt.Tooltip("band_high_exact:N", title="max over trials")]
        shaded = alt.Chart().encode(x=x, color=colour, detail="series:N")
        drawn = [shaded.mark_area(opacity=0.18).encode(y=alt.Y("band_low:Q", title="accuracy or retention"),
                                                       y2="band_high:Q", tooltip=band_tip),
                 shaded.mark_line(strokeDash=[2, 3], point=alt.OverlayMarkDef(shape="diamond", size=25)).encode(
                     y=y, tooltip=band_tip)]
        layers.append(alt.layer(*drawn, *([] if curve else [rule]), data=alt.Data(values=band)))
    if curve:
        base = alt.Chart().encode(x=x, y=y, color=colour, detail="series:N")
        lines = [base.mark_line(point=True).encode(tooltip=tooltip), rule]
        if any(r["ci_low"] is not None for r in curve):
            lines.append(base.transform_filter("isValid(datum.ci_low) && isValid(datum.ci_high)").mark_errorbar(
                ticks=True).encode(y=alt.Y("ci_low:Q", title="accuracy or retention"), y2="ci_high:Q",
                                   tooltip=tooltip))
        layers.append(alt.layer(*lines, data=alt.Data(values=curve)))
    chart = alt.layer(*layers)
    if k95 and all(r[field] is not None for r in k95):
        k_tip = TOOLTIP + [alt.Tooltip("heads_fraction:N", title="fraction of heads kept")]
        rule = alt.Chart(alt.Data(values=k95)).mark_rule(color="#1a1a1a", strokeWidth=2).encode(
            x=alt.X(f"{field}:Q", title=title, axis=axis), tooltip=k_tip)
        text = alt.Chart(alt.Data(values=k95)).mark_text(align="left", dx=4, dy=-4, color="#1a1a1a").encode(
            x=alt.X(f"{field}:Q", title=title, axis=axis), y=alt.datum(0), text=alt.value("k95"), tooltip=k_tip)
        chart = alt.layer(chart, rule, text)
    return chart.properties(width=260, height=180)


def phase_table(records: list[dict]):
    """The phase x intervention table as a matrix per model: one row per intervention (a kind zeroed, the
    needle hidden or focused), one column per phase; each cell prints its accuracy and its drop from the
    baseline, with their CIs, and is coloured by the drop (diverging at 0, one scale -1..1)."""
    if not drawable(records):
        return None
    columns = [c for c in PHASE_ORDER if any(r["column"] == c for r in records)]
    columns += list(dict.fromkeys(r["column"] for r in records if r["column"] not in columns))
    tooltip = TOOLTIP + [alt.Tooltip("acc_exact:N", title="accuracy"),
                         alt.Tooltip("acc_ci_low_exact:N", title="accuracy 95% CI low"),
                         alt.Tooltip("acc_ci_high_exact:N", title="accuracy 95% CI high"),
                         alt.Tooltip("column:N", title="phase")]
    scale = alt.Scale(scheme=alt.SchemeParams("blueorange", extent=[0.25, 0.75]), domain=[-1, 1], domainMid=0)

    def draw(mine):
        x = alt.X("column:N", title="phase the intervention acts in", sort=columns,
                  axis=alt.Axis(labelAngle=0, orient="top"))
        y = alt.Y("intervention:N", title=None, sort=list(dict.fromkeys(r["intervention"] for r in mine)),
                  axis=alt.Axis(labelLimit=240))
        cells = alt.Chart().mark_rect(stroke=NEUTRAL, strokeWidth=1).encode(
            x=x, y=y, color=alt.Color("value:Q", scale=scale, title="accuracy drop (0-1)",
                                      legend=alt.Legend(format=".2f", orient="bottom")), tooltip=tooltip)
        text = alt.Chart().mark_text(fontSize=10, color="#1a1a1a", lineHeight=13).encode(
            x=x, y=y, text=alt.Text("cell:N"), tooltip=tooltip)
        return alt.layer(cells, text, data=alt.Data(values=mine)).properties(
            width=alt.Step(140), height=alt.Step(38))

    return _per_model(records, draw).properties(description=describe(
        "Table as a matrix of cells: one row per intervention (a kind of component zeroed, the needle hidden "
        "from attention or focused), one column per phase it acts in; each cell prints the needle accuracy "
        f"({records[0]['scorer']}) and its drop from the unablated model, with 95% confidence intervals, and "
        "is coloured by the drop (diverging around 0).", records))


def head_map(records: list[dict]):
    """Retrieval score of every attention head (layer x head, 0..1, one colour scale), one map per model; the
    heads above the Result's threshold are outlined."""
    if not drawable(records):
        return None
    thresholds = " / ".join(repr(t) for t in dict.fromkeys(r["threshold"] for r in records))
    tooltip = TOOLTIP + [alt.Tooltip("layer:N"), alt.Tooltip("head:N"), alt.Tooltip("above:N", title="above threshold")]

    def draw(mine):
        heads = len(dict.fromkeys(r["head"] for r in mine))
        x = alt.X("head:O", title="head", axis=alt.Axis(labelAngle=0))
        y = alt.Y("layer:O", title="layer")
        layers = [alt.Chart().mark_rect().encode(x=x, y=y, color=alt.Color(
            "value:Q", scale=_UNIT, title="retrieval score"), tooltip=tooltip)]
        if any(r["above"] for r in mine):
            layers.append(alt.Chart().transform_filter("datum.above").mark_rect(
                fillOpacity=0, stroke="#D55E00", strokeWidth=2.5).encode(x=x, y=y, tooltip=tooltip))
        return alt.layer(*layers, data=alt.Data(values=mine)).properties(
            width=min(PAGE_WIDTH - 250, max(88, _CELL * heads)), height=alt.Step(_CELL))

    description = describe(
        "Heatmaps: each attention head's retrieval score (how often its strongest attention lands on the needle "
        "token the model is copying, 0-1, one colour scale), one cell per layer (rows) and head (columns), one "
        f"map per model; heads scoring above the threshold ({thresholds}) are outlined.", records)
    return _per_model(records, draw).properties(title=f"outlined: retrieval score above {thresholds}",
                                                description=description)


def head_ablation(records: list[dict], palette: Palette):
    """The accuracy drop with the top-scored retrieval heads ablated (a dot with its CI) and with as many
    random heads (one diamond per draw), one row per model, a dashed line at no change."""
    if not drawable(records):
        return None
    x_title = f"accuracy drop ({records[0]['scorer']}, 0-1)"
    x = alt.X("value:Q", title=x_title)
    y = alt.Y("model:N", title=None, sort=model_order(records), axis=alt.Axis(labelLimit=240))
    tooltip = TOOLTIP + [alt.Tooltip("removal:N", title="heads ablated"), alt.Tooltip("n_heads:N"),
                         alt.Tooltip("trial:N")]
    top = alt.Chart().transform_filter("datum.removal === 'top'")
    layers = [top.mark_point(filled=True, size=80).encode(x=x, y=y, color=family_colour(records, palette),
                                                          tooltip=tooltip),
              alt.Chart().mark_rule(**_RULE).encode(x=alt.datum(0))]
    if any(r["ci_low"] is not None for r in records if r["removal"] == "top"):
        layers.append(top.transform_filter("isValid(datum.ci_low)").mark_errorbar(ticks=True, color="#333333").encode(
            x=alt.X("ci_low:Q", title=x_title), x2="ci_high:Q", y=y, tooltip=tooltip))
    if any(r["removal"] == "random" for r in records):
        layers.append(alt.Chart().transform_filter("datum.removal === 'random'").mark_point(
            shape="diamond", filled=True, color="#333333", size=35).encode(x=x, y=y, tooltip=tooltip))
    return alt.layer(*layers, data=alt.Data(values=records)).properties(
        width=PAGE_WIDTH - 420, height=alt.Step(28), description=describe(
            "Dot chart: needle accuracy drop (0-1) with the top-scored retrieval heads zeroed (dot, with its 95% "
            "confidence interval) and with as many random attention heads zeroed (one diamond per draw); one row "
            "per model, dashed line at no change.", records))
