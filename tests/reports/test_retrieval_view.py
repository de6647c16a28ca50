"""The retrieval view (Study B) on the report's pages: Results of the retrieval analysis' row shape, built by
hand for a hybrid and a Transformer control, written through mechhybrid.results and rendered. Each block's
chart holds exactly the rows it draws, each finding quotes numbers of results.csv, blocks without rows are left
out, model names are escaped, and the same Results give the same bytes."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import (MODELS, PROBE, page_text as _page, results_csv as _csv, spec_starting as _spec,
                      spec_values as _values, vega_specs as _specs)

import reports
from mechhybrid.results import Result, write_result, write_results_csv
from reports.views import view_for
from reports.views.retrieval import RetrievalView

HYBRID, CONTROL = MODELS["hybrid"]["name"], MODELS["transformer"]["name"]
HYBRID_PAGE, CONTROL_PAGE = "models/zoo_gdn-hybrid.html", "models/zoo_tiny-qwen2.html"
SCORERS = ("exact", "substring", "string_match_all")
LENGTHS, DEPTHS = (64, 128), (0.0, 0.5, 1.0)
PER_CELL = 4
N = PER_CELL * len(LENGTHS) * len(DEPTHS)


def _row(condition, method, metric, value, coords, ci=0.0625, n=N):
    floor = -1.0 if metric.startswith("drop:") else 0.0
    low, high = (None, None) if ci is None else (max(floor, value - ci), min(1.0, value + ci))
    return {"condition": condition, "method": method, "metric": metric, "value": value, "ci_low": low,
            "ci_high": high, "n": n, "seed": 0, "coords": coords}


def _cell(acc: float, length: int, depth: float) -> float:
    """A cell's accuracy (a multiple of 1/4, as 4 prompts give): lower at the longer length and the middle."""
    return max(0.0, acc - (0.25 if length == LENGTHS[-1] else 0.0) - (0.25 if depth == 0.5 else 0.0))


def _condition(name, method, coords, acc, base=None):
    """The rows the analysis writes for one condition: every scorer's accuracy and drop over the whole grid,
    then the chosen scorer (exact) per length and per cell."""
    rows = []
    for i, scorer in enumerate(SCORERS):
        value = acc / (i + 1)
        rows.append(_row(name, method, f"acc:{scorer}", value, coords))
        if base is not None:
            rows.append(_row(name, method, f"drop:{scorer}", base / (i + 1) - value, coords))
    for length in LENGTHS:
        rows.append(_row(name, method, "acc:exact", _cell(acc, length, 0.0), dict(coords, context_length=length),
                         n=N // len(LENGTHS)))
    for length in LENGTHS:
        for depth in DEPTHS:
            rows.append(_row(name, method, "acc:exact", _cell(acc, length, depth),
                             dict(coords, context_length=length, depth=depth), ci=None, n=PER_CELL))
    return rows


def _curve(base: float, heads: int, selection: str, k95) -> list[dict]:
    """Head sparsification in phase `all`: k = 0..heads, the retention (a multiple of 1/16, 1 from k = heads)
    and accuracy = baseline x retention, another scorer's and a multiple-choice retention, then the k95 summary
    row."""
    rows = []
    for k in range(heads + 1):
        coords = {"k": k, "phase": "all", "heads_fraction": k / heads, "selection": selection}
        name = f"heads:{selection}:all:k{k}"
        retention = min(1.0, (4 * k + 3) / (4 * heads)) if k else 0.0
        rows += _condition(name, "keep_heads", coords, base * retention, base)
        rows.append(_row(name, "keep_heads", "retention:exact", retention, coords))
        # Another retrieval scorer's retention: in the table of rows, not on the curve.
        rows.append(_row(name, "keep_heads", "retention:substring", retention / 2, coords))
        rows.append(_row(name, "keep_heads", "retention:facts", 0.5 + k / (2 * heads), coords, n=64))
    rows.append(_row(f"heads:{selection}:all:k95", "keep_heads", "k95:exact", k95,
                     {"phase": "all", "selection": selection}, ci=None))
    return rows


def _random_curve(base: float, heads: int) -> list[dict]:
    """The random control in phase `all`: per k, every k-subset of 4 heads as a trial (accuracy and retention
    rows), the trials pooled (retention k / heads, so k95 = heads), and the median / min / max over the trials
    of each measure the curve draws; then its k95 row."""
    from math import comb

    rows = []
    for k in range(heads + 1):
        coords = {"k": k, "phase": "all", "heads_fraction": k / heads, "selection": "random"}
        name = f"heads:random:all:k{k}"
        spread = [min(1.0, k / heads + (t - 1) / 16) if 0 < k < heads else k / heads for t in range(comb(heads, k))]
        for trial, retention in enumerate(spread):
            trial_coords = dict(coords, trial=trial)
            rows += _condition(f"{name}:t{trial}", "keep_heads", trial_coords, base * retention, base)[:6]
            rows.append(_row(f"{name}:t{trial}", "keep_heads", "retention:exact", retention, trial_coords))
        rows.append(_row(name, "keep_heads", "acc:exact", base * k / heads, coords))
        rows.append(_row(name, "keep_heads", "retention:exact", k / heads, coords))
        ordered = sorted(spread)
        for metric, scale in (("acc:exact", base), ("retention:exact", 1.0), ("retention:facts", 0.5)):
            for statistic, value in (("median", ordered[len(ordered) // 2]), ("min", ordered[0]),
                                     ("max", ordered[-1])):
                rows.append(_row(name, "keep_heads", metric, value * scale, dict(coords, statistic=statistic),
                                 ci=None, n=len(spread)))
    rows.append(_row("heads:random:all:k95", "keep_heads", "k95:exact", float(heads),
                     {"phase": "all", "selection": "random"}, ci=None))
    return rows


def hybrid_rows() -> list[dict]:
    base = 1.0
    rows = _condition("baseline", "none", {}, base)
    for kind, accs in (("linear_attention", (0.75, 0.875, 0.5)), ("attention", (0.5, 0.125, 0.0))):
        for phase, acc in zip(("prefill", "generation", "all"), accs):
            rows += _condition(f"zero:{kind}:{phase}", "zero", {"kind": kind, "phase": phase}, acc, base)
    rows += _condition("jrt:baseline", "none", {"prompt": "jrt"}, 0.875)
    rows += _condition("jrt:zero:attention:all", "zero", {"kind": "attention", "phase": "all", "prompt": "jrt"},
                       0.25, 0.875)
    rows += _curve(base, 4, "entropy", 3.0) + _curve(base, 4, "static", None) + _random_curve(base, 4)
    for phase, acc in (("prefill", 0.75), ("decode", 0.25), ("all", 0.0)):
        rows += _condition(f"mask_needle:{phase}", "mask", {"phase": phase}, acc, base)
    rows += _condition("focus:2.0", "focus", {"scale": 2.0}, 1.0, base)
    for layer in (1, 3):
        for head in range(4):
            rows.append(_row("retrieval_heads", "none", "retrieval_score", (layer * 4 + head) / 16,
                             {"layer": layer, "head": head}, ci=None, n=N))
    rows += _condition("ablate_heads:top", "zero", {"removal": "top"}, 0.25, base)
    for trial, acc in enumerate((1.0, 0.875, 0.9375)):
        rows += _condition(f"ablate_heads:random:{trial}", "zero", {"removal": "random", "trial": trial}, acc, base)
    return rows


def control_rows() -> list[dict]:
    """A Transformer control whose retrieval failed: baseline within chance, so no k95."""
    base = 0.0
    rows = _condition("baseline", "none", {}, base)
    for phase in ("prefill", "generation", "all"):
        rows += _condition(f"zero:attention:{phase}", "zero", {"kind": "attention", "phase": phase}, 0.0, base)
    rows += _curve(base, 2, "entropy", None)
    for layer in range(2):
        for head in range(2):
            rows.append(_row("retrieval_heads", "none", "retrieval_score", head / 8, {"layer": layer, "head": head},
                             ci=None))
    return rows


def retrieval_result(model: dict, rows: list[dict], **extra) -> Result:
    extra = {"notes": [], "scorer": "exact", "chance": 0.01, "generation_phase": "answer", "haystack": "zoo",
             **extra}
    return Result(analysis="retrieval", model=model, config={"lengths": list(LENGTHS)}, method="mixed",
                  data=[{"name": "zoo-needle-grid", "version": "seed 0", "n": N}], seed=0,
                  versions={"mechhybrid": "0.1.0"}, rows=rows, extra=extra)


def _write(out: Path, results: list[Result]) -> Path:
    for result in results:
        write_result(result, out)
    write_results_csv(out)
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = _write(tmp_path_factory.mktemp("retrieval"), [
        retrieval_result(MODELS["hybrid"], hybrid_rows(), retrieval_threshold=0.25,
                         retrieval_heads=[[3, 3], [3, 2]]),
        retrieval_result(MODELS["transformer"], control_rows())])
    reports.render(out)
    return out



def _findings(page: str) -> list[str]:
    return re.findall(r'<li class="finding">(.*?)</li>', page, re.S)


def test_the_view_is_registered():
    assert isinstance(view_for("retrieval"), RetrievalView)


def test_grid_heatmaps_hold_the_cell_rows_hybrid_first(rendered):
    page = _page(rendered, "compare.html")
    spec = _spec(page, "Heatmaps: needle accuracy (exact")
    drawn = sorted((r["model"], r["condition"], r["context_length"], r["depth"], r["value_exact"])
                   for r in _values(spec))
    cells = sorted((r["model"], r["condition"], int(r["context_length"]), float(r["depth"]), r["value"])
                   for r in _csv(rendered) if r["depth"] and r["method"] != "keep_heads" and not r["trial"])
    # hybrid: baseline, 6 kinds x phases, 2 just-read-twice, 3 hidden, focus, top heads zeroed; control: 4
    assert drawn == cells and len(drawn) == (1 + 6 + 2 + 3 + 1 + 1 + 4) * 6
    assert [part["title"] for part in spec["vconcat"]] == [HYBRID, CONTROL]  # hybrids first, then the controls
    colour = spec["vconcat"][0]["spec"]["encoding"]["color"]
    assert colour["scale"]["domain"] == [0, 1] and colour["title"] == "accuracy (exact)"
    assert "Models: zoo:gdn-hybrid, zoo:tiny-qwen2." in spec["description"]
    hybrid = _spec(_page(rendered, HYBRID_PAGE), "Heatmaps: needle accuracy")
    assert {r["model"] for r in _values(hybrid)} == {HYBRID}
    assert hybrid["vconcat"][0]["facet"]["sort"][:3] == ["baseline", "zero:linear_attention:prefill",
                                                         "zero:linear_attention:generation"]


def test_k_curve_draws_accuracy_and_retention_and_marks_k95(rendered):
    page = _page(rendered, HYBRID_PAGE)
    spec = _spec(page, "Line charts: needle accuracy and retention")
    values = _values(spec)
    curve = [r for r in values if "series" in r and "band_low" not in r]
    rows = [r for r in _csv(rendered) if r["model"] == HYBRID and r["method"] == "keep_heads" and r["k"]
            and not r["context_length"] and r["metric"] in ("acc:exact", "retention:exact", "retention:facts")
            and r["selection"] != "random"]
    assert len(rows) == 2 * 5 * 3
    # Each record twice: once on the k panel, once on the fraction panel.
    assert sorted((r["condition"], r["metric"], r["value_exact"]) for r in curve) == sorted(
        (r["condition"], r["metric"], r["value"]) for r in rows for _ in range(2))
    assert {r["series"] for r in curve} == {"accuracy (exact)", "retention (exact)", "retention (facts)"}
    k95 = [r for r in values if r["metric"] == "k95:exact"]
    assert {(r["selection"], r["k"], r["heads_fraction"]) for r in k95} == {("entropy", 3.0, 0.75)}
    assert [part["title"]["text"] for part in spec["vconcat"]] == [f"{HYBRID}: entropy heads, all",
                                                                    f"{HYBRID}: static heads, all"]
    found = " ".join(_findings(page))
    assert ('retained retrieval reaches 0.95 at k = <data value="3.0">3</data> (<data value="0.75">0.750</data> of '
            'the heads), where retention is <data value="0.9375">0.938</data>') in found
    assert "retention (facts) <data value=\"0.875\">0.875</data>" in found
    assert "no k keeps retained retrieval at 0.95; the most retained is <data value=\"1.0\">" in found


def test_k_curve_draws_the_random_control_as_a_band(rendered):
    """The random control: per k and measure, its median over the trials as a dotted line and a band from
    their minimum to their maximum (the statistic rows of results.csv), on each panel of its model and phase;
    its single trials and its pooled rows are not drawn; its k95 is read from the pooled rows."""
    page = _page(rendered, HYBRID_PAGE)
    spec = _spec(page, "Line charts: needle accuracy and retention")
    bands = [r for r in _values(spec) if "band_low" in r]
    stats = {}
    for r in _csv(rendered):
        if r["model"] == HYBRID and r["selection"] == "random" and r["statistic"]:
            stats.setdefault((r["condition"], r["metric"]), {})[r["statistic"]] = r["value"]
    assert len(stats) == 5 * 3
    drawn = sorted((r["condition"], r["metric"], r["value_exact"], r["band_low_exact"], r["band_high_exact"])
                   for r in bands)
    # Twice on each of the two panels of its model and phase (entropy, static): k and fraction of heads.
    assert drawn == sorted((c, m, v["median"], v["min"], v["max"]) for (c, m), v in stats.items() for _ in range(4))
    assert any(b["band_low"] < b["value"] < b["band_high"] for b in bands)  # a band where the trials differ
    areas = [node for node in _nodes(spec) if _mark_type(node) == "area"]
    assert len(areas) == 4 and all(a["encoding"]["y"]["field"] == "band_low"
                                   and a["encoding"]["y2"]["field"] == "band_high" for a in areas)
    assert any(_mark_type(n) == "line" and n["mark"].get("strokeDash") for n in _nodes(spec))
    assert not [r for r in _values(spec) if re.search(r":t\d+$", str(r.get("condition")))]  # no single trial
    assert not [r for r in _values(spec) if r.get("selection") == "random" and "band_low" not in r]  # nor pooled
    found = " ".join(_findings(page))
    assert ("heads kept at random (trials pooled per k) in <span class=\"label\">all</span>: retained retrieval "
            "reaches 0.95 at k = <data value=\"4.0\">4</data>") in found


def _nodes(node):
    """Every dict of a spec (the charts and layers that may carry a mark)."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def _mark_type(node: dict):
    mark = node.get("mark")
    return mark.get("type") if isinstance(mark, dict) else mark


def test_no_k95_when_the_baseline_is_within_chance(rendered):
    found = " ".join(_findings(_page(rendered, CONTROL_PAGE)))
    assert ("no k95 is drawn, because the baseline accuracy <data value=\"0.0\">0</data> (95% CI "
            "<data value=\"0.0\">0</data>&ndash;<data value=\"0.0625\">0.0625</data>, n=24) is within its "
            "interval of chance (<data value=\"0.01\">0.0100</data>)") in found
    spec = _spec(_page(rendered, CONTROL_PAGE), "Line charts: needle accuracy and retention")
    assert not [r for r in _values(spec) if r.get("metric") == "k95:exact" and r["value"] is not None]


def test_phase_table_cells_are_the_rows(rendered):
    spec = _spec(_page(rendered, HYBRID_PAGE), "Table as a matrix of cells")
    cells = {(r["intervention"], r["column"]): r for r in _values(spec)}
    rows = {(r["condition"], r["metric"]): r for r in _csv(rendered)
            if r["model"] == HYBRID and not r["context_length"]}
    expected = {("attention zeroed", "generation"): "zero:attention:generation",
                ("linear attention zeroed", "prefill"): "zero:linear_attention:prefill",
                ("needle hidden from attention", "decode"): "mask_needle:decode",
                ("needle focus x2.0", "no phase"): "focus:2.0",
                ("attention zeroed, just-read-twice prompts", "all"): "jrt:zero:attention:all"}
    assert len(cells) == 6 + 3 + 1 + 1
    for key, condition in expected.items():
        cell = cells[key]
        assert cell["condition"] == condition
        assert cell["value_exact"] == rows[(condition, "drop:exact")]["value"]
        assert cell["acc_exact"] == rows[(condition, "acc:exact")]["value"]
        assert cell["ci_low_exact"] == rows[(condition, "drop:exact")]["ci_low"]
    assert cells[("attention zeroed", "generation")]["cell"] == ["acc 0.125 [0.0625, 0.188]",
                                                                 "drop 0.875 [0.812, 0.938]"]
    assert spec["vconcat"][0]["layer"][0]["encoding"]["x"]["sort"] == ["prefill", "generation", "decode", "all",
                                                                       "no phase"]


def test_findings_quote_the_csv(rendered):
    """Every number in a finding is a value, a CI bound or a coordinate of its model's rows, or the chance
    level or threshold the Result states; and the phase sentence reads as the issue asks."""
    for page, model, extra in ((HYBRID_PAGE, HYBRID, {"0.01", "0.25"}), (CONTROL_PAGE, CONTROL, {"0.01", "0.1"})):
        text = _page(rendered, page)
        mine = [r for r in _csv(rendered) if r["model"] == model]
        allowed = {r[k] for r in mine for k in ("value", "ci_low", "ci_high", "k", "heads_fraction")} | extra
        quoted = [v for f in _findings(text) for v in re.findall(r'<data value="([^"]*)">', f)]
        assert quoted and set(quoted) <= allowed, set(quoted) - allowed
    found = _findings(_page(rendered, HYBRID_PAGE))
    assert any(f.startswith('<span class="model">zoo:gdn-hybrid</span> (hybrid): zeroing attention drops needle '
                            'accuracy (exact) by <data value="0.5">0.500</data> (95% CI <data value="0.4375">0.438'
                            '</data>&ndash;<data value="0.5625">0.562</data>) during prefill only; by '
                            '<data value="0.875">0.875</data> (95% CI <data value="0.8125">0.812</data>&ndash;'
                            '<data value="0.9375">0.938</data>) during generation only; by <data value="1.0">1.00'
                            '</data>') and f.endswith("throughout (prefill and generation) (n=24 each).")
               for f in found), found
    # What 'generation' covered, said once per model, in its first sentence with a generation phase.
    covers = "&#x27;generation&#x27; covers the answer&#x27;s tokens: the last prompt position"
    reading = [f for f in found if covers in f]
    assert len(reading) == 1 and "zeroing linear attention drops" in reading[0]
    assert any("needle accuracy (exact) with nothing ablated is <data value=\"1.0\">1.00</data>" in f
               and "chance is <data value=\"0.01\">0.0100</data>" in f
               and "on just-read-twice prompts <data value=\"0.875\">" in f for f in found)
    assert any("zeroing the 2 top-scored retrieval heads drops needle accuracy (exact) by "
               "<data value=\"0.75\">0.750</data>" in f and "across 3 draws" in f for f in found)


def test_retrieval_head_map_and_threshold(rendered):
    page = _page(rendered, "compare.html")
    spec = _spec(page, "Heatmaps: each attention head")
    drawn = sorted((r["model"], r["layer"], r["head"], r["value_exact"], r["above"]) for r in _values(spec))
    rows = sorted((r["model"], int(r["layer"]), int(r["head"]), r["value"],
                   float(r["value"]) > (0.25 if r["model"] == HYBRID else 0.1))
                  for r in _csv(rendered) if r["metric"] == "retrieval_score")
    assert drawn == rows and sum(r[-1] for r in drawn) == 7 + 2
    assert [part["title"] for part in spec["vconcat"]] == [HYBRID, CONTROL]
    assert spec["title"] == "outlined: retrieval score above 0.25 / 0.1"
    found = " ".join(_findings(_page(rendered, HYBRID_PAGE)))
    assert ('7 of 8 attention heads score above <data value="0.25">0.250</data> (retrieval heads); the highest is '
            '<span class="label">layer 3, head 3</span> at <data value="0.9375">0.938</data>') in found


def test_front_page_sentence_links_its_evidence(rendered):
    index = _page(rendered, "index.html")
    sentence = next(f for f in _findings(index) if "zoo:gdn-hybrid" in f and "needle accuracy" in f)
    assert ("zeroing attention drops it by <data value=\"0.5\">0.500</data> (95% CI" in sentence
            and "during prefill only; by <data value=\"0.875\">" in sentence and "during generation only" in sentence)
    href = re.search(r'<a href="([^"]+)">evidence</a>', sentence).group(1)
    page, fragment = href.split("#")
    assert page == HYBRID_PAGE and f'id="{fragment}"' in _page(rendered, page)
    assert "A needle (a fact: on the zoo a key and its value) is hidden" in index
    control = next(f for f in _findings(index) if "zoo:tiny-qwen2" in f)
    assert "chance is <data value=\"0.01\">0.0100</data>, within the baseline's interval" in control
    assert "drops it" not in control


def test_baseline_and_zero_rows_only_render_without_the_head_blocks(tmp_path):
    rows = [r for r in hybrid_rows() if r["condition"] == "baseline" or r["condition"].startswith("zero:")]
    out = _write(tmp_path, [retrieval_result(MODELS["hybrid"], rows)])
    reports.render(out)
    page = _page(out, HYBRID_PAGE)
    assert "<h3>Needle accuracy by context length and depth</h3>" in page
    assert "<h3>Needle retrieval: phase x intervention</h3>" in page
    for title in ("Head sparsification", "Retrieval heads", "Zeroing the retrieval heads"):
        assert f"<h3>{title}" not in page
    assert "just-read-twice" not in page


def test_a_model_name_with_markup_stays_text(tmp_path):
    model = dict(MODELS["hybrid"], name=f"zoo:{PROBE}", family=f"fam{PROBE}")
    out = _write(tmp_path, [retrieval_result(model, hybrid_rows(), scorer="exact", generation_phase=PROBE)])
    reports.render(out)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for page in [out / "index.html", out / "compare.html", *(out / "models").glob("*.html")]:
        text = page.read_text(encoding="utf-8")
        assert PROBE not in text and "<script>alert" not in text and "<img" not in text, page.name
    model_page = next((out / "models").glob("*.html")).read_text(encoding="utf-8")
    assert escaped in model_page


def test_same_results_same_bytes(rendered, tmp_path):
    copy = tmp_path / "again"
    shutil.copytree(rendered / "results", copy / "results")
    shutil.copy(rendered / "results.csv", copy / "results.csv")
    reports.render(copy)
    for name in ("index.html", "compare.html", HYBRID_PAGE, CONTROL_PAGE):
        assert (copy / name).read_bytes() == (rendered / name).read_bytes(), name


def test_every_chart_is_valid_vega_lite_and_fits_the_page():
    result = retrieval_result(MODELS["hybrid"], hybrid_rows()).to_dict()
    charts = RetrievalView().charts(result, None)
    assert len(charts) == 5
    for chart in charts:
        spec = chart.to_dict()  # validates against the Vega-Lite schema
        assert len(spec["description"]) > 80 and "Models: zoo:gdn-hybrid." in spec["description"]
        widths = [v for k, v in _walk(spec) if k == "width" and isinstance(v, (int, float))]
        assert all(w <= 1000 for w in widths)  # steps (cells) are measured in the browser test


def _walk(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_retrieval_pages_draw_offline_fit_and_pass_axe(browser, rendered):
    """In headless Chromium: every chart drawn with no console problem, within the text column, named by its
    description; no critical or serious axe-core violation."""
    from test_browser import _CHARTS_JS, _axe_source, _check_page

    source = _axe_source()
    for name in ("index.html", "compare.html", HYBRID_PAGE, CONTROL_PAGE):
        page = rendered / name
        _check_page(browser, page)
        for chart in browser.evaluate(page, _CHARTS_JS):
            assert chart["width"] and chart["width"] <= chart["column"], (name, chart["id"], chart["width"])
            assert chart["label"] == chart["description"], (name, chart["id"])
        bad = [v for v in browser.axe(page, source) if v["impact"] in ("critical", "serious")]
        assert not bad, (name, bad)
