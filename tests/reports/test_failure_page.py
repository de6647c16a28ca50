"""The failure-mode page: each hybrid next to the controls, quoted from hand-made Results whose numbers the tests
know, so each sentence can be checked against the row it must quote."""

from __future__ import annotations

import html
import re

import pytest

from reports.failure_modes import control_check, perturbations
from reports.load import load_results
from reports.render import render

from conftest import MODELS, slug, write_results

HYBRID = dict(MODELS["hybrid"], card={"recipe": {"seq_len": 256}})
TRANSFORMER, SSM = MODELS["transformer"], MODELS["ssm"]


def _row(condition, metric, value, low=None, high=None, n=64, coords=None, method="zero"):
    return {"condition": condition, "method": method, "metric": metric, "value": value, "ci_low": low,
            "ci_high": high, "n": n, "seed": 0, "coords": coords or {}}


def _result(model, analysis, rows, **extra):
    return {"schema_version": 2, "analysis": analysis, "model": model, "config": {}, "method": "mixed",
            "data": [{"name": "needle", "version": "zoo-lang-1", "n": 64}], "seed": 0,
            "versions": {"mechhybrid": "0.1.0"}, "rows": rows, "side": [], "extra": extra}


def _ablation(model, kinds, drops, ratios):
    rows = [_row("baseline", "acc:needle", 0.9, 0.85, 0.95, method="none")]
    for kind, (drop, low, high) in zip(kinds, drops):
        rows.append(_row(f"group:{kind}", "drop:needle", drop, low, high, coords={"removal": "group", "kind": kind}))
    for trial, ratio in enumerate(ratios):
        rows.append(_row(f"resilience:1:{trial}", "ppl_ratio", ratio, method="skip",
                         coords={"removal": "resilience", "trial": trial, "n_removed": 1}))
    rows.append(_row("resilience:1:summary", "ppl_ratio_median", sorted(ratios)[len(ratios) // 2], n=len(ratios),
                     method="skip", coords={"removal": "resilience", "n_removed": 1}))
    return _result(model, "component_ablation", rows)


def _retrieval(model, base, k95, hidden, by_length):
    rows = [_row("baseline", "acc:exact", *base, n=24, method="none")]
    for length, (value, low, high) in by_length.items():
        rows.append(_row("baseline", "acc:exact", value, low, high, n=6, method="none",
                         coords={"context_length": length}))
    if k95 is not None:
        rows.append(_row("heads:entropy:all:k95", "k95:exact", k95, n=5, method="keep_heads",
                         coords={"selection": "entropy", "phase": "all"}))
        rows.append(_row("heads:l2:all:k95", "k95:exact", 4.0, n=5, method="keep_heads",
                         coords={"selection": "l2", "phase": "all"}))
    for phase, (value, low, high) in zip(("prefill", "generation"), hidden):
        rows.append(_row(f"mask_needle:{phase}", "acc:exact", value, low, high, n=24, method="mask",
                         coords={"phase": phase}))
    return _result(model, "retrieval", rows, scorer="exact", chance=0.01)


def _study(transformer_base=(0.95, 0.9, 1.0)):
    return [
        _ablation(HYBRID, ("attention", "linear_attention"), ((0.8, 0.7, 0.9), (0.3, 0.2, 0.4)), (1.5, 2.0, 90.0)),
        _ablation(TRANSFORMER, ("attention",), ((0.05, 0.0, 0.1),), (1.1, 1.3, 4.0)),
        _ablation(SSM, ("ssm",), ((0.6, 0.5, 0.7),), (1.2, 1.4, 2.5)),
        _retrieval(HYBRID, (1.0, 1.0, 1.0), 1.0, ((0.25, 0.1, 0.4), (0.9, 0.8, 1.0)),
                   {128: (1.0, 1.0, 1.0), 256: (1.0, 1.0, 1.0), 512: (0.5, 0.3, 0.7)}),
        _retrieval(TRANSFORMER, transformer_base, 3.0, ((0.0, 0.0, 0.0), (0.95, 0.9, 1.0)),
                   {128: (1.0, 1.0, 1.0), 512: (0.0, 0.0, 0.0)}),
    ]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = write_results(tmp_path_factory.mktemp("failures"), _study())
    render(out)
    return (out / "failures.html").read_text(encoding="utf-8")


def _text(page_html: str) -> str:
    body = page_html[page_html.index("<main>"):page_html.index("</main>")]
    return html.unescape(re.sub(r"<[^>]+>", "", body))


def test_each_perturbation_quotes_its_rows(page):
    text = _text(page)
    # group ablation: the hybrid's attention drop, against the Transformer's, with the overlap verdict
    assert ("zeroing every attention mixer: drop in needle accuracy 0.800 (95% CI 0.700–0.900, n = 64)" in text)
    assert ("zeroing every attention mixer: drop in needle accuracy 0.0500 (95% CI 0–0.100, n = 64) (the "
            "intervals do not overlap)") in text
    # random layer removal: the median of trials with their range
    assert "1 of 4 layers skipped at random (3 trials): median perplexity ratio 2.00 (trials 1.50–90.0" in text
    # head sparsification: the entropy rule first, the SSM control said to have no heads
    assert "keeps 95% of retrieval (entropy choice, phase all) 1 (no interval, n = 5)" in text
    assert "phase all) 3 (no interval" in text  # the Transformer control's k
    assert "zoo/tiny-mamba2: no attention heads" in text
    # the needle hidden in prefill and in generation
    assert "needle hidden from attention in prefill: accuracy 0.250 (95% CI 0.100–0.400, n = 24)" in text
    assert "while the answer is generated: accuracy 0.900" in text
    # context: the longest length within 256 tokens and the longest beyond, for the model with a training length
    assert "needle accuracy at 256 tokens (within its 256-token training length) 1.00" in text
    assert "needle accuracy at 512 tokens (beyond its 256-token training length) 0.500" in text
    assert "zoo:tiny-qwen2: no training length on record" in text
    assert "no circuits result" in text


def test_numbers_trace_to_rows(page):
    # every number shown carries its exact value, one of the rows' numbers
    rows = [r for res in _study() for r in res["rows"]]
    known = {repr(v) for r in rows for v in (r["value"], r["ci_low"], r["ci_high"]) if v is not None}
    known |= {repr(0.01)}  # the chance level, from the retrieval Result's extra
    shown = set(re.findall(r'<data value="([^"]+)">', page))
    assert shown and shown <= known


def test_a_control_that_does_not_retrieve_is_said_first(tmp_path):
    out = write_results(tmp_path, _study(transformer_base=(0.0417, 0.0, 0.125)))
    loaded = load_results(out)
    check = control_check(loaded.models)
    assert check.retrieves is False and check.chance == 0.01
    render(out)
    text = _text((out / "failures.html").read_text(encoding="utf-8"))
    first = text.index("does not retrieve")
    assert first < text.index("Group ablation")


def test_a_retrieving_control(page):
    assert "The Transformer control zoo:tiny-qwen2 retrieves: intact accuracy 0.950 (95% CI 0.900–1.00" in _text(page)


def test_model_names_are_escaped(tmp_path):
    evil = dict(HYBRID, name='<script>alert(1)</script>')
    out = write_results(tmp_path, [_ablation(evil, ("attention",), ((0.8, 0.7, 0.9),), (1.5, 2.0, 3.0)),
                                   _ablation(TRANSFORMER, ("attention",), ((0.05, 0.0, 0.1),), (1.1, 1.3, 4.0))])
    render(out)
    page_html = (out / "failures.html").read_text(encoding="utf-8")
    assert "<script>alert(1)" not in page_html and "&lt;script&gt;alert(1)" in page_html


def test_no_page_without_a_hybrid(tmp_path):
    out = write_results(tmp_path, [_ablation(TRANSFORMER, ("attention",), ((0.05, 0.0, 0.1),), (1.1, 1.3, 4.0))])
    render(out)
    assert not (out / "failures.html").exists()
    assert "failures.html" not in (out / "index.html").read_text(encoding="utf-8")


def test_perturbations_in_order_and_index_link(tmp_path):
    out = write_results(tmp_path, _study())
    loaded = load_results(out)
    assert [p.key for p in perturbations(loaded.models)] == [
        "group", "random_layers", "heads", "needle_hiding", "context", "circuit"]
    render(out)
    assert '<a href="failures.html">' in (out / "index.html").read_text(encoding="utf-8")
    assert slug(HYBRID["name"]) in "".join(m.slug for m in loaded.models)
