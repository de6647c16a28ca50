"""Wall-clock accounting: how much of an analysis is spent inside model forwards (benchmarks/bench_study.py).

Kept apart from Results: timings differ run to run, Results must not (same seed -> same bytes).
"""

from __future__ import annotations

import time

__all__ = ["Stopwatch", "FORWARD"]


class Stopwatch:
    """Accumulates seconds spent inside `with stopwatch:` blocks (re-entrant: nested blocks count once)."""

    def __init__(self):
        self.total = 0.0
        self.calls = 0
        self._depth = 0
        self._t0 = 0.0

    def __enter__(self):
        if self._depth == 0:
            self._t0 = time.perf_counter()
        self._depth += 1
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            self.total += time.perf_counter() - self._t0
            self.calls += 1
        return False

    def reset(self) -> None:
        self.total, self.calls = 0.0, 0


FORWARD = Stopwatch()
"""Time inside HybridModel forwards (logits_many, hidden_states, run, generate) called by analyses."""
