"""The failure-mode page (OUT/failures.html): each hybrid next to the Transformer and the pure-SSM controls on
the same perturbations, one sentence per hybrid and perturbation with every number's interval, and the rows
they quote in a table. The facts come from `reports.failure_modes`; this module only writes them out."""

from __future__ import annotations

from reports.failure_modes import ControlCheck, Perturbation, Quote, control_check, perturbations
from reports.findings import span
from reports.html import esc, model_href, page
from reports.load import Loaded, ModelResults
from reports.numbers import data_tag
from reports.palette import ROLE_LABELS
from reports.pages import ordered_models

__all__ = ["failure_page", "FAILURE_PAGE", "quote_text", "overlap_text"]

FAILURE_PAGE = "failures.html"
COUNTS = ("k95", "circuit_nodes", "circuit_heads", "circuit_states")
"""Metrics (prefixes) that count things (heads kept, a circuit's nodes): a whole value is shown as one."""


def quote_text(q: Quote) -> str:
    """'0.97 (95% CI 0.94&ndash;1, n = 64)', or with the trials' range for a median without a CI."""
    if q.value is None:
        if q.metric.startswith("k95"):
            return "none drawn (its intact retrieval is within its interval of chance)"
        return "no value (n/a)"
    if q.metric.startswith(COUNTS) and float(q.value).is_integer():
        text = f'<data value="{esc(repr(q.value))}">{int(q.value)}</data>'
    else:
        text = data_tag(q.value)
    details = []
    if q.ci_low is not None and q.ci_high is not None:
        details.append(f"95% CI {span(q.ci_low, q.ci_high)}")
    elif q.spread is not None:
        details.append(f"trials {span(*q.spread)}")
    else:
        details.append("no interval")
    if q.n is not None:
        details.append(f"n = {esc(q.n)}")
    return f"{text} ({', '.join(details)})"


def _interval(q: Quote):
    if q.value is None:
        return None
    if q.ci_low is not None and q.ci_high is not None:
        return (q.ci_low, q.ci_high)
    return q.spread


def overlap_text(a: Quote, b: Quote) -> str:
    """Whether two quotes' intervals overlap: the only comparison the rows support without per-item data."""
    first, second = _interval(a), _interval(b)
    if first is None or second is None:
        return ""
    if first[1] < second[0] or second[1] < first[0]:
        return "the intervals do not overlap"
    return "the intervals overlap, so this difference is not resolved"


def _who(q: Quote) -> str:
    return f'<span class="model">{esc(q.model)}</span> ({esc(ROLE_LABELS.get(q.role, q.role))})'


def _sentence(hybrid: list[Quote], controls: list[Quote]) -> str:
    parts = [f"{_who(hybrid[0])}: " + "; ".join(f"{esc(q.what)} {quote_text(q)}" for q in hybrid)]
    for q in controls:
        twin = next((h for h in hybrid if h.what == q.what), None)
        overlap = overlap_text(twin, q) if twin is not None else ""
        parts.append(f"{_who(q)}: {esc(q.what)} {quote_text(q)}" + (f" ({overlap})" if overlap else ""))
    return "<li>" + "; against ".join(parts) + ".</li>"


def _by_model(quotes) -> dict[str, list[Quote]]:
    grouped: dict[str, list[Quote]] = {}
    for q in quotes:
        grouped.setdefault(q.model, []).append(q)
    return grouped


def _table(p: Perturbation) -> str:
    head = "".join(f'<th scope="col">{c}</th>' for c in ("model", "role", "what", "value", "interval", "n",
                                                          "source row"))
    body = "".join(
        f"<tr><th scope=\"row\">{esc(q.model)}</th><td>{esc(ROLE_LABELS.get(q.role, q.role))}</td>"
        f"<td>{esc(q.what)}</td><td>{data_tag(q.value)}</td>"
        f"<td>{span(*_interval(q)) if _interval(q) else 'none'}</td><td>{esc(q.n)}</td>"
        f"<td>{esc(q.analysis)}: {esc(q.condition)} / {esc(q.metric)}</td></tr>" for q in p.quotes)
    return (f"<table><caption>{esc(p.title)}: the rows quoted</caption><tr>{head}</tr>{body}</table>"
            if p.quotes else "")


def _section(p: Perturbation) -> str:
    grouped = _by_model(p.quotes)
    controls = [q for q in p.quotes if q.role != "hybrid"]
    hybrids = [qs for qs in grouped.values() if qs[0].role == "hybrid"]
    sentences = "".join(_sentence(qs, controls) for qs in hybrids)
    if not hybrids:
        sentences = "<li>No hybrid has these rows.</li>"
    missing = "".join(f"<li>{esc(m)}</li>" for m in p.missing)
    return (f'<section aria-labelledby="fm-{p.key}"><h2 id="fm-{p.key}">{esc(p.title)}</h2>'
            f"<ul>{sentences}</ul>" + (f'<p>Not compared:</p><ul class="notes">{missing}</ul>' if missing else "")
            + _table(p) + "</section>")


def _control_note(check: ControlCheck) -> str:
    if check.model is None:
        return "<p><strong>There is no Transformer control among these results.</strong></p>"
    if check.retrieves is None:
        return (f"<p><strong>The Transformer control {esc(check.model)} has no retrieval number here, so whether it "
                "retrieves is not known.</strong></p>")
    if not check.retrieves:
        return (f'<p class="warning"><strong>The Transformer control {esc(check.model)} does not retrieve: its intact '
                f"accuracy {quote_text(check.quote)} does not rise above chance ({data_tag(check.chance)}). Every "
                "comparison with it below compares against a model that never learned the task.</strong></p>")
    return (f"<p>The Transformer control {esc(check.model)} retrieves: intact accuracy {quote_text(check.quote)}, "
            f"above chance ({data_tag(check.chance)}).</p>")


def failure_page(loaded: Loaded) -> str:
    """The page's HTML (no charts: every number is in a sentence and a table)."""
    models: list[ModelResults] = ordered_models(loaded)
    intro = ("<h1>How the hybrids fail, next to their controls</h1><p>Each hybrid beside the Transformer and the "
             "pure-SSM controls on the same perturbations. Every number is one row of a Result (the table under "
             "each section names it); an interval is the row's 95% bootstrap CI, or the range over random trials "
             "where the row is a median of trials. Two intervals that overlap leave the difference unresolved.</p>")
    body = intro + _control_note(control_check(models)) + "".join(_section(p) for p in perturbations(models))
    nav = [("index.html", "Index"), ("compare.html", "Compare models")] + [
        (model_href(m.slug), m.model.get("name")) for m in models]
    return page("Failure modes: mechhybrid report", nav, body, has_charts=False)
