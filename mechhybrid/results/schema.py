"""The Result contract (docs/results-schema.md, schema version 2): rows with typed coordinates, side data.

A Result is checked twice over: its structure and types (`check_result`, what every reader applies, a report
included) and, when an analysis builds one, its vocabulary (a row's `method` is one of RESULT_METHODS). JSON
text is deterministic: fixed key order, coordinates in COORD_ORDER, `repr`-exact floats, no NaN (a number that
is not finite is written as null).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields

from mechhybrid.errors import MechHybridError
from mechhybrid.results.upgrade import upgrade_v1
from mechhybrid.results.vocabulary import (COORD_ORDER, COORDS, FIXED_COLUMNS, READABLE_VERSIONS, RESULT_METHODS,
                                           SCHEMA_VERSION, SIDE_KINDS)

__all__ = ["Row", "DataInfo", "SideEntry", "Result", "CorruptResultError", "check_result", "check_row",
           "ordered_coords", "finite_json", "side_file", "NAME_PATTERN"]

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
"""Coordinate names and side-data names: they become CSV columns and file names."""
MODEL_KEYS = ("name", "family", "topology", "n_params", "n_layers", "components")


class CorruptResultError(MechHybridError):
    """A results file that cannot be read as a Result (truncated, edited, foreign, or of an unknown version)."""

    def __init__(self, path, reason: str):
        super().__init__(f"corrupt results file {path}: {reason}")
        self.path = str(path)  # the file
        self.reason = reason  # what is wrong with it, one line

    def __reduce__(self):  # picklable across a parallel study's processes
        return (type(self), (self.path, self.reason))


def finite_json(obj):
    """JSON-able copy with non-finite floats as null (JSON has no NaN) and tuples as lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def _number_or_none(x, what: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{what} is not a number or null")
    x = float(x)
    return x if math.isfinite(x) else None


def _int(x, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise ValueError(f"{what} is not an integer")
    return x


def _text(x, what: str) -> str:
    if not isinstance(x, str) or not x:
        raise ValueError(f"{what} is not a non-empty string")
    return x


def _check_keys(obj: dict, expected: tuple[str, ...], what: str) -> None:
    missing = [k for k in expected if k not in obj]
    unknown = sorted(str(k) for k in set(obj) - set(expected))
    problems = ([f"lacks {', '.join(missing)}"] if missing else []) + (
        [f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
    if problems:
        raise ValueError(what + "; ".join(problems))


def ordered_coords(coords, what: str = "coords") -> dict:
    """`coords` checked (name -> int | float | str; declared names of their declared types; floats finite)
    and put in canonical order: COORD_ORDER, then other names sorted."""
    if not isinstance(coords, dict):
        raise ValueError(f"{what} is not an object")
    for name, value in coords.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in FIXED_COLUMNS:
            raise ValueError(f"{what}: {name!r} is not a coordinate name (lower_case, not a fixed CSV column)")
        types = COORDS[name][0] if name in COORDS else (int, float, str)
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            raise ValueError(f"{what}: {name} = {value!r} is not {expected}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{what}: {name} = {value!r} is not finite")
    known = [n for n in COORD_ORDER if n in coords]
    return {n: coords[n] for n in known + sorted(set(coords) - set(known))}


ROW_KEYS = ("condition", "method", "metric", "value", "ci_low", "ci_high", "n", "seed", "coords")


def check_row(row, index: int = 0) -> dict:
    """One row checked for structure and types, as a new dict in ROW_KEYS order (the vocabulary of `method`
    is the writer's to check: see Row)."""
    what = f"row {index}"
    if not isinstance(row, dict):
        raise ValueError(f"{what} is not an object")
    _check_keys(row, ROW_KEYS, f"{what}: ")
    out = {k: _text(row[k], f"{what} {k}") for k in ("condition", "method", "metric")}
    for key in ("value", "ci_low", "ci_high"):
        out[key] = _number_or_none(row[key], f"{what} {key}")
    if (out["ci_low"] is None) != (out["ci_high"] is None):
        raise ValueError(f"{what}: ci_low and ci_high are both set or both null")
    out["n"], out["seed"] = _int(row["n"], f"{what} n"), _int(row["seed"], f"{what} seed")
    if out["n"] < 0:
        raise ValueError(f"{what}: n must be >= 0")
    out["coords"] = ordered_coords(row["coords"], f"{what} coords")
    return out


@dataclass
class Row:
    """One number a report shows: the CSV's fixed columns less model, family and analysis, plus coordinates."""

    condition: str
    """What was done, named as docs/results-schema.md says, e.g. `group:attention`: shown, never parsed."""
    method: str
    """What was done to the model, in general terms (vocabulary.RESULT_METHODS)."""
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
    coords: dict = field(default_factory=dict)
    """The condition's typed coordinates (vocabulary.COORDS), e.g. {"removal": "layer", "layer": 3, ...}."""

    def __post_init__(self):
        # numpy integers (counts, seeds) are integers too
        self.n, self.seed = (v if isinstance(v, bool) or not hasattr(v, "__index__") else int(v)
                             for v in (self.n, self.seed))
        checked = check_row({f.name: getattr(self, f.name) for f in fields(self)})
        for key, value in checked.items():
            setattr(self, key, value)
        if self.method not in RESULT_METHODS:
            raise ValueError(f"Row.method must be one of {RESULT_METHODS}, got {self.method!r}")


@dataclass
class DataInfo:
    """One data set behind a Result: which, which version, how many items were used."""

    name: str
    version: str
    n: int


@dataclass
class SideEntry:
    """Data an analysis attaches beside its rows: listed in the Result, stored in a file next to it."""

    name: str
    """Unique within the Result (NAME_PATTERN)."""
    kind: str
    """graph | array | table (vocabulary.SIDE_KINDS)."""
    file: str
    """`<analysis>.<name>.<ext>`, in the Result's folder."""
    shape: list[int]
    """graph: [nodes, edges]; array: its shape; table: [rows, columns]."""
    version: int
    """Format version (vocabulary.SIDE_VERSION)."""


def side_file(analysis: str, name: str, kind: str, ext: str | None = None) -> str:
    """The file name of side data `name` of kind `kind` (`ext`: another of the kind's extensions)."""
    return f"{analysis}.{name}.{ext or SIDE_KINDS[kind][0]}"


def _check_side(entries, analysis: str) -> list[dict]:
    if not isinstance(entries, list):
        raise ValueError("side is not a list")
    out, names = [], set()
    for i, entry in enumerate(entries):
        entry = asdict(entry) if isinstance(entry, SideEntry) else entry
        if not isinstance(entry, dict) or set(entry) != {f.name for f in fields(SideEntry)}:
            raise ValueError(f"side {i} is not an object with name, kind, file, shape, version")
        name, kind = entry["name"], entry["kind"]
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name in names:
            raise ValueError(f"side {i}: name {name!r} is not a unique lower_case name")
        if kind not in SIDE_KINDS:
            raise ValueError(f"side {i}: kind {kind!r} is not one of {', '.join(SIDE_KINDS)}")
        if entry["file"] != side_file(analysis, name, kind):
            raise ValueError(f"side {i}: file {entry['file']!r} is not {side_file(analysis, name, kind)!r}")
        shape = entry["shape"]
        if not isinstance(shape, list) or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape):
            raise ValueError(f"side {i}: shape is not a list of sizes")
        if _int(entry["version"], f"side {i} version") < 1:
            raise ValueError(f"side {i}: version must be >= 1")
        names.add(name)
        out.append(dict(entry, shape=list(shape)))
    return out


TOP_KEYS = ("schema_version", "analysis", "model", "config", "method", "data", "seed", "versions", "rows", "side",
            "extra")


def _check_model(model) -> dict:
    if not isinstance(model, dict):
        raise ValueError("model is not an object")
    missing = [k for k in MODEL_KEYS if k not in model]
    if missing:
        raise ValueError(f"model lacks {', '.join(missing)}")
    for key in ("name", "family", "topology"):
        _text(model[key], f"model {key}")
    _int(model["n_params"], "model n_params"), _int(model["n_layers"], "model n_layers")
    comps = model["components"]
    if not isinstance(comps, list) or not all(
            isinstance(c, dict) and isinstance(c.get("layer"), int) and isinstance(c.get("kind"), str) for c in comps):
        raise ValueError("model components is not a list of {layer, kind, path}")
    return model


def check_result(obj) -> dict:
    """A Result as plain data, checked for structure and types, as schema version 2 (a version-1 Result is
    upgraded first); ValueError says what is wrong, in one line. Returns a new dict in TOP_KEYS order, rows and
    coordinates normalised."""
    if not isinstance(obj, dict):
        raise ValueError("top level is not an object")
    if obj.get("schema_version") == 1:
        obj = upgrade_v1(obj)
    version = obj.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(f"schema_version {version!r}, expected {SCHEMA_VERSION} (or {READABLE_VERSIONS[0]}, "
                         "upgraded on read)")
    _check_keys(obj, TOP_KEYS, "")
    out = {"schema_version": version, "analysis": _text(obj["analysis"], "analysis"),
           "model": _check_model(obj["model"])}
    for key in ("config", "versions", "extra"):
        if not isinstance(obj[key], dict):
            raise ValueError(f"{key} is not an object")
    out["config"], out["method"] = obj["config"], _text(obj["method"], "method")
    data = obj["data"]
    if not isinstance(data, list) or not all(isinstance(d, dict) and set(d) == {"name", "version", "n"}
                                             for d in data):
        raise ValueError("data is not a list of {name, version, n}")
    out["data"], out["seed"], out["versions"] = data, _int(obj["seed"], "seed"), obj["versions"]
    if not isinstance(obj["rows"], list):
        raise ValueError("rows is not a list")
    out["rows"] = [check_row(row, i) for i, row in enumerate(obj["rows"])]
    out["side"] = _check_side(obj["side"], out["analysis"])
    out["extra"] = obj["extra"]
    return out


@dataclass
class Result:
    """One (model, analysis) result, exactly the JSON of docs/results-schema.md."""

    analysis: str
    model: dict
    """name, family, topology, n_params, n_layers, components [{layer, kind, path}] (and a zoo model's card)."""
    config: dict
    method: str
    """What the rows did to the model (RESULT_METHODS): their one method, or `mixed`."""
    data: list[DataInfo]
    seed: int
    versions: dict
    rows: list[Row]
    extra: dict = field(default_factory=dict)
    side: list[SideEntry] = field(default_factory=list)
    """Side data listed by name; `attach` adds one."""
    schema_version: int = SCHEMA_VERSION
    side_data: dict = field(default_factory=dict, repr=False, compare=False)
    """name -> the payload of each entry attached in this process (networkx graph, numpy array, list of
    dicts), written by `write_result`; empty on a Result read from disk (`read_side` reads a payload)."""

    def __post_init__(self):
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {self.schema_version} is not {SCHEMA_VERSION}")
        _text(self.analysis, "analysis")
        _check_model(self.model)
        if self.method not in RESULT_METHODS:
            raise ValueError(f"Result.method must be one of {RESULT_METHODS}, got {self.method!r}")
        self.data = [d if isinstance(d, DataInfo) else DataInfo(**d) for d in self.data]
        self.extra = finite_json(self.extra)
        self.config = finite_json(self.config)
        self.rows = [r if isinstance(r, Row) else Row(**r) for r in self.rows]
        self.side = [SideEntry(**e) for e in _check_side(self.side, self.analysis)]

    def attach(self, name: str, payload) -> SideEntry:
        """List `payload` (a networkx graph, a numpy array, or a list of dicts: a table) as side data `name`;
        `write_result` writes it next to the Result JSON."""
        from mechhybrid.results.side import describe

        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.analysis):
            raise MechHybridError(f"analysis {self.analysis!r}: side data needs a name of letters, digits, _ or -")
        if any(e.name == name for e in self.side):
            raise MechHybridError(f"{self.analysis}: side data {name!r} is attached twice")
        kind, shape, version = describe(payload, name)
        entry = SideEntry(name, kind, side_file(self.analysis, name, kind), shape, version)
        self.side = [SideEntry(**e) for e in _check_side(self.side + [entry], self.analysis)]
        self.side_data[name] = payload
        return self.side[-1]

    def to_dict(self) -> dict:
        """The JSON object: TOP_KEYS order, coordinates in canonical order."""
        return {
            "schema_version": self.schema_version, "analysis": self.analysis, "model": self.model,
            "config": self.config, "method": self.method, "data": [asdict(d) for d in self.data],
            "seed": self.seed, "versions": self.versions, "rows": [asdict(r) for r in self.rows],
            "side": [asdict(e) for e in self.side], "extra": self.extra,
        }

    def to_json(self) -> str:
        """Deterministic JSON text: fixed key order, repr floats, no NaN."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, obj: dict) -> "Result":
        """A Result from its JSON object (version 1 upgraded; check_result)."""
        return cls(**check_result(obj))
