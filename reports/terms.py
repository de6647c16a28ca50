"""What the report's words mean, on every page: ablation semantics, drop, ratio, n, CI, chance, the random
controls and the loss clamp (the definitions follow mechhybrid.interventions.Ablate,
analyses/ablation/conditions.py and docs/results-schema.md).

The loss clamp and the chance levels are read from the Results (`extra.loss_clamp`, a zoo card's per-benchmark
`chance`), so the page states the values this run used; every value is escaped like any other Result string.
"""

from __future__ import annotations

from reports.html import esc
from reports.numbers import readable

__all__ = ["terms_html"]

_SEMANTICS = (
    ("zero ablation", "the component's output is replaced by zeros; the rest of its layer runs as usual."),
    ("mean ablation", "the component's output is replaced by its mean output over a reference batch."),
    ("resample ablation", "the component's output is taken from a run on another input."),
    ("skip", "the whole layer that holds the component is bypassed: its output equals its input (the mixer "
             "and its MLP are both removed). Resilience trials skip random whole layers."),
)

_MEASURES = (
    ("drop", "accuracy of the intact model minus accuracy with the components removed, in absolute accuracy on "
             "a 0-1 scale: 0.10 is ten percentage points; positive means removing them hurt."),
    ("perplexity ratio", "perplexity with the components removed divided by the intact model's perplexity "
                         "on the same text; 1x is no change."),
    ("n", "how many items (questions, documents, needles) an estimate averages over; for a rank correlation, "
          "how many components it ranks."),
    ("95% CI", "a 95% bootstrap confidence interval, resampling items (paired: the same items with and "
               "without the components). An effect whose interval holds the no-change value is 'not resolved'."),
    ("random controls", "as many components as the targeted group, drawn at random (fixed seed) from every "
                        "other component of the model, other mixers and MLPs included; each trial is one draw. "
                        "A targeted removal that hurts no more than the random ones is not specific to its kind."),
)


def _clamp(results: list[dict]) -> str:
    values = []
    for result in results:
        extra = result.get("extra") if isinstance(result.get("extra"), dict) else {}
        clamp = extra.get("loss_clamp")
        if isinstance(clamp, (int, float)) and not isinstance(clamp, bool) and clamp not in values:
            values.append(clamp)
    at = (" at " + " / ".join(f"{esc(readable(float(v)))} nats" for v in values)) if values else ""
    return (f"the per-token loss is capped{at}, so that one broken token cannot make perplexity infinite. "
            "Where a removal pushes many tokens to the cap, perplexity stops growing and the ratio understates "
            "the damage: the findings then say on what share of tokens the loss was clamped.")


def _chance(models: list[dict]) -> str:
    levels: dict[str, list[str]] = {}
    for model in models:
        card = model.get("card") if isinstance(model.get("card"), dict) else {}
        scores = card.get("scores") if isinstance(card.get("scores"), dict) else {}
        for bench, entry in scores.items():
            chance = entry.get("chance") if isinstance(entry, dict) else None
            if isinstance(chance, (int, float)) and not isinstance(chance, bool):
                shown = readable(float(chance))
                if shown not in levels.setdefault(str(bench), []):
                    levels[str(bench)].append(shown)
    known = "; ".join(f"{esc(bench)} {esc(' / '.join(values))}" for bench, values in levels.items())
    return ("the accuracy of guessing: 1 / the number of choices for multiple choice (0.25 with four), the "
            "chance of producing the exact answer tokens for exact-match tasks. A drop that takes accuracy down "
            "to chance removes the skill entirely" + (f"; chance levels here: {known}." if known else "."))


def terms_html(results: list[dict], models: list[dict]) -> str:
    """The report's terms, folded under 'What the terms mean' (loss clamp and chance levels from `results`
    and the zoo cards of `models`)."""
    entries = [(term, esc(text)) for term, text in _SEMANTICS + _MEASURES]
    entries += [("chance level", _chance(models)), ("loss clamp", _clamp(results))]
    body = "".join(f"<dt>{esc(term)}</dt><dd>{text}</dd>" for term, text in entries)
    return f'<details class="terms"><summary>What the terms mean</summary><dl>{body}</dl></details>'
