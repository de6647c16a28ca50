"""`render(out_dir)`: results directory in, static offline report out (docs/results-schema.md).

A report's pages share one copy of the chart runtime, OUT/vega.js (~0.9 MB; still offline); with
`self_contained=True` every page inlines it instead, so that any single page works on its own."""

from __future__ import annotations

from pathlib import Path

from altair.utils.schemapi import debug_mode

from mechhybrid.errors import MechHybridError
from reports import html as shell
from reports.failure_page import FAILURE_PAGE, failure_page
from reports.index_page import index_page
from reports.load import load_results
from reports.pages import compare_page, model_page
from reports.palette import family_palette
from reports.study_notes import read_study_notes

__all__ = ["render", "UnreadableResultsError"]


class UnreadableResultsError(MechHybridError):
    """Some result files could not be read; the report was rendered from the others (see `pages`)."""

    def __init__(self, problems: list[str], pages: list[Path]):
        super().__init__("\n".join(problems))
        self.problems = problems
        """One line per unreadable file, naming it."""
        self.pages = pages
        """The pages written from the readable results."""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Bytes, not text mode: the same results must give the same bytes on every platform (no newline mapping).
    path.write_bytes(text.encode("utf-8"))
    return path


def render(out_dir, screenshot: bool = False, self_contained: bool = False) -> list[Path]:
    """Write OUT/index.html, OUT/models/<slug>.html, OUT/compare.html and (with a hybrid among the models)
    OUT/failures.html from OUT/results/*/*.json (and the study's notes, OUT/study.json, where there are any),
    and the runtime they share, OUT/vega.js (not with `self_contained`: then each page inlines it).

    Returns the pages written (and their PNGs with `screenshot`). Raises UnreadableResultsError, after
    rendering everything readable, when a results file is corrupt or truncated; MechHybridError when there
    is nothing to render at all."""
    out_dir = Path(out_dir)
    loaded = load_results(out_dir)
    if not loaded.models and not loaded.problems:
        raise MechHybridError(f"{out_dir / 'results'}: no results to report (expected results/<model>/<analysis>.json)")
    palette = family_palette(m.model for m in loaded.models)
    notes = read_study_notes(out_dir)
    shared = not self_contained
    if shared:
        _write(out_dir / shell.RUNTIME_FILE, shell.vega_bundle())
    # altair checks every object it builds against the schema (its "debug mode"): half the render time. The
    # chart functions are checked against the Vega-Lite schema in tests/reports/test_charts.py instead.
    with debug_mode(False):
        pages = [_write(out_dir / "index.html", index_page(loaded, palette, shared, notes))]
        for entry in loaded.models:
            path = out_dir / "models" / f"{entry.slug}.html"
            pages.append(_write(path, model_page(entry, palette, shared, notes)))
        pages.append(_write(out_dir / "compare.html", compare_page(loaded, palette, shared)))
        if any(m.role == "hybrid" for m in loaded.models):
            pages.append(_write(out_dir / FAILURE_PAGE, failure_page(loaded)))
    if screenshot:
        from reports.screenshot import screenshot_pages

        pages += screenshot_pages(pages)
    if loaded.problems:
        raise UnreadableResultsError(loaded.problems, pages)
    return pages
