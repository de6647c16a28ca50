"""retrieval: Study B on any checkpoint: needle grids over context length x depth, each mixer kind zeroed in
prefill / generation / both, head sparsification, needle exposure and retrieval heads."""

from ..spec import Analysis
from .analysis import ANALYSIS, applies, count, run
from .config import RetrievalConfig

__all__ = ["RetrievalConfig", "run", "count", "ANALYSIS", "SPEC"]

SPEC = Analysis(ANALYSIS, RetrievalConfig, run, count,
                "Study B: needle grid, phase x mixer ablation, head sparsification, needle exposure, "
                "retrieval heads", applies_to=applies)
