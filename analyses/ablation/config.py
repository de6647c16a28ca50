"""Config of the component ablation analysis (Study A, experiments 1-6)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mechhybrid.errors import MechHybridError

__all__ = ["ComponentAblationConfig", "METHOD_CHOICES", "MIXER_KINDS"]

METHOD_CHOICES = ("zero", "mean", "resample", "skip", "all")
MIXER_KINDS = ("attention", "ssm", "linear_attention", "recurrent", "conv")
ALL_KINDS = MIXER_KINDS + ("mlp",)


def check_common(cfg) -> None:
    """Checks shared by every analysis Config: benchmark selection, limit, batching, data paths."""
    if cfg.limit < 1:
        raise MechHybridError(f"limit must be >= 1, got {cfg.limit}")
    if cfg.max_tokens < 0:
        raise MechHybridError(f"max_tokens must be >= 0 (0 = the model's maximum), got {cfg.max_tokens}")
    if cfg.lm_tokens < 2:
        raise MechHybridError(f"lm_tokens must be >= 2, got {cfg.lm_tokens}")
    if cfg.batch_size < 1:
        raise MechHybridError(f"batch_size must be >= 1, got {cfg.batch_size}")
    overlap = set(cfg.benchmarks) & set(cfg.exclude_benchmarks)
    if overlap:
        raise MechHybridError(f"benchmark(s) {sorted(overlap)} are both selected and excluded")
    if not isinstance(cfg.data, dict) or not all(isinstance(v, str) for v in cfg.data.values()):
        raise MechHybridError("data must map benchmark names to file or directory paths")


@dataclass
class ComponentAblationConfig:
    """Group, random-control, layer, positional, perplexity, context and resilience ablations."""

    method: str = "zero"
    """Ablation semantics: zero (mixer output -> 0), mean (-> its mean on held-out text), resample (-> its
    output on other text), skip (the whole layer becomes identity, MLP included), or all (each in turn)."""
    kinds: tuple[str, ...] = ()
    """Component kinds to ablate as groups, thirds and single components; empty = every mixer kind present."""
    include_mlp: bool = False
    """Also ablate MLPs (group, thirds, sweep) alongside the mixers."""
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
    seed: int = 0
    """Seed of every random draw (controls, resilience layers) and of the bootstrap."""
    batch_size: int = 16
    """Sequences per forward (each forward evaluates a whole chunk of conditions)."""
    conditions_per_forward: int = 8
    """Conditions evaluated together by one batched forward, and saved together as checkpoints."""
    budget_mb: float = 512
    """Memory budget for the logits of one batched forward (MiB)."""

    def __post_init__(self):
        self.kinds = tuple(self.kinds)
        self.benchmarks, self.exclude_benchmarks = tuple(self.benchmarks), tuple(self.exclude_benchmarks)
        self.context_lengths = tuple(int(n) for n in self.context_lengths)
        if self.resilience_removed is not None:
            self.resilience_removed = tuple(int(n) for n in self.resilience_removed)
        check_common(self)
        if self.method not in METHOD_CHOICES:
            raise MechHybridError(f"unknown method {self.method!r}; choose one of {', '.join(METHOD_CHOICES)}")
        bad = [k for k in self.kinds if k not in ALL_KINDS]
        if bad:
            raise MechHybridError(f"unknown kind(s) {bad}; kinds: {', '.join(ALL_KINDS)}")
        if "mlp" in self.kinds and not self.include_mlp:
            raise MechHybridError("kinds lists 'mlp' but include_mlp is false: set include_mlp = true")
        if self.random_trials in (1, 2) or self.random_trials < 0:
            raise MechHybridError("random_trials must be 0 (off) or >= 3: fewer draws cannot show the spread")
        if self.resilience_trials < 5:
            raise MechHybridError("resilience_trials must be >= 5 (Study A: one outlier trial can dominate)")
        if any(n < 1 for n in self.context_lengths) or self.resilience_length < 2:
            raise MechHybridError("context lengths must be >= 1 token and resilience_length >= 2")
        if self.resilience_removed and any(n < 1 for n in self.resilience_removed):
            raise MechHybridError("resilience_removed entries must be >= 1 layer")
        if self.conditions_per_forward < 1 or self.budget_mb <= 0:
            raise MechHybridError("conditions_per_forward must be >= 1 and budget_mb > 0")

    @property
    def methods(self) -> tuple[str, ...]:
        return ("zero", "mean", "resample", "skip") if self.method == "all" else (self.method,)
