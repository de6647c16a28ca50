"""Results on disk: where each file goes, atomic writes, and reading back with one clear error per bad file.

Layout (docs/results-schema.md): `OUT/results/<model_slug>/<analysis>.json` holds one Result, and its side data
sits beside it as `<analysis>.<name>.<ext>`. A Result file's stem has no dot, a side file's always has one,
so the two never pass for each other. Side files are written before the Result that lists them: a Result on
disk is the mark of a finished run, and every file it lists exists.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from mechhybrid.errors import MechHybridError
from mechhybrid.results.schema import CorruptResultError, Result, check_result

__all__ = ["model_slug", "result_path", "partial_dir", "atomic_write", "write_result", "read_result",
           "read_result_dict", "result_files", "iter_result_paths"]


def model_slug(name: str) -> str:
    """The directory name of a model's results: ':' and '/' (and '\\') become '_'."""
    return name.replace(":", "_").replace("/", "_").replace("\\", "_")


def result_path(out_dir, model_name: str, analysis: str) -> Path:
    return Path(out_dir) / "results" / model_slug(model_name) / f"{analysis}.json"


def partial_dir(out_dir, model_name: str, analysis: str) -> Path:
    """Where a run in flight keeps its per-condition checkpoints (never read as a Result)."""
    return Path(out_dir) / "results" / model_slug(model_name) / f"{analysis}.partial"


def atomic_write(path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to `path` through a temporary file and a rename, so that an interrupted or
    failed write never leaves a file that looks finished; on failure the temporary file and the folders this
    write created go, and an OSError becomes one MechHybridError line naming the path."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    created = [p for p in path.parents if not p.exists()]  # deepest first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: another process may have written into it meanwhile
        if isinstance(exc, OSError):
            raise MechHybridError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def write_result(result: Result, out_dir) -> Path:
    """Write `result`'s side data, then its JSON; returns the JSON's path. An entry whose payload this Result
    does not hold (one read back from disk) must already have its file there."""
    from mechhybrid.results.side import encode

    path = result_path(out_dir, result.model["name"], result.analysis)
    for entry in result.side:
        if entry.name in result.side_data:
            for name, data in encode(result.analysis, entry.name, result.side_data[entry.name]).items():
                atomic_write(path.parent / name, data)
        elif not (path.parent / entry.file).is_file():
            raise MechHybridError(f"{result.analysis}: side data {entry.name!r} has no payload and no file "
                                  f"{path.parent / entry.file}")
    atomic_write(path, result.to_json())
    return path


def _missing_constant(name: str) -> None:
    # NaN / Infinity are not JSON; a number that overflowed is read as missing rather than losing the file.
    return None


def read_result_dict(path) -> dict:
    """One Result file as a checked schema-2 dict (a version-1 file upgraded); CorruptResultError naming the
    file and the problem otherwise."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CorruptResultError(path, f"unreadable ({error.__class__.__name__}: {error})") from None
    try:
        obj = json.loads(text, parse_constant=_missing_constant)
    except json.JSONDecodeError as error:
        # json's messages may end in "at" ("Unterminated string starting at"): the position completes them.
        where = f"{error.msg.removesuffix(' at')} at line {error.lineno} column {error.colno}"
        raise CorruptResultError(path, f"corrupt or truncated JSON ({where})") from None
    try:
        return check_result(obj)
    except ValueError as error:
        raise CorruptResultError(path, str(error)) from None


def read_result(path) -> Result:
    """One Result file as a Result (its method vocabulary checked too); CorruptResultError otherwise."""
    obj = read_result_dict(path)
    try:
        return Result.from_dict(obj)
    except (ValueError, TypeError) as error:
        raise CorruptResultError(path, str(error).splitlines()[0] or type(error).__name__) from None


def result_files(folder) -> list[Path]:
    """The Result files of one model folder, sorted: `<analysis>.json`, not side data, checkpoints or temporary
    files."""
    return sorted(p for p in Path(folder).glob("*.json") if "." not in p.stem and p.is_file())


def iter_result_paths(out_dir) -> list[Path]:
    """Every Result file under out_dir/results, by model folder (sorted), then by file name."""
    root = Path(out_dir) / "results"
    if not root.is_dir():
        return []
    return [p for folder in sorted(d for d in root.iterdir() if d.is_dir()) for p in result_files(folder)]
