"""The results contract as the analyses use it (analyses.schema): JSON round trip, deterministic CSV, corrupt
files named, torch-free import."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from analyses.schema import (FIXED_COLUMNS, CorruptResultError, Result, Row, model_slug, read_result, result_path,
                             write_result, write_results_csv)
from mechhybrid.errors import MechHybridError


def _result(name="zoo:tiny", analysis="component_ablation", values=(0.1, 1 / 3)):
    model = {"name": name, "family": "qwen2", "topology": "sequential", "n_params": 10, "n_layers": 2,
             "components": [{"layer": 0, "kind": "attention", "path": "model.layers.0.self_attn"}]}
    layer = lambda i: {"removal": "layer", "layer": i, "kind": "attention"}  # noqa: E731
    rows = [Row("layer:10:attention", "zero", "drop:facts", values[0], -0.01, 0.2, n=5, seed=0, coords=layer(10)),
            Row("layer:2:attention", "zero", "drop:facts", values[1], None, None, n=5, seed=0, coords=layer(2)),
            Row("baseline", "none", "ppl", float("nan"), n=5, seed=0)]
    return Result(analysis=analysis, model=model, config={"seed": 0}, method="zero",
                  data=[{"name": "facts", "version": "v1", "n": 5}], seed=0,
                  versions={"torch": "x"}, rows=rows, extra={"why": float("inf")})


def test_round_trip_and_nan_as_null(tmp_path):
    path = write_result(_result(), tmp_path)
    assert path == result_path(tmp_path, "zoo:tiny", "component_ablation")
    assert path.parent.name == "zoo_tiny" == model_slug("zoo:tiny")
    back = read_result(path)
    assert back.rows[1].value == 1 / 3  # repr floats: exact
    assert back.rows[2].value is None and back.extra["why"] is None
    assert back.to_json() == path.read_text()
    on_disk = json.loads(path.read_text())
    assert on_disk["schema_version"] == 2 and on_disk["side"] == []
    # Coordinates are written in the declared order, whatever order the analysis gave them in.
    assert list(on_disk["rows"][0]["coords"]) == ["removal", "layer", "kind"]
    assert on_disk["rows"][2]["coords"] == {}


def test_csv_columns_sorted_deterministic(tmp_path):
    write_result(_result("b/model"), tmp_path)
    write_result(_result("a:model", "representation"), tmp_path)
    text = write_results_csv(tmp_path).read_text()
    lines = list(csv.reader(text.splitlines()))
    assert tuple(lines[0]) == FIXED_COLUMNS + ("removal", "layer", "kind")
    assert [line[0] for line in lines[1:]] == ["a:model"] * 3 + ["b/model"] * 3
    conds = [line[3] for line in lines[1:4]]
    assert conds == ["baseline", "layer:2:attention", "layer:10:attention"]  # numbers sort as numbers
    assert lines[1][11:] == ["", "", ""] and lines[3][11:] == ["layer", "10", "attention"]
    assert repr(1 / 3) in text and ",," in text  # exact floats; null CI as empty cells
    assert write_results_csv(tmp_path).read_text() == text


def test_row_checks():
    with pytest.raises(ValueError, match="method"):
        Row("x", "sideways", "m", 1.0)
    with pytest.raises(ValueError, match="both set or both null"):
        Row("x", "zero", "m", 1.0, 0.0, None)
    with pytest.raises(ValueError, match="layer = '3' is not int"):
        Row("x", "zero", "m", 1.0, coords={"layer": "3"})
    with pytest.raises(ValueError, match="model lacks"):
        _result().__class__(**{**_result().__dict__, "model": {"name": "x"}})
    assert Row("x", "patch", "m", 1.0).method == "patch"  # not only ablations


@pytest.mark.parametrize("text, problem", [
    ("{", "corrupt or truncated JSON"), ("[]", "top level is not an object"),
    ('{"schema_version": 2}', "lacks analysis"), ('{"analysis": "x"}', "schema_version None"),
    ("\xff", "unreadable"),
])
def test_corrupt_json_names_the_file(tmp_path, text, problem):
    path = result_path(tmp_path, "m", "component_ablation")
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="latin-1")
    with pytest.raises(CorruptResultError, match="component_ablation.json") as info:
        read_result(path)
    assert isinstance(info.value, MechHybridError) and "\n" not in str(info.value)
    assert problem in str(info.value)
    with pytest.raises(MechHybridError):
        write_results_csv(tmp_path)


def test_schema_imports_without_torch():
    code = ("import sys\nclass Block:\n def find_spec(self, name, *a):\n"
            "  if name.split('.')[0] in ('torch', 'nnsight', 'transformers'): raise ImportError(name)\n"
            "sys.meta_path.insert(0, Block())\nimport analyses.schema, analyses.summary\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=".")
    assert out.stdout.strip() == "ok", out.stderr
