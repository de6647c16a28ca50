"""`mechhybrid results DIR`: a compact text table per analysis and model, from the Result JSONs only."""

from __future__ import annotations

from pathlib import Path

from mechhybrid.errors import MechHybridError

from .schema import Result, iter_result_paths, read_result

__all__ = ["summarize", "format_result"]

MAX_COLS = 10


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    a = abs(x)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{x:.3g}"
    return f"{x:.4g}" if a >= 100 else f"{x:.3f}"


def _cell(row) -> str:
    text = _num(row.value)
    # Intervals on what a reader compares (drops, ratios, correlations); accuracies stay short.
    if row.ci_low is not None and row.metric.startswith(("drop:", "ppl_ratio", "spearman")):
        text += f" [{_num(row.ci_low)},{_num(row.ci_high)}]"
    return text


def format_result(res: Result) -> str:
    """One table: a line per (condition, method), a column per metric (first MAX_COLS metrics)."""
    metrics = list(dict.fromkeys(r.metric for r in res.rows))
    shown, hidden = metrics[:MAX_COLS], metrics[MAX_COLS:]
    table: dict[tuple[str, str], dict[str, str]] = {}
    for r in res.rows:
        if r.metric in shown:
            table.setdefault((r.condition, r.method), {})[r.metric] = _cell(r)
    data = ", ".join(f"{d.name} ({d.version}, n={d.n})" for d in res.data) or "none"
    head = [f"== {res.model['name']} ({res.model['family']}) | {res.analysis} | method {res.method} | "
            f"seed {res.seed}", f"   data: {data}"]
    cols = ["condition", "method"] + shown
    lines = [[c, m] + [cells.get(k, "") for k in shown] for (c, m), cells in table.items()]
    widths = [max(len(str(x)) for x in col) for col in zip(cols, *lines)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    body = [fmt(cols), fmt(["-" * w for w in widths])] + [fmt(line) for line in lines]
    if hidden:
        body.append(f"   ({len(hidden)} more metrics in results.csv: {', '.join(hidden[:6])}...)")
    return "\n".join(head + body)


def summarize(out_dir) -> str:
    """Every finished Result under out_dir, grouped by analysis; a clear error if there are none."""
    out = Path(out_dir)
    if not out.exists():
        raise MechHybridError(f"results directory not found: {out}")
    if not out.is_dir():
        raise MechHybridError(f"{out} is not a directory")
    results = [read_result(p) for p in iter_result_paths(out)]
    if not results:
        raise MechHybridError(f"no finished results under {out / 'results'}")
    parts = []
    for analysis in sorted({r.analysis for r in results}):
        parts.append(f"##### {analysis}")
        parts += [format_result(r) for r in results if r.analysis == analysis]
    return "\n\n".join(parts) + "\n"
