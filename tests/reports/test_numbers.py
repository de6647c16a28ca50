"""Every number a reader sees in a finding or a tooltip is a number of results.csv (issue 7)."""

from __future__ import annotations

import csv
import json
import re
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

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
    """`shown_text` is `exact` rounded to the digits it shows."""
    digits = shown_text.replace(",", "")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return abs(Decimal(digits) - Decimal(exact)) <= Decimal(5) * Decimal(10) ** (-decimals - 1) + Decimal("1e-15")


def test_rounding_for_prose():
    assert shown(35198.2) == "35,198" and shown(0.52149) == "0.521" and shown(1.9) == "1.90"
    assert shown(-0.0123) == "-0.0123" and shown(None) == "n/a" and shown(0) == "0"
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
    # The one chart not drawn from results.csv: a zoo model's training loss, from the card in its Result JSON.
    card_points = {(str(step), repr(loss)) for path in (rendered_study / "results").rglob("*.json")
                   for step, loss in json.loads(path.read_text())["model"].get("card", {}).get("loss_curve", [])}
    checked = cards = 0
    for page in [rendered_study / "compare.html", *sorted((rendered_study / "models").glob("*.html"))]:
        for record in _spec_records(page):
            if "loss_exact" in record:
                assert (str(record["step"]), record["loss_exact"]) in card_points
                cards += 1
                continue
            row = rows[(record["model"], record["condition"], record["method"], record["metric"])]
            for key, column in (("value_exact", "value"), ("ci_low_exact", "ci_low"), ("ci_high_exact", "ci_high")):
                assert record[key] == (row[column] or "n/a"), (page.name, record["condition"], key)
            assert str(record["n"]) == row["n"] and str(record["seed"]) == row["seed"]
            if "drop_exact" in record:  # the scatter joins a representation row with its ablation effect
                drop = rows[(record["model"], record["condition"], record["method"], record["drop_metric"])]
                assert record["drop_exact"] == drop["value"]
            checked += 1
    assert checked > 500 and cards == 3


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
