"""Schema version 1 -> 2 on read, so that Results written before coordinates existed still render.

Version 1 rows carried their coordinates packed into the condition name; the two Study A analyses named them as
docs/results-schema.md lists, and this module parses exactly those names into the coordinates the analyses now
write themselves (tests/results checks the two agree). A row of any other analysis, or a name that does not
parse, gets no coordinates; its numbers and condition are kept as they are.
"""

from __future__ import annotations

from mechhybrid.results.vocabulary import SCHEMA_VERSION, THIRDS

__all__ = ["coords_from_v1", "upgrade_v1"]


def _int(text: str):
    try:
        return int(text)
    except ValueError:
        return None


def _ablation(condition: str) -> dict:
    """component_ablation: group, random, layer, third, resilience and context conditions."""
    head, _, rest = condition.partition(":")
    if head == "group" and rest:
        return {"removal": "group", "kind": rest}
    if head == "random" and ":" in rest:
        kind, trial = rest.rsplit(":", 1)
        return {} if _int(trial) is None else {"removal": "random", "kind": kind, "trial": _int(trial)}
    parts = condition.split(":", 2)
    if len(parts) != 3 or _int(parts[1]) is None:
        return _named(parts)
    number, tail = _int(parts[1]), parts[2]
    if head == "layer":
        return {"removal": "layer", "layer": number, "kind": tail}
    if head == "resilience" and tail == "summary":
        return {"removal": "resilience", "n_removed": number}
    if head == "resilience" and _int(tail) is not None:
        return {"removal": "resilience", "n_removed": number, "trial": _int(tail)}
    if head == "context" and tail == "baseline":
        return {"context_length": number}
    if head == "context" and tail.startswith("group:"):
        return {"context_length": number, "removal": "group", "kind": tail[len("group:"):]}
    return {}


def _named(parts: list[str]) -> dict:
    """`third:<early|middle|late>:<kind>`: the one condition whose second part is a name."""
    if len(parts) == 3 and parts[0] == "third" and parts[1] in THIRDS:
        return {"removal": "third", "third": parts[1], "kind": parts[2]}
    return {}


def _representation(condition: str, metric: str) -> dict:
    """representation: `layer:<i>:<kind>`, `corr:<diagnostic>:<benchmark>`, `cka_models:<other>` (metric
    `cka:<layer>`; the other model's name may hold colons)."""
    parts = condition.split(":", 2)
    if len(parts) == 3 and parts[0] == "layer" and _int(parts[1]) is not None:
        return {"removal": "layer", "layer": _int(parts[1]), "kind": parts[2]}
    if len(parts) == 3 and parts[0] == "corr":
        return {"benchmark": parts[2], "diagnostic": parts[1]}
    head, _, other = condition.partition(":")
    name, _, layer = metric.partition(":")
    if head == "cka_models" and other and name == "cka" and _int(layer) is not None:
        return {"layer": _int(layer), "other_model": other}
    return {}


def coords_from_v1(analysis: str, condition, metric) -> dict:
    """The coordinates a version-1 row of `analysis` packed into its condition (and, for `cka_models`, its
    metric); {} for other analyses and names that do not parse."""
    if not isinstance(condition, str) or not isinstance(metric, str):
        return {}
    if analysis == "component_ablation":
        return _ablation(condition)
    if analysis == "representation":
        return _representation(condition, metric)
    return {}


def upgrade_v1(obj: dict) -> dict:
    """A version-1 Result dict as version 2 (unchecked: the caller checks it): coordinates on every row, no
    side data. Anything malformed is passed on as it is, for the check to name."""
    rows = obj.get("rows")
    if isinstance(rows, list):
        rows = [dict(row, coords=coords_from_v1(obj.get("analysis"), row.get("condition"), row.get("metric")))
                if isinstance(row, dict) else row for row in rows]
    out = dict(obj, schema_version=SCHEMA_VERSION, rows=rows)
    out.setdefault("side", [])
    return out
