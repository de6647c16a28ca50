"""patching: causal tracing on any checkpoint: exact activation and state patching over site x position for
clean / corrupted prompt pairs (residual stream, components, heads, recurrent states; denoising and noising),
and attribution patching's agreement with it."""

from ..spec import Analysis
from .analysis import ANALYSIS, applies, count, run
from .config import FULL, PatchingConfig

__all__ = ["PatchingConfig", "run", "count", "ANALYSIS", "SPEC", "FULL"]

SPEC = Analysis(ANALYSIS, PatchingConfig, run, count,
                "causal tracing: exact patching sweeps (residual stream, components, heads, recurrent states) x "
                "every position, both directions, and attribution patching's agreement with them",
                applies_to=applies)
