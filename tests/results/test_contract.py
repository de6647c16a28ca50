"""mechhybrid.results: what a valid Result is, one clear line for each way a file is not one, version 1 upgraded."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from mechhybrid.errors import MechHybridError
from mechhybrid.results import (CorruptResultError, Result, Row, check_result, coords_from_v1, read_result,
                                read_result_dict, result_path)
from tests.results.helpers import MODEL, result, row


def _write(tmp_path, obj, analysis="component_ablation"):
    path = result_path(tmp_path, "zoo:tiny", analysis)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


BAD = [
    (result(schema_version=3), "schema_version 3, expected 2 (or 1, upgraded on read)"),
    (dict(result(), colour="red"), "unknown key(s) colour"),
    ({k: v for k, v in result().items() if k != "side"}, "lacks side"),
    (result(model={"name": "m"}), "model lacks family, topology, n_params, n_layers, components"),
    (result(model=dict(MODEL, n_layers="2")), "model n_layers is not an integer"),
    (result(rows=[row() | {"coords": []}]), "row 0 coords is not an object"),
    (result(rows=[row(), row(coords={"layer": 1.0})]), "row 1 coords: layer = 1.0 is not int"),
    (result(rows=[row(coords={"layer": True})]), "layer = True is not int"),
    (result(rows=[row(coords={"Layer": 1})]), "'Layer' is not a coordinate name"),
    (result(rows=[row(coords={"value": 1})]), "'value' is not a coordinate name"),
    (result(rows=[row(coords={"depth": None})]), "depth = None is not int or float"),
    (result(rows=[row(coords={"extra_axis": [1]})]), "extra_axis = [1] is not int or float or str"),
    (result(rows=[{k: v for k, v in row().items() if k != "n"}]), "row 0: lacks n"),
    (result(rows=[row(colour=1)]), "row 0: unknown key(s) colour"),
    (result(rows=[row(value="1.5")]), "row 0 value is not a number or null"),
    (result(rows=[row(ci_low=0.1)]), "row 0: ci_low and ci_high are both set or both null"),
    (result(rows=[row(n=-1)]), "row 0: n must be >= 0"),
    (result(rows=[row(condition="")]), "row 0 condition is not a non-empty string"),
    (result(side=[{"name": "g", "kind": "tree", "file": "x", "shape": [], "version": 1}]),
     "side 0: kind 'tree' is not one of graph, array, table"),
    (result(side=[{"name": "g", "kind": "array", "file": "other.npy", "shape": [2], "version": 1}]),
     "side 0: file 'other.npy' is not 'component_ablation.g.npy'"),
    (result(side=[{"name": "g", "kind": "array", "file": "component_ablation.g.npy", "shape": [-1],
                   "version": 1}]), "side 0: shape is not a list of sizes"),
]


@pytest.mark.parametrize("obj, problem", BAD, ids=[p for _, p in BAD])
def test_each_problem_is_one_line_naming_file_and_problem(tmp_path, obj, problem):
    path = _write(tmp_path, obj)
    with pytest.raises(CorruptResultError) as info:
        read_result_dict(path)
    error = info.value
    assert isinstance(error, MechHybridError)
    assert str(error) == f"corrupt results file {path}: {error.reason}" and "\n" not in str(error)
    assert problem in error.reason and error.path == str(path)
    with pytest.raises(CorruptResultError):
        read_result(path)
    # A parallel study hands errors between processes.
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.path, again.reason) == (str(error), error.path, error.reason)


def test_a_valid_file_reads_back_normalised(tmp_path):
    obj = result(rows=[row("layer:1:mlp", "drop:facts", 0.25, "zero", {"kind": "mlp", "zeta": "z", "layer": 1,
                                                                       "removal": "layer", "alpha": 0.5},
                           ci_low=0.0, ci_high=0.5)])
    back = read_result_dict(_write(tmp_path, obj))
    assert list(back) == ["schema_version", "analysis", "model", "config", "method", "data", "seed", "versions",
                          "rows", "side", "extra"]
    # Declared names in COORD_ORDER, then an analysis' own names, sorted.
    assert list(back["rows"][0]["coords"]) == ["removal", "layer", "kind", "alpha", "zeta"]
    assert Result.from_dict(obj).to_dict() == back


def test_a_nan_is_read_as_missing(tmp_path):
    path = _write(tmp_path, json.dumps(result(rows=[row(value=1.0)])).replace('"value": 1.0', '"value": NaN'))
    assert read_result_dict(path)["rows"][0]["value"] is None


def test_reading_is_lenient_on_method_names_building_is_not(tmp_path):
    """A report renders a row of any method (escaped as text); an analysis may only write the vocabulary."""
    path = _write(tmp_path, result(rows=[row(method="sideways")]))
    assert read_result_dict(path)["rows"][0]["method"] == "sideways"
    with pytest.raises(CorruptResultError, match="Row.method must be one of"):
        read_result(path)
    with pytest.raises(ValueError, match="Result.method must be one of"):
        Result.from_dict(result(method="sideways"))


# Every condition name version 1 knew (docs/results-schema.md), with its coordinates typed by hand.
V1_COORDS = [
    ("component_ablation", "baseline", "ppl", {}),
    ("component_ablation", "group:linear_attention", "drop:facts", {"removal": "group", "kind": "linear_attention"}),
    ("component_ablation", "random:ssm:2", "ppl_ratio", {"removal": "random", "kind": "ssm", "trial": 2}),
    ("component_ablation", "layer:10:attention", "acc:needle", {"removal": "layer", "layer": 10, "kind": "attention"}),
    ("component_ablation", "third:middle:conv", "drop:arc", {"removal": "third", "third": "middle", "kind": "conv"}),
    ("component_ablation", "resilience:6:3", "ppl", {"removal": "resilience", "n_removed": 6, "trial": 3}),
    ("component_ablation", "resilience:18:summary", "ppl_median", {"removal": "resilience", "n_removed": 18}),
    ("component_ablation", "context:256:baseline", "ppl", {"context_length": 256}),
    ("component_ablation", "context:64:group:recurrent", "ppl_ratio",
     {"removal": "group", "kind": "recurrent", "context_length": 64}),
    ("representation", "layer:0:mlp", "cosine", {"removal": "layer", "layer": 0, "kind": "mlp"}),
    ("representation", "corr:kl_logit_lens:facts", "spearman", {"diagnostic": "kl_logit_lens", "benchmark": "facts"}),
    ("representation", "cka_models:zoo:gdn-hybrid", "cka:3", {"other_model": "zoo:gdn-hybrid", "layer": 3}),
    ("representation", "cka_models:/data/models/a:b", "cka:0", {"other_model": "/data/models/a:b", "layer": 0}),
    # Names that do not parse keep no coordinates (and so stay out of the charts, as in version 1).
    ("component_ablation", "layer:x:attention", "ppl", {}),
    ("component_ablation", "third:top:ssm", "ppl", {}),
    ("component_ablation", "random:attention:one", "ppl", {}),
    ("component_ablation", "group:", "ppl", {}),
    ("component_ablation", "context:abc:baseline", "ppl", {}),
    ("representation", "cka_models:zoo:x", "cosine", {}),
    ("some_other_analysis", "layer:1:attention", "x", {}),
]


@pytest.mark.parametrize("analysis, condition, metric, coords", V1_COORDS)
def test_v1_condition_names_give_typed_coords(analysis, condition, metric, coords):
    assert coords_from_v1(analysis, condition, metric) == coords


def test_a_v1_file_is_upgraded_on_read(tmp_path):
    rows = [row(c, m, 0.5, "zero" if c != "baseline" else "none") for a, c, m, _ in V1_COORDS
            if a == "component_ablation"]
    v1 = result(rows, version=1)
    assert "side" not in v1 and "coords" not in v1["rows"][0]
    back = read_result_dict(_write(tmp_path, v1))
    assert back["schema_version"] == 2 and back["side"] == []
    assert [r["coords"] for r in back["rows"]] == [c for a, _, _, c in V1_COORDS if a == "component_ablation"]
    assert [r["condition"] for r in back["rows"]] == [r["condition"] for r in v1["rows"]]  # names unchanged
    # The Result object reads the same, and writes version 2.
    assert json.loads(read_result(_write(tmp_path, v1)).to_json()) == back
    assert check_result(v1) == back


def test_rows_built_by_an_analysis_check_their_coords():
    with pytest.raises(ValueError, match="trial = '1' is not int"):
        Row("random:ssm:1", "zero", "ppl", 1.0, coords={"trial": "1"})
    with pytest.raises(ValueError, match="depth = inf is not finite"):
        Row("x", "zero", "ppl", 1.0, coords={"depth": float("inf")})
    built = Row("x", "zero", "ppl", 1.0, n=np.int64(3), coords={"kind": "ssm", "layer": 2})
    assert built.n == 3 and type(built.n) is int and list(built.coords) == ["layer", "kind"]
