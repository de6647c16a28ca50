"""The retrieval analysis (Study B: needle grids, prefill vs generation, head sparsification, needle exposure,
retrieval heads) on the report's pages.

Model page and comparison page: the needle grids (context length x depth) of every condition side by side,
the phase x intervention table, the k-curve of head sparsification with its k95, the retrieval-head map and
what ablating those heads does; each block with one-sentence findings that quote its rows (every number a
`<data>` tag holding the row's exact value in results.csv), the chance level and what 'generation' covered.
Front page: one sentence per model, its baseline and what zeroing attention (or its first mixer kind) in
prefill only and in generation only does. Records: `retrieval_records`; charts: `retrieval_charts`.
"""

from __future__ import annotations

from reports.findings import effect, label, span
from reports.html import anchor, esc, model_href
from reports.numbers import data_tag
from reports.palette import Palette, family_palette
from reports.views import retrieval_charts as rc
from reports.views import retrieval_records as rr
from reports.views.base import Headline, Section, View, panel_blocks

__all__ = ["RetrievalView", "retrieval_panels", "baseline_findings", "phase_findings", "k95_findings",
           "head_findings", "ablation_findings", "headline_findings", "GRID_TITLE", "PHASE_TITLE"]

GRID_TITLE = "Needle accuracy by context length and depth"
PHASE_TITLE = "Needle retrieval: phase x intervention"
_PHASE_WORDS = {"prefill": "during prefill only", "generation": "during generation only",
                "decode": "during decode steps only", "all": "throughout (prefill and generation)",
                rr.NO_PHASE: ""}
_READINGS = {
    "answer": "'generation' covers the answer's tokens: the last prompt position (which predicts the first "
              "answer token) and every decode step",
    "decode": "'generation' covers decode steps only: the first answer token, predicted by the last prompt "
              "position, is never touched",
}


def _model(record: dict) -> str:
    return f'<span class="model">{esc(record["model"])}</span> ({esc(record["role"])})'


def _quoted(record: dict) -> str:
    """An accuracy, retention or score with its CI and n, claiming no 'no effect' value (they have none)."""
    ci = (f"95% CI {span(record['ci_low'], record['ci_high'])}, " if record["ci_low"] is not None
          and record["ci_high"] is not None else "no CI, ")
    return f"{data_tag(record['value'])} ({ci}n={esc(record['n'])})"


def _drop(record: dict) -> str:
    return f"{effect(record)} over {esc(record['n'])} prompts"


def _when(column: str) -> str:
    """' during prefill only' for a phase column; '' for an intervention that has no phase."""
    words = _PHASE_WORDS.get(column, f"in phase {esc(column)}")
    return f" {words}" if words else ""


def _phases(records: list[dict]) -> str:
    """'by D1 (95% CI ...) during prefill only; by D2 (...) during generation only (n=40 each)': the drops of
    one intervention in each phase it ran in."""
    parts = [f"by {effect(r)}{_when(r['column'])}" for r in records]
    counts = list(dict.fromkeys(r["n"] for r in records))
    if len(counts) == 1:
        return "; ".join(parts) + f" (n={esc(counts[0])}{' each' if len(parts) > 1 else ''})"
    return "; ".join(f"{part} (n={esc(r['n'])})" for part, r in zip(parts, records))


def _count(value) -> str:
    """A count held as a float row value (k95 = 3.0) written as a count, its exact value kept."""
    shown = str(int(value)) if float(value).is_integer() else repr(value)
    return f'<data value="{esc(repr(value))}">{esc(shown)}</data>'


def _chance_words(chance) -> str:
    return f"chance is {data_tag(chance)}" if chance is not None else "this scorer has no chance level"


def baseline_findings(baselines: list[dict], lengths: list[dict]) -> list[str]:
    """Per model: accuracy with nothing ablated, the chance level, the shortest and longest context, and the
    just-read-twice baseline where there is one."""
    out = []
    for record in baselines:
        if record["jrt"]:
            continue
        sentence = (f"{_model(record)}: needle accuracy ({esc(record['scorer'])}) with nothing ablated is "
                    f"{_quoted(record)}; {_chance_words(record['chance'])}")
        mine = sorted((r for r in lengths if r["model"] == record["model"] and r["value"] is not None),
                      key=lambda r: r["context_length"])
        if len(mine) > 1:
            sentence += (f"; {data_tag(mine[0]['value'])} at {label(str(mine[0]['context_length']) + ' tokens')}, "
                         f"{data_tag(mine[-1]['value'])} at {label(str(mine[-1]['context_length']) + ' tokens')}")
        jrt = [r for r in baselines if r["jrt"] and r["model"] == record["model"]]
        if jrt:
            sentence += f"; on just-read-twice prompts {_quoted(jrt[0])}"
        out.append(sentence + ".")
    return out


def phase_findings(records: list[dict], readings: dict[str, str | None]) -> list[str]:
    """Per model and intervention, the drop in each phase it ran in (`readings`: model -> what 'generation'
    covered, stated where a generation phase is quoted)."""
    out, told = [], set()
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        groups.setdefault((record["model"], record["action"]), []).append(record)
    for (model, action), group in groups.items():
        first = group[0]
        sentence = (f"{_model(first)}: {esc(action)} drops needle accuracy ({esc(first['scorer'])}) "
                    + _phases(group))
        reading = readings.get(model)
        if model not in told and any(r["column"] == "generation" for r in group) and reading is not None:
            sentence += f" ({esc(_READINGS.get(reading, 'generation reading: ' + reading))})"
            told.add(model)  # once per model: the reading is the Result's, the same for each intervention
        out.append(sentence + ".")
    return out


def _within_chance(baseline: dict | None) -> bool:
    """Whether the baseline's interval reaches down to chance (then no k95 means anything)."""
    if baseline is None or baseline["chance"] is None or baseline["value"] is None:
        return False
    low = baseline["ci_low"] if baseline["ci_low"] is not None else baseline["value"]
    return low <= baseline["chance"]


def k95_findings(k95: list[dict], curve: list[dict], baselines: list[dict]) -> list[str]:
    """Per (model, selection, phase): the smallest k whose retained retrieval reaches 0.95 with the retention
    there (and the other retentions at that k), or why there is none; the random control's from its trials
    pooled per k."""
    out = []
    for record in k95:
        chosen = ("at random (trials pooled per k)" if record["selection"] == rr.RANDOM
                  else f"by {label(record['selection'])}")
        where = f"{_model(record)}, heads kept {chosen} in {label(record['phase'])}"
        mine = [r for r in curve if r["panel"] == record["panel"] and r["value"] is not None]
        own = [r for r in mine if r["metric"] == f"retention:{record['scorer']}"]
        if record["value"] is not None:
            at = [r for r in own if r["k"] == record["value"]]
            fraction = (f" ({data_tag(at[0]['heads_fraction'])} of the heads)" if at else "")
            sentence = (f"{where}: retained retrieval reaches {rc.RETENTION_LINE} at k = {_count(record['value'])}"
                        f"{fraction}")
            if at:
                sentence += f", where retention is {_quoted(at[0])}"
            others = [r for r in mine if r["k"] == record["value"] and r["metric"].startswith("retention:")
                      and r["metric"] != own[0]["metric"]] if own else []
            sentence += "".join(f"; {esc(r['series'])} {_quoted(r)}" for r in others)
            out.append(sentence + ".")
            continue
        base = next((b for b in baselines if b["model"] == record["model"] and not b["jrt"]), None)
        if _within_chance(base):
            out.append(f"{where}: no k95 is drawn, because the baseline accuracy {_quoted(base)} is within its "
                       f"interval of chance ({data_tag(base['chance'])}).")
        elif own:
            best = sorted(own, key=lambda r: (-r["value"], r["k"]))[0]
            out.append(f"{where}: no k keeps retained retrieval at {rc.RETENTION_LINE}; the most retained is "
                       f"{_quoted(best)} at k = {_count(best['k'])}.")
    return out


def head_findings(records: list[dict]) -> list[str]:
    """Per model: how many heads score above the threshold, and the highest-scoring head."""
    out = []
    for model in dict.fromkeys(r["model"] for r in records):
        mine = [r for r in records if r["model"] == model and r["value"] is not None]
        if not mine:
            continue
        top = sorted(mine, key=lambda r: (-r["value"], r["layer"], r["head"]))[0]
        above = sum(r["above"] for r in mine)
        head = f"layer {top['layer']}, head {top['head']}"
        out.append(f"{_model(top)}: {above} of {len(mine)} attention heads score above {data_tag(top['threshold'])} "
                   f"(retrieval heads); the highest is {label(head)} at {_quoted(top)}.")
    return out


def ablation_findings(records: list[dict]) -> list[str]:
    """Per model: the drop with the top-scored retrieval heads zeroed, and the range over as many random heads."""
    out = []
    for model in dict.fromkeys(r["model"] for r in records):
        top = [r for r in records if r["model"] == model and r["removal"] == "top"]
        if not top:
            continue
        randoms = sorted((r for r in records if r["model"] == model and r["removal"] == "random"
                          and r["value"] is not None), key=lambda r: r["value"])
        count = "" if top[0]["n_heads"] is None else f"{esc(top[0]['n_heads'])} "
        sentence = (f"{_model(top[0])}: zeroing the {count}top-scored retrieval heads drops needle accuracy "
                    f"({esc(top[0]['scorer'])}) by {_drop(top[0])}")
        if randoms:
            sentence += (f"; zeroing as many random heads drops it by {span(randoms[0]['value'], randoms[-1]['value'])}"
                         f" across {len(randoms)} draw{'s' if len(randoms) != 1 else ''}")
        out.append(sentence + ".")
    return out


def _readings(results: list[dict]) -> dict[str, str | None]:
    return {str(r["model"].get("name")): rr.reading_of(r) for r in results}


def retrieval_panels(results: list[dict], palette: Palette) -> list[tuple]:
    """(title, findings, chart, records) of every block, in page order; a block without rows draws nothing."""
    grid, phases = rr.grid_records(results), rr.phase_records(results)
    curve, bands = rr.curve_records(results), rr.band_records(results)
    k95 = rr.k95_records(results, curve)
    heads, ablated = rr.head_records(results), rr.ablation_records(results)
    baselines = rr.baseline_records(results)
    return [
        (GRID_TITLE, baseline_findings(baselines, rr.length_records(results)), rc.grid_heatmaps(grid), grid),
        (PHASE_TITLE, phase_findings(phases, _readings(results)), rc.phase_table(phases), phases),
        ("Head sparsification: accuracy and retention against heads kept", k95_findings(k95, curve, baselines),
         rc.k_curves(curve, k95, bands), curve + bands),
        ("Retrieval heads", head_findings(heads), rc.head_map(heads), heads),
        ("Zeroing the retrieval heads", ablation_findings(ablated), rc.head_ablation(ablated, palette), ablated),
    ]


def _blocks(results: list[dict], palette: Palette) -> list:
    return panel_blocks(retrieval_panels(results, palette), results)


def _headline_kind(phases: list[dict]) -> str | None:
    """The kind a front-page sentence quotes: attention where it was zeroed, else the first kind zeroed."""
    kinds = [r["kind"] for r in phases if r["kind"] is not None and not r["jrt"]]
    return "attention" if "attention" in kinds else (kinds[0] if kinds else None)


def headline_findings(results: list[dict], evidence: dict[str, str]) -> list[str]:
    """One sentence per model: its baseline accuracy (and chance), and the drop from zeroing attention (or its
    first mixer kind) in prefill only and in generation only (no drop where the baseline is within its interval
    of chance: nothing was there to remove), with a link to the evidence (`evidence`: model name -> href of its
    page's phase table)."""
    out = []
    baselines = [b for b in rr.baseline_records(results) if not b["jrt"]]
    phases = rr.phase_records(results)
    for base in baselines:
        model = base["model"]
        mine = [r for r in phases if r["model"] == model]
        kind = _headline_kind(mine)
        quoted = [r for r in mine if r["kind"] == kind and not r["jrt"] and r["column"] in ("prefill", "generation")]
        sentence = (f"{_model(base)}: needle accuracy ({esc(base['scorer'])}) {_quoted(base)}, "
                    f"{_chance_words(base['chance'])}")
        if _within_chance(base):
            sentence += ", within the baseline's interval: its ablations cannot show what retrieval needs"
        elif quoted:
            sentence += f"; {esc(quoted[0]['action'])} drops it {_phases(quoted)}"
        link = f' <a href="{esc(evidence[model])}">evidence</a>' if model in evidence else ""
        out.append(sentence + f".{link}")
    return out


class RetrievalView(View):
    """Study B: needle retrieval under ablations by phase, head sparsification, needle exposure, retrieval
    heads."""

    summary = ("A needle (a fact: on the zoo a key and its value) is hidden at several depths of contexts of "
               "several lengths, and the model must generate its answer: intact, with each kind of mixer zeroed "
               "in prefill, in generation or in both, with only k attention heads kept, with the needle hidden "
               "from attention, and with its retrieval heads zeroed.")

    def model_blocks(self, result, entry, palette):
        return _blocks([result], palette)

    def compare_sections(self, results, palette):
        blocks = _blocks(results, palette)
        return [Section("Retrieval (needle in a haystack)", blocks, "rt")] if blocks else []

    def headline(self, models, palette):
        results = [m.results[rr.NAME] for m in models if rr.NAME in m.results]
        evidence = {str(m.model.get("name")): f"{model_href(m.slug)}#{anchor(PHASE_TITLE)}"
                    for m in models if rr.NAME in m.results}
        sentences = headline_findings(results, evidence)
        return Headline(sentences, None, folded_as="more models") if sentences else None

    def charts(self, result, palette):
        palette = palette or family_palette([result["model"]])
        return [chart for _, _, chart, _ in retrieval_panels([result], palette) if chart is not None]
