"""The patching analysis' charts. They only encode the records of `patching_records` (never compute a number),
name the models in their titles, fit the page (`charts.PAGE_WIDTH`) and say what they show in their
`description`. Each returns an altair chart, or None when its records hold no number.
"""

from __future__ import annotations

import altair as alt

from reports.charts import PAGE_WIDTH, TOOLTIP, describe, drawable, model_order
from reports.palette import NEUTRAL

__all__ = ["site_heatmaps", "attribution_scatter"]

_CELL = 14
"""px per heatmap cell (64 positions fit the page)."""
_SCALE = alt.Scale(domain=[0, 1], scheme="viridis", clamp=True)
"""One colour scale for every map: 0 = the corrupted run, 1 = the clean run (beyond them: the ends' colours)."""
_TIP = TOOLTIP + [alt.Tooltip("site:N"), alt.Tooltip("position:N"), alt.Tooltip("token:N"),
                  alt.Tooltip("task:N"), alt.Tooltip("direction:N")]


def _order(records: list[dict], field: str) -> list:
    return list(dict.fromkeys(r[field] for r in records))


def _map(mine: list[dict], title: str):
    axis = [r["axis"] for r in sorted({r["position"]: r for r in mine}.values(), key=lambda r: r["position"])]
    width = min(PAGE_WIDTH - 200, _CELL * len(axis))
    return alt.Chart(alt.Data(values=mine)).mark_rect().encode(
        x=alt.X("axis:N", title="position and token (first pair)", sort=axis,
                axis=alt.Axis(labelAngle=-60, labelLimit=90, labelFontSize=9)),
        y=alt.Y("site:N", title=None, sort=_order(mine, "site"), axis=alt.Axis(labelLimit=200)),
        color=alt.Color("value:Q", scale=_SCALE, title="normalised logit diff"),
        tooltip=_TIP,
    ).properties(width=width, height=alt.Step(_CELL), title=title)


def site_heatmaps(records: list[dict], what: str):
    """Position x site maps of the normalised logit difference: one per model and (task, direction, site set),
    stacked; `what` names the sites in the description (e.g. 'recurrent state of each layer')."""
    if not drawable(records):
        return None
    parts = []
    for model in model_order(records):
        mine = [r for r in records if r["model"] == model]
        parts += [_map([r for r in mine if r["panel"] == panel], f"{model}: {panel}")
                  for panel in _order(mine, "panel")]
    return alt.vconcat(*parts).properties(description=describe(
        f"Heatmaps: the logit difference after patching the {what} at one token (columns: position, with the "
        "first pair's token; rows: site), normalised so that 0 is the corrupted run and 1 the clean run (one "
        "colour scale 0-1 for all); denoise patches clean values into the corrupted run, noise corrupted values "
        "into the clean run; one map per model, task, direction and site set.", records))


def attribution_scatter(records: list[dict]):
    """Every attribution estimate against its exact entry, one panel per model, task, direction, site set and
    estimator (its Spearman rho in the panel title), a dashed diagonal where they agree."""
    if not drawable(records):
        return None
    parts = []
    for model in model_order(records):
        mine = [r for r in records if r["model"] == model]
        for panel in _order(mine, "panel"):
            points = [r for r in mine if r["panel"] == panel]
            tip = _TIP + [alt.Tooltip("estimator:N"), alt.Tooltip("exact_exact:N", title="exact entry"),
                          alt.Tooltip("rho_exact:N", title="Spearman rho")]
            dots = alt.Chart(alt.Data(values=points)).mark_point(filled=True, size=25, opacity=0.6).encode(
                x=alt.X("exact:Q", title="exact patch (normalised)"),
                y=alt.Y("value:Q", title="attribution estimate"), tooltip=tip)
            diagonal = alt.Chart(alt.Data(values=[{"v": 0}, {"v": 1}])).mark_line(
                strokeDash=[4, 4], color=NEUTRAL, aria=False).encode(x="v:Q", y="v:Q")
            parts.append(alt.layer(dots, diagonal).properties(width=220, height=200, title=f"{model}: {panel}"))
    rows = [alt.hconcat(*parts[i: i + 3]) for i in range(0, len(parts), 3)]
    return alt.vconcat(*rows).properties(description=describe(
        "Scatter plots: each attribution estimate (y) against the exact patch of the same site and position (x), "
        "both normalised (0 = corrupted run, 1 = clean run); one panel per model, task, direction, site set and "
        "estimator, its Spearman rank correlation in the title, a dashed diagonal where estimate and patch "
        "agree.", records))
