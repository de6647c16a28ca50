"""Plain-language findings, computed from the same records the charts draw, with their uncertainty.

Each function returns a list of HTML sentences. Every number quoted is one number of one row (a value or a
CI bound, wrapped by `numbers.data_tag` so it can be traced to results.csv); the only computing here is
choosing which rows to quote (largest effect, median trial). Words that come from condition names (kinds,
layers, benchmarks, token counts) are escaped and wrapped in `<span class="label">`. An effect whose CI
contains the no-effect value (0 for a drop, 1 for a ratio) is called "not resolved", because the sign of a
difference inside its CI is not known.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from reports import tables
from reports.numbers import data_tag, null_for, percent_tag

__all__ = [
    "effect", "group_findings", "ppl_ratio_findings", "layer_findings", "third_findings",
    "resilience_findings", "context_findings", "correlation_findings", "cka_model_findings", "condition_line",
    "label", "metric_words", "span", "clamp_note", "CLAMP_NOTE_AT", "extremes_findings",
]

CLAMP_NOTE_AT = 0.01
"""A perplexity whose loss hit the clamp on at least this share of tokens says so next to its number: from
there on the clamp, not the model, sets part of the perplexity (one token in a hundred at exp(20))."""


def label(text) -> str:
    return f'<span class="label">{html.escape(str(text))}</span>'


# Words for the metric names of docs/results-schema.md; anything else is shown as written.
_METRIC_WORDS = {
    "ppl": "perplexity", "ppl_ratio": "perplexity ratio", "clamp_frac": "share of clamped tokens",
    "rel_norm_change": "relative change of the residual norm", "cosine": "cosine to the intact residual",
    "out_in_norm_ratio": "output / input norm ratio", "kl_logit_lens": "logit-lens KL",
    "cka": "CKA to the intact representation", "spearman": "Spearman rank correlation",
}


def metric_words(metric: str) -> str:
    """'drop:arc' -> 'accuracy drop on arc'; 'kl_logit_lens' -> 'logit-lens KL'."""
    head, _, rest = metric.partition(":")
    if head == "drop" and rest:
        return f"accuracy drop on {rest}"
    if head == "acc" and rest:
        return f"accuracy on {rest}"
    return _METRIC_WORDS.get(metric, metric)


def _model(record: dict) -> str:
    return f'<span class="model">{html.escape(record["model"])}</span> ({html.escape(record["role"])})'


def span(low, high, unit: str = "") -> str:
    """'0.2&ndash;0.3', or '-0.01 to 0.3' when a bound is negative (a dash next to a minus sign misreads)."""
    joint = " to " if (low is not None and low < 0) or (high is not None and high < 0) else "&ndash;"
    return f"{data_tag(low, unit)}{joint}{data_tag(high, unit)}"


def effect(record: dict, unit: str = "") -> str:
    """'0.312 (95% CI 0.27-0.35)', or with 'not resolved' when the CI holds the no-effect value."""
    text = data_tag(record["value"], unit)
    low, high = record["ci_low"], record["ci_high"]
    if low is None or high is None:
        return text + " (no CI)"
    text += f" (95% CI {span(low, high, unit)}"
    null = null_for(record["metric"])
    if low == high == null:  # every resample agreed on no change (e.g. accuracy 0 before and after)
        return text + "; no change in any resample)"
    if low <= null <= high:
        return text + f"; not resolved: the CI includes {'no change' if null else 'zero'})"
    return text + ")"


def _by(records: Iterable[dict], *keys: str) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault(tuple(record[k] for k in keys), []).append(record)
    return groups


def _largest_first(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (-(r["value"] if r["value"] is not None else float("-inf")),
                                          r["condition"]))


def group_findings(records: list[dict]) -> list[str]:
    """'On arc, removing attention drops accuracy by 0.52 (95% CI ...); random removals of as many: 0.4-0.5.'"""
    out = []
    for (model, benchmark), group in _by(records, "model", "benchmark").items():
        targeted = _largest_first([r for r in group if r["removal"] == "targeted"])
        if not targeted:
            continue
        first, rest = targeted[0], targeted[1:]
        sentence = (f"{_model(first)}: on {label(benchmark)}, removing {label(first['kind'])} drops accuracy by "
                    f"{effect(first)}" + "".join(f"; removing {label(r['kind'])} by {effect(r)}" for r in rest))
        randoms = [r for r in group if r["removal"] == "random" and r["value"] is not None]
        for kind, trials in _by(randoms, "kind").items():
            ordered = sorted(trials, key=lambda r: r["value"])
            sentence += (f"; removing as many components at random as there are {label(kind[0])} components: "
                         f"{span(ordered[0]['value'], ordered[-1]['value'])} across trials")
        out.append(sentence + ".")
    return out


def clamp_note(record: dict) -> str:
    """', loss clamped on 82% of tokens' for a ratio record whose condition hit the loss clamp on at least
    CLAMP_NOTE_AT of its tokens ('' otherwise): that ratio understates what the removal did."""
    clamp = record.get("clamp_frac")
    if clamp is None or clamp < CLAMP_NOTE_AT:
        return ""
    return f", loss clamped on {percent_tag(clamp)} of tokens"


def ppl_ratio_findings(records: list[dict]) -> list[str]:
    """'Removing linear attention raises perplexity 310x (95% CI 280-350x), loss clamped on 82% of tokens;
    removing attention 1.9x (...).'"""
    out = []
    for (model,), group in _by([r for r in records if r["removal"] == "targeted"], "model").items():
        ordered = _largest_first(group)
        first, rest = ordered[0], ordered[1:]
        verb = "raises" if (first["value"] or 0) >= 1 else "multiplies"
        sentence = (f"{_model(first)}: removing {label(first['kind'])} {verb} perplexity {effect(first, 'x')}"
                    + clamp_note(first))
        sentence += "".join(f"; removing {label(r['kind'])} {effect(r, 'x')}{clamp_note(r)}" for r in rest)
        out.append(sentence + ".")
    return out


def layer_findings(records: list[dict]) -> list[str]:
    """The single component with the largest value, per model and metric."""
    out = []
    for (model, metric), group in _by(records, "model", "metric").items():
        top = _largest_first([r for r in group if r["value"] is not None])
        if top:
            r = top[0]
            unit = "x" if metric == "ppl_ratio" else ""
            out.append(f"{_model(r)}: the largest {label(metric_words(metric))} of one component is at "
                       f"{label('layer ' + str(r['layer']) + ' ' + r['kind'])}: {effect(r, unit)}.")
    return out


def third_findings(records: list[dict]) -> list[str]:
    """Early, middle and late third side by side, per model, kind and metric (Study A exp. 4)."""
    out = []
    for (model, kind, metric), group in _by(records, "model", "kind", "metric").items():
        by_position = {r["position"]: r for r in group}
        unit = "x" if metric == "ppl_ratio" else ""
        parts = [f"{label(p)} {effect(by_position[p], unit)}" for p in tables.THIRDS if p in by_position]
        out.append(f"{_model(group[0])}: {label(metric_words(metric))} with one third of {label(kind)} removed: "
                   + "; ".join(parts) + ".")
    return out


def resilience_findings(trials: list[dict], medians: list[dict]) -> list[str]:
    """Median trial and the range of all trials, per model and number of layers removed."""
    out = []
    for (model, metric, removed), group in _by(trials, "model", "metric", "n_removed").items():
        values = sorted(r["value"] for r in group if r["value"] is not None)
        median = next((m for m in medians if (m["model"], m.get("panel", m["metric"]), m["n_removed"])
                       == (model, metric, removed)), None)
        if median is None:
            continue
        layers = f"{removed} random layer" + ("" if removed == 1 else "s")
        out.append(f"{_model(group[0])}: skipping {label(layers)} gives a median "
                   f"{label(metric_words(metric))} of {data_tag(median['value'])} (every trial: "
                   f"{span(values[0], values[-1])}).")
    return out


def context_findings(records: list[dict]) -> list[str]:
    """Shortest and longest context, per model, metric and condition."""
    out = []
    for (model, metric, series), group in _by(records, "model", "metric", "series").items():
        ordered = sorted((r for r in group if r["value"] is not None), key=lambda r: r["tokens"])
        if not ordered:
            continue
        short, long = ordered[0], ordered[-1]
        out.append(f"{_model(short)}, {label(series)}: {label(metric_words(metric))} {data_tag(short['value'])} at "
                   f"{label(str(short['tokens']) + ' tokens')}, {data_tag(long['value'])} at "
                   f"{label(str(long['tokens']) + ' tokens')}.")
    return out


def correlation_findings(records: list[dict]) -> list[str]:
    """Per model and benchmark, the diagnostic whose rank correlation with the drop is largest in size."""
    out = []
    for (model, benchmark), group in _by(records, "model", "benchmark").items():
        known = [r for r in group if r["value"] is not None]
        if not known:
            continue
        top = sorted(known, key=lambda r: (-abs(r["value"]), r["diagnostic"]))[0]
        out.append(f"{_model(top)}: of the diagnostics, {label(metric_words(top['diagnostic']))} tracks the effect on "
                   f"{label(benchmark)} most closely: Spearman rho {effect(top)}.")
    return out


def cka_model_findings(records: list[dict]) -> list[str]:
    """Per pair of models, the layers where their representations are most and least alike."""
    out = []
    for (model, other), group in _by(records, "model", "other").items():
        known = sorted((r for r in group if r["value"] is not None), key=lambda r: (r["value"], r["layer"]))
        if not known:
            continue
        low, high = known[0], known[-1]
        out.append(f"{_model(high)} against {label(other)}: most alike at {label('layer ' + str(high['layer']))} "
                   f"(CKA {data_tag(high['value'])}), least at {label('layer ' + str(low['layer']))} "
                   f"(CKA {data_tag(low['value'])}).")
    return out


def _quoted(record: dict) -> str:
    """A value with its CI as the row gives it, with no claim about what 'no effect' would be: the metric of
    an analysis without a view has no known null."""
    text = data_tag(record["value"])
    if record["ci_low"] is None or record["ci_high"] is None:
        return text
    return f"{text} (95% CI {span(record['ci_low'], record['ci_high'])})"


def extremes_findings(records: list[dict]) -> list[str]:
    """Per model and metric, the largest and the smallest value and where (`where`: the record's condition
    and coordinates as text), for an analysis without a view of its own."""
    out = []
    for (model, metric), group in _by(records, "model", "metric").items():
        known = _largest_first([r for r in group if r["value"] is not None])
        if not known:
            continue
        high, low = known[0], known[-1]
        sentence = f"{_model(high)}: {label(metric_words(metric))} is "
        if len(known) == 1:
            out.append(sentence + f"{_quoted(high)} at {label(high['where'])}.")
        else:
            out.append(sentence + f"largest at {label(high['where'])}: {_quoted(high)}; smallest at "
                       f"{label(low['where'])}: {_quoted(low)} ({len(known)} values).")
    return out


def _span(values: list) -> str:
    # Numbers in numeric order (16, 64, 100), then any text.
    distinct = sorted({v for v in values if v is not None},
                      key=lambda v: (0, v, "") if isinstance(v, (int, float)) else (1, 0, repr(v)))
    if not distinct:
        return "n/a"
    if len(distinct) <= 3:
        return ", ".join(html.escape(str(v)) for v in distinct)
    numbers = [v for v in distinct if isinstance(v, (int, float))]
    return f"{html.escape(str(min(numbers)))}&ndash;{html.escape(str(max(numbers)))}" if numbers else "various"


def condition_line(records: list[dict], results: list[dict]) -> str:
    """'method zero; n 100; seed 0; data lm (zoo-lang-1, n 64)': the exact conditions under a chart."""
    data = []
    for result in results:
        for item in result.get("data") or []:
            if isinstance(item, dict):
                text = f"{item.get('name')} ({item.get('version')}, n {item.get('n')})"
                if text not in data:
                    data.append(text)
    return (f"method {_span([r['method'] for r in records])}; n {_span([r['n'] for r in records])} per estimate; "
            f"seed {_span([r['seed'] for r in records])}; data {html.escape('; '.join(data) or 'n/a')}")
