"""The output folder: checked before any work, written atomically, and left tidy when a run fails.

The contract (README, "Bad input"): a failed run leaves no half-written file (`*.tmp`), no empty folder and no
checkpoint folder without a finished condition in it; whatever was finished stays. Folders are created by the
first file written into them, so a run that fails before its first result creates nothing. Every OSError of a
write becomes one MechHybridError line that names the path.

Torch-free. Every file is written through `atomic_write` (mechhybrid.results.files, shared with the Results).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from mechhybrid.errors import MechHybridError
from mechhybrid.results.files import atomic_write  # one atomic write for every output file

__all__ = ["check_out_dir", "check_writable", "atomic_write", "move_aside", "remove_tree", "locked", "prune",
           "META"]

META = "_meta.json"
"""The fingerprint file of a checkpoint folder (analyses/common.py); a folder holding nothing else has no work."""


def _nearest_existing(path: Path) -> Path:
    return next(p for p in [path, *path.parents] if p.exists())


def check_out_dir(out_dir) -> Path:
    """The output folder as a Path, checked (not created): a file in its way or a folder that cannot be written
    is a one-line error before any work starts."""
    out = Path(out_dir)
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            raise MechHybridError(f"output path {parent} exists and is not a directory")
    check_writable(out)
    return out


def check_writable(folder) -> None:
    """One clear line if `folder`, or the nearest existing folder above it that would hold it, is read-only."""
    folder = Path(folder)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise MechHybridError(f"output path {existing} exists and is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == folder:
            raise MechHybridError(f"output folder {folder} is not writable")
        raise MechHybridError(f"cannot create output folder {folder}: {existing} is not writable")


def _error(path: Path, exc: OSError) -> MechHybridError:
    return MechHybridError(f"cannot write {path}: {exc.strerror or exc}")


def move_aside(path: Path, target: Path) -> None:
    """Rename `path` to `target` (a corrupt file kept for the user to inspect), one line if it cannot be."""
    try:
        os.replace(path, target)
    except OSError as exc:
        raise _error(target, exc) from None


def remove_tree(folder: Path) -> None:
    """Delete `folder` and everything in it; one line if the folder cannot be emptied (read-only)."""
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise MechHybridError(f"cannot remove {folder}: {exc.strerror or exc}") from None


@contextlib.contextmanager
def locked(folder: Path):
    """An exclusive lock on `folder` itself (flock on its descriptor): processes that update one file in it
    take turns, and no lock file is left behind."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _without_work(folder: Path) -> bool:
    """A checkpoint folder that holds its fingerprint file and nothing else."""
    return [p.name for p in folder.iterdir()] == [META]


def prune(out: Path, folder: Path, remove_out: bool) -> None:
    """After a failed run: delete checkpoint folders under `folder` that hold no finished condition, then the
    empty folders from `folder` up to `out`/results, and `out` itself when `remove_out` and it is empty."""
    if folder.is_dir():
        for sub in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                if sub.is_dir() and _without_work(sub):
                    (sub / META).unlink()
                if sub.is_dir() and not any(sub.iterdir()):
                    sub.rmdir()
    stops = [out] if remove_out else []
    for candidate in [folder, *[p for p in folder.parents if out in p.parents], *stops]:
        with contextlib.suppress(OSError):
            if candidate.is_dir() and not any(candidate.iterdir()):
                candidate.rmdir()
