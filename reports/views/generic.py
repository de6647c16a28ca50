"""The view of an analysis that has none of its own: one chart per metric over the rows' coordinates, with the
largest and smallest value of each model as findings (the page adds the table of every row, one column per
coordinate, and links to the side data files).

A metric whose rows all carry a numeric coordinate with at least two values is drawn as lines against the one
with the most values (`coords` of schema v2: layer, position, context length, ...), one line per combination
of the other coordinates that vary; any other metric as one dot per row with its CI. Records are built here, the charts
only encode them; a record's `where` is its condition with its coordinates, as text.
"""

from __future__ import annotations

import math

import altair as alt

from mechhybrid.results.vocabulary import COORD_ORDER
from reports import findings, tables
from reports.charts import (FAMILY_COLOURS, HEIGHT, TOOLTIP, WIDTH, describe, drawable, family_colour,
                            model_order)
from reports.findings import metric_words
from reports.html import anchor
from reports.palette import Palette, family_palette
from reports.views.base import Section, View, panel_blocks

__all__ = ["GenericView", "coords_of", "coordinate_names", "metric_panels", "generic_points", "generic_lines"]


def coords_of(row: dict) -> dict:
    """A row's coordinates (name -> int, float or str; checked by mechhybrid.results when read), {} for a row
    without them."""
    return row.get("coords", {})


def coordinate_names(rows) -> list[str]:
    """Every coordinate name the rows use, in results.csv's column order (the declared names first, in their
    order, then the others sorted)."""
    found = {str(name) for row in rows for name in coords_of(row)}
    return [n for n in COORD_ORDER if n in found] + sorted(found - set(COORD_ORDER))


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value) -> str:
    """A coordinate value as text: strings as they are, numbers exactly (their repr, as results.csv)."""
    return value if isinstance(value, str) else repr(value)


def _where(row: dict) -> str:
    coords = ", ".join(f"{name}={_text(value)}" for name, value in coords_of(row).items())
    return f"{row['condition']} ({coords})" if coords else str(row["condition"])


def _axis(rows: list[dict]) -> str | None:
    """The coordinate a metric is drawn against: numeric on every row, at least two distinct values, the most
    distinct values (the first in column order on a tie); None when there is none."""
    best, most = None, 1
    for name in coordinate_names(rows):
        values = [coords_of(row).get(name) for row in rows]
        if all(_number(v) for v in values) and len(set(values)) > most:
            best, most = name, len(set(values))
    return best


def _varies(rows: list[dict], name: str) -> bool:
    """Whether coordinate `name` takes more than one value (or is missing somewhere) over `rows`: a constant
    one names no line (it is still in each point's `where`)."""
    return len({_text(coords_of(row)[name]) if name in coords_of(row) else None for row in rows}) > 1


def metric_panels(results: list[dict], palette: Palette) -> list[tuple]:
    """(title, findings, chart, records) per metric, in the order the metrics first appear in the rows."""
    pairs = [(row, dict(record, where=_where(row)))
             for result in results for row, record in zip(result["rows"], tables.all_records(result))]
    analysis = str(results[0]["analysis"]) if results else ""
    panels = []
    for metric in dict.fromkeys(record["metric"] for _, record in pairs):
        rows = [row for row, record in pairs if record["metric"] == metric]
        records = [record for _, record in pairs if record["metric"] == metric]
        axis = _axis(rows)
        title = f"{analysis}: {metric_words(metric)}"
        if axis is None:
            chart = generic_points(records, palette)
        else:
            others = [name for name in coordinate_names(rows) if name != axis and _varies(rows, name)]
            records = [dict(record, x=coords_of(row)[axis], x_exact=_text(coords_of(row)[axis]),
                            series=", ".join(f"{n}={_text(coords_of(row)[n])}" for n in others
                                             if n in coords_of(row)) or "all")
                       for row, record in zip(rows, records)]
            whole = all(isinstance(coords_of(row)[axis], int) for row in rows)
            chart = generic_lines(records, axis, ", ".join(others) or "series", palette, whole)
            title += f" against {axis}"
        panels.append((title, findings.extremes_findings(records), chart, records))
    return panels


def _per_model(layered, records: list[dict]):
    """One row of panels per model, the model named at the left of its row (hybrids first)."""
    return layered.facet(row=alt.Row("model:N", title=None, sort=model_order(records),
                                      header=alt.Header(labelAngle=0, labelAlign="left", labelLimit=240)))


def _has_ci(records: list[dict]) -> bool:
    # An error-bar layer without one interval would give vega an empty extent.
    return any(r["ci_low"] is not None and r["ci_high"] is not None for r in records)


def generic_points(records: list[dict], palette: Palette):
    """One metric: each record as a dot with its CI, labelled by its `where`, one row of panels per model."""
    if not drawable(records):
        return None
    y = alt.Y("where:N", title=None, sort=None, axis=alt.Axis(labelLimit=300))
    x_title = metric_words(records[0]["metric"])
    tooltip = TOOLTIP + [alt.Tooltip("where:N", title="condition and coordinates")]
    layers = [alt.Chart().mark_point(filled=True, size=50).encode(
        x=alt.X("value:Q", title=x_title, scale=alt.Scale(zero=False)), y=y, color=family_colour(records, palette),
        tooltip=tooltip)]
    if _has_ci(records):
        layers.append(alt.Chart().transform_filter("isValid(datum.ci_low) && isValid(datum.ci_high)").mark_errorbar(
            ticks=True, color="#333333").encode(x=alt.X("ci_low:Q", title=x_title), x2="ci_high:Q", y=y,
                                                tooltip=tooltip))
    layered = alt.layer(*layers, data=alt.Data(values=records)).properties(width=WIDTH * 1.6, height=alt.Step(18))
    return _per_model(layered, records).properties(description=describe(
        f"Dot chart: {x_title} of every condition of the analysis (one dot per row of results.csv, labelled by "
        "its condition and coordinates), with its 95% confidence interval where the analysis gave one; one row "
        "of panels per model.", records))


def generic_lines(records: list[dict], x_title: str, series_title: str, palette: Palette, whole: bool = False):
    """One metric over one numeric coordinate: the value against the record's `x` (ticks on whole numbers
    only with `whole`: a layer or a position), one line per `series` (the other coordinates that vary, as
    text; coloured by it when there are several, else by family), whiskers for the CIs the analysis gave, one
    row of panels per model."""
    if not drawable(records):
        return None
    y_title = metric_words(records[0]["metric"])
    several = len(dict.fromkeys(r["series"] for r in records)) > 1
    colour = (alt.Color("series:N", title=series_title, sort=None, scale=alt.Scale(range=list(FAMILY_COLOURS)),
                        legend=alt.Legend(labelLimit=300)) if several else family_colour(records, palette))
    tooltip = TOOLTIP + [alt.Tooltip("x_exact:N", title=x_title), alt.Tooltip("series:N", title=series_title)]
    axis = alt.Axis(format="d", tickMinStep=1) if whole else alt.Axis()
    base = alt.Chart().encode(x=alt.X("x:Q", title=x_title, scale=alt.Scale(zero=False), axis=axis),
                              y=alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=False)),
                              color=colour, detail="series:N")
    layers = [base.mark_line(point=True).encode(tooltip=tooltip)]
    if _has_ci(records):
        layers.append(base.transform_filter("isValid(datum.ci_low) && isValid(datum.ci_high)").mark_errorbar(
            ticks=True).encode(y=alt.Y("ci_low:Q", title=y_title), y2="ci_high:Q", tooltip=tooltip))
    layered = alt.layer(*layers, data=alt.Data(values=records)).properties(width=WIDTH * 1.6, height=HEIGHT)
    lines = f"one line per {series_title}" if several else "one line"
    return _per_model(layered, records).properties(description=describe(
        f"Line chart: {y_title} against {x_title}, {lines}, with 95% confidence intervals as whiskers where the "
        "analysis gave them; one row of panels per model.", records))


class GenericView(View):
    """Any analysis without a view of its own."""

    def _blocks(self, results: list[dict], palette: Palette) -> list:
        return panel_blocks(metric_panels(results, palette), results)

    def model_blocks(self, result, entry, palette):
        return self._blocks([result], palette)

    def compare_sections(self, results, palette):
        blocks = self._blocks(results, palette)
        name = str(results[0]["analysis"])
        return [Section(name, blocks, "g-" + anchor(name))] if blocks else []

    def charts(self, result, palette):
        palette = palette or family_palette([result["model"]])
        return [chart for _, _, chart, _ in metric_panels([result], palette) if chart is not None]
