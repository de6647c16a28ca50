"""Config of the retrieval analysis (Study B: needle grids, phase x ablation, head sparsification, needle
exposure, retrieval heads). Defaults are sized for the zoo; the study's `full` profile sets Study B's sizes."""

from __future__ import annotations

from dataclasses import dataclass

from mechhybrid.errors import MechHybridError
from mechhybrid.results.vocabulary import MIXER_KINDS

from ..configs import check_types
from .scorers import SCORERS

__all__ = ["RetrievalConfig", "PHASES", "GENERATION_READINGS", "HEAD_SELECTIONS", "STUDY_B_NEEDLE"]

HEAD_SELECTIONS = ("entropy", "l2", "static", "random")
"""How head sparsification chooses the heads it keeps (see RetrievalConfig.head_selections)."""

PHASES = ("prefill", "generation", "all")
"""When an intervention acts: over the prompt, while the answer is produced, or both."""
GENERATION_READINGS = ("answer", "decode")
"""What "generation" covers: `answer` = the last prompt position (which predicts the answer's first token) and
every decode step; `decode` = decode steps only (the first answer token is then never touched)."""
STUDY_B_NEEDLE = {
    "needle": "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.",
    "question": "What is the best thing to do in San Francisco?",
    "answer_prefix": "The best thing to do in San Francisco is",
    "answer": "eat a sandwich and sit in Dolores Park on a sunny day",
}


@dataclass
class RetrievalConfig:
    """Needle accuracy over context length x depth; the same under each mixer kind zeroed in prefill,
    generation or both; attention heads kept per token (k-curve); the needle hidden or focused; retrieval
    heads and what ablating them does."""

    lengths: tuple[int, ...] = (64, 128, 256, 512)
    """Context lengths (tokens of the whole prompt on the zoo, of the haystack for a text file)."""
    depths: tuple[float, ...] = (0.0, 0.5, 1.0)
    """Relative needle depths, 0 = start of the haystack, 1 = its end."""
    per_cell: int = 2
    """Prompts per (length, depth) cell on the zoo (a text haystack gives one per cell)."""
    seed: int = 0
    """Seed of the zoo prompts' draws and of the bootstrap."""
    scorer: str = ""
    """The scorer the grids and drops use: exact, substring or string_match_all; empty = exact on the zoo,
    substring (Study B's) for a text haystack. Every scorer is reported."""
    generation_phase: str = "answer"
    """Reading of "generation": answer (the last prompt position and every decode step) or decode (decode steps
    only)."""
    phases: tuple[str, ...] = PHASES
    """Phases the mixer-kind ablations run in."""
    kinds: tuple[str, ...] = ()
    """Mixer kinds zeroed in turn (attention, ssm, linear_attention, recurrent, conv); empty = every kind the
    model has."""
    jrt: bool = False
    """Also run just-read-twice prompts (context repeated before the question), baseline and attention zeroed;
    on the zoo only lengths up to half the training length, so that doubling does not confound with length."""
    max_new_tokens: int = 0
    """Tokens generated per prompt; 0 = the answer's length plus one (Study B generated 40)."""
    batch_size: int = 16
    """Prompts per generate call."""
    head_curve: bool = True
    """Head sparsification: keep k query heads per attention layer for k = 0..heads, chosen per token by
    entropy and statically (ranked once on calibration prompts)."""
    head_selections: tuple[str, ...] = ("entropy",)
    """How the kept heads are chosen: entropy (per query token, the k lowest-entropy heads, Study B), l2 (per
    token, the k highest L2 norms of the attention distribution, Study B's alternative), static (ranked once by
    mean entropy on calibration prompts), random (the control: k heads per layer chosen at random, several trials
    per k, see random_head_subsets_max)."""
    random_head_subsets_max: int = 6
    """Trials per k of the random selection: every k-subset of each layer's heads when no layer has more than
    this many (6 = the pairs of a 4-head layer: the zoo's random curve is exact), else this many seeded draws."""
    head_ks: tuple[int, ...] = ()
    """The k of the head curve (query heads kept per attention layer); empty = every k from 0 to the heads of
    the model's widest attention layer. Asked for on a model without attention heads, a bad input."""
    head_phases: tuple[str, ...] = ("all",)
    """Phases the head sparsification runs in."""
    retention_items: int = 32
    """Items of the zoo's facts and lm benchmarks on which the head curve's retention is measured (phase all
    only; 0 turns it off; real models: not measured)."""
    exposure_scales: tuple[float, ...] = (2.0,)
    """Needle focus scales (logits at the needle set to max logit x scale); empty turns focus off."""
    set_logits: tuple[tuple[float, ...], ...] = ()
    """(layer, head, logit) triples: while the answer is generated, that head's pre-softmax logits at the
    needle's answer tokens are set to `logit` (Study B's "set chosen logits"); empty: none."""
    retrieval_heads: bool = True
    """Score every attention head's retrieval score (Wu et al.) and ablate the top heads vs random ones."""
    random_head_sets: int = 3
    """Random head sets of the same size ablated against the top retrieval heads (every subset when there are
    no more than this many)."""
    retrieval_threshold: float = 0.1
    """Retrieval score above which a head counts as a retrieval head."""
    haystack: str = ""
    """A text file to use as haystack (real models); empty = the zoo's language (zoo models only)."""
    needle: str = STUDY_B_NEEDLE["needle"]
    """The needle sentence (text haystack)."""
    question: str = STUDY_B_NEEDLE["question"]
    """The question after the haystack (text haystack)."""
    answer_prefix: str = STUDY_B_NEEDLE["answer_prefix"]
    """The start of the answer the prompt ends with (text haystack)."""
    answer: str = STUDY_B_NEEDLE["answer"]
    """The expected answer (text haystack)."""

    def __post_init__(self):
        check_types(self)
        for name in ("lengths", "depths", "phases", "kinds", "head_selections", "head_ks", "head_phases",
                     "exposure_scales"):
            setattr(self, name, tuple(getattr(self, name)))
        if not self.lengths or any(n < 1 for n in self.lengths):
            raise MechHybridError(f"retrieval lengths must be >= 1 token, got {list(self.lengths)}")
        if not self.depths or any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise MechHybridError(f"retrieval depths must lie in [0, 1], got {list(self.depths)}")
        if self.per_cell < 1 or self.batch_size < 1 or min(self.max_new_tokens, self.seed, self.retention_items) < 0:
            raise MechHybridError("per_cell and batch_size must be >= 1; max_new_tokens, seed and retention_items "
                                  ">= 0")
        if self.scorer and self.scorer not in SCORERS:
            raise MechHybridError(f"unknown scorer {self.scorer!r}; scorers: {', '.join(SCORERS)}")
        if self.generation_phase not in GENERATION_READINGS:
            raise MechHybridError(f"generation_phase must be one of {', '.join(GENERATION_READINGS)}, "
                                  f"got {self.generation_phase!r}")
        bad = [p for p in self.phases + self.head_phases if p not in PHASES]
        if bad:
            raise MechHybridError(f"unknown phase {bad[0]!r}; phases: {', '.join(PHASES)}")
        bad = [h for h in self.head_selections if h not in HEAD_SELECTIONS]
        if bad:
            raise MechHybridError(f"unknown head selection {bad[0]!r}; selections: {', '.join(HEAD_SELECTIONS)}")
        bad = [k for k in self.kinds if k not in MIXER_KINDS]
        if bad:
            raise MechHybridError(f"unknown mixer kind {bad[0]!r}; kinds: {', '.join(MIXER_KINDS)}")
        if any(k < 0 for k in self.head_ks):
            raise MechHybridError(f"head_ks must be >= 0, got {list(self.head_ks)}")
        for name in ("needle", "question", "answer"):
            if self.haystack and not getattr(self, name).strip():
                raise MechHybridError(f"retrieval {name} is empty: a text haystack needs a needle, a question and "
                                      "its answer")
        if self.haystack and self.answer.strip() not in self.needle:
            raise MechHybridError("retrieval answer must appear in the needle sentence (it is what the model "
                                  "retrieves from it)")
        if any(s <= 0 for s in self.exposure_scales):
            raise MechHybridError("exposure_scales must be > 0")
        self.set_logits = tuple(tuple(t) for t in self.set_logits)
        if any(len(t) != 3 or int(t[0]) != t[0] or int(t[1]) != t[1] or min(t[0], t[1]) < 0
               for t in self.set_logits):
            raise MechHybridError(f"set_logits entries are [layer, head, logit] with a layer and head >= 0, got "
                                  f"{[list(t) for t in self.set_logits]}")
        if self.random_head_subsets_max < 1:
            raise MechHybridError(f"random_head_subsets_max must be >= 1, got {self.random_head_subsets_max}")
        if self.random_head_sets < 1:
            raise MechHybridError(f"random_head_sets must be >= 1, got {self.random_head_sets}")
        if not 0.0 < self.retrieval_threshold < 1.0:
            raise MechHybridError("retrieval_threshold must lie in (0, 1)")
