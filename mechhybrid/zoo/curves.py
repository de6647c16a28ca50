"""The training probe's curve as numbers: its summary statistic, the stopping rule, and steps to retrieval.

Pure functions of the logged curve (no torch), so the rule can be checked on synthetic curves and a card's
crossing steps recomputed from the card alone. A curve is a list of probe points, as `train` logs them:

    {"step": 1250, "needle": {"128": 0.93, "256": 0.88}, "needle_se": {"128": 0.025, "256": 0.031},
     "needle_n": {"128": 100, "256": 100}, "recall": 0.41, "recall_se": 0.05, "recall_n": 104,
     "needle_mean": 0.905, "needle_mean_se": 0.0199}

(the last two added by `with_summary`). Cards trained before the probe had standard errors hold only "step"
and "needle"; every function here reads those too (their standard error is unknown: None).
"""

from __future__ import annotations

import math

__all__ = ["standard_error", "needle_mean", "needle_mean_se", "with_summary", "plateau_reason", "stop_reason",
           "crossing_steps", "RETRIEVAL_THRESHOLDS", "MAX_STEPS_REASON"]

RETRIEVAL_THRESHOLDS = (0.5, 0.9)
"""Needle accuracies whose first crossing is a model's steps to retrieval."""
MAX_STEPS_REASON = "max_steps"
"""The stop reason of a run that used its whole budget (recipe.steps)."""


def standard_error(hits: float, n: int) -> float:
    """Standard error of an accuracy of `hits` out of `n`, by the Agresti-Coull estimate p~ = (x+2)/(n+4),
    so that 0/100 and 100/100 do not claim zero uncertainty (a plain binomial SE would let any single lucky
    item at chance count as an improvement over a run of zeros)."""
    p = (hits + 2.0) / (n + 4.0)
    return math.sqrt(p * (1.0 - p) / (n + 4.0))


def needle_mean(point: dict) -> float:
    """The probe's statistic: needle accuracy averaged over the probed context lengths."""
    values = list(point["needle"].values())
    return sum(values) / len(values)


def needle_mean_se(point: dict) -> float | None:
    """Standard error of `needle_mean` (lengths are independent item sets), None for a point without SEs."""
    errors = point.get("needle_se")
    if not errors:
        return None
    return math.sqrt(sum(e * e for e in errors.values())) / len(errors)


def with_summary(point: dict) -> dict:
    """`point` with its statistic stored: "needle_mean" and "needle_mean_se" (None where unknown)."""
    return {**point, "needle_mean": needle_mean(point), "needle_mean_se": needle_mean_se(point)}


def plateau_reason(curve: list[dict], patience: int | None, min_steps: int = 0, after: float = 0.0) -> str | None:
    """Why training should stop at the curve's last point, or None to go on.

    Stop when no probe in the last `patience` steps beats the best probe before that window by more than the
    standard error of their difference (sqrt(se_a^2 + se_b^2)), once the last point is at `min_steps` or
    later and some probe has reached `after` (a flat curve below it is a model that has not begun, not one
    that has converged). A window with no earlier probe to compare with never stops. `patience` None: never.
    """
    if patience is None or not curve or curve[-1]["step"] < min_steps:
        return None
    if max(needle_mean(p) for p in curve) < after:
        return None
    cut = curve[-1]["step"] - patience
    before = [p for p in curve if p["step"] <= cut]
    window = [p for p in curve if p["step"] > cut]
    if not before or not window:
        return None
    ref = max(before, key=needle_mean)  # max keeps the first of equals: the earliest step at that level
    new = max(window, key=needle_mean)
    se = math.hypot(needle_mean_se(ref) or 0.0, needle_mean_se(new) or 0.0)
    gain = needle_mean(new) - needle_mean(ref)
    if gain > se:
        return None
    return (f"plateau: best needle probe {needle_mean(new):.4f} in the last {patience} steps is not above "
            f"{needle_mean(ref):.4f} (step {ref['step']}) by more than its standard error {se:.4f}")


def stop_reason(curve: list[dict], step: int, recipe) -> str | None:
    """The stopping rule of `recipe` at `step` (whose probe, if any, is the curve's last point): the budget
    (recipe.steps) ends every run; a plateau (`plateau_reason`) ends it earlier when stop_patience_steps is
    set, once the probe has reached stop_after_probe. None: go on."""
    if step >= recipe.steps:
        return MAX_STEPS_REASON
    if not curve or curve[-1]["step"] != step:
        return None
    return plateau_reason(curve, recipe.stop_patience_steps, recipe.min_steps, recipe.stop_after_probe)


def crossing_steps(curve: list[dict], thresholds=RETRIEVAL_THRESHOLDS) -> dict[str, int | None]:
    """First probe step at which `needle_mean` reached each threshold (None: never), keyed by the
    threshold as text ("0.5", "0.9"): a model's steps to retrieval."""
    out = {}
    for threshold in thresholds:
        hit = next((p["step"] for p in curve if needle_mean(p) >= threshold), None)
        out[str(threshold)] = None if hit is None else int(hit)
    return out
