"""The results contract, as the analyses use it: mechhybrid.results (docs/results-schema.md), plus the run
timings that are kept out of every Result (OUT/timings.json) so that results stay byte-identical per seed.

Torch-free, like mechhybrid.results: `mechhybrid results DIR` reads Results without a model stack.
"""

from __future__ import annotations

import json
from pathlib import Path

from mechhybrid.results import (CorruptResultError, DataInfo, Result, Row, SideEntry, iter_result_paths, model_slug,
                                partial_dir, read_result, result_path, write_result, write_results_csv)
from mechhybrid.results.vocabulary import FIXED_COLUMNS, SCHEMA_VERSION

from .outdir import atomic_write, locked

__all__ = [
    "SCHEMA_VERSION", "FIXED_COLUMNS", "Row", "DataInfo", "SideEntry", "Result", "CorruptResultError",
    "model_slug", "result_path", "partial_dir", "write_result", "read_result", "iter_result_paths",
    "write_results_csv", "read_timings", "update_timings",
]


def read_timings(out_dir) -> dict:
    path = Path(out_dir) / "timings.json"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return obj if isinstance(obj, dict) else {}
    except (OSError, ValueError):
        # Timings are advisory: a missing or damaged file is started afresh, never an error.
        return {}


def update_timings(out_dir, key: str, entry: dict) -> None:
    """Set `key` in OUT/timings.json. A parallel study (`--jobs`) updates it from several processes: they take
    turns under a lock on the folder itself, so no update is lost and no lock file is left."""
    with locked(Path(out_dir)):
        timings = read_timings(out_dir)
        timings[key] = entry
        atomic_write(Path(out_dir) / "timings.json", json.dumps(timings, indent=1, sort_keys=True) + "\n")
