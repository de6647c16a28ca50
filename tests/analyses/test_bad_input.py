"""Bad input through the real CLI: one stderr line, exit code 2, and the output folder as it was (a fresh one not
created at all, a used one with nothing finished lost). Output folders in trouble (read-only, disk full) too.

Classes covered here: config values of the wrong type, a config section that is not a table, a negative seed,
a data file off the public schema, a read-only output folder, a full disk, and a model with non-finite weights.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

from analyses.schema import model_slug, result_path
from mechhybrid.cli import main
from tests.analyses import datasets_fixtures as fx
from tests.analyses.conftest import word_tokenizer
from tests.conftest import build_tiny


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder (None) under `folder`, by relative path."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def _one_line(capsys, argv) -> str:
    """Run the CLI; assert exit code 2 and exactly one stderr line, the error; return it."""
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("mechhybrid: error: "), (rc, err)
    return lines[0]


def _run_argv(setup, out, config=None, *extra):
    return ["run", "component_ablation", "--model", setup["model"], "--config", str(config or setup["config"]),
            "--out", str(out), "--no-progress", *extra]


@pytest.mark.parametrize("config, message", [
    ("limit = 2.5\n", "limit must be an integer, got 2.5 (float)"),
    ('limit = "many"\n', "limit must be an integer, got 'many' (str)"),
    ('seed = "x"\n', "seed must be an integer, got 'x'"),
    ("batch_size = 1.5\n", "batch_size must be an integer, got 1.5"),
    ('budget_mb = "lots"\n', "budget_mb must be a number, got 'lots'"),
    ("include_mlp = 1\n", "include_mlp must be true or false, got 1"),
    ('kinds = "attention"\n', "kinds must be a list of strings, got 'attention'"),
    ("context_lengths = [12, 'x']\n", "context_lengths must be a list of integers, got [12, 'x'] (list)"),
    ("[data]\nmmlu = 3\n", "data.mmlu must be a file or directory path (a string), got 3"),
    ('data = "somewhere"\n', "data must be a table, got 'somewhere'"),
    ("seed = -1\n", "seed must be >= 0, got -1"),
    ('representation = "fast"\n', "representation must be a table of options ([representation]), got 'fast'"),
    ("component_ablation = 3\n", "component_ablation must be a table of options"),
])
def test_config_values_of_the_wrong_type(setup, tmp_path, capsys, config, message):
    path = tmp_path / "c.toml"
    path.write_text(config)
    out = tmp_path / "out"
    line = _one_line(capsys, _run_argv(setup, out, path))
    assert message in line, line
    assert not out.exists()  # nothing created: the error comes before any work


def test_a_negative_seed_flag_fails_before_any_work(setup, tmp_path, capsys):
    out = tmp_path / "out"
    assert "seed must be >= 0, got -1" in _one_line(capsys, _run_argv(setup, out, None, "--seed", "-1"))
    assert not out.exists()


def test_a_study_config_section_that_is_not_a_table(setup, tmp_path, capsys):
    path = tmp_path / "study.toml"
    path.write_text('limit = 3\ncomponent_ablation = "fast"\n')
    out = tmp_path / "out"
    line = _one_line(capsys, ["study", "--models", setup["model"], "--config", str(path), "--out", str(out),
                              "--no-progress", "--no-report"])
    assert "component_ablation must be a table of options" in line and not out.exists()


def test_a_data_file_off_the_public_schema(setup, tmp_path, capsys):
    records = fx.mmlu(4)
    records[2]["answer"] = "E"
    bad = fx.write(tmp_path / "mmlu" / "test.jsonl", records)
    config = tmp_path / "c.toml"
    config.write_text(f'limit = 4\nkinds = ["attention"]\n[data]\nmmlu = "{bad}"\n')
    out = tmp_path / "out"
    line = _one_line(capsys, _run_argv(setup, out, config))
    assert f"mmlu: {bad} record 2: field 'answer' must be an index 0-3 or a letter A-D" in line, line
    assert not out.exists()


@pytest.mark.parametrize("where", ["out", "model folder"])
def test_a_read_only_output_folder(setup, tmp_path, capsys, monkeypatch, where):
    out = tmp_path / "out"
    model_dir = out / "results" / model_slug(setup["model"])
    model_dir.mkdir(parents=True)
    (model_dir / "notes.txt").write_text("keep me")
    read_only = out if where == "out" else model_dir
    before = _tree(out)
    read_only.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permission bits: make os.access answer what it answers any other user
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
            False if Path(path) == read_only and mode & os.W_OK else real(path, mode, **kw)))
    try:
        line = _one_line(capsys, _run_argv(setup, out))
    finally:
        read_only.chmod(0o755)
    assert f"output folder {read_only} is not writable" in line, line
    assert _tree(out) == before


def _disk_full_at(monkeypatch, file_name: str) -> list[Path]:
    """Writes of `file_name` put half their text on disk, then fail as a full disk does; returns the paths."""
    real, hits = Path.write_text, []

    def write_text(self, data, *args, **kwargs):
        if self.name == file_name:
            hits.append(self)
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    return hits


def test_a_full_disk_at_the_first_checkpoint_leaves_a_fresh_folder_absent(setup, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    hits = _disk_full_at(monkeypatch, "_meta.json.tmp")
    line = _one_line(capsys, _run_argv(setup, out, None, "--limit", "2"))
    assert hits and "No space left on device" in line and str(hits[0])[: -len(".tmp")] in line, line
    assert not out.exists()


def test_a_full_disk_at_the_result_keeps_the_finished_work(setup, tmp_path, capsys, monkeypatch):
    """The Result cannot be written: one line, no temporary file, and the checkpoints stay, so the next run
    scores nothing again and writes the very bytes of a run that never failed."""
    import analyses.evaluate as evaluate_mod

    out, clean = tmp_path / "out", tmp_path / "clean"
    assert main(_run_argv(setup, clean, None, "--limit", "2")) == 0
    with monkeypatch.context() as patch:
        hits = _disk_full_at(patch, "component_ablation.json.tmp")
        line = _one_line(capsys, _run_argv(setup, out, None, "--limit", "2"))
    path = result_path(out, setup["model"], "component_ablation")
    assert hits and line == f"mechhybrid: error: cannot write {path}: No space left on device"
    files = _tree(out)
    assert not [f for f in files if f.endswith(".tmp")] and not path.exists()
    assert any(".partial/" in f for f in files) and "results.csv" not in files

    scored = []
    real = evaluate_mod.score_task
    monkeypatch.setattr(evaluate_mod, "score_task", lambda *a, **k: scored.append(1) or real(*a, **k))
    assert main(_run_argv(setup, out, None, "--limit", "2")) == 0
    assert scored == []  # every condition came back from its checkpoint
    assert path.read_bytes() == result_path(clean, setup["model"], "component_ablation").read_bytes()
    assert (out / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()
    assert sorted(_tree(out)) == sorted(_tree(clean))  # no temporary file, no lock file, no leftovers


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory):
    """A tiny qwen2 checkpoint whose layer-1 attention output projection holds one NaN."""
    directory = tmp_path_factory.mktemp("nan") / "nan-qwen2"
    model = build_tiny("qwen2", seed=2)
    with torch.no_grad():
        model.model.layers[1].self_attn.o_proj.weight[0, 0] = float("nan")
    model.save_pretrained(directory)
    word_tokenizer().save_pretrained(directory)
    return str(directory)


def test_a_model_with_a_nan_weight_ends_with_one_line_naming_where(setup, nan_model, tmp_path, capsys):
    out = tmp_path / "out"
    line = _one_line(capsys, _run_argv({**setup, "model": nan_model}, out, None, "--limit", "2"))
    assert f"model {nan_model} produced non-finite logits" in line, line
    assert "first non-finite value in L1.attention (model.layers.1.self_attn)" in line, line
    assert not out.exists()  # no Result of nulls, no checkpoint, no folder
