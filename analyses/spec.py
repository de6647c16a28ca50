"""What an analysis declares about itself, so that the registry, the CLI and the study need no code of their own
for it: its Config, how to run and count it, and to which models it applies.

Each analysis package holds one `Analysis` (its `SPEC`); the study definition (analyses/studies.py) lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["Analysis", "applies_always", "same_config"]


def applies_always(hm, config) -> str | None:
    """The applicability test of an analysis that runs on every supported model."""
    return None


def same_config(config, model: str, models: tuple[str, ...]):
    """The study hook of an analysis whose Config does not depend on the study's other models."""
    return config


@dataclass(frozen=True)
class Analysis:
    """One analysis, as the registry, the CLI and the study see it."""

    name: str
    """The name in the CLI, in Result files and in the report (`OUT/results/<model>/<name>.json`)."""
    config_cls: type
    """Its Config dataclass: field docstrings become --help text, defaults are sized for the zoo."""
    run: Callable
    """run(hm, config, *, checkpoints, progress) -> Result."""
    count: Callable
    """count(hm, config) -> the progress steps `run` reports, known before its first job."""
    summary: str
    """One line for --help: what it measures, and which published experiment it reproduces."""
    applies_to: Callable = applies_always
    """applies_to(hm, config) -> None, or why the analysis cannot run on this model (a study skips it with
    this note; asked for explicitly, it is a bad input)."""
    in_study: Callable = same_config
    """in_study(config, model, models) -> the Config for `model` in a study of `models` (e.g. compare each
    model with the others)."""
