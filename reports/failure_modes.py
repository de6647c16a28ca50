"""The failure-mode comparison's facts: each hybrid next to the Transformer and the pure-SSM controls on the same
perturbations, quoted from the Results the other analyses wrote. Runs no model; the only computing is choosing
which rows to quote (and, for random layer removal, the range of the trials' own values).

Perturbations and the rows they quote:

- group ablation (component_ablation `group:<kind>`, `drop:<benchmark>`): every mixer kind zeroed at once;
- random layer removal (component_ablation `resilience:<n>:<trial>` and its `summary`, `ppl_ratio`): whole layers
  skipped at random, compared at the same share of layers;
- head sparsification (retrieval `heads:<selection>:<phase>:k95`): the smallest k of heads kept per attention
  layer whose retained retrieval's bootstrap interval reaches 0.95;
- hiding the needle (retrieval `mask_needle:prefill` / `mask_needle:generation`) against the intact baseline;
- context beyond the training length (retrieval's baseline per context length; the training length from the
  zoo card's recipe: a model without one gets no such comparison);
- the circuit (circuits' size, heads, states and faithfulness rows, where that analysis ran).

A Quote is one row (value, interval, n); sentences and the page are in `reports.failure_page`.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports.load import ModelResults
from reports.views.generic import coords_of

__all__ = ["Quote", "Perturbation", "ControlCheck", "perturbations", "control_check", "PERTURBATIONS"]

PERTURBATIONS = ("group", "random_layers", "heads", "needle_hiding", "context", "circuit")
"""The page's sections, in order."""
HEAD_SELECTION_ORDER = ("entropy", "static", "l2", "random")
"""Which head-selection rule's k is quoted first (the per-token entropy rule of Study B)."""
HEAD_PHASE_ORDER = ("all", "prefill", "generation")


@dataclass(frozen=True)
class Quote:
    """One number of one Result row, with what it means."""

    model: str
    role: str
    what: str
    """Plain text (escaped where rendered): e.g. 'zeroing attention, drop in needle accuracy'."""
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    analysis: str = ""
    condition: str = ""
    metric: str = ""
    spread: tuple[float, float] | None = None
    """The min and max over trials, where the value is a median of trials without a CI."""


@dataclass(frozen=True)
class Perturbation:
    key: str
    """One of PERTURBATIONS."""
    title: str
    quotes: tuple[Quote, ...]
    missing: tuple[str, ...] = ()
    """Per model without the rows this needs: why (no such Result, no attention heads, ...)."""


@dataclass(frozen=True)
class ControlCheck:
    """Whether the Transformer control retrieves: its intact needle accuracy against the chance level."""

    model: str | None
    retrieves: bool | None
    """None when there is no Transformer control or no retrieval number for it."""
    quote: Quote | None
    chance: float | None


def _rows(entry: ModelResults, analysis: str):
    result = entry.results.get(analysis)
    return [] if result is None else [r for r in result.get("rows", []) if isinstance(r, dict)]


def _quote(entry: ModelResults, analysis: str, row: dict, what: str, spread=None) -> Quote:
    return Quote(str(entry.model.get("name")), entry.role, what, row.get("value"), row.get("ci_low"),
                 row.get("ci_high"), row.get("n"), analysis, str(row.get("condition")), str(row.get("metric")),
                 spread)


def _first(rows, **wanted):
    for row in rows:
        if all(_matches(row, key, value) for key, value in wanted.items()):
            return row
    return None


def _matches(row: dict, key: str, value) -> bool:
    if key in ("condition", "metric"):
        return row.get(key) == value
    coords = coords_of(row)
    if value is None:
        return key not in coords
    return coords.get(key) == value


def _benchmark(entry: ModelResults) -> str | None:
    """The retrieval benchmark component_ablation reports (needle first, then recall)."""
    metrics = {r.get("metric") for r in _rows(entry, "component_ablation")}
    return next((b for b in ("needle", "recall") if f"drop:{b}" in metrics), None)


def _scorer(entry: ModelResults) -> str:
    extra = (entry.results.get("retrieval") or {}).get("extra") or {}
    return str(extra.get("scorer") or "exact")


def group_ablation(models: list[ModelResults]) -> Perturbation:
    quotes, missing = [], []
    for entry in models:
        rows, bench = _rows(entry, "component_ablation"), _benchmark(entry)
        if bench is None:
            missing.append(f"{entry.model.get('name')}: no component_ablation result with a retrieval benchmark")
            continue
        for row in rows:
            coords = coords_of(row)
            if (coords.get("removal") == "group" and row.get("metric") == f"drop:{bench}"
                    and "context_length" not in coords):
                quotes.append(_quote(entry, "component_ablation", row,
                                     f"zeroing every {coords.get('kind')} mixer: drop in {bench} accuracy"))
    return Perturbation("group", "Group ablation: every mixer of one kind zeroed", tuple(quotes), tuple(missing))


def random_layers(models: list[ModelResults]) -> Perturbation:
    quotes, missing = [], []
    for entry in models:
        rows = [r for r in _rows(entry, "component_ablation") if coords_of(r).get("removal") == "resilience"]
        if not rows:
            missing.append(f"{entry.model.get('name')}: no random layer removal (component_ablation resilience)")
            continue
        n_layers = entry.model.get("n_layers")
        for removed in sorted({coords_of(r).get("n_removed") for r in rows} - {None}):
            trials = [r["value"] for r in rows if coords_of(r).get("n_removed") == removed
                      and r.get("metric") == "ppl_ratio" and "trial" in coords_of(r) and r.get("value") is not None]
            median = next((r for r in rows if coords_of(r).get("n_removed") == removed
                           and r.get("metric") == "ppl_ratio_median"), None)
            if median is None or not trials:
                continue
            share = f" of {n_layers}" if isinstance(n_layers, int) else ""
            quotes.append(_quote(entry, "component_ablation", median,
                                 f"{removed}{share} layers skipped at random ({len(trials)} trials): median "
                                 "perplexity ratio", spread=(min(trials), max(trials))))
    return Perturbation("random_layers", "Random layer removal", tuple(quotes), tuple(missing))


def head_sparsification(models: list[ModelResults]) -> Perturbation:
    quotes, missing = [], []
    for entry in models:
        metric = f"k95:{_scorer(entry)}"
        rows = [r for r in _rows(entry, "retrieval") if r.get("metric") == metric]
        if not rows:
            why = "no attention heads" if entry.role == "ssm" else "no head-sparsification rows in its retrieval result"
            missing.append(f"{entry.model.get('name')}: {why}")
            continue
        rank = lambda r: (_index(HEAD_SELECTION_ORDER, coords_of(r).get("selection")),
                          _index(HEAD_PHASE_ORDER, coords_of(r).get("phase")))
        row = min(rows, key=rank)
        coords = coords_of(row)
        quotes.append(_quote(entry, "retrieval", row,
                             f"smallest k of heads kept per attention layer that keeps 95% of retrieval "
                             f"({coords.get('selection')} choice, phase {coords.get('phase')})"))
    return Perturbation("heads", "Head sparsification", tuple(quotes), tuple(missing))


def _index(order, value) -> int:
    return order.index(value) if value in order else len(order)


def needle_hiding(models: list[ModelResults]) -> Perturbation:
    quotes, missing = [], []
    for entry in models:
        rows, metric = _rows(entry, "retrieval"), f"acc:{_scorer(entry)}"
        base = _first(rows, condition="baseline", metric=metric, context_length=None)
        hidden = [_first(rows, condition=f"mask_needle:{phase}", metric=metric, context_length=None)
                  for phase in ("prefill", "generation")]
        if base is None or None in hidden:
            why = "no attention to hide the needle from" if entry.role == "ssm" else "no needle-hiding rows"
            missing.append(f"{entry.model.get('name')}: {why}")
            continue
        quotes.append(_quote(entry, "retrieval", base, "intact needle accuracy"))
        quotes.append(_quote(entry, "retrieval", hidden[0], "needle hidden from attention in prefill: accuracy"))
        quotes.append(_quote(entry, "retrieval", hidden[1], "needle hidden from attention while the answer is "
                                                            "generated: accuracy"))
    return Perturbation("needle_hiding", "Hiding the needle in prefill vs generation", tuple(quotes), tuple(missing))


def training_length(entry: ModelResults) -> int | None:
    """The context length the model was trained at (a zoo card's recipe), or None."""
    card = entry.model.get("card") if isinstance(entry.model.get("card"), dict) else {}
    recipe = card.get("recipe") if isinstance(card.get("recipe"), dict) else {}
    length = recipe.get("seq_len")
    return length if isinstance(length, int) else None


def context_beyond_training(models: list[ModelResults]) -> Perturbation:
    quotes, missing = [], []
    for entry in models:
        trained, metric = training_length(entry), f"acc:{_scorer(entry)}"
        per_length = {coords_of(r)["context_length"]: r for r in _rows(entry, "retrieval")
                      if r.get("condition") == "baseline" and r.get("metric") == metric
                      and set(coords_of(r)) == {"context_length"}}
        within = [n for n in per_length if trained is not None and n <= trained]
        beyond = [n for n in per_length if trained is not None and n > trained]
        if not within or not beyond:
            why = ("no training length on record" if trained is None
                   else f"no retrieval grid on both sides of its {trained}-token training length")
            missing.append(f"{entry.model.get('name')}: {why}")
            continue
        for n, side in ((max(within), "within"), (max(beyond), "beyond")):
            quotes.append(_quote(entry, "retrieval", per_length[n],
                                 f"needle accuracy at {n} tokens ({side} its {trained}-token training length)"))
    return Perturbation("context", "Context beyond the training length", tuple(quotes), tuple(missing))


CIRCUIT_METRICS = ("circuit_nodes", "circuit_heads", "circuit_states", "faithfulness")
"""The circuits analysis's summary rows (condition `circuit`) this page quotes, in this order."""


def circuit(models: list[ModelResults]) -> Perturbation:
    quotes, missing = [], []
    for entry in models:
        rows = [r for r in _rows(entry, "circuits") if r.get("condition") == "circuit"]
        if not rows:
            missing.append(f"{entry.model.get('name')}: no circuits result")
            continue
        for metric in CIRCUIT_METRICS:
            row = _first(rows, metric=metric)
            if row is not None:
                quotes.append(_quote(entry, "circuits", row, metric.replace("_", " ")))
    return Perturbation("circuit", "The retrieval circuit", tuple(quotes), tuple(missing))


def perturbations(models: list[ModelResults]) -> list[Perturbation]:
    """Every perturbation of PERTURBATIONS, in that order, over `models` (hybrids first, then the controls)."""
    return [group_ablation(models), random_layers(models), head_sparsification(models), needle_hiding(models),
            context_beyond_training(models), circuit(models)]


def control_check(models: list[ModelResults]) -> ControlCheck:
    """Whether the (first) Transformer control retrieves: its intact retrieval accuracy's interval lies above the
    chance level (retrieval's own, else 0)."""
    control = next((m for m in models if m.role == "transformer"), None)
    if control is None:
        return ControlCheck(None, None, None, None)
    name = str(control.model.get("name"))
    retrieval = control.results.get("retrieval") or {}
    chance = ((retrieval.get("extra") or {}).get("chance"))
    metric = f"acc:{_scorer(control)}"
    row = _first(_rows(control, "retrieval"), condition="baseline", metric=metric, context_length=None)
    analysis = "retrieval"
    if row is None:
        bench = _benchmark(control)
        row = _first(_rows(control, "component_ablation"), condition="baseline", metric=f"acc:{bench}")
        analysis = "component_ablation"
    if row is None or row.get("value") is None:
        return ControlCheck(name, None, None, chance)
    floor = float(chance) if isinstance(chance, (int, float)) else 0.0
    low = row.get("ci_low") if row.get("ci_low") is not None else row["value"]
    quote = _quote(control, analysis, row, "intact retrieval accuracy")
    return ControlCheck(name, low > floor, quote, floor)
