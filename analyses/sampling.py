"""Seeded item samples (`limit`): the same seed and limit give the same items, in the data set's order."""

from __future__ import annotations

import numpy as np

__all__ = ["sample_indices"]


def sample_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """All of range(n) if limit >= n, else `limit` indices drawn without replacement, sorted.

    A sample rather than the first items: MMLU is sorted by subject and the zoo's needle grid by length."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, size=limit, replace=False).tolist())
