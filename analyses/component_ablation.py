"""component_ablation: Study A experiments 1-6 (group, matched random, layer sweep, thirds, perplexity and
context stress, resilience) on any supported model. The implementation lives in `analyses.ablation`."""

from .ablation import ANALYSIS, ComponentAblationConfig, run

Config = ComponentAblationConfig

__all__ = ["ComponentAblationConfig", "Config", "run", "ANALYSIS"]
