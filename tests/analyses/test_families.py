"""Both analyses run on a tiny model of every supported family (the batched engine, captures and the
stacked hidden states included), with sane numbers."""

from __future__ import annotations

import math

import pytest

from analyses.ablation import ComponentAblationConfig
from analyses.ablation import run as ablation_run
from analyses.representation import RepresentationConfig
from analyses.representation import run as representation_run
from tests.analyses.conftest import make_tasks
from tests.conftest import ALL_MODEL_TYPES, build_tiny


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_every_family(model_type):
    import mechhybrid

    hm = mechhybrid.load(build_tiny(model_type))
    abl = ablation_run(hm, ComponentAblationConfig(random_trials=3, context_lengths=(8,), resilience_removed=(1,)),
                       tasks=make_tasks(n=3))
    for kind in hm.components.kinds():
        if kind != "mlp":
            assert any(r.condition == f"group:{kind}" for r in abl.rows)
    for row in abl.rows:
        if row.metric.startswith(("acc:", "clamp_frac")):
            assert 0.0 <= row.value <= 1.0
        if row.metric in ("ppl", "ppl_ratio"):
            assert math.isfinite(row.value) and row.value > 0
    rep = representation_run(hm, RepresentationConfig(method="mean", diag_items=2, diag_length=8),
                             tasks=make_tasks(n=3))
    cosines = [r.value for r in rep.rows if r.metric == "cosine"]
    assert len(cosines) == len(hm.components) and all(-1.0 - 1e-6 <= c <= 1.0 + 1e-6 for c in cosines)
