"""Read a results directory (docs/results-schema.md) into plain dicts, one per Result JSON.

Reports read only the JSON files: `results.csv` is the same rows flattened, and is linked from the index for
people who want the numbers. A file that cannot be read becomes one `problem` line naming it, so that one
corrupt or truncated JSON (a run killed mid-write) does not take the other results down with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from reports.palette import role_of

__all__ = ["ModelResults", "Loaded", "load_results", "as_result_dict", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
_ROW_KEYS = ("condition", "method", "metric", "value", "ci_low", "ci_high", "n", "seed")


@dataclass(frozen=True)
class ModelResults:
    """Every readable Result of one model (one `results/<model_slug>/` folder)."""

    slug: str
    """The folder name under results/; also the file name of the model's page."""
    model: dict
    """The Result header's `model` block (name, family, topology, n_params, n_layers, components)."""
    role: str
    """'hybrid', 'transformer' or 'ssm' (see palette.role_of)."""
    results: dict[str, dict] = field(default_factory=dict)
    """analysis name -> Result dict, in sorted analysis order."""
    files: dict[str, str] = field(default_factory=dict)
    """analysis name -> path of its JSON relative to the report root (for links)."""


@dataclass(frozen=True)
class Loaded:
    """What a results directory held."""

    models: list[ModelResults]
    """Sorted by slug, so that pages come out in the same order (and bytes) on every render."""
    problems: list[str]
    """One line per unreadable file, naming it."""
    has_csv: bool
    """Whether results.csv exists (the index links to it)."""


def as_result_dict(result) -> dict:
    """Accept a Result as a dict, or an analyses Result object (through its `to_json()`, the exact text it
    writes to disk, or a `to_dict()`), for notebooks."""
    if isinstance(result, dict):
        return result
    to_json = getattr(result, "to_json", None)
    if callable(to_json):
        return json.loads(to_json())
    to_dict = getattr(result, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"expected a Result dict or an object with to_json() or to_dict(), got {type(result).__name__}")


def _check_row(row, index: int) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"row {index} is not an object")
    missing = [key for key in _ROW_KEYS if key not in row]
    if missing:
        raise ValueError(f"row {index} lacks {', '.join(missing)}")
    if not isinstance(row["condition"], str) or not isinstance(row["metric"], str):
        raise ValueError(f"row {index}: condition and metric must be strings")
    for key in ("value", "ci_low", "ci_high"):
        value = row[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"row {index}: {key} is not a number")


def check_result(result: dict) -> None:
    """Raise ValueError saying what is wrong if `result` does not follow schema_version 1."""
    if not isinstance(result, dict):
        raise ValueError("top level is not an object")
    if result.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"schema_version {result.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    if not isinstance(result.get("analysis"), str):
        raise ValueError("no analysis name")
    model = result.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise ValueError("no model name")
    if not isinstance(result.get("rows"), list):
        raise ValueError("no rows list")
    for index, row in enumerate(result["rows"]):
        _check_row(row, index)


def _missing_constant(name: str) -> None:
    # NaN / Infinity are not JSON (a browser's JSON.parse rejects them); a number that overflowed is shown as
    # missing rather than losing the whole file.
    return None


def _read_one(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"unreadable ({error.__class__.__name__}: {error})") from None
    try:
        result = json.loads(text, parse_constant=_missing_constant)
    except json.JSONDecodeError as error:
        # json's messages may end in "at" ("Unterminated string starting at"): the position completes them.
        where = f"{error.msg.removesuffix(' at')} at line {error.lineno} column {error.colno}"
        raise ValueError(f"corrupt or truncated JSON ({where})") from None
    check_result(result)
    return result


def load_results(out_dir: Path) -> Loaded:
    """Read OUT/results/*/*.json; never raises for a bad file (see `Loaded.problems`)."""
    out_dir = Path(out_dir)
    results_dir = out_dir / "results"
    models: list[ModelResults] = []
    problems: list[str] = []
    folders = sorted(p for p in results_dir.iterdir() if p.is_dir()) if results_dir.is_dir() else []
    for folder in folders:
        entry = None
        for path in sorted(folder.glob("*.json")):
            try:
                result = _read_one(path)
            except ValueError as error:
                problems.append(f"{path}: {error}; skipped, the other results are rendered")
                continue
            if entry is None:
                entry = ModelResults(folder.name, result["model"], role_of(result["model"]))
            entry.results[result["analysis"]] = result
            entry.files[result["analysis"]] = path.relative_to(out_dir).as_posix()
        if entry is not None:
            models.append(entry)
    return Loaded(models, problems, (out_dir / "results.csv").is_file())
