"""What a view is: how one analysis shows itself on the report's three pages.

A view owns its analysis' records (from `reports.tables`-like helpers), charts (which only encode), findings
(sentences quoting rows) and the headline it contributes to the front page; the pages (`reports.pages`,
`reports.index_page`) own the layout, escaping, chart ids and the runtime, and ask each analysis' view in turn.
Every method has a default that shows nothing, so a view overrides only what it has to say.
"""

from __future__ import annotations

from dataclasses import dataclass

from reports import findings
from reports.html import ChartBlock
from reports.load import ModelResults
from reports.palette import Palette

__all__ = ["View", "Section", "Headline", "block", "panel_blocks", "spec"]


@dataclass(frozen=True)
class Section:
    """A titled group of chart blocks on the comparison page."""

    title: str
    """Plain text; the page escapes it and makes it an <h2>."""
    blocks: list[ChartBlock]
    key: str
    """Stem of the blocks' chart ids (letters, digits, dashes: "a0"); the page makes it unique."""


@dataclass(frozen=True)
class Headline:
    """What an analysis contributes to the front page."""

    sentences: list[str]
    """One-sentence findings (HTML, escaped), each with its interval and a link to its evidence; the page shows
    the first few and folds the rest."""
    chart: ChartBlock | None
    """The analysis' front-page chart, or None."""
    details: str = ""
    """HTML folded under the headline (the longer findings); '' for none."""
    folded_as: str = "more findings"
    """What the folded sentences are, after their count ('2 more models')."""


def spec(chart) -> dict | None:
    """An altair chart as its Vega-Lite dict (None stays None). Validation against the schema runs in the
    tests; skipping it here halves render time."""
    return None if chart is None else chart.to_dict(validate=False)


def block(title: str, sentences: list[str], chart, records: list[dict], results: list[dict]) -> ChartBlock | None:
    """A chart block with its findings and its condition line, or None when there is nothing to draw (no
    rows, or only missing values): no block, no orphan finding."""
    if chart is None:
        return None
    return ChartBlock(title, sentences, spec(chart), findings.condition_line(records, results))


def panel_blocks(panels, results: list[dict]) -> list[ChartBlock]:
    """The blocks of `(title, findings, chart, records)` panels, in order, leaving out those with nothing to
    draw."""
    made = [block(title, sentences, chart, records, results) for title, sentences, chart, records in panels]
    return [b for b in made if b is not None]


class View:
    """How one analysis is shown. Subclass it and override what the analysis has to show; register the
    instance under the analysis name (`reports.views.register_view`)."""

    summary: str = ""
    """One plain-text sentence for the front page's introduction: what the analysis does ('' for none)."""

    def model_blocks(self, result: dict, entry: ModelResults, palette: Palette) -> list[ChartBlock]:
        """The chart blocks of `result` on its model's page (`entry`: every Result of that model, for views
        that read a sibling analysis). The page adds the provenance and the table of every row."""
        return []

    def compare_sections(self, results: list[dict], palette: Palette) -> list[Section]:
        """The comparison page's sections: `results` holds this analysis' Result of every model that has one,
        hybrids first, then the controls."""
        return []

    def headline(self, models: list[ModelResults], palette: Palette) -> Headline | None:
        """The front page's findings and chart from this analysis (`models`: every model, in page order,
        with its page slug for evidence links), or None."""
        return None

    def charts(self, result: dict, palette: Palette | None) -> list:
        """Every altair chart of one Result, for a notebook (`reports.chart_for`)."""
        return []
