"""Causal tracing: exact patching sweeps over sites x positions (components, heads, the residual stream, the
token embeddings and recurrent states), computing only what each patch can change.

`sweep(hm, clean, corrupted, sites, metric, positions, direction)` -> `SweepResult` (`values[site, position]`
and their labels); sites and their selections in `mechhybrid.tracing.sites`; metrics (logit difference
normalised 0 = corrupted / 1 = clean, answer probability and rank, KL to the clean run, or any function of the
logits) in `mechhybrid.tracing.metrics`. docs/tracing.md has the semantics and the per-family behaviour.

`attribute(hm, clean, corrupted, sites, metric, positions, direction, method)` estimates the same entries from
gradients (`mechhybrid.tracing.attribution`: first order, AtP*, integrated gradients), labelled as the sweep's.
"""

from mechhybrid.interventions import Residual
from mechhybrid.tracing.metrics import AnswerProb, AnswerRank, KLToClean, LogitDiff, Metric, Track
from mechhybrid.tracing.plan import Reuse
from mechhybrid.tracing.sites import (
    SITE_SETS, Embeddings, Head, StateSite, component_sites, head_sites, residual_sites, select_sites, state_sites,
)
from mechhybrid.tracing.sweep import DIRECTIONS, SweepResult, sweep
from mechhybrid.tracing.attribution import METHODS, attribute

__all__ = [
    "AnswerProb", "AnswerRank", "DIRECTIONS", "Embeddings", "Head", "KLToClean", "LogitDiff", "Metric", "Residual",
    "Reuse", "SITE_SETS", "StateSite", "SweepResult", "Track", "component_sites", "head_sites", "residual_sites",
    "select_sites", "state_sites", "sweep",
    "METHODS", "attribute",
]
