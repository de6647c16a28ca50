"""component_ablation on tiny models: known answers, names, determinism, resume, bad input."""

from __future__ import annotations

import dataclasses

import pytest

import analyses.evaluate as evaluate_mod
from analyses.ablation import ComponentAblationConfig, run
from analyses.common import Checkpoints
from analyses.configs import build_config
from analyses.data import TaskSet
from mechhybrid.errors import MechHybridError
from tests.analyses.conftest import make_tasks, zero_out_proj
from tests.conftest import build_tiny

SMALL = dict(context_lengths=(8,), resilience_removed=(1,), batch_size=4)


def _by(result, condition, metric, method=None):
    hits = [r for r in result.rows if r.condition == condition and r.metric == metric
            and (method is None or r.method == method)]
    assert len(hits) == 1, (condition, metric, method, hits)
    return hits[0]


@pytest.fixture(scope="module")
def hm_dead_attention():
    """qwen2 whose layer-1 attention output projection is all zeros: removing it must change nothing."""
    import mechhybrid

    hm = mechhybrid.load(build_tiny("qwen2", seed=1))
    zero_out_proj(hm, hm.components.find(1, "attention"))
    return hm


def test_ablating_a_dead_component_has_zero_effect(hm_dead_attention):
    cfg = ComponentAblationConfig(method="all", kinds=("attention",), random_trials=0, thirds=False,
                                  context_lengths=(), resilience_removed=(), batch_size=4)
    res = run(hm_dead_attention, cfg, tasks=make_tasks())
    for method in ("zero", "mean", "resample"):
        for bench in ("facts", "needle"):
            row = _by(res, "layer:1:attention", f"drop:{bench}", method)
            assert row.value == 0.0 and row.ci_low <= 0.0 <= row.ci_high
        assert _by(res, "layer:1:attention", "ppl_ratio", method).value == pytest.approx(1.0, abs=1e-12)
    # ...while a live component does move the perplexity (the check is not vacuous).
    assert abs(_by(res, "layer:0:attention", "ppl_ratio", "zero").value - 1.0) > 1e-6
    assert res.method == "mixed" and {r.method for r in res.rows} == {"none", "zero", "mean", "resample", "skip"}


def test_condition_names_and_row_fields(hm_qwen2):
    res = run(hm_qwen2, ComponentAblationConfig(**SMALL), tasks=make_tasks())
    names = {r.condition for r in res.rows}
    expected = {"baseline", "group:attention", "context:8:baseline", "context:8:group:attention",
                "resilience:1:summary"}
    # 4 attention layers matched among 4 MLPs: one distinct set; 1 of 4 layers removed: four distinct sets.
    expected |= {"random:attention:0"} | {f"resilience:1:{t}" for t in range(4)}
    expected |= {f"layer:{i}:attention" for i in range(4)}
    expected |= {f"third:{p}:attention" for p in ("early", "middle", "late")}
    assert names == expected
    assert [(d.name, d.n) for d in res.data] == [("lm", 6), ("facts", 6), ("needle", 6)]
    assert all(r.seed == 0 and r.n > 0 for r in res.rows)
    drop = _by(res, "group:attention", "drop:facts")
    assert drop.ci_low is not None and drop.ci_low <= drop.value <= drop.ci_high
    assert {r.metric for r in res.rows if r.condition == "resilience:1:summary"} == {
        "ppl_median", "ppl_geomean", "ppl_ratio_median", "ppl_ratio_geomean"}
    assert res.extra["loss_clamp"] == 20.0
    assert len(res.extra["conditions"]["random:attention:0|zero"]) == 4  # matched count: 4 attention layers
    removed = sorted(tuple(res.extra["conditions"][f"resilience:1:{t}|skip"]) for t in range(4))
    assert removed == [(c.name,) for c in hm_qwen2.components.by_kind("attention")]  # each layer once
    assert {r.n for r in res.rows if r.condition == "resilience:1:summary"} == {4}
    assert "resilience:1: only 4 distinct set(s) exist, each taken once (n=4, not 5 trials)" in res.extra["notes"]
    assert "random:attention: only 1 distinct set(s) exist, each taken once (n=1, not 3 trials)" in res.extra["notes"]


def test_same_seed_same_bytes_and_random_draws_follow_the_seed(hm_qwen2):
    cfg = ComponentAblationConfig(**SMALL, thirds=False, sweep=False)
    a, b = run(hm_qwen2, cfg, tasks=make_tasks()), run(hm_qwen2, cfg, tasks=make_tasks())
    assert a.to_json() == b.to_json()
    c = run(hm_qwen2, dataclasses.replace(cfg, seed=1), tasks=make_tasks())
    assert c.extra["conditions"] != a.extra["conditions"]


def test_resume_skips_finished_conditions(hm_qwen2, tmp_path, monkeypatch):
    cfg = ComponentAblationConfig(**SMALL, conditions_per_forward=2)
    full = run(hm_qwen2, cfg, tasks=make_tasks())
    real = evaluate_mod.score_task
    calls = []

    def interrupted(hm, task, conds, *args, **kwargs):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(len(conds))
        return real(hm, task, conds, *args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "score_task", interrupted)
    ckpt = Checkpoints(tmp_path / "p", "fp")
    with pytest.raises(KeyboardInterrupt):
        run(hm_qwen2, cfg, tasks=make_tasks(), checkpoints=ckpt)
    done = sum(calls)
    counted = []

    def counting(hm, task, conds, *args, **kwargs):
        counted.append(len(conds))
        return real(hm, task, conds, *args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "score_task", counting)
    resumed = run(hm_qwen2, cfg, tasks=make_tasks(), checkpoints=Checkpoints(tmp_path / "p", "fp"))
    assert done == 10 and sum(counted) > 0  # 5 chunks of 2 finished before the interruption
    assert sum(counted) + done == _n_jobs(cfg, hm_qwen2)
    assert resumed.to_json() == full.to_json()
    # Another fingerprint (another config) never reuses those checkpoints.
    assert Checkpoints(tmp_path / "p", "other").get("anything") is None


def _n_jobs(cfg, hm):
    from analyses.ablation.analysis import plan

    ts = make_tasks()
    ts = TaskSet(dict(ts.tasks), ts.refs)
    jobs, _ = plan(hm, cfg, ts)
    return len({j for _, j in jobs})


@pytest.mark.parametrize("options, message", [
    ({"method": "sideways"}, "unknown method"),
    ({"random_trials": 2}, "random_trials"),
    ({"resilience_trials": 4}, "resilience_trials"),
    ({"kinds": ["attn"]}, "unknown kind"),
    ({"kinds": ["mlp"]}, "include_mlp"),
    ({"benchmarks": ["facts"], "exclude_benchmarks": ["facts"]}, "both selected and excluded"),
    ({"limit": 0}, "limit"),
    ({"colour": "red"}, "unknown option"),
    ({"limit": "many"}, "config"),
])
def test_bad_config(options, message):
    with pytest.raises(MechHybridError, match=message):
        build_config(ComponentAblationConfig, options)


def test_missing_benchmarks_are_clear_errors(hm_qwen2):
    with pytest.raises(MechHybridError, match="no data for benchmark"):
        run(hm_qwen2, ComponentAblationConfig(benchmarks=("mmlu",)))
    with pytest.raises(MechHybridError, match="no benchmark data"):
        run(hm_qwen2, ComponentAblationConfig())
    no_lm = make_tasks()
    no_lm = TaskSet({k: v for k, v in no_lm.tasks.items() if k != "lm"}, no_lm.refs)
    with pytest.raises(MechHybridError, match="language-modelling"):
        run(hm_qwen2, ComponentAblationConfig(), tasks=no_lm)
    with pytest.raises(MechHybridError, match="below the model's 4 layers"):
        run(hm_qwen2, ComponentAblationConfig(resilience_removed=(4,)), tasks=make_tasks())


def test_random_draws_never_repeat_and_take_every_set_when_there_are_fewer_than_trials():
    import itertools
    import math

    from analyses.ablation.conditions import distinct_draws

    for n, k, trials in [(4, 1, 5), (4, 2, 5), (5, 2, 10), (5, 2, 12), (6, 3, 5), (4, 4, 3)]:
        draws = distinct_draws(list("abcdef"[:n]), k, trials, seed=3)
        assert len(draws) == len(set(draws)) == min(trials, math.comb(n, k)), (n, k, trials)
        if math.comb(n, k) <= trials:  # every set, each once
            assert sorted(draws) == list(itertools.combinations("abcdef"[:n], k))
    assert distinct_draws(list("abcd"), 2, 3, seed=7) == distinct_draws(list("abcd"), 2, 3, seed=7)
    big = distinct_draws(list(range(40)), 10, 5, seed=1)  # C(40, 10) subsets: drawn, never listed
    assert len(set(big)) == 5 and all(list(d) == sorted(d) for d in big)
    small_pool = distinct_draws(list(range(30)), 28, 400, seed=0)  # C(30, 28) = 435: listed and shuffled
    assert len(set(small_pool)) == 400


def test_an_intervention_that_makes_the_logits_non_finite_names_its_condition(hm_qwen2, monkeypatch):
    """The model is finite; one condition's intervention is not: the one line says which condition."""
    import torch

    import analyses.scoring as scoring
    from mechhybrid import Steer

    comp = hm_qwen2.components.find(2, "attention")
    monkeypatch.setattr(scoring, "interventions_for", lambda cond, ids, refs: [] if cond.method == "none" else [
        Steer(comp, torch.full((hm_qwen2.hf_model.config.hidden_size,), float("inf")))])
    conds = [scoring.Condition("baseline", "none"), scoring.Condition("group:attention", "zero", (comp,))]
    with pytest.raises(MechHybridError) as err:
        scoring.score_task(hm_qwen2, make_tasks().tasks["lm"], conds, None, batch_size=4)
    message = str(err.value)
    assert message.startswith(f"model {hm_qwen2.name} produced non-finite logits") and "\n" not in message
    assert "interventions" in message and message.endswith("(condition group:attention, method zero)")
