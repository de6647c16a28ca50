"""The report's front page: what was run (models, semantics, data, seeds, versions), the headline findings, and
links to every page and file. It has no charts, so it carries no vega runtime and opens instantly."""

from __future__ import annotations

from urllib.parse import quote

from reports import findings, tables
from reports.html import esc, page
from reports.load import Loaded
from reports.pages import model_href, ordered_models, swatch
from reports.palette import ROLE_LABELS, Palette

__all__ = ["index_page"]


def _distinct(values) -> str:
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return ", ".join(esc(v) for v in seen) or "n/a"


def _models_table(loaded: Loaded, palette: Palette) -> str:
    head = ("<tr><th>model</th><th>family</th><th>role</th><th>topology</th><th>parameters</th><th>layers</th>"
            "<th>analyses</th><th>ablation semantics</th><th>seeds</th></tr>")
    rows = []
    for entry in ordered_models(loaded):
        model, results = entry.model, list(entry.results.values())
        analyses = ", ".join(f'<a href="{esc(quote(entry.files[a]))}">{esc(a)}</a>' for a in entry.results)
        methods = _distinct(tables.methods_of(results))
        family = str(model.get("family"))
        rows.append(
            f'<tr><td><a href="{esc(model_href(entry.slug))}">{esc(model.get("name"))}</a></td>'
            f"<td>{swatch(palette, family)}{esc(family)}</td><td>{esc(ROLE_LABELS[entry.role])}</td>"
            f"<td>{esc(model.get('topology'))}</td><td>{esc(model.get('n_params'))}</td>"
            f"<td>{esc(model.get('n_layers'))}</td><td>{analyses}</td><td>{methods}</td>"
            f"<td>{_distinct(r.get('seed') for r in results)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _data_and_versions(loaded: Loaded) -> str:
    results = [r for m in ordered_models(loaded) for r in m.results.values()]
    data = _distinct(f"{d.get('name')} ({d.get('version')}, n {d.get('n')})"
                     for r in results for d in (r.get("data") or []) if isinstance(d, dict))
    versions = _distinct(", ".join(f"{k} {v}" for k, v in sorted((r.get("versions") or {}).items()))
                         for r in results)
    return f"<p>Data: {data}.</p><p>Library versions: {versions}.</p>"


def _headlines(loaded: Loaded) -> str:
    """Group ablation (Study A exp. 1 and 5), one list per ablation semantics so that none are mixed."""
    ablation = [m.results["component_ablation"] for m in ordered_models(loaded) if "component_ablation" in m.results]
    parts = []
    for method in tables.methods_of(ablation):
        only = tables.only_method(ablation, method)
        sentences = (findings.ppl_ratio_findings(tables.ppl_ratio_records(only))
                     + findings.group_findings(tables.group_records(only)))
        if sentences:
            items = "".join(f'<li class="finding">{s}</li>' for s in sentences)
            parts.append(f'<h3>{esc(method)} ablation</h3><ul class="findings">{items}</ul>')
    return "".join(parts) or "<p>No group-ablation results yet.</p>"


def _problems(loaded: Loaded) -> str:
    if not loaded.problems:
        return ""
    items = "".join(f'<li class="problem">{esc(p)}</li>' for p in loaded.problems)
    return f"<h2>Results that could not be read</h2><ul>{items}</ul>"


def index_page(loaded: Loaded, palette: Palette) -> str:
    models = ordered_models(loaded)
    links = ['<li><a href="compare.html">All models side by side</a></li>']
    links += [f'<li><a href="{esc(model_href(m.slug))}">{esc(m.model.get("name"))}</a></li>' for m in models]
    if loaded.has_csv:
        links.append('<li><a href="results.csv">results.csv</a> (every number in this report)</li>')
    body = (
        "<h1>mechhybrid report</h1>"
        "<p>Which component of a hybrid language model does what: components are removed (ablated) one kind, "
        "one layer or one third of the depth at a time, and the drop in accuracy or rise in perplexity is "
        "measured against the same model intact, with Transformer and pure-SSM models as controls. "
        "Intervals are 95% bootstrap confidence intervals.</p>"
        f"{_problems(loaded)}<h2>Headline findings</h2>{_headlines(loaded)}"
        f"<h2>What was run</h2>{_models_table(loaded, palette)}{_data_and_versions(loaded)}"
        f"<h2>Pages</h2><ul>{''.join(links)}</ul>"
    )
    nav = [("index.html", "Index"), ("compare.html", "Compare models")]
    return page("mechhybrid report", nav, body, has_charts=False)
