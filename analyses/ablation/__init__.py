"""component_ablation, split by job: config, conditions (what is removed), rows (statistics), run."""

from .config import ComponentAblationConfig
from .analysis import ANALYSIS, count, run

__all__ = ["ComponentAblationConfig", "run", "count", "ANALYSIS"]
