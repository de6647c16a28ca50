"""A zoo model's card on its page: how it was trained (recipe, budget, data versions), its training curve, and
its baseline score on every benchmark with n, so that every ablation below can be read against them.

The card travels inside each Result (`model.card`, written by the analyses for `zoo:` models); a card is user
data like any other string of a Result: every value is escaped, anything malformed is left out, never fatal.
"""

from __future__ import annotations

import altair as alt

from reports.html import ChartBlock, chart_html, esc
from reports.tables import exact

__all__ = ["card_html"]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value) -> str:
    """A card value as text: a dict as 'key: value' pairs (the quality bars), anything else as it is."""
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ') if isinstance(k, str) else k}: {'n/a' if v is None else v}"
                         for k, v in value.items())
    return str(value)


def _facts(card: dict) -> str:
    recipe = card.get("recipe") if isinstance(card.get("recipe"), dict) else {}
    facts = [
        ("description", card.get("description")),
        ("training", f"{card.get('steps')} steps, {card.get('tokens_trained')} tokens, recipe version "
                     f"{recipe.get('version', 1)}, seed {recipe.get('seed')}"),
        ("data", f"{card.get('language_version')}, {card.get('benchmark_version')}"),
        ("time", f"{card.get('wall_time_s')} s wall, {card.get('cpu_time_s')} s CPU ({card.get('trained_on')})"),
        ("weights", card.get("dtype")),
        ("bigram perplexity", card.get("bigram_perplexity")),
        ("quality bars", card.get("quality")),
    ]
    return "".join(f"<tr><th>{esc(k)}</th><td>{esc(_plain(v))}</td></tr>" for k, v in facts if v is not None)


def _scores(card: dict) -> str:
    scores = card.get("scores") if isinstance(card.get("scores"), dict) else {}
    rows = []
    for bench, entry in scores.items():
        if not isinstance(entry, dict):
            continue
        by_len = entry.get("by_context_len")
        detail = ", ".join(f"{k} tokens: {exact(v)}" for k, v in by_len.items()) if isinstance(by_len, dict) else ""
        rows.append(f"<tr><td>{esc(bench)}</td><td>{esc(entry.get('metric'))}</td>"
                    f"<td>{esc(exact(entry.get('score')))}</td><td>{esc(entry.get('n'))}</td>"
                    f"<td>{esc(detail)}</td></tr>")
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
    ).properties(width=320, height=160)
    block = ChartBlock("Training loss", [], chart.to_dict(validate=False),
                       esc("mean weighted loss per bin of steps, as logged by `mechhybrid zoo train`"))
    return chart_html(block, "chart-card")


def card_html(model: dict) -> str:
    """The card section of a model page ('' for a model without a card)."""
    card = model.get("card")
    if not isinstance(card, dict):
        return ""
    return ("<h2>Model card</h2>" + f"<table>{_facts(card)}</table>" + _scores(card) + _loss_block(card))
