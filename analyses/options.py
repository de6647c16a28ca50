"""The options every analysis Config shares (what to ablate, which data, how much, how batched), checked once.

An analysis Config subclasses `SharedOptions` and adds its own fields; a subclass may re-declare a shared field
to change its default or its docstring (field docstrings become --help text: analyses/configs.py reads them
along the class hierarchy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mechhybrid.errors import MechHybridError
from mechhybrid.results.vocabulary import ABLATION_METHODS as SEMANTICS
from mechhybrid.results.vocabulary import COMPONENT_KINDS as ALL_KINDS
from mechhybrid.results.vocabulary import MIXER_KINDS

from .configs import check_types

__all__ = ["SharedOptions", "MIXER_KINDS", "ALL_KINDS", "SEMANTICS"]


@dataclass
class SharedOptions:
    """Options shared by component_ablation and representation."""

    method: str = "zero"
    """Ablation semantics: zero (mixer output -> 0), mean (-> its mean on held-out text), resample (-> its
    output on other text) or skip (the whole layer becomes identity, MLP included)."""
    kinds: tuple[str, ...] = ()
    """Component kinds to ablate; empty = every mixer kind present."""
    include_mlp: bool = False
    """Also ablate MLPs alongside the mixers."""
    benchmarks: tuple[str, ...] = ()
    """Benchmarks to score on; empty = every benchmark the model has data for."""
    exclude_benchmarks: tuple[str, ...] = ()
    """Benchmarks to leave out of the default selection (e.g. a slow generative one)."""
    data: dict = field(default_factory=dict)
    """Local data for real checkpoints: benchmark name (mmlu, arc, hellaswag, truthfulqa, gsm8k, wikitext)
    -> a parquet/JSONL file, a directory, or a datasets cache dir. Nothing is downloaded."""
    limit: int = 64
    """Items (documents, questions) per benchmark: a seeded sample of the fixed split."""
    lm_tokens: int = 2048
    """Tokens per window of a real language-modelling corpus (wikitext; Study A: 2,048), capped at the
    model's maximum length."""
    max_tokens: int = 0
    """Longest sequence fed to the model (0 = the model's maximum): longer multiple-choice and generative
    prompts lose their earliest tokens, i.e. few-shot examples (Study A capped Falcon-H1 at 1,024 on CPU)."""
    seed: int = 0
    """Seed of every random draw and of the bootstrap."""
    batch_size: int = 16
    """Sequences per forward."""
    conditions_per_forward: int = 8
    """Conditions evaluated together by one batched forward, and saved together as checkpoints."""
    budget_mb: float = 512
    """Memory budget for the logits or hidden states of one batched forward (MiB)."""

    methods_allowed = SEMANTICS
    """Values `method` may take (a class attribute, not an option)."""

    def __post_init__(self):
        check_types(self)  # first: every check below compares values of the annotated types
        self.kinds = tuple(self.kinds)
        self.benchmarks, self.exclude_benchmarks = tuple(self.benchmarks), tuple(self.exclude_benchmarks)
        if self.method not in self.methods_allowed:
            raise MechHybridError(f"unknown method {self.method!r}; choose one of {', '.join(self.methods_allowed)}")
        bad = [k for k in self.kinds if k not in ALL_KINDS]
        if bad:
            raise MechHybridError(f"unknown kind(s) {bad}; kinds: {', '.join(ALL_KINDS)}")
        if "mlp" in self.kinds and not self.include_mlp:
            raise MechHybridError("kinds lists 'mlp' but include_mlp is false: set include_mlp = true")
        if self.seed < 0:
            raise MechHybridError(f"seed must be >= 0, got {self.seed}")
        if self.limit < 1:
            raise MechHybridError(f"limit must be >= 1, got {self.limit}")
        if self.max_tokens < 0:
            raise MechHybridError(f"max_tokens must be >= 0 (0 = the model's maximum), got {self.max_tokens}")
        if self.lm_tokens < 2:
            raise MechHybridError(f"lm_tokens must be >= 2, got {self.lm_tokens}")
        if self.batch_size < 1:
            raise MechHybridError(f"batch_size must be >= 1, got {self.batch_size}")
        overlap = set(self.benchmarks) & set(self.exclude_benchmarks)
        if overlap:
            raise MechHybridError(f"benchmark(s) {sorted(overlap)} are both selected and excluded")
        bad_paths = {k: v for k, v in self.data.items() if not isinstance(v, str)}
        if bad_paths:
            name, value = next(iter(bad_paths.items()))
            raise MechHybridError(f"data.{name} must be a file or directory path (a string), got {value!r}")
        if self.conditions_per_forward < 1 or self.budget_mb <= 0:
            raise MechHybridError("conditions_per_forward must be >= 1 and budget_mb > 0")
