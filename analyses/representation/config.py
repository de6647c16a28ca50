"""Config of the representation diagnostics (Study A experiment 7, done at all positions, with the final norm)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mechhybrid.errors import MechHybridError

from ..options import SharedOptions

__all__ = ["RepresentationConfig", "compare_within_study"]


@dataclass
class RepresentationConfig(SharedOptions):
    """Per ablated component: residual-norm change, cosine, out/in norm, logit-lens KL, CKA; their rank
    correlation with behavioural drops; CKA between models on the same inputs."""

    method: str = "zero"
    """Ablation semantics: zero, mean, resample or skip (one per run; rows say which)."""
    kinds: tuple[str, ...] = ()
    """Component kinds to ablate one at a time; empty = every mixer kind present."""
    include_mlp: bool = True
    """Also ablate MLPs one at a time (on by default: a 4-layer model has too few mixers to correlate)."""
    benchmarks: tuple[str, ...] = ()
    """Benchmarks whose drops the diagnostics are correlated with; empty = every one the model has."""
    diag_items: int = 16
    """Text windows the hidden-state diagnostics are computed on (from the language-modelling benchmark)."""
    diag_length: int = 128
    """Tokens per diagnostic window (every position counts)."""
    compare_with: tuple[str, ...] = ()
    """Other models (zoo:NAME, directories) for CKA between models on the same inputs (same tokenizer)."""

    def __post_init__(self):
        if self.method == "all":
            raise MechHybridError("representation: method must be zero, mean, resample or skip, got 'all'"
                                  " (run it once per method)")
        super().__post_init__()
        self.compare_with = tuple(self.compare_with)
        if self.diag_items < 1 or self.diag_length < 2:
            raise MechHybridError("diag_items must be >= 1 and diag_length >= 2")


def compare_within_study(cfg: RepresentationConfig, model: str, models: tuple[str, ...]) -> RepresentationConfig:
    """In a study, CKA compares each model with the study's other models, unless the config names models."""
    if cfg.compare_with:
        return cfg
    return dataclasses.replace(cfg, compare_with=tuple(m for m in models if m != model))
