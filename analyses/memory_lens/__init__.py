"""memory_lens: Gated DeltaNet / Mamba states read at the question token with the needle's key and the question's
query, in token space (directly and through the rest of the model), and the memories edited towards another
value (GDN: the delta-rule write KEY -> value; Mamba: a rank-1 edit of what the question reads) to see whether the
answer follows."""

from ..spec import Analysis
from .analysis import ANALYSIS, applies, count, run
from .config import MemoryLensConfig

__all__ = ["MemoryLensConfig", "run", "count", "applies", "ANALYSIS", "SPEC"]

SPEC = Analysis(ANALYSIS, MemoryLensConfig, run, count,
                "memory lens: the recurrent state read with the needle's key / the question's query, rank of the "
                "true value per layer and head, answered vs missed; GDN memories and Mamba states edited towards "
                "another value",
                applies_to=applies)
