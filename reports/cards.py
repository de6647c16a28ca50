"""A zoo model's card on its page: how it was trained (recipe, stopping rule, budget, data versions), its
training curves, and its baseline score on every benchmark with n, so that every ablation below can be read
against them; and on the comparison page, every zoo model's training-probe curve on one chart with the steps
at which each first reached the retrieval thresholds (steps to retrieval, a finding in itself).

The card travels inside each Result (`model.card`, written by the analyses for `zoo:` models, with each
probe point's mean over lengths and the crossing steps already computed by mechhybrid.zoo.card); a card is
user data like any other string of a Result: every value is escaped, anything malformed is left out, never
fatal.
"""

from __future__ import annotations

import altair as alt

from reports import charts
from reports.html import ChartBlock, chart_html, esc
from reports.numbers import data_tag, readable, readable_tag
from reports.palette import Palette
from reports.tables import exact

__all__ = ["card_html", "card_probe_records", "models_probe_records", "steps_to_retrieval_html"]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value) -> str:
    """A card value as text: a dict as 'key: value' pairs (the quality bars), numbers and yes/no as people
    write them (`numbers.readable`: 844,600; 12.45; yes), anything else as it is."""
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ') if isinstance(k, str) else k}: {'n/a' if v is None else readable(v)}"
                         for k, v in value.items())
    return readable(value)


def _facts(card: dict) -> str:
    recipe = card.get("recipe") if isinstance(card.get("recipe"), dict) else {}
    facts = [
        ("description", card.get("description")),
        ("training", f"{readable(card.get('steps'))} steps, {readable(card.get('tokens_trained'))} tokens, "
                     f"recipe version {recipe.get('version', 1)}, seed {recipe.get('seed')}"),
        ("warm-up", _warmup(recipe)),
        ("stopping rule", _rule(recipe) if recipe else None),
        ("stopped", _stopped(card.get("stop"))),
        ("steps to retrieval", card.get("steps_to_retrieval")),
        ("data", f"{card.get('language_version')}, {card.get('benchmark_version')}"),
        ("time", f"{readable(card.get('wall_time_s'))} s wall, {readable(card.get('cpu_time_s'))} s CPU "
                 f"({card.get('trained_on')})"),
        ("weights", card.get("dtype")),
        ("bigram perplexity", card.get("bigram_perplexity")),
        ("quality bars", card.get("quality")),
    ]
    return "".join(f"<tr><th>{esc(k)}</th><td>{esc(_plain(v))}</td></tr>" for k, v in facts if v is not None)


def _rule(recipe: dict) -> str:
    patience = recipe.get("stop_patience_steps")
    if patience is None:
        return f"a fixed budget of {readable(recipe.get('steps'))} steps"
    reached = recipe.get("stop_after_probe")
    begun = f", once it has reached {reached:g}" if _number(reached) and reached > 0 else ""  # a setting, as written
    return (f"stop once the needle probe has not improved by more than its standard error in {readable(patience)} "
            f"steps{begun}, after at least {readable(recipe.get('min_steps'))} and at most "
            f"{readable(recipe.get('steps'))} steps")


def _warmup(recipe: dict) -> str | None:
    """The induction warm-up (recipe 5 on): what its steps draw; None where the recipe has none."""
    steps = recipe.get("induction_warmup_steps")
    if not _number(steps) or steps <= 0:
        return None
    mix = recipe.get("warmup_mix")
    if mix is None:
        drawn = " draw the whole mix and"
    elif isinstance(mix, list) and mix and all(isinstance(p, list) and p and isinstance(p[0], str) for p in mix):
        drawn = f" draw {' and '.join(p[0] for p in mix)} documents only and"
    else:
        drawn = ""  # malformed: say only what is certain
    return f"the first {readable(steps)} steps{drawn} weigh only the answers"


def _stopped(stop) -> str | None:
    if not isinstance(stop, dict):
        return None
    return f"at step {readable(stop.get('step'))}: {stop.get('reason')}"


def _scores(card: dict) -> str:
    scores = card.get("scores") if isinstance(card.get("scores"), dict) else {}
    rows = []
    for bench, entry in scores.items():
        if not isinstance(entry, dict):
            continue
        by_len = entry.get("by_context_len")
        detail = (", ".join(f"{esc(k)} tokens: {readable_tag(v)}" for k, v in by_len.items())
                  if isinstance(by_len, dict) else "")
        rows.append(f"<tr><td>{esc(bench)}</td><td>{esc(entry.get('metric'))}</td>"
                    f"<td>{readable_tag(entry.get('score'))}</td><td>{readable_tag(entry.get('n'))}</td>"
                    f"<td>{detail}</td></tr>")
    if not rows:
        return ""
    return ("<table><tr><th>benchmark</th><th>metric</th><th>baseline</th><th>n</th><th>by context length</th>"
            "</tr>" + "".join(rows) + "</table>")


def _loss_block(card: dict) -> str:
    points = [p for p in card.get("loss_curve") or [] if isinstance(p, (list, tuple)) and len(p) == 2
              and _number(p[0]) and _number(p[1])]
    if not points:
        return ""
    records = [{"step": int(step), "loss": loss, "loss_exact": exact(loss)} for step, loss in points]
    chart = alt.Chart(alt.Data(values=records)).mark_line(point=True).encode(
        x=alt.X("step:Q", title="optimiser step"), y=alt.Y("loss:Q", title="weighted training loss"),
        tooltip=[alt.Tooltip("step:N"), alt.Tooltip("loss_exact:N", title="loss")],
    ).properties(width=320, height=160, description=(
        "Line chart: the zoo model's weighted training loss against optimiser step, as logged while training."))
    block = ChartBlock("Training loss", [], chart.to_dict(validate=False),
                       esc("mean weighted loss per bin of steps, as logged by `mechhybrid zoo train`"))
    return chart_html(block, "chart-card")


def _points(card: dict) -> list[dict]:
    """The card's probe points that can be drawn (a step and a dict of accuracies each)."""
    curve = card.get("needle_probe_curve")
    return [p for p in curve if isinstance(p, dict) and _number(p.get("step")) and isinstance(p.get("needle"), dict)
            ] if isinstance(curve, list) else []


def _record(series: str, family, step, accuracy, se, n, last: bool) -> dict:
    se = se if _number(se) else None
    return {"series": series, "family": family, "step": int(step), "accuracy": accuracy,
            "accuracy_exact": exact(accuracy), "se": se, "se_exact": exact(se), "n": str(n), "last": last}


def _mark_last(records: list[dict]) -> list[dict]:
    """Flags each series' last point, where the chart writes its label."""
    last = {r["series"]: i for i, r in enumerate(records)}
    return [dict(r, last=last[r["series"]] == i) for i, r in enumerate(records)]


def card_probe_records(card: dict) -> list[dict]:
    """One record per (probe step, context length) of a card: accuracy and standard error as the card holds
    them (series: the length)."""
    records = []
    for point in _points(card):
        errors = point.get("needle_se") if isinstance(point.get("needle_se"), dict) else {}
        counts = point.get("needle_n") if isinstance(point.get("needle_n"), dict) else {}
        for length, accuracy in point["needle"].items():
            if _number(accuracy):
                records.append(_record(f"{length} tokens", None, point["step"], accuracy, errors.get(length),
                                       counts.get(length, "n/a"), False))
    return _mark_last(records)


def models_probe_records(models: list[dict]) -> list[dict]:
    """One record per (zoo model, probe step): the probe's needle accuracy averaged over its lengths and its
    standard error, as the card holds them (series: the model name)."""
    records = []
    for model in models:
        card = model.get("card") if isinstance(model.get("card"), dict) else {}
        for point in _points(card):
            counts = point.get("needle_n") if isinstance(point.get("needle_n"), dict) else {}
            n = ", ".join(f"{k}: {v}" for k, v in counts.items()) or "n/a"
            if _number(point.get("needle_mean")):
                records.append(_record(str(model.get("name")), str(model.get("family")), point["step"],
                                       point["needle_mean"], point.get("needle_mean_se"), n, False))
    return _mark_last(records)


def _probe_block(card: dict) -> str:
    records = card_probe_records(card)
    chart = charts.probe_curves(records, _thresholds(card))
    if chart is None:
        return ""
    block = ChartBlock("Training probe: needle accuracy", [], chart.to_dict(validate=False),
                       esc("needles from the probe's own random stream (never a benchmark item), per context "
                           "length; whiskers +-1 standard error; dashed: the retrieval thresholds"))
    return chart_html(block, "chart-card-probe")


def _thresholds(card: dict) -> list[float]:
    crossed = card.get("steps_to_retrieval")
    keys = list(crossed) if isinstance(crossed, dict) else []
    return [float(k) for k in keys if k.replace(".", "", 1).isdigit()]


def _crossing(name: str, card: dict) -> str | None:
    crossed = card.get("steps_to_retrieval")
    if not isinstance(crossed, dict):
        return None
    parts = [f"reached {esc(k)} at step {data_tag(v)}" if _number(v) else f"never reached {esc(k)}"
             for k, v in crossed.items()]
    trained = f" (of {data_tag(card['steps'])} steps trained)" if _number(card.get("steps")) else ""
    return f'<li><span class="model">{esc(name)}</span>: {", ".join(parts)}{trained}</li>'


def steps_to_retrieval_html(models: list[dict], palette: Palette) -> str:
    """The comparison page's section: every zoo model's probe curve (needle accuracy, mean over the probed
    lengths) on one chart, and the step at which each first reached each threshold ('' without cards)."""
    cards = [(m, m["card"]) for m in models if isinstance(m.get("card"), dict)]
    records = models_probe_records([m for m, _ in cards])
    thresholds = sorted({t for _, card in cards for t in _thresholds(card)})
    chart = charts.probe_curves(records, thresholds, palette)
    if chart is None:
        return ""
    lines = "".join(line for m, card in cards if (line := _crossing(str(m.get("name")), card)))
    block = ChartBlock("Training probe: needle accuracy against step", [], chart.to_dict(validate=False),
                       esc("each zoo model's training probe (needles from their own random stream, never a "
                           "benchmark item), accuracy averaged over the probed context lengths; whiskers +-1 "
                           "standard error; dashed: the retrieval thresholds"))
    return ("<h2>Steps to retrieval</h2><p>The first probe step at which each model's needle accuracy reached "
            f"each threshold (same recipe for every model):</p><ul>{lines}</ul>" + chart_html(block, "chart-probe"))


def card_html(model: dict) -> str:
    """The card section of a model page ('' for a model without a card)."""
    card = model.get("card")
    if not isinstance(card, dict):
        return ""
    return ("<h2>Model card</h2>" + f"<table>{_facts(card)}</table>" + _scores(card) + _loss_block(card)
            + _probe_block(card))
