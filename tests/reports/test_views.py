"""Views by analysis: a made-up analysis written at test time (schema version 2, coordinates, a side graph) shows
up through the generic view with no change to reports/; a view registered at test time replaces the generic one;
the study's skip notes reach the front page and the model page, escaped."""

from __future__ import annotations

import csv
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from conftest import MODELS, PROBE, TOY, study_results, toy_result, write_results

import reports
from mechhybrid.results import write_result, write_results_csv
from reports import views
from reports.html import ChartBlock
from reports.views.generic import GenericView, metric_panels

HYBRID, TRANSFORMER = "zoo_gdn-hybrid", "zoo_tiny-qwen2"


def _write_toy_study(out: Path) -> Path:
    """Study A's two analyses on the hybrid and the Transformer control, the toy analysis on both beside them,
    and results.csv of all of it (written by mechhybrid.results, as a study would)."""
    write_results(out, [r for r in study_results() if r["model"]["name"] != MODELS["ssm"]["name"]])
    write_result(toy_result(MODELS["hybrid"]), out)
    write_result(toy_result(MODELS["transformer"], offset=10.0), out)
    write_results_csv(out)
    return out


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> Path:
    out = _write_toy_study(tmp_path_factory.mktemp("toy"))
    notes = {"analyses": [{"name": "component_ablation", "summary": "Study A exp. 1-6", "profile": "quick",
                           "zoo_seconds": 498.6}],
             "skipped": [{"model": MODELS["hybrid"]["name"], "analysis": "memory_lens", "reason": f"no state {PROBE}"}],
             "zoo_measured": "measured on the zoo"}
    (out / "study.json").write_text(json.dumps(notes), encoding="utf-8")
    reports.render(out)
    return out


def _page(out: Path, name: str) -> str:
    return (out / name).read_text(encoding="utf-8")


def _csv_values(out: Path, analysis: str) -> dict[tuple, str]:
    """(model, condition, metric) -> the value's text in results.csv."""
    with open(out / "results.csv", encoding="utf-8") as handle:
        return {(r["model"], r["condition"], r["metric"]): r["value"] for r in csv.DictReader(handle)
                if r["analysis"] == analysis}


def _specs(page: str) -> list[dict]:
    return [json.loads(m) for m in re.findall(r'<script type="application/json" class="vega-spec"[^>]*>(.*?)</script>',
                                              page, re.S)]


def test_the_toy_analysis_is_on_the_model_page_through_the_generic_view(toy_dir):
    assert views.view_for(TOY) is views.GENERIC  # nothing in reports/ knows it
    page = _page(toy_dir, f"models/{HYBRID}.html")
    assert '<h2 id="analysis-toy-sweep">toy_sweep</h2>' in page
    # One chart per metric: lines against the coordinate with the most values, dots for the string coordinate.
    assert "<h3>toy_sweep: logit_diff against layer</h3>" in page and "<h3>toy_sweep: recovered</h3>" in page
    # Its numbers: the largest and smallest logit_diff in the findings (hand computed: layer + position / 4),
    # each with its CI, as <data> tags holding results.csv's text.
    assert ('largest at <span class="label">patch:3:2 (layer=3, position=2, phase=prefill)</span>: '
            '<data value="3.5">3.50</data> (95% CI <data value="3.375">3.38</data>&ndash;'
            '<data value="3.625">3.62</data>)') in page
    assert 'smallest at <span class="label">patch:0:0 (layer=0, position=0, phase=prefill)</span>' in page
    csv_values = _csv_values(toy_dir, TOY)
    assert csv_values[(MODELS["hybrid"]["name"], "patch:3:2", "logit_diff")] == "3.5"
    # The table of every row: a column per coordinate, in results.csv's order, each row's value exact.
    header = re.search(r"<summary>All 14 rows</summary><table><tr>(.*?)</tr>", page).group(1)
    assert re.findall(r">([^<]+)</th>", header) == ["condition", "layer", "position", "phase", "method", "metric",
                                                   "value", "ci_low", "ci_high", "n", "seed"]
    assert "<tr><td>patch:2:1</td><td>2</td><td>1</td><td>prefill</td><td>patch</td><td>logit_diff</td>" \
           "<td>2.25</td><td>2.125</td><td>2.375</td><td>20</td><td>0</td></tr>" in page
    assert "<tr><td>recover:decode</td><td></td><td></td><td>decode</td>" in page


def test_the_toy_charts_encode_its_rows_and_say_what_they_show(toy_dir):
    page = _page(toy_dir, f"models/{HYBRID}.html")
    lines = next(s for s in _specs(page) if s.get("description", "").startswith("Line chart: logit_diff"))
    records = lines["data"]["values"]
    assert sorted((r["x"], r["series"], r["value"]) for r in records) == sorted(
        (layer, f"position={p}", layer + p / 4) for layer in range(4) for p in range(3))
    assert lines["spec"]["layer"][0]["encoding"]["x"]["field"] == "x"
    assert lines["facet"]["row"]["field"] == "model"  # model names label the panels
    assert lines["spec"]["layer"][0]["mark"]["type"] == "line"
    assert lines["description"].startswith("Line chart: logit_diff against layer, one line per position,")
    assert lines["spec"]["layer"][0]["encoding"]["x"]["axis"] == {"format": "d", "tickMinStep": 1}  # layers
    assert "Models: zoo:gdn-hybrid." in lines["description"]
    dots = next(s for s in _specs(page) if any(r.get("metric") == "recovered" for r in s.get("data", {}).get(
        "values", [])))
    assert {r["where"]: r["value_exact"] for r in dots["data"]["values"]} == {
        "recover:prefill (phase=prefill)": "0.875", "recover:decode (phase=decode)": "0.625"}
    assert dots["description"].startswith("Dot chart: recovered of every condition")


def test_the_side_file_is_listed_and_linked(toy_dir):
    page = _page(toy_dir, f"models/{HYBRID}.html")
    link = re.search(r'<tr><td><a href="([^"]+)">circuit</a></td><td>graph</td><td>3 x 2</td><td>1</td></tr>', page)
    assert link is not None
    target = (toy_dir / "models" / unquote(link.group(1))).resolve()
    assert target == (toy_dir / "results" / HYBRID / "toy_sweep.circuit.json").resolve() and target.is_file()
    assert json.loads(target.read_text(encoding="utf-8"))["nodes"]  # the node-link graph itself


def test_the_toy_analysis_is_on_the_compare_page_with_both_models(toy_dir):
    page = _page(toy_dir, "compare.html")
    assert "<h2>toy_sweep</h2>" in page
    # After Study A's sections, in the page's analysis order, before the zoo's training curves.
    assert page.index("<h2>Representation</h2>") < page.index("<h2>toy_sweep</h2>") < page.index(
        "<h2>Steps to retrieval</h2>")
    lines = next(s for s in _specs(page) if "against layer" in s.get("description", "") and "logit_diff"
                 in s["description"])
    assert lines["facet"]["row"]["sort"] == ["zoo:gdn-hybrid", "zoo:tiny-qwen2"]  # hybrid first, then control
    by_model = {}
    for r in lines["data"]["values"]:
        by_model.setdefault(r["model"], []).append(r["value"])
    assert max(by_model["zoo:gdn-hybrid"]) == 3.5 and max(by_model["zoo:tiny-qwen2"]) == 13.5
    assert '<data value="13.5">13.5</data>' in page  # the control's largest, quoted in its finding


def test_study_a_keeps_its_own_views_beside_the_toy(toy_dir):
    page = _page(toy_dir, f"models/{HYBRID}.html")
    assert "<h3>Group ablation: accuracy drop (zero ablation)</h3>" in page
    assert "<h3>Diagnostics against drops</h3>" in page
    index = _page(toy_dir, "index.html")
    assert index.count('class="vega-spec"') == 1  # the generic view adds nothing to the front page


def test_skip_notes_on_the_front_page_and_the_model_page_escaped(toy_dir):
    index = _page(toy_dir, "index.html")
    escaped = "no state &lt;script&gt;alert(1)&lt;/script&gt;&quot;&#x27;&lt;img src=x onerror=alert(1)&gt;"
    assert (f'<li><span class="model">zoo:gdn-hybrid</span>: <span class="label">memory_lens</span> skipped: '
            f"{escaped}</li>") in index
    assert "<td>component_ablation</td><td>Study A exp. 1-6</td><td>quick</td><td>498.60</td>" in index
    hybrid = _page(toy_dir, f"models/{HYBRID}.html")
    assert f'<h2>Not run on this model</h2><ul><li><span class="label">memory_lens</span>: {escaped}</li></ul>' \
        in hybrid
    assert "Not run on this model" not in _page(toy_dir, f"models/{TRANSFORMER}.html")
    assert PROBE not in index and PROBE not in hybrid


def test_a_damaged_study_file_is_one_line_and_the_report_renders(tmp_path):
    write_results(tmp_path, study_results()[4:6])
    (tmp_path / "study.json").write_text('{"skipped": [{"model": 1}]}', encoding="utf-8")
    reports.render(tmp_path)
    index = _page(tmp_path, "index.html")
    assert re.search(r'<p class="problem">[^<]*study\.json: not the notes `mechhybrid study` writes', index)


class _ToyView(views.View):
    """A view written for the toy analysis: one chart of its own, one headline sentence."""

    def model_blocks(self, result, entry, palette):
        import altair as alt

        rows = [r for r in result["rows"] if r["metric"] == "recovered"]
        chart = alt.Chart(alt.Data(values=rows)).mark_bar().encode(x="value:Q", y="condition:N").properties(
            description="Bar chart: share recovered per phase.")
        return [ChartBlock("Recovered by patching", [f"{len(rows)} phases."], chart.to_dict(validate=False),
                           "toy")]

    def headline(self, models, palette):
        names = [m.model["name"] for m in models if TOY in m.results]
        return views.Headline([f"The toy sweep ran on {len(names)} models."], None)


def test_a_view_registered_at_test_time_replaces_the_generic_one(tmp_path, monkeypatch):
    monkeypatch.setattr(views, "_VIEWS", dict(views._VIEWS))  # the registration ends with the test
    views.register_view(TOY, _ToyView())
    assert isinstance(views.view_for(TOY), _ToyView) and isinstance(views.view_for("other"), GenericView)
    out = _write_toy_study(tmp_path)
    reports.render(out)
    page = _page(out, f"models/{HYBRID}.html")
    assert "<h3>Recovered by patching</h3>" in page and '<li class="finding">2 phases.</li>' in page
    assert "toy_sweep: logit_diff" not in page  # the generic charts are gone
    assert '<tr><td><a href="../results/zoo_gdn-hybrid/toy_sweep.circuit.json">circuit</a>' in page  # the shell's
    index = _page(out, "index.html")
    assert '<li class="finding">The toy sweep ran on 2 models.</li>' in index
    assert index.index('id="chart-headline"') < index.index("The toy sweep ran")  # after Study A's headline
    with pytest.raises(TypeError):
        views.register_view("x", object())


def test_generic_axis_needs_a_number_on_every_row():
    """Lines only over a coordinate that every row of the metric has as a number; else dots per condition."""
    model = MODELS["hybrid"]

    def rows(coords_list):
        return [{"condition": f"c{i}", "method": "none", "metric": "m", "value": float(i), "ci_low": None,
                 "ci_high": None, "n": 1, "seed": 0, "coords": coords} for i, coords in enumerate(coords_list)]

    def kind(coords_list):
        result = {"schema_version": 2, "analysis": "a", "model": model, "rows": rows(coords_list), "data": []}
        (_, _, chart, records), = metric_panels([result], {"qwen3_5": "#0072B2"})
        return "x" in records[0], chart.to_dict(validate=False)["spec"]["layer"][0]["mark"]["type"]

    assert kind([{"depth": 0.0}, {"depth": 0.5}, {"depth": 1.0}]) == (True, "line")
    assert kind([{"depth": 0.0}, {"depth": 0.5}, {}]) == (False, "point")  # one row lacks it
    assert kind([{"position": 1}, {"position": "last"}]) == (False, "point")  # a named position
    assert kind([{"k": 1}, {"k": 1}]) == (False, "point")  # one value: nothing to draw against
    # The coordinate with the most values wins; the other one makes the lines.
    assert kind([{"layer": 0, "head": h} for h in range(3)] + [{"layer": 1, "head": h} for h in range(3)]) == (
        True, "line")


def test_chart_for_a_result_without_a_view(toy_dir):
    result = toy_result(MODELS["hybrid"])
    spec = reports.chart_for(result).to_dict(validate=False)
    assert len(spec["vconcat"]) == 2  # one chart per metric


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        self.hrefs += [v for k, v in attrs if k == "href"]


def test_every_link_of_the_toy_pages_resolves(toy_dir):
    for page in [toy_dir / "index.html", toy_dir / "compare.html", *sorted((toy_dir / "models").glob("*.html"))]:
        parser = _Parser()
        parser.feed(page.read_text(encoding="utf-8"))
        for href in parser.hrefs:
            path = unquote(href.split("#")[0])
            if path:
                assert (page.parent / path).exists(), (page.name, href)


def test_same_results_same_bytes(toy_dir, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(toy_dir / "results", again / "results")
    for name in ("results.csv", "study.json"):
        shutil.copy(toy_dir / name, again / name)
    reports.render(again)
    for page in ("index.html", "compare.html", f"models/{HYBRID}.html"):
        assert (again / page).read_bytes() == (toy_dir / page).read_bytes(), page


def test_toy_pages_in_a_browser(browser, toy_dir):
    """The generic view's charts draw offline without errors, fit the page, keep their names, and pass axe-core."""
    from test_browser import _CHARTS_JS, _axe_source, _check_page

    source = _axe_source()
    for page in (toy_dir / "index.html", toy_dir / "compare.html", toy_dir / "models" / f"{HYBRID}.html"):
        _check_page(browser, page)
        for chart in browser.evaluate(page, _CHARTS_JS):
            assert 0 < chart["width"] <= chart["column"], (page.name, chart["id"], chart["width"])
            assert chart["label"] == chart["description"] and chart["figure"] == chart["title"], chart
        bad = [v for v in browser.axe(page, source) if v["impact"] in ("critical", "serious")]
        assert not bad, (page.name, bad)
