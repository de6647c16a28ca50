"""Loading from disk, the hub cache and memory; refusing what is unsafe; clear errors for bad input."""

from __future__ import annotations

import json

import pytest
import torch

import mechhybrid
from mechhybrid import Ablate, AblateHeads, MechHybridError, Patch, UnsupportedFamilyError
from tests.conftest import ALL_MODEL_TYPES, build_tiny, random_ids, save_pickled


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_saved_with_safetensors_and_reloaded_through_load(tmp_path, tiny_models, model_type):
    model, hm = tiny_models(model_type)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = mechhybrid.load(str(tmp_path))
    ids = random_ids(2, 7, seed=30)
    torch.testing.assert_close(loaded.logits(ids), hm.logits(ids), atol=1e-6, rtol=0)
    assert [(c.layer, c.kind, c.path) for c in loaded.components] == [(c.layer, c.kind, c.path) for c in hm.components]
    assert loaded.tokenizer is None and loaded.family == hm.family


def test_small_checkpoints_load_without_a_weights_bar_and_large_ones_keep_it(tmp_path, monkeypatch, capsys):
    from transformers.utils import logging as hf_logging

    from mechhybrid import loading

    build_tiny("qwen2").save_pretrained(tmp_path)
    capsys.readouterr()
    mechhybrid.load(str(tmp_path))
    assert "Loading weights" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # switched back on for everything else
    monkeypatch.setattr(loading, "SMALL_CHECKPOINT_BYTES", 0)
    mechhybrid.load(str(tmp_path))
    assert "Loading weights" in capsys.readouterr().err


def test_model_and_tokenizer_pair_and_hub_cache(tmp_path, monkeypatch):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(97)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="w0")
    model = build_tiny("qwen2")
    hm = mechhybrid.load((model, tokenizer))
    assert hm.tokenizer is tokenizer and hm.hf_model is model

    snapshot = tmp_path / "hub" / "models--tiny--qwen2" / "snapshots" / ("a" * 40)
    model.save_pretrained(snapshot)
    tokenizer.save_pretrained(snapshot)
    (tmp_path / "hub" / "models--tiny--qwen2" / "refs").mkdir()
    (tmp_path / "hub" / "models--tiny--qwen2" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    cached = mechhybrid.load("tiny/qwen2")
    ids = random_ids(1, 5, seed=31)
    torch.testing.assert_close(cached.logits(ids), hm.logits(ids), atol=1e-6, rtol=0)
    assert cached.tokenizer("w3 w5")["input_ids"] == [3, 5]
    with pytest.raises(MechHybridError, match="not in the local hub cache"):
        mechhybrid.load("tiny/absent")


def test_missing_path_and_unknown_family(tmp_path):
    with pytest.raises(MechHybridError, match="not found"):
        mechhybrid.load(str(tmp_path / "absent"))
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("gpt_neox", vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "neox")
    with pytest.raises(UnsupportedFamilyError, match="gpt_neox.*supported: qwen3_5, qwen3_next, falcon_h1"):
        mechhybrid.load(str(tmp_path / "neox"))


def test_pickled_weights_need_the_opt_in(tmp_path):
    model = build_tiny("llama")
    save_pickled(model, tmp_path)
    assert not list(tmp_path.glob("*.safetensors")) and list(tmp_path.glob("*.bin"))
    with pytest.raises(MechHybridError, match="allow_pickle=True"):
        mechhybrid.load(str(tmp_path))
    hm = mechhybrid.load(str(tmp_path), allow_pickle=True)
    ids = random_ids(1, 4, seed=32)
    torch.testing.assert_close(hm.logits(ids), model(ids).logits, atol=1e-6, rtol=0)


def test_remote_code_is_refused_and_never_runs(tmp_path):
    model = build_tiny("llama")
    model.save_pretrained(tmp_path)
    marker = tmp_path / "code_ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(MechHybridError, match="trust_remote_code=True"):
        mechhybrid.load(str(tmp_path))
    assert not marker.exists()


def test_corrupt_safetensors(tmp_path):
    build_tiny("qwen2").save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(MechHybridError, match="could not load the weights"):
        mechhybrid.load(str(tmp_path))


def test_bad_selections_positions_heads_and_shapes(tiny_models):
    _, hm = tiny_models("qwen3_5_text")
    ids = random_ids(2, 6, seed=33)
    attention = hm.components.by_kind("attention")[0]
    with pytest.raises(MechHybridError, match="head index 4 out of range"):
        hm.logits(ids, [AblateHeads(attention, [4])])
    with pytest.raises(MechHybridError, match="position 6 out of range"):
        hm.logits(ids, [Ablate([attention], positions=[6])])
    with pytest.raises(MechHybridError, match="must have the input's shape"):
        hm.logits(ids, [Patch([attention], source_ids=random_ids(2, 5, seed=0))])
    with pytest.raises(MechHybridError, match="head mask"):
        hm.logits(ids, [AblateHeads(attention, torch.ones(2, 6, 3, dtype=torch.bool))])
    with pytest.raises(MechHybridError, match="no heads"):
        hm.logits(ids, [AblateHeads(hm.components.by_kind("mlp")[0], [0])])
    with pytest.raises(MechHybridError, match="at least one intervention set"):
        hm.logits_many(ids, [])
    with pytest.raises(MechHybridError, match="empty component selection|Component"):
        Ablate(["L0.attention"])
    with pytest.raises(MechHybridError, match="needs reference_ids"):
        Ablate([attention], "mean")
    with pytest.raises(MechHybridError, match="unknown ablation method"):
        Ablate([attention], "delete")
    with pytest.raises(MechHybridError, match="not a component of this model"):
        _, other = tiny_models("qwen2")
        hm.logits(ids, [Ablate(other.components[:1])])
    with pytest.raises(MechHybridError, match="2-D"):
        hm.logits(ids[0])
