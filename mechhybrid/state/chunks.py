"""Chunk sizes fitted to each forward, for transformers' chunked scans on the CPU.

The torch paths of Gated DeltaNet and Mamba-2 pad every forward to a whole chunk (64 tokens in the zoo's configs)
and then pay for the whole chunk, so a forward of 1 to 64 tokens costs about the same: continuing a cache with a
short suffix saved almost nothing (one CPU thread, 128 rows: Gated DeltaNet 64-75 ms per layer at 1, 8 or 32
tokens; Mamba-2 56-70 ms). Both algorithms give the same result for any chunk size (the chunks only regroup
the same recurrence; fp32 rounding differs by ~1e-6, `tests/state/test_chunks.py`), so a forward of `tokens`
tokens runs with the next power of two at or above `tokens`, at most the layout's `max_chunk`: 4.6x (Gated
DeltaNet, 32 tokens) to 20x (1 token) faster per layer.

Only on the CPU: the CUDA kernels (fla, mamba-ssm) have their own tiling and take the model's chunk size.
"""

from __future__ import annotations

from contextlib import contextmanager

from mechhybrid.state.spec import spec_for, state_components

__all__ = ["fitted_chunk", "fitted_chunks"]


def fitted_chunk(tokens: int, max_chunk: int) -> int:
    """The next power of two at or above `tokens` (at least 1), at most `max_chunk`."""
    size = 1
    while size < tokens:
        size *= 2
    return min(size, max_chunk)


@contextmanager
def fitted_chunks(hm, tokens: int):
    """Within: every chunked mixer of `hm` runs a forward of `tokens` tokens with a chunk fitted to it (the
    module docstring); nothing changes off the CPU or for mixers without a chunked scan."""
    spec = spec_for(hm) if hm.device.type == "cpu" else None
    knobs = []
    if spec is not None:
        for component in state_components(hm).values():
            layout = spec.layouts[component.kind]
            if layout.chunk is not None:
                knobs.append((hm.module(component.path), layout.chunk, fitted_chunk(tokens, layout.max_chunk)))
    restore, handles = [], []
    try:
        for module, how, size in knobs:
            if how == "attribute":
                restore.append((module, module.chunk_size))
                module.chunk_size = size
            else:
                handles.append(module.register_forward_pre_hook(
                    lambda m, args, kwargs, size=size: (args, {**kwargs, "chunk_size": size}), with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, size in restore:
            module.chunk_size = size
