"""mechhybrid: mechanistic interpretability for hybrid language models.

Load a model (`load`), list its components (`hm.components`), intervene with data (`Ablate`, `AblateHeads`,
`KeepHeads`, `Patch`, `Capture`, `Steer`; recurrent state: `ReadState`, `PatchState`, `EditState`; attention:
`CaptureAttention`, `MaskKeys`, `EditLogits`, `FocusKeys`, `KeepTopHeads`) through one engine inside one nnsight
trace; generate with phase-aware interventions.

Axis names used in shape comments: batch, seq, layer, head, head_dim, d_model, d_state, vocab, set.

Public names are imported on first use (PEP 562), so that the torch-free parts (`mechhybrid.errors`, which the
reports import where torch is absent) do not pull torch and nnsight in.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "mechhybrid.components": ("Component", "ComponentMap", "from_residual_units", "to_residual_units"),
    "mechhybrid.errors": ("MechHybridError", "UnsupportedFamilyError"),
    "mechhybrid.families": ("FAMILIES", "FAMILY_NAMES", "KINDS", "Family", "get_family"),
    "mechhybrid.interventions": ("Ablate", "AblateHeads", "Capture", "KeepHeads", "Patch", "Residual", "Steer"),
    "mechhybrid.attention": (
        "AttentionPattern", "CaptureAttention", "EditLogits", "FocusKeys", "KeepTopHeads", "MaskKeys",
    ),
    "mechhybrid.loading": ("load",),
    "mechhybrid.model": ("HybridModel", "RunResult"),
    "mechhybrid.state": ("EditState", "PatchState", "ReadState", "State", "StateRunResult", "read_state"),
    "mechhybrid.generation": ("Generation", "generate"),
    "mechhybrid.check_cache": ("CacheReport", "check_cache"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE) + ["__version__"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'mechhybrid' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return __all__
