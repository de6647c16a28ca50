"""The patching view (causal tracing) on the report's pages: Results of the patching analysis' row shape, built by
hand for a hybrid and a Transformer control, written through mechhybrid.results and rendered. The heatmaps and
the state map hold exactly their rows, the scatter pairs each estimate with its exact entry, the findings quote
the rows they name, and a token that is HTML stays text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import (MODELS, page_text as _page, results_csv as _csv, spec_starting as _spec,
                      spec_values as _values, vega_specs as _specs)

import reports
from mechhybrid.results import Result, write_result, write_results_csv
from reports.views import view_for
from reports.views.patching import PatchingView

HYBRID, CONTROL = MODELS["hybrid"]["name"], MODELS["transformer"]["name"]
HYBRID_PAGE = "models/zoo_gdn-hybrid.html"
TOKENS = ("<bos>", "the", "<script>alert(1)</script>", "?")
"""The prompt's tokens: the third is HTML, which every page must show as text."""
TASK = "needle_value"


def _row(site_set, site, layer, position, value, ci=0.1, method="patch", metric="logit_diff", **coords):
    coords = {"layer": layer, "site": site, "position": position, "task": TASK, "direction": "denoise",
              "site_set": site_set, "token": TOKENS[position], **coords}
    low, high = (None, None) if ci is None else (value - ci, value + ci)
    return {"condition": f"{TASK}:denoise:{site}:{position}", "method": method, "metric": metric, "value": value,
            "ci_low": low, "ci_high": high, "n": 8, "seed": 0, "coords": coords}


def _baselines():
    return [{"condition": f"{TASK}:{run}", "method": "none", "metric": "logit_diff_raw", "value": value,
             "ci_low": None, "ci_high": None, "n": 8, "seed": 0, "coords": {"task": TASK, "run": run}}
            for run, value in (("clean", 12.5), ("corrupted", -13.25))]


def hybrid_rows() -> list[dict]:
    rows = _baselines()
    for layer in range(2):  # the residual stream: the value token restores it from layer 0, the last token later
        for p in range(4):
            value = 1.0 if p == 2 and layer == 0 else (0.75 if p == 3 and layer == 1 else 0.0)
            rows.append(_row("residual", f"L{layer}.resid_pre", layer, p, value))
    for p in range(4):  # layer 0's state carries the value from the token on
        rows.append(_row("states", "L0.state", 0, p, (0.0, 0.125, 0.625, 0.875)[p], kind="linear_attention"))
    for head in range(2):
        for p in range(4):
            value = 0.5 if (head, p) == (1, 3) else 0.0625 * head
            rows.append(_row("heads", f"L1.attention.h{head}", 1, p, value, kind="attention", head=head))
    for p in range(4):  # atp on the residual stream: right but for the value token
        for layer in range(2):
            exact = next(r for r in rows
                         if r["coords"].get("site") == f"L{layer}.resid_pre" and r["coords"]["position"] == p)
            estimate = 0.25 if exact["value"] == 1.0 else exact["value"]
            rows.append(_row("residual", f"L{layer}.resid_pre", layer, p, estimate, ci=None, method="attribution",
                             estimator="atp"))
    agree = {"task": TASK, "direction": "denoise", "site_set": "residual", "estimator": "atp"}
    rows.append({"condition": f"{TASK}:denoise:residual:atp", "method": "attribution", "metric": "spearman",
                 "value": 0.875, "ci_low": 0.5, "ci_high": 1.0, "n": 8, "seed": 0, "coords": agree})
    rows.append({"condition": f"{TASK}:denoise:residual:atp", "method": "attribution", "metric": "top_k_overlap",
                 "value": 0.5, "ci_low": None, "ci_high": None, "n": 2, "seed": 0, "coords": dict(agree, k=2)})
    missed = _row("residual", "L0.resid_pre", 0, 2, 1.0, ci=None, method="attribution", metric="top_k_missed",
                  estimator="atp", k=2)
    return rows + [missed]


def control_rows() -> list[dict]:
    rows = _baselines()
    for layer in range(2):
        for p in range(4):
            rows.append(_row("residual", f"L{layer}.resid_pre", layer, p, 0.375 if p == 3 else 0.0))
    return rows


def patching_result(model: dict, rows: list[dict]) -> Result:
    return Result(analysis="patching", model=model, config={"pairs": 8}, method="mixed",
                  data=[{"name": "zoo-needle_value", "version": "seed 0", "n": 8}], seed=0,
                  versions={"mechhybrid": "0.1.0"}, rows=rows,
                  extra={"semantics": "patch", "notes": [], "per_pair": True, "attribution": ["atp"]})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("patching")
    for result in (patching_result(MODELS["hybrid"], hybrid_rows()), patching_result(MODELS["transformer"],
                                                                                      control_rows())):
        write_result(result, out)
    write_results_csv(out)
    reports.render(out)
    return out



def _findings(page: str) -> str:
    return " ".join(re.findall(r'<li class="finding">(.*?)</li>', page, re.S))


def test_the_view_is_registered():
    assert isinstance(view_for("patching"), PatchingView)


def test_heatmaps_hold_their_rows_with_the_tokens_on_the_axis(rendered):
    page = _page(rendered, "compare.html")
    drawn = _values(_spec(page, "Heatmaps: the logit difference after patching the site"))
    rows = [r for r in _csv(rendered) if r["method"] == "patch" and r["site_set"] != "states"]
    assert sorted((r["model"], r["site"], r["position"], r["value_exact"]) for r in drawn) == sorted(
        (r["model"], r["site"], int(r["position"]), r["value"]) for r in rows)
    assert {r["axis"] for r in drawn} == {f"{p} {t}" for p, t in enumerate(TOKENS)}
    states = _values(_spec(page, "Heatmaps: the logit difference after patching the recurrent state"))
    assert sorted((r["site"], r["position"]) for r in states) == [("L0.state", p) for p in range(4)]
    assert {r["model"] for r in states} == {HYBRID}


def test_scatter_pairs_each_estimate_with_its_exact_entry(rendered):
    spec = _spec(_page(rendered, HYBRID_PAGE), "Scatter plots: each attribution estimate")
    points = [r for r in _values(spec) if "exact" in r]
    assert len(points) == 8
    exact = {(r["site"], int(r["position"])): r["value"] for r in _csv(rendered)
             if r["method"] == "patch" and r["model"] == HYBRID and r["site_set"] == "residual"}
    assert all(p["exact_exact"] == exact[(p["site"], p["position"])] for p in points)
    assert {p["rho"] for p in points} == {0.875}
    assert spec["vconcat"][0]["hconcat"][0]["title"].endswith("atp: rho 0.875")


def test_findings_quote_the_rows_they_name(rendered):
    found = _findings(_page(rendered, HYBRID_PAGE))
    # The state: 0.625 at token 2 is the earliest to restore half; the residual: layer 0 at token 2.
    assert ('the earliest patch that restores at least <data value="0.5">0.500</data> of the clean run is '
            '<span class="label">L0.state</span> at token <span class="label">2 &lt;script&gt;alert(1)&lt;/script&gt;'
            '</span>: <data value="0.625">0.625</data> (95% CI <data value="0.525">0.525</data>') in found
    assert '<span class="label">L0.resid_pre</span> at token' in found
    assert 'L1.attention.h1</span> at token <span class="label">3 ?</span> <data value="0.5">' in found
    assert ('ranks the entries with Spearman <data value="0.875">0.875</data> (95% CI <data value="0.5">0.500</data>'
            in found)
    assert ('it finds <data value="0.5">0.500</data> of the exact top 2; it misses '
            '<span class="label">L0.resid_pre') in found
    assert '<data value="12.5">12.5</data> on the clean prompts' in found
    control = _findings(_page(rendered, "models/zoo_tiny-qwen2.html"))
    assert ("no single patch restores half of the clean run; the strongest is <span class=\"label\">L0.resid_pre</span>"
            ' at token <span class="label">3 ?</span>: <data value="0.375">') in control


def test_a_token_that_is_html_stays_text(rendered):
    for name in ("compare.html", HYBRID_PAGE, "index.html"):
        page = _page(rendered, name)
        assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in _page(rendered, HYBRID_PAGE)


def test_same_results_same_bytes(rendered, tmp_path):
    first = _page(rendered, HYBRID_PAGE)
    reports.render(rendered)
    assert _page(rendered, HYBRID_PAGE) == first
