"""check-cache reports what the state map declares; bad inputs give one clear MechHybridError."""

from __future__ import annotations

import json

import pytest
import torch

import mechhybrid.cli as cli
from mechhybrid.check_cache import CacheReport, add_check_cache_command, check_cache
from mechhybrid.errors import MechHybridError
from mechhybrid.generation import generate
from mechhybrid.interventions import Patch
from mechhybrid.state import EditState, PatchState, ReadState, State, read_state, run_with_state
from tests.conftest import both_shapes, build_tiny, random_ids
from tests.state.helpers import EXPECTED_STATE_LAYERS


@pytest.mark.parametrize("model_type,shape,prefill_exact", both_shapes([
    ("qwen3_5_text", True), ("bamba", True), ("jamba", False), ("recurrent_gemma", False), ("gpt2", True),
]))
def test_check_cache_matches_the_state_map(tiny_models, model_type, shape, prefill_exact):
    _, hm = tiny_models(model_type, shape)
    report = check_cache(hm)  # 32 random tokens (seed 0), cache filled with 28: jamba state drift 4.2e-4
    assert isinstance(report, CacheReport) and len(report.layers) == hm.n_layers == 4
    assert report.decode_exact  # every family's one-token decode is exact (with position_ids)
    assert report.prefill_exact == prefill_exact
    assert report.continuation == ("chunk" if prefill_exact else "token")
    with_state = [d.layer for d in report.layers if d.state_prefill is not None]
    assert with_state == list(EXPECTED_STATE_LAYERS[shape].get(model_type, ()))
    assert "decode: exact" in report.format()


def test_check_cache_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_extension_registrars", lambda: [add_check_cache_command])
    build_tiny("jamba").save_pretrained(tmp_path)
    assert cli.main(["check-cache", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "prefill continuation: DRIFTS; decode: exact" in text and "state map says `token`" in text
    assert cli.main(["check-cache", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["family"] == "jamba" and len(data["layers"]) == 4 and data["decode_exact"] is True
    assert cli.main(["check-cache", str(tmp_path), "--seq", "12", "--split", "12"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "split must be between 1 and 11" in err


def test_bad_inputs_are_clear_errors(tiny_models):
    _, hm = tiny_models("qwen3_5_text")
    ids = random_ids(2, 8, seed=30)
    with pytest.raises(MechHybridError, match="layer 3 has no recurrent state .*attention"):
        read_state(hm, ids, [3], [2])
    with pytest.raises(MechHybridError, match="layer 9 out of range"):
        read_state(hm, ids, [9], [2])
    with pytest.raises(MechHybridError, match="position 8 out of range for a sequence of 8"):
        read_state(hm, ids, [0], [8])
    with pytest.raises(MechHybridError, match="position -9 out of range"):
        run_with_state(hm, ids, [ReadState([0], -9)])
    good = read_state(hm, ids, [0], [2])[(0, 2)]
    wrong = good.replace(recurrent=torch.zeros(2, 4, 8, 7))
    with pytest.raises(MechHybridError, match=r"wrong recurrent shape \(2, 4, 8, 7\); expected \(2, 4, 8, 8\)"):
        run_with_state(hm, ids, [PatchState([0], 2, state=wrong)])
    with pytest.raises(MechHybridError, match="wrong conv shape"):
        run_with_state(hm, ids, [EditState([0], 2, lambda s: s.replace(conv=s.conv[..., :2]))])
    with pytest.raises(MechHybridError, match="exactly one of source_ids or state"):
        PatchState([0], 2)
    with pytest.raises(MechHybridError, match="must return a State"):
        run_with_state(hm, ids, [EditState([0], 2, lambda s: s.recurrent)])
    with pytest.raises(MechHybridError, match="recurrent has 3 dims"):
        State(0, 0, "ssm", torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), ("batch", "head", "d_k", "d_v"))
    with pytest.raises(MechHybridError, match="unknown phase"):
        ReadState([0], 1, phase="later")
    left_padded = torch.ones_like(ids)
    left_padded[0, 0] = 0
    with pytest.raises(MechHybridError, match="unpadded"):
        run_with_state(hm, ids, [], attention_mask=left_padded)


def test_generation_errors(tiny_models):
    _, hm = tiny_models("lfm2")
    ids = random_ids(1, 4, seed=31)
    conv = hm.components.by_kind("conv")[0]
    with pytest.raises(MechHybridError, match="give it phase='prefill'"):
        generate(hm, ids, [Patch([conv], ids)], max_new_tokens=2)
    with pytest.raises(MechHybridError, match="position 1 has phase 'decode'"):
        generate(hm, ids, [EditState([0], 1, lambda s: s, phase="decode")], max_new_tokens=2)
    with pytest.raises(MechHybridError, match="no recurrent tensor"):
        from mechhybrid.state import scale_state

        run_with_state(hm, ids, [EditState([0], 1, scale_state(2.0))])
    with pytest.raises(MechHybridError, match="max_new_tokens"):
        generate(hm, ids, max_new_tokens=0)
    with pytest.raises(MechHybridError, match="no layer with a recurrent state"):
        _, gpt2 = tiny_models("gpt2")
        read_state(gpt2, ids)
