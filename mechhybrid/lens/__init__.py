"""Lenses on what a model holds: `memory_lens` reads a Gated DeltaNet / Mamba recurrent state with a chosen key
(or the token's own query) and maps the readout to tokens, directly and through the rest of the model
(docs/memory_lens.md)."""

from mechhybrid.lens.api import (
    Alternative, LayerLens, Prefill, carried, direct_logits, head_only, last_token_logits, lens_components,
    memory_lens, with_head, write_associations, write_readouts,
)
from mechhybrid.lens.memory import READERS, Parts, reader_for

__all__ = [
    "Alternative", "LayerLens", "Parts", "Prefill", "READERS", "carried", "direct_logits", "head_only",
    "last_token_logits", "lens_components", "memory_lens", "reader_for", "with_head", "write_associations",
    "write_readouts",
]
