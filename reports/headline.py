"""The front page's headline: one matrix (model x component kind) of what removing each kind did, and one
sentence per model with its intervals and a link to the evidence.

Records -> chart -> findings, as elsewhere: `headline_records` picks rows (every number is one row of
results.csv, with its exact text), `headline_chart` only encodes them, `headline_findings` quotes them.
Each model is shown under one ablation semantics, the first it was run with in page order (`zero` first),
named in its sentence; the other semantics stay on the model pages.
"""

from __future__ import annotations

import altair as alt

from reports import tables
from reports.findings import clamp_note, effect, label
from reports.html import esc
from reports.numbers import shown
from reports.palette import NEUTRAL

__all__ = ["headline_records", "headline_chart", "headline_findings", "RETRIEVAL_BENCHMARKS", "RATIO_PANEL"]

RETRIEVAL_BENCHMARKS = ("needle", "recall")
"""Benchmarks a headline sentence prefers for its accuracy drop (the zoo's retrieval tasks), in this order."""
RATIO_PANEL = "perplexity ratio"
_CELL = 74  # px per kind: room for "linear attention" at an angle and a printed value


def _targeted(records: list[dict]) -> list[dict]:
    return [r for r in records if r["removal"] == "targeted"]


def headline_records(ablation: list[dict]) -> list[dict]:
    """One record per (model, kind removed, effect metric): the targeted `group:<kind>` rows on the perplexity
    ratio (with the clamp share of the same condition) and on every accuracy drop, under each model's first
    semantics (`tables.methods_of` order). Models keep the order of `ablation` (pages: hybrids first)."""
    out = []
    for result in ablation:
        for method in tables.methods_of(result):
            only = tables.only_method(result, method)
            ratios, drops = _targeted(tables.ppl_ratio_records(only)), _targeted(tables.group_records(only))
            if ratios or drops:
                break
        else:
            continue
        for r in ratios:
            text = [f"{shown(r['value'])}x"] + ([f"{round(100 * r['clamp_frac'])}% clamped"]
                                               if clamp_note(r) else [])
            out.append(dict(r, panel=RATIO_PANEL, cell=text))
        out += [dict(r, panel=f"accuracy drop on {r['benchmark']}", cell=[shown(r["value"])]) for r in drops]
    return out


def _matrix(records: list[dict], scale: alt.Scale, legend: str, number_format: str) -> alt.Chart:
    models = list(dict.fromkeys(r["model"] for r in records))
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    tooltip = [alt.Tooltip("model:N"), alt.Tooltip("role:N"), alt.Tooltip("kind:N", title="removed"),
               alt.Tooltip("condition:N"), alt.Tooltip("method:N"), alt.Tooltip("metric:N"),
               alt.Tooltip("value_exact:N", title="value"), alt.Tooltip("ci_low_exact:N", title="95% CI low"),
               alt.Tooltip("ci_high_exact:N", title="95% CI high"), alt.Tooltip("n:N"), alt.Tooltip("seed:N")]
    if any("clamp_frac_exact" in r for r in records):
        tooltip.append(alt.Tooltip("clamp_frac_exact:N", title="share of tokens at the loss clamp"))
    x = alt.X("kind:N", title="components removed", sort=kinds, axis=alt.Axis(labelAngle=-30, labelLimit=_CELL * 2))
    y = alt.Y("model:N", title=None, sort=models, axis=alt.Axis(labelLimit=240))
    # Cells in light tones with a grey border (4.5:1 on white), so the printed value (dark text) stays legible.
    cells = alt.Chart().mark_rect(stroke=NEUTRAL, strokeWidth=1).encode(
        x=x, y=y, color=alt.Color("value:Q", scale=scale, title=legend, legend=alt.Legend(format=number_format)),
        tooltip=tooltip)
    text = alt.Chart().mark_text(fontSize=12, color="#1a1a1a").encode(
        x=x, y=y, text=alt.Text("cell:N"), tooltip=tooltip)
    return alt.layer(cells, text, data=alt.Data(values=records)).properties(
        width=alt.Step(_CELL), height=alt.Step(40))


def headline_chart(records: list[dict]):
    """The matrix: the perplexity ratio on a log colour scale and the accuracy drops (one panel per benchmark)
    on one diverging scale around 0, each cell printing its value (and its clamp share where the loss hit
    the clamp); None when there is nothing to draw."""
    if not any(r["value"] is not None for r in records):
        return None
    ratio = [r for r in records if r["panel"] == RATIO_PANEL]
    drops = [r for r in records if r["panel"] != RATIO_PANEL]
    parts = []
    if ratio:
        parts.append(_matrix(ratio, alt.Scale(type="log", scheme=alt.SchemeParams("oranges", extent=[0.05, 0.55])),
                             "perplexity ratio (log)", ",.3~r").properties(title=RATIO_PANEL + " (x)"))
    if drops:
        benchmarks = list(dict.fromkeys(r["panel"] for r in drops))
        scale = alt.Scale(scheme=alt.SchemeParams("blueorange", extent=[0.25, 0.75]), domainMid=0, zero=True)
        parts.append(_matrix(drops, scale, "accuracy drop (0-1)", ".2f").facet(
            facet=alt.Facet("panel:N", title=None, sort=benchmarks), columns=2))
    chart = parts[0] if len(parts) == 1 else alt.hconcat(*parts).resolve_scale(color="independent")
    models = ", ".join(dict.fromkeys(r["model"] for r in records))
    return chart.properties(description=(
        "Matrix of coloured cells: one row per model (hybrids first, then the controls), one column per kind of "
        "component removed; the first panel gives the perplexity ratio (removed / intact, log colour scale), "
        "the others the accuracy drop on each benchmark (absolute, 0-1 scale, diverging colours around 0). "
        f"Each cell prints its value. Models: {models}."))


def _drop_for(records: list[dict]) -> dict | None:
    """The drop a sentence quotes: the largest on the first retrieval benchmark the model has, else the
    largest on any benchmark."""
    drops = [r for r in records if r["panel"] != RATIO_PANEL and r["value"] is not None]
    for bench in RETRIEVAL_BENCHMARKS:
        on = [r for r in drops if r["benchmark"] == bench]
        if on:
            return max(on, key=lambda r: r["value"])
    return max(drops, key=lambda r: r["value"]) if drops else None


def headline_findings(records: list[dict], evidence: dict[str, str]) -> list[str]:
    """One sentence per model (in record order): its largest perplexity ratio and its largest (retrieval)
    accuracy drop, each with its CI, the clamp share where it matters, and a link to the evidence
    (`evidence`: model name -> href of its page's ablation section, already a relative URL)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in records):
        mine = [r for r in records if r["model"] == model]
        ratios = [r for r in mine if r["panel"] == RATIO_PANEL and r["value"] is not None]
        ratio, drop = (max(ratios, key=lambda r: r["value"]) if ratios else None), _drop_for(mine)
        parts = []
        if ratio is not None:
            verb = "raises" if ratio["value"] >= 1 else "multiplies"
            parts.append(f"removing {label(ratio['kind'])} {verb} perplexity {effect(ratio, 'x')}{clamp_note(ratio)}")
        if drop is not None:
            who = "" if ratio is not None and ratio["kind"] == drop["kind"] else f"removing {label(drop['kind'])} "
            parts.append(f"{who}drops {label(drop['benchmark'])} accuracy by {effect(drop)}")
        first = mine[0]
        link = f' <a href="{esc(evidence[model])}">evidence</a>' if model in evidence else ""
        out.append(f'<span class="model">{esc(model)}</span> ({esc(first["role"])}, {label(first["method"])} '
                   f"ablation): " + " and ".join(parts) + f".{link}")
    return out
