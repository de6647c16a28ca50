"""Registry and CLI handlers on a temporary zoo root: unknown names, missing or corrupt files."""

import json
import types

import pytest
import torch
from safetensors.torch import save_file

from mechhybrid.errors import MechHybridError
from mechhybrid.zoo import registry
from mechhybrid.zoo.cli import add_zoo_commands, cmd_zoo_eval, cmd_zoo_list, cmd_zoo_show, cmd_zoo_train


def _card(name):
    score = lambda v: {"metric": "accuracy", "score": v, "n": 4}  # noqa: E731
    scores = {"lm": {"metric": "perplexity", "score": 9.5, "n": 4}, "facts": score(0.5),
              "needle": {**score(0.75), "by_context_len": {"64": 1.0, "256": 0.5}}, "recall": score(0.25)}
    return {"name": name, "family": "qwen2", "n_params": 12, "scores": scores, "check_scores": scores,
            "bigram_perplexity": 12.0,
            "quality": {"perplexity_below_bigram": True, "needle_at_training_context": 0.5, "needle_bar": False}}


@pytest.fixture
def root(tmp_path):
    for name in ("alpha", "beta"):
        d = tmp_path / name
        d.mkdir()
        save_file({"w": torch.arange(12, dtype=torch.float32)}, str(d / "model.safetensors"))
        (d / "card.json").write_text(json.dumps(_card(name)))
    (tmp_path / "half-done").mkdir()  # no card, no weights: not shipped
    return tmp_path


def test_names_are_complete_dirs_only(root):
    assert registry.zoo_names(root) == ["alpha", "beta"]
    assert registry.zoo_dir("alpha", root) == root / "alpha"
    assert registry.load_card("beta", root)["name"] == "beta"


def test_unknown_name_lists_the_available_ones(root):
    with pytest.raises(MechHybridError, match="unknown zoo model 'gamma'.*alpha, beta"):
        registry.zoo_dir("gamma", root)
    for bad in ("", "../alpha", ".hidden"):
        with pytest.raises(MechHybridError, match="unknown zoo model"):
            registry.zoo_dir(bad, root)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "card.json").unlink(), "card missing"),
    (lambda d: (d / "card.json").write_text("{not json"), "card corrupt"),
    (lambda d: (d / "card.json").write_text("[1, 2]"), "card corrupt"),
    (lambda d: (d / "card.json").write_text('{"name": "alpha"}'), "card corrupt .missing family"),
    (lambda d: (d / "model.safetensors").unlink(), "weights missing"),
    (lambda d: (d / "model.safetensors").write_bytes(b"garbage"), "weights corrupt"),
    (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-5]), "weights corrupt"),
    (lambda d: (d / "model.safetensors").write_bytes(b"\xff" * 64), "weights corrupt"),
])
def test_missing_or_corrupt_files_are_one_clear_error(root, damage, message):
    damage(root / "alpha")
    with pytest.raises(MechHybridError, match=message) as info:
        registry.zoo_dir("alpha", root)
    assert "\n" not in str(info.value)


def test_list_json_has_name_family_params_and_scores(root, capsys):
    assert cmd_zoo_list(types.SimpleNamespace(json=True, root=root)) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["alpha", "beta"]
    for r in rows:
        assert r["family"] == "qwen2" and r["n_params"] == 12
        assert r["scores"]["needle"]["by_context_len"] == {"64": 1.0, "256": 0.5} and r["perplexity"] == 9.5


def test_list_table_and_show(root, capsys):
    assert cmd_zoo_list(types.SimpleNamespace(json=False, root=root)) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "n@256" in out and "NEEDLE<0.9" in out
    assert cmd_zoo_show(types.SimpleNamespace(json=False, root=root, name="beta")) == 0
    assert "exact_match" not in capsys.readouterr().out  # fake card uses 'accuracy' everywhere
    with pytest.raises(MechHybridError, match="available: alpha, beta"):
        cmd_zoo_show(types.SimpleNamespace(json=True, root=root, name="nope"))


def test_eval_and_train_reject_unknown_names(root):
    with pytest.raises(MechHybridError, match="unknown zoo model"):
        cmd_zoo_eval(types.SimpleNamespace(name="nope", root=root, full=False, json=False, threads=1))
    with pytest.raises(MechHybridError, match="unknown zoo recipe"):
        cmd_zoo_train(types.SimpleNamespace(name="nope", run_dir=None, resume=False, fresh=False, steps=None,
                                            threads=1, quiet=True))


def test_commands_register_on_a_parser():
    import argparse

    parser = argparse.ArgumentParser()
    add_zoo_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["zoo", "train", "transformer", "--steps", "3", "--run-dir", "x", "--resume"])
    assert args.handler is cmd_zoo_train and args.steps == 3 and args.run_dir == "x" and args.resume
    with pytest.raises(SystemExit):  # --resume and --fresh exclude each other, as --full and --rescore do
        parser.parse_args(["zoo", "train", "transformer", "--resume", "--fresh"])
    with pytest.raises(SystemExit):
        parser.parse_args(["zoo", "eval", "transformer", "--full", "--rescore"])
    assert parser.parse_args(["zoo", "list", "--json"]).handler is cmd_zoo_list
    assert parser.parse_args(["zoo", "eval", "transformer", "--full"]).full
