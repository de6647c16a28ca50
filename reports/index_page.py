"""The report's front page, read in ten seconds: one headline chart (reports.headline), one sentence per model
with its intervals and a link to the evidence, the longer findings folded away; then what was run (models,
semantics, data, seeds, versions) and links to every page and file."""

from __future__ import annotations

from urllib.parse import quote

from reports import findings, tables
from reports.headline import headline_chart, headline_findings, headline_records
from reports.html import RUNTIME_FILE, ChartBlock, chart_html, esc, page
from reports.load import Loaded
from reports.numbers import readable
from reports.pages import GROUP_TITLE, RATIO_TITLE, evidence_anchor, model_href, ordered_models, swatch
from reports.palette import ROLE_LABELS, ROLE_ORDER, Palette
from reports.terms import terms_html

__all__ = ["index_page"]


def _distinct(values) -> str:
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return ", ".join(esc(v) for v in seen) or "n/a"


def _models_table(loaded: Loaded, palette: Palette) -> str:
    head = "".join(f'<th scope="col">{c}</th>' for c in ("model", "family", "role", "topology", "parameters",
                                                           "layers", "analyses", "ablation semantics", "seeds"))
    head = f"<tr>{head}</tr>"
    rows = []
    for entry in ordered_models(loaded):
        model, results = entry.model, list(entry.results.values())
        analyses = ", ".join(f'<a href="{esc(quote(entry.files[a]))}">{esc(a)}</a>' for a in entry.results)
        methods = _distinct(tables.methods_of(results))
        family = str(model.get("family"))
        rows.append(
            f'<tr><td><a href="{esc(model_href(entry.slug))}">{esc(model.get("name"))}</a></td>'
            f"<td>{swatch(palette, family)}{esc(family)}</td><td>{esc(ROLE_LABELS[entry.role])}</td>"
            f"<td>{esc(model.get('topology'))}</td><td>{esc(readable(model.get('n_params')))}</td>"
            f"<td>{esc(readable(model.get('n_layers')))}</td><td>{analyses}</td><td>{methods}</td>"
            f"<td>{_distinct(r.get('seed') for r in results)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _data_and_versions(loaded: Loaded) -> str:
    results = [r for m in ordered_models(loaded) for r in m.results.values()]
    data = _distinct(f"{d.get('name')} ({d.get('version')}, n {d.get('n')})"
                     for r in results for d in (r.get("data") or []) if isinstance(d, dict))
    versions = _distinct(", ".join(f"{k} {v}" for k, v in sorted((r.get("versions") or {}).items()))
                         for r in results)
    return f"<p>Data: {data}.</p><p>Library versions: {versions}.</p>"


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


_SHOWN = 5
"""Headline sentences shown before the fold (one per model)."""


def _evidence(models, records: list[dict]) -> dict[str, str]:
    """Model name -> its page's perplexity-ratio block (the accuracy-drop block if it has no ratio)."""
    out = {}
    for entry in models:
        mine = [r for r in records if r["model"] == entry.model.get("name")]
        if mine:
            title = RATIO_TITLE if any(r["metric"] == "ppl_ratio" for r in mine) else GROUP_TITLE
            out[mine[0]["model"]] = f"{model_href(entry.slug)}#{evidence_anchor(title, mine[0]['method'])}"
    return out


def _headline(loaded: Loaded) -> tuple[str, bool]:
    """The headline's HTML, and whether it holds a chart."""
    models = ordered_models(loaded)
    ablation = [m.results["component_ablation"] for m in models if "component_ablation" in m.results]
    records = headline_records(ablation)
    chart = headline_chart(records)
    if chart is None:
        return "<p>No group-ablation results yet.</p>", False
    evidence = _evidence(models, records)
    sentences = headline_findings(records, evidence)
    shown = "".join(f'<li class="finding">{s}</li>' for s in sentences[:_SHOWN])
    more = "".join(f'<li class="finding">{s}</li>' for s in sentences[_SHOWN:])
    block = ChartBlock("What removing each kind of component does", [], chart.to_dict(validate=False),
                       findings.condition_line(records, ablation))
    return (f'<ul class="findings headline">{shown}</ul>'
            + (f'<details><summary>{len(sentences) - _SHOWN} more models</summary><ul class="findings">{more}</ul>'
               "</details>" if more else "")
            + chart_html(block, "chart-headline", "headline-chart") + _all_findings(ablation)), True


def _summary(loaded: Loaded) -> str:
    counts = {role: sum(m.role == role for m in loaded.models) for role in ROLE_ORDER}
    roles = ", ".join(f"{n} {ROLE_LABELS[role]}{'s' if n != 1 else ''}" for role, n in counts.items() if n)
    return f"{len(loaded.models)} model{'s' if len(loaded.models) != 1 else ''}: {roles}"


def _problems(loaded: Loaded) -> str:
    if not loaded.problems:
        return ""
    items = "".join(f'<li class="problem">{esc(p)}</li>' for p in loaded.problems)
    return f"<h2>Results that could not be read</h2><ul>{items}</ul>"


def index_page(loaded: Loaded, palette: Palette, shared_runtime: bool = False) -> str:
    """The front page. `shared_runtime`: load vega.js beside it rather than inlining the runtime."""
    models = ordered_models(loaded)
    links = ['<li><a href="compare.html">All models side by side</a></li>']
    links += [f'<li><a href="{esc(model_href(m.slug))}">{esc(m.model.get("name"))}</a></li>' for m in models]
    if loaded.has_csv:
        links.append('<li><a href="results.csv">results.csv</a> (every number in this report)</li>')
    results = [r for m in models for r in m.results.values()]
    headline, has_chart = _headline(loaded)
    body = (
        f"<h1>mechhybrid report: {esc(_summary(loaded))}</h1>"
        "<p>Components of each model are removed (ablated) one kind at a time; the rise in perplexity and the "
        "drop in accuracy are measured against the same model intact. Intervals are 95% bootstrap confidence "
        "intervals.</p>"
        f"{_problems(loaded)}<h2>Headline</h2>{headline}"
        + terms_html(results, [m.model for m in models])
        + f"<h2>What was run</h2>{_models_table(loaded, palette)}{_data_and_versions(loaded)}"
        f"<h2>Pages</h2><ul>{''.join(links)}</ul>"
    )
    nav = [("index.html", "Index"), ("compare.html", "Compare models")]
    return page("mechhybrid report", nav, body, has_charts=has_chart,
                runtime_src=RUNTIME_FILE if shared_runtime else None)
