"""The representation analysis (Study A exp. 7) on the report's pages: diagnostics per ablated component, how
well each predicts the drop, how alike the models' representations are, and (on a model page that also has
the component-ablation Result) each diagnostic against the effect of the same removal."""

from __future__ import annotations

from reports import charts, findings, tables
from reports.html import ChartBlock
from reports.palette import Palette
from reports.views.base import Section, View, block

__all__ = ["RepresentationView", "representation_blocks"]

_ABLATION = "component_ablation"
"""The analysis whose drops the diagnostics are drawn against on a model page."""


def _panels(representation: list[dict], palette: Palette) -> list[tuple]:
    """(title, findings, chart, records) of the charts that need only the representation Results."""
    layers = tables.layer_records(representation, "representation")
    corr, cka = tables.correlation_records(representation), tables.cka_model_records(representation)
    return [
        ("Representation diagnostics per ablated component", findings.layer_findings(layers),
         charts.layer_heatmap(representation, "representation"), layers),
        ("Which diagnostic predicts the drop", findings.correlation_findings(corr),
         charts.correlation_bars(representation, palette), corr),
        ("How alike are the models' representations", findings.cka_model_findings(cka),
         charts.cka_models_heatmap(representation), cka),
    ]


def representation_blocks(representation: list[dict], ablation: list[dict], palette: Palette) -> list[ChartBlock]:
    """Study A experiment 7 for one model or all of them; with `ablation` (the same model's component-ablation
    Result), the diagnostics against the drops too."""
    blocks = [block(title, sentences, chart, records, representation)
              for title, sentences, chart, records in _panels(representation, palette)]
    if ablation:
        points = tables.diagnostic_records(representation, ablation)
        blocks.append(block(
            "Diagnostics against drops", ["Each dot is one ablated component; each panel is titled with the "
                                          "rank correlation of the dots it draws (the analysis' own correlation, "
                                          "over every component it ranked and with its CI, is the chart above)."],
            charts.diagnostic_scatter(representation, ablation, palette), points, representation))
    return [b for b in blocks if b is not None]


class RepresentationView(View):
    """Study A exp. 7: residual-stream diagnostics per ablated component."""

    def model_blocks(self, result, entry, palette):
        ablation = [entry.results[_ABLATION]] if _ABLATION in entry.results else []
        return representation_blocks([result], ablation, palette)

    def compare_sections(self, results, palette):
        blocks = representation_blocks(results, [], palette)
        return [Section("Representation", blocks, "r")] if blocks else []

    def charts(self, result, palette):
        return [chart for _, _, chart, _ in _panels([result], palette) if chart is not None]
