"""Config of the representation diagnostics (Study A experiment 7, done at all positions, with the final norm)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mechhybrid.errors import MechHybridError

from ..ablation.config import ALL_KINDS, check_common

__all__ = ["RepresentationConfig"]


@dataclass
class RepresentationConfig:
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
    exclude_benchmarks: tuple[str, ...] = ()
    """Benchmarks to leave out of the default selection."""
    data: dict = field(default_factory=dict)
    """Local data for real checkpoints (as in component_ablation); nothing is downloaded."""
    limit: int = 64
    """Items (documents, questions) per benchmark: a seeded sample of the fixed split."""
    lm_tokens: int = 2048
    """Tokens per window of a real language-modelling corpus (wikitext; Study A: 2,048), capped at the
    model's maximum length."""
    max_tokens: int = 0
    """Longest sequence fed to the model (0 = the model's maximum): longer multiple-choice and generative
    prompts lose their earliest tokens, i.e. few-shot examples (Study A capped Falcon-H1 at 1,024 on CPU)."""
    diag_items: int = 16
    """Text windows the hidden-state diagnostics are computed on (from the language-modelling benchmark)."""
    diag_length: int = 128
    """Tokens per diagnostic window (every position counts)."""
    compare_with: tuple[str, ...] = ()
    """Other models (zoo:NAME, directories) for CKA between models on the same inputs (same tokenizer)."""
    seed: int = 0
    """Seed of the bootstrap (and of resample sources)."""
    batch_size: int = 16
    """Sequences per forward."""
    conditions_per_forward: int = 8
    """Ablated components evaluated together by one stacked forward (and checkpointed together)."""
    budget_mb: float = 512
    """Memory budget for one stacked forward's logits or hidden states (MiB)."""

    def __post_init__(self):
        self.kinds = tuple(self.kinds)
        self.benchmarks, self.exclude_benchmarks = tuple(self.benchmarks), tuple(self.exclude_benchmarks)
        self.compare_with = tuple(self.compare_with)
        check_common(self)
        if self.method not in ("zero", "mean", "resample", "skip"):
            raise MechHybridError(f"representation: method must be zero, mean, resample or skip, got {self.method!r}"
                                  " (run it once per method)")
        bad = [k for k in self.kinds if k not in ALL_KINDS]
        if bad:
            raise MechHybridError(f"unknown kind(s) {bad}; kinds: {', '.join(ALL_KINDS)}")
        if "mlp" in self.kinds and not self.include_mlp:
            raise MechHybridError("kinds lists 'mlp' but include_mlp is false: set include_mlp = true")
        if self.diag_items < 1 or self.diag_length < 2:
            raise MechHybridError("diag_items must be >= 1 and diag_length >= 2")
        if self.conditions_per_forward < 1 or self.budget_mb <= 0:
            raise MechHybridError("conditions_per_forward must be >= 1 and budget_mb > 0")
