"""The page shell: escaping, the vega runtime, chart specs as inert JSON, each chart's numbers as a table, and
a strict CSP.

Safety in three layers, because model names, condition names and file names are user data:
1. every string goes through `esc` (HTML) or `script_json` (JSON inside a <script>, where '<' '>' '&' become
   \\u003c \\u003e \\u0026, so no `</script>` or `<!--` can close or confuse the block);
2. specs sit in `<script type="application/json">`, which the browser never executes;
3. a Content-Security-Policy allows only this page's own scripts (inline ones by SHA-256; the shared runtime
   file, where there is one, as 'self'), no network of any kind (`default-src 'none'`), so a string that
   slipped through could neither run nor fetch.
Vega's expressions run through its AST interpreter (`ast: true`), so no 'unsafe-eval' is needed.

The runtime (~0.9 MB) is either one file beside the pages (`RUNTIME_FILE`, loaded by every page of a report)
or inlined into each page (`runtime_src=None`), so that a single page can be mailed on its own. Accessibility:
each chart sits in a <figure> named by its title (Vega labels its own container with the spec's
`description`, and would overwrite a label of ours there), and the exact values its tooltips show are also in
a table under it, for keyboards and screen readers.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import re
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["esc", "script_json", "vega_bundle", "ChartBlock", "chart_html", "spec_table", "anchor", "page",
           "model_href", "BOOT_JS", "RUNTIME_FILE"]

RUNTIME_FILE = "vega.js"
"""The shared runtime's file name, in the report's root (model pages load it as ../vega.js)."""

# Draws each spec into its <div>; a failure is shown as text in place of the chart and logged, so a broken
# chart is visible rather than blank (and a browser test sees it as a console error).
BOOT_JS = """(function () {
  "use strict";
  // Vega names a mark's SVG container after the mark's own description; a mark with no items (a facet cell
  // without random controls) would otherwise be an unnamed SVG image to a screen reader.
  function nameMarks(spec) {
    (spec.marks || []).forEach(function (mark) {
      if (mark.type === "group") {
        nameMarks(mark);
      } else if (mark.description === undefined && mark.aria !== false) {
        mark.description = mark.type + " marks; every value is in the table under the chart";
      }
    });
    return spec;
  }
  var jobs = [];
  document.querySelectorAll("script.vega-spec").forEach(function (block) {
    var target = document.getElementById(block.getAttribute("data-target"));
    if (typeof vegaEmbed === "undefined") {  // the shared runtime file is missing or was blocked
      target.textContent = "This chart could not be drawn: the chart runtime (vega.js) did not load.";
      console.error("vega.js did not load");
      return;
    }
    var options = {actions: false, renderer: "svg", ast: true, mode: "vega-lite", patch: nameMarks};
    jobs.push(vegaEmbed(target, JSON.parse(block.textContent), options).then(function () {
      target.setAttribute("data-rendered", "true");
    }).catch(function (error) {
      target.textContent = "This chart could not be drawn: " + error;
      console.error(error);
    }));
  });
  Promise.all(jobs).then(function () {
    // The drawn page's height, for screenshots (reports.screenshot reads it from the DOM).
    document.body.setAttribute("data-page-height", String(document.documentElement.scrollHeight));
    document.body.setAttribute("data-charts-done", String(jobs.length));
  });
})();"""

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1a1a1a;background:#fff}
main{max-width:1200px;margin:0 auto;padding:1rem 1.5rem 3rem}
nav{background:#f4f4f4;border-bottom:1px solid #ddd;padding:.5rem 1.5rem}
nav a{margin-right:1rem}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd}h3{margin-bottom:.3rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
.finding{margin:.2rem 0}.findings{padding-left:1.2rem;margin:.3rem 0}
.condition{color:#555;font-size:.85rem;margin-top:.2rem}
.chart{overflow-x:auto;min-height:40px}
figure{margin:.5rem 0}figcaption{color:#555;font-size:.85rem}
.table-wrap{overflow-x:auto;max-height:24rem;overflow-y:auto}
.terms dt{font-weight:600;margin-top:.4rem}.terms dd{margin-left:1rem}
.headline{font-size:1.05rem}.headline li{margin:.35rem 0}
.label{font-weight:600}.model{font-style:italic}
.problem{color:#a00}
.swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.3em;vertical-align:baseline}
details{margin:.5rem 0}
"""


def esc(text) -> str:
    """HTML-escape anything (quotes too: the result may sit inside an attribute)."""
    return html.escape(str(text), quote=True)


def script_json(value) -> str:
    """JSON for a <script> block: exact and deterministic, with nothing that can end or comment the block."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


@functools.lru_cache(maxsize=1)
def vega_bundle() -> str:
    """vega + vega-lite + vega-embed as one script, from the installed vl-convert (no network; ~0.9 MB).

    Built once per process: vl-convert bundles it on first call (about 8 s on 2 CPU cores)."""
    import altair
    import vl_convert

    major_minor = ".".join(altair.VEGALITE_VERSION.split(".")[:2])
    bundle = vl_convert.javascript_bundle(vl_version=major_minor)
    # Inlined as-is, so it must not contain what would end or comment out its own <script> element.
    lowered = bundle.lower()
    if "</script" in lowered or "<!--" in lowered:
        raise RuntimeError("the vl-convert bundle contains '</script' or '<!--' and cannot be inlined")
    return bundle


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def anchor(text: str) -> str:
    """A fragment id from a title: lower-case ASCII letters, digits and dashes only (titles hold user text)."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "section"


def model_href(slug: str) -> str:
    """A model page's path relative to the report root (percent-encoded: slugs are user text)."""
    return "models/" + quote(slug, safe="") + ".html"


@dataclass(frozen=True)
class ChartBlock:
    """One chart with its finding above and its exact condition below."""

    title: str
    findings: list[str]
    """HTML sentences (already escaped, from reports.findings)."""
    spec: dict | None
    """The Vega-Lite spec (altair `to_dict()`), or None when there is nothing to draw. Its `description` says
    what the chart shows (screen readers read it)."""
    condition: str
    """HTML (already escaped): method, n, seed, data."""


def _walk(node, visit) -> None:
    if isinstance(node, dict):
        visit(node)
        for child in node.values():
            _walk(child, visit)
    elif isinstance(node, list):
        for child in node:
            _walk(child, visit)


def _tooltip_columns(spec: dict) -> list[tuple[str, str]]:
    """(field, title) of every tooltip entry in the spec, first title of each field, in spec order."""
    columns: dict[str, str] = {}

    def visit(node):
        entries = node.get("tooltip")
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and isinstance(entry.get("field"), str):
                columns.setdefault(entry["field"], str(entry.get("title", entry["field"])))

    _walk(spec, visit)
    return list(columns.items())


def _spec_records(spec: dict) -> list[dict]:
    records: list[dict] = []
    for values in (spec.get("datasets") or {}).values():
        records += [v for v in values if isinstance(v, dict)]

    def visit(node):
        data = node.get("data")
        if isinstance(data, dict) and isinstance(data.get("values"), list):
            records.extend(v for v in data["values"] if isinstance(v, dict))

    _walk(spec, visit)
    return records


def _cell(value) -> str:
    return "" if value is None else esc(value)


def spec_table(spec: dict) -> str:
    """The values the chart's tooltips show, one row per distinct record, as a folded table ('' if none).

    Read from the spec itself, so that every chart (whichever module made it) gets its table, and the table
    holds exactly what a hover would show."""
    columns = _tooltip_columns(spec)
    rows = dict.fromkeys(tuple(_cell(record.get(field)) for field, _ in columns) for record in _spec_records(spec))
    rows.pop(tuple("" for _ in columns), None)
    if not columns or not rows:
        return ""
    head = "".join(f'<th scope="col">{esc(title)}</th>' for _, title in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return (f'<details class="chart-data"><summary>The numbers in this chart ({len(rows)} rows)</summary>'
            f'<div class="table-wrap" tabindex="0" role="region" aria-label="numbers in this chart">'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></details>")


def chart_html(block: ChartBlock, chart_id: str, section_id: str | None = None) -> str:
    """A chart block: title, findings, the chart in a <figure> named by its title, its condition as the
    caption, and its numbers. `section_id` is the block's fragment id (default `chart_id`-section)."""
    parts = [f'<section class="chart-block" id="{esc(section_id or chart_id + "-section")}">'
             f"<h3>{esc(block.title)}</h3>"]
    if block.findings:
        items = "".join(f'<li class="finding">{sentence}</li>' for sentence in block.findings)
        parts.append(f'<ul class="findings">{items}</ul>')
    if block.spec is not None:
        # The figure keeps our accessible name: Vega sets role and aria-label (the spec's description) on the
        # container it draws into, which is the inner <div>.
        parts.append(f'<figure aria-label="{esc(block.title)}"><div class="chart" id="{chart_id}"></div>'
                     f'<figcaption class="condition">Condition: {block.condition}</figcaption></figure>')
        parts.append(f'<script type="application/json" class="vega-spec" data-target="{chart_id}">'
                     f"{script_json(block.spec)}</script>")
        parts.append(spec_table(block.spec))
    else:
        parts.append(f'<p class="condition">Condition: {block.condition}</p>')
    parts.append("</section>")
    return "".join(parts)


def page(title: str, nav: list[tuple[str, str]], body: str, has_charts: bool, runtime_src: str | None = None) -> str:
    """A complete page. `nav` is (href, text) pairs, unescaped; `body` is trusted, already escaped HTML.

    `runtime_src`: the relative path of the shared runtime file; None inlines the runtime (a page that stands
    alone). Pages without charts load no runtime either way."""
    inline = [BOOT_JS] if runtime_src is not None or not has_charts else [vega_bundle(), BOOT_JS]
    loads_file = has_charts and runtime_src is not None
    sources = ("'self' " if loads_file else "") + " ".join(_sha256(s) for s in inline)
    csp = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
           f"script-src {sources}")
    links = "".join(f'<a href="{esc(href)}">{esc(text)}</a>' for href, text in nav)
    tail = (f'<script src="{esc(runtime_src)}"></script>' if loads_file else "")
    tail += "".join(f"<script>{s}</script>" for s in inline)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n"
        f'<body><nav aria-label="pages">{links}</nav><main>{body}</main>'
        "<noscript><p>The charts need JavaScript; every number is also in the findings, the tables under each "
        "chart and results.csv.</p></noscript>\n"
        f"{tail}</body></html>\n"
    )
