"""circuits: edge-level retrieval circuits (EAP / EAP-IG between embedding, components, heads, recurrent states
and logits), pruned and verified by path patching along a curve of sizes against random circuits."""

from ..spec import Analysis
from .analysis import ANALYSIS, applies, count, run
from .config import CircuitsConfig

__all__ = ["CircuitsConfig", "run", "count", "applies", "ANALYSIS", "SPEC"]

SPEC = Analysis(ANALYSIS, CircuitsConfig, run, count,
                "retrieval circuits as edge graphs: edge attribution (EAP, EAP-IG) between embedding, components, "
                "heads, recurrent states and logits on the zoo's needle pairs; faithfulness by path patching vs "
                "random circuits (Hanna et al. 2024)",
                applies_to=applies)
