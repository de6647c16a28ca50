"""The report's front page, read in ten seconds: what each analysis' view contributes to the headline (a chart,
one sentence per model with its intervals and a link to the evidence, the longer findings folded away); then
what was run (models, semantics, data, seeds, versions, the study's analyses and what it skipped) and links to
every page and file."""

from __future__ import annotations

from urllib.parse import quote

from reports import tables
from reports.html import RUNTIME_FILE, chart_html, esc, model_href, page
from reports.load import Loaded, ModelResults
from reports.numbers import readable
from reports.pages import analysis_names, ordered_models, swatch
from reports.palette import ROLE_LABELS, ROLE_ORDER, Palette
from reports.study_notes import StudyNotes, study_html
from reports.terms import terms_html
from reports.views import Headline, view_for

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


_SHOWN = 5
"""Headline sentences of one analysis shown before the fold."""


def _headline_html(headline: Headline, k: int) -> str:
    """One analysis' contribution to the headline (the `k`th: its chart ids get a suffix after the first)."""
    shown = "".join(f'<li class="finding">{s}</li>' for s in headline.sentences[:_SHOWN])
    more = "".join(f'<li class="finding">{s}</li>' for s in headline.sentences[_SHOWN:])
    suffix = "" if k == 0 else f"-{k + 1}"
    chart = (chart_html(headline.chart, "chart-headline" + suffix, "headline-chart" + suffix)
             if headline.chart is not None else "")
    return (f'<ul class="findings headline">{shown}</ul>'
            + (f"<details><summary>{len(headline.sentences) - _SHOWN} {esc(headline.folded_as)}</summary>"
               f'<ul class="findings">{more}</ul></details>' if more else "")
            + chart + headline.details)


def _headline(models: list[ModelResults], palette: Palette) -> tuple[str, bool]:
    """The headline's HTML (every analysis' view contributes its own, in page order), and whether it holds a
    chart."""
    found = [h for name in analysis_names(models) if (h := view_for(name).headline(models, palette)) is not None]
    if not found:
        return "<p>No headline findings yet.</p>", False
    return "".join(_headline_html(h, k) for k, h in enumerate(found)), any(h.chart is not None for h in found)


def _intro(models: list[ModelResults]) -> str:
    """What the analyses did (each view's one-sentence summary), and what the intervals are."""
    summaries = [view_for(name).summary for name in analysis_names(models)]
    return " ".join([esc(s) for s in summaries if s] + ["Intervals are 95% bootstrap confidence intervals."])


def _summary(loaded: Loaded) -> str:
    counts = {role: sum(m.role == role for m in loaded.models) for role in ROLE_ORDER}
    roles = ", ".join(f"{n} {ROLE_LABELS[role]}{'s' if n != 1 else ''}" for role, n in counts.items() if n)
    return f"{len(loaded.models)} model{'s' if len(loaded.models) != 1 else ''}: {roles}"


def _problems(loaded: Loaded) -> str:
    if not loaded.problems:
        return ""
    items = "".join(f'<li class="problem">{esc(p)}</li>' for p in loaded.problems)
    return f"<h2>Results that could not be read</h2><ul>{items}</ul>"


def index_page(loaded: Loaded, palette: Palette, shared_runtime: bool = False,
               notes: StudyNotes | None = None) -> str:
    """The front page. `shared_runtime`: load vega.js beside it rather than inlining the runtime; `notes`: the
    study's (OUT/study.json), shown under what was run."""
    models = ordered_models(loaded)
    links = ['<li><a href="compare.html">All models side by side</a></li>']
    if any(m.role == "hybrid" for m in models):
        links.append('<li><a href="failures.html">How the hybrids fail, next to their controls</a></li>')
    links += [f'<li><a href="{esc(model_href(m.slug))}">{esc(m.model.get("name"))}</a></li>' for m in models]
    if loaded.has_csv:
        links.append('<li><a href="results.csv">results.csv</a> (every number in this report)</li>')
    results = [r for m in models for r in m.results.values()]
    headline, has_chart = _headline(models, palette)
    body = (
        f"<h1>mechhybrid report: {esc(_summary(loaded))}</h1><p>{_intro(models)}</p>"
        f"{_problems(loaded)}<h2>Headline</h2>{headline}"
        + terms_html(results, [m.model for m in models])
        + f"<h2>What was run</h2>{_models_table(loaded, palette)}{_data_and_versions(loaded)}"
        + (study_html(notes) if notes is not None else "")
        + f"<h2>Pages</h2><ul>{''.join(links)}</ul>"
    )
    nav = [("index.html", "Index"), ("compare.html", "Compare models")]
    return page("mechhybrid report", nav, body, has_charts=has_chart,
                runtime_src=RUNTIME_FILE if shared_runtime else None)
