"""The memory_lens analysis on the zoo's GDN hybrid (small grids) and its bad inputs through the CLI."""

from __future__ import annotations

import json

import pytest
import torch

import mechhybrid
from analyses.cli import main
from analyses.memory_lens import MemoryLensConfig, run
from analyses.retrieval.prompts import zoo_grid
from mechhybrid.errors import MechHybridError


@pytest.fixture(scope="module")
def hm_gdn():
    return mechhybrid.load("zoo:hybrid-gdn")


def _rows(result, condition, metric, **coords):
    return [r for r in result.rows if r.condition == condition and r.metric == metric and r.coords == coords]


def test_rows_against_the_model_and_the_identity(hm_gdn):
    cfg = MemoryLensConfig(lengths=(32,), depths=(0.0, 1.0), per_cell=2, edit=True)
    result = run(hm_gdn, cfg)
    prompts = zoo_grid((32,), (0.0, 1.0), 2, 0)
    with torch.no_grad():
        logits = hm_gdn.hf_model(torch.tensor([p.ids for p in prompts])).logits[:, -1]
    right = (logits.argmax(-1) == torch.tensor([p.answer_ids[0] for p in prompts])).float().mean().item()
    (acc,) = _rows(result, "baseline", "acc")
    assert acc.value == pytest.approx(right) and acc.n == 4
    for layer in (0, 1, 2):
        base = {"kind": "linear_attention", "layer": layer}
        # Read with the question's own query, every head, through the model: the model itself.
        (identity,) = _rows(result, "read:query", "top1:model", **base, probe="query")
        assert identity.value == pytest.approx(right)
        for probe in ("query", "key", "value"):
            for head in range(4):
                (row,) = _rows(result, f"read:{probe}", "prob:direct", **base, head=head, probe=probe)
                assert 0.0 <= row.ci_low <= row.value <= row.ci_high <= 1.0
        (flip,) = _rows(result, "edit:key", "flip", kind="linear_attention", layer=layer, probe="key")
        assert 0.0 <= flip.value <= 1.0 and flip.n == 4
    assert result.extra["right"] + result.extra["wrong"] == 4
    assert any("RG-LRU" in note for note in result.extra["notes"])


def test_config_bad_values():
    with pytest.raises(MechHybridError, match="probes must be some of"):
        MemoryLensConfig(probes=("keys",))
    with pytest.raises(MechHybridError, match="beta must lie in"):
        MemoryLensConfig(beta=0.0)


def test_model_without_gdn_or_mamba_through_the_cli(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "memory_lens", "--model", "zoo:transformer", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "memory_lens does not apply" in err[0] and "no Gated DeltaNet or Mamba layer" in err[0]
    assert not out.exists()


def test_run_through_the_cli_writes_the_result(tmp_path, capsys):
    config = tmp_path / "lens.toml"
    config.write_text("[memory_lens]\nlengths = [32]\ndepths = [0.5]\nper_cell = 1\nedit = false\n")
    out = tmp_path / "out"
    code = main(["run", "memory_lens", "--model", "zoo:hybrid-gdn", "--out", str(out), "--config", str(config),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    (path,) = out.glob("results/*/memory_lens.json")
    saved = json.loads(path.read_text())
    assert saved["analysis"] == "memory_lens" and not any(r["condition"].startswith("edit:") for r in saved["rows"])
