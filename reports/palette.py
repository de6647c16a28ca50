"""Model roles (hybrid or control) and one colour per model family, the same on every page of a report.

Colours are Okabe & Ito's colour-blind-safe hues ("Color Universal Design", 2008), with the three light ones
(orange, sky blue, yellow) darkened until they reach 3:1 contrast against the white page (WCAG 2.1, 1.4.11
non-text contrast; tests/reports/test_charts.py checks every colour), and ordered strongest first. Families
are ranked hybrids first, then the controls, so that a report's first family always gets the strongest
colour; with more than eight families colours repeat (no colour-blind-safe qualitative palette has more), and
the legend still names each family.
"""

from __future__ import annotations

from collections.abc import Iterable

from mechhybrid.results.vocabulary import FAMILY_ORDER, MIXER_KINDS, ROLES
from mechhybrid.results.vocabulary import SSM_FAMILIES as _SSM
from mechhybrid.results.vocabulary import TRANSFORMER_FAMILIES as _TRANSFORMERS

__all__ = [
    "FAMILY_COLOURS", "NEUTRAL", "TRANSFORMER_FAMILIES", "SSM_FAMILIES", "ROLE_LABELS", "ROLE_ORDER",
    "role_of", "family_palette", "Palette",
]

# blue, vermillion, bluish green, reddish purple, orange (darkened), sky blue (darkened), yellow (darkened), black
FAMILY_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#B07800", "#3A8FC4", "#8A7F00", "#000000")
NEUTRAL = "#767676"
"""Reference rules, unknown families and cell borders: the lightest grey with 4.5:1 against white."""

# The controls named by the family table in DESIGN.md: Transformers, and Mamba-2 as the pure-SSM control.
TRANSFORMER_FAMILIES = frozenset(_TRANSFORMERS)
SSM_FAMILIES = frozenset(_SSM)
_MIXER_KINDS_SSM = frozenset(MIXER_KINDS) - {"attention"}

ROLE_ORDER = ROLES
ROLE_LABELS = {"hybrid": "hybrid", "transformer": "Transformer control", "ssm": "pure-SSM control"}

Palette = dict  # family -> hex colour; a plain dict so that altair scales take its keys and values directly


def role_of(model: dict) -> str:
    """'transformer', 'ssm' or 'hybrid': by family first, else by the mixer kinds of its components."""
    family = model.get("family")
    if family in TRANSFORMER_FAMILIES:
        return "transformer"
    if family in SSM_FAMILIES:
        return "ssm"
    components = model.get("components") or []
    mixers = {c.get("kind") for c in components if isinstance(c, dict)} - {"mlp"}
    if mixers == {"attention"}:
        return "transformer"
    if mixers and mixers <= _MIXER_KINDS_SSM:
        return "ssm"
    return "hybrid"


def _rank(family: str, role: str) -> tuple:
    # Known families claim colours in the family table's order, hybrids first; unknown families follow, sorted.
    known = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
    return (ROLE_ORDER.index(role), known, family)


def family_palette(models: Iterable[dict]) -> Palette:
    """Colour for every family among `models` (model header dicts), deterministic for a given set."""
    roles: dict[str, str] = {}
    for model in models:
        family = str(model.get("family"))
        roles.setdefault(family, role_of(model))
    ordered = sorted(roles, key=lambda family: _rank(family, roles[family]))
    return {family: FAMILY_COLOURS[i % len(FAMILY_COLOURS)] for i, family in enumerate(ordered)}
