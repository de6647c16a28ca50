"""The patching analysis' rows -> the records its charts draw and its findings quote (analyses/patching): rows
are selected and placed by their method, metric and coordinates, never by parsing a condition name.

Each record is `reports.tables`' record of one row plus the fields its chart places it on: the task, direction,
site set, site, layer, kind, head, position and the token there (`axis`: position and token, the heatmaps'
x labels); attribution records pair each estimate with the exact entry of the same site and position.
"""

from __future__ import annotations

from reports import tables

__all__ = ["NAME", "METRIC", "entry_records", "baseline_records", "scatter_records", "agreement_records",
           "missed_records", "axis_label", "panel_title"]

NAME = "patching"
METRIC = "logit_diff"
_PLACED = ("task", "direction", "site_set", "site", "layer", "kind", "head", "position", "token", "estimator")


def axis_label(position, token) -> str:
    """A heatmap's x label: '12 seven' (the token as text; the page escapes it)."""
    return f"{position} {token}"


def panel_title(record: dict) -> str:
    """'needle_value, denoise, residual'."""
    return f"{record['task']}, {record['direction']}, {record['site_set']}"


def _paired(results: list[dict]):
    for result in results:
        if result.get("analysis") != NAME:
            continue
        for row, record in zip(result["rows"], tables.all_records(result)):
            yield row, record


def _placed(row: dict, record: dict) -> dict:
    coords = row["coords"]
    out = dict(record, **{k: coords.get(k) for k in _PLACED})
    out["axis"] = axis_label(coords.get("position"), coords.get("token", ""))
    out["panel"] = panel_title(out)
    return out


def _entry(row: dict) -> bool:
    coords = row["coords"]
    return row["metric"] == METRIC and all(k in coords for k in ("task", "direction", "site", "position"))


def entry_records(results: list[dict], site_set: str | None = None, exclude: str | None = None) -> list[dict]:
    """The exact entries (method patch), of one site set or of every set but `exclude`."""
    return [_placed(row, record) for row, record in _paired(results)
            if row["method"] == "patch" and _entry(row)
            and (site_set is None or row["coords"].get("site_set") == site_set)
            and (exclude is None or row["coords"].get("site_set") != exclude)]


def baseline_records(results: list[dict]) -> list[dict]:
    """Per model and task, the clean and corrupted runs' raw logit difference."""
    return [dict(record, task=row["coords"].get("task"), run=row["coords"].get("run"))
            for row, record in _paired(results) if row["metric"] == f"{METRIC}_raw"]


def agreement_records(results: list[dict]) -> list[dict]:
    """Spearman and top-k overlap rows of every estimator (with `k` on the overlap)."""
    return [dict(_placed(row, record), k=row["coords"].get("k")) for row, record in _paired(results)
            if row["method"] == "attribution" and row["metric"] in ("spearman", "spearman_effects", "top_k_overlap")]


def missed_records(results: list[dict]) -> list[dict]:
    """The exact top-k entries each estimator's top k misses."""
    return [dict(_placed(row, record), k=row["coords"].get("k")) for row, record in _paired(results)
            if row["method"] == "attribution" and row["metric"] == "top_k_missed"]


def scatter_records(results: list[dict]) -> list[dict]:
    """Every estimate beside its exact entry (`exact`, `exact_exact`), with its Spearman in `rho` (and the
    panel title quoting it, rounded as the prose rounds)."""
    from reports.numbers import shown

    out = []
    for result in results:
        mine = [(row, record) for row, record in _paired([result])]
        exact = {(r["coords"]["task"], r["coords"]["direction"], r["coords"]["site"], r["coords"]["position"]): rec
                 for r, rec in mine if r["method"] == "patch" and _entry(r)}
        rho = {(r["coords"]["task"], r["coords"]["direction"], r["coords"]["site_set"], r["coords"]["estimator"]): rec
               for r, rec in mine if r["metric"] == "spearman" and r["method"] == "attribution"}
        for row, record in mine:
            if row["method"] != "attribution" or not _entry(row):
                continue
            c = row["coords"]
            twin = exact.get((c["task"], c["direction"], c["site"], c["position"]))
            found = rho.get((c["task"], c["direction"], c["site_set"], c.get("estimator")))
            if twin is None:
                continue
            placed = _placed(row, record)
            r = None if found is None else found["value"]
            placed.update(exact=twin["value"], exact_exact=twin["value_exact"], rho=r,
                          rho_exact=tables.exact(r),
                          panel=f"{placed['panel']}, {c.get('estimator')}: rho {shown(r)}")
            out.append(placed)
    return out
