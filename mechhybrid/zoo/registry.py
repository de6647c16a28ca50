"""Where the shipped zoo models live, and the checks that make a broken one one clear line.

`mechhybrid.load("zoo:NAME")` calls `zoo_dir(NAME)` and loads that directory like any local
checkpoint. A model is shipped when its directory under `mechhybrid/zoo/models/` holds a
card.json and a model.safetensors.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from mechhybrid.errors import MechHybridError

__all__ = ["ZOO_ROOT", "zoo_names", "zoo_dir", "load_card", "suggest_zoo", "REQUIRED_CARD_KEYS"]

ZOO_ROOT = Path(__file__).resolve().parent / "models"
"""Package data: one directory per shipped model."""
WEIGHTS = "model.safetensors"
CARD = "card.json"
REQUIRED_CARD_KEYS = ("name", "family", "n_params", "scores", "check_scores")


def _root(root) -> Path:
    return ZOO_ROOT if root is None else Path(root)


def zoo_names(root=None) -> list[str]:
    """Names of the shipped models (directories holding both a card and weights), sorted."""
    base = _root(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / CARD).is_file() and (p / WEIGHTS).is_file())


def _check_weights(path: Path) -> None:
    # A safetensors file is an 8-byte little-endian header length, a JSON header, then the data;
    # checking both lengths catches truncated and garbage files without reading the tensors.
    if not path.is_file():
        raise MechHybridError(f"zoo model weights missing: {path}")
    size = path.stat().st_size
    try:
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n > size - 8:
                raise ValueError("header longer than file")
            header = json.loads(fh.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise MechHybridError(f"zoo model weights corrupt (not a readable safetensors file): {path}") from None
    if 8 + n + end != size:
        raise MechHybridError(f"zoo model weights corrupt (size {size} does not match its header): {path}")


def _read_card(directory: Path) -> dict:
    path = directory / CARD
    if not path.is_file():
        raise MechHybridError(f"zoo model card missing: {path}")
    try:
        card = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise MechHybridError(f"zoo model card corrupt (not valid JSON): {path}") from None
    if not isinstance(card, dict):
        raise MechHybridError(f"zoo model card corrupt (not a JSON object): {path}")
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise MechHybridError(f"zoo model card corrupt (missing {', '.join(missing)}): {path}")
    return card


def zoo_dir(name: str, root=None) -> Path:
    """The checked directory of zoo model `name`.

    Raises MechHybridError (one line) for an unknown name (listing the available ones) and
    for a missing or corrupt card or weights file.
    """
    base = _root(root)
    directory = base / str(name)
    if not name or "/" in str(name) or str(name).startswith(".") or not directory.is_dir():
        names = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        raise MechHybridError(f"unknown zoo model {name!r}; available: {', '.join(names) or '(none shipped)'}")
    _read_card(directory)
    _check_weights(directory / WEIGHTS)
    return directory


def load_card(name: str, root=None) -> dict:
    """The parsed card.json of zoo model `name` (after the same checks as `zoo_dir`)."""
    return _read_card(zoo_dir(name, root))


def suggest_zoo(source, root=None) -> str | None:
    """`zoo:NAME` when `source` is the bare name of a shipped zoo model and no file or folder of that name
    exists (`mechhybrid inspect hybrid-gdn` meant `zoo:hybrid-gdn`); None otherwise."""
    text = str(source)
    if text.startswith("zoo:") or Path(text).expanduser().exists() or text not in zoo_names(root):
        return None
    return f"zoo:{text}"
