"""The stopping rule and steps to retrieval on synthetic probe curves, against hand-worked expectations."""

import dataclasses
import math

import pytest

from mechhybrid.errors import MechHybridError
from mechhybrid.zoo.curves import (MAX_STEPS_REASON, crossing_steps, needle_mean, needle_mean_se, plateau_reason,
                                   standard_error, stop_reason, with_summary)
from mechhybrid.zoo.recipes import RECIPE

N = 100


def point(step, acc128, acc256=None):
    """A probe point as train logs it, 100 items per length, from accuracies (hits = accuracy x 100)."""
    accs = {"128": acc128, "256": acc128 if acc256 is None else acc256}
    return {"step": step, "needle": accs, "needle_n": {k: N for k in accs},
            "needle_se": {k: standard_error(round(a * N), N) for k, a in accs.items()}}


def curve(values, every=250):
    return [point(every * (i + 1), v) for i, v in enumerate(values)]


def first_stop(values, patience, min_steps=0, every=250):
    """The step at which the rule first fires when the curve is revealed one probe at a time."""
    full = curve(values, every)
    return next((p["step"] for i, p in enumerate(full) if plateau_reason(full[:i + 1], patience, min_steps)), None)


def test_standard_error_is_agresti_coull():
    # p~ = (0 + 2) / 104; se = sqrt(p~ (1 - p~) / 104), by hand: 0.0134668
    assert standard_error(0, 100) == pytest.approx(0.0134668, abs=1e-7)
    assert standard_error(50, 100) == pytest.approx(math.sqrt(0.25 / 104), rel=1e-12)
    assert standard_error(100, 100) == pytest.approx(standard_error(0, 100), rel=1e-12)  # symmetric, never 0


def test_mean_over_lengths_and_its_standard_error():
    p = point(250, 0.5, 0.0)
    assert needle_mean(p) == 0.25
    expected = math.sqrt(standard_error(50, 100) ** 2 + standard_error(0, 100) ** 2) / 2
    assert needle_mean_se(p) == pytest.approx(expected, rel=1e-12)
    assert needle_mean_se({"step": 1, "needle": {"128": 0.5}}) is None  # a card from before SEs were logged
    assert with_summary(p)["needle_mean"] == 0.25 and with_summary(p)["needle_mean_se"] == needle_mean_se(p)


def test_rise_then_plateau_stops_one_patience_after_the_plateau_begins():
    # Best before the window at step 1000 is 1.0; every window until 1750 still holds a gain of >= 0.4.
    assert first_stop([0.0, 0.2, 0.6, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], patience=1000) == 2000


def test_steady_gain_larger_than_the_error_never_stops():
    # +0.02 a probe: 0.08 a 1000-step window, above the difference's SE (at most sqrt(2) x 0.035 = 0.049).
    assert first_stop([0.02 * i for i in range(40)], patience=1000) is None


def test_noise_within_the_error_stops_at_the_first_full_window():
    # 0.50 / 0.53 alternating: a gain of 0.03 is within the SE of the difference (0.049).
    assert first_stop([0.50, 0.53] * 10, patience=1000) == 1250


def test_min_steps_and_no_rule():
    assert first_stop([1.0] * 20, patience=1000, min_steps=3000) == 3000
    assert first_stop([1.0] * 20, patience=None) is None


def test_a_single_lucky_item_at_chance_is_no_improvement():
    # A run of zeros, then 1 hit in 100 at one length: with a plain binomial SE (0 at 0/100) that would count.
    values = curve([0.0] * 4) + [point(1250, 0.01, 0.0)]
    assert plateau_reason(values, 1000) is not None


def test_a_window_with_nothing_before_it_never_stops():
    assert plateau_reason(curve([0.3, 0.3, 0.3]), 1000) is None
    assert plateau_reason([], 1000) is None


def test_stop_reason_applies_the_budget_and_the_recipe_rule():
    recipe = dataclasses.replace(RECIPE, steps=3000, stop_patience_steps=1000, min_steps=0)
    flat = curve([0.5] * 12)
    assert stop_reason([], 3000, recipe) == MAX_STEPS_REASON
    assert stop_reason(flat[:4], 1000, recipe) is None  # no probe before the window yet
    assert stop_reason(flat[:5], 1250, recipe).startswith("plateau")
    assert stop_reason(flat[:5], 1300, recipe) is None  # no probe at this step: no decision
    fixed = dataclasses.replace(RECIPE, stop_patience_steps=None)
    assert stop_reason(flat[:5], 1250, fixed) is None  # no rule: a fixed budget


def test_recipe_rejects_contradictory_stopping_fields():
    for bad in (dict(stop_patience_steps=300), dict(stop_patience_steps=0), dict(min_steps=RECIPE.steps + 1), dict(induction_warmup_steps=RECIPE.steps + 1), dict(warmup_mix=()), dict(warmup_mix=(("copy", 0.0),)),
                dict(probe_lengths=()), dict(probe_lengths=(8,)), dict(probe_recall_docs=0)):
        with pytest.raises(MechHybridError, match="recipe"):
            dataclasses.replace(RECIPE, **bad)
    # Recipe 5's rule: the plateau rule within a budget, never judged on a window that is all warm-up.
    assert RECIPE.stop_patience_steps is not None
    assert RECIPE.min_steps >= RECIPE.induction_warmup_steps + RECIPE.stop_patience_steps


def test_crossing_steps_are_the_first_probe_at_or_above_each_threshold():
    values = curve([0.1, 0.4, 0.55, 0.8, 0.95, 0.85, 0.97])
    assert crossing_steps(values) == {"0.5": 750, "0.9": 1250}
    assert crossing_steps(curve([0.1, 0.5, 0.2])) == {"0.5": 500, "0.9": None}  # reaching counts; dips do not undo
    assert crossing_steps(curve([0.0] * 5)) == {"0.5": None, "0.9": None}
    # The mean over lengths decides: 1.0 at 128 and 0.0 at 256 is 0.5.
    assert crossing_steps([point(250, 1.0, 0.0)], (0.5, 0.6)) == {"0.5": 250, "0.6": None}
    old = [{"step": 250, "needle": {"128": 0.0, "256": 0.0}}, {"step": 500, "needle": {"128": 1.0, "256": 0.9}}]
    assert crossing_steps(old) == {"0.5": 500, "0.9": 500}  # cards without SEs


def test_a_curve_still_at_chance_never_stops_on_a_plateau():
    # Jamba under recipe 5: 0.000-0.015 for 3,000 steps was judged a plateau; a model that has not begun is
    # not one that has converged.
    at_chance = curve([0.0, 0.0, 0.005, 0.01, 0.005, 0.0, 0.01, 0.015] + [0.0] * 12)
    assert all(plateau_reason(at_chance[:i + 1], 2000, 3000, after=0.5) is None for i in range(len(at_chance)))
    assert plateau_reason(at_chance[:12], 2000, 3000) is not None  # recipe 5's rule
    # once the probe has reached 0.5 the plateau counts as before, at the same step
    learnt = [0.0] * 8 + [0.6] + [0.95] * 11
    assert first_stop(learnt, patience=2000, min_steps=3000) == 4500  # 0.95 at 2,500 not beaten by 4,500
    assert next(p["step"] for i, p in enumerate(curve(learnt))
                if plateau_reason(curve(learnt)[:i + 1], 2000, 3000, after=0.5)) == 4500
