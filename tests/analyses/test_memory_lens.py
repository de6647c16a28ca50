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


@pytest.mark.parametrize("zoo", ["zoo:ssm-mamba2", "zoo:hybrid-jamba"])
def test_mamba_edit_rows_against_run_with_state(zoo):
    """Mamba states get the rank-1 edit (probe query, kind ssm): each layer's flip fraction is redone here by
    editing the state before the question token through `run_with_state` (not the lens's 1-token runs)."""
    from analyses.memory_lens.measure import other_values
    from mechhybrid.lens import carried, lens_components, memory_lens, write_readouts
    from mechhybrid.state import EditState, run_with_state

    hm = mechhybrid.load(zoo)
    cfg = MemoryLensConfig(lengths=(32,), depths=(0.0, 1.0), per_cell=2, probes=("query",), through_model=False)
    result = run(hm, cfg)
    prompts = zoo_grid((32,), (0.0, 1.0), 2, 0)
    ids = torch.tensor([p.ids for p in prompts])
    others = other_values(prompts, 0)
    counter = ids.clone()
    for row, (p, other) in enumerate(zip(prompts, others)):
        counter[row, list(p.value_positions)] = torch.tensor(other)
    pre, lenses = memory_lens(hm, ids)
    counter_pre, counter_lenses = memory_lens(hm, counter)
    layers = lens_components(hm)
    assert layers and all(c.kind == "ssm" for c in layers.values())
    fns = {}
    for layer in layers:
        fns[layer] = write_readouts(carried(pre, lenses[layer])[0], carried(counter_pre, counter_lenses[layer])[1])
    for layer in list(layers) + [None]:
        edits = [EditState(at, ids.shape[1] - 2, fn) for at, fn in fns.items() if layer in (None, at)]
        with torch.no_grad():
            top = run_with_state(hm, ids, edits).logits[:, -1].argmax(-1)
        flipped = (top == torch.tensor([o[0] for o in others])).float().mean().item()
        coords = dict(kind="ssm", probe="query", **({} if layer is None else {"layer": layer}))
        (row,) = _rows(result, "edit:query", "flip", **coords)
        assert row.value == pytest.approx(flipped) and row.n == 4
        (changed,) = _rows(result, "edit:query", "changed", **coords)
        assert changed.value == pytest.approx((top != pre.logits.argmax(-1)).float().mean().item())
    assert not any(r.condition == "edit:key" for r in result.rows)
    assert any("Mamba edits" in note for note in result.extra["notes"])
