"""Every number a reader sees in a finding or a tooltip is a number of results.csv."""

from __future__ import annotations

import csv
import json
import re
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import conftest
import pytest

from reports.findings import effect
from reports.numbers import shown


def _csv(root: Path) -> list[dict]:
    with open(root / "results.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class _Findings(HTMLParser):
    """Collects each <li class="finding">: its <data value> pairs and its text outside data / labels."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.items: list[dict] = []
        self._depth = 0
        self._skip: list[str] = []
        self._data: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "li" and attrs.get("class") == "finding":
            self.items.append({"data": [], "bare": ""})
            self._depth = 1
        elif self._depth:
            if tag == "data":
                self._data = attrs["value"]
                self.items[-1]["data"].append([attrs["value"], ""])
            elif tag == "span" and attrs.get("class") in ("label", "model"):
                self._skip.append(tag)

    def handle_endtag(self, tag):
        if not self._depth:
            return
        if tag == "li":
            self._depth = 0
        elif tag == "data":
            self._data = None
        elif tag == "span" and self._skip:
            self._skip.pop()

    def handle_data(self, data):
        if not self._depth:
            return
        if self._data is not None:
            self.items[-1]["data"][-1][1] += data
        elif not self._skip:
            self.items[-1]["bare"] += data


def _findings(page: Path) -> list[dict]:
    parser = _Findings()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.items


def _is_rounding(shown_text: str, exact: str) -> bool:
    """`shown_text` is `exact` rounded to the digits it shows (a share as '82%' is 100 x exact, rounded)."""
    if shown_text.endswith("%"):
        return _is_rounding(shown_text[:-1], str(Decimal(exact) * 100))
    digits = shown_text.replace(",", "")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return abs(Decimal(digits) - Decimal(exact)) <= Decimal(5) * Decimal(10) ** (-decimals - 1) + Decimal("1e-15")


def test_rounding_for_prose():
    assert shown(35198.2) == "35,198" and shown(0.52149) == "0.521" and shown(1.9) == "1.90"
    assert shown(-0.0123) == "-0.0123" and shown(None) == "n/a" and shown(0) == "0"
    assert shown(57) == "57" and shown(1234567) == "1,234,567" and shown(57.0) == "57.0"  # counts are exact
    for value in (310.4, 0.0001234, 2.5e-7, 999.5, 99.96, 1.0, -42.42):
        assert _is_rounding(shown(value), repr(value)), value


def test_finding_numbers_are_csv_numbers(rendered_study):
    csv_numbers = {row[k] for row in _csv(rendered_study) for k in ("value", "ci_low", "ci_high") if row[k]}
    pages = [rendered_study / "index.html", rendered_study / "compare.html",
             *sorted((rendered_study / "models").glob("*.html"))]
    quoted = 0
    for page in pages:
        for item in _findings(page):
            for exact, text in item["data"]:
                assert exact in csv_numbers, (page.name, exact)
                assert _is_rounding(text, exact), (page.name, text, exact)
                quoted += 1
            # Outside <data> and condition labels, no digit but the CI level.
            assert not re.search(r"\d", item["bare"].replace("95% CI", "")), (page.name, item["bare"])
    assert quoted > 200


def _spec_records(page: Path) -> list[dict]:
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(r'<script type="application/json" class="vega-spec"[^>]*>(.*?)</script>', text, re.S)
    records = []

    def collect(node):
        if isinstance(node, dict):
            if isinstance(node.get("values"), list):
                records.extend(v for v in node["values"] if isinstance(v, dict))
            for key, child in node.items():
                if key == "datasets":
                    for values in child.values():
                        records.extend(values)
                else:
                    collect(child)
        elif isinstance(node, list):
            for child in node:
                collect(child)

    for block in blocks:
        collect(json.loads(block))
    return records


def test_tooltip_numbers_match_csv_rows(rendered_study):
    rows = {(r["model"], r["condition"], r["method"], r["metric"]): r for r in _csv(rendered_study)}
    assert len(rows) == len(_csv(rendered_study))  # the key is unique
    # The charts not drawn from results.csv: a zoo model's training loss and training probe, from the card in
    # its Result JSON (each probe accuracy is a per-length value or the mean the card holds, with its SE).
    models = [json.loads(path.read_text())["model"] for path in (rendered_study / "results").rglob("*.json")]
    card_points = {(str(step), repr(loss)) for m in models for step, loss in m.get("card", {}).get("loss_curve", [])}
    probe_points = set()
    for m in models:
        for p in m.get("card", {}).get("needle_probe_curve", []):
            probe_points.add((m["name"], p["step"], repr(p["needle_mean"]), repr(p["needle_mean_se"])))
            probe_points |= {(f"{k} tokens", p["step"], repr(v), repr(p.get("needle_se", {}).get(k)))
                             for k, v in p["needle"].items()}
    checked = cards = probes = 0
    for page in [rendered_study / "index.html", rendered_study / "compare.html",
                 *sorted((rendered_study / "models").glob("*.html"))]:
        for record in _spec_records(page):
            if "loss_exact" in record:
                assert (str(record["step"]), record["loss_exact"]) in card_points
                cards += 1
                continue
            if "accuracy_exact" in record:
                se = repr(None) if record["se_exact"] == "n/a" else record["se_exact"]
                assert (record["series"], record["step"], record["accuracy_exact"], se) in probe_points, record
                probes += 1
                continue
            row = rows[(record["model"], record["condition"], record["method"], record["metric"])]
            for key, column in (("value_exact", "value"), ("ci_low_exact", "ci_low"), ("ci_high_exact", "ci_high")):
                assert record[key] == (row[column] or "n/a"), (page.name, record["condition"], key)
            assert str(record["n"]) == row["n"] and str(record["seed"]) == row["seed"]
            if "drop_exact" in record:  # the scatter joins a representation row with its ablation effect
                drop = rows[(record["model"], record["condition"], record["method"], record["drop_metric"])]
                assert record["drop_exact"] == drop["value"]
            if record.get("clamp_frac_exact", "n/a") != "n/a":  # a ratio's clamp share: its condition's row
                clamp = rows[(record["model"], record["condition"], record["method"], "clamp_frac")]
                assert record["clamp_frac_exact"] == clamp["value"]
            checked += 1
    # Probe points: 3 + 2 on the comparison page (two cards), 3 x 2 lengths + 2 x 2 on the model pages.
    assert checked > 500 and cards == 3 and probes == 5 + 6 + 4


def _record(value, low, high, metric="drop:arc"):
    return {"value": value, "ci_low": low, "ci_high": high, "metric": metric}


@pytest.mark.parametrize(("record", "resolved"), [
    (_record(0.3, 0.25, 0.35), True),
    (_record(0.02, -0.01, 0.05), False),
    (_record(-0.3, -0.35, -0.25), True),
    (_record(310.0, 280.0, 350.0, "ppl_ratio"), True),
    (_record(1.1, 0.9, 1.3, "ppl_ratio"), False),  # a ratio's no-effect value is 1, not 0
    (_record(0.6, 0.4, 0.8, "ppl_ratio"), True),
])
def test_unresolved_effects_say_so(record, resolved):
    assert ("not resolved" in effect(record)) is not resolved


def test_effect_without_ci_says_so():
    assert "no CI" in effect(_record(0.5, None, None))
    assert "no change in any resample" in effect(_record(0.0, 0.0, 0.0))


def test_ratio_finding_reads_like_the_paper(rendered_study):
    text = (rendered_study / "index.html").read_text(encoding="utf-8")
    assert "raises perplexity" in text and "x (95% CI" in text


def _headline_items(page: Path) -> list[dict]:
    text = page.read_text(encoding="utf-8")
    start = text.index('<ul class="findings headline">')
    parser = _Findings()
    parser.feed(text[start:text.index("</ul>", start) + 5])
    return parser.items


def test_headline_numbers_equal_their_csv_rows(rendered_study):
    """Each front-page sentence quotes, for its model under `zero`: the largest targeted perplexity ratio
    (value, CI low, CI high, and its clamp share when at least 1%), then the largest accuracy drop (value, CI):
    recomputed here from results.csv alone."""
    rows = _csv(rendered_study)
    models = list(dict.fromkeys(r["model"] for r in rows))
    order = ["zoo:gdn-hybrid", "zoo:tiny-qwen2", "zoo/tiny-mamba2"]
    assert sorted(models) == sorted(order)
    items = _headline_items(rendered_study / "index.html")
    assert len(items) == 3
    for model, item in zip(order, items):
        group = [r for r in rows
                 if r["model"] == model and r["method"] == "zero" and r["condition"].startswith("group:")]
        ratio = max((r for r in group if r["metric"] == "ppl_ratio"), key=lambda r: float(r["value"]))
        drop = max((r for r in group if r["metric"].startswith("drop:")), key=lambda r: float(r["value"]))
        clamp = next(r["value"] for r in rows if (r["model"], r["condition"], r["method"], r["metric"])
                     == (model, ratio["condition"], "zero", "clamp_frac"))
        expected = [ratio["value"], ratio["ci_low"], ratio["ci_high"]] + ([clamp] if float(clamp) >= 0.01 else [])
        expected += [drop["value"], drop["ci_low"], drop["ci_high"]]
        assert [exact for exact, _ in item["data"]] == expected, model
        for exact, text in item["data"]:
            assert _is_rounding(text, exact), (model, text, exact)


def _model_m() -> dict:
    """A complete model header (as a Result holds it) named m, with one attention and one SSM layer."""
    return dict(conftest.MODELS["hybrid"], name="m", n_layers=2, components=conftest._components([["attention"],
                                                                                               ["ssm"]]))


def test_a_clamped_ratio_says_so_next_to_its_number():
    """A perplexity ratio whose loss hit the clamp on 82% of tokens (Study A's '44,185,423x') says so in its
    finding and in its headline cell; one at 0.5% does not."""
    from reports import findings, tables
    from reports.views import component_ablation as headline

    model = _model_m()
    rows = [{"condition": c, "method": "zero", "metric": metric, "value": value, "ci_low": low, "ci_high": high,
             "n": 64, "seed": 0}
            for c, metric, value, low, high in (
                ("group:ssm", "ppl_ratio", 44185423.0, 4e7, 5e7), ("group:ssm", "clamp_frac", 0.8213, None, None),
                ("group:attention", "ppl_ratio", 3.5, 3.0, 4.0),
                ("group:attention", "clamp_frac", 0.005, None, None))]
    result = conftest.result(model, "component_ablation", rows)
    records = tables.ppl_ratio_records(result)
    sentence = findings.ppl_ratio_findings(records)[0]
    assert ('<data value="50000000.0">50,000,000</data>x), loss clamped on <data value="0.8213">82%</data> of '
            "tokens; removing") in sentence and sentence.index("44,185,423") < sentence.index("82%")
    assert sentence.count("clamped") == 1  # not for the 0.5% one
    cells = {r["kind"]: r["cell"] for r in headline.headline_records([result])}
    assert cells == {"SSM": ["44,185,423x", "82% clamped"], "attention": ["3.50x"]}


def test_headline_prefers_the_retrieval_benchmark():
    """A model's sentence quotes its drop on the needle (the zoo's retrieval task) even where another
    benchmark dropped more, and says which kind that drop is from."""
    from reports.views import component_ablation as headline

    model = _model_m()
    rows = [{"condition": c, "method": "zero", "metric": metric, "value": value, "ci_low": value - 0.1,
             "ci_high": value + 0.1, "n": 100, "seed": 0}
            for c, metric, value in (("group:ssm", "ppl_ratio", 30.0), ("group:attention", "ppl_ratio", 2.0),
                                     ("group:ssm", "drop:facts", 0.6), ("group:attention", "drop:needle", 0.4),
                                     ("group:ssm", "drop:needle", 0.1))]
    records = headline.headline_records([conftest.result(model, "component_ablation", rows)])
    sentence = headline.headline_findings(records, {"m": "models/m.html#x"})[0]
    assert '<span class="label">attention</span> drops <span class="label">needle</span> accuracy by ' \
           '<data value="0.4">0.400</data>' in sentence
    assert "facts" not in sentence and sentence.endswith('<a href="models/m.html#x">evidence</a>')
