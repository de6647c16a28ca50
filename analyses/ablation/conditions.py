"""The conditions of Study A's component ablation, named as docs/results-schema.md says."""

from __future__ import annotations

import random

from mechhybrid.errors import MechHybridError

from ..common import stable_seed, warn
from ..scoring import Condition
from .config import MIXER_KINDS, ComponentAblationConfig

__all__ = ["ablated_kinds", "group_conditions", "random_conditions", "sweep_conditions", "third_conditions",
           "resilience_conditions", "removed_counts", "BASELINE"]

BASELINE = Condition("baseline", "none")
THIRDS = ("early", "middle", "late")


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


def group_conditions(hm, kinds, method: str) -> list[Condition]:
    return [Condition(f"group:{k}", method, tuple(hm.components.by_kind(k))) for k in kinds]


def random_conditions(hm, kinds, method: str, cfg: ComponentAblationConfig, notes: list) -> list[Condition]:
    """Matched random controls: as many components as group:<kind>, drawn from every other component.

    Draws depend on (seed, kind, trial) only, so every method ablates the same random components. A group
    with fewer other components than its own size (a pure model) has no control: said once in `notes`."""
    out = []
    for kind in kinds:
        group = hm.components.by_kind(kind)
        pool = [c for c in hm.components if c not in set(group)]
        if len(pool) < len(group):
            note = (f"no matched random control for group:{kind}: {len(group)} components, "
                    f"{len(pool)} others to draw from")
            if note not in notes:
                notes.append(note)
                warn(f"{hm.name}: {note}")
            continue
        for t in range(cfg.random_trials):
            chosen = hm.components.sample_matched(group, seed=stable_seed(cfg.seed, "random", kind, t))
            out.append(Condition(f"random:{kind}:{t}", method, tuple(chosen)))
    return out


def sweep_conditions(hm, kinds, method: str) -> list[Condition]:
    return [Condition(f"layer:{c.layer}:{c.kind}", method, (c,)) for c in hm.components if c.kind in kinds]


def third_conditions(hm, kinds, method: str) -> list[Condition]:
    out = []
    for name in THIRDS:
        for kind in kinds:
            comps = hm.components.third(name, kind)
            if comps:
                out.append(Condition(f"third:{name}:{kind}", method, tuple(comps)))
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


def resilience_conditions(hm, cfg: ComponentAblationConfig) -> list[Condition]:
    """`resilience:<n>:<trial>`: n random whole layers skipped (one component per layer names the layer)."""
    first = {}
    for c in hm.components:
        first.setdefault(c.layer, c)
    layers = sorted(first)
    out = []
    for k in removed_counts(hm, cfg):
        for t in range(cfg.resilience_trials):
            rng = random.Random(stable_seed(cfg.seed, "resilience", k, t))
            chosen = sorted(rng.sample(layers, k))
            out.append(Condition(f"resilience:{k}:{t}", "skip", tuple(first[i] for i in chosen)))
    return out
