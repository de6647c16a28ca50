"""Config of the gather_aggregate analysis (Gather-and-Aggregate heads, arXiv 2504.18574). Defaults are sized
for the zoo (the quick profile)."""

from __future__ import annotations

from dataclasses import dataclass

from mechhybrid.errors import MechHybridError

from ..configs import check_types

__all__ = ["GatherAggregateConfig", "PROMPT_KINDS", "TASKS"]

PROMPT_KINDS = ("needle", "recall", "facts")
"""Segmented prompts the heads are scored on: needle (the segments are the sentences of a haystack, the needle
one of them), recall (key-value pairs) and facts (a zoo multiple-choice item's four choices stated as facts)."""
TASKS = ("needle", "recall", "facts")
"""Zoo benchmarks the ablations are scored on: retrieval (needle, recall) and the zoo's multiple choice
(facts, by choice log-likelihood)."""


@dataclass
class GatherAggregateConfig:
    """Score every softmax-attention head as a Gather head (at a segment's last token, its attention on that
    segment) and as an Aggregate head (at the final query, its attention on the segments' last tokens), take the
    top-scored heads as candidates, and ablate them against as many random heads on the zoo's retrieval and
    multiple-choice benchmarks."""

    prompts: int = 16
    """Segmented prompts per kind (needle, recall, facts) the heads are scored on."""
    needle_length: int = 64
    """Tokens (about) of a needle scoring prompt: whole filler sentences around the needle sentence."""
    recall_pairs: int = 6
    """Key-value pairs (segments) of a recall scoring prompt."""
    top_n: int = 1
    """Candidates per role: the n heads with the highest mean score of that role over every scoring prompt."""
    min_lift: float = 0.0
    """Optionally, a head is a candidate only if its mean score is at least this multiple of uniform attention's
    on the same prompts (a role whose best head stays below then has no candidate); 0 = off: the top_n heads are
    the candidates, and the ablations tell whether they matter (every head's score and the uniform baseline are
    in the rows)."""
    random_sets: int = 3
    """Random head sets per size ablated against the candidates (every subset when there are no more than this
    many), drawn from the heads that are no candidate."""
    items: int = 24
    """Items per benchmark (needle, recall, facts) the ablations are scored on (a seeded sample)."""
    needle_lengths: tuple[int, ...] = (64,)
    """Context lengths of the zoo needle benchmark's items the ablations are scored on."""
    batch_size: int = 16
    """Sequences per forward."""
    seed: int = 0
    """Seed of the scoring prompts, the item samples, the random head sets and the bootstrap."""

    def __post_init__(self):
        check_types(self)
        self.needle_lengths = tuple(self.needle_lengths)
        if min(self.prompts, self.top_n, self.random_sets, self.items, self.batch_size) < 1:
            raise MechHybridError("gather_aggregate prompts, top_n, random_sets, items and batch_size must be >= 1")
        if self.seed < 0:
            raise MechHybridError(f"gather_aggregate seed must be >= 0, got {self.seed}")
        if self.needle_length < 24:
            raise MechHybridError(f"gather_aggregate needle_length must be >= 24 tokens (needle, question and two "
                                  f"filler sentences), got {self.needle_length}")
        if not 2 <= self.recall_pairs <= 32:
            raise MechHybridError(f"gather_aggregate recall_pairs must lie in 2..32 (the zoo has 32 names), got "
                                  f"{self.recall_pairs}")
        if self.min_lift < 0.0:
            raise MechHybridError(f"gather_aggregate min_lift must be >= 0 (0 = off), got {self.min_lift}")
        from mechhybrid.zoo.benchmarks import NEEDLE_LENGTHS

        bad = [n for n in self.needle_lengths if n not in NEEDLE_LENGTHS]
        if not self.needle_lengths or bad:
            raise MechHybridError(f"gather_aggregate needle_lengths must be among the zoo needle benchmark's "
                                  f"{list(NEEDLE_LENGTHS)}, got {list(self.needle_lengths)}")
