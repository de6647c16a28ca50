"""Head-level retrieval conditions: head sparsification (k-curve), needle exposure and retrieval heads."""

from __future__ import annotations

__all__ = ["head_conditions", "head_extra"]


def head_conditions(hm, cfg) -> list:
    return []


def head_extra(hm, cfg, scores) -> dict:
    return {}
