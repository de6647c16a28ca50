"""Config of the memory lens (the zoo's needle grid; defaults sized for the zoo's quick profile)."""

from __future__ import annotations

from dataclasses import dataclass

from mechhybrid.errors import MechHybridError

from ..configs import check_types

__all__ = ["MemoryLensConfig", "PROBES", "READOUTS"]

PROBES = ("query", "key", "value")
"""What the state is read with: the question token's own query (GDN) / C (Mamba); the key the layer computed at
the needle's KEY token; the key it computed at the needle's first value token (its conv window spans
"KEY is V", so this is where a delta-rule write of KEY -> V would sit)."""
READOUTS = ("direct", "model")
"""direct: the readout's layer output alone through the final norm and the unembedding; model: the layer's
output at the question token replaced by it, the rest of the model run on top."""


@dataclass
class MemoryLensConfig:
    """Reads every Gated DeltaNet / Mamba state at the question token with the needle's key and the question's
    query, per layer and head, over needle depth and context length, split by whether the model answered; then
    edits the memories towards another value (Gated DeltaNet: KEY -> value written; Mamba: what the question
    reads set to the other prompt's) and counts how often the answer flips."""

    lengths: tuple[int, ...] = (64, 128, 256)
    """Context lengths (tokens of the whole zoo needle prompt)."""
    depths: tuple[float, ...] = (0.0, 0.5, 1.0)
    """Relative needle depths, 0 = start of the haystack, 1 = its end."""
    per_cell: int = 2
    """Prompts per (length, depth) cell."""
    seed: int = 0
    """Seed of the prompts' draws, of the other values written and of the bootstrap."""
    probes: tuple[str, ...] = PROBES
    """Probes the states are read with (query, key, value)."""
    through_model: bool = True
    """Also run each readout through the rest of the model (one 1-token forward per readout)."""
    edit: bool = True
    """The causal check, before the question token: write KEY -> another value into each Gated DeltaNet memory
    (per key / value probe), and set what the question reads from each Mamba state to what it reads in the prompt
    with the other value (a rank-1 edit; one more 1-token forward per layer and per kind)."""
    beta: float = 1.0
    """Strength of the delta-rule write (1: reading with the key returns exactly the other value's vector); the
    Mamba edit is always exact."""

    def __post_init__(self):
        check_types(self)
        self.lengths, self.depths, self.probes = tuple(self.lengths), tuple(self.depths), tuple(self.probes)
        if not self.lengths or any(n < 1 for n in self.lengths):
            raise MechHybridError(f"memory_lens lengths must be >= 1 token, got {list(self.lengths)}")
        if not self.depths or any(not 0.0 <= d <= 1.0 for d in self.depths):
            raise MechHybridError(f"memory_lens depths must lie in [0, 1], got {list(self.depths)}")
        if self.per_cell < 1 or self.seed < 0:
            raise MechHybridError("memory_lens per_cell must be >= 1 and seed >= 0")
        bad = [p for p in self.probes if p not in PROBES]
        if bad or not self.probes:
            raise MechHybridError(f"memory_lens probes must be some of {', '.join(PROBES)}, got {list(self.probes)}")
        if not 0.0 < self.beta <= 1.0:
            raise MechHybridError(f"memory_lens beta must lie in (0, 1], got {self.beta}")
