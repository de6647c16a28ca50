"""Every page, in a real headless Chromium with the network off: no console error or warning, no request
other than the page's own files, one drawn SVG per chart spec, charts that fit the page and keep their
accessible names, no critical or serious axe-core violation, and a screenshot of the front page left as a
test artefact."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import PROBE, artifacts_dir, axe_path, problems_in, tooltip_fields


def _pages(root: Path) -> list[Path]:
    return [root / "index.html", root / "compare.html", *sorted((root / "models").glob("*.html"))]


def _check_page(browser, page: Path) -> dict:
    seen = browser.visit(page)
    state = seen["state"]
    assert state and state["ready"], f"{page.name}: charts never finished ({state and state['done']})"
    assert problems_in(seen["events"]) == [], page.name
    for chart in state["charts"]:
        assert chart["rendered"] == "true" and chart["svg"] >= 1, f"{page.name}: {chart}"
    assert state["done"] in (None, str(state["specs"]))
    return state


def test_study_pages_render_offline_without_errors(browser, rendered_study):
    pages = _pages(rendered_study)
    assert len(pages) == 5
    specs = [_check_page(browser, page)["specs"] for page in pages]
    assert specs[0] == 1  # the front page's headline chart
    assert all(n >= 6 for n in specs[1:]), specs  # compare + each model page: Study A exp. 1-7


def test_injection_probes_render_as_text(browser, probe_dir):
    states = {page.name: _check_page(browser, page) for page in _pages(probe_dir)}
    for name, state in states.items():
        assert state["imgs"] == 0, name  # '<img src=x onerror=...>' stayed text
    assert PROBE in states["index.html"]["text"]  # shown to the reader literally


def _csv_rows(root: Path) -> dict[tuple, dict]:
    with open(root / "results.csv", newline="", encoding="utf-8") as handle:
        return {(r["model"], r["condition"], r["method"], r["metric"]): r for r in csv.DictReader(handle)}


def test_hovered_tooltips_show_the_csv_numbers(browser, rendered_study):
    rows = _csv_rows(rendered_study)
    shown = browser.tooltips(rendered_study / "models" / "zoo_gdn-hybrid.html")
    assert len(shown) >= 10
    from conftest import CARD

    tables = _chart_tables(rendered_study / "models" / "zoo_gdn-hybrid.html")
    for tip in shown:
        assert tip["text"], f"no tooltip on {tip['chart']}"
        fields = tooltip_fields(tip["text"])
        # What the hover shows is also a row of the chart's table, for keyboards and screen readers.
        assert any(all(row.get(k) == v for k, v in fields.items()) for row in tables[tip["chart"]]), (
            tip["chart"], fields)
        if tip["chart"] == "chart-card":  # the zoo card's training loss: numbers of the card, not of the CSV
            assert [int(fields["step"]), fields["loss"]] in [[step, repr(loss)] for step, loss in CARD["loss_curve"]]
            continue
        if tip["chart"] == "chart-card-probe":  # the card's training probe, per context length
            assert [int(fields["step"]), fields["accuracy"]] in [
                [p["step"], repr(v)] for p in CARD["needle_probe_curve"] for v in p["needle"].values()]
            continue
        row = rows[(fields["model"], fields["condition"], fields["method"], fields["metric"])]
        assert fields["value"] == (row["value"] or "n/a"), tip["chart"]
        assert fields["95% CI low"] == (row["ci_low"] or "n/a") and fields["95% CI high"] == (row["ci_high"] or "n/a")
        assert fields["n"] == row["n"] and fields["seed"] == row["seed"]


def test_probe_in_a_tooltip_stays_text(browser, probe_dir):
    page = next(p for p in (probe_dir / "models").glob("*.html") if "script" in p.name)
    shown = [tip for tip in browser.tooltips(page) if tip["text"]]
    assert shown
    for tip in shown:
        assert not {"img", "script"} & set(tip["tags"]), tip["chart"]
        if not tip["chart"].startswith("chart-card"):  # the card's charts show its curves, not the model
            assert tooltip_fields(tip["text"])["model"] == f"zoo:{PROBE}"


def test_missing_numbers_draw_no_empty_chart(browser, tmp_path):
    import reports
    from conftest import write_results
    from test_render import odd_results

    out = write_results(tmp_path, odd_results())
    reports.render(out)
    _check_page(browser, out / "models" / "zoo_gdn-hybrid.html")


class _Tables(HTMLParser):
    """Each chart's data table: chart id -> [{column title: cell text}]."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[dict]] = {}
        self._chart = None
        self._head: list[str] = []
        self._row: list[str] | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and attrs.get("class") == "chart":
            self._chart, self._head = attrs["id"], []
            self.tables[self._chart] = []
        elif tag in ("th", "td") and self._chart:
            self._cell = ""
        elif tag == "tr":
            self._row = []

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            (self._head if tag == "th" else self._row).append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row and self._chart:
            self.tables[self._chart].append(dict(zip(self._head, self._row)))
        elif tag == "details" and self._chart:
            self._chart = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _chart_tables(page: Path) -> dict[str, list[dict]]:
    parser = _Tables()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.tables


# Per chart: the drawn SVG's width against the page's text column, the names a screen reader gets, and
# the spec's description.
_CHARTS_JS = """(() => Array.from(document.querySelectorAll('script.vega-spec')).map(s => {
  const div = document.getElementById(s.getAttribute('data-target'));
  const svg = div.querySelector('svg');
  const main = document.querySelector('main');
  const column = main.clientWidth - parseFloat(getComputedStyle(main).paddingLeft)
                 - parseFloat(getComputedStyle(main).paddingRight);
  return {id: div.id, width: svg ? svg.getBoundingClientRect().width : null, column: column,
          label: div.getAttribute('aria-label'), role: div.getAttribute('role'),
          figure: div.closest('figure').getAttribute('aria-label'),
          title: div.closest('section').querySelector('h3').textContent,
          description: JSON.parse(s.textContent).description};
}))()"""


def test_charts_fit_the_page_and_keep_their_names(browser, rendered_study):
    """No chart wider than the text column; vega names its container after the spec's description (never
    'Vega visualization'), and the <figure> around it keeps the chart's title as its name."""
    for page in _pages(rendered_study):
        charts = browser.evaluate(page, _CHARTS_JS)
        assert charts, page.name
        for chart in charts:
            assert chart["width"] and chart["width"] <= chart["column"], (page.name, chart["id"], chart["width"])
            assert chart["label"] == chart["description"] and len(chart["description"]) > 60, (page.name, chart)
            assert chart["role"] == "graphics-document" and chart["figure"] == chart["title"], (page.name, chart)


def test_wide_models_still_fit_and_a_page_stands_alone(browser, tmp_path):
    """Three 48-layer models (one heatmap row each would be ~2,300 px) on a self-contained page in a folder
    of its own: it draws without vega.js beside it, and within the page."""
    import random

    from conftest import _components, ablation_rows, result

    from reports import charts
    from reports.html import ChartBlock, chart_html, page

    models = [{"name": f"zoo:wide-{i}", "family": "qwen2", "topology": "sequential", "n_params": 1, "n_layers": 48,
               "components": _components([["attention", "mlp"]] * 48)} for i in range(3)]
    rng = random.Random(0)
    wide = [result(m, "component_ablation", ablation_rows(m, rng)) for m in models]
    blocks = [ChartBlock(title, [], chart.to_dict(validate=False), "wide") for title, chart in (
        ("drops", charts.layer_heatmap(wide, metric=charts.is_drop)),
        ("ratios", charts.layer_heatmap(wide, metric=charts.is_ratio, log=True)))]
    html_page = tmp_path / "alone" / "wide.html"
    html_page.parent.mkdir()
    body = "<h1>wide</h1>" + "".join(chart_html(b, f"chart-{i}") for i, b in enumerate(blocks))
    html_page.write_text(page("wide", [], body, has_charts=True), encoding="utf-8")
    _check_page(browser, html_page)
    for chart in browser.evaluate(html_page, _CHARTS_JS):
        assert 0 < chart["width"] <= chart["column"], chart


def _axe_source() -> str:
    found = axe_path()
    if found is None:
        pytest.skip("axe-core is not installed (.ci/run: npm install axe-core; or set MECHHYBRID_AXE_JS to "
                    "axe.min.js)")
    return found.read_text(encoding="utf-8")


def test_axe_finds_nothing_critical_or_serious(browser, rendered_study, probe_dir):
    """axe-core's WCAG rules on every drawn page, the injection probes' pages included."""
    source = _axe_source()
    found = {}
    failures = rendered_study / "failures.html"  # the failure-mode page: tables and sentences, no charts
    assert failures.exists()
    for page in _pages(rendered_study) + _pages(probe_dir) + [failures]:
        violations = browser.axe(page, source)
        bad = [v for v in violations if v["impact"] in ("critical", "serious")]
        if bad:
            found[f"{page.parent.name}/{page.name}"] = bad
    assert not found, json.dumps(found, indent=1)[:4000]


def test_front_page_screenshot_is_kept(browser, rendered_study):
    """The front page as a reader sees it, left in the test artefacts (MECHHYBRID_TEST_ARTIFACTS)."""
    png = browser.screenshot(rendered_study / "index.html", artifacts_dir() / "report-front-page.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    width = int.from_bytes(data[16:20], "big")
    assert width == 1280


def test_a_page_without_its_runtime_says_so(browser, rendered_study, tmp_path):
    """A shared-runtime page copied away from vega.js: each chart says why it is missing (and logs an error)."""
    import shutil

    shutil.copy(rendered_study / "index.html", tmp_path / "index.html")
    seen = browser.visit(tmp_path / "index.html")
    assert seen["state"]["charts"][0]["text"].startswith("This chart could not be drawn: the chart runtime")
    assert any("vega.js did not load" in line for line in problems_in(seen["events"]))
