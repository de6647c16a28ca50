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


def _with_evil_auto_map(directory, model_type=None):
    """The checkpoint's config asks for its own code, which would leave a marker file if it ever ran."""
    marker = directory / "code_ran"
    for module in ("configuration_evil", "modeling_evil"):
        (directory / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    config = json.loads((directory / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                          "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    config["model_type"] = model_type or config["model_type"]
    (directory / "config.json").write_text(json.dumps(config))
    return marker


@pytest.mark.parametrize("trust", [False, True])
def test_auto_map_of_a_natively_implemented_model_is_ignored_with_a_notice(tmp_path, caplog, trust):
    import logging

    from safetensors.torch import load_file

    model = build_tiny("nemotron_h")
    model.save_pretrained(tmp_path)
    # As Nemotron-H is published: an auto_map, the legacy layer pattern, weights under `backbone.`.
    marker = _with_evil_auto_map(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config.pop("layers_block_type") == ["linear_attention", "full_attention", "mlp", "moe"]
    config["hybrid_override_pattern"] = "M*-E"
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert all(key.startswith(("backbone.", "lm_head.")) for key in load_file(tmp_path / "model.safetensors"))
    with caplog.at_level(logging.WARNING, logger="mechhybrid"):
        hm = mechhybrid.load(str(tmp_path), trust_remote_code=trust)
        mechhybrid.load(str(tmp_path), trust_remote_code=trust)  # said once, not once per load
    assert not marker.exists()
    assert type(hm.hf_model).__module__ == "transformers.models.nemotron_h.modeling_nemotron_h"
    ids = random_ids(1, 5, seed=34)
    torch.testing.assert_close(hm.logits(ids), model(ids).logits, atol=1e-6, rtol=0)
    notes = [r.getMessage() for r in caplog.records if "auto_map" in r.getMessage()]
    assert notes == [f"mechhybrid: {tmp_path}: ignoring the checkpoint's own code (auto_map); transformers "
                     "implements 'nemotron_h' and its implementation is used"]


def test_remote_code_without_a_native_class_is_refused_and_never_runs(tmp_path, monkeypatch):
    from mechhybrid import loading

    build_tiny("llama").save_pretrained(tmp_path)
    marker = _with_evil_auto_map(tmp_path)
    # A transformers without a native llama: the checkpoint's own code would be the only implementation.
    monkeypatch.setattr(loading, "_native", lambda model_type: False)
    with pytest.raises(MechHybridError, match="transformers does not implement; .*trust_remote_code=True"):
        mechhybrid.load(str(tmp_path))
    assert not marker.exists()


@pytest.mark.parametrize(
    "config, expected",
    [
        # An original mamba_ssm repository's config.json: no model_type at all.
        ({"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"}, "rms_norm": True},
         r"config.json has no model_type, so it is not a transformers config \(found: d_model, n_layer, "
         r"rms_norm, ssm_cfg, vocab_size; .*mamba_ssm.*\); supported: qwen3_5, qwen3_next, falcon_h1, .*gpt2$"),
        ({"model_type": "brand_new_arch", "hidden_size": 8},
         r"config.json: unsupported model family 'brand_new_arch' \(model_type\); supported: qwen3_5, .*gpt2$"),
        ({"model_type": ["qwen2"]}, r"config.json: unsupported model family \['qwen2'\] \(model_type\)"),
        ({"model_type": "qwen2", "hidden_size": "wide"}, r"^could not read .*config.json: .*hidden_size"),
        ([1, 2], r"config.json holds a JSON list, not an object of settings$"),
    ],
)
def test_configs_transformers_rejects_end_in_one_line(tmp_path, capsys, config, expected):
    from mechhybrid.cli import main

    build_tiny("qwen2").save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(MechHybridError, match=expected) as caught:
        mechhybrid.load(str(tmp_path))
    assert "\n" not in str(caught.value)
    capsys.readouterr()
    assert main(["inspect", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"mechhybrid: error: {caught.value}\n"


def _tiny_qwen3_5_vlm():
    """A tiny `Qwen3_5ForConditionalGeneration` as the Qwen3.5 model cards load it: the language model under
    `model.language_model`, a vision tower under `model.visual`, a tied lm_head."""
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    from tests.tiny_configs import TINY_CONFIGS

    vision = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32, patch_size=4,
                  num_position_embeddings=16)
    text = dict(TINY_CONFIGS["qwen3_5_text"], tie_word_embeddings=True)
    torch.manual_seed(0)
    config = Qwen3_5Config(text_config=text, vision_config=vision, tie_word_embeddings=True)
    return Qwen3_5ForConditionalGeneration(config).eval()


def test_qwen3_5_multimodal_object_is_analysed_through_its_language_model(caplog):
    import logging

    vlm = _tiny_qwen3_5_vlm()
    with caplog.at_level(logging.WARNING, logger="mechhybrid"):
        hm = mechhybrid.load(vlm)
    assert hm.family == "qwen3_5" and hm.name == "Qwen3_5ForConditionalGeneration" and hm.n_layers == 4
    assert [r.getMessage() for r in caplog.records if "vision" in r.getMessage()] == [
        "mechhybrid: Qwen3_5ForConditionalGeneration: analysing its language model (model.language_model); "
        "the vision tower is not analysed"
    ]
    # The same modules, not copies: an edit of the user's model is what gets analysed.
    assert hm.module("model.layers.3.self_attn") is vlm.model.language_model.layers[3].self_attn
    assert hm.hf_model.lm_head is vlm.lm_head
    assert all(p.device.type != "meta" for p in hm.hf_model.parameters())
    ids = random_ids(2, 6, seed=35)
    torch.testing.assert_close(hm.logits(ids), vlm(input_ids=ids).logits, atol=1e-6, rtol=0)
    attention = hm.components.by_kind("attention")[0]
    ablated = hm.logits(ids, [Ablate([attention])])
    assert (ablated - hm.logits(ids)).abs().max() > 1e-3


def test_qwen3_5_multimodal_checkpoint_directory_loads_its_language_model(tmp_path, caplog):
    import logging

    from safetensors.torch import load_file, save_file

    vlm = _tiny_qwen3_5_vlm()
    vlm.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "qwen3_5" and {"text_config", "vision_config"} <= set(config)
    tensors = load_file(tmp_path / "model.safetensors")
    assert any(k.startswith("model.visual.") for k in tensors) and "lm_head.weight" not in tensors
    tensors["mtp.fc.weight"] = torch.zeros(32, 64)  # the published checkpoint ships an MTP head too
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="mechhybrid"):
        hm = mechhybrid.load(str(tmp_path))
    assert [r.getMessage() for r in caplog.records if "vision" in r.getMessage()] == [
        f"mechhybrid: {tmp_path}: loading its language model; the vision tower is not loaded or analysed"
    ]
    ids = random_ids(2, 6, seed=36)
    torch.testing.assert_close(hm.logits(ids), vlm(input_ids=ids).logits, atol=1e-6, rtol=0)


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


def test_generic_tokenizer_replaced_by_transformers_is_kept_and_said_once(tmp_path, caplog):
    """A qwen2 checkpoint that declares a generic word-level tokenizer without an auto_map: transformers' AutoTokenizer
    would load Qwen2Tokenizer (other ids); mechhybrid loads the declared class and says so. The zoo control (which
    carries an auto_map) loads through plain AutoTokenizer with no notice."""
    import shutil

    import mechhybrid
    from mechhybrid.zoo.registry import zoo_dir
    from mechhybrid.zoo.tokenizer import encode_words

    source = zoo_dir("transformer")
    shutil.copytree(source, tmp_path / "m")
    settings_path = tmp_path / "m" / "tokenizer_config.json"
    settings = json.loads(settings_path.read_text())
    settings.pop("auto_map", None)
    settings_path.write_text(json.dumps(settings))
    (tmp_path / "m" / "tokenization_zoo.py").unlink(missing_ok=True)
    words = "the code of anna is".split()
    expected = [1] + list(encode_words(words))
    import logging

    with caplog.at_level(logging.WARNING, logger="mechhybrid"):
        hm = mechhybrid.load(str(tmp_path / "m"))
        assert hm.tokenizer(" ".join(words)).input_ids == expected
        assert "loads the declared class" in caplog.text
        caplog.clear()
        control = mechhybrid.load("zoo:transformer")
        assert control.tokenizer(" ".join(words)).input_ids == expected
        assert "declared class" not in caplog.text
