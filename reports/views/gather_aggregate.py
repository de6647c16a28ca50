"""The gather_aggregate analysis (Gather-and-Aggregate heads, arXiv 2504.18574) on the report's pages.

Blocks: a layer x head map of each score (gather, aggregate, aggregate_answer; pooled over every scoring prompt,
the candidates outlined), and the ablation table (the accuracy drop with the candidates zeroed, with its CI, and
with as many random heads, one diamond per draw, per benchmark). Findings are computed from the rows: the top
head of each role against uniform attention, each candidate set's drop against the random draws' range, and per
hybrid whether the Aggregate role sits in attention. Records are placed by method, metric and coordinates, never
by parsing a condition name; the charts only encode them.
"""

from __future__ import annotations

import altair as alt

from reports import tables
from reports.charts import PAGE_WIDTH, TOOLTIP, describe, drawable, family_colour, model_order
from reports.findings import effect, label, span
from reports.html import esc
from reports.numbers import data_tag
from reports.palette import Palette, family_palette, role_of
from reports.views.base import Headline, Section, View, panel_blocks

__all__ = ["GatherAggregateView", "NAME", "score_records", "uniform_records", "ablation_records",
           "score_findings", "ablation_findings", "aggregate_verdicts", "head_maps", "ablation_chart"]

NAME = "gather_aggregate"
METRICS = ("gather", "aggregate", "aggregate_answer")
ROLE_OF = {"gather": "gather", "aggregate": "aggregate", "aggregate_answer": "aggregate"}
"""The role whose candidates a score map outlines."""
RETRIEVAL = ("needle", "recall")
POOLED = "all"
_UNIT = alt.Scale(domain=[0, 1], scheme="viridis")
_CELL = 22
_RULE = {"strokeDash": [4, 4], "color": "#888888", "aria": False}


def _rows(results: list[dict]):
    for result in tables.as_results(results):
        if result.get("analysis") == NAME:
            for row, record in zip(result["rows"], tables.all_records(result)):
                yield result, row, record


def _candidates(result: dict) -> dict[str, set[tuple[int, int]]]:
    found = (result.get("extra") or {}).get("candidates") or {}
    return {role: {tuple(lh) for lh in heads} for role, heads in found.items() if isinstance(heads, list)}


def score_records(results: list[dict]) -> list[dict]:
    """Every head's pooled score, with whether it is a candidate of the map's role."""
    out = []
    for result, row, record in _rows(results):
        coords = row["coords"]
        if row["condition"] == "scores" and coords.get("benchmark") == POOLED:
            lh = (coords["layer"], coords["head"])
            out.append(dict(record, layer=lh[0], head=lh[1], score=row["metric"],
                            candidate=lh in _candidates(result).get(ROLE_OF.get(row["metric"], ""), set())))
    return out


def uniform_records(results: list[dict]) -> list[dict]:
    return [dict(record, layer=row["coords"]["layer"], score=row["metric"]) for _, row, record in _rows(results)
            if row["condition"] == "uniform" and row["coords"].get("benchmark") == POOLED]


def ablation_records(results: list[dict]) -> list[dict]:
    """Accuracy (`acc:`) and drop (`drop:`) rows of every head set, with the benchmark and the set's coords."""
    out = []
    for result, row, record in _rows(results):
        head, _, bench = row["metric"].partition(":")
        if head not in ("acc", "drop") or not bench:
            continue
        c = row["coords"]
        chance = ((result.get("extra") or {}).get("chance") or {}).get(bench)
        what = ("nothing" if row["method"] == "none" else
                f"{c.get('head_role', '')} candidates" if c.get("removal") == "candidate" else "random heads")
        out.append(dict(record, benchmark=bench, measure=head, removal=c.get("removal", "none"),
                        head_role=c.get("head_role"), k=c.get("k"), trial=c.get("trial"), layer=c.get("layer"),
                        head=c.get("head"), chance=chance, hybrid=role_of(result["model"]) == "hybrid",
                        ablated=what, set=f"{record['model']}: {what} (k={c.get('k')})"))
    return out


def _model(record: dict) -> str:
    return f'<span class="model">{esc(record["model"])}</span> ({esc(record["role"])})'


def _head(record: dict) -> str:
    return label(f"layer {record['layer']}, head {record['head']}")


def _quoted(record: dict) -> str:
    ci = (f"95% CI {span(record['ci_low'], record['ci_high'])}, " if record["ci_low"] is not None else "")
    return f"{data_tag(record['value'])} ({ci}n={esc(record['n'])})"


def score_findings(scores: list[dict], uniform: list[dict]) -> list[str]:
    """Per model and score: the top head, its score with its CI, and uniform attention's score in its layer."""
    out = []
    for model in model_order(scores):
        for metric in METRICS:
            mine = [r for r in scores if r["model"] == model and r["score"] == metric and r["value"] is not None]
            if not mine:
                continue
            top = sorted(mine, key=lambda r: (-r["value"], r["layer"], r["head"]))[0]
            base = next((u for u in uniform if u["model"] == model and u["score"] == metric
                         and u["layer"] == top["layer"]), None)
            versus = f", uniform attention in its layer {data_tag(base['value'])}" if base else ""
            out.append(f"{_model(top)}: the highest {label(metric)} score is {_head(top)} at {_quoted(top)}"
                       f"{versus}.")
    return out


def _randoms(records: list[dict], record: dict) -> list[dict]:
    return sorted((r for r in records if r["model"] == record["model"] and r["benchmark"] == record["benchmark"]
                   and r["measure"] == "drop" and r["removal"] == "random" and r["k"] == record["k"]
                   and r["value"] is not None), key=lambda r: r["value"])


def _baseline(records: list[dict], model: str, bench: str) -> dict | None:
    return next((r for r in records if r["model"] == model and r["benchmark"] == bench and r["measure"] == "acc"
                 and r["removal"] == "none"), None)


def ablation_findings(records: list[dict]) -> list[str]:
    """Per model, benchmark and candidate set: its drop with CI against the random draws of as many heads."""
    out = []
    for r in records:
        if r["measure"] != "drop" or r["removal"] != "candidate":
            continue
        base = _baseline(records, r["model"], r["benchmark"])
        where = _head(r) if r["layer"] is not None else f"{esc(r['k'])} heads"
        sentence = (f"{_model(r)}: zeroing the {esc(r['head_role'])} candidates ({where}) drops "
                    f"{esc(r['benchmark'])} accuracy by {effect(r)}")
        if base is not None:
            sentence += f" from {_quoted(base)}" + (f", chance {data_tag(r['chance'])}" if r["chance"] else "")
        randoms = _randoms(records, r)
        sentence += (f"; as many random heads drop it by {span(randoms[0]['value'], randoms[-1]['value'])} across "
                     f"{len(randoms)} draw{'s' if len(randoms) != 1 else ''}" if randoms else
                     "; no random set of as many heads could be drawn")
        out.append(sentence + ".")
    return out


def _verdict(records: list[dict], model: str) -> tuple[str, dict | None]:
    """(answer, the evidence record): 'yes' when zeroing the aggregate candidates drops a retrieval benchmark
    with a CI above 0 and beyond every random draw of as many heads; 'chance' when every retrieval baseline is
    within its interval of chance; else 'no'."""
    usable = []
    for bench in RETRIEVAL:
        base = _baseline(records, model, bench)
        if base is not None and base["ci_low"] is not None and base["chance"] is not None \
                and base["ci_low"] > base["chance"]:
            usable.append(bench)
    if not usable:
        return "chance", None
    drops = sorted((r for r in records if r["model"] == model and r["measure"] == "drop" and r["removal"] == "candidate"
                    and r["head_role"] == "aggregate" and r["benchmark"] in usable and r["value"] is not None),
                   key=lambda r: -r["value"])
    for r in drops:
        randoms = _randoms(records, r)
        if r["ci_low"] is not None and r["ci_low"] > 0 and all(r["value"] > x["value"] for x in randoms):
            return "yes", r
    return "no", drops[0] if drops else None


def _concentrates(scores: list[dict], uniform: list[dict], model: str) -> dict | None:
    """The aggregate candidate's pooled aggregate score record when its CI lies above uniform attention's in its
    layer (the head does read the segments' last tokens), else None."""
    for r in scores:
        if r["model"] == model and r["score"] == "aggregate" and r["candidate"] and r["ci_low"] is not None:
            base = next((u for u in uniform if u["model"] == model and u["score"] == "aggregate"
                         and u["layer"] == r["layer"]), None)
            if base is not None and r["ci_low"] > base["value"]:
                return dict(r, uniform=base["value"])
    return None


def aggregate_verdicts(records: list[dict], scores: list[dict], uniform: list[dict]) -> list[str]:
    """Per hybrid: whether the Aggregate role sits in attention (the paper's finding): an aggregate candidate
    whose attention on the segments' last tokens lies above uniform attention's (CI), and whose zeroing drops
    retrieval with a CI above 0 and beyond every random draw of as many heads."""
    out = []
    for model in model_order([r for r in records if r["hybrid"]]):
        answer, evidence = _verdict(records, model)
        first = next(r for r in records if r["model"] == model)
        reads = _concentrates(scores, uniform, model)
        if answer == "chance":
            out.append(f"{_model(first)}: whether the Aggregate role sits in attention cannot be told: its needle and "
                       "recall accuracies are within their intervals of chance.")
        elif answer == "yes" and reads is not None:
            out.append(f"{_model(first)}: the Aggregate role sits in attention, as the paper finds: its aggregate "
                       f"candidate {_head(reads)} puts {_quoted(reads)} of its attention at the question on the "
                       f"segments' last tokens (uniform attention: {data_tag(reads['uniform'])}), and zeroing it "
                       f"drops {esc(evidence['benchmark'])} accuracy by {effect(evidence)}, more than any random "
                       "set of as many attention heads.")
        else:
            why = ("its aggregate candidate's attention on the segments' last tokens is not above uniform "
                   "attention's" if reads is None else "zeroing its aggregate candidates drops no retrieval "
                   "accuracy with a CI above 0 and beyond every random draw")
            shown = (f" (largest drop: {esc(evidence['benchmark'])} by {effect(evidence)})" if evidence else "")
            out.append(f"{_model(first)}: the Aggregate role is not shown to sit in attention: {why}{shown}.")
    return out


def head_maps(records: list[dict]):
    """Each score per layer (rows) and head (columns), one panel per score, one row of panels per model, one
    colour scale 0..1; the candidates of the score's role outlined."""
    if not drawable(records):
        return None
    tooltip = TOOLTIP + [alt.Tooltip("layer:N"), alt.Tooltip("head:N"), alt.Tooltip("candidate:N")]
    x, y = alt.X("head:O", title="head", axis=alt.Axis(labelAngle=0)), alt.Y("layer:O", title="layer")
    panels = []
    for model in model_order(records):
        mine = [r for r in records if r["model"] == model]
        heads = len(dict.fromkeys(r["head"] for r in mine))
        width = max(88, _CELL * heads)
        row = []
        for metric in METRICS:
            cells = [r for r in mine if r["score"] == metric]
            if not cells:
                continue
            layers = [alt.Chart().mark_rect().encode(x=x, y=y, color=alt.Color("value:Q", scale=_UNIT,
                                                                                 title="attention mass"),
                                                     tooltip=tooltip)]
            if any(r["candidate"] for r in cells):
                layers.append(alt.Chart().transform_filter("datum.candidate").mark_rect(
                    fillOpacity=0, stroke="#D55E00", strokeWidth=2.5).encode(x=x, y=y, tooltip=tooltip))
            row.append(alt.layer(*layers, data=alt.Data(values=cells)).properties(
                title=f"{model}: {metric}", width=width, height=alt.Step(_CELL)))
        panels.append(alt.hconcat(*row))
    return alt.vconcat(*panels).properties(description=describe(
        "Heatmaps: each attention head's Gather score (attention mass at a segment's last token on that segment), "
        "Aggregate score (mass at the final query on the segments' last tokens) and the answer segment's share "
        "of it, 0-1, one cell per layer (rows) and head (columns), one row of maps per model; candidates "
        "outlined.", records))


def ablation_chart(records: list[dict], palette: Palette):
    """Accuracy drop per benchmark (columns): candidate sets as dots with their CI, random sets as diamonds, one
    row per (model, heads zeroed), a dashed line at no change."""
    drops = [r for r in records if r["measure"] == "drop"]
    if not drawable(drops):
        return None
    y = alt.Y("set:N", title=None, sort=list(dict.fromkeys(r["set"] for r in drops)),
              axis=alt.Axis(labelLimit=320))
    x = alt.X("value:Q", title="accuracy drop (0-1)")
    tooltip = TOOLTIP + [alt.Tooltip("benchmark:N"), alt.Tooltip("head_role:N"), alt.Tooltip("k:N"),
                         alt.Tooltip("trial:N")]
    cand = alt.Chart().transform_filter("datum.removal === 'candidate'")
    layers = [cand.mark_point(filled=True, size=70).encode(x=x, y=y, color=family_colour(drops, palette),
                                                           tooltip=tooltip),
              cand.transform_filter("isValid(datum.ci_low)").mark_errorbar(ticks=True, color="#333333").encode(
                  x=alt.X("ci_low:Q", title="accuracy drop (0-1)"), x2="ci_high:Q", y=y),
              alt.Chart().transform_filter("datum.removal === 'random'").mark_point(
                  shape="diamond", filled=True, color="#333333", size=35).encode(x=x, y=y, tooltip=tooltip),
              alt.Chart().mark_rule(**_RULE).encode(x=alt.datum(0))]
    benches = list(dict.fromkeys(r["benchmark"] for r in drops))
    width = max(140, (PAGE_WIDTH - 380) // max(1, len(benches)) - 30)
    return alt.layer(*layers).properties(width=width, height=alt.Step(16)).facet(
        data=alt.Data(values=drops), column=alt.Column("benchmark:N", title=None, sort=benches)).properties(
        description=describe("Dot chart: accuracy drop (0-1) on each zoo benchmark (columns) with the Gather, "
                             "Aggregate or both candidates zeroed (dot, with its 95% CI) and with as many random "
                             "attention heads zeroed (one diamond per draw); dashed line at no change.", drops))


def panels(results: list[dict], palette: Palette) -> list[tuple]:
    scores, uniform, ablated = score_records(results), uniform_records(results), ablation_records(results)
    return [("Gather and Aggregate scores per head", score_findings(scores, uniform), head_maps(scores), scores),
            ("Zeroing the candidates vs as many random heads",
             aggregate_verdicts(ablated, scores, uniform) + ablation_findings(ablated),
             ablation_chart(ablated, palette), ablated)]


def _blocks(results: list[dict], palette: Palette) -> list:
    return panel_blocks(panels(results, palette), results)


class GatherAggregateView(View):
    """Gather-and-Aggregate heads: per-head scores and the causal check."""

    summary = ("Every attention head is scored on prompts made of segments (sentences, key-value pairs, stated "
               "choices) as a Gather head (attention at a segment's last token on that segment) and as an "
               "Aggregate head (attention at the question on the segments' last tokens); the top heads are zeroed "
               "against as many random heads on the zoo's retrieval and multiple-choice benchmarks.")

    def model_blocks(self, result, entry, palette):
        return _blocks([result], palette)

    def compare_sections(self, results, palette):
        blocks = _blocks(results, palette)
        return [Section("Gather-and-Aggregate heads", blocks, "ga")] if blocks else []

    def headline(self, models, palette):
        results = [m.results[NAME] for m in models if NAME in m.results]
        sentences = aggregate_verdicts(ablation_records(results), score_records(results), uniform_records(results))
        return Headline(sentences, None, folded_as="more models") if sentences else None

    def charts(self, result, palette):
        palette = palette or family_palette([result["model"]])
        return [chart for _, _, chart, _ in panels([result], palette) if chart is not None]
