"""The circuits analysis on the report's pages.

Blocks per model: the chosen circuit drawn as a static layered picture (layers bottom to top, the nodes of one
layer left to right in forward order: embedding, components, heads, states; edge rules between node points,
their width the |score|), and the faithfulness curve (top-k circuits by |score| against the random circuits of
each size: their range as a band, each one a tick). Findings quote the summary rows: the circuit's size, heads,
states, faithfulness and completeness, and say so when the circuit holds no attention head. Records are placed
by metric and coordinates, never by parsing a condition name; the charts only encode them.

Positional edges (an edge per token, coordinate `position`): as state nodes put their tokens left to right inside
a layer, an edge's receiving end sits left to right by its token inside a band around the receiver node (the
earliest token at the left), and the tooltip names the token; a finding says which tokens carry the kept edges.
"""

from __future__ import annotations

import altair as alt

from reports import tables
from reports.charts import HEIGHT, WIDTH
from reports.html import esc
from reports.load import ModelResults
from reports.numbers import data_tag
from reports.palette import Palette
from reports.views.base import Headline, View, block

__all__ = ["CircuitsView", "NAME", "layout_records", "position_records", "curve_records", "summary",
           "circuit_findings"]

NAME = "circuits"
_ORDER = {"embedding": 0, "state": 3, "logits": 4}
_BAND = 0.8
"""Width (in node slots) of the band in which a receiver's positional edges end, left to right by token."""


def _rows(result: dict):
    for row, record in zip(result.get("rows", []), tables.all_records(result)):
        yield row, record


def _slot(coords: dict) -> tuple:
    """Left-to-right order inside a layer: embedding, components (heads after their component), states, logits."""
    return (_ORDER.get(coords["kind"], 1 if "head" not in coords else 2), coords.get("position", -1),
            coords.get("head", -1), coords["node"])


def layout_records(result: dict) -> tuple[list[dict], list[dict]]:
    """(node points, edge rules) of the chosen circuit: every node at (its slot in its layer, its layer)."""
    nodes = [(row["coords"], record) for row, record in _rows(result) if row["metric"] == "node_score"]
    by_layer: dict = {}
    for coords, _ in nodes:
        by_layer.setdefault(coords["layer"], []).append(coords)
    where = {}
    for layer, members in by_layer.items():
        for x, coords in enumerate(sorted(members, key=_slot)):
            where[coords["node"]] = (x - (len(members) - 1) / 2, layer)
    points = [dict(record, node=c["node"], kind=c["kind"], head=c.get("head"), x=where[c["node"]][0], y=c["layer"])
              for c, record in nodes]
    edges = [(row["coords"], record) for row, record in _rows(result) if row["metric"] == "edge_score"
             and row["coords"]["sender"] in where and row["coords"]["receiver"] in where]
    tokens = sorted({c["position"] for c, _ in edges if "position" in c})
    rules = []
    for c, record in edges:
        (x, y), (x2, y2) = where[c["sender"]], where[c["receiver"]]
        if "position" in c and len(tokens) > 1:
            x2 += _BAND * (tokens.index(c["position"]) / (len(tokens) - 1) - 0.5)
        rules.append(dict(record, x=x, y=y, x2=x2, y2=y2, sender=c["sender"], receiver=c["receiver"],
                          edge_kind=c["edge_kind"], position=c.get("position"),
                          magnitude=abs(record["value"] or 0.0)))
    return points, rules


def position_records(rules: list[dict]) -> list[dict]:
    """Per token of the kept positional edges: their number and summed |score| (none for per-edge circuits)."""
    by_token: dict = {}
    for r in rules:
        if r.get("position") is not None and r["edge_kind"] == "residual":
            entry = by_token.setdefault(r["position"], {"position": r["position"], "edges": 0, "magnitude": 0.0})
            entry["edges"] += 1
            entry["magnitude"] += r["magnitude"]
    return [by_token[p] for p in sorted(by_token)]


def _edge_tooltip(rules: list[dict]) -> list[str]:
    positional = any(r.get("position") is not None for r in rules)
    return ["sender:N", "receiver:N"] + (["position:O"] if positional else []) + ["value:Q"]


def _graph_chart(points: list[dict], rules: list[dict]):
    if not points:
        return None
    edges = alt.Chart(alt.Data(values=rules)).mark_rule(opacity=0.6).encode(
        x="x:Q", y="y:Q", x2="x2:Q", y2="y2:Q", strokeWidth=alt.StrokeWidth("magnitude:Q", legend=None),
        color=alt.Color("edge_kind:N", title="edge"), tooltip=_edge_tooltip(rules))
    dots = alt.Chart(alt.Data(values=points)).mark_point(filled=True, size=90).encode(
        x=alt.X("x:Q", title="position in layer (forward order)", axis=alt.Axis(labels=False, ticks=False)),
        y=alt.Y("y:Q", title="layer (embedding -1, logits at the top)", axis=alt.Axis(tickMinStep=1)),
        shape=alt.Shape("kind:N", title="node"), tooltip=["node:N", "kind:N", "value:Q"])
    return (edges + dots).properties(width=WIDTH * 2, height=HEIGHT * 1.5, description="the circuit as a graph")


def curve_records(result: dict) -> tuple[list[dict], list[dict]]:
    """(top-k curve, random circuits) of the faithfulness curve."""
    top, random = [], []
    for row, record in _rows(result):
        if row["metric"] != "faithfulness" or "k" not in row["coords"]:
            continue
        if row["condition"] == "curve:top":
            top.append(dict(record, k=row["coords"]["k"]))
        elif row["condition"] == "curve:random":
            random.append(dict(record, k=row["coords"]["k"], trial=row["coords"]["trial"]))
    return top, random


def _curve_chart(top: list[dict], random: list[dict]):
    if not top:
        return None
    x = alt.X("k:Q", title="edges kept", scale=alt.Scale(type="log"))
    y = alt.Y("value:Q", title="faithfulness (0 corrupted, 1 clean)")
    line = alt.Chart(alt.Data(values=top)).mark_line(point=True).encode(x=x, y=y, tooltip=["k:Q", "value:Q"])
    if not random:
        return line.properties(width=WIDTH * 2, height=HEIGHT, description="faithfulness curve")
    rand = alt.Chart(alt.Data(values=random))
    band = rand.mark_area(opacity=0.25, color="#888888").encode(x=x, y="min(value):Q", y2="max(value):Q")
    ticks = rand.mark_tick(color="#555555").encode(x=x, y=y, tooltip=["k:Q", "trial:Q", "value:Q"])
    return (band + ticks + line).properties(width=WIDTH * 2, height=HEIGHT, description="faithfulness curve")


def summary(result: dict) -> dict:
    """metric -> its summary record (condition `circuit`) with the row's coordinates (`k`: the circuit's edges)."""
    return {row["metric"]: {**row["coords"], **record} for row, record in _rows(result)
            if row["condition"] == "circuit"}


def circuit_findings(result: dict) -> list[str]:
    found = summary(result)
    if "faithfulness" not in found:
        return []
    edges = found["faithfulness"]["k"]
    nodes, heads, states = (int(found[f"circuit_{what}"]["value"]) for what in ("nodes", "heads", "states"))
    points, _ = layout_records(result)
    attention = sum(p["kind"] == "attention" and p["head"] is not None for p in points)
    text = [f"The circuit keeps {data_tag(edges)} edges over {data_tag(nodes)} nodes "
            f"({data_tag(heads)} heads, {data_tag(states)} recurrent states); run with "
            f"every other edge ablated it recovers {data_tag(found['faithfulness']['value'])} of the clean "
            f"run's logit difference, and its complement alone {data_tag(found['completeness']['value'])}."]
    if not attention:
        text.append("The circuit contains no attention head.")
    tokens = position_records(layout_records(result)[1])
    if tokens:
        top = max(tokens, key=lambda t: t["magnitude"])
        text.append(f"Its edges are per token: they read at {data_tag(len(tokens))} token positions, the most "
                    f"(by summed |score|) at token {data_tag(top['position'])} ({data_tag(top['edges'])} edges).")
    top, random = curve_records(result)
    for record in top:
        same = [r["value"] for r in random if r["k"] == record["k"] and r["value"] is not None]
        if same and record["value"] is not None:
            text.append(f"With {data_tag(record['k'])} edges the top-scored circuit recovers "
                        f"{data_tag(record['value'])}; random circuits of that size {data_tag(min(same))} to "
                        f"{data_tag(max(same))}.")
            break
    return text


class CircuitsView(View):
    summary = ("Circuits: the edges that carry a needle retrieval, scored by edge attribution and checked by "
               "running the model with every other edge ablated.")

    def model_blocks(self, result: dict, entry: ModelResults, palette: Palette):
        points, rules = layout_records(result)
        top, random = curve_records(result)
        sentences = circuit_findings(result)
        blocks = [block("the circuit (layers bottom to top)", sentences, _graph_chart(points, rules),
                        points, [result]),
                  block("faithfulness by circuit size, against random circuits", [], _curve_chart(top, random),
                        top + random, [result])]
        return [b for b in blocks if b is not None]

    def charts(self, result: dict, palette: Palette | None) -> list:
        points, rules = layout_records(result)
        return [c for c in (_graph_chart(points, rules), _curve_chart(*curve_records(result))) if c is not None]

    def headline(self, models: list[ModelResults], palette: Palette) -> Headline | None:
        sentences = []
        for entry in models:
            result = entry.results.get(NAME)
            found = circuit_findings(result) if result is not None else []
            if found:
                sentences.append(f"{esc(str(result['model'].get('name')))}: {found[0]}")
        return Headline(sentences, None) if sentences else None
