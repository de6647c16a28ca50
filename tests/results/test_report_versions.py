"""The Study A report from version-1 Results (coordinates packed in condition names) and from version-2 Results
of the same rows (coordinates written beside them) is the same report: the same chart data, the same findings."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import reports
import reports.html
from reports import tables

REPO = Path(__file__).resolve().parents[2]


def _fixtures():
    """tests/reports/conftest.py (Study A's three tiny models, written as version 1), as a plain module."""
    spec = importlib.util.spec_from_file_location("report_fixtures", REPO / "tests" / "reports" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The coordinates of each Study A condition name, by full match: a reference written apart from
# mechhybrid.results.upgrade (which parses names piece by piece).
_NAMES = [
    (r"group:(?P<kind>\w+)", {"removal": "group"}),
    (r"random:(?P<kind>\w+):(?P<trial>\d+)", {"removal": "random"}),
    (r"layer:(?P<layer>\d+):(?P<kind>\w+)", {"removal": "layer"}),
    (r"third:(?P<third>early|middle|late):(?P<kind>\w+)", {"removal": "third"}),
    (r"resilience:(?P<n_removed>\d+):(?P<trial>\d+)", {"removal": "resilience"}),
    (r"resilience:(?P<n_removed>\d+):summary", {"removal": "resilience"}),
    (r"context:(?P<context_length>\d+):baseline", {}),
    (r"context:(?P<context_length>\d+):group:(?P<kind>\w+)", {"removal": "group"}),
    (r"corr:(?P<diagnostic>\w+):(?P<benchmark>\w+)", {}),
    (r"cka_models:(?P<other_model>.+)", {}),
    (r"baseline", {}),
]
_INTS = ("trial", "layer", "n_removed", "context_length")


def _coords(condition: str, metric: str) -> dict:
    for pattern, fixed in _NAMES:
        found = re.fullmatch(pattern, condition)
        if found:
            coords = dict(fixed, **{k: int(v) if k in _INTS else v for k, v in found.groupdict().items()})
            if condition.startswith("cka_models:"):
                coords["layer"] = int(metric.removeprefix("cka:"))
            return coords
    raise AssertionError(f"no reference for {condition}")


def _as_v2(result: dict) -> dict:
    rows = [dict(row, coords=_coords(row["condition"], row["metric"])) for row in result["rows"]]
    return dict(result, schema_version=2, rows=rows, side=[])


def _shown(out: Path) -> dict[str, tuple[list[str], list[str]]]:
    """page -> (the JSON of every chart, every finding), as the page holds them."""
    shown = {}
    for page in sorted(out.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        specs = re.findall(r'<script type="application/json" class="vega-spec"[^>]*>(.*?)</script>', text, re.S)
        findings = re.findall(r'<li class="finding">(.*?)</li>', text, re.S)
        shown[page.relative_to(out).as_posix()] = (specs, findings)
    return shown


@pytest.fixture(scope="module")
def versions():
    fixtures = _fixtures()
    v1 = fixtures.study_results()
    return fixtures, v1, [_as_v2(result) for result in v1]


def test_records_are_the_same_from_either_version(versions):
    _, v1, v2 = versions
    ablation = [r for r in v1 if r["analysis"] == "component_ablation"]
    ablation2 = [r for r in v2 if r["analysis"] == "component_ablation"]
    for name in ("group_records", "ppl_ratio_records", "third_records", "resilience_records", "context_records",
                 "layer_records", "correlation_records", "cka_model_records", "all_records"):
        old, new = getattr(tables, name)(v1), getattr(tables, name)(v2)
        assert old and old == new, name
    resilience = tables.resilience_records(ablation)
    assert tables.resilience_medians(resilience, ablation) == tables.resilience_medians(resilience, ablation2)
    assert len(tables.diagnostic_records(v1[1], tables.only_method(ablation[0], "zero"))) > 0
    assert (tables.diagnostic_records(v1[1], tables.only_method(ablation[0], "zero"))
            == tables.diagnostic_records(v2[1], tables.only_method(ablation2[0], "zero")))


def test_the_rendered_report_is_the_same_from_either_version(versions, tmp_path, monkeypatch):
    fixtures, v1, v2 = versions
    monkeypatch.setattr(reports.html, "vega_bundle", lambda: "/* vega runtime */")  # not what is compared
    shown = []
    for name, results in (("v1", v1), ("v2", v2)):
        out = fixtures.write_results(tmp_path / name, results)
        reports.render(out)
        shown.append(_shown(out))
    assert shown[0] == shown[1]
    charts = sum(len(specs) for specs, _ in shown[0].values())
    findings = sum(len(found) for _, found in shown[0].values())
    assert len(shown[0]) == 6 and charts > 20 and findings > 10, (charts, findings)
