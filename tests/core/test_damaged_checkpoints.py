"""A checkpoint whose tensors do not match its architecture is refused in one line, unless the user opts in.

Each test damages a tiny saved checkpoint by hand (a tensor deleted, added or reshaped with safetensors) and checks
the names in the message against the damage it did; keys transformers skips by design (a tied lm_head,
multi-token-prediction heads) must not count.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

import mechhybrid
from mechhybrid import MechHybridError
from mechhybrid.cli import main
from tests.conftest import build_tiny, random_ids


def _edit(path, change) -> None:
    """Rewrite one safetensors file after `change(state_dict)`."""
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def _saved(tmp_path, model_type="qwen2", **save_options):
    model = build_tiny(model_type)
    model.save_pretrained(tmp_path, **save_options)
    return model


def _refusal(directory) -> str:
    with pytest.raises(MechHybridError) as caught:
        mechhybrid.load(str(directory))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{directory}: the checkpoint does not match its architecture: ")
    assert message.endswith("pass allow_missing_weights=True (CLI: --allow-missing-weights) to load it anyway")
    return message


def test_missing_tensor_is_refused_and_the_opt_in_loads_it_at_random_init(tmp_path):
    model = _saved(tmp_path)
    _edit(tmp_path / "model.safetensors", lambda t: t.pop("model.layers.1.self_attn.q_proj.weight"))
    message = _refusal(tmp_path)
    assert "1 tensor missing (left at random init): model.layers.1.self_attn.q_proj.weight;" in message
    hm = mechhybrid.load(str(tmp_path), allow_missing_weights=True)
    assert hm.load_options["allow_missing_weights"] is True
    loaded = dict(hm.hf_model.named_parameters())
    for name, parameter in model.named_parameters():
        same = torch.equal(loaded[name], parameter)
        assert same is (name != "model.layers.1.self_attn.q_proj.weight"), name


def test_many_missing_tensors_name_the_first_few_and_count_the_rest(tmp_path):
    _saved(tmp_path)

    def drop_layers(tensors):
        for key in [k for k in tensors if k.startswith(("model.layers.2.", "model.layers.3."))]:
            del tensors[key]

    _edit(tmp_path / "model.safetensors", drop_layers)
    message = _refusal(tmp_path)
    # A qwen2 layer holds 12 tensors (q/k/v with biases, o, gate/up/down, two norms): 24 missing, the first three
    # in layer order, then the count of the rest.
    assert (
        "24 tensors missing (left at random init): model.layers.2.input_layernorm.weight, "
        "model.layers.2.mlp.down_proj.weight, model.layers.2.mlp.gate_proj.weight and 21 more" in message
    )


def test_unexpected_and_wrong_shape_tensors_are_refused(tmp_path):
    _saved(tmp_path)

    def damage(tensors):
        tensors["model.layers.7.self_attn.q_proj.weight"] = torch.zeros(32, 32)  # a layer the config lacks
        tensors["model.layers.0.mlp.up_proj.weight"] = torch.zeros(40, 32)  # 48 rows in the model

    _edit(tmp_path / "model.safetensors", damage)
    message = _refusal(tmp_path)
    assert "1 tensor of the wrong shape (left at random init): model.layers.0.mlp.up_proj.weight [40, 32] " \
           "in the checkpoint vs [48, 32]" in message
    assert "1 tensor unexpected (unused): model.layers.7.self_attn.q_proj.weight;" in message
    assert "missing (left" not in message
    hm = mechhybrid.load(str(tmp_path), allow_missing_weights=True)
    assert hm.module("model.layers.0.mlp.up_proj").weight.shape == (48, 32)


def test_keys_skipped_by_design_do_not_count(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.tiny_configs import TINY_CONFIGS

    torch.manual_seed(0)
    config = AutoConfig.for_model("qwen3_5_text", **dict(TINY_CONFIGS["qwen3_5_text"], tie_word_embeddings=True))
    model = AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(tmp_path)

    def add_mtp_head(tensors):
        assert "lm_head.weight" not in tensors  # tied: saved once, as the embedding
        tensors["mtp.fc.weight"] = torch.zeros(32, 64)
        tensors["mtp.layers.0.mlp.up_proj.weight"] = torch.zeros(48, 32)

    _edit(tmp_path / "model.safetensors", add_mtp_head)
    hm = mechhybrid.load(str(tmp_path))
    ids = random_ids(1, 5, seed=50)
    torch.testing.assert_close(hm.logits(ids), model(ids).logits, atol=1e-6, rtol=0)


def test_sharded_bfloat16_checkpoint_with_a_tensor_gone_from_one_shard(tmp_path):
    model = build_tiny("bamba").to(torch.bfloat16)
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 3
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]
    victim = min(key for key, shard in index.items() if shard == shards[1].name and key.endswith("out_proj.weight"))
    _edit(shards[1], lambda t: t.pop(victim))
    assert f"1 tensor missing (left at random init): {victim};" in _refusal(tmp_path)
    hm = mechhybrid.load(str(tmp_path), allow_missing_weights=True)
    assert hm.hf_model.dtype == torch.bfloat16
    shards[2].unlink()
    with pytest.raises(MechHybridError, match=rf"^could not load the weights in {tmp_path}: .*{shards[2].name}$"):
        mechhybrid.load(str(tmp_path))


def test_success_path_is_quiet_and_the_opt_in_says_one_line(tmp_path, capfd, caplog):
    from transformers.utils import logging as hf_logging

    _saved(tmp_path)
    _edit(tmp_path / "model.safetensors", lambda t: t.pop("model.norm.weight"))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()  # the tests' conftest silences transformers; a user's session does not
    try:
        capfd.readouterr()
        with caplog.at_level(logging.WARNING, logger="mechhybrid"):
            mechhybrid.load(str(tmp_path), allow_missing_weights=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    err = capfd.readouterr().err
    assert "LOAD REPORT" not in err and "MISSING" not in err, err
    notes = [r.getMessage() for r in caplog.records if r.name == "mechhybrid"]
    assert notes == [
        f"mechhybrid: {tmp_path}: loaded with allow_missing_weights although 1 tensor missing (left at random "
        "init): model.norm.weight"
    ]
    assert hf_logging.get_verbosity() == verbosity


def test_cli_refuses_in_one_line_and_the_flag_loads(tmp_path, capsys):
    _saved(tmp_path)
    _edit(tmp_path / "model.safetensors", lambda t: t.pop("model.layers.0.mlp.gate_proj.weight"))
    capsys.readouterr()
    assert main(["inspect", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("mechhybrid: error: ")
    assert "model.layers.0.mlp.gate_proj.weight" in err and "--allow-missing-weights" in err
    assert main(["inspect", str(tmp_path), "--allow-missing-weights", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == "qwen2"


def test_a_refused_load_says_no_notice_first(tmp_path, caplog):
    """The refusal is the last line: notices about an ignored auto_map or a vision tower wait for a success."""
    _saved(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    config["vision_config"] = {"depth": 1}
    (tmp_path / "config.json").write_text(json.dumps(config))
    _edit(tmp_path / "model.safetensors", lambda t: t.pop("model.embed_tokens.weight"))
    with caplog.at_level(logging.WARNING, logger="mechhybrid"):
        _refusal(tmp_path)
        assert not [r for r in caplog.records if r.name == "mechhybrid"]
        mechhybrid.load(str(tmp_path), allow_missing_weights=True)
    notes = [r.getMessage() for r in caplog.records if r.name == "mechhybrid"]
    assert len(notes) == 3 and "auto_map" in notes[0] and "vision tower" in notes[1]
    assert "1 tensor missing (left at random init): model.embed_tokens.weight" in notes[2]
