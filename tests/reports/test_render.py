"""render() and the `report` CLI handler: the pages, byte-for-byte determinism, bad input, no torch."""

from __future__ import annotations

import argparse
import json
import random
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import MODELS, ablation_rows, result, study_results, write_results

import reports
from mechhybrid.errors import MechHybridError


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mechhybrid")
    reports.add_report_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted([*root.rglob("*.html"), *root.glob("*.js")])}


def test_pages_written(rendered_study):
    names = sorted(p.relative_to(rendered_study).as_posix() for p in rendered_study.rglob("*.html"))
    assert names == ["compare.html", "failures.html", "index.html", "models/zoo_gdn-hybrid.html",
                     "models/zoo_tiny-mamba2.html", "models/zoo_tiny-qwen2.html"]
    index = (rendered_study / "index.html").read_text(encoding="utf-8")
    for needle in ("zoo:gdn-hybrid", "Transformer control", "pure-SSM control", "zoo-lang-1", "torch 2.13.0",
                   'href="results.csv"', 'href="compare.html"', 'href="failures.html"',
                   "results/zoo_gdn-hybrid/component_ablation.json"):
        assert needle in index
    assert (rendered_study / "vega.js").is_file()


def test_compare_page_orders_hybrids_before_controls(rendered_study):
    text = (rendered_study / "compare.html").read_text(encoding="utf-8")
    hybrid, transformer, ssm = (text.index(f"models/{name}.html") for name in
                                ("zoo_gdn-hybrid", "zoo_tiny-qwen2", "zoo_tiny-mamba2"))
    assert hybrid < transformer < ssm


def test_same_results_same_bytes_through_the_cli(rendered_study, tmp_path, capsys):
    before = _snapshot(rendered_study)
    copy = tmp_path / "again"
    shutil.copytree(rendered_study / "results", copy / "results")
    shutil.copy(rendered_study / "results.csv", copy / "results.csv")
    # A fresh directory, after other renders in this process (altair's global counters have moved on).
    assert _run_cli(["report", str(copy)]) == 0
    assert _snapshot(copy) == before
    assert str(copy / "index.html") in capsys.readouterr().out


def test_family_keeps_its_colour_on_every_page(rendered_study):
    import re

    colours: dict[str, set[str]] = {}
    for page in rendered_study.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for domain, range_ in re.findall(r'"domain":(\[[^\]]*\]),"range":(\[[^\]]*\])', text):
            for family, colour in zip(json.loads(domain), json.loads(range_)):
                colours.setdefault(family, set()).add(colour)
    assert set(colours) == {"qwen3_5", "qwen2", "mamba2"}
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({next(iter(c)) for c in colours.values()}) == 3


def test_corrupt_json_is_one_line_and_the_rest_renders(tmp_path, capsys):
    out = write_results(tmp_path, study_results()[2:4])  # the Transformer control's two results
    bad = out / "results" / "zoo_tiny-qwen2" / "representation.json"
    bad.write_text(bad.read_text()[:500], encoding="utf-8")  # truncated mid-write
    assert _run_cli(["report", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "corrupt or truncated JSON" in err[0]
    assert (out / "models" / "zoo_tiny-qwen2.html").is_file()  # its ablation result still renders
    assert "component_ablation" in (out / "models" / "zoo_tiny-qwen2.html").read_text(encoding="utf-8")
    assert str(bad) in (out / "index.html").read_text(encoding="utf-8")


def test_wrong_schema_is_named_too(tmp_path):
    model = MODELS["ssm"]
    out = write_results(tmp_path, [result(model, "component_ablation", ablation_rows(model, random.Random(0)))])
    (out / "results" / "x").mkdir()
    (out / "results" / "x" / "a.json").write_text(json.dumps({"schema_version": 9}), encoding="utf-8")
    with pytest.raises(reports.UnreadableResultsError) as caught:
        reports.render(out)
    assert isinstance(caught.value, MechHybridError)
    assert caught.value.problems == [f"{out}/results/x/a.json: schema_version 9, expected 2 (or 1, upgraded on "
                                     "read); skipped, the other results are rendered"]
    assert out / "compare.html" in caught.value.pages


def test_nothing_to_render_is_a_user_error(tmp_path, capsys):
    assert _run_cli(["report", str(tmp_path)]) == 2
    assert "no results to report" in capsys.readouterr().err


def test_renders_with_torch_blocked_and_same_bytes_in_another_process(tmp_path, monkeypatch):
    """A fresh interpreter, torch blocked, another hash seed: the same pages as this process renders."""
    import os

    import reports.html

    write_results(tmp_path / "out", study_results()[4:6])  # the pure-SSM control's two results
    shutil.copytree(tmp_path / "out", tmp_path / "here")
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers", "nnsight"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import reports
        import reports.html
        # The vega runtime is JavaScript from vl-convert (no torch either way); bundling it costs ~8 s that
        # the other tests already spend, so a stand-in keeps this test fast.
        reports.html.vega_bundle = lambda: "/* vega runtime */"
        reports.render({str(tmp_path / "out")!r})
        leaked = [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "nnsight")]
        assert not leaked, leaked
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=Path(reports.__file__).parents[1], env=dict(os.environ, PYTHONHASHSEED="4242"))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    monkeypatch.setattr(reports.html, "vega_bundle", lambda: "/* vega runtime */")
    reports.render(tmp_path / "here")
    assert _snapshot(tmp_path / "out") == _snapshot(tmp_path / "here")
    assert len(_snapshot(tmp_path / "out")) == 4  # three pages and the runtime they share
    assert (tmp_path / "out" / "vega.js").read_text() == "/* vega runtime */"


def test_screenshot_flag_reaches_render(tmp_path, monkeypatch):
    import reports.screenshot

    model = MODELS["transformer"]
    out = write_results(tmp_path, [result(model, "component_ablation", ablation_rows(model, random.Random(0)))])
    taken = []
    monkeypatch.setattr(reports.screenshot, "screenshot_pages", lambda pages: taken.extend(pages) or [])
    assert _run_cli(["report", str(out), "--screenshot"]) == 0
    assert sorted(p.name for p in taken) == ["compare.html", "index.html", "zoo_tiny-qwen2.html"]


def test_screenshot_writes_pngs(rendered_study, tmp_path):
    from conftest import CHROMIUM

    from reports.screenshot import screenshot_pages

    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (CI installs it: apt-get install -y chromium)")
    page = tmp_path / "zoo_tiny-mamba2.html"  # the smallest model page (every page is tested in test_browser)
    shutil.copy(rendered_study / "models" / page.name, page)
    pngs = screenshot_pages([page])
    assert [p.name for p in pngs] == ["zoo_tiny-mamba2.png"]
    assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pngs[0].stat().st_size > 50_000  # the charts were drawn, not a blank page
    width, height = struct.unpack(">II", pngs[0].read_bytes()[16:24])  # the PNG header's IHDR
    assert width == 1280 and height > 2000  # the whole page, not one window of it


def test_checkpoints_and_half_written_files_are_not_results(tmp_path):
    """`<analysis>.partial/` holds resume checkpoints and `<analysis>.json.tmp` an atomic write in flight:
    neither is a finished Result (docs/results-schema.md)."""
    from reports.load import load_results

    model = MODELS["transformer"]
    out = write_results(tmp_path, [result(model, "component_ablation", ablation_rows(model, random.Random(0)))])
    folder = out / "results" / "zoo_tiny-qwen2"
    (folder / "representation.partial").mkdir()
    (folder / "representation.partial" / "layer_0_attention.json").write_text("{", encoding="utf-8")
    (folder / "representation.json.tmp").write_text("{", encoding="utf-8")
    loaded = load_results(out)
    assert loaded.problems == [] and list(loaded.models[0].results) == ["component_ablation"]


def odd_results() -> list[dict]:
    """Null values (a Spearman of a constant), conditions this package cannot parse, a lone summary row."""
    model = MODELS["hybrid"]
    rows = ablation_rows(model, random.Random(0))
    for row in rows[:40]:
        row["value"], row["ci_low"], row["ci_high"] = None, None, None
    odd = [dict(rows[-1], condition=c) for c in ("layer:x:attention", "context:abc:baseline", "third:top:ssm",
                                                  "random:attention:one", "resilience:2:summary", "group:")]
    return [result(model, "component_ablation", rows + odd)]


def test_missing_numbers_and_odd_conditions_do_not_break_a_page(tmp_path):
    out = write_results(tmp_path, odd_results())
    pages = reports.render(out)
    assert len(pages) == 4  # index, the model, compare, failures (a hybrid alone: its controls are missing)
    assert "There is no Transformer control" in (out / "failures.html").read_text(encoding="utf-8")
    text = (out / "models" / "zoo_gdn-hybrid.html").read_text(encoding="utf-8")
    assert "layer:x:attention" in text  # kept in the page's table of every row


def test_zoo_card_on_its_model_page_only(rendered_study):
    """The card's baseline scores appear exactly as the card holds them; models without a card get no section."""
    from conftest import CARD

    hybrid = (rendered_study / "models" / "zoo_gdn-hybrid.html").read_text(encoding="utf-8")
    assert "<h2>Model card</h2>" in hybrid and '<data value="7.912345678901234">7.91</data>' in hybrid
    assert '256 tokens: <data value="0.975">0.975</data>' in hybrid and '"loss_exact":"2.512345"' in hybrid
    assert f"{CARD['tokens_trained']:,} tokens" in hybrid
    control = (rendered_study / "models" / "zoo_tiny-qwen2.html").read_text(encoding="utf-8")
    assert "Model card" not in control


def test_steps_to_retrieval_on_the_comparison_page(rendered_study):
    """Every carded model's probe on one chart, labelled with its name, and its crossing steps as text (the
    steps the card holds: the report computes none)."""
    compare = (rendered_study / "compare.html").read_text(encoding="utf-8")
    assert "<h2>Steps to retrieval</h2>" in compare and 'id="chart-probe"' in compare
    section = compare[compare.index("<h2>Steps to retrieval</h2>"):]
    assert ('<span class="model">zoo:gdn-hybrid</span>: reached 0.5 at step <data value="500">500</data>, '
            'reached 0.9 at step <data value="750">750</data> (of <data value="5000">5,000</data> steps trained)'
            ) in section
    assert '<span class="model">zoo/tiny-mamba2</span>: reached 0.5 at step <data value="500">500</data>, ' \
           "never reached 0.9" in section
    assert "tiny-qwen2" not in section.split("</ul>")[0]  # no card, no line
    hybrid = (rendered_study / "models" / "zoo_gdn-hybrid.html").read_text(encoding="utf-8")
    assert 'id="chart-card-probe"' in hybrid and "at step 1,000: plateau" in hybrid
    assert "stop once the needle probe" not in hybrid  # the fixture's recipe has no stopping rule
    assert "a fixed budget of 5,000 steps" in hybrid and "warm-up" not in hybrid  # recipe 4 had none


def test_card_states_the_warm_up_and_the_whole_stopping_rule():
    """Recipe 7's warm-up and rule as the card records them; a malformed mix is left out, never fatal."""
    from reports.cards import card_html

    recipe = {"version": 7, "seed": 0, "steps": 8000, "induction_warmup_steps": 600, "warmup_mix": [["copy", 1.0]],
              "stop_patience_steps": 2000, "min_steps": 3000, "stop_after_probe": 0.5}
    card = {"description": "d", "recipe": recipe, "stop": {"step": 3000, "reason": "plateau"}}
    html = card_html({"name": "zoo:x", "card": card})
    assert "the first 600 steps draw copy documents only and weigh only the answers" in html
    assert ("stop once the needle probe has not improved by more than its standard error in 2,000 steps, once it "
            "has reached 0.5, after at least 3,000 and at most 8,000 steps") in html
    assert "at step 3,000: plateau" in html
    html = card_html({"name": "zoo:x", "card": dict(card, recipe=dict(recipe, warmup_mix=None))})
    assert "the first 600 steps draw the whole mix and weigh only the answers" in html
    html = card_html({"name": "zoo:x", "card": dict(card, recipe=dict(recipe, warmup_mix="<b>copy</b>"))})
    assert "the first 600 steps weigh only the answers" in html and "<b>" not in html


def _pages(root: Path) -> list[Path]:
    return [root / "index.html", root / "compare.html", *sorted((root / "models").glob("*.html"))]


def test_numbers_in_cards_and_headers_read_as_people_write_them(rendered_study):
    hybrid = (rendered_study / "models" / "zoo_gdn-hybrid.html").read_text(encoding="utf-8")
    for needle in ("812,345 parameters", "5,000 steps, 8,071,234 tokens", "<td>12.45</td>",
                   "perplexity below bigram: yes; needle bar: yes", "2,100 s wall, 2,012 s CPU",
                   '<td><data value="160">160</data></td>'):
        assert needle in hybrid, needle
    for raw in ("12.445655737991387", "True", "812345 parameters"):
        assert raw not in hybrid.split("<script")[0], raw  # exact values live in <data value> and the JSON only
    index = (rendered_study / "index.html").read_text(encoding="utf-8")
    assert "<td>812,345</td>" in index and "<td>701,000</td>" in index


def test_every_page_says_what_the_terms_mean(rendered_study):
    for page in _pages(rendered_study):
        text = page.read_text(encoding="utf-8")
        terms = text[text.index('<details class="terms"'):]
        terms = terms[:terms.index("</details>")]
        for needle in ("zero ablation", "skip", "0-1 scale", "<dt>n</dt>", "chance level", "drawn at random",
                       "every other component", "loss clamp", "capped at 20.00 nats", "95% CI"):
            assert needle in terms, (page.name, needle)
    hybrid = (rendered_study / "models" / "zoo_gdn-hybrid.html").read_text(encoding="utf-8")
    assert "chance levels here: needle 0.0100" in hybrid  # from the zoo card's benchmark scores


def test_headings_never_skip_a_level(rendered_study):
    import re

    for page in _pages(rendered_study):
        levels = [int(n) for n in re.findall(r"<h([1-6])[ >]", page.read_text(encoding="utf-8"))]
        assert levels[0] == 1 and levels.count(1) == 1, page.name
        assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), (page.name, levels)


def test_front_page_reads_at_a_glance(rendered_study):
    """One headline chart, one sentence per model (3 to 5 before the fold) with its interval and a link to
    the evidence, and the long findings folded away."""
    import re

    index = (rendered_study / "index.html").read_text(encoding="utf-8")
    assert index.count('class="vega-spec"') == 1 and 'id="chart-headline"' in index
    headline = index[index.index('<ul class="findings headline">'):]
    headline = headline[:headline.index("</ul>")]
    sentences = re.findall(r'<li class="finding">(.*?)</li>', headline)
    assert len(sentences) == 3
    for sentence, model in zip(sentences, ("zoo:gdn-hybrid", "zoo:tiny-qwen2", "zoo/tiny-mamba2")):
        assert f'<span class="model">{model}</span>' in sentence and "95% CI" in sentence
        assert re.search(r'<a href="models/[^"#]+\.html#perplexity-under-group-ablation-zero-ablation">evidence</a>',
                         sentence)
        assert len(re.sub(r"<[^>]+>", "", sentence).split()) < 60
    folded = index[index.index("<details><summary>Every group-ablation finding"):]
    assert folded.index("</details>") > folded.index('class="finding"')  # the long lists sit inside the fold
    assert index.index("<h2>Headline</h2>") < index.index("chart-headline") < index.index("<h2>What was run</h2>")


def test_self_contained_flag_through_the_cli(rendered_study, tmp_path):
    shutil.copytree(rendered_study / "results", tmp_path / "results")
    assert _run_cli(["report", str(tmp_path), "--self-contained"]) == 0
    assert not (tmp_path / "vega.js").exists()
    sizes = {p.name: p.stat().st_size for p in _pages(tmp_path)}
    assert all(size > 800_000 for size in sizes.values()), sizes  # each page carries the runtime
