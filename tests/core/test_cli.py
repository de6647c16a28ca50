"""The CLI, driven through main(argv): output on success, one line and exit code 2 on every user error."""

from __future__ import annotations

import json

from mechhybrid.cli import main
from tests.conftest import build_tiny, save_pickled


def test_inspect_table_and_json(tmp_path, capsys):
    build_tiny("falcon_h1").save_pretrained(tmp_path)
    assert main(["inspect", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "family falcon_h1, parallel, 4 layers" in text
    assert "model.layers.2.mamba" in text and "components: 12 (ssm: 4, attention: 4, mlp: 4)" in text
    assert main(["inspect", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["family"] == "falcon_h1" and len(data["components"]) == 12
    assert data["components"][1] == {"name": "L0.attention", "layer": 0, "kind": "attention",
                                     "path": "model.layers.0.self_attn", "heads": 4,
                                     "params": data["components"][1]["params"], "writes_to": "residual",
                                     "residual_scale": 1.0}


def _one_line_error(capsys, argv) -> str:
    capsys.readouterr()  # drop what the test's own setup printed
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert "not found" in _one_line_error(capsys, ["inspect", str(tmp_path / "absent")])
    save_pickled(build_tiny("llama"), tmp_path / "pickled")
    assert "--allow-pickle" in _one_line_error(capsys, ["inspect", str(tmp_path / "pickled")])
    assert main(["inspect", str(tmp_path / "pickled"), "--allow-pickle"]) == 0
    capsys.readouterr()
    assert "unknown dtype" in _one_line_error(capsys, ["inspect", str(tmp_path / "pickled"), "--dtype", "floaty"])
    _one_line_error(capsys, ["no-such-command"])


def test_zoo_and_extension_commands_are_wired(capsys):
    assert main(["zoo", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert isinstance(listed, list)
    assert "unknown zoo model 'no-such-model'" in _one_line_error(capsys, ["inspect", "zoo:no-such-model"])
    assert "unknown zoo model" in _one_line_error(capsys, ["zoo", "show", "no-such-model"])
    assert "unknown analysis 'no-such-analysis'" in _one_line_error(capsys, ["run", "no-such-analysis", "--model", "zoo:x"])


def test_a_bare_zoo_name_is_answered_with_the_zoo_prefix(tmp_path, monkeypatch, capsys):
    from mechhybrid.zoo.registry import zoo_names

    name = zoo_names()[0]
    monkeypatch.chdir(tmp_path)  # no folder of that name here
    err = _one_line_error(capsys, ["inspect", name])
    assert err.endswith(f"; did you mean zoo:{name}?"), err
    err = _one_line_error(capsys, ["run", "component_ablation", "--model", name, "--out", str(tmp_path / "o")])
    assert err.endswith(f"; did you mean zoo:{name}?") and not (tmp_path / "o").exists(), err
    (tmp_path / name).mkdir()  # a folder of that name is what the user meant: no suggestion
    assert "did you mean" not in _one_line_error(capsys, ["inspect", name])
    assert "did you mean" not in _one_line_error(capsys, ["inspect", "no-such-model"])
