"""The patching analysis (causal tracing: exact patching sweeps, attribution patching's agreement) on the report's
pages.

Model page and comparison page: position x site heatmaps of the residual stream, components and heads (the
prompt's tokens on the axis), the state x position map of every recurrent layer, the attribution-vs-exact
scatter with its Spearman rho; each block with one-sentence findings computed from the rows' numbers (every
number a `<data>` tag holding the row's exact value in results.csv, with its interval where the analysis
swept pairs one by one). Front page: per model, where patching one site first restores half of the clean run.
Records: `patching_records`; charts: `patching_charts`.
"""

from __future__ import annotations

from reports.findings import effect, label, span
from reports.html import anchor, esc, model_href
from reports.numbers import data_tag
from reports.views import patching_charts as pc
from reports.views import patching_records as pr
from reports.views.base import Headline, Section, View, panel_blocks

__all__ = ["PatchingView", "patching_panels", "HALF", "threshold_findings", "head_findings",
           "attribution_findings", "baseline_findings", "STATE_TITLE"]

HALF = 0.5
"""The share of the clean run a patch must restore (denoise) or leave (noise) for a finding to name it."""
STATE_TITLE = "Recurrent state x position: where the information is carried"
_SETS = {"residual": "residual stream before each layer", "components": "output of each component",
         "heads": "output of each head", "states": "recurrent state of each layer"}


def _model(record: dict) -> str:
    return f'<span class="model">{esc(record["model"])}</span> ({esc(record["role"])})'


def _quoted(record: dict) -> str:
    """An entry with its interval (none where the analysis swept the pairs as one batch), claiming no 'no
    effect' value: that is 0 denoising and 1 noising."""
    if record["ci_low"] is None or record["ci_high"] is None:
        return f"{data_tag(record['value'])} (no interval)"
    return f"{data_tag(record['value'])} (95% CI {span(record['ci_low'], record['ci_high'])})"


def _where(record: dict) -> str:
    return f"{label(record['site'])} at token {label(pr.axis_label(record['position'], record['token']))}"


def _groups(records: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in records:
        out.setdefault((r["model"], r["task"], r["direction"], r["site_set"]), []).append(r)
    return out


def _crosses(record: dict) -> bool:
    """Denoise: the patch restores at least HALF of the clean run; noise: it leaves at most HALF of it."""
    value = record["value"]
    return value is not None and (value >= HALF if record["direction"] == "denoise" else value <= HALF)


def threshold_findings(records: list[dict]) -> list[str]:
    """Per model, task, direction and site set: the earliest token (then the lowest layer) whose patch restores
    (denoise) or removes (noise) half of the clean run, or the strongest entry where none does."""
    out = []
    for (_, task, direction, site_set), group in _groups(records).items():
        first = group[0]
        verb = "restores" if direction == "denoise" else "leaves"
        crossing = sorted((r for r in group if _crosses(r)), key=lambda r: (r["position"], r["layer"]))
        where = f"{_model(first)}, {label(task)}, {esc(direction)}, {esc(_SETS.get(site_set, site_set))}"
        if crossing:
            r = crossing[0]
            out.append(f"{where}: the earliest patch that {verb} {'at least' if direction == 'denoise' else 'at most'}"
                       f" {data_tag(HALF)} of the clean run is {_where(r)}: {_quoted(r)}, n={esc(r['n'])} pairs.")
            continue
        scored = [r for r in group if r["value"] is not None]
        if scored:
            best = max(scored, key=lambda r: r["value"] if direction == "denoise" else -r["value"])
            out.append(f"{where}: no single patch {verb} {'half' if direction == 'denoise' else 'only half'} of "
                       f"the clean run; the strongest is {_where(best)}: {_quoted(best)}, n={esc(best['n'])} pairs.")
    return out


def head_findings(records: list[dict], top: int = 3) -> list[str]:
    """Per model, task and direction: the heads whose patch moves the metric most (which heads read it out)."""
    out = []
    for (_, task, direction, _), group in _groups(records).items():
        scored = [r for r in group if r["value"] is not None]
        if not scored:
            continue
        size = (lambda r: r["value"]) if direction == "denoise" else (lambda r: 1.0 - r["value"])
        best = {}
        for r in sorted(scored, key=lambda r: -size(r)):
            best.setdefault(r["site"], r)
        named = "; ".join(f"{_where(r)} {_quoted(r)}" for r in list(best.values())[:top])
        out.append(f"{_model(group[0])}, {label(task)}, {esc(direction)}: the heads that move the logit difference "
                   f"most are {named}.")
    return out


def attribution_findings(agreements: list[dict], missed: list[dict]) -> list[str]:
    """Per model, task, direction, site set and estimator: its Spearman with the exact entries, its top-k overlap
    and the entries it misses."""
    out = []
    for r in (a for a in agreements if a["metric"] == "spearman"):
        key = (r["model"], r["task"], r["direction"], r["site_set"], r["estimator"])
        overlap = next((a for a in agreements if a["metric"] == "top_k_overlap"
                        and (a["model"], a["task"], a["direction"], a["site_set"], a["estimator"]) == key), None)
        sentence = (f"{_model(r)}, {label(r['task'])}, {esc(r['direction'])}, {esc(r['site_set'])}: "
                    f"{label(r['estimator'])} ranks the entries with Spearman {effect(r)} over {esc(r['n'])} entries")
        moving = next((a for a in agreements if a["metric"] == "spearman_effects" and a["value"] is not None
                       and (a["model"], a["task"], a["direction"], a["site_set"], a["estimator"]) == key), None)
        if moving is not None:
            sentence += (f" ({effect(moving)} over the {esc(moving['n'])} whose exact effect is at least 1% of the "
                         f"clean - corrupted gap)")
        if overlap is not None and overlap["value"] is not None:
            sentence += f"; it finds {data_tag(overlap['value'])} of the exact top {esc(overlap['k'])}"
        gone = [m for m in missed if (m["model"], m["task"], m["direction"], m["site_set"], m["estimator"]) == key]
        if gone:
            sentence += "; it misses " + ", ".join(f"{_where(m)} ({data_tag(m['value'])})" for m in gone)
        out.append(sentence + ".")
    return out


def baseline_findings(records: list[dict]) -> list[str]:
    """Per model and task: the clean and corrupted runs' raw logit difference (the normalisation's ends)."""
    out, done = [], set()
    for r in records:
        if (r["model"], r["task"]) in done:
            continue
        done.add((r["model"], r["task"]))
        runs = {x["run"]: x for x in records if x["model"] == r["model"] and x["task"] == r["task"]}
        if "clean" in runs and "corrupted" in runs:
            out.append(f"{_model(r)}, {label(r['task'])}: logit difference {data_tag(runs['clean']['value'])} on the "
                       f"clean prompts and {data_tag(runs['corrupted']['value'])} on the corrupted ones (mean over "
                       f"{esc(r['n'])} pairs): the ends of the 0-1 scale.")
    return out


def patching_panels(results: list[dict]) -> list[tuple]:
    """(title, findings, chart, records) of every block, in page order; a block without rows draws nothing."""
    states = pr.entry_records(results, "states")
    maps = pr.entry_records(results, exclude="states")
    heads = [r for r in maps if r["site_set"] == "heads"]
    scatter, agreements = pr.scatter_records(results), pr.agreement_records(results)
    baselines = pr.baseline_records(results)
    return [
        ("Causal tracing: position x site", baseline_findings(baselines) + threshold_findings(maps)
         + head_findings(heads), pc.site_heatmaps(maps, "site"), maps),
        (STATE_TITLE, threshold_findings(states), pc.site_heatmaps(states, _SETS["states"]), states),
        ("Attribution patching against the exact sweep", attribution_findings(agreements, pr.missed_records(results)),
         pc.attribution_scatter(scatter), scatter),
    ]


def _blocks(results: list[dict]) -> list:
    return panel_blocks(patching_panels(results), results)


class PatchingView(View):
    """Causal tracing: exact patching sweeps and attribution patching's agreement with them."""

    summary = ("Clean and corrupted prompts (the needle's value or key swapped, another country) are run, and one "
               "site (the residual stream, a component, a head or a recurrent state) at one token is taken from "
               "the other run: how much of the clean answer each patch restores shows where the information "
               "lives and which heads read it out; gradient attribution is checked against the exact patches.")

    def model_blocks(self, result, entry, palette):
        return _blocks([result])

    def compare_sections(self, results, palette):
        blocks = _blocks(results)
        return [Section("Causal tracing (activation and state patching)", blocks, "pt")] if blocks else []

    def headline(self, models, palette):
        sentences = []
        for m in (m for m in models if pr.NAME in m.results):
            mine = [m.results[pr.NAME]]
            records = pr.entry_records(mine, "states") or pr.entry_records(mine, "residual")
            records = [r for r in records if r["direction"] == "denoise"]
            found = threshold_findings(records)[:1]
            title = STATE_TITLE if records and records[0]["site_set"] == "states" else "Causal tracing: position x site"
            link = f' <a href="{esc(model_href(m.slug))}#{esc(anchor(title))}">evidence</a>'
            sentences += [f[:-1] + f".{link}" for f in found]
        return Headline(sentences, None, folded_as="more models") if sentences else None

    def charts(self, result, palette):
        return [chart for _, _, chart, _ in patching_panels([result]) if chart is not None]
