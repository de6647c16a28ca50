"""The retrieval analysis' rows -> the records its charts draw and its findings quote (Study B; the rows of
analyses/retrieval): rows are selected and placed by their method, metric and coordinates, never by parsing a
condition name.

Each record is `reports.tables`' record of one row (the row's numbers as they are, and their exact text) plus
the fields its chart places it on. The analysis reports every scorer over the whole grid and, for the scorer
it chose (`extra.scorer`), the accuracy per context length and per (length, depth) cell: a row with a
`depth` coordinate is a grid cell, one with `context_length` and no `depth` a length, one with neither the
whole grid. A row measured on just-read-twice prompts carries the coordinate `prompt` = 'jrt' (`JRT`): its
baseline and its kinds zeroed are then told apart from the plain prompts' without reading the condition name.
"""

from __future__ import annotations

from reports import tables
from reports.numbers import shown

__all__ = ["NAME", "PHASE_ORDER", "NO_PHASE", "THRESHOLD", "JRT", "RANDOM", "scorer_of", "chance_of", "reading_of",
           "threshold_of", "paired", "grid_records", "curve_records", "band_records", "k95_records",
           "phase_records", "baseline_records", "length_records", "head_records", "ablation_records", "depth_text"]

NAME = "retrieval"
PHASE_ORDER = ("prefill", "generation", "decode", "all")
"""Columns of the phase x intervention table: the phases an intervention acts in (`generation` under the
Result's reading, `decode` = decode steps only, `all` = both), in the order read."""
NO_PHASE = "no phase"
"""The column of an intervention whose rows carry no phase (needle focus)."""
THRESHOLD = 0.1
"""Retrieval score above which a head is a retrieval head (Wu et al., arXiv 2404.15574), where the Result's
`extra.retrieval_threshold` gives none."""
JRT = ("prompt", "jrt")
"""The coordinate (name, value) of a row measured on just-read-twice prompts."""
_GRID = ("context_length", "depth")
RANDOM = "random"
"""The `selection` of the head curve's random control: its trials carry `trial`, its summaries over the trials
`statistic` (median, min, max), and its trials pooled per k neither."""


def _extra(result: dict) -> dict:
    extra = result.get("extra")
    return extra if isinstance(extra, dict) else {}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scorer_of(result: dict) -> str | None:
    """The scorer the Result's grids, curves and drops use (`extra.scorer`), or None when it names none."""
    scorer = _extra(result).get("scorer")
    return scorer if isinstance(scorer, str) and scorer else None


def chance_of(result: dict) -> float | None:
    """Accuracy by guessing under the chosen scorer (`extra.chance`), None where the analysis gave none."""
    chance = _extra(result).get("chance")
    return chance if _number(chance) else None


def reading_of(result: dict) -> str | None:
    """What 'generation' covered (`extra.generation_phase`: answer or decode), None where unstated."""
    reading = _extra(result).get("generation_phase")
    return reading if isinstance(reading, str) and reading else None


def threshold_of(result: dict) -> float:
    """The retrieval-score threshold of the Result (`extra.retrieval_threshold`), else THRESHOLD."""
    found = _extra(result).get("retrieval_threshold")
    return found if _number(found) else THRESHOLD


def paired(results: list[dict]):
    """(result, row, record) for every row of every retrieval Result with a chosen scorer."""
    for result in results:
        if result.get("analysis") != NAME or scorer_of(result) is None:
            continue
        for row, record in zip(result["rows"], tables.all_records(result)):
            yield result, row, record


def _own(coords: dict) -> dict:
    """A row's condition coordinates: its coordinates less the grid's."""
    return {k: v for k, v in coords.items() if k not in _GRID}


def _jrt(coords: dict) -> bool:
    return coords.get(JRT[0]) == JRT[1]


def _whole(row: dict, result: dict, metric: str) -> bool:
    """A whole-grid row of `metric` (with `<scorer>` standing for the chosen scorer)."""
    return (row["metric"] == metric.replace("<scorer>", scorer_of(result))
            and not any(k in row["coords"] for k in _GRID))


def depth_text(depth) -> str:
    """A relative depth as a percentage: 0.25 -> '25%', 1/3 -> '33.3%'."""
    return f"{100 * depth:.3g}%"


def grid_records(results: list[dict]) -> list[dict]:
    """Per (length, depth) cell, the chosen scorer's accuracy, for every condition but the head-sparsification
    sweep (drawn as the k-curve) and the random head draws (their drops are in the findings)."""
    out = []
    for result, row, record in paired(results):
        coords = row["coords"]
        if (row["metric"] != f"acc:{scorer_of(result)}" or not all(k in coords for k in _GRID)
                or row["method"] == "keep_heads" or "trial" in coords):
            continue
        out.append(dict(record, context_length=coords["context_length"], depth=coords["depth"],
                        depth_text=depth_text(coords["depth"]), scorer=scorer_of(result)))
    return out


def _series(metric: str) -> str:
    head, _, what = metric.partition(":")
    return f"{'accuracy' if head == 'acc' else 'retention'} ({what})"


def _drawn_on_curve(row: dict, result: dict, scored: set) -> bool:
    """A whole-grid row the k-curve draws: the chosen scorer's accuracy and retention, and every retention that
    is not another retrieval scorer's (multiple choice, language modelling; `scored`: (model, condition, name)
    of every scorer with an accuracy row)."""
    if any(k in row["coords"] for k in _GRID):
        return False
    head, _, name = row["metric"].partition(":")
    if name == scorer_of(result):
        return head in ("acc", "retention")
    return head == "retention" and (result["model"].get("name"), row["condition"], name) not in scored


def _curve_rows(results: list[dict]):
    """(result, row, record) of every whole-grid head-curve row the k-curve draws (see `_drawn_on_curve`)."""
    scored = {(result["model"].get("name"), row["condition"], row["metric"][4:]) for result, row, _ in paired(results)
              if row["metric"].startswith("acc:")}
    for result, row, record in paired(results):
        coords = row["coords"]
        if (row["method"] == "keep_heads" and "k" in coords and "heads_fraction" in coords
                and _drawn_on_curve(row, result, scored)):
            yield result, row, record


def _placed(record: dict, row: dict, result: dict) -> dict:
    coords = row["coords"]
    return dict(record, selection=str(coords.get("selection")), phase=str(coords.get("phase")), k=coords["k"],
                heads_fraction=coords["heads_fraction"], heads_fraction_exact=tables.exact(coords["heads_fraction"]),
                series=_series(row["metric"]),
                panel=f"{record['model']}: {coords.get('selection')} heads, {coords.get('phase')}",
                scorer=scorer_of(result))


def curve_records(results: list[dict]) -> list[dict]:
    """Head sparsification: per k, the chosen scorer's accuracy and retention and the other tasks' retentions
    over the whole grid, each with its `selection`, `phase`, `k` and `heads_fraction`; `panel` names the
    (model, selection, phase). The random control contributes its trials pooled per k (`pooled` True: what its
    k95 and findings read; the chart draws its band instead), not its single trials."""
    out = []
    for result, row, record in _curve_rows(results):
        if "trial" in row["coords"] or "statistic" in row["coords"]:
            continue
        out.append(dict(_placed(record, row, result), pooled=row["coords"].get("selection") == RANDOM))
    return out


def band_records(results: list[dict]) -> list[dict]:
    """The random control's band on the k-curve: per (model, phase, k, measure), the median over its trials
    (the record's own numbers) with the minimum and maximum beside it (`band_low`, `band_high` and their exact
    text), from the rows the analysis wrote for each statistic."""
    stats: dict[tuple, dict] = {}
    for result, row, record in _curve_rows(results):
        statistic = row["coords"].get("statistic")
        if row["coords"].get("selection") == RANDOM and statistic in ("median", "min", "max"):
            key = (record["model"], row["condition"], row["metric"])
            stats.setdefault(key, {})[statistic] = (_placed(record, row, result), record)
    out = []
    for found in stats.values():
        if set(found) != {"median", "min", "max"}:
            continue
        low, high = found["min"][1], found["max"][1]
        out.append(dict(found["median"][0], band_low=low["value"], band_high=high["value"],
                        band_low_exact=low["value_exact"], band_high_exact=high["value_exact"]))
    return out


def k95_records(results: list[dict], curve: list[dict]) -> list[dict]:
    """The analysis' smallest k whose retention CI reaches 0.95, per (model, selection, phase) (`value` None
    where none does), with the fraction of heads that k keeps (from the curve's row at that k)."""
    out = []
    for result, row, record in paired(results):
        if row["metric"] != f"k95:{scorer_of(result)}":
            continue
        coords = row["coords"]
        selection, phase = str(coords.get("selection")), str(coords.get("phase"))
        at = [r for r in curve if (r["model"], r["selection"], r["phase"]) == (record["model"], selection, phase)
              and record["value"] is not None and r["k"] == record["value"]]
        out.append(dict(record, selection=selection, phase=phase, k=record["value"],
                        heads_fraction=at[0]["heads_fraction"] if at else None,
                        panel=f"{record['model']}: {selection} heads, {phase}", scorer=scorer_of(result),
                        chance=chance_of(result)))
    return out


def _intervention(row: dict) -> tuple[str, str] | None:
    """The phase table's row label of a condition and what it did, as a phrase ('attention zeroed', 'zeroing
    attention'): a kind zeroed or the needle's exposure changed; None for any other row."""
    coords, method = row["coords"], row["method"]
    jrt = (", just-read-twice prompts", " on just-read-twice prompts") if _jrt(coords) else ("", "")
    if method == "zero" and "kind" in coords and "removal" not in coords:
        kind = tables.kind_label(str(coords["kind"]))
        return f"{kind} zeroed{jrt[0]}", f"zeroing {kind}{jrt[1]}"
    if method == "mask" and "phase" in coords:
        return f"needle hidden from attention{jrt[0]}", f"hiding the needle from attention{jrt[1]}"
    if method == "focus" and "scale" in coords:
        scale = repr(coords["scale"])
        return f"needle focus x{scale}{jrt[0]}", f"focusing attention on the needle (x{scale}){jrt[1]}"
    return None


def phase_records(results: list[dict]) -> list[dict]:
    """One record per intervention condition: its accuracy drop from the baseline on the chosen scorer (the
    record's own numbers) with its accuracy beside it (`acc`, `acc_exact`, ...), placed by `intervention`
    (row label) and `column` (its phase, or NO_PHASE); `cell` is the text the table prints."""
    accs = {}
    for result, row, record in paired(results):
        if _whole(row, result, "acc:<scorer>"):
            accs[(record["model"], row["condition"], row["method"])] = record
    out = []
    for result, row, record in paired(results):
        named = _intervention(row)
        if named is None or not _whole(row, result, "drop:<scorer>"):
            continue
        acc = accs.get((record["model"], row["condition"], row["method"]))
        if acc is None:
            continue
        out.append(dict(record, intervention=named[0], action=named[1],
                        column=str(row["coords"].get("phase", NO_PHASE)),
                        kind=row["coords"].get("kind"), jrt=_jrt(row["coords"]), scorer=scorer_of(result),
                        acc=acc["value"], acc_ci_low=acc["ci_low"], acc_ci_high=acc["ci_high"],
                        acc_exact=acc["value_exact"], acc_ci_low_exact=acc["ci_low_exact"],
                        acc_ci_high_exact=acc["ci_high_exact"],
                        cell=[f"acc {_shown_ci(acc)}", f"drop {_shown_ci(record)}"]))
    return out


def _shown_ci(record: dict) -> str:
    """'0.95 [0.88, 1.00]': a number and its CI, rounded for the table's cell (the exact ones are in its
    tooltip and the table under the chart)."""
    if record["ci_low"] is None or record["ci_high"] is None:
        return shown(record["value"])
    return f"{shown(record['value'])} [{shown(record['ci_low'])}, {shown(record['ci_high'])}]"


def baseline_records(results: list[dict]) -> list[dict]:
    """The chosen scorer's whole-grid accuracy with no intervention (`jrt`: on just-read-twice prompts), with
    the Result's chance level and generation reading."""
    out = []
    for result, row, record in paired(results):
        if row["method"] == "none" and _whole(row, result, "acc:<scorer>") and set(row["coords"]) <= {JRT[0]}:
            out.append(dict(record, jrt=_jrt(row["coords"]), scorer=scorer_of(result), chance=chance_of(result),
                            reading=reading_of(result)))
    return out


def length_records(results: list[dict]) -> list[dict]:
    """The chosen scorer's accuracy per context length with no intervention (plain prompts)."""
    out = []
    for result, row, record in paired(results):
        coords = row["coords"]
        if (row["method"] == "none" and row["metric"] == f"acc:{scorer_of(result)}" and "depth" not in coords
                and "context_length" in coords and not _own(coords)):
            out.append(dict(record, context_length=coords["context_length"]))
    return out


def head_records(results: list[dict]) -> list[dict]:
    """Every attention head's retrieval score, placed by `layer` and `head`; `above`: the score exceeds the
    Result's threshold (`threshold`)."""
    out = []
    for result, row, record in paired(results):
        coords = row["coords"]
        if row["metric"] == "retrieval_score" and "layer" in coords and "head" in coords:
            threshold = threshold_of(result)
            out.append(dict(record, layer=coords["layer"], head=coords["head"], threshold=threshold,
                            above=record["value"] is not None and record["value"] > threshold))
    return out


def ablation_records(results: list[dict]) -> list[dict]:
    """The chosen scorer's drop with the top-scored retrieval heads zeroed (coordinate `removal` 'top') and with
    as many random heads ('random', one record per `trial`); `n_heads`: how many, from the Result's list of
    the heads it ablated (`extra.retrieval_heads`), None where it lists none."""
    out = []
    for result, row, record in paired(results):
        coords = row["coords"]
        if row["method"] == "zero" and coords.get("removal") in ("top", "random") and _whole(
                row, result, "drop:<scorer>"):
            heads = _extra(result).get("retrieval_heads")
            out.append(dict(record, removal=coords["removal"], trial=coords.get("trial"),
                            n_heads=len(heads) if isinstance(heads, list) else None, scorer=scorer_of(result)))
    return out
