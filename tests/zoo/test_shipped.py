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
    assert report["max_abs_diff"] <= EVAL_TOLERANCE and report["measured"]["needle"]["n"] == 16


def test_fresh_checkpoint_round_trip_reproduces_scores(tmp_path, capsys):
    from mechhybrid.zoo.recipes import build_model, zoo_spec
    from mechhybrid.zoo.tokenizer import save_tokenizer

    model = build_model(zoo_spec("transformer"), seed=0)
    in_memory = evaluate(model, quick=True)
    d = tmp_path / "fresh"
    model.save_pretrained(str(d))
    save_tokenizer(d)
    card = {"name": "fresh", "family": "qwen2", "n_params": 1, "scores": in_memory, "check_scores": in_memory}
    (d / "card.json").write_text(json.dumps(card))
    assert registry.zoo_names(tmp_path) == ["fresh"]
    reloaded = evaluate(load_checkpoint(d), quick=True)
    for bench, entry in in_memory.items():
        assert abs(entry["score"] - reloaded[bench]["score"]) <= EVAL_TOLERANCE
    assert in_memory["lm"]["score"] > 100  # untrained: near-uniform over 256 tokens
    args = types.SimpleNamespace(name="fresh", root=tmp_path, full=False, json=False, threads=1)
    assert cmd_zoo_eval(args) == 0
    assert "reproduced" in capsys.readouterr().out
