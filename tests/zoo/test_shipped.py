"""Every shipped zoo model loads offline like any checkpoint and reproduces its card's scores.

Plus the same path end to end on a freshly saved (untrained) checkpoint, so the check also
runs where no model is shipped yet."""

import json
import types

import pytest

from mechhybrid.zoo import registry
from mechhybrid.zoo.card import evaluate, load_checkpoint
from mechhybrid.zoo.cli import EVAL_TOLERANCE, cmd_zoo_eval

SHIPPED = registry.zoo_names()
# Component kinds each family must expose (from the architectures, not from the family table).
KINDS = {"qwen3_5": {"linear_attention", "attention"}, "falcon_h1": {"ssm", "attention"},
         "recurrent_gemma": {"recurrent", "attention"}, "qwen2": {"attention"}, "mamba2": {"ssm"},
         "jamba": {"ssm", "attention"}}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def test_shipped_weights_fit_the_budget():
    total = sum((registry.ZOO_ROOT / n / "model.safetensors").stat().st_size for n in SHIPPED)
    assert total <= 40 * 2**20


@pytest.mark.parametrize("name", SHIPPED or [pytest.param("none", marks=pytest.mark.skip("no model shipped yet"))])
def test_shipped_model_loads_and_reproduces_its_card(name, capsys):
    from transformers import AutoTokenizer

    import mechhybrid

    card = registry.load_card(name)
    directory = registry.zoo_dir(name)
    model = load_checkpoint(directory)
    assert sum(p.numel() for p in model.parameters()) == card["n_params"]
    assert model.config.vocab_size == 256 and len(AutoTokenizer.from_pretrained(str(directory))) <= 256
    hm = mechhybrid.load(f"zoo:{name}")
    assert hm.family == card["family"]
    assert KINDS[card["family"]] <= set(hm.components.kinds())
    args = types.SimpleNamespace(name=name, full=False, json=True, threads=1)
    assert cmd_zoo_eval(args) == 0
    report = json.loads(capsys.readouterr().out)
    # Scored with the card's own benchmark version (16 check needles: every 10th of zoo-bench-1's 160).
    version = card["benchmark_version"]
    assert report["max_abs_diff"] <= EVAL_TOLERANCE and report["benchmark_version"] == version
    assert report["measured"]["needle"]["n"] == {"zoo-bench-1": 16, "zoo-bench-2": 40}[version]


def test_fresh_checkpoint_round_trip_reproduces_scores(tmp_path, capsys):
    from mechhybrid.zoo.recipes import build_model, zoo_spec
    from mechhybrid.zoo.tokenizer import save_tokenizer

    model = build_model(zoo_spec("transformer"), seed=0)
    in_memory = evaluate(model, quick=True)
    d = tmp_path / "fresh"
    model.save_pretrained(str(d))
    save_tokenizer(d)
    card = {"name": "fresh", "family": "qwen2", "n_params": 1, "scores": in_memory, "check_scores": in_memory,
            "benchmark_version": "zoo-bench-2"}
    (d / "card.json").write_text(json.dumps(card))
    assert registry.zoo_names(tmp_path) == ["fresh"]
    reloaded = evaluate(load_checkpoint(d), quick=True)
    for bench, entry in in_memory.items():
        assert abs(entry["score"] - reloaded[bench]["score"]) <= EVAL_TOLERANCE
    assert in_memory["lm"]["score"] > 100  # untrained: near-uniform over 256 tokens
    args = types.SimpleNamespace(name="fresh", root=tmp_path, full=False, json=False, threads=1)
    assert cmd_zoo_eval(args) == 0
    assert "reproduced" in capsys.readouterr().out


def test_eval_uses_the_cards_version_and_rescore_moves_the_card_to_the_newest(tmp_path, capsys):
    from mechhybrid.zoo.recipes import build_model, zoo_spec
    from mechhybrid.zoo.tokenizer import save_tokenizer

    model = build_model(zoo_spec("transformer"), seed=0)
    d = tmp_path / "old"
    model.save_pretrained(str(d))
    save_tokenizer(d)
    old = evaluate(model, quick=True, version="zoo-bench-1")
    card = {"name": "old", "family": "qwen2", "n_params": 1, "scores": old, "check_scores": old,
            "benchmark_version": "zoo-bench-1"}
    (d / "card.json").write_text(json.dumps(card))
    args = types.SimpleNamespace(name="old", root=tmp_path, full=False, json=True, threads=1, rescore=False)
    assert cmd_zoo_eval(args) == 0
    assert json.loads(capsys.readouterr().out)["measured"]["needle"]["n"] == 16  # zoo-bench-1, as the card says
    assert cmd_zoo_eval(types.SimpleNamespace(**{**vars(args), "rescore": True})) == 0
    rescored = registry.load_card("old", tmp_path)
    assert rescored["benchmark_version"] == "zoo-bench-2" and rescored["scores"]["needle"]["n"] == 400
    assert rescored["check_scores"]["needle"]["n"] == 40 and rescored["scores"]["needle"]["chance"] == 0.01
    assert rescored["rescored_from"] == {"benchmark_version": "zoo-bench-1", "scores": old}
    assert rescored["quality"]["needle_bar"] is False and rescored["bigram_perplexity"] > 1
    capsys.readouterr()
    assert cmd_zoo_eval(args) == 0  # the rewritten card reproduces with its new version
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark_version"] == "zoo-bench-2" and report["measured"]["needle"]["n"] == 40


def test_a_card_with_an_unknown_benchmark_version_is_one_line():
    from mechhybrid.errors import MechHybridError
    from mechhybrid.zoo.card import card_benchmark_version

    with pytest.raises(MechHybridError, match="unknown zoo benchmark version 'zoo-bench-0'"):
        card_benchmark_version({"name": "x", "benchmark_version": "zoo-bench-0"})
    with pytest.raises(MechHybridError, match="records no benchmark_version"):
        card_benchmark_version({"name": "x"})
