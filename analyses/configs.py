"""Analysis Configs from TOML/JSON files and command-line options, and their field docstrings as help text.

Unknown keys and contradictory options are user errors (MechHybridError), never silently ignored.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import tomllib
import types
import typing
from pathlib import Path

from mechhybrid.errors import MechHybridError

__all__ = ["read_config_file", "build_config", "check_types", "field_help", "config_help"]


def read_config_file(path) -> dict:
    """A TOML (.toml) or JSON (.json) file as a dict; one clear error for a missing or unparsable file."""
    path = Path(path)
    if not path.is_file():
        raise MechHybridError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".toml":
            obj = tomllib.loads(text)
        elif path.suffix.lower() == ".json":
            obj = json.loads(text)
        else:
            raise MechHybridError(f"config file {path} must end in .toml or .json")
    except (tomllib.TOMLDecodeError, ValueError, UnicodeDecodeError) as exc:
        raise MechHybridError(f"config file {path} is not valid: {str(exc).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise MechHybridError(f"config file {path} must hold a table/object of options")
    return obj


def _coerce(value):
    # TOML and JSON have arrays, Configs use tuples (hashable, and the same JSON either way).
    return tuple(value) if isinstance(value, list) else value


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a table"}


def _fits(value, hint) -> bool:
    """Whether `value` is of the annotated type; ints are not booleans (TOML `true` is no count), a float field
    takes an integer, a tuple field a list or tuple of its element type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        item = typing.get_args(hint)[0]
        return isinstance(value, (list, tuple)) and all(_fits(v, item) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def _expected(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "null (omit the key)"
    if origin is tuple:
        item = _expected(typing.get_args(hint)[0]).removeprefix("an ").removeprefix("a ")
        return f"a list of {item}s"
    return _NAMES.get(origin or hint, getattr(hint, "__name__", str(hint)))


def check_types(config) -> None:
    """Raise a one-line MechHybridError naming the first field of a Config dataclass whose value is not of its
    annotated type (`limit = 2.5`, `seed = "x"`, `kinds = "attention"`), before any comparison can fail on it."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _fits(value, hints[f.name]):
            shown = list(value) if isinstance(value, tuple) else value  # a TOML/JSON array, as the user wrote it
            raise MechHybridError(f"{f.name} must be {_expected(hints[f.name])}, got {shown!r} "
                                  f"({type(shown).__name__})")


def build_config(cls, options: dict, where: str = "config"):
    """cls(**options), with unknown keys and invalid values reported as one-line MechHybridErrors that start
    with `where`."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise MechHybridError(f"{where}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(names)}")
    try:
        return cls(**{k: _coerce(v) for k, v in options.items()})
    except (MechHybridError, TypeError, ValueError) as exc:
        raise MechHybridError(f"{where}: {exc}") from None


def field_help(cls) -> dict[str, str]:
    """{field: its docstring} read from the class sources (the string right after each annotated field), base
    classes first so that a subclass that re-declares a field also overrides its docstring."""
    out = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            out.update(_own_field_docs(klass))
    return out


def _own_field_docs(cls) -> dict[str, str]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    out = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                and isinstance(nxt.value.value, str)):
            out[node.target.id] = " ".join(nxt.value.value.split())
    return out


def config_help(cls) -> str:
    """The Config's options with defaults and docstrings, for --help."""
    docs = field_help(cls)
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"  {f.name} = {json.dumps(default, default=str)}")
        if docs.get(f.name):
            lines += ["      " + line for line in textwrap.wrap(docs[f.name], 90)]
    return "\n".join(lines)
