"""The study definition: which analyses `mechhybrid study` runs, in which order, and at which sizes.

This is the one place a new analysis joins the study: a `Step` naming its package's `SPEC`, the options of each
profile and its measured time on the zoo. The registry, the CLI (`run`, `study --analyses`, `--help`) and the
study's notes for the report all read it from here.

Profiles:
- `quick` (the default): sized for the zoo, so that the whole study on the zoo's six models stays within
  QUICK_BUDGET_S on ZOO_CORES cores as analyses are added (a test adds up every step's measured `zoo_seconds`);
- `full`: the published protocols at their own sizes, for real models on a GPU.
A profile's options sit under the config file's and the command line's: those override them.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from mechhybrid.errors import MechHybridError

from . import ablation, circuits, gather_aggregate, memory_lens, patching, representation, retrieval
from .spec import Analysis

__all__ = ["Step", "STUDY", "PROFILES", "DEFAULT_PROFILE", "QUICK_BUDGET_S", "ZOO_CORES", "ZOO_MEASURED",
           "step", "select_steps", "quick_wall_s", "profiles_help"]

PROFILES = ("quick", "full")
DEFAULT_PROFILE = "quick"
QUICK_BUDGET_S = 600.0
"""Wall time the quick study of the whole zoo may take on ZOO_CORES cores (one model per worker process)."""
ZOO_CORES = 2
ZOO_MEASURED = ("shipped 6-model zoo (recipe 7), quick profile, `mechhybrid study` with one single-threaded worker "
                "per core: 692.3 s inside the analyses (OUT/timings.json), 415 s wall on 2 cores with loading and "
                "the report (2026-12-02, session 8's machine, nothing else running)")
"""How every step's `zoo_seconds` was measured."""


@dataclass(frozen=True)
class Step:
    """One analysis of the study, with its options per profile."""

    analysis: Analysis
    zoo_seconds: float
    """Measured seconds of this analysis at the quick profile, summed over the zoo's models (ZOO_MEASURED)."""
    full: dict
    """Options of the published protocol at its own sizes (`full` profile), over the Config defaults."""
    protocol: str
    """Which published protocol `full` follows, and what it cannot reproduce."""
    quick: dict = field(default_factory=dict)
    """Options of the `quick` profile over the Config defaults (which are themselves sized for the zoo)."""

    @property
    def name(self) -> str:
        return self.analysis.name

    def options(self, profile: str) -> dict:
        """The profile's options for this analysis (a config file and CLI flags override them)."""
        if profile not in PROFILES:
            raise MechHybridError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
        return dict(self.quick if profile == "quick" else self.full)


STUDY: tuple[Step, ...] = (
    # Per model (wall s, session 8's machine, recipe-7 zoo): jamba 144.7, mamba2 86.3, gdn 75.0, parallel 74.9,
    # griffin 52.9, transformer 26.7.
    Step(ablation.SPEC, zoo_seconds=460.6,
         full={"limit": 2000, "seed": 42, "context_lengths": (128, 256, 512, 1024), "resilience_length": 2048,
               "budget_mb": 4096},
         protocol="Study A exp. 1-6, seed 42: up to 2,000 items per benchmark (one limit for all; Study A "
                  "sampled MMLU and HellaSwag 2,000, TruthfulQA 790, ARC 299, GSM8K 100), WikiText at 2,048 "
                  "tokens for perplexity and resilience, context stress at 128-1,024 tokens, a quarter and three "
                  "quarters of the layers removed in 5 trials each. Study A ablated Qwen3.5 by `skip`: add "
                  "--method skip (or all)"),
    # Per model (wall s, session 8's machine, recipe-7 zoo): jamba 14.0, gdn 12.2, parallel 11.9, transformer 7.6,
    # griffin 6.3, mamba2 1.9 (its sweep scores come from component_ablation's, so what it adds is the diagnostics,
    # the MLP sweep, CKA).
    Step(representation.SPEC, zoo_seconds=53.9,
         full={"limit": 2000, "seed": 42, "diag_length": 2048, "budget_mb": 4096},
         protocol="Study A exp. 7 at every position with the final norm, on 2,048-token WikiText windows; "
                  "behavioural drops on up to 2,000 items per benchmark, seed 42"),
    # Per model (wall s, session 8's machine, recipe-7 zoo): parallel 20.9, jamba 20.2, gdn 16.1, transformer 14.7,
    # griffin 8.3, mamba2 3.6.
    Step(retrieval.SPEC, zoo_seconds=83.9,
         full={"lengths": (250, 655, 1060, 1465, 1870, 2275, 2680, 3085, 3490, 4096),
               "depths": tuple(round(i / 9, 4) for i in range(10)), "max_new_tokens": 40, "scorer": "substring",
               "phases": ("prefill", "generation", "all"), "head_phases": ("prefill", "generation", "all"),
               "exposure_scales": (1.0, 2.0, 5.0), "batch_size": 100,
               "head_selections": ("entropy", "l2", "static", "random"), "random_head_sets": 5},
         protocol="Study B: a needle in a haystack at 10 context lengths (250-4,096 tokens) x 10 depths, 40 "
                  "generated tokens, substring credit; attention and every other mixer kind zeroed in prefill, "
                  "generation or both, heads kept per layer for k = 0..heads, the needle hidden or focused. Give "
                  "the haystack text file (Study B used Paul Graham's essays) in the config: haystack = \"...\""),
    # Per model (wall s, session 8's machine, recipe-7 zoo): jamba 22.4, mamba2 18.2, parallel 11.3, griffin 9.6, gdn
    # 6.7, transformer 3.4 (every site set, denoise, atp).
    Step(patching.SPEC, zoo_seconds=71.6, full=patching.FULL,
         protocol="causal tracing (Meng et al.) on clean / corrupted pairs: every zoo task, every site set "
                  "(residual stream, components, heads, recurrent states) at every position, denoise and noise, "
                  "95% intervals over pairs; atp, atp* and ig attribution against the exact sweep. Real models: "
                  "pairs_file = \"pairs.jsonl\""),
    # Per model (wall s, session 8's machine, recipe-7 zoo): mamba2 3.2, jamba 0.9, parallel 0.8, gdn 0.8 (griffin and
    # the Transformer: no lens).
    Step(memory_lens.SPEC, zoo_seconds=5.7,
         full={"lengths": (64, 128, 256, 512), "depths": tuple(round(i / 9, 4) for i in range(10)), "per_cell": 10},
         protocol="the recurrent memory read at the question token with the needle's key, value and the "
                  "question's own query, per layer and head, over a 4 x 10 length x depth grid, with the causal "
                  "write of another value (the zoo's language only)"),
    # Per model (wall s, session 8's machine, recipe-7 zoo): jamba 3.0, parallel 2.9, gdn 2.8, transformer 1.5,
    # griffin 1.4 (mamba2: no attention).
    Step(gather_aggregate.SPEC, zoo_seconds=11.6,
         full={"prompts": 100, "items": 500, "needle_lengths": (64, 128, 256, 512), "random_sets": 10, "top_n": 3},
         protocol="Gather-and-Aggregate heads (arXiv 2504.18574) scored on segmented prompts and confirmed by "
                  "ablation against as many random heads, on the zoo's needle, recall and multiple choice"),
    # Per model (wall s, session 8's machine, recipe-7 zoo): jamba 1.3, mamba2 1.1, gdn 0.9, parallel 0.8, griffin
    # 0.6, transformer 0.4.
    Step(circuits.SPEC, zoo_seconds=5.1,
         full={"pairs": 64, "method": "eap-ig", "random_trials": 20},
         protocol="edge attribution (EAP-IG) between embedding, components, heads, recurrent states and logits, "
                  "verified by path patching along a curve of circuit sizes against random circuits"),
)
"""What `mechhybrid study` runs, in this order (representation reuses component_ablation's scores)."""


def step(name: str) -> Step:
    """The study's step of analysis `name`."""
    for s in STUDY:
        if s.name == name:
            return s
    raise MechHybridError(f"unknown analysis {name!r}; analyses: {', '.join(s.name for s in STUDY)}")


def select_steps(names=None) -> tuple[Step, ...]:
    """The steps of the analyses `names` (the `--analyses` list), in the study's order; every step for None."""
    if names is None:
        return STUDY
    known = [s.name for s in STUDY]
    for name in names:
        if name not in known:
            raise MechHybridError(f"unknown analysis {name!r} in --analyses; the study's analyses: "
                                  f"{', '.join(known)}")
    return tuple(s for s in STUDY if s.name in names)


def quick_wall_s(steps=None) -> float:
    """The quick study's expected wall time on the zoo with ZOO_CORES worker processes (every step by default):
    the measured seconds, shared out over the cores."""
    return sum(s.zoo_seconds for s in (STUDY if steps is None else steps)) / ZOO_CORES


def _options_text(options: dict) -> str:
    if not options:
        return "the Config defaults"
    return ", ".join(f"{k} = {list(v) if isinstance(v, tuple) else v}" for k, v in options.items())


def _wrapped(text: str, indent: int) -> list[str]:
    return textwrap.wrap(text, 100, initial_indent=" " * indent, subsequent_indent=" " * (indent + 4))


def profiles_help() -> str:
    """The profiles, each analysis's options and its measured time on the zoo, for `study --help`."""
    lines = ["profiles (--profile):"]
    lines += _wrapped(f"quick (default): sized for the zoo; about {quick_wall_s():.0f} s for the whole zoo on "
                      f"{ZOO_CORES} cores (budget {QUICK_BUDGET_S:.0f} s). Measured: {ZOO_MEASURED}.", 2)
    for s in STUDY:
        lines += _wrapped(f"{s.name}: {_options_text(s.quick)}; {s.zoo_seconds:.0f} s summed over the zoo's "
                          "models", 4)
    lines += _wrapped("full: the published protocols at their own sizes, for real models on a GPU (add --dtype "
                      "bfloat16 and the data sets in the config's [data] table).", 2)
    for s in STUDY:
        lines += _wrapped(f"{s.name}: {_options_text(s.full)}. {s.protocol}.", 4)
    return "\n".join(lines)
