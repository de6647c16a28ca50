"""The component-ablation analysis (Study A exp. 1-6) on the report's pages.

Model page: one set of charts per ablation semantics (the same condition under `zero` and `mean` is two
different experiments), each with its findings. Comparison page: the same charts with every model side by side.
Front page: one matrix (model x component kind) of what removing each kind did, and one sentence per model
with its intervals and a link to the evidence; each model is shown under one semantics, the first it was run
with in page order (`zero` first), named in its sentence; the other semantics stay on the model pages.
`headline_records` picks rows (every number is one row of results.csv, with its exact text),
`headline_chart` only encodes them, `headline_findings` quotes them.
"""

from __future__ import annotations

import altair as alt

from reports import charts, findings, tables
from reports.findings import clamp_note, effect, label
from reports.html import ChartBlock, anchor, esc, model_href
from reports.load import ModelResults
from reports.numbers import shown
from reports.palette import NEUTRAL, Palette
from reports.views.base import Headline, Section, View, block, spec

__all__ = ["ComponentAblationView", "ablation_sections", "evidence_anchor", "headline_records", "headline_chart",
           "headline_findings", "GROUP_TITLE", "RATIO_TITLE", "RETRIEVAL_BENCHMARKS", "RATIO_PANEL", "NAME"]

NAME = "component_ablation"
GROUP_TITLE = "Group ablation: accuracy drop"
RATIO_TITLE = "Perplexity under group ablation"


def _suffix(method: str) -> str:
    return f" ({method} ablation)"


def evidence_anchor(title: str, method: str) -> str:
    """The fragment id of a model page's ablation block (`GROUP_TITLE` or `RATIO_TITLE`, one semantics)."""
    return anchor(title + _suffix(method))


def _panels(results: list[dict], palette: Palette, suffix: str) -> list[tuple]:
    """(title, findings, chart, records) of every chart of one semantics, in page order."""
    group, ratio = tables.group_records(results), tables.ppl_ratio_records(results)
    drops = tables.layer_records(results, metric=charts.is_drop)
    ratios = tables.layer_records(results, metric=charts.is_ratio)
    thirds, context = tables.third_records(results), tables.context_records(results)
    trials = tables.resilience_records(results)
    medians = tables.resilience_medians(trials, results)
    return [
        (GROUP_TITLE + suffix, findings.group_findings(group), charts.group_bars(results, palette), group),
        (RATIO_TITLE + suffix, findings.ppl_ratio_findings(ratio), charts.ppl_ratio_bars(results, palette), ratio),
        ("One component at a time: accuracy drop" + suffix, findings.layer_findings(drops),
         charts.layer_heatmap(results, metric=charts.is_drop), drops),
        ("One component at a time: perplexity ratio" + suffix, findings.layer_findings(ratios),
         charts.layer_heatmap(results, metric=charts.is_ratio, log=True), ratios),
        ("Thirds of the depth" + suffix, findings.third_findings(thirds), charts.thirds_bars(results, palette), thirds),
        ("Resilience: random layers removed" + suffix, findings.resilience_findings(trials, medians),
         charts.resilience_strip(results, palette), trials),
        ("Context-length stress" + suffix, findings.context_findings(context),
         charts.context_lines(results, palette), context),
    ]


def ablation_sections(results: list[dict], palette: Palette) -> list[tuple[str, list[ChartBlock]]]:
    """Study A experiments 1-6, for one model or (on the comparison page) all of them: (semantics, blocks),
    one set of charts per ablation semantics."""
    sections = []
    for method in tables.methods_of(results):
        only = tables.only_method(results, method)
        blocks = [b for title, sentences, chart, records in _panels(only, palette, _suffix(method))
                  if (b := block(title, sentences, chart, records, only)) is not None]
        if blocks:
            sections.append((method, blocks))
    return sections


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


def _all_findings(ablation: list[dict]) -> str:
    """Every group-ablation finding (Study A exp. 1 and 5), one list per ablation semantics so that none are
    mixed: folded under the headline."""
    parts = []
    for method in tables.methods_of(ablation):
        only = tables.only_method(ablation, method)
        sentences = (findings.ppl_ratio_findings(tables.ppl_ratio_records(only))
                     + findings.group_findings(tables.group_records(only)))
        if sentences:
            items = "".join(f'<li class="finding">{s}</li>' for s in sentences)
            parts.append(f'<h3>{esc(method)} ablation</h3><ul class="findings">{items}</ul>')
    if not parts:
        return ""
    return f"<details><summary>Every group-ablation finding</summary>{''.join(parts)}</details>"


def _evidence(models: list[ModelResults], records: list[dict]) -> dict[str, str]:
    """Model name -> its page's perplexity-ratio block (the accuracy-drop block if it has no ratio)."""
    out = {}
    for entry in models:
        mine = [r for r in records if r["model"] == entry.model.get("name")]
        if mine:
            title = RATIO_TITLE if any(r["metric"] == "ppl_ratio" for r in mine) else GROUP_TITLE
            out[mine[0]["model"]] = f"{model_href(entry.slug)}#{evidence_anchor(title, mine[0]['method'])}"
    return out


class ComponentAblationView(View):
    """Study A exp. 1-6: group, random, layer, thirds, perplexity, context and resilience ablations."""

    summary = ("Components of each model are removed (ablated) one kind at a time; the rise in perplexity and the "
               "drop in accuracy are measured against the same model intact.")

    def model_blocks(self, result, entry, palette):
        return [b for _, section in ablation_sections([result], palette) for b in section]

    def compare_sections(self, results, palette):
        return [Section(f"Component ablation: {method}", blocks, f"a{i}")
                for i, (method, blocks) in enumerate(ablation_sections(results, palette))]

    def headline(self, models, palette):
        ablation = [m.results[NAME] for m in models if NAME in m.results]
        records = headline_records(ablation)
        chart = headline_chart(records)
        if chart is None:
            return None
        chart_block = ChartBlock("What removing each kind of component does", [], spec(chart),
                                 findings.condition_line(records, ablation))
        return Headline(headline_findings(records, _evidence(models, records)), chart_block,
                        _all_findings(ablation), "more models")

    def charts(self, result, palette):
        # One chart set per ablation semantics, as on the pages (a zero and a mean bar must not overlap).
        return [chart for method in tables.methods_of(result)
                for _, _, chart, _ in _panels(tables.only_method(result, method), palette, _suffix(method))
                if chart is not None]
