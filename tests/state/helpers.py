"""Shared helpers for the state tests: which tiny families carry state, and small reference computations."""

from __future__ import annotations

import torch

STATEFUL = (
    "qwen3_5_text", "qwen3_next", "falcon_h1", "jamba", "recurrent_gemma", "zamba2", "nemotron_h", "bamba",
    "granitemoehybrid", "lfm2", "mamba2",
)
"""Tiny model types with at least one layer that carries a recurrent state (all but the Transformer controls)."""

EXPECTED_STATE_LAYERS = {
    "base": {
        "qwen3_5_text": (0, 1, 2), "qwen3_next": (0, 1, 2), "falcon_h1": (0, 1, 2, 3), "jamba": (0, 2),
        "recurrent_gemma": (0, 1, 3), "zamba2": (0, 1, 2, 3), "nemotron_h": (0,), "bamba": (0, 2),
        "granitemoehybrid": (0, 2), "lfm2": (0, 1, 3), "mamba2": (0, 1, 2, 3),
    },
    "alt": {
        "qwen3_5_text": (1, 3), "qwen3_next": (0, 2, 3), "falcon_h1": (0, 1, 2, 3), "jamba": (1, 2),
        "recurrent_gemma": (1, 3), "zamba2": (0, 1, 2, 3), "nemotron_h": (2, 4), "bamba": (1, 3),
        "granitemoehybrid": (1, 2), "lfm2": (1, 3), "mamba2": (0, 1, 2, 3),
    },
}
"""Shape -> model type -> the layers of its tiny config (tests/tiny_configs.py) that carry state: asserted so that
a config change is seen."""

TOL = 1e-4


def max_gap(a, b) -> float:
    """Max |difference| over the recurrent tensor and the conv window of two States."""
    gap = (a.conv - b.conv).abs().max().item()
    if a.recurrent is not None:
        gap = max(gap, (a.recurrent - b.recurrent).abs().max().item())
    return gap


def peak_cpu_bytes(fn) -> int:
    """Peak of the running sum of CPU allocations made while `fn` runs (torch profiler, memory events)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, profile_memory=True) as prof:
        fn()
    current = best = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        best = max(best, current)
    return best
