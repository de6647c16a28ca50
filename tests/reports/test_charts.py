"""The chart functions: valid Vega-Lite, one per chart type, None when there is nothing to draw, and the
notebook entry points (`chart_for_result`, `reports.chart_for`)."""

from __future__ import annotations

import json

import altair as alt
import pytest
from conftest import study_results

import reports
from reports import charts, tables
from reports.palette import OKABE_ITO, family_palette, role_of


@pytest.fixture(scope="module")
def results():
    return study_results()


def _ablation(results):
    return [r for r in results if r["analysis"] == "component_ablation"]


def test_every_chart_type_is_valid_vega_lite(results):
    abl = tables.only_method(_ablation(results), "zero")
    rep = [r for r in results if r["analysis"] == "representation"]
    made = {
        "group": charts.group_bars(abl), "ratio": charts.ppl_ratio_bars(abl),
        "heatmap": charts.layer_heatmap(abl, metric=charts.is_drop),
        "heatmap_log": charts.layer_heatmap(abl, metric=charts.is_ratio, log=True),
        "thirds": charts.thirds_bars(abl), "resilience": charts.resilience_strip(_ablation(results)),
        "context": charts.context_lines(abl), "scatter": charts.diagnostic_scatter(rep[0], _ablation(results)[0]),
        "correlation": charts.correlation_bars(rep), "generic": charts.generic_points(rep[0]),
        "cka_models": charts.cka_models_heatmap(rep),
    }
    for name, chart in made.items():
        assert chart is not None, name
        spec = chart.to_dict()  # validates against the Vega-Lite schema
        assert spec["$schema"].endswith(f"v{alt.SCHEMA_VERSION.lstrip('v')}.json"), name


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
        chart = charts.chart_for_result(result)
        assert isinstance(chart, (alt.TopLevelMixin,))
        assert chart.to_dict(validate=False)["$schema"]

    class Dataclassy:  # what an analyses Result offers
        def __init__(self, d):
            self.d = d

        def to_json(self):
            return json.dumps(self.d)

    assert (reports.chart_for(Dataclassy(results[1])).to_dict(validate=False)
            == charts.chart_for_result(results[1]).to_dict(validate=False))
    with pytest.raises(ValueError):
        charts.chart_for_result(dict(results[0], rows=[]))


def test_families_get_distinct_okabe_ito_colours_hybrids_first(results):
    palette = family_palette(r["model"] for r in results)
    assert list(palette) == ["qwen3_5", "qwen2", "mamba2"]  # hybrid, Transformer control, pure-SSM control
    assert list(palette.values()) == list(OKABE_ITO[:3])
    assert [role_of(r["model"]) for r in results[::2]] == ["hybrid", "transformer", "ssm"]


def test_roles_fall_back_to_component_kinds():
    assert role_of({"family": "new", "components": [{"kind": "attention"}, {"kind": "mlp"}]}) == "transformer"
    assert role_of({"family": "new", "components": [{"kind": "ssm"}]}) == "ssm"
    assert role_of({"family": "new", "components": [{"kind": "ssm"}, {"kind": "attention"}]}) == "hybrid"


def test_models_keep_the_page_order_in_facets(results):
    rep = [r for r in results if r["analysis"] == "representation"]
    spec = charts.cka_models_heatmap(rep).to_dict(validate=False)
    assert spec["facet"]["column"]["sort"] == ["zoo:gdn-hybrid", "zoo:tiny-qwen2", "zoo/tiny-mamba2"]


def test_chart_for_an_analyses_result_object(results):
    """What `Result.chart()` in analyses/ hands over: the dataclass itself (read through its to_json)."""
    schema = pytest.importorskip("analyses.schema")
    obj = schema.Result.from_dict(json.loads(json.dumps(results[3])))  # the Transformer's representation
    assert reports.chart_for(obj).to_dict(validate=False) == charts.chart_for_result(results[3]).to_dict(
        validate=False)
