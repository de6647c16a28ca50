"""component_ablation, split by job: config, conditions (what is removed), rows (statistics), run."""

from ..spec import Analysis
from .config import ComponentAblationConfig
from .analysis import ANALYSIS, count, run
from .conditions import not_ablatable

__all__ = ["ComponentAblationConfig", "run", "count", "ANALYSIS", "SPEC"]

SPEC = Analysis(ANALYSIS, ComponentAblationConfig, run, count,
                "Study A exp. 1-6: group, random, layer, thirds, perplexity, context, resilience",
                applies_to=not_ablatable)
