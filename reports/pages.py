"""The three kinds of page: index (what was run, headline findings, links), one per model, and the comparison.

Pages are built from `ChartBlock`s (finding, chart, condition); every string from a Result is escaped here
or in `reports.findings` before it reaches HTML. Models are shown hybrids first, then the Transformer and the
pure-SSM controls, so that on the comparison page each hybrid sits next to its controls.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from reports import charts, findings, tables
from reports.cards import card_html
from reports.html import ChartBlock, chart_html, esc, page
from reports.load import Loaded, ModelResults
from reports.palette import ROLE_LABELS, ROLE_ORDER, Palette

__all__ = ["model_page", "compare_page", "model_href", "ordered_models", "swatch"]


def model_href(slug: str) -> str:
    """The model page's path relative to the report root (percent-encoded: slugs are user text)."""
    return "models/" + quote(slug, safe="") + ".html"


def ordered_models(loaded: Loaded) -> list[ModelResults]:
    return sorted(loaded.models, key=lambda m: (ROLE_ORDER.index(m.role), m.slug))


def _spec(chart) -> dict | None:
    # Validation against the Vega-Lite schema runs in the tests; skipping it here halves render time.
    return None if chart is None else chart.to_dict(validate=False)


def _block(title, sentences, chart, records, results) -> ChartBlock | None:
    if chart is None:  # nothing to draw (no rows, or only missing values): no block, no orphan finding
        return None
    return ChartBlock(title, sentences, _spec(chart), findings.condition_line(records, results))


def ablation_blocks(results: list[dict], palette: Palette) -> list[ChartBlock]:
    """Study A experiments 1-6, for one model or (on the comparison page) all of them: one set of charts per
    ablation semantics, because the same condition under `zero` and `mean` is two different experiments."""
    blocks = []
    for method in tables.methods_of(results):
        blocks += _ablation_blocks(tables.only_method(results, method), palette, f" ({method} ablation)")
    return blocks


def _ablation_blocks(results: list[dict], palette: Palette, suffix: str) -> list[ChartBlock]:
    group, ratio = tables.group_records(results), tables.ppl_ratio_records(results)
    drops = tables.layer_records(results, metric=charts.is_drop)
    ratios = tables.layer_records(results, metric=charts.is_ratio)
    thirds, context = tables.third_records(results), tables.context_records(results)
    trials = tables.resilience_records(results)
    medians = tables.resilience_medians(trials, results)
    blocks = [
        _block("Group ablation: accuracy drop" + suffix, findings.group_findings(group),
               charts.group_bars(results, palette), group, results),
        _block("Perplexity under group ablation" + suffix, findings.ppl_ratio_findings(ratio),
               charts.ppl_ratio_bars(results, palette), ratio, results),
        _block("One component at a time: accuracy drop" + suffix, findings.layer_findings(drops),
               charts.layer_heatmap(results, metric=charts.is_drop), drops, results),
        _block("One component at a time: perplexity ratio" + suffix, findings.layer_findings(ratios),
               charts.layer_heatmap(results, metric=charts.is_ratio, log=True), ratios, results),
        _block("Thirds of the depth" + suffix, findings.third_findings(thirds),
               charts.thirds_bars(results, palette), thirds, results),
        _block("Resilience: random layers removed" + suffix, findings.resilience_findings(trials, medians),
               charts.resilience_strip(results, palette), trials, results),
        _block("Context-length stress" + suffix, findings.context_findings(context),
               charts.context_lines(results, palette), context, results),
    ]
    return [b for b in blocks if b is not None]


def representation_blocks(representation: list[dict], ablation: list[dict], palette: Palette) -> list[ChartBlock]:
    """Study A experiment 7: diagnostics per ablated component, and how well each predicts the drop."""
    layers = tables.layer_records(representation, "representation")
    corr, cka = tables.correlation_records(representation), tables.cka_model_records(representation)
    blocks = [
        _block("Representation diagnostics per ablated component", findings.layer_findings(layers),
               charts.layer_heatmap(representation, "representation"), layers, representation),
        _block("Which diagnostic predicts the drop", findings.correlation_findings(corr),
               charts.correlation_bars(representation, palette), corr, representation),
        _block("How alike are the models' representations", findings.cka_model_findings(cka),
               charts.cka_models_heatmap(representation), cka, representation),
    ]
    if ablation:
        points = tables.diagnostic_records(representation, ablation)
        blocks.append(_block(
            "Diagnostics against drops", ["Each dot is one ablated component; each panel is titled with the "
                                          "rank correlation above."],
            charts.diagnostic_scatter(representation, ablation, palette), points, representation))
    return [b for b in blocks if b is not None]


def other_blocks(result: dict, palette: Palette) -> list[ChartBlock]:
    """An analysis without a dedicated chart: every row as a dot with its CI."""
    records = tables.all_records(result)
    block = _block(f"{result['analysis']}", [], charts.generic_points(result, palette), records, [result])
    return [block] if block else []


def _blocks_html(blocks: list[ChartBlock], prefix: str) -> str:
    return "".join(chart_html(block, f"{prefix}-{i}") for i, block in enumerate(blocks))


def _rows_table(result: dict) -> str:
    head = "".join(f"<th>{c}</th>" for c in ("condition", "method", "metric", "value", "ci_low", "ci_high", "n",
                                              "seed"))
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(tables.exact(row[k]) if k in ('value', 'ci_low', 'ci_high') else row[k])}</td>"
                         for k in ("condition", "method", "metric", "value", "ci_low", "ci_high", "n", "seed"))
        + "</tr>" for row in result["rows"])
    return f"<details><summary>All {len(result['rows'])} rows</summary><table><tr>{head}</tr>{body}</table></details>"


def _provenance(result: dict, href: str) -> str:
    config = json.dumps(result.get("config"), indent=1, sort_keys=True, ensure_ascii=False, default=str)
    versions = ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted((result.get("versions") or {}).items()))
    extra = result.get("extra") if isinstance(result.get("extra"), dict) else {}
    notes = [n for n in extra.get("notes") or [] if isinstance(n, str)] if isinstance(extra.get("notes"), list) else []
    # The analysis' own caveats (a capped context, a fallback kernel) belong next to its numbers.
    notes_html = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return (f'<p>Method <span class="label">{esc(result.get("method"))}</span>; seed {esc(result.get("seed"))}; '
            f"versions {versions}; <a href=\"{esc(href)}\">the result JSON</a>.</p>"
            + (f'<ul class="notes">{notes_html}</ul>' if notes else "")
            + f"<details><summary>Config</summary><pre>{esc(config)}</pre></details>")


def _model_header(entry: ModelResults, palette: Palette) -> str:
    model = entry.model
    layers: dict = {}
    for c in model.get("components") or []:
        if isinstance(c, dict):
            layers.setdefault(c.get("layer"), []).append(tables.kind_label(str(c.get("kind"))))
    rows = "".join(f"<tr><td>{esc(layer)}</td><td>{esc(', '.join(kinds))}</td></tr>" for layer, kinds in layers.items())
    family = str(model.get("family"))
    return (f"<h1>{esc(model.get('name'))}</h1><p>{swatch(palette, family)}family <b>{esc(family)}</b>, "
            f"{esc(ROLE_LABELS[entry.role])}; topology {esc(model.get('topology'))}; "
            f"{esc(model.get('n_params'))} parameters; {esc(model.get('n_layers'))} layers.</p>"
            f"<details><summary>Components</summary><table><tr><th>layer</th><th>kinds</th></tr>{rows}"
            "</table></details>" + card_html(model))


def swatch(palette: Palette, family: str) -> str:
    """A small square of the family's colour, as in the charts' legends."""
    return f'<span class="swatch" style="background:{esc(palette.get(family, "#999999"))}"></span>'


def model_page(entry: ModelResults, palette: Palette) -> str:
    parts = [_model_header(entry, palette)]
    ablation = [entry.results["component_ablation"]] if "component_ablation" in entry.results else []
    for i, (analysis, result) in enumerate(entry.results.items()):
        parts.append(f"<h2>{esc(analysis)}</h2>" + _provenance(result, "../" + quote(entry.files[analysis])))
        if analysis == "component_ablation":
            blocks = ablation_blocks([result], palette)
        elif analysis == "representation":
            blocks = representation_blocks([result], ablation, palette)
        else:
            blocks = other_blocks(result, palette)
        parts.append(_blocks_html(blocks, f"chart-{i}") + _rows_table(result))
    nav = [("../index.html", "Index"), ("../compare.html", "Compare models")]
    return page(f"{entry.model.get('name')}: mechhybrid report", nav, "".join(parts), has_charts=True)


def compare_page(loaded: Loaded, palette: Palette) -> str:
    models = ordered_models(loaded)
    ablation = [m.results["component_ablation"] for m in models if "component_ablation" in m.results]
    representation = [m.results["representation"] for m in models if "representation" in m.results]
    intro = ("<h1>Hybrids next to their controls</h1><p>Each chart puts every model side by side, hybrids "
             "first, then the Transformer and pure-SSM controls; colour is the model family throughout.</p>")
    blocks = ablation_blocks(ablation, palette) + representation_blocks(representation, [], palette)
    nav = [("index.html", "Index")] + [(model_href(m.slug), m.model.get("name")) for m in models]
    return page("Compare models: mechhybrid report", nav, intro + _blocks_html(blocks, "chart"), has_charts=True)
