"""The tidy results.csv: one line per row of every Result, the fixed columns, then one column per coordinate.

Coordinate columns are those present in any row, in COORD_ORDER (names an analysis added beyond it follow,
sorted), empty where a row has none; a chart filters on a column instead of parsing a condition name. Lines are
sorted, floats written with `repr` (round-trip exact), so the same Results give the same bytes.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from mechhybrid.results.files import atomic_write, iter_result_paths, read_result_dict
from mechhybrid.results.vocabulary import COORD_ORDER, FIXED_COLUMNS

__all__ = ["coord_columns", "csv_columns", "csv_text", "write_results_csv"]


def coord_columns(results) -> list[str]:
    """The coordinate names used by any row of `results` (checked Result dicts), in column order."""
    found = {name for result in results for row in result["rows"] for name in row["coords"]}
    known = [name for name in COORD_ORDER if name in found]
    return known + sorted(found - set(known))


def csv_columns(results) -> tuple[str, ...]:
    """Every column of results.csv for `results`: FIXED_COLUMNS, then coord_columns."""
    return FIXED_COLUMNS + tuple(coord_columns(results))


def _cell(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(x)
    return str(x)


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


def _sort_key(line: list[str]):
    # Conditions such as layer:10:attention sort numerically inside their text, so tables read in depth order.
    def natural(s: str):
        return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in _split_digits(s)]
    return [natural(c) for c in line[:6]] + [line[10]]


def csv_text(results) -> str:
    """results.csv for `results` (checked Result dicts, e.g. from read_result_dict)."""
    coords = coord_columns(results)
    lines = []
    for res in results:
        head = [res["model"]["name"], res["model"]["family"], res["analysis"]]
        for r in res["rows"]:
            lines.append(head + [_cell(r[k]) for k in FIXED_COLUMNS[3:]] + [_cell(r["coords"].get(c)) for c in coords])
    lines.sort(key=_sort_key)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(FIXED_COLUMNS + tuple(coords))
    writer.writerows(lines)
    return buf.getvalue()


def write_results_csv(out_dir) -> Path:
    """Collect every Result under out_dir into out_dir/results.csv; CorruptResultError names a bad file."""
    path = Path(out_dir) / "results.csv"
    atomic_write(path, csv_text([read_result_dict(p) for p in iter_result_paths(out_dir)]))
    return path
