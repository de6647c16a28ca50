"""run_analysis: the score cache shared between analyses, and results never trusted across weight changes."""

from __future__ import annotations

import torch

import analyses.evaluate as evaluate_mod
from analyses.ablation import ComponentAblationConfig
from analyses.registry import quarantine_corrupt, run_analysis
from analyses.representation import RepresentationConfig
from analyses.schema import result_path
from tests.analyses.conftest import make_tasks
from tests.conftest import build_tiny



def _with_tasks(monkeypatch):
    import analyses.ablation.analysis as abl
    import analyses.representation.analysis as rep

    monkeypatch.setattr(abl, "load_tasks", lambda hm, cfg, name: make_tasks())
    monkeypatch.setattr(rep, "load_tasks", lambda hm, cfg, name: make_tasks())


def test_representation_reuses_the_ablation_sweep(tmp_path, monkeypatch):
    import mechhybrid

    _with_tasks(monkeypatch)
    hm = mechhybrid.load(build_tiny("qwen2", seed=3))
    abl = ComponentAblationConfig(random_trials=0, thirds=False, context_lengths=(), resilience_removed=())
    run_analysis("component_ablation", hm, abl, tmp_path)
    real, calls = evaluate_mod.score_task, []
    monkeypatch.setattr(evaluate_mod, "score_task",
                        lambda hm, task, conds, *a, **k: calls.append(len(conds)) or real(hm, task, conds, *a, **k))
    rep = RepresentationConfig(include_mlp=False, diag_items=2, diag_length=12)
    result, computed = run_analysis("representation", hm, rep, tmp_path)
    assert computed and calls == []  # baseline and every layer condition came from the shared cache
    assert len([r for r in result.rows if r.condition.startswith("corr:")]) == 15


def test_changed_weights_are_recomputed_not_trusted(tmp_path, monkeypatch):
    import mechhybrid

    _with_tasks(monkeypatch)
    hm = mechhybrid.load(build_tiny("qwen2", seed=4))
    cfg = ComponentAblationConfig(random_trials=0, thirds=False, sweep=False, context_lengths=(),
                                  resilience_removed=())
    first, _ = run_analysis("component_ablation", hm, cfg, tmp_path)
    assert run_analysis("component_ablation", hm, cfg, tmp_path)[1] is False
    with torch.no_grad():
        hm.hf_model.lm_head.weight.mul_(2.0)
    second, computed = run_analysis("component_ablation", hm, cfg, tmp_path)
    assert computed and second.rows[0].value != first.rows[0].value


def test_quarantine_keeps_the_bytes(tmp_path):
    path = result_path(tmp_path, "m", "representation")
    path.parent.mkdir(parents=True)
    path.write_text("not json")
    assert quarantine_corrupt(tmp_path) == [path]
    assert not path.exists() and path.with_name("representation.json.corrupt").read_text() == "not json"


def test_every_config_checks_the_shared_options_and_documents_every_field():
    import dataclasses

    import pytest

    from analyses.configs import field_help
    from mechhybrid.errors import MechHybridError

    for cls in (ComponentAblationConfig, RepresentationConfig):
        for bad in (dict(limit=0), dict(kinds=("mlp",), include_mlp=False), dict(kinds=("lstm",)), dict(budget_mb=0),
                    dict(benchmarks=("lm",), exclude_benchmarks=("lm",)), dict(method="drop")):
            with pytest.raises(MechHybridError):
                cls(**bad)
        docs = field_help(cls)
        assert set(docs) == {f.name for f in dataclasses.fields(cls)}, cls  # --help documents every option
    # A subclass's own docstring and default win over the shared ones.
    assert ComponentAblationConfig().include_mlp is False and RepresentationConfig().include_mlp is True
    assert "one at a time" in field_help(RepresentationConfig)["include_mlp"]
    assert "or all" in field_help(ComponentAblationConfig)["method"]
    assert ComponentAblationConfig(method="all").methods == ("zero", "mean", "resample", "skip")
    with pytest.raises(MechHybridError, match="once per method"):
        RepresentationConfig(method="all")


def test_results_on_a_zoo_model_carry_its_card():
    import json

    import mechhybrid
    from analyses.common import model_info
    from mechhybrid.zoo import registry

    name = registry.zoo_names()[0]
    card = json.loads((registry.zoo_dir(name) / "card.json").read_text())
    info = model_info(mechhybrid.load(f"zoo:{name}"))
    assert info["card"]["scores"] == card["scores"] and info["card"]["recipe"] == card["recipe"]
    assert "check_scores" not in info["card"]  # only what a reader of the report needs
    assert "card" not in model_info(mechhybrid.load(build_tiny("qwen2")))
