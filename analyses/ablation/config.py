"""Config of the component ablation analysis (Study A, experiments 1-6)."""

from __future__ import annotations

from dataclasses import dataclass

from mechhybrid.errors import MechHybridError

from ..options import MIXER_KINDS, SEMANTICS, SharedOptions

__all__ = ["ComponentAblationConfig", "METHOD_CHOICES", "MIXER_KINDS"]

METHOD_CHOICES = SEMANTICS + ("all",)


@dataclass
class ComponentAblationConfig(SharedOptions):
    """Group, random-control, layer, positional, perplexity, context and resilience ablations."""

    method: str = "zero"
    """Ablation semantics: zero (mixer output -> 0), mean (-> its mean on held-out text), resample (-> its
    output on other text), skip (the whole layer becomes identity, MLP included), or all (each in turn)."""
    kinds: tuple[str, ...] = ()
    """Component kinds to ablate as groups, thirds and single components; empty = every mixer kind present."""
    include_mlp: bool = False
    """Also ablate MLPs (group, thirds, sweep) alongside the mixers."""
    random_trials: int = 3
    """Matched random controls per group ablation (same count, seeded draws; 0 turns them off, else >= 3)."""
    sweep: bool = True
    """Layer-wise sweep: every single component off in turn, on every benchmark."""
    thirds: bool = True
    """Positional ablation: early / middle / late third of the depth, per kind."""
    context_lengths: tuple[int, ...] = (64, 128, 256)
    """Context-length stress (perplexity at these lengths, baseline and each group off); lengths beyond the
    model's maximum are dropped. Empty turns it off."""
    resilience_removed: tuple[int, ...] | None = None
    """Resilience: numbers of random whole layers skipped; None = a quarter and three quarters of the depth
    (Study A: 6 and 18 of 24). Empty turns it off."""
    resilience_trials: int = 5
    """Random draws per number of removed layers (>= 5; every trial is reported, with median and geomean)."""
    resilience_length: int = 128
    """Tokens per window for resilience perplexity (the same text and length for every model)."""

    methods_allowed = METHOD_CHOICES

    def __post_init__(self):
        super().__post_init__()
        self.context_lengths = tuple(self.context_lengths)
        if self.resilience_removed is not None:
            self.resilience_removed = tuple(self.resilience_removed)
        if self.random_trials in (1, 2) or self.random_trials < 0:
            raise MechHybridError("random_trials must be 0 (off) or >= 3: fewer draws cannot show the spread")
        if self.resilience_trials < 5:
            raise MechHybridError("resilience_trials must be >= 5 (Study A: one outlier trial can dominate)")
        if any(n < 1 for n in self.context_lengths) or self.resilience_length < 2:
            raise MechHybridError("context lengths must be >= 1 token and resilience_length >= 2")
        if self.resilience_removed and any(n < 1 for n in self.resilience_removed):
            raise MechHybridError("resilience_removed entries must be >= 1 layer")

    @property
    def methods(self) -> tuple[str, ...]:
        return SEMANTICS if self.method == "all" else (self.method,)
