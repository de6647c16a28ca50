"""representation on tiny models: known answers for a dead component, rows, CKA between models."""

from __future__ import annotations

import math

import pytest
import torch

from analyses.representation import DIAGNOSTICS, RepresentationConfig, run
from analyses.representation.diagnostics import cosine, out_in_norm_ratio, rel_norm_change
from analyses.representation.models import cka_between, matched_layer
from mechhybrid.errors import MechHybridError
from tests.analyses.conftest import NAN_WHERE, make_tasks, zero_out_proj
from tests.conftest import build_tiny


def _row(res, condition, metric):
    (row,) = [r for r in res.rows if r.condition == condition and r.metric == metric]
    return row


def test_dead_component_leaves_the_stream_unchanged():
    import mechhybrid

    hm = mechhybrid.load(build_tiny("qwen2", seed=2))
    zero_out_proj(hm, hm.components.find(2, "attention"))
    res = run(hm, RepresentationConfig(diag_items=2, diag_length=12), tasks=make_tasks(doc_len=24))
    assert _row(res, "layer:2:attention", "rel_norm_change").value == pytest.approx(0.0, abs=1e-6)
    assert _row(res, "layer:2:attention", "cosine").value == pytest.approx(1.0, abs=1e-6)
    assert _row(res, "layer:2:attention", "out_in_norm_ratio").value == 0.0
    assert _row(res, "layer:2:attention", "kl_logit_lens").value == pytest.approx(0.0, abs=1e-6)
    assert _row(res, "layer:2:attention", "cka").value == pytest.approx(1.0, abs=1e-6)
    assert res.extra["cka_per_layer"]["layer:2:attention"] == pytest.approx([1.0] * 4, abs=1e-6)
    live = _row(res, "layer:1:attention", "kl_logit_lens").value
    assert live > 0 and _row(res, "layer:1:attention", "cosine").value < 1.0
    # every ablated component (mixers and MLPs by default) has every diagnostic
    conds = {r.condition for r in res.rows if r.condition.startswith("layer:")}
    assert len(conds) == 8
    assert {r.metric for r in res.rows if r.condition in conds} == set(DIAGNOSTICS)
    corr = [r for r in res.rows if r.condition.startswith("corr:")]
    assert {r.condition for r in corr} == {f"corr:{d}:{b}" for d in DIAGNOSTICS for b in ("lm", "facts", "needle")}
    assert all(r.metric == "spearman" and r.n == 8 for r in corr)
    assert res.extra["diagnostic_inputs"] == {"benchmark": "lm", "items": 2, "tokens": 12}


def test_diagnostics_by_hand():
    base = torch.tensor([[[3.0, 4.0]]])
    assert rel_norm_change(base, 2 * base) == pytest.approx(1.0)
    assert cosine(base, -base) == pytest.approx(-1.0)
    assert out_in_norm_ratio(base, 5 * base) == pytest.approx(0.2)


def test_cka_between_models(hm_qwen2, hm_hybrid):
    x = torch.randint(3, 97, (2, 10), generator=torch.Generator().manual_seed(0))
    h = hm_qwen2.hidden_states(x)
    assert cka_between(h, h) == pytest.approx([1.0] * 4)
    assert [matched_layer(i, 4, 6) for i in range(4)] == [0, 2, 3, 5]
    values = cka_between(h, hm_hybrid.hidden_states(x))
    assert len(values) == 4 and all(0.0 <= v <= 1.0 + 1e-9 for v in values if not math.isnan(v))


def test_needs_lm_text_and_a_single_method(hm_qwen2):
    ts = make_tasks()
    from analyses.data import TaskSet

    with pytest.raises(MechHybridError, match="language-modelling"):
        run(hm_qwen2, RepresentationConfig(), tasks=TaskSet({"facts": ts.tasks["facts"]}))
    with pytest.raises(MechHybridError, match="once per method"):
        RepresentationConfig(method="all")


def test_cka_between_models_in_a_run(tmp_path):
    import mechhybrid

    dirs = []
    for seed, model_type in ((0, "qwen2"), (1, "qwen3_5_text")):
        d = tmp_path / f"{model_type}-{seed}"
        build_tiny(model_type, seed=seed).save_pretrained(d)
        dirs.append(str(d))
    hm = mechhybrid.load(dirs[0])
    cfg = RepresentationConfig(kinds=("attention",), include_mlp=False, diag_items=2, diag_length=10,
                               compare_with=tuple(dirs))
    res = run(hm, cfg, tasks=make_tasks())
    rows = [r for r in res.rows if r.condition.startswith("cka_models:")]
    assert {r.condition for r in rows} == {f"cka_models:{dirs[1]}"}  # itself is not compared
    assert [r.metric for r in rows] == [f"cka:{i}" for i in range(4)] and all(r.method == "none" for r in rows)
    assert all(0.0 <= r.value <= 1.0 + 1e-9 for r in rows) and all(r.n == 20 for r in rows)


def test_a_nan_weight_is_one_error_naming_where_not_rows_of_nulls(hm_nan):
    with pytest.raises(MechHybridError, match="non-finite hidden states") as err:
        run(hm_nan, RepresentationConfig(diag_items=2, diag_length=12), tasks=make_tasks())
    assert NAN_WHERE in str(err.value) and "\n" not in str(err.value)
