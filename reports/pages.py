"""The model pages and the comparison page: the shell around each analysis' view.

A page goes through the analyses it shows and asks each one's view (`reports.views.view_for`) for its chart
blocks; the page adds what every analysis gets: its heading, its provenance (method, seed, versions, the JSON,
its side data files, config, notes) and the table of every row, one column per coordinate. Every string from
a Result is escaped here or in the views' findings before it reaches HTML. Models are shown hybrids first,
then the Transformer and the pure-SSM controls, so that on the comparison page each hybrid sits next to its
controls.
"""

from __future__ import annotations

import json
import posixpath
from urllib.parse import quote

from reports import tables
from reports.cards import card_html, steps_to_retrieval_html
from reports.html import RUNTIME_FILE, ChartBlock, anchor, chart_html, esc, model_href, page
from reports.load import Loaded, ModelResults
from reports.numbers import readable
from reports.palette import NEUTRAL, ROLE_LABELS, ROLE_ORDER, Palette
from reports.study_notes import StudyNotes, skipped_html
from reports.terms import terms_html
from reports.views import view_for
from reports.views.generic import coordinate_names, coords_of

__all__ = ["model_page", "compare_page", "ordered_models", "analysis_names", "swatch", "rows_table"]


def ordered_models(loaded: Loaded) -> list[ModelResults]:
    return sorted(loaded.models, key=lambda m: (ROLE_ORDER.index(m.role), m.slug))


def analysis_names(models: list[ModelResults]) -> list[str]:
    """Every analysis any of `models` has, in the order of a model page (sorted by name)."""
    return sorted({name for m in models for name in m.results})


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


_AFTER_COORDS = ("method", "metric", "value", "ci_low", "ci_high", "n", "seed")
"""A row's fixed fields, after its condition and its coordinates (results.csv puts the coordinates last; here
they sit next to the condition they detail)."""


def _cell(row: dict, column: str) -> str:
    if column in ("value", "ci_low", "ci_high"):
        return esc(tables.exact(row[column]))
    return esc(row[column])


def _coord_cell(row: dict, name: str) -> str:
    coords = coords_of(row)
    if name not in coords:
        return ""
    value = coords[name]
    return esc(value if isinstance(value, str) else repr(value))


def rows_table(result: dict) -> str:
    """Every row of a Result, folded: condition, one column per coordinate any row has, then method to seed
    (numbers exactly as results.csv holds them)."""
    coords = coordinate_names(result["rows"])
    head = "".join(f'<th scope="col">{esc(c)}</th>' for c in ("condition", *coords, *_AFTER_COORDS))
    body = "".join(
        f"<tr><td>{esc(row['condition'])}</td>" + "".join(f"<td>{_coord_cell(row, c)}</td>" for c in coords)
        + "".join(f"<td>{_cell(row, k)}</td>" for k in _AFTER_COORDS) + "</tr>" for row in result["rows"])
    return f"<details><summary>All {len(result['rows'])} rows</summary><table><tr>{head}</tr>{body}</table></details>"


def _shape(shape) -> str:
    return " x ".join(str(n) for n in shape) if isinstance(shape, list) else str(shape)


def _side_files(result: dict, folder_href: str) -> str:
    """The Result's side data files (`side`: name, kind, file beside the JSON, shape, version), linked ('' for
    none)."""
    side = [s for s in result.get("side") or [] if isinstance(s, dict)]
    if not side:
        return ""
    rows = "".join(
        f"<tr><td><a href=\"{esc(folder_href + quote(str(s.get('file')), safe='/'))}\">{esc(s.get('name'))}</a></td>"
        f"<td>{esc(s.get('kind'))}</td><td>{esc(_shape(s.get('shape')))}</td><td>{esc(s.get('version'))}</td></tr>"
        for s in side)
    head = "".join(f'<th scope="col">{c}</th>' for c in ("side data", "kind", "shape", "version"))
    return f"<table><tr>{head}</tr>{rows}</table>"


def _provenance(result: dict, href: str) -> str:
    """Method, seed, versions and a link to the JSON at `href`; its side data files (beside it), its own
    notes, and its config, folded."""
    config = json.dumps(result.get("config"), indent=1, sort_keys=True, ensure_ascii=False, default=str)
    versions = ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted((result.get("versions") or {}).items()))
    extra = result.get("extra") if isinstance(result.get("extra"), dict) else {}
    notes = [n for n in extra.get("notes") or [] if isinstance(n, str)] if isinstance(extra.get("notes"), list) else []
    # The analysis' own caveats (a capped context, a fallback kernel) belong next to its numbers.
    notes_html = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return (f'<p>Method <span class="label">{esc(result.get("method"))}</span>; seed {esc(result.get("seed"))}; '
            f"versions {versions}; <a href=\"{esc(href)}\">the result JSON</a>.</p>"
            + _side_files(result, posixpath.dirname(href) + "/")
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


def _sections_html(sections, keys: set[str], used: set[str]) -> str:
    """A view's comparison sections, each an <h2> with its blocks; chart ids from the section's key, made
    unique on the page (`keys`)."""
    parts = []
    for section in sections:
        key = anchor(section.key)
        while key in keys:
            key += "-2"
        keys.add(key)
        parts.append(f"<h2>{esc(section.title)}</h2>" + _blocks_html(section.blocks, f"chart-{key}", used))
    return "".join(parts)


def model_page(entry: ModelResults, palette: Palette, shared_runtime: bool = False,
               notes: StudyNotes | None = None) -> str:
    """A model's page: header, card, what the study did not run on it (`notes`), then each analysis with its
    view's charts and every row. `shared_runtime`: load ../vega.js (written by `render`) rather than inlining
    the runtime."""
    parts = [_model_header(entry, palette), terms_html(list(entry.results.values()), [entry.model])]
    if notes is not None:
        parts.append(skipped_html(notes, str(entry.model.get("name"))))
    used: set[str] = set()
    for i, (analysis, result) in enumerate(entry.results.items()):
        heading = anchor("analysis " + analysis)
        used.add(heading)
        parts.append(f'<h2 id="{heading}">{esc(analysis)}</h2>'
                     + _provenance(result, "../" + quote(entry.files[analysis])))
        blocks = view_for(analysis).model_blocks(result, entry, palette)
        parts.append(_blocks_html(blocks, f"chart-{i}", used) + rows_table(result))
    nav = [("../index.html", "Index"), ("../compare.html", "Compare models")]
    return page(f"{entry.model.get('name')}: mechhybrid report", nav, "".join(parts), has_charts=True,
                runtime_src=_runtime(shared_runtime, 1))


def compare_page(loaded: Loaded, palette: Palette, shared_runtime: bool = False) -> str:
    """Every analysis with every model side by side (each view's comparison sections), then the zoo models'
    steps to retrieval."""
    models = ordered_models(loaded)
    intro = ("<h1>Hybrids next to their controls</h1><p>Each chart puts every model side by side, hybrids "
             "first, then the Transformer and pure-SSM controls; models are named on the axes, colour is the "
             "model family throughout.</p>"
             + terms_html([r for m in models for r in m.results.values()], [m.model for m in models]))
    used: set[str] = set()
    keys: set[str] = set()
    parts = [intro]
    for name in analysis_names(models):
        results = [m.results[name] for m in models if name in m.results]
        parts.append(_sections_html(view_for(name).compare_sections(results, palette), keys, used))
    parts.append(steps_to_retrieval_html([m.model for m in models], palette))
    nav = [("index.html", "Index")] + [(model_href(m.slug), m.model.get("name")) for m in models]
    return page("Compare models: mechhybrid report", nav, "".join(parts), has_charts=True,
                runtime_src=_runtime(shared_runtime, 0))
