"""The study definition (analyses/studies.py) through the CLI: --analyses, the profiles and their measured times
in --help, an analysis skipped with a note where it does not apply, and refused (exit 2) when asked for there.

A toy analysis joins the study at test time by one Step, as a new analysis would: nothing else is edited."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from analyses import studies
from analyses.ablation import ComponentAblationConfig
from analyses.ablation.conditions import not_ablatable
from analyses.cli import main
from analyses.common import config_dict, library_versions, model_info
from analyses.configs import build_config
from analyses.registry import analysis_names
from analyses.representation import RepresentationConfig
from analyses.schema import Result, Row, result_path
from analyses.spec import Analysis
from analyses.study import STUDY_NOTES, read_study_notes
from tests.analyses.conftest import word_tokenizer
from tests.analyses.test_cli import _study_config
from tests.conftest import build_tiny


@dataclass
class ToyConfig:
    scale: float = 1.0
    """Factor on the one number the toy analysis reports."""


def _toy_run(hm, config, *, checkpoints=None, progress=None):
    n_ssm = len(hm.components.by_kind("ssm"))
    return Result(analysis="ssm_count", model=model_info(hm), config=config_dict(config), method="none", data=[],
                  seed=0, versions=library_versions(), rows=[Row("baseline", "none", "ssm_layers",
                                                                 config.scale * n_ssm, n=1)])


def _needs_ssm(hm, config) -> str | None:
    return None if "ssm" in hm.components.kinds() else "it has no ssm layer"


TOY = Analysis("ssm_count", ToyConfig, _toy_run, lambda hm, config: 1, "SSM layers, scaled",
               applies_to=_needs_ssm)


@pytest.fixture
def toy_study(monkeypatch):
    step = studies.Step(TOY, zoo_seconds=7.0, full={"scale": 2.0}, protocol="twice the count")
    monkeypatch.setattr(studies, "STUDY", studies.STUDY + (step,))
    return step


@pytest.fixture(scope="module")
def mamba_dir(tmp_path_factory):
    """A tiny Mamba-2 checkpoint (4 ssm layers) with the word-level tokenizer."""
    path = tmp_path_factory.mktemp("mamba") / "tiny-mamba2"
    model = build_tiny("mamba2")
    assert model.config.num_hidden_layers == 4
    model.save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return str(path)


def _errors(capsys) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("mechhybrid: error:")]


def test_the_study_definition_is_the_one_list_and_fits_its_budget():
    assert analysis_names() == [s.name for s in studies.STUDY] == [
        "component_ablation", "representation", "retrieval", "patching", "memory_lens", "gather_aggregate", "circuits"]
    for step in studies.STUDY:
        for profile in studies.PROFILES:  # every profile builds a valid Config
            build_config(step.analysis.config_cls, step.options(profile))
    full = {s.name: build_config(s.analysis.config_cls, s.options("full")) for s in studies.STUDY}
    assert full["component_ablation"].limit == 2000 and full["component_ablation"].seed == 42
    assert full["component_ablation"].context_lengths == (128, 256, 512, 1024)
    assert full["representation"].diag_length == 2048
    assert len(full["retrieval"].lengths) == len(full["retrieval"].depths) == 10  # Study B's 10 x 10 grid
    assert full["retrieval"].max_new_tokens == 40 and full["retrieval"].scorer == "substring"
    # The quick profile is the Config defaults, so a quick study writes what `run` with defaults writes.
    assert all(s.options("quick") == {} for s in studies.STUDY)
    # The measured zoo times of every step, shared over the cores, stay within the quick study's budget.
    total = sum(s.zoo_seconds for s in studies.STUDY)
    assert studies.quick_wall_s() == total / studies.ZOO_CORES <= studies.QUICK_BUDGET_S == 600.0
    with pytest.raises(Exception, match="unknown profile 'huge'"):
        studies.STUDY[0].options("huge")


def test_help_shows_the_profiles_and_each_analysis_measured_time(toy_study, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["study", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "quick (default)" in out and "full: the published protocols" in out and "budget 600 s" in out
    for step in studies.STUDY:  # the toy analysis too: help is read from the study definition
        assert f"{step.name}: the Config defaults; {step.zoo_seconds:.0f} s summed over the zoo's models" in out
        assert step.analysis.summary in out
    assert "ssm_count: scale = 2.0. twice the count." in " ".join(out.split())
    assert f"about {studies.quick_wall_s():.0f} s for the whole zoo" in out


def test_analyses_selects_what_the_study_runs(setup, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["study", "--models", setup["model"], "--config", str(_study_config(setup, tmp_path)), "--out", str(out),
            "--no-progress", "--jobs", "1"]
    assert main(argv + ["--analyses", "component_ablation"]) == 0, capsys.readouterr().err
    assert result_path(out, setup["model"], "component_ablation").is_file()
    assert not result_path(out, setup["model"], "representation").exists()
    notes = read_study_notes(out)
    assert [a["name"] for a in notes["analyses"]] == ["component_ablation"] and notes["skipped"] == []
    assert notes["analyses"][0]["profile"] == "quick"
    csv_rows = (out / "results.csv").read_text().splitlines()[1:]
    assert csv_rows and all(",component_ablation," in r for r in csv_rows)

    # A second study into the same folder adds its analysis to the notes (in the study's order).
    assert main(argv + ["--analyses", " representation "]) == 0, capsys.readouterr().err
    assert result_path(out, setup["model"], "representation").is_file()
    assert [a["name"] for a in read_study_notes(out)["analyses"]] == ["component_ablation", "representation"]

    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for bad in ("component_ablation,everything", ""):
        assert main(argv + ["--analyses", bad]) == 2
        errors = _errors(capsys)
        assert len(errors) == 1 and "unknown analysis" in errors[0] and "component_ablation" in errors[0], errors
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_an_analysis_is_skipped_with_a_note_where_it_does_not_apply(toy_study, setup, mamba_dir, tmp_path,
                                                                     capsys):
    out = tmp_path / "o"
    argv = ["study", "--analyses", "ssm_count", "--out", str(out), "--no-progress", "--jobs", "1", "--models"]
    assert main(argv + [setup["model"], mamba_dir]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert f"ssm_count skipped on {setup['model']}: it has no ssm layer" in err
    assert not result_path(out, setup["model"], "ssm_count").exists()
    res = json.loads(result_path(out, mamba_dir, "ssm_count").read_text())
    assert res["rows"][0]["value"] == 4.0  # every layer of the tiny Mamba-2 is an ssm layer
    notes = json.loads((out / STUDY_NOTES).read_text())
    assert notes["skipped"] == [{"analysis": "ssm_count", "model": setup["model"], "reason": "it has no ssm layer"}]
    assert notes["analyses"] == [{"name": "ssm_count", "profile": "quick", "summary": "SSM layers, scaled",
                                  "zoo_seconds": 7.0}]

    # The full profile's options apply, the config file's table overrides them; a study of the other model
    # alone keeps the first model's note.
    assert main(argv + [mamba_dir, "--profile", "full"]) == 0, capsys.readouterr().err
    assert json.loads(result_path(out, mamba_dir, "ssm_count").read_text())["rows"][0]["value"] == 8.0
    config = tmp_path / "c.toml"
    config.write_text("[ssm_count]\nscale = 3.0\n")
    assert main(argv + [mamba_dir, "--profile", "full", "--config", str(config)]) == 0
    assert json.loads(result_path(out, mamba_dir, "ssm_count").read_text())["rows"][0]["value"] == 12.0
    notes = read_study_notes(out)
    assert notes["analyses"][0]["profile"] == "full" and [s["model"] for s in notes["skipped"]] == [setup["model"]]


@pytest.mark.parametrize("progress", [False, True])
def test_an_analysis_asked_for_where_it_does_not_apply_is_a_bad_input(toy_study, setup, tmp_path, capsys,
                                                                     progress):
    out = tmp_path / "fresh"
    argv = ["run", "ssm_count", "--model", setup["model"], "--out", str(out)]
    assert main(argv + ([] if progress else ["--no-progress"])) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "ssm_count does not apply to model" in errors[0], errors
    assert errors[0].endswith(": it has no ssm layer") and not out.exists()


def test_the_study_a_analyses_apply_where_their_kinds_are(setup, tmp_path, capsys, hm_qwen2, hm_hybrid):
    """component_ablation and representation apply to a model that has a component of the kinds they ablate."""
    for cls in (ComponentAblationConfig, RepresentationConfig):
        assert not_ablatable(hm_qwen2, cls()) is None and not_ablatable(hm_hybrid, cls()) is None
        reason = not_ablatable(hm_qwen2, cls(kinds=("linear_attention",)))
        assert reason == "it has no linear_attention component (it has attention, mlp)", reason
        assert not_ablatable(hm_hybrid, cls(kinds=("linear_attention",))) is None
    config = tmp_path / "la.toml"
    config.write_text(f"kinds = ['linear_attention']\n[data]\nwikitext = '{setup['root'] / 'data' / 'wikitext'}'\n")
    out = tmp_path / "o"
    assert main(["run", "component_ablation", "--model", setup["model"], "--config", str(config), "--out",
                 str(out), "--no-progress"]) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "component_ablation does not apply to model" in errors[0] and not out.exists()
    # In a study, the same model is skipped with the note instead, and the study goes on.
    assert main(["study", "--models", setup["model"], "--config", str(config), "--out", str(out),
                 "--no-progress"]) == 0
    skipped = {s["analysis"]: s["reason"] for s in read_study_notes(out)["skipped"]}
    assert skipped["component_ablation"] == skipped["representation"] == reason
    assert skipped["retrieval"].startswith("it does not speak the zoo's language")
    # every step skips this Transformer (no zoo language, no recurrent memory), each with its reason
    assert sorted(skipped) == sorted(analysis_names()) and all(skipped.values())
    assert (out / "results.csv").read_text().count("\n") == 1  # the header: nothing ran
