"""Read a results directory (docs/results-schema.md) into plain dicts, one per Result JSON.

Reports read only the JSON files, through mechhybrid.results (which checks each file and upgrades a version-1
Result to version 2): `results.csv` is the same rows flattened, and is linked from the index for people who
want the numbers. A file that cannot be read becomes one `problem` line naming it, so that one corrupt or
truncated JSON (a run killed mid-write) does not take the other results down with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mechhybrid.results import CorruptResultError, check_result, read_result_dict, result_files
from mechhybrid.results.vocabulary import SCHEMA_VERSION
from reports.palette import role_of

__all__ = ["ModelResults", "Loaded", "load_results", "as_result_dict", "SCHEMA_VERSION"]


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
    """analysis name -> Result dict (schema version 2), in sorted analysis order."""
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
    """A Result as a schema-version-2 dict: a dict (a version-1 one upgraded and checked; a version-2 one as it
    is, since files are checked when read), or an analyses Result object (through its `to_json()`, the exact
    text it writes to disk, or a `to_dict()`), for notebooks."""
    if isinstance(result, dict):
        return result if result.get("schema_version") == SCHEMA_VERSION else check_result(result)
    to_json = getattr(result, "to_json", None)
    if callable(to_json):
        return json.loads(to_json())
    to_dict = getattr(result, "to_dict", None)
    if callable(to_dict):
        return check_result(to_dict())
    raise TypeError(f"expected a Result dict or an object with to_json() or to_dict(), got {type(result).__name__}")


def load_results(out_dir: Path) -> Loaded:
    """Read OUT/results/*/<analysis>.json; never raises for a bad file (see `Loaded.problems`)."""
    out_dir = Path(out_dir)
    results_dir = out_dir / "results"
    models: list[ModelResults] = []
    problems: list[str] = []
    folders = sorted(p for p in results_dir.iterdir() if p.is_dir()) if results_dir.is_dir() else []
    for folder in folders:
        entry = None
        for path in result_files(folder):
            try:
                result = read_result_dict(path)
            except CorruptResultError as error:
                problems.append(f"{error.path}: {error.reason}; skipped, the other results are rendered")
                continue
            if entry is None:
                entry = ModelResults(folder.name, result["model"], role_of(result["model"]))
            entry.results[result["analysis"]] = result
            entry.files[result["analysis"]] = path.relative_to(out_dir).as_posix()
        if entry is not None:
            models.append(entry)
    return Loaded(models, problems, (out_dir / "results.csv").is_file())
