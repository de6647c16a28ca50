"""Records of a data file, and the fields the readers take from them, checked one by one.

Real copies of the public data sets differ in small ways (MMLU's answer as an index or a letter, ARC's choices
as a table or a list, HellaSwag's label as a number or a digit string): the readers take every variant listed in
choice.py, and anything else is one line that names the file, the record (its 0-based index in the file, as
`datasets` indexes it) and the field.
"""

from __future__ import annotations

from pathlib import Path

from mechhybrid.errors import MechHybridError

__all__ = ["Record", "bad", "required", "text", "texts", "index_answer"]


class Record(dict):
    """One record's fields, and where it came from."""

    __slots__ = ("file", "index")

    def __init__(self, fields: dict, file: Path, index: int):
        super().__init__(fields)
        self.file = file
        """The data file holding the record."""
        self.index = index
        """0-based position of the record in that file."""

    @property
    def where(self) -> str:
        return f"{self.file} record {self.index}"


def bad(name: str, rec: Record, key: str, problem: str) -> MechHybridError:
    """The one-line error for field `key` of `rec` in data set `name`."""
    return MechHybridError(f"{name}: {rec.where}: field {key!r} {problem}")


def _shown(value) -> str:
    text_ = repr(value)
    return text_ if len(text_) <= 60 else text_[:57] + "..."


def _is_text(value) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def required(rec: Record, key: str, name: str):
    """The value of field `key`; missing or null is an error."""
    if key not in rec or rec[key] is None:
        raise bad(name, rec, key, f"is missing (is this the public {name} schema?)")
    return rec[key]


def text(rec: Record, key: str, name: str) -> str:
    """A string field (a number, as some copies store a label, is taken as its text)."""
    value = required(rec, key, name)
    if not _is_text(value):
        raise bad(name, rec, key, f"must be text, got {_shown(value)}")
    return str(value)


def texts(rec: Record, key: str, name: str, value=None, lowest: int = 1) -> list[str]:
    """A list of at least `lowest` strings (numbers taken as their text): `rec[key]`, or `value` where the list
    sits inside the field (`key` then names where, e.g. "choices.text")."""
    value = required(rec, key, name) if value is None else value
    if not isinstance(value, (list, tuple)) or len(value) < lowest or not all(_is_text(v) for v in value):
        raise bad(name, rec, key, f"must be a list of at least {lowest} strings, got {_shown(value)}")
    return [str(v) for v in value]


def index_answer(rec: Record, key: str, name: str, n: int, letters: bool) -> int:
    """The 0-based index of the right choice among `n`: an integer index, a digit string ("2"), or, with
    `letters`, a letter ("C")."""
    value = required(rec, key, name)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    elif letters and isinstance(value, str) and len(value.strip()) == 1 and value.strip().isalpha():
        value = ord(value.strip().upper()) - ord("A")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
        last = chr(ord("A") + n - 1)
        allowed = f"an index 0-{n - 1}" + (f" or a letter A-{last}" if letters else "")
        raise bad(name, rec, key, f"must be {allowed} for its {n} choices, got {_shown(rec[key])}")
    return value
