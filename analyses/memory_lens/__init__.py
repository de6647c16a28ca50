"""memory_lens: Gated DeltaNet / Mamba states read at the question token with the needle's key and the question's
query, in token space (directly and through the rest of the model), and KEY -> another value written into the
Gated DeltaNet memories to see whether the answer follows."""

from ..spec import Analysis
from .analysis import ANALYSIS, applies, count, run
from .config import MemoryLensConfig

__all__ = ["MemoryLensConfig", "run", "count", "applies", "ANALYSIS", "SPEC"]

SPEC = Analysis(ANALYSIS, MemoryLensConfig, run, count,
                "memory lens: the recurrent state read with the needle's key / the question's query, rank of the "
                "true value per layer and head, answered vs missed; KEY -> other value written into GDN memories",
                applies_to=applies)
