"""results.csv: the fixed columns, then one column per coordinate in declared order, empty where a row has none."""

from __future__ import annotations

import csv
import json

from mechhybrid.results import FIXED_COLUMNS, result_path, write_results_csv
from tests.results.helpers import MODEL, result, row


def _put(out, obj, model="zoo:tiny"):
    path = result_path(out, model, obj["analysis"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def test_columns_in_declared_order_then_others_sorted(tmp_path):
    # A new analysis sweeping its own axes, and a version-1 ablation file (upgraded on read).
    _put(tmp_path, result([row("cell:1", "acc", 0.5, "patch", {"zeta": "z", "depth": 0.25, "context_length": 64,
                                                                 "alpha": 2}),
                           row("baseline", "acc", 0.75)], analysis="needles"))
    _put(tmp_path, result([row("layer:3:attention", "ppl", 2.0, "zero"), row("random:ssm:2", "ppl", 3.0, "zero")],
                          version=1))
    text = write_results_csv(tmp_path).read_text(encoding="utf-8")
    lines = list(csv.reader(text.splitlines()))
    coords = ["removal", "layer", "kind", "context_length", "depth", "trial", "alpha", "zeta"]
    assert lines[0] == list(FIXED_COLUMNS) + coords
    table = [dict(zip(lines[0], line)) for line in lines[1:]]
    by_condition = {line["condition"]: {c: line[c] for c in coords if line[c]} for line in table}
    assert by_condition == {
        "layer:3:attention": {"removal": "layer", "layer": "3", "kind": "attention"},
        "random:ssm:2": {"removal": "random", "kind": "ssm", "trial": "2"},
        "cell:1": {"context_length": "64", "depth": "0.25", "alpha": "2", "zeta": "z"},
        "baseline": {},
    }
    assert [line["model"] for line in table] == [MODEL["name"]] * 4
    assert write_results_csv(tmp_path).read_text(encoding="utf-8") == text


def test_only_the_fixed_columns_without_coordinates(tmp_path):
    _put(tmp_path, result([row()]))
    lines = list(csv.reader(write_results_csv(tmp_path).read_text(encoding="utf-8").splitlines()))
    assert lines[0] == list(FIXED_COLUMNS) and len(lines[1]) == len(FIXED_COLUMNS)
