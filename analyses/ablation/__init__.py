"""component_ablation, split by job: config, conditions (what is removed), rows (statistics), run."""

from .config import ComponentAblationConfig
from .run import ANALYSIS, run

__all__ = ["ComponentAblationConfig", "run", "ANALYSIS"]
