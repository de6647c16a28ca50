"""The three kinds of page: index (what was run, headline findings, links), one per model, and the comparison.

Pages are built from `ChartBlock`s (finding, chart, condition); every string from a Result is escaped here
or in `reports.findings` before it reaches HTML. Models are shown hybrids first, then the Transformer and the
pure-SSM controls, so that on the comparison page each hybrid sits next to its controls.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from reports import charts, findings, tables
from reports.cards import card_html, steps_to_retrieval_html
from reports.html import RUNTIME_FILE, ChartBlock, anchor, chart_html, esc, page
from reports.load import Loaded, ModelResults
from reports.numbers import readable
from reports.palette import NEUTRAL, ROLE_LABELS, ROLE_ORDER, Palette
from reports.terms import terms_html

__all__ = ["model_page", "compare_page", "model_href", "ordered_models", "swatch", "ablation_sections",
           "GROUP_TITLE", "RATIO_TITLE", "evidence_anchor"]

GROUP_TITLE = "Group ablation: accuracy drop"
RATIO_TITLE = "Perplexity under group ablation"


def _suffix(method: str) -> str:
    return f" ({method} ablation)"


def evidence_anchor(title: str, method: str) -> str:
    """The fragment id of a model page's ablation block (`GROUP_TITLE` or `RATIO_TITLE`, one semantics)."""
    return anchor(title + _suffix(method))


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


def ablation_sections(results: list[dict], palette: Palette) -> list[tuple[str, list[ChartBlock]]]:
    """Study A experiments 1-6, for one model or (on the comparison page) all of them: (semantics, blocks),
    one set of charts per ablation semantics, because the same condition under `zero` and `mean` is two
    different experiments."""
    sections = []
    for method in tables.methods_of(results):
        blocks = _ablation_blocks(tables.only_method(results, method), palette, _suffix(method))
        if blocks:
            sections.append((method, blocks))
    return sections


def _ablation_blocks(results: list[dict], palette: Palette, suffix: str) -> list[ChartBlock]:
    group, ratio = tables.group_records(results), tables.ppl_ratio_records(results)
    drops = tables.layer_records(results, metric=charts.is_drop)
    ratios = tables.layer_records(results, metric=charts.is_ratio)
    thirds, context = tables.third_records(results), tables.context_records(results)
    trials = tables.resilience_records(results)
    medians = tables.resilience_medians(trials, results)
    blocks = [
        _block(GROUP_TITLE + suffix, findings.group_findings(group),
               charts.group_bars(results, palette), group, results),
        _block(RATIO_TITLE + suffix, findings.ppl_ratio_findings(ratio),
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
                                          "rank correlation of the dots it draws (the analysis' own correlation, "
                                          "over every component it ranked and with its CI, is the chart above)."],
            charts.diagnostic_scatter(representation, ablation, palette), points, representation))
    return [b for b in blocks if b is not None]


def other_blocks(result: dict, palette: Palette) -> list[ChartBlock]:
    """An analysis without a dedicated chart: every row as a dot with its CI."""
    records = tables.all_records(result)
    block = _block(f"{result['analysis']}", [], charts.generic_points(result, palette), records, [result])
    return [block] if block else []


def _blocks_html(blocks: list[ChartBlock], prefix: str, used: set[str]) -> str:
    """Blocks with fragment ids from their titles (`used`: the ids already on the page; a repeat gets -2...)."""
    parts = []
    for i, block in enumerate(blocks):
        base = section = anchor(block.title)
        count = 1
        while section in used:
            count += 1
            section = f"{base}-{count}"
        used.add(section)
        parts.append(chart_html(block, f"{prefix}-{i}", section))
    return "".join(parts)


_ROW_COLUMNS = ("condition", "method", "metric", "value", "ci_low", "ci_high", "n", "seed")


def _rows_table(result: dict) -> str:
    head = "".join(f'<th scope="col">{c}</th>' for c in _ROW_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(tables.exact(row[k]) if k in ('value', 'ci_low', 'ci_high') else row[k])}</td>"
                         for k in _ROW_COLUMNS)
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
            f"{esc(readable(model.get('n_params')))} parameters; {esc(readable(model.get('n_layers')))} layers.</p>"
            f"<details><summary>Components</summary><table><tr><th>layer</th><th>kinds</th></tr>{rows}"
            "</table></details>" + card_html(model))


def swatch(palette: Palette, family: str) -> str:
    """A small square of the family's colour, as in the charts' legends."""
    return f'<span class="swatch" style="background:{esc(palette.get(family, NEUTRAL))}"></span>'


def _runtime(shared: bool, depth: int) -> str | None:
    """The runtime file's path from a page `depth` folders below the report root, or None to inline it."""
    return "../" * depth + RUNTIME_FILE if shared else None


def model_page(entry: ModelResults, palette: Palette, shared_runtime: bool = False) -> str:
    """A model's page: header, card, then each analysis with its charts and every row. `shared_runtime`:
    load ../vega.js (written by `render`) rather than inlining the runtime."""
    parts = [_model_header(entry, palette), terms_html(list(entry.results.values()), [entry.model])]
    ablation = [entry.results["component_ablation"]] if "component_ablation" in entry.results else []
    used: set[str] = set()
    for i, (analysis, result) in enumerate(entry.results.items()):
        heading = anchor("analysis " + analysis)
        used.add(heading)
        parts.append(f'<h2 id="{heading}">{esc(analysis)}</h2>'
                     + _provenance(result, "../" + quote(entry.files[analysis])))
        if analysis == "component_ablation":
            blocks = [b for _, section in ablation_sections([result], palette) for b in section]
        elif analysis == "representation":
            blocks = representation_blocks([result], ablation, palette)
        else:
            blocks = other_blocks(result, palette)
        parts.append(_blocks_html(blocks, f"chart-{i}", used) + _rows_table(result))
    nav = [("../index.html", "Index"), ("../compare.html", "Compare models")]
    return page(f"{entry.model.get('name')}: mechhybrid report", nav, "".join(parts), has_charts=True,
                runtime_src=_runtime(shared_runtime, 1))


def compare_page(loaded: Loaded, palette: Palette, shared_runtime: bool = False) -> str:
    models = ordered_models(loaded)
    ablation = [m.results["component_ablation"] for m in models if "component_ablation" in m.results]
    representation = [m.results["representation"] for m in models if "representation" in m.results]
    intro = ("<h1>Hybrids next to their controls</h1><p>Each chart puts every model side by side, hybrids "
             "first, then the Transformer and pure-SSM controls; models are named on the axes, colour is the "
             "model family throughout.</p>"
             + terms_html([r for m in models for r in m.results.values()], [m.model for m in models]))
    used: set[str] = set()
    parts = [intro]
    for i, (method, blocks) in enumerate(ablation_sections(ablation, palette)):
        parts.append(f"<h2>Component ablation: {esc(method)}</h2>" + _blocks_html(blocks, f"chart-a{i}", used))
    blocks = representation_blocks(representation, [], palette)
    if blocks:
        parts.append("<h2>Representation</h2>" + _blocks_html(blocks, "chart-r", used))
    parts.append(steps_to_retrieval_html([m.model for m in models], palette))
    nav = [("index.html", "Index")] + [(model_href(m.slug), m.model.get("name")) for m in models]
    return page("Compare models: mechhybrid report", nav, "".join(parts), has_charts=True,
                runtime_src=_runtime(shared_runtime, 0))
