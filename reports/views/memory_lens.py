"""The memory lens's view: how often the true value token ranks first when each layer's state is read with each
probe (directly and through the rest of the model), whether the memory holds the needle on the prompts the model
misses, and how often editing the memory towards another value (GDN: KEY -> value written; Mamba: what the
question reads) flips the answer."""

from __future__ import annotations

import altair as alt

from reports import findings
from reports.charts import HEIGHT, WIDTH
from reports.load import ModelResults
from reports.palette import Palette
from reports.views.base import Headline, View, block

__all__ = ["MemoryLensView", "read_records", "edit_records"]

_SPLITS = ("head", "answered", "context_length", "depth")


def _record(result: dict, row: dict) -> dict:
    coords = row.get("coords", {})
    return {"model": result["model"].get("name"), "condition": row["condition"], "method": row["method"],
            "metric": row["metric"], "value": row["value"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
            "n": row["n"], "seed": row["seed"], "layer": coords.get("layer"), "probe": coords.get("probe"),
            "answered": coords.get("answered")}


def read_records(result: dict, metric: str = "top1:direct", answered: str | None = None) -> list[dict]:
    """All-head readout rows of one metric, per layer and probe (optionally on the right / wrong prompts)."""
    out = []
    for row in result.get("rows", []):
        coords = row.get("coords", {})
        if row["metric"] != metric or not row["condition"].startswith("read:"):
            continue
        if coords.get("answered") != answered or any(k in coords for k in _SPLITS if k != "answered"):
            continue
        out.append(_record(result, row))
    return out


def edit_records(result: dict) -> list[dict]:
    """Flip fractions of the edits over every prompt, per layer (layer None: every layer of a kind at once)."""
    return [_record(result, row) for row in result.get("rows", [])
            if row["metric"] == "flip" and "answered" not in row.get("coords", {})]


def _chart(records: list[dict], title: str):
    if not records:
        return None
    data = alt.Data(values=[{**r, "layer": str(r["layer"] if r["layer"] is not None else "all")} for r in records])
    base = alt.Chart(data).encode(x=alt.X("layer:N", title="layer"), xOffset="probe:N",
                                  color=alt.Color("probe:N", title="probe"))
    points = base.mark_point(filled=True).encode(
        y=alt.Y("value:Q", title=title, scale=alt.Scale(domain=[0, 1])),
        tooltip=["probe:N", "layer:N", "value:Q", "ci_low:Q", "ci_high:Q", "n:Q"])
    bars = base.mark_rule().encode(y="ci_low:Q", y2="ci_high:Q")
    return (bars + points).properties(width=WIDTH, height=HEIGHT, description=title)


def _best(records: list[dict]) -> dict | None:
    return max(records, key=lambda r: (r["value"] or 0.0), default=None)


class MemoryLensView(View):
    summary = ("The memory lens reads each Gated DeltaNet / Mamba state at the question token with the needle's key "
               "and the question's query, and edits the memory towards another value to see if the answer follows.")

    def model_blocks(self, result: dict, entry: ModelResults, palette: Palette):
        blocks = []
        for metric, title in (("top1:direct", "true value ranks first, readout read directly"),
                              ("top1:model", "true value ranks first, readout through the rest of the model")):
            records = read_records(result, metric)
            blocks.append(block(title, self._sentences(records, title), _chart(records, title), records, [result]))
        missed = read_records(result, "top1:direct", answered="wrong")
        title = "on the prompts the model misses: true value ranks first, read directly"
        blocks.append(block(title, self._sentences(missed, title), _chart(missed, title), missed, [result]))
        edits = edit_records(result)
        title = "answer flips to the written value"
        blocks.append(block(title, self._sentences(edits, title), _chart(edits, title), edits, [result]))
        return [b for b in blocks if b is not None]

    @staticmethod
    def _sentences(records: list[dict], what: str) -> list[str]:
        best = _best(records)
        if best is None:
            return []
        where = f"layer {best['layer']}" if best["layer"] is not None else "every layer of its kind at once"
        return [f"Highest share ({findings.label(what)}): {where}, probe {findings.label(best['probe'])}, "
                f"{findings.effect(best)}."]

    def headline(self, models: list[ModelResults], palette: Palette) -> Headline | None:
        sentences = []
        for entry in models:
            result = entry.results.get("memory_lens")
            if result is None:
                continue
            best = _best([r for r in read_records(result) if r["probe"] != "query"])
            if best is not None:
                sentences.append(f"{findings.label(best['model'])}: the needle's value ranks first in the memory "
                                 f"read with its {findings.label(best['probe'])} key at layer {best['layer']} in "
                                 f"{findings.effect(best)} of prompts.")
        return Headline(sentences, None) if sentences else None
