"""Timing and memory helpers shared by the benchmarks (run them from the repository root)."""

from __future__ import annotations

import time

import torch


def interleaved_min_seconds(fns: dict, repeats: int, grad: bool = False) -> dict:
    """Name -> minimum seconds over `repeats` rounds, the functions taking turns within each round (after one
    warm-up call each): load from other processes on a shared CPU then hits every contender alike, and the
    minimum is the least disturbed run (back-to-back blocks once made the same generate look 0.86x or 1.98x).
    Autograd is off unless `grad` (for timing a backward)."""
    with torch.set_grad_enabled(grad):
        for fn in fns.values():
            fn()
        times = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def peak_cpu_bytes(fn) -> int:
    """Peak of the running sum of CPU allocations made while `fn` runs (torch profiler, memory events)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = best = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        best = max(best, current)
    return best
