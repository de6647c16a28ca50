"""Config of the circuits analysis (edge attribution, pruning and verification by path patching). Defaults are
the study's `quick` profile, sized for the zoo."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mechhybrid.circuits import ABLATIONS, EDGE_METHODS
from mechhybrid.errors import MechHybridError

from ..configs import check_types

__all__ = ["CircuitsConfig"]


@dataclass
class CircuitsConfig:
    """Edge-level retrieval circuits on the zoo's needle pairs (the needle's value swapped): edge attribution
    between embedding, components, heads, recurrent states and logits; pruned; verified by running the model with
    every other edge ablated, along a curve of sizes against random circuits of the same size."""

    pairs: int = 8
    """Clean / corrupted needle pairs."""
    length: int = 32
    """Prompt tokens of the needle prompts (>= 16)."""
    depth: float = 0.5
    """Relative depth of the needle in its filler (the same in every pair)."""
    method: str = "eap"
    """Edge attribution: eap (first order) or eap-ig (integrated gradients along the embedding path)."""
    ig_steps: int = 5
    """Interpolation steps of eap-ig."""
    target: float = 0.8
    """The chosen circuit: the smallest circuit of the curve (`sizes`, edges ranked by |score|) whose faithfulness,
    measured by running the model, reaches this fraction of the full model's effect (in (0, 1])."""
    top_n: int = 0
    """If > 0, the chosen circuit is the top_n edges by |score| instead of `target`."""
    sizes: tuple[int, ...] = (5, 10, 20, 40, 80, 160)
    """Circuit sizes (edges kept, by |score|) of the faithfulness curve; sizes above the model's edge count are
    left out and the full graph is added."""
    random_trials: int = 5
    """Random circuits of each size (edges drawn uniformly), the curve's control."""
    ablation: str = "patch"
    """What an ablated edge carries: patch (the corrupted run's value, path patching) or mean (the sender's mean
    over the clean run)."""
    seed: int = 0
    """Seed of the pairs' draws and of the random circuits."""
    positional: bool = False
    """Edges per token (sender -> receiver at position p, as in the Mamba IOI circuits, arXiv 2407.14008): scored,
    pruned, drawn and ablated at each position alone. Same forwards; costs `length` times the edges (scores,
    the curve's sizes, random circuits and the `edges` side table, in memory and on disk) and a `position` axis on
    each ablation mask (scoring and faithfulness 0.9-1.3x the per-edge time on the zoo's GDN and Jamba
    hybrids, benchmarks/bench_circuits.py). Off in the quick profile."""

    def __post_init__(self):
        check_types(self)
        self.sizes = tuple(self.sizes)
        if self.method not in EDGE_METHODS:
            raise MechHybridError(f"circuits method {self.method!r}: choose one of {', '.join(EDGE_METHODS)}")
        if self.ablation not in ABLATIONS:
            raise MechHybridError(f"circuits ablation {self.ablation!r}: choose one of {', '.join(ABLATIONS)}")
        if not (math.isfinite(self.target) and 0 < self.target <= 1):
            raise MechHybridError(f"circuits target {self.target!r} is outside (0, 1]")
        if self.pairs < 1 or self.length < 16 or self.ig_steps < 1 or self.random_trials < 1 or self.seed < 0 \
                or self.top_n < 0:
            raise MechHybridError("circuits pairs, ig_steps and random_trials must be >= 1, length >= 16, top_n and "
                                  "seed >= 0")
        if not self.sizes or any(k < 1 for k in self.sizes):
            raise MechHybridError(f"circuits sizes {list(self.sizes)}: at least one, each >= 1")
        if not 0.0 <= self.depth <= 1.0:
            raise MechHybridError(f"circuits depth must lie in [0, 1], got {self.depth}")
