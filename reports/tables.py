"""Result rows -> the flat records each chart draws, so that charts only encode and never compute.

Every record keeps the row's numbers as they are (`value`, `ci_low`, `ci_high`) for the marks, plus exact
text copies (`value_exact`, ...: Python's repr, the same text results.csv holds) for tooltips, so a tooltip
can be checked against the CSV digit for digit. Condition names are parsed per docs/results-schema.md; a
row whose condition does not parse is left out of the chart (it still appears in the page's raw table).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from reports.load import as_result_dict
from reports.numbers import shown
from reports.palette import ROLE_LABELS, role_of

__all__ = [
    "KIND_LABELS", "THIRDS", "kind_label", "as_results", "group_records", "ppl_ratio_records",
    "layer_records", "third_records", "resilience_records", "resilience_medians", "context_records",
    "correlation_records", "diagnostic_records", "all_records", "exact",
]

KIND_LABELS = {"attention": "attention", "ssm": "SSM", "linear_attention": "linear attention",
               "recurrent": "recurrent (RG-LRU)", "conv": "short convolution", "mlp": "MLP"}
THIRDS = ("early", "middle", "late")


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
    if isinstance(results, dict) or hasattr(results, "to_dict"):
        return [as_result_dict(results)]
    return [as_result_dict(result) for result in results]


def _record(result: dict, row: dict, **parsed) -> dict:
    model = result["model"]
    return {
        "model": str(model.get("name")), "family": str(model.get("family")),
        "role": ROLE_LABELS[role_of(model)], "condition": row["condition"], "method": str(row["method"]),
        "metric": row["metric"], "value": _finite(row["value"]), "ci_low": _finite(row["ci_low"]),
        "ci_high": _finite(row["ci_high"]), "n": row["n"], "seed": row["seed"],
        "value_exact": exact(row["value"]), "ci_low_exact": exact(row["ci_low"]),
        "ci_high_exact": exact(row["ci_high"]), **parsed,
    }


def _int(text: str):
    try:
        return int(text)
    except ValueError:
        return None


def _rows(results, analysis: str) -> Iterable[tuple[dict, dict]]:
    for result in as_results(results):
        if result.get("analysis") == analysis:
            for row in result["rows"]:
                yield result, row


def group_records(results) -> list[dict]:
    """`group:<kind>` and its matched `random:<kind>:<trial>` controls, on every `drop:<benchmark>`."""
    records = []
    for result, row in _rows(results, "component_ablation"):
        if not row["metric"].startswith("drop:"):
            continue
        head, _, rest = row["condition"].partition(":")
        if head == "group" and rest:
            kind, trial = rest, None
        elif head == "random" and ":" in rest:
            kind, trial = rest.rsplit(":", 1)
            trial = _int(trial)
            if trial is None:
                continue
        else:
            continue
        records.append(_record(result, row, kind=kind_label(kind), benchmark=row["metric"][5:],
                               removal="targeted" if trial is None else "random", trial=trial))
    return records


def ppl_ratio_records(results) -> list[dict]:
    """`group:<kind>` (and its random controls) on `ppl_ratio`."""
    records = []
    for result, row in _rows(results, "component_ablation"):
        if row["metric"] != "ppl_ratio":
            continue
        head, _, rest = row["condition"].partition(":")
        if head == "group" and rest:
            records.append(_record(result, row, kind=kind_label(rest), removal="targeted", trial=None))
        elif head == "random" and ":" in rest:
            kind, trial = rest.rsplit(":", 1)
            if _int(trial) is not None:
                records.append(_record(result, row, kind=kind_label(kind), removal="random", trial=_int(trial)))
    return records


def layer_records(results, analysis: str = "component_ablation") -> list[dict]:
    """`layer:<layer>:<kind>` on every metric (drops, ppl_ratio, or the representation diagnostics)."""
    records = []
    for result, row in _rows(results, analysis):
        parts = row["condition"].split(":", 2)
        if len(parts) == 3 and parts[0] == "layer" and _int(parts[1]) is not None:
            records.append(_record(result, row, layer=_int(parts[1]), kind=kind_label(parts[2])))
    return records


def third_records(results) -> list[dict]:
    """`third:<early|middle|late>:<kind>` on every metric."""
    records = []
    for result, row in _rows(results, "component_ablation"):
        parts = row["condition"].split(":", 2)
        if len(parts) == 3 and parts[0] == "third" and parts[1] in THIRDS:
            records.append(_record(result, row, position=parts[1], kind=kind_label(parts[2])))
    return records


def resilience_records(results) -> list[dict]:
    """`resilience:<n_removed>:<trial>`: every trial."""
    records = []
    for result, row in _rows(results, "component_ablation"):
        parts = row["condition"].split(":")
        if len(parts) == 3 and parts[0] == "resilience" and _int(parts[1]) is not None and _int(parts[2]) is not None:
            records.append(_record(result, row, n_removed=_int(parts[1]), trial=_int(parts[2])))
    return records


def resilience_medians(records: Sequence[dict]) -> list[dict]:
    """The median trial of each (model, metric, n_removed): the lower median, so that it is always one of the
    trials (a number in results.csv) rather than a mean of two; Study A exp. 6 asks for medians because a few
    outlier trials dominate a Transformer's mean perplexity."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        if record["value"] is not None:
            groups.setdefault((record["model"], record["metric"], record["n_removed"]), []).append(record)
    medians = []
    for key in groups:
        trials = sorted(groups[key], key=lambda r: (r["value"], r["trial"]))
        medians.append(dict(trials[(len(trials) - 1) // 2], statistic="median", n_trials=len(trials)))
    return medians


def context_records(results) -> list[dict]:
    """`context:<tokens>:baseline` and `context:<tokens>:group:<kind>` on every metric."""
    records = []
    for result, row in _rows(results, "component_ablation"):
        parts = row["condition"].split(":", 2)
        if len(parts) != 3 or parts[0] != "context" or _int(parts[1]) is None:
            continue
        if parts[2] == "baseline":
            series = "baseline"
        elif parts[2].startswith("group:"):
            series = "without " + kind_label(parts[2][6:])
        else:
            continue
        records.append(_record(result, row, tokens=_int(parts[1]), series=series))
    return records


def correlation_records(results) -> list[dict]:
    """`corr:<diagnostic>:<benchmark>` rank correlations (representation analysis)."""
    records = []
    for result, row in _rows(results, "representation"):
        parts = row["condition"].split(":", 2)
        if len(parts) == 3 and parts[0] == "corr":
            records.append(_record(result, row, diagnostic=parts[1], benchmark=parts[2]))
    return records


def diagnostic_records(representation, ablation) -> list[dict]:
    """One point per (layer, kind, diagnostic, benchmark): the diagnostic of ablating that component against
    the drop it caused, joined on the shared `layer:<layer>:<kind>` condition of the two Results."""
    drops: dict[str, list[dict]] = {}
    for record in layer_records(ablation):
        if record["metric"].startswith("drop:"):
            drops.setdefault(record["condition"], []).append(record)
    rho = {(r["diagnostic"], r["benchmark"]): r for r in correlation_records(representation)}
    records = []
    for diag in layer_records(representation, "representation"):
        for drop in drops.get(diag["condition"], []):
            benchmark = drop["metric"][5:]
            corr = rho.get((diag["metric"], benchmark))
            records.append(dict(
                diag, diagnostic=diag["metric"], benchmark=benchmark, drop=drop["value"],
                drop_exact=drop["value_exact"], drop_n=drop["n"],
                spearman_exact=corr["value_exact"] if corr else "n/a",
                # The rank correlation goes in the panel title, rounded like the prose (numbers.shown).
                panel=f"{diag['metric']} vs drop on {benchmark}: Spearman rho "
                      f"{shown(corr['value']) if corr else 'n/a'}",
            ))
    return records


def all_records(results) -> list[dict]:
    """Every row, unparsed: for analyses this package has no dedicated chart for."""
    return [_record(result, row) for result in as_results(results) for row in result["rows"]]
