"""The chart functions: valid Vega-Lite, one per chart type, None when there is nothing to draw, and the
notebook entry points (`chart_for_result`, `reports.chart_for`)."""

from __future__ import annotations

import json

import altair as alt
import pytest
from conftest import MODELS, study_results, toy_result

import reports
from reports import charts, tables
from reports.views import chart_for_result, generic
from reports.palette import FAMILY_COLOURS, NEUTRAL, family_palette, role_of


@pytest.fixture(scope="module")
def results():
    return study_results()


def _ablation(results):
    return [r for r in results if r["analysis"] == "component_ablation"]


def _generic_records(metric, x=None):
    """The toy analysis' rows of `metric` as the generic view's records (`x`: the coordinate they are drawn
    against, None for dots per condition)."""
    panels = generic.metric_panels([toy_result(MODELS["hybrid"]).to_dict()], family_palette(MODELS.values()))
    records = next(records for _, _, _, records in panels if records[0]["metric"] == metric)
    if x is None:
        assert "x" not in records[0]
    else:  # logit_diff = layer + position / 4: the layer is the value's whole part
        assert [r["x"] for r in records] == [int(r["value"]) for r in records]
    return records


def test_every_chart_type_is_valid_vega_lite(results):
    abl = tables.only_method(_ablation(results), "zero")
    rep = [r for r in results if r["analysis"] == "representation"]
    made = {
        "group": charts.group_bars(abl), "ratio": charts.ppl_ratio_bars(abl),
        "heatmap": charts.layer_heatmap(abl, metric=charts.is_drop),
        "heatmap_log": charts.layer_heatmap(abl, metric=charts.is_ratio, log=True),
        "thirds": charts.thirds_bars(abl), "resilience": charts.resilience_strip(_ablation(results)),
        "context": charts.context_lines(abl), "scatter": charts.diagnostic_scatter(rep[0], _ablation(results)[0]),
        "correlation": charts.correlation_bars(rep),
        "generic_points": generic.generic_points(_generic_records("recovered"), family_palette(MODELS.values())),
        "generic_lines": generic.generic_lines(_generic_records("logit_diff", "layer"), "layer", "position",
                                               family_palette(MODELS.values()), whole=True),
        "cka_models": charts.cka_models_heatmap(rep),
    }
    for name, chart in made.items():
        assert chart is not None, name
        spec = chart.to_dict()  # validates against the Vega-Lite schema
        assert spec["$schema"].endswith(f"v{alt.SCHEMA_VERSION.lstrip('v')}.json"), name
        # What a screen reader announces instead of vega's default "Vega visualization": what it shows, whose.
        assert len(spec["description"]) > 80 and "Models: zoo:" in spec["description"], name
        for rule in _marks(spec, "rule"):  # reference lines are described, not unlabeled SVG images
            assert rule["mark"].get("aria") is False, name


def _marks(spec, mark_type: str) -> list[dict]:
    """Every unit spec in `spec` whose mark is `mark_type`."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            mark = node.get("mark")
            if mark == mark_type or (isinstance(mark, dict) and mark.get("type") == mark_type):
                found.append(dict(node, mark=mark if isinstance(mark, dict) else {"type": mark}))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(spec)
    return found


def _luminance(colour: str) -> float:
    """WCAG 2.1 relative luminance of '#RRGGBB'."""
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_family_colours_reach_3_to_1_on_white():
    """WCAG 1.4.11 (non-text contrast): every mark colour a family can get, and the reference grey."""
    for colour in (*FAMILY_COLOURS, NEUTRAL):
        assert (1.05) / (_luminance(colour) + 0.05) >= 3.0, colour
    assert len(set(FAMILY_COLOURS)) == len(FAMILY_COLOURS) == 8


def test_tooltips_carry_exact_text(results):
    spec = charts.group_bars(_ablation(results)[0]).to_dict()
    text = json.dumps(spec)
    assert '"field": "value_exact"' in text and '"field": "ci_low_exact"' in text
    record = tables.group_records(_ablation(results)[0])[0]
    assert record["value_exact"] == repr(record["value"])


def test_nothing_to_draw_gives_none(results):
    empty = dict(_ablation(results)[0], rows=[])
    for make in (charts.group_bars, charts.ppl_ratio_bars, charts.thirds_bars, charts.resilience_strip,
                 charts.context_lines, charts.layer_heatmap):
        assert make(empty) is None


def test_log_axes_get_only_positive_metrics(results):
    for record in tables.context_records(results) + tables.resilience_records(results):
        assert record["metric"] in ("ppl", "ppl_ratio")  # clamp_frac is often 0: no place on a log axis


def test_semantics_are_never_mixed_in_one_chart(results):
    hybrid = _ablation(results)[0]
    assert tables.methods_of(hybrid) == ["zero", "mean", "skip"]
    for method in ("mean", "zero"):
        assert {r["method"] for r in tables.group_records(tables.only_method(hybrid, method))} == {method}


def test_chart_for_result_for_notebooks(results):
    for result in results:  # validation is slow (seconds each); every chart type is validated above
        chart = chart_for_result(result)
        assert isinstance(chart, (alt.TopLevelMixin,))
        assert chart.to_dict(validate=False)["$schema"]

    class Dataclassy:  # what an analyses Result offers
        def __init__(self, d):
            self.d = d

        def to_json(self):
            return json.dumps(self.d)

    assert (reports.chart_for(Dataclassy(results[1])).to_dict(validate=False)
            == chart_for_result(results[1]).to_dict(validate=False))
    with pytest.raises(ValueError):
        chart_for_result(dict(results[0], rows=[]))


def test_families_get_distinct_okabe_ito_colours_hybrids_first(results):
    palette = family_palette(r["model"] for r in results)
    assert list(palette) == ["qwen3_5", "qwen2", "mamba2"]  # hybrid, Transformer control, pure-SSM control
    assert list(palette.values()) == list(FAMILY_COLOURS[:3])
    assert [role_of(r["model"]) for r in results[::2]] == ["hybrid", "transformer", "ssm"]


def test_roles_fall_back_to_component_kinds():
    assert role_of({"family": "new", "components": [{"kind": "attention"}, {"kind": "mlp"}]}) == "transformer"
    assert role_of({"family": "new", "components": [{"kind": "ssm"}]}) == "ssm"
    assert role_of({"family": "new", "components": [{"kind": "ssm"}, {"kind": "attention"}]}) == "hybrid"


def test_models_keep_the_page_order_in_facets(results):
    rep = [r for r in results if r["analysis"] == "representation"]
    order = ["zoo:gdn-hybrid", "zoo:tiny-qwen2", "zoo/tiny-mamba2"]
    assert charts.cka_models_heatmap(rep).to_dict(validate=False)["facet"]["sort"] == order
    # Bars name their model on the y axis (not only a family colour), hybrids first.
    bars = charts.group_bars(tables.only_method(_ablation(results), "zero")).to_dict(validate=False)
    y = bars["spec"]["layer"][0]["encoding"]["y"]
    assert y["field"] == "model" and y["sort"] == order


def test_chart_for_an_analyses_result_object(results):
    """What `Result.chart()` in analyses/ hands over: the dataclass itself (read through its to_json)."""
    schema = pytest.importorskip("analyses.schema")
    obj = schema.Result.from_dict(json.loads(json.dumps(results[3])))  # the Transformer's representation
    assert reports.chart_for(obj).to_dict(validate=False) == chart_for_result(results[3]).to_dict(
        validate=False)


def test_probe_curves_are_valid_one_line_per_series_and_none_when_empty():
    from conftest import CARD, MODELS

    from reports.cards import card_probe_records, models_probe_records

    models = list(MODELS.values())
    per_model = models_probe_records(models)
    assert [r["series"] for r in per_model if r["last"]] == ["zoo:gdn-hybrid", "zoo/tiny-mamba2"]  # no card: none
    palette = family_palette(models)
    spec = charts.probe_curves(per_model, [0.5, 0.9], palette).to_dict()  # validates against the schema
    layers = spec["layer"]
    assert layers[0]["encoding"]["detail"]["field"] == "series" and layers[1]["mark"]["type"] == "text"
    assert layers[0]["encoding"]["color"]["scale"]["range"] == [palette["qwen3_5"], palette["mamba2"]]
    assert [layer["encoding"]["y"]["datum"] for layer in layers if layer["mark"]["type"] == "rule"] == [0.5, 0.9]
    per_length = card_probe_records(CARD)
    assert {r["series"] for r in per_length} == {"128 tokens", "256 tokens"} and len(per_length) == 6
    assert charts.probe_curves(per_length, []).to_dict()["layer"][0]["encoding"]["color"]["field"] == "series"
    assert charts.probe_curves([], [0.5]) is None
    # A card without standard errors draws no whiskers (an empty layer would give vega an infinite extent).
    old = models_probe_records([MODELS["ssm"]])
    assert "errorbar" not in json.dumps(charts.probe_curves(old, [0.5], palette).to_dict())


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    xs = [0.3, 0.1, 0.1, 0.9, 0.5, 0.7, 0.2]
    ys = [2.0, 1.0, 3.0, 9.0, 4.0, 4.0, 0.5]
    assert tables.spearman(xs, ys) == pytest.approx(stats.spearmanr(xs, ys).statistic, abs=1e-12)
    assert tables.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert tables.spearman([1, 2], [1, 2]) is None and tables.spearman([1, 1, 1], [1, 2, 3]) is None


def test_scatter_correlation_is_over_the_points_drawn(results):
    """The representation analysis ranks all 8 components (MLPs included); an ablation that swept only the 4
    mixers joins 4 points per panel: the panel's rho is over those 4, not the analysis' own over 8."""
    stats = pytest.importorskip("scipy.stats")
    hybrid_rep = results[1]
    swept = [r for r in results[0]["rows"]
             if not (r["condition"].startswith("layer:") and r["condition"].endswith(":mlp"))]
    mixers_only = dict(results[0], rows=swept)
    records = tables.diagnostic_records(hybrid_rep, tables.only_method(mixers_only, "zero"))
    panel = [r for r in records if r["diagnostic"] == "cosine" and r["drop_metric"] == "drop:arc"]
    assert len(panel) == 4 and {r["kind"] for r in panel} == {"linear attention", "attention"}
    cosine = {r["condition"]: r["value"] for r in hybrid_rep["rows"] if r["metric"] == "cosine"}
    drop = {r["condition"]: r["value"] for r in mixers_only["rows"]
            if r["metric"] == "drop:arc" and r["method"] == "zero" and r["condition"].startswith("layer:")}
    keys = sorted(drop)
    expected = stats.spearmanr([cosine[k] for k in keys], [drop[k] for k in keys]).statistic
    assert panel[0]["rho_drawn"] == pytest.approx(expected, abs=1e-12) and panel[0]["n_drawn"] == 4
    analysis_rho = next(r["value"] for r in hybrid_rep["rows"] if r["condition"] == "corr:cosine:arc")
    assert f"rho {reports.numbers.shown(expected)}, 4 components" in panel[0]["panel"]
    assert reports.numbers.shown(analysis_rho) not in panel[0]["panel"].split("rho ")[1]
    spec = charts.diagnostic_scatter(hybrid_rep, tables.only_method(mixers_only, "zero")).to_dict(validate=False)
    assert "spearman_exact" not in json.dumps(spec)  # the analysis' rho is on the correlation chart, with its CI


def test_heatmaps_share_one_colour_scale_per_family(results):
    """Every accuracy-drop heatmap (both benchmarks, every model) reads off one scale; each representation
    diagnostic gets its own, because their units differ."""
    abl = tables.only_method(_ablation(results), "zero")
    drops = charts.layer_heatmap(abl, metric=charts.is_drop).to_dict(validate=False)
    assert len(drops["vconcat"]) == 2 and drops["resolve"]["scale"]["color"] == "shared"
    assert [block["title"] for block in drops["vconcat"]] == ["accuracy drop on arc", "accuracy drop on mmlu"]
    scales = [block["spec"]["encoding"]["color"]["scale"] for block in drops["vconcat"]]
    assert all(s == {"scheme": "blueorange", "domainMid": 0, "zero": True} for s in scales)
    rep = [r for r in results if r["analysis"] == "representation"]
    diagnostics = charts.layer_heatmap(rep, "representation").to_dict(validate=False)
    assert len(diagnostics["vconcat"]) == 5 and diagnostics["resolve"]["scale"]["color"] == "independent"
    ratio = charts.layer_heatmap(abl, metric=charts.is_ratio, log=True).to_dict(validate=False)
    assert ratio["spec"]["encoding"]["color"]["legend"]["format"] == ",.3~r"  # '1,350', not '1,353.35974996'


def test_wide_heatmaps_wrap_to_the_page():
    """48 layers x 3 models would be ~2,300 px side by side: the panels wrap, one per row."""
    import random as random_

    from conftest import _components, ablation_rows, result

    models = [{"name": f"zoo:wide-{i}", "family": "qwen2", "topology": "sequential", "n_params": 1, "n_layers": 48,
               "components": _components([["attention"]] * 48)} for i in range(3)]
    rng = random_.Random(0)
    wide = [result(m, "component_ablation", ablation_rows(m, rng)) for m in models]
    spec = charts.layer_heatmap(wide, metric=charts.is_ratio, log=True).to_dict(validate=False)
    assert spec["columns"] == 1 and spec["spec"]["width"] <= 800
