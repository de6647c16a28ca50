"""Resumable runs outside the repository: bit-exact resume, the stopping rule end to end, and the run
directory's checks through the CLI (`mechhybrid zoo train ... [--resume | --fresh]`)."""

import dataclasses
import json

import pytest
import torch

from mechhybrid.cli import main
from mechhybrid.errors import MechHybridError
from mechhybrid.zoo import card as card_mod
from mechhybrid.zoo import probe as probe_mod
from mechhybrid.zoo import train as train_mod
from mechhybrid.zoo.curves import standard_error
from mechhybrid.zoo.recipes import RECIPE
from mechhybrid.zoo.train import LOG_FILE, STATE_FILE, default_run_dir, train_model

TINY = dataclasses.replace(RECIPE, batch_size=2, seq_len=130, checkpoint_every=2, eval_every=2, probe_lengths=(32,),
                           probe_needles_per_length=5, probe_recall_docs=2, stop_patience_steps=None, min_steps=0,
                           induction_warmup_steps=1)  # step 0 is warm-up (copy documents fit 130 tokens), then the mix


@pytest.mark.parametrize("name", ["transformer", "ssm-mamba2"])
def test_half_then_resume_equals_one_go_bit_for_bit(name, tmp_path):
    straight = train_model(name, tmp_path / "a", steps=4, recipe=TINY, verbose=False)
    train_model(name, tmp_path / "b", steps=2, recipe=TINY, verbose=False)
    resumed = train_model(name, tmp_path / "b", steps=4, recipe=TINY, verbose=False)
    loss_bytes = [json.dumps(json.loads((tmp_path / d / LOG_FILE).read_text())["loss"]).encode() for d in "ab"]
    assert len(straight["loss"]) == 4 and loss_bytes[0] == loss_bytes[1]
    assert [p["step"] for p in resumed["probe"]] == [2, 4] and straight["probe"] == resumed["probe"]
    assert straight["tokens"] == resumed["tokens"] and resumed["steps"] == 4 and "stop" not in resumed
    a, b = (torch.load(tmp_path / d / STATE_FILE, weights_only=False) for d in "ab")
    assert a["step"] == b["step"] == 4
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    for slot, state in a["opt"]["state"].items():  # Adam moments too: the next step would match as well
        assert all(torch.equal(v, b["opt"]["state"][slot][k]) for k, v in state.items())


def test_a_changed_recipe_does_not_resume(tmp_path):
    train_model("transformer", tmp_path, steps=1, recipe=TINY, verbose=False, probe=False)
    with pytest.raises(MechHybridError, match="other fields than this one; pass --fresh"):
        train_model("transformer", tmp_path, steps=2, recipe=dataclasses.replace(TINY, lr=1e-3), verbose=False)
    with pytest.raises(MechHybridError, match="started for 'transformer'"):
        train_model("ssm-mamba2", tmp_path, steps=2, recipe=TINY, verbose=False, probe=False)


def _scripted_probe(values):
    """A stand-in for probe.run_probe that reports `values` in turn (100 items at one length)."""
    it = iter(values)

    def fake(model, recipe):
        v = next(it)
        return {"needle": {"32": v}, "needle_se": {"32": standard_error(round(100 * v), 100)},
                "needle_n": {"32": 100}, "recall": 0.0, "recall_se": 0.0, "recall_n": 8}
    return fake


def test_the_stopping_rule_ends_the_run_and_the_card_records_it(tmp_path, monkeypatch):
    # Probes 0.1, 0.6, 0.6, 0.6: at step 4 the window (3, 4] holds no gain over 0.6 at step 2: stop.
    monkeypatch.setattr(probe_mod, "run_probe", _scripted_probe([0.1, 0.6, 0.6, 0.6, 0.6, 0.6]))
    recipe = dataclasses.replace(TINY, steps=20, eval_every=1, checkpoint_every=5, stop_patience_steps=2)
    log = train_model("transformer", tmp_path, recipe=recipe, verbose=False)
    assert log["stop"]["step"] == 4 and log["stop"]["reason"].startswith("plateau") and len(log["loss"]) == 4
    state = torch.load(tmp_path / STATE_FILE, weights_only=False)
    assert state["step"] == 4 and state["log"]["stop"] == log["stop"]  # saved at the stop, off the 5-step grid
    assert train_model("transformer", tmp_path, recipe=recipe, verbose=False)["loss"] == log["loss"]  # finished

    monkeypatch.setattr(card_mod, "_scores", lambda model, version, family: {"benchmark_version": version})
    card = card_mod.finalize("transformer", tmp_path, tmp_path / "model", recipe)
    assert card["stop"] == log["stop"] and card["steps"] == 4
    assert card["recipe"]["stop_patience_steps"] == 2 and card["recipe"]["min_steps"] == 0
    assert card["steps_to_retrieval"] == {"0.5": 2, "0.9": None}
    assert card["tokens_trained"] == log["tokens"] > 0 and card["cpu_time_s"] == round(log["cpu_s"], 1)
    assert [p["needle_mean"] for p in card["needle_probe_curve"]] == [0.1, 0.6, 0.6, 0.6]
    assert json.loads((tmp_path / "model" / "card.json").read_text()) == card


def test_the_rule_needs_the_probe(tmp_path):
    with pytest.raises(MechHybridError, match="needs the training probe"):
        train_model("transformer", tmp_path, recipe=dataclasses.replace(TINY, stop_patience_steps=2), probe=False)


def test_default_run_dir_is_in_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MECHHYBRID_CACHE", str(tmp_path / "mh"))
    assert default_run_dir("transformer") == tmp_path / "mh" / "zoo-runs" / f"transformer-r{RECIPE.version}"
    monkeypatch.delenv("MECHHYBRID_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_run_dir("hybrid-gdn") == tmp_path / "xdg" / "mechhybrid" / "zoo-runs" / f"hybrid-gdn-r{RECIPE.version}"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_run_dir("hybrid-gdn") == tmp_path / "home" / ".cache" / "mechhybrid" / "zoo-runs" / f"hybrid-gdn-r{RECIPE.version}"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mechhybrid: error: ")
    return err[0]


def test_an_existing_run_needs_resume_or_fresh(tmp_path, capsys):
    train_model("transformer", tmp_path, steps=1, recipe=TINY, verbose=False, probe=False)
    before = (tmp_path / STATE_FILE).read_bytes()
    assert main(["zoo", "train", "transformer", "--run-dir", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert f"{tmp_path} already holds a run (step 1)" in line and "--resume" in line and "--fresh" in line
    assert (tmp_path / STATE_FILE).read_bytes() == before


def test_resume_with_nothing_to_resume_is_one_line(tmp_path, capsys):
    empty = tmp_path / "nothing"
    assert main(["zoo", "train", "transformer", "--run-dir", str(empty), "--resume"]) == 2
    assert "nothing to resume in" in _one_error_line(capsys) and not empty.exists()


def test_fresh_deletes_the_old_run_before_training(tmp_path, monkeypatch, capsys):
    train_model("transformer", tmp_path, steps=1, recipe=TINY, verbose=False, probe=False)
    seen = {}

    def fake_train(name, run_dir, steps=None, verbose=True, recipe=RECIPE):
        seen["files"] = sorted(p.name for p in run_dir.iterdir())
        seen["recipe"] = recipe
        return {"loss": [1.0], "stop": None}

    monkeypatch.setattr(train_mod, "train_model", fake_train)
    monkeypatch.setattr(card_mod, "finalize", lambda *args: {"steps": 1})
    assert main(["zoo", "train", "transformer", "--run-dir", str(tmp_path), "--fresh", "--quiet"]) == 0
    assert seen["files"] == [] and seen["recipe"] is RECIPE
    assert "paused: continue with --resume" in capsys.readouterr().out


def test_cli_trains_pauses_and_resumes_in_its_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("mechhybrid.zoo.recipes.RECIPE", TINY)  # the CLI's recipe, tiny
    monkeypatch.setattr(card_mod, "_scores", lambda model, version, family: {"benchmark_version": version})
    monkeypatch.setenv("MECHHYBRID_CACHE", str(tmp_path))
    assert main(["zoo", "train", "transformer", "--steps", "2", "--quiet"]) == 0
    run = tmp_path / "zoo-runs" / f"transformer-r{TINY.version}"
    assert json.loads((run / "model" / "card.json").read_text())["stop"] is None  # paused, not stopped
    assert main(["zoo", "train", "transformer", "--resume", "--steps", "4", "--quiet"]) == 0
    log = json.loads((run / LOG_FILE).read_text())
    assert log["steps"] == 4 and len(log["loss"]) == 4 and "trained transformer: 4 steps" in capsys.readouterr().out


def test_a_run_carries_over_to_a_recipe_that_differs_only_in_when_it_stops(tmp_path):
    """A run of one recipe continues under another whose only differences decide when a run stops: the steps
    after the carry-over are the steps an uninterrupted run takes, and the stop is judged afresh."""
    old = dataclasses.replace(TINY, version=90, min_steps=1, stop_patience_steps=2, stop_after_probe=0.0)
    new = dataclasses.replace(TINY, version=91)
    straight = train_model("transformer", tmp_path / "straight", steps=4, recipe=new, verbose=False)
    train_model("transformer", tmp_path / "old", steps=2, recipe=old, verbose=False)
    line = train_mod.carry_over(tmp_path / "old", tmp_path / "new", "transformer", new)
    assert "step 2" in line and "recipe 90" in line
    carried = train_model("transformer", tmp_path / "new", steps=4, recipe=new, verbose=False)
    assert carried["loss"] == straight["loss"] and carried["recipe"] == straight["recipe"]
    assert carried["carried_from"]["recipe"] == 90 and carried["carried_from"]["step"] == 2
    assert card_mod._training(carried, 4)["carried_from"] == carried["carried_from"]  # the card says so
    with pytest.raises(MechHybridError, match="already holds a run"):
        train_mod.carry_over(tmp_path / "old", tmp_path / "new", "transformer", new)
    with pytest.raises(MechHybridError, match="they differ in lr"):
        train_mod.carry_over(tmp_path / "old", tmp_path / "lr", "transformer", dataclasses.replace(new, lr=1e-3))
    with pytest.raises(MechHybridError, match="another model"):
        train_mod.carry_over(tmp_path / "old", tmp_path / "other", "ssm-mamba2", new)
    with pytest.raises(MechHybridError, match="nothing to carry over"):
        train_mod.carry_over(tmp_path / "none", tmp_path / "x", "transformer", new)


def test_a_carried_run_that_the_new_rule_also_stops_stays_stopped(tmp_path, monkeypatch):
    """A run stopped on a plateau after its probe reached `stop_after_probe` is stopped at the same step under
    the new rule (no extra steps); one stopped at chance goes on."""
    monkeypatch.setattr(probe_mod, "run_probe", _scripted_probe([0.6, 0.6, 0.6]))
    rule = dict(min_steps=2, stop_patience_steps=2, eval_every=2)
    old = dataclasses.replace(TINY, version=90, stop_after_probe=0.0, **rule)
    log = train_model("transformer", tmp_path / "old", steps=6, recipe=old, verbose=False)
    assert log["stop"]["step"] == 4  # 0.6 at step 4 is no gain over 0.6 at step 2
    line = train_mod.carry_over(tmp_path / "old", tmp_path / "new", "transformer",
                                dataclasses.replace(old, version=91, stop_after_probe=0.5))
    assert "stopped there under recipe 91 too" in line
    assert json.loads((tmp_path / "new" / LOG_FILE).read_text())["stop"]["step"] == 4
    train_mod.carry_over(tmp_path / "old", tmp_path / "higher", "transformer",
                         dataclasses.replace(old, version=92, stop_after_probe=0.9))
    assert "stop" not in json.loads((tmp_path / "higher" / LOG_FILE).read_text())


class _Payload:
    """A pickled object whose unpickling would run code (here: record that it ran)."""

    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return {}


def test_a_checkpoint_with_pickled_code_is_refused_without_running_it(tmp_path):
    train_model("transformer", tmp_path, steps=2, recipe=TINY, verbose=False)
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    state["log"]["extra"] = _Payload()
    torch.save(state, tmp_path / STATE_FILE)
    with pytest.raises(MechHybridError, match="training checkpoint unreadable"):
        train_model("transformer", tmp_path, steps=4, recipe=TINY, verbose=False)
    assert not _Payload.ran
