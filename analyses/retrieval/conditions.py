"""What the retrieval analysis does to the model, as data: one `Condition` per generated grid.

Each condition is a list of interventions plus the phase generate applies them in (`prefill`, `generation`
under the config's reading, or `all`) and the coordinates its rows carry (kind, phase, k, selection, scale).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from mechhybrid.interventions import Ablate

__all__ = ["Condition", "BASELINE", "kind_conditions", "mixer_kinds"]


@dataclass(frozen=True)
class Condition:
    """One generated grid: a name (the row's `condition`), what is done, when, and the rows' coordinates."""

    name: str
    method: str
    """What was done in general terms: none, zero (mixer outputs), mask (attention keys hidden), focus
    (needle logits raised), keep_heads (head sparsification)."""
    interventions: tuple = ()
    phase: str | None = None
    """generate's phase override: prefill, generation or all (None: baseline)."""
    coords: dict = field(default_factory=dict)
    jrt: bool = False
    """Runs on the just-read-twice prompts."""
    per_prompt: Callable | None = field(default=None, compare=False)
    """prompts -> more interventions for a batch of those prompts (in that order), for edits whose positions
    differ per prompt (the needle's keys)."""

    applies: Callable | None = field(default=None, compare=False)
    """() -> whether the condition runs, known only as the run goes (a random head set beyond the number of
    distinct sets there are); None: always."""

    def for_prompts(self, prompts) -> list:
        """The interventions of a generate call on `prompts`."""
        return list(self.interventions) + (list(self.per_prompt(prompts)) if self.per_prompt else [])

    @property
    def baseline_name(self) -> str:
        """The condition whose scores this one's drop is measured against (same prompts)."""
        return "jrt:baseline" if self.jrt else "baseline"


BASELINE = Condition("baseline", "none")


def mixer_kinds(hm, kinds: tuple[str, ...]) -> list[str]:
    """The mixer kinds of `hm` to zero in turn: `kinds` if given (those it has), else every one it has."""
    present = list(dict.fromkeys(c.kind for c in hm.components if c.kind != "mlp"))
    return [k for k in present if not kinds or k in kinds]


def kind_conditions(hm, kinds: list[str], phases, jrt: bool = False) -> list[Condition]:
    """Every component of one mixer kind zeroed, in each phase."""
    out = []
    for kind in kinds:
        components = tuple(c for c in hm.components if c.kind == kind)
        for phase in phases:
            prefix = "jrt:" if jrt else ""
            out.append(Condition(f"{prefix}zero:{kind}:{phase}", "zero",
                                 (Ablate(list(components), method="zero"),), phase,
                                 {"kind": kind, "phase": phase, **({"prompt": "jrt"} if jrt else {})}, jrt))
    return out
