"""Finding a split in a local path (a file, a directory, a datasets/hub cache) and reading its records.

Formats: parquet, JSON Lines or a JSON array of records (either suffix), and the Arrow files of the `datasets`
cache.
Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mechhybrid.errors import MechHybridError

from .fields import Record

__all__ = ["SUFFIXES", "find_split", "read_records", "files_version"]

SUFFIXES = (".parquet", ".jsonl", ".json", ".arrow")


def _matches(path: Path, split: str) -> bool:
    stem = path.name.split(".")[0].lower()
    tokens = stem.replace("_", "-").split("-")
    return split in tokens or path.parent.name.lower() == split


def find_split(path, splits: tuple[str, ...], prefer: tuple[str, ...] = (), required: bool = True,
               ident: str = "") -> list[Path]:
    """The files of the first split in `splits` found under `path` (a file is taken as it is).

    `path` may be the data set's own directory or a whole cache (`~/.cache/huggingface/datasets` or `.../hub`):
    files whose path holds `ident` (e.g. "mmlu") win, then those holding every `prefer` part (MMLU's `all`,
    ARC's `Challenge`). [] if nothing matches and not `required`."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MechHybridError(f"data path not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    has = lambda p, parts: all(x.lower() in str(p.relative_to(path)).lower() for x in parts)  # noqa: E731
    for split in splits:
        hits = [p for p in files if _matches(p, split)]
        for tier in ((ident, *prefer), (ident,), tuple(prefer), ()):
            best = [p for p in hits if has(p, [t for t in tier if t])]
            if best:
                return best
    if required:
        raise MechHybridError(f"no {'/'.join(splits)} split (parquet, jsonl, json or arrow) under {path}")
    return []


def _read_json(path: Path) -> list:
    """A JSON array of records, or JSON Lines (one record a line), whatever the file's suffix says: copies
    of the data sets come both ways."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"line {number} is not JSON ({exc})") from None
    return out


def _read_one(path: Path) -> list:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if suffix == ".arrow":
        import pyarrow as pa

        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_stream(source).read_all().to_pylist()
            except pa.ArrowInvalid:
                return pa.ipc.open_file(source).read_all().to_pylist()
    return _read_json(path)


def read_records(paths: list[Path]) -> list[Record]:
    """Every record of the files, in file order, each knowing its file and index; one clear error for an
    unreadable file or a record that is not an object."""
    records = []
    for path in paths:
        try:
            part = _read_one(path)
        except Exception as exc:  # pyarrow, json and OS errors all mean "cannot read this file"
            raise MechHybridError(f"cannot read data file {path}: {str(exc).splitlines()[0][:200]}") from None
        if not isinstance(part, list):
            raise MechHybridError(f"data file {path} does not hold records (a JSON array or one object a line)")
        for index, rec in enumerate(part):
            if not isinstance(rec, dict):
                raise MechHybridError(f"data file {path} record {index} is not an object of fields")
            records.append(Record(rec, path, index))
    return records


def files_version(name: str, split: str, paths: list[Path]) -> str:
    """A version string that changes whenever the data bytes change: name, split, content hash."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return f"{name}:{split}:sha256-{h.hexdigest()[:12]}"
