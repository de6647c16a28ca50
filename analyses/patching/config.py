"""Config of the patching analysis (causal tracing: exact patching sweeps and attribution patching's agreement
with them). Defaults are the study's `quick` profile, sized for the zoo; the `full` profile sweeps everything."""

from __future__ import annotations

from dataclasses import dataclass

from mechhybrid.errors import MechHybridError

from ..configs import check_types
from .pairs import TASKS

__all__ = ["PatchingConfig", "SITE_SETS", "DIRECTIONS", "ESTIMATORS", "FULL"]

SITE_SETS = ("residual", "components", "heads", "states")
"""What a sweep patches: the residual stream before every layer, every component's output, every head of every
attention and multi-head recurrent mixer, every recurrent layer's state (after the token, carried forward)."""
DIRECTIONS = ("denoise", "noise")
"""denoise: clean values into the corrupted run; noise: corrupted values into the clean run."""
ESTIMATORS = ("atp", "atp*", "ig")
"""Attribution patching (activation difference x gradient), AtP* (its QK fix and GradDrop), and integrated
gradients over a few interpolation steps (EAP-IG style)."""
FULL = {"tasks": tuple(TASKS), "sites": SITE_SETS, "directions": DIRECTIONS, "attribution": ESTIMATORS,
        "per_pair": True}
"""The `full` profile's options: every task, site set, direction and estimator, intervals over pairs."""


@dataclass
class PatchingConfig:
    """Exact activation and state patching over site x position for clean / corrupted prompt pairs (both
    directions), with attribution patching's agreement with it (Spearman, top-k overlap, the sites it misses)."""

    tasks: tuple[str, ...] = ("needle_value",)
    """Zoo tasks: needle_value, needle_key, recall_value, recall_key (the value, or the key, of the asked pair
    swapped) and facts_subject (another country); ignored with a pairs_file."""
    pairs: int = 8
    """Clean / corrupted pairs per task (facts: at most 48)."""
    length: int = 64
    """Prompt tokens of the zoo's needle prompts (recall: the longest whole question that fits; facts prompts
    are 6 tokens). Every position is swept."""
    depth: float = 0.5
    """Relative depth of the needle in its filler (the same in every pair, so positions line up)."""
    sites: tuple[str, ...] = ("residual", "components", "heads", "states")
    """Site sets swept at every position: residual (the stream before every layer: classic causal tracing),
    components, heads (every attention and multi-head recurrent mixer head), states (every recurrent layer); a set
    the model lacks is noted and skipped."""
    directions: tuple[str, ...] = ("denoise",)
    """denoise (clean values into the corrupted run), noise (corrupted values into the clean run)."""
    per_pair: bool = False
    """Sweep every pair on its own as well, for 95% intervals over pairs (bootstrap) on every entry (about 1.6x
    the cost on the zoo); off: each entry is the batch's normalised mean, without an interval."""
    attribution: tuple[str, ...] = ("atp",)
    """Attribution estimators compared with the exact sweep over the same sites (atp, atp*, ig); empty: none.
    Needs mechhybrid.tracing.attribute; without it the Result says so."""
    ig_steps: int = 5
    """Interpolation steps of the ig estimator."""
    top_k: int = 10
    """How many of the largest exact effects the top-k overlap compares (per site set)."""
    pairs_file: str = ""
    """A JSONL file of pairs for real models: one object per line with prompt, corrupted_prompt, answer and
    corrupted_answer (null: none); tokenised with the model's tokenizer. Empty: the zoo's tasks."""
    seed: int = 0
    """Seed of the zoo pairs' draws and of the bootstrap."""

    def __post_init__(self):
        check_types(self)
        for name in ("tasks", "sites", "directions", "attribution"):
            setattr(self, name, tuple(getattr(self, name)))
        for name, allowed in (("tasks", tuple(TASKS)), ("sites", SITE_SETS), ("directions", DIRECTIONS),
                              ("attribution", ESTIMATORS)):
            bad = [v for v in getattr(self, name) if v not in allowed]
            if bad:
                raise MechHybridError(f"patching {name}: unknown {bad[0]!r}; choose from {', '.join(allowed)}")
            if len(set(getattr(self, name))) != len(getattr(self, name)):
                raise MechHybridError(f"patching {name} lists {list(getattr(self, name))}: each at most once")
        if not self.sites or not self.directions or (not self.tasks and not self.pairs_file):
            raise MechHybridError("patching needs at least one site set, one direction and one task (or a "
                                  "pairs_file)")
        if self.pairs < 1 or self.length < 1 or self.ig_steps < 1 or self.top_k < 1 or self.seed < 0:
            raise MechHybridError("patching pairs, length, ig_steps and top_k must be >= 1, seed >= 0")
        if not 0.0 <= self.depth <= 1.0:
            raise MechHybridError(f"patching depth must lie in [0, 1], got {self.depth}")
