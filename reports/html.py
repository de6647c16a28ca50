"""The page shell: escaping, the inlined vega runtime, chart specs as inert JSON, and a strict CSP.

Safety in three layers, because model names, condition names and file names are user data:
1. every string goes through `esc` (HTML) or `script_json` (JSON inside a <script>, where '<' '>' '&' become
   \\u003c \\u003e \\u0026, so no `</script>` or `<!--` can close or confuse the block);
2. specs sit in `<script type="application/json">`, which the browser never executes;
3. a Content-Security-Policy allows only this page's own scripts (by SHA-256), no network of any kind
   (`default-src 'none'`), so a string that slipped through could neither run nor fetch.
Vega's expressions run through its AST interpreter (`ast: true`), so no 'unsafe-eval' is needed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from dataclasses import dataclass

__all__ = ["esc", "script_json", "vega_bundle", "ChartBlock", "page", "BOOT_JS"]

# Draws each spec into its <div>; a failure is shown as text in place of the chart and logged, so a broken
# chart is visible rather than blank (and a browser test sees it as a console error).
BOOT_JS = """(function () {
  "use strict";
  var jobs = [];
  document.querySelectorAll("script.vega-spec").forEach(function (block) {
    var target = document.getElementById(block.getAttribute("data-target"));
    var options = {actions: false, renderer: "svg", ast: true, mode: "vega-lite"};
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


@dataclass(frozen=True)
class ChartBlock:
    """One chart with its finding above and its exact condition below."""

    title: str
    findings: list[str]
    """HTML sentences (already escaped, from reports.findings)."""
    spec: dict | None
    """The Vega-Lite spec (altair `to_dict()`), or None when there is nothing to draw."""
    condition: str
    """HTML (already escaped): method, n, seed, data."""


def chart_html(block: ChartBlock, chart_id: str) -> str:
    parts = [f'<section class="chart-block"><h3>{esc(block.title)}</h3>']
    if block.findings:
        items = "".join(f'<li class="finding">{sentence}</li>' for sentence in block.findings)
        parts.append(f'<ul class="findings">{items}</ul>')
    if block.spec is not None:
        parts.append(f'<div class="chart" id="{chart_id}" role="img" aria-label="{esc(block.title)}"></div>')
        parts.append(f'<script type="application/json" class="vega-spec" data-target="{chart_id}">'
                     f"{script_json(block.spec)}</script>")
    parts.append(f'<p class="condition">Condition: {block.condition}</p></section>')
    return "".join(parts)


def page(title: str, nav: list[tuple[str, str]], body: str, has_charts: bool) -> str:
    """A complete page. `nav` is (href, text) pairs, unescaped; `body` is trusted, already escaped HTML."""
    # The bootstrap runs on every page (it also records the page height); the runtime only where it draws.
    scripts = [vega_bundle(), BOOT_JS] if has_charts else [BOOT_JS]
    csp = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
           f"script-src {' '.join(_sha256(s) for s in scripts)}")
    links = "".join(f'<a href="{esc(href)}">{esc(text)}</a>' for href, text in nav)
    tail = "".join(f"<script>{s}</script>" for s in scripts)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><nav>{links}</nav><main>{body}</main>"
        "<noscript><p>The charts need JavaScript; every number is also in the findings, the tables and "
        "results.csv.</p></noscript>\n"
        f"{tail}</body></html>\n"
    )
