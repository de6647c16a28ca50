"""representation: per-component residual-stream diagnostics and their link to behaviour (Study A exp. 7)."""

from .config import RepresentationConfig
from .diagnostics import DIAGNOSTICS
from .analysis import ANALYSIS, count, run

__all__ = ["RepresentationConfig", "run", "count", "ANALYSIS", "DIAGNOSTICS"]
