"""representation: per-component residual-stream diagnostics and their link to behaviour (Study A exp. 7)."""

from ..ablation.conditions import not_ablatable
from ..spec import Analysis
from .config import RepresentationConfig, compare_within_study
from .diagnostics import DIAGNOSTICS
from .analysis import ANALYSIS, count, run

__all__ = ["RepresentationConfig", "run", "count", "ANALYSIS", "DIAGNOSTICS", "SPEC"]

SPEC = Analysis(ANALYSIS, RepresentationConfig, run, count,
                "Study A exp. 7: residual-stream diagnostics per ablated component",
                applies_to=not_ablatable, in_study=compare_within_study)
