"""The conditions of Study A's component ablation, named as docs/results-schema.md says, each with the typed
coordinates its rows carry (`removal`: group, random, layer, third or resilience, and what it removed)."""

from __future__ import annotations

import itertools
import math
import random

from mechhybrid.errors import MechHybridError
from mechhybrid.results.vocabulary import THIRDS

from ..common import stable_seed, warn
from ..scoring import Condition
from .config import MIXER_KINDS, ComponentAblationConfig

__all__ = ["ablated_kinds", "not_ablatable", "group_conditions", "random_conditions", "sweep_conditions",
           "third_conditions", "resilience_conditions", "removed_counts", "distinct_draws", "BASELINE"]

BASELINE = Condition("baseline", "none")
MAX_ENUM = 10_000
"""Up to this many possible subsets, draws are a seeded shuffle of all of them; beyond, drawn until distinct."""


def ablated_kinds(hm, cfg: ComponentAblationConfig) -> list[str]:
    """The kinds to ablate, in the model's forward order (every mixer kind present by default)."""
    present = hm.components.kinds()
    if cfg.kinds:
        missing = [k for k in cfg.kinds if k not in present]
        if missing:
            raise MechHybridError(f"model {hm.name} has no component of kind(s) {missing}; it has {present}")
        return [k for k in present if k in cfg.kinds]
    wanted = MIXER_KINDS + (("mlp",) if cfg.include_mlp else ())
    return [k for k in present if k in wanted]


def not_ablatable(hm, cfg) -> str | None:
    """Why `hm` has nothing for an ablation analysis configured by `cfg` to remove (None: it has): the
    `applies_to` of the analyses that ablate one kind or one component at a time."""
    present = hm.components.kinds()
    missing = [k for k in cfg.kinds if k not in present]
    if missing:
        return f"it has no {', '.join(missing)} component (it has {', '.join(present)})"
    if not ablated_kinds(hm, cfg):
        return f"it has no component of the kinds ablated by default (it has {', '.join(present)})"
    return None


def group_conditions(hm, kinds, method: str) -> list[Condition]:
    return [Condition(f"group:{k}", method, tuple(hm.components.by_kind(k)), {"removal": "group", "kind": k})
            for k in kinds]


def distinct_draws(pool: list, k: int, trials: int, seed: int) -> list[tuple]:
    """Up to `trials` different random k-subsets of `pool` (each in pool order); never one subset twice.

    A 4-layer model has only 4 ways to remove one layer: then every subset is taken once, and the caller
    reports fewer trials (n) rather than a median that counts one subset twice."""
    rng = random.Random(seed)
    if math.comb(len(pool), k) <= MAX_ENUM:
        combos = list(itertools.combinations(range(len(pool)), k))
        rng.shuffle(combos)
        picks = combos[:trials]
    else:  # too many subsets to list: draw until `trials` different ones
        seen: dict[tuple, None] = {}
        while len(seen) < trials:
            seen.setdefault(tuple(sorted(rng.sample(range(len(pool)), k))))
        picks = list(seen)
    return [tuple(pool[i] for i in pick) for pick in picks]


def _note_fewer(notes: list, what: str, n: int, trials: int) -> None:
    note = f"{what}: only {n} distinct set(s) exist, each taken once (n={n}, not {trials} trials)"
    if n < trials and note not in notes:
        notes.append(note)


def random_conditions(hm, kinds, method: str, cfg: ComponentAblationConfig, notes: list,
                      say=warn) -> list[Condition]:
    """Matched random controls: as many components as group:<kind>, drawn from every other component.

    Draws depend on (seed, kind) only, so every method ablates the same random components. A group with
    fewer other components than its own size (a pure model) has no control, and one with fewer distinct
    draws than `random_trials` gets each once: both are said in `notes` (the former also through `say`)."""
    out = []
    for kind in kinds:
        group = hm.components.by_kind(kind)
        pool = [c for c in hm.components if c not in set(group)]
        if len(pool) < len(group):
            note = (f"no matched random control for group:{kind}: {len(group)} components, "
                    f"{len(pool)} others to draw from")
            if note not in notes:
                notes.append(note)
                say(f"{hm.name}: {note}")
            continue
        draws = distinct_draws(pool, len(group), cfg.random_trials, stable_seed(cfg.seed, "random", kind))
        _note_fewer(notes, f"random:{kind}", len(draws), cfg.random_trials)
        out += [Condition(f"random:{kind}:{t}", method, comps, {"removal": "random", "kind": kind, "trial": t})
                for t, comps in enumerate(draws)]
    return out


def sweep_conditions(hm, kinds, method: str) -> list[Condition]:
    return [Condition(f"layer:{c.layer}:{c.kind}", method, (c,), {"removal": "layer", "layer": c.layer, "kind": c.kind})
            for c in hm.components if c.kind in kinds]


def third_conditions(hm, kinds, method: str) -> list[Condition]:
    out = []
    for name in THIRDS:
        for kind in kinds:
            comps = hm.components.third(name, kind)
            if comps:
                out.append(Condition(f"third:{name}:{kind}", method, tuple(comps),
                                     {"removal": "third", "third": name, "kind": kind}))
    return out


def removed_counts(hm, cfg: ComponentAblationConfig) -> tuple[int, ...]:
    """Layers removed per resilience setting; default a quarter and three quarters (Study A: 6, 18 of 24)."""
    n = hm.n_layers
    counts = cfg.resilience_removed
    if counts is None:
        counts = tuple(sorted({max(1, round(n / 4)), max(1, round(3 * n / 4))}))
    too_many = [k for k in counts if k >= n]
    if too_many:
        raise MechHybridError(f"resilience_removed {too_many} must be below the model's {n} layers")
    return counts


def resilience_conditions(hm, cfg: ComponentAblationConfig, notes: list) -> list[Condition]:
    """`resilience:<n>:<trial>`: n random whole layers skipped (one component per layer names the layer); a
    count with fewer distinct layer sets than `resilience_trials` runs each set once (said in `notes`)."""
    first = {}
    for c in hm.components:
        first.setdefault(c.layer, c)
    layers = [first[i] for i in sorted(first)]
    out = []
    for k in removed_counts(hm, cfg):
        draws = distinct_draws(layers, k, cfg.resilience_trials, stable_seed(cfg.seed, "resilience", k))
        _note_fewer(notes, f"resilience:{k}", len(draws), cfg.resilience_trials)
        out += [Condition(f"resilience:{k}:{t}", "skip", comps, {"removal": "resilience", "n_removed": k, "trial": t})
                for t, comps in enumerate(draws)]
    return out
