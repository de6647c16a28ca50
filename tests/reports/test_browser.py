"""Every page, in a real headless Chromium with the network off: no console error or warning, no request
other than the page's own file, and one drawn SVG per chart spec (issue 7, "How it must be shown")."""

from __future__ import annotations

from pathlib import Path

import csv

from conftest import PROBE, problems_in, tooltip_fields


def _pages(root: Path) -> list[Path]:
    return [root / "index.html", root / "compare.html", *sorted((root / "models").glob("*.html"))]


def _check_page(browser, page: Path) -> dict:
    seen = browser.visit(page)
    state = seen["state"]
    assert state and state["ready"], f"{page.name}: charts never finished ({state and state['done']})"
    assert problems_in(seen["events"]) == [], page.name
    for chart in state["charts"]:
        assert chart["rendered"] == "true" and chart["svg"] >= 1, f"{page.name}: {chart}"
    assert state["done"] in (None, str(state["specs"]))
    return state


def test_study_pages_render_offline_without_errors(browser, rendered_study):
    pages = _pages(rendered_study)
    assert len(pages) == 5
    specs = [_check_page(browser, page)["specs"] for page in pages]
    assert specs[0] == 0  # the index has no charts (and no runtime)
    assert all(n >= 6 for n in specs[1:]), specs  # compare + each model page: Study A exp. 1-7


def test_injection_probes_render_as_text(browser, probe_dir):
    states = {page.name: _check_page(browser, page) for page in _pages(probe_dir)}
    for name, state in states.items():
        assert state["imgs"] == 0, name  # '<img src=x onerror=...>' stayed text
    assert PROBE in states["index.html"]["text"]  # shown to the reader literally


def _csv_rows(root: Path) -> dict[tuple, dict]:
    with open(root / "results.csv", newline="", encoding="utf-8") as handle:
        return {(r["model"], r["condition"], r["method"], r["metric"]): r for r in csv.DictReader(handle)}


def test_hovered_tooltips_show_the_csv_numbers(browser, rendered_study):
    rows = _csv_rows(rendered_study)
    shown = browser.tooltips(rendered_study / "models" / "zoo_gdn-hybrid.html")
    assert len(shown) >= 10
    from conftest import CARD

    for tip in shown:
        assert tip["text"], f"no tooltip on {tip['chart']}"
        fields = tooltip_fields(tip["text"])
        if tip["chart"] == "chart-card":  # the zoo card's training loss: numbers of the card, not of the CSV
            assert [int(fields["step"]), fields["loss"]] in [[step, repr(loss)] for step, loss in CARD["loss_curve"]]
            continue
        row = rows[(fields["model"], fields["condition"], fields["method"], fields["metric"])]
        assert fields["value"] == (row["value"] or "n/a"), tip["chart"]
        assert fields["95% CI low"] == (row["ci_low"] or "n/a") and fields["95% CI high"] == (row["ci_high"] or "n/a")
        assert fields["n"] == row["n"] and fields["seed"] == row["seed"]


def test_probe_in_a_tooltip_stays_text(browser, probe_dir):
    page = next(p for p in (probe_dir / "models").glob("*.html") if "script" in p.name)
    shown = [tip for tip in browser.tooltips(page) if tip["text"]]
    assert shown
    for tip in shown:
        assert not {"img", "script"} & set(tip["tags"]), tip["chart"]
        if tip["chart"] != "chart-card":  # the card's loss chart shows steps and losses, not the model
            assert tooltip_fields(tip["text"])["model"] == f"zoo:{PROBE}"


def test_missing_numbers_draw_no_empty_chart(browser, tmp_path):
    import reports
    from conftest import write_results
    from test_render import odd_results

    out = write_results(tmp_path, odd_results())
    reports.render(out)
    _check_page(browser, out / "models" / "zoo_gdn-hybrid.html")
