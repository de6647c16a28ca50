"""The Study A analyses write coordinates on every row, derived where each condition is built; a version-1 copy
of the same file (rows without coordinates) reads back to the very same Result."""

from __future__ import annotations

import json

import pytest

from analyses.ablation import ComponentAblationConfig
from analyses.ablation import run as run_ablation
from analyses.representation import RepresentationConfig
from analyses.representation import run as run_representation
from mechhybrid.results import coords_from_v1, read_result_dict, write_result
from tests.analyses.conftest import make_tasks
from tests.conftest import build_tiny


@pytest.fixture(scope="module")
def hm(tmp_path_factory):
    import mechhybrid

    return mechhybrid.load(build_tiny("qwen2"))


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory):
    """Another tiny model in a folder whose name holds a colon (names are never re-parsed)."""
    folder = tmp_path_factory.mktemp("models") / "tiny:other"
    build_tiny("qwen2", seed=3).save_pretrained(folder)
    return str(folder)


def _as_v1(path) -> dict:
    obj = json.loads(path.read_text(encoding="utf-8"))
    rows = [{k: v for k, v in row.items() if k != "coords"} for row in obj["rows"]]
    return {**{k: v for k, v in obj.items() if k != "side"}, "schema_version": 1, "rows": rows}


def _check(result, tmp_path):
    for row in result.rows:
        assert row.coords == coords_from_v1(result.analysis, row.condition, row.metric), row
        assert row.coords or row.condition == "baseline", row
    path = write_result(result, tmp_path / "v2")
    v1 = tmp_path / "v1" / path.relative_to(tmp_path / "v2")
    v1.parent.mkdir(parents=True)
    v1.write_text(json.dumps(_as_v1(path)), encoding="utf-8")
    assert read_result_dict(v1) == read_result_dict(path)


def test_component_ablation_rows_carry_their_coords(hm, tmp_path):
    cfg = ComponentAblationConfig(context_lengths=(8,), resilience_removed=(1,), batch_size=4)
    result = run_ablation(hm, cfg, tasks=make_tasks())
    removals = {row.coords.get("removal") for row in result.rows}
    assert removals == {None, "group", "random", "layer", "third", "resilience"}
    assert {row.coords["context_length"] for row in result.rows if "context_length" in row.coords} == {8}
    summary = [row for row in result.rows if row.condition == "resilience:1:summary"]
    assert summary and all(row.coords == {"removal": "resilience", "n_removed": 1} for row in summary)
    _check(result, tmp_path)


def test_representation_rows_carry_their_coords(hm, other_dir, tmp_path):
    cfg = RepresentationConfig(diag_items=2, diag_length=10, compare_with=(other_dir,))
    result = run_representation(hm, cfg, tasks=make_tasks())
    cka = [row for row in result.rows if row.condition.startswith("cka_models:")]
    assert [row.coords for row in cka] == [{"layer": i, "other_model": other_dir} for i in range(4)]
    corr = {(row.coords["diagnostic"], row.coords["benchmark"]) for row in result.rows if row.metric == "spearman"}
    assert ("cosine", "facts") in corr and len(corr) == 15
    _check(result, tmp_path)
