"""What every analysis shares: the model's identity, library versions, and per-condition checkpoints."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

from .outdir import META, atomic_write, remove_tree

__all__ = ["model_info", "library_versions", "config_dict", "fingerprint", "Checkpoints", "ScoreCache",
           "weights_fingerprint", "stable_seed", "warn"]


def warn(message: str) -> None:
    """A one-line note for the person running the analysis (stderr, so that stdout stays parseable)."""
    print(f"mechhybrid: {message}", file=sys.stderr)


def model_info(hm) -> dict:
    """The `model` block of a Result (docs/results-schema.md)."""
    n_params = sum(p.numel() for p in hm.hf_model.parameters())
    info = {
        "name": str(hm.name), "family": str(hm.family), "topology": str(hm.topology),
        "n_params": int(n_params), "n_layers": int(hm.n_layers),
        "components": [{"layer": c.layer, "kind": c.kind, "path": c.path} for c in hm.components],
    }
    card = _zoo_card(str(hm.name))
    if card is not None:
        info["card"] = card
    return info


def _zoo_card(name: str) -> dict | None:
    """A zoo model's card (how it was trained, its baseline scores): every result on it carries one."""
    if not name.startswith("zoo:"):
        return None
    from mechhybrid.zoo.card import card_summary
    from mechhybrid.zoo.registry import load_card

    return card_summary(load_card(name[len("zoo:"):]))


def library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("mechhybrid", "torch", "transformers", "nnsight"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            mod = sys.modules.get(name)
            out[name] = str(getattr(mod, "__version__", "unknown"))
    return out


def config_dict(config) -> dict:
    """A Config dataclass as plain JSON data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def fingerprint(*parts) -> str:
    """A short stable hash of JSON-able parts: checkpoints of another config or model are never reused."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stable_seed(*parts) -> int:
    """A seed derived from the run seed and a condition name, independent of Python's hash randomisation."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)


def _safe_name(key: str) -> str:
    # Condition keys hold ':' and '|'; a readable stem plus a hash keeps file names portable and unique.
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:80]
    return f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.json"


class Checkpoints:
    """Per-condition results of a run in flight, under results/<slug>/<analysis>.partial/.

    Each finished condition is one JSON file, so an interrupted run loses at most the chunk in flight.
    A fingerprint of (model, config, data) guards against reusing checkpoints of another run: a folder of
    another fingerprint is read as empty and replaced when the first condition of this run is saved, so a run
    that fails before finishing anything neither creates nor deletes a folder.
    """

    def __init__(self, directory, fingerprint_: str, cache: "ScoreCache | None" = None):
        self.dir = Path(directory)
        self.fingerprint = fingerprint_
        self.cache = cache
        """Scores shared with the model's other analyses (evaluate_jobs consults it after these)."""
        try:
            self._ours = json.loads((self.dir / META).read_text())["fingerprint"] == fingerprint_
        except (OSError, ValueError, KeyError, TypeError):
            self._ours = False

    def get(self, key: str) -> dict | None:
        """The saved arrays of `key`, or None (a damaged checkpoint is recomputed, never trusted)."""
        if not self._ours:
            return None
        path = self.dir / _safe_name(key)
        try:
            obj = json.loads(path.read_text())
            if obj.get("key") != key:
                return None
            return _from_json(obj["value"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def put(self, key: str, value: dict) -> None:
        if not self._ours:
            remove_tree(self.dir)  # another run's checkpoints
            atomic_write(self.dir / META, json.dumps({"fingerprint": self.fingerprint}))
            self._ours = True
        atomic_write(self.dir / _safe_name(key), json.dumps({"key": key, "value": _to_json(value)}))

    def clear(self) -> None:
        remove_tree(self.dir)
        self._ours = False


def _to_json(value):
    if isinstance(value, np.ndarray):
        return {"__array__": value.astype(np.float64).tolist()}
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return np.asarray(value["__array__"], dtype=np.float64)
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def weights_fingerprint(hm) -> str:
    """Cheap identity of the weights: every parameter's name, shape, sum and first values (a full hash of a
    9B model would take minutes); retraining or editing a model changes it."""
    h = hashlib.sha256()
    for name, p in hm.hf_model.named_parameters():
        flat = p.detach().reshape(-1)
        h.update(f"{name}{tuple(p.shape)}{float(flat.double().sum())!r}".encode())
        h.update(flat[:64].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class ScoreCache:
    """Per-model per-item scores shared between analyses, keyed by content: the task's items, the condition's
    method and component paths, and the reference text. representation's per-component drops are exactly
    component_ablation's layer sweep, so a study computes them once (results/<slug>/_scores/)."""

    def __init__(self, directory, hm):
        self.store = Checkpoints(directory, fingerprint(model_info(hm), weights_fingerprint(hm)))
        self._task_fp: dict[int, str] = {}

    def key(self, task, condition, refs) -> str:
        if id(task) not in self._task_fp:
            self._task_fp[id(task)] = hashlib.sha256(repr(task).encode()).hexdigest()[:16]
        parts = [self._task_fp[id(task)], condition.method, [c.path for c in condition.components]]
        if condition.method in ("mean", "resample") and refs is not None:
            parts.append(hashlib.sha256(refs.mean_ids.numpy().tobytes() + refs.stream.numpy().tobytes())
                         .hexdigest()[:16])
        return fingerprint(*parts)

    def get(self, key: str):
        return self.store.get(key)

    def put(self, key: str, value: dict) -> None:
        self.store.put(key, value)

    def clear(self) -> None:
        self.store.clear()
