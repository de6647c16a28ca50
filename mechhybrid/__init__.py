"""mechhybrid: mechanistic interpretability for hybrid language models.

Load a model (`load`), list its components (`hm.components`), intervene with data (`Ablate`, `AblateHeads`,
`KeepHeads`, `Patch`, `Capture`, `Steer`) through one engine inside one nnsight trace.

Axis names used in shape comments: batch, seq, layer, head, head_dim, d_model, d_state, vocab, set.
"""

from mechhybrid.components import Component, ComponentMap
from mechhybrid.errors import MechHybridError, UnsupportedFamilyError
from mechhybrid.families import FAMILIES, FAMILY_NAMES, KINDS, Family, get_family
from mechhybrid.interventions import Ablate, AblateHeads, Capture, KeepHeads, Patch, Steer
from mechhybrid.loading import load
from mechhybrid.model import HybridModel, RunResult
from mechhybrid.state import EditState, PatchState, ReadState, State, StateRunResult, read_state
from mechhybrid.generation import Generation, generate
from mechhybrid.check_cache import CacheReport, check_cache

__version__ = "0.1.0"

__all__ = [
    "Ablate", "AblateHeads", "Capture", "Component", "ComponentMap", "FAMILIES", "FAMILY_NAMES", "Family",
    "HybridModel", "KINDS", "KeepHeads", "MechHybridError", "Patch", "RunResult", "Steer",
    "UnsupportedFamilyError", "get_family", "load", "__version__",
    "CacheReport", "EditState", "Generation", "PatchState", "ReadState", "State", "StateRunResult", "check_cache",
    "generate", "read_state",
]
