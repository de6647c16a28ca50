"""Result rows -> the flat records each chart draws, so that charts only encode and never compute.

Every record keeps the row's numbers as they are (`value`, `ci_low`, `ci_high`) for the marks, plus exact
text copies (`value_exact`, ...: Python's repr, the same text results.csv holds) for tooltips, so a tooltip
can be checked against the CSV digit for digit. Rows are selected and placed by their coordinates
(docs/results-schema.md), never by parsing a condition name; a row without the coordinates a chart needs is
left out of it (it still appears in the page's raw table).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from mechhybrid.results.vocabulary import ABLATION_METHODS, KIND_LABELS, THIRDS
from reports.load import as_result_dict
from reports.numbers import shown
from reports.palette import ROLE_LABELS, role_of

__all__ = [
    "KIND_LABELS", "THIRDS", "kind_label", "as_results", "group_records", "ppl_ratio_records",
    "layer_records", "third_records", "resilience_records", "resilience_medians", "context_records",
    "correlation_records", "diagnostic_records", "all_records", "exact", "methods_of", "only_method",
    "is_effect", "POSITIVE_METRICS", "cka_model_records", "spearman",
]


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def exact(number) -> str:
    """The text results.csv holds for `number` (repr round-trips floats exactly)."""
    return "n/a" if number is None else repr(number)


def _finite(number):
    # Vega drops null marks; NaN or inf would make the embedded spec invalid JSON.
    if number is None or (isinstance(number, float) and not math.isfinite(number)):
        return None
    return number


def as_results(results) -> list[dict]:
    """One Result or a sequence of them, as a list of dicts."""
    if isinstance(results, dict) or hasattr(results, "to_json") or hasattr(results, "to_dict"):
        return [as_result_dict(results)]
    return [as_result_dict(result) for result in results]


# Metrics drawn on log axes: never zero or negative (clamp_frac, often 0, stays in the raw table).
POSITIVE_METRICS = ("ppl", "ppl_ratio")


def is_effect(metric: str) -> bool:
    """The metrics that say what removing a component did: accuracy drops and perplexity ratios."""
    return metric.startswith("drop:") or metric == "ppl_ratio"


# Pages show `zero` first (the semantics of most published ablations, Study A's Falcon-H1 included), whole-
# block `skip` (resilience) last; semantics the contract does not name follow, sorted.
_METHOD_ORDER = ABLATION_METHODS


def methods_of(results) -> list[str]:
    """Ablation semantics used by the rows, in page order; 'none' (baselines) is not one."""
    found = {str(row["method"]) for result in as_results(results) for row in result["rows"]} - {"none"}
    known = [m for m in _METHOD_ORDER if m in found]
    return known + sorted(found - set(known))


def only_method(results, method: str) -> list[dict]:
    """The Results with only the rows of one ablation semantics (plus the baselines they are measured
    against): the same condition run with `zero` and with `mean` must not share a bar."""
    return [dict(result, rows=[row for row in result["rows"] if row["method"] in (method, "none")])
            for result in as_results(results)]


def _record(result: dict, row: dict, **placed) -> dict:
    model = result["model"]
    return {
        "model": str(model.get("name")), "family": str(model.get("family")),
        "role": ROLE_LABELS[role_of(model)], "condition": row["condition"], "method": str(row["method"]),
        "metric": row["metric"], "value": _finite(row["value"]), "ci_low": _finite(row["ci_low"]),
        "ci_high": _finite(row["ci_high"]), "n": row["n"], "seed": row["seed"],
        "value_exact": exact(row["value"]), "ci_low_exact": exact(row["ci_low"]),
        "ci_high_exact": exact(row["ci_high"]), **placed,
    }


def _rows(results, analysis: str) -> Iterable[tuple[dict, dict]]:
    for result in as_results(results):
        if result.get("analysis") == analysis:
            for row in result["rows"]:
                yield result, row


def _removal(row: dict, removal: str) -> bool:
    """A row of the main benchmarks (not a context-length window) whose condition removed `removal`."""
    coords = row["coords"]
    return coords.get("removal") == removal and "context_length" not in coords


def group_records(results) -> list[dict]:
    """`group:<kind>` and its matched `random:<kind>:<trial>` controls, on every `drop:<benchmark>`."""
    records = []
    for result, row in _rows(results, "component_ablation"):
        if not row["metric"].startswith("drop:"):
            continue
        if not (_removal(row, "group") or _removal(row, "random")):
            continue
        kind, trial = row["coords"]["kind"], row["coords"].get("trial")
        records.append(_record(result, row, kind=kind_label(kind), benchmark=row["metric"][5:],
                               removal="targeted" if trial is None else "random", trial=trial))
    return records


def _clamps(result: dict) -> dict[tuple, float]:
    """(condition, method) -> the share of scored tokens whose loss hit the clamp (the `clamp_frac` row)."""
    return {(row["condition"], row["method"]): row["value"] for row in result["rows"]
            if row["metric"] == "clamp_frac" and _finite(row["value"]) is not None}


def ppl_ratio_records(results) -> list[dict]:
    """`group:<kind>` (and its random controls) on `ppl_ratio`, each with the `clamp_frac` of its condition
    (None where the analysis wrote none): a ratio whose loss hit the clamp on many tokens understates."""
    records = []
    for result, row in _rows(results, "component_ablation"):
        if row["metric"] != "ppl_ratio" or not (_removal(row, "group") or _removal(row, "random")):
            continue
        clamp = _clamps(result).get((row["condition"], row["method"]))
        kind, trial = row["coords"]["kind"], row["coords"].get("trial")
        records.append(_record(result, row, kind=kind_label(kind), removal="targeted" if trial is None else "random",
                               trial=trial, clamp_frac=clamp, clamp_frac_exact=exact(clamp)))
    return records


def layer_records(results, analysis: str = "component_ablation", metric=None) -> list[dict]:
    """Single-component (`layer:<layer>:<kind>`) rows whose metric passes `metric` (a predicate; default every
    metric)."""
    records = []
    for result, row in _rows(results, analysis):
        if metric is not None and not metric(row["metric"]):
            continue
        if _removal(row, "layer"):
            records.append(_record(result, row, layer=row["coords"]["layer"], kind=kind_label(row["coords"]["kind"])))
    return records


def third_records(results) -> list[dict]:
    """`third:<early|middle|late>:<kind>` on the effect metrics (drops, perplexity ratio)."""
    records = []
    for result, row in _rows(results, "component_ablation"):
        if _removal(row, "third") and row["coords"]["third"] in THIRDS and is_effect(row["metric"]):
            records.append(_record(result, row, position=row["coords"]["third"],
                                   kind=kind_label(row["coords"]["kind"])))
    return records


def resilience_records(results) -> list[dict]:
    """`resilience:<n_removed>:<trial>` on perplexity and its ratio: every trial."""
    records = []
    for result, row in _rows(results, "component_ablation"):
        coords = row["coords"]
        if _removal(row, "resilience") and "trial" in coords and row["metric"] in POSITIVE_METRICS:
            records.append(_record(result, row, n_removed=coords["n_removed"], trial=coords["trial"],
                                   panel=row["metric"]))
    return records


def _summary_medians(results) -> dict[tuple, dict]:
    """(model, metric, n_removed) -> the analysis' own `resilience:<n>:summary` `<metric>_median` row."""
    found = {}
    for result, row in _rows(results, "component_ablation"):
        coords = row["coords"]
        if _removal(row, "resilience") and "trial" not in coords and row["metric"].endswith("_median"):
            record = _record(result, row, n_removed=coords["n_removed"], trial=None)
            found[(record["model"], row["metric"][:-7], record["n_removed"])] = record
    return found


def resilience_medians(records: Sequence[dict], results=()) -> list[dict]:
    """The median of each (model, metric, n_removed); Study A exp. 6 asks for medians because a few outlier
    trials dominate a Transformer's mean perplexity. The analysis' summary row when it wrote one; else the
    lower median trial, so that the number shown is always a number of results.csv, never a mean of two."""
    summaries = _summary_medians(results)
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        if record["value"] is not None:
            groups.setdefault((record["model"], record["metric"], record["n_removed"]), []).append(record)
    medians = []
    for key, trials in groups.items():
        if key in summaries:
            median = dict(summaries[key], panel=key[1])  # drawn in the panel of the trials' metric
        else:
            ordered = sorted(trials, key=lambda r: (r["value"], r["trial"]))
            median = ordered[(len(ordered) - 1) // 2]
        medians.append(dict(median, statistic="median", n_trials=len(trials)))
    return medians


def context_records(results) -> list[dict]:
    """`context:<tokens>:baseline` and `context:<tokens>:group:<kind>` on perplexity and its ratio."""
    records = []
    for result, row in _rows(results, "component_ablation"):
        coords = row["coords"]
        if "context_length" not in coords or row["metric"] not in POSITIVE_METRICS:
            continue
        if "removal" not in coords:
            series = "baseline"
        elif coords["removal"] == "group":
            series = "without " + kind_label(coords["kind"])
        else:
            continue
        records.append(_record(result, row, tokens=coords["context_length"], series=series))
    return records


def correlation_records(results) -> list[dict]:
    """`corr:<diagnostic>:<benchmark>` rank correlations (representation analysis)."""
    records = []
    for result, row in _rows(results, "representation"):
        coords = row["coords"]
        if "diagnostic" in coords and "benchmark" in coords:
            records.append(_record(result, row, diagnostic=coords["diagnostic"], benchmark=coords["benchmark"]))
    return records


def cka_model_records(results) -> list[dict]:
    """`cka_models:<other>` rows (metric `cka:<layer>`): how alike two models' residual streams are, layer by
    layer at the same relative depth, on the same inputs."""
    records = []
    for result, row in _rows(results, "representation"):
        coords = row["coords"]
        if "other_model" in coords and "layer" in coords:
            records.append(_record(result, row, other=coords["other_model"], layer=coords["layer"]))
    return records


def _behaviour(ablation, benchmark: str, condition: str, method: str):
    """The ablation row the representation analysis correlated against: the drop on `benchmark`, or, for the
    language-modelling benchmark (which has no accuracy), the perplexity ratio (its rank order is that of the
    log ratio the analysis used, so Spearman's rho is the same)."""
    for metric in (f"drop:{benchmark}", "ppl_ratio"):
        found = ablation.get((condition, method, metric))
        if found is not None:
            return found
    return None


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties get their average rank), or None with fewer than 3 pairs or a constant
    side: the Pearson correlation of the ranks, as scipy.stats.spearmanr computes it."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def diagnostic_records(representation, ablation) -> list[dict]:
    """One point per (layer, kind, diagnostic, benchmark): the diagnostic of ablating that component against
    what the ablation did on the benchmark, joined on the same condition and semantics in the two Results.

    Each panel (model, diagnostic, benchmark) is titled with the Spearman rank correlation of exactly the
    points it draws (`rho_drawn`, over `n_drawn` components), not the analysis' own correlation, which may
    rank components the ablation did not sweep (MLPs); that one, with its CI, is `correlation_records`."""
    by_key = {(r["condition"], r["method"], r["metric"]): r for r in layer_records(ablation, metric=is_effect)}
    benchmarks = list(dict.fromkeys(r["benchmark"] for r in correlation_records(representation)))
    records = []
    for diag in layer_records(representation, "representation"):
        for benchmark in benchmarks:
            effect = _behaviour(by_key, benchmark, diag["condition"], diag["method"])
            if effect is None or diag["value"] is None or effect["value"] is None:
                continue
            records.append(dict(
                diag, diagnostic=diag["metric"], benchmark=benchmark, drop=effect["value"],
                drop_exact=effect["value_exact"], drop_metric=effect["metric"], drop_n=effect["n"]))
    panels: dict[tuple, list[dict]] = {}
    for record in records:
        panels.setdefault((record["model"], record["diagnostic"], record["drop_metric"]), []).append(record)
    out = []
    for (model, diagnostic, effect_metric), points in panels.items():
        rho = spearman([p["value"] for p in points], [p["drop"] for p in points])
        # The rank correlation goes in the panel title, rounded like the prose (numbers.shown).
        panel = f"{diagnostic} vs {effect_metric}: rho {shown(rho)}, {len(points)} components"
        out += [dict(p, rho_drawn=rho, rho_drawn_exact=exact(rho), n_drawn=len(points), panel=panel)
                for p in points]
    return out


def all_records(results) -> list[dict]:
    """Every row, unparsed: for analyses this package has no dedicated chart for."""
    return [_record(result, row) for result in as_results(results) for row in result["rows"]]
