"""The results contract (docs/results-schema.md): Result JSON, schema version 1, and the tidy results.csv.

Torch-free on purpose: `reports/` imports this module and must never pull in a model stack.
Determinism: a Result is written with fixed key order and `repr`-exact floats, so the same seed gives
byte-identical files; wall times live in `timings.json`, never in a Result.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mechhybrid.errors import MechHybridError

from .outdir import atomic_write, locked

__all__ = [
    "SCHEMA_VERSION", "CSV_COLUMNS", "METHODS", "Row", "DataInfo", "Result", "CorruptResultError",
    "model_slug", "result_path", "partial_dir", "write_result", "read_result", "iter_result_paths",
    "write_results_csv", "read_timings", "update_timings",
]

SCHEMA_VERSION = 1
CSV_COLUMNS = ("model", "family", "analysis", "condition", "method", "metric",
               "value", "ci_low", "ci_high", "n", "seed")
METHODS = ("none", "zero", "mean", "resample", "skip", "mixed")
"""Ablation semantics a row or a Result may name; `none` for baselines and non-ablation rows."""


class CorruptResultError(MechHybridError):
    """A results JSON that cannot be read back as schema version 1 (truncated, edited, or foreign)."""


def _float_or_none(x, what: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{what} must be a number or None, got {type(x).__name__}")
    x = float(x)
    # JSON has no NaN/inf: a number that is not finite is "no number here", written as null.
    return x if math.isfinite(x) else None


@dataclass
class Row:
    """One number a report shows: the CSV columns less model, family and analysis."""

    condition: str
    """What was done, e.g. `group:attention` (names in docs/results-schema.md)."""
    method: str
    """Ablation semantics of this row: zero | mean | resample | skip | none."""
    metric: str
    """What was measured, e.g. `acc:needle`, `drop:facts`, `ppl`."""
    value: float | None
    """The number (null where it is undefined, e.g. a Spearman of a constant)."""
    ci_low: float | None = None
    """Lower end of the 95% bootstrap interval, null where none applies."""
    ci_high: float | None = None
    """Upper end of the 95% bootstrap interval."""
    n: int = 0
    """Items (documents, questions, components) the number is computed over."""
    seed: int = 0
    """Seed of everything random behind the number (draws, bootstrap)."""

    def __post_init__(self):
        if not isinstance(self.condition, str) or not self.condition:
            raise ValueError("Row.condition must be a non-empty string")
        if self.method not in METHODS:
            raise ValueError(f"Row.method must be one of {METHODS}, got {self.method!r}")
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError("Row.metric must be a non-empty string")
        self.value = _float_or_none(self.value, "Row.value")
        self.ci_low = _float_or_none(self.ci_low, "Row.ci_low")
        self.ci_high = _float_or_none(self.ci_high, "Row.ci_high")
        if (self.ci_low is None) != (self.ci_high is None):
            raise ValueError("Row: ci_low and ci_high are both set or both null")
        self.n, self.seed = int(self.n), int(self.seed)
        if self.n < 0:
            raise ValueError("Row.n must be >= 0")


@dataclass
class DataInfo:
    """One data set behind a Result: which, which version, how many items were used."""

    name: str
    version: str
    n: int


@dataclass
class Result:
    """One (model, analysis) result, exactly the JSON of docs/results-schema.md."""

    analysis: str
    model: dict
    """name, family, topology, n_params, n_layers, components [{layer, kind, path}]."""
    config: dict
    method: str
    data: list[DataInfo]
    seed: int
    versions: dict
    rows: list[Row]
    extra: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {self.schema_version} is not {SCHEMA_VERSION}")
        for key in ("name", "family", "topology", "n_params", "n_layers", "components"):
            if key not in self.model:
                raise ValueError(f"Result.model lacks {key!r}")
        if self.method not in METHODS:
            raise ValueError(f"Result.method must be one of {METHODS}, got {self.method!r}")
        self.data = [d if isinstance(d, DataInfo) else DataInfo(**d) for d in self.data]
        self.extra = _finite_json(self.extra)
        self.config = _finite_json(self.config)
        self.rows = [r if isinstance(r, Row) else Row(**r) for r in self.rows]

    def to_json(self) -> str:
        """Deterministic JSON text: fixed key order, repr floats, no NaN."""
        obj = {
            "schema_version": self.schema_version, "analysis": self.analysis, "model": self.model,
            "config": self.config, "method": self.method, "data": [asdict(d) for d in self.data],
            "seed": self.seed, "versions": self.versions, "rows": [asdict(r) for r in self.rows],
            "extra": self.extra,
        }
        return json.dumps(obj, indent=1, allow_nan=False, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, obj: dict) -> "Result":
        return cls(**obj)


def _finite_json(obj):
    """JSON-able copy with non-finite floats as null (JSON has no NaN) and tuples as lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


def model_slug(name: str) -> str:
    """The directory name of a model's results: ':' and '/' (and '\\') become '_'."""
    return name.replace(":", "_").replace("/", "_").replace("\\", "_")


def result_path(out_dir, model_name: str, analysis: str) -> Path:
    return Path(out_dir) / "results" / model_slug(model_name) / f"{analysis}.json"


def partial_dir(out_dir, model_name: str, analysis: str) -> Path:
    return Path(out_dir) / "results" / model_slug(model_name) / f"{analysis}.partial"


def write_result(result: Result, out_dir) -> Path:
    path = result_path(out_dir, result.model["name"], result.analysis)
    atomic_write(path, result.to_json())
    return path


def read_result(path) -> Result:
    """Read one Result; CorruptResultError naming the file if it is not a valid schema-1 Result."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(obj, dict):
            raise ValueError("top level is not an object")
        return Result.from_dict(obj)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptResultError(f"corrupt results file {path}: {reason}") from None


def iter_result_paths(out_dir) -> list[Path]:
    """Every results/*/*.json under out_dir, sorted (partial checkpoints excluded)."""
    root = Path(out_dir) / "results"
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("*/*.json") if p.is_file())


def _cell(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(x)
    return str(x)


def _sort_key(line: list[str]):
    # Conditions such as layer:10:attention sort numerically inside their text, so tables read in depth order.
    def natural(s: str):
        return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in _split_digits(s)]
    return [natural(c) for c in line[:6]] + [line[10]]


def _split_digits(s: str) -> list[str]:
    out, cur = [], ""
    for ch in s:
        if cur and (ch.isdigit() != cur[-1].isdigit()):
            out.append(cur)
            cur = ""
        cur += ch
    if cur:
        out.append(cur)
    return out


def write_results_csv(out_dir) -> Path:
    """Collect every Result under out_dir into out_dir/results.csv (sorted, deterministic, repr floats)."""
    lines = []
    for path in iter_result_paths(out_dir):
        res = read_result(path)
        head = [res.model["name"], res.model["family"], res.analysis]
        for r in res.rows:
            lines.append(head + [_cell(v) for v in (r.condition, r.method, r.metric, r.value, r.ci_low,
                                                     r.ci_high, r.n, r.seed)])
    lines.sort(key=_sort_key)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(lines)
    path = Path(out_dir) / "results.csv"
    atomic_write(path, buf.getvalue())
    return path


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
