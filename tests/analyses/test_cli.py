"""The CLI verbs end to end (driven through main(argv)): run, resume, determinism, corrupt files, bad input,
the text summary, and the study over a model directory."""

from __future__ import annotations

import json
import re

import pytest

from analyses.cli import main
from analyses.study import run_study
from analyses.schema import result_path
from tests.analyses.conftest import CONFIG, word_tokenizer
from tests.conftest import build_tiny


def _run(setup, out, *extra):
    return main(["run", "component_ablation", "--model", setup["model"], "--config", setup["config"],
                 "--out", str(out), "--no-progress", *extra])


def test_run_resume_determinism_and_corrupt_result(setup, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(setup, out) == 0
    path = result_path(out, setup["model"], "component_ablation")
    first = path.read_bytes()
    csv_text = (out / "results.csv").read_text()
    assert csv_text.startswith("model,family,analysis,condition,method,metric,value,ci_low,ci_high,n,seed,"
                               "removal,layer,kind,context_length,trial,n_removed\n")  # then the coordinates
    timings = json.loads((out / "timings.json").read_text())
    (key,) = timings
    assert timings[key]["wall_s"] >= timings[key]["forward_s"] > 0
    res = json.loads(first)
    assert [d["name"] for d in res["data"]] == ["wikitext", "mmlu"]
    assert res["data"][0]["version"].startswith("wikitext:validation:sha256-")
    assert not path.with_name("component_ablation.partial").exists()
    assert sorted(p.name for p in out.iterdir()) == ["results", "results.csv", "timings.json"]  # no lock file
    capsys.readouterr()

    assert _run(setup, out) == 0  # resume: nothing recomputed
    assert "already finished" in capsys.readouterr().out

    out2 = tmp_path / "again"
    assert _run(setup, out2) == 0  # same seed: the same bytes
    assert result_path(out2, setup["model"], "component_ablation").read_bytes() == first
    assert (out2 / "results.csv").read_text() == csv_text

    path.write_text('{"schema_version": 1, "rows": [')  # corrupted: reported, kept aside, recomputed
    capsys.readouterr()
    assert _run(setup, out) == 0
    err = capsys.readouterr().err
    assert "corrupt results file" in err and "component_ablation.json" in err
    assert path.read_bytes() == first
    assert path.with_name("component_ablation.json.corrupt").exists()


def test_results_summary(setup, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["results", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    assert _run(setup, out, "--limit", "2") == 0
    capsys.readouterr()
    assert main(["results", str(out)]) == 0
    text = capsys.readouterr().out
    assert "##### component_ablation" in text and "group:attention" in text and "acc:mmlu" in text


@pytest.mark.parametrize("argv_tail, config, message", [
    (["--method", "sideways"], None, "unknown method"),
    ([], "colour = 'red'\n", "unknown option(s) colour"),
    ([], "random_trials = 1\n", "random_trials"),
    ([], "benchmarks = ['hellaswag']\n", "no data for benchmark(s) ['hellaswag']"),
    ([], "limit = [\n", "is not valid"),
])
def test_bad_input_is_one_line_exit_2(setup, tmp_path, capsys, argv_tail, config, message):
    out = tmp_path / "out"
    cfg = setup["config"]
    if config is not None:
        cfg = tmp_path / "c.toml"
        cfg.write_text(config)
    rc = main(["run", "component_ablation", "--model", setup["model"], "--config", str(cfg), "--out", str(out),
               "--no-progress", *argv_tail])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("mechhybrid: error:")]
    assert rc == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err, err


def test_unknown_analysis_and_out_dir_a_file(setup, tmp_path, capsys):
    assert main(["run", "ablate_everything", "--model", setup["model"], "--out", str(tmp_path)]) == 2
    assert "unknown analysis 'ablate_everything'" in capsys.readouterr().err
    file = tmp_path / "file"
    file.write_text("keep me")
    assert _run(setup, file) == 2
    assert "is not a directory" in capsys.readouterr().err and file.read_text() == "keep me"


def test_study_over_a_model_directory(setup, tmp_path):
    from analyses.ablation import ComponentAblationConfig
    from analyses.configs import build_config, read_config_file
    from analyses.representation import RepresentationConfig

    opts = read_config_file(setup["config"])
    configs = {"component_ablation": build_config(ComponentAblationConfig, opts),
               "representation": RepresentationConfig(kinds=("attention",), limit=3, lm_tokens=24, diag_items=2,
                                                      diag_length=12, data=opts["data"])}
    paths = run_study([setup["model"]], tmp_path, progress=False, configs=configs)
    assert [p.name for p in paths] == ["component_ablation.json", "representation.json"]
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert any(",representation,corr:cosine:mmlu," in r for r in rows)
    assert any(",component_ablation,resilience:1:0,skip,ppl," in r for r in rows)


def _study_config(setup, directory):
    """CONFIG for `study`: shared keys at the top, each analysis's own options in its table."""
    config = directory / "study.toml"
    config.write_text(CONFIG.format(data=setup["root"] / "data").replace("thirds = false\n", "").replace(
        'context_lengths = [12]\nresilience_removed = [1]\n', "") +
        "\n[component_ablation]\nthirds = false\ncontext_lengths = [12]\nresilience_removed = [1]\n"
        "\n[representation]\ndiag_items = 2\ndiag_length = 12\n")
    return config


def test_study_command_with_shared_and_per_analysis_options(setup, tmp_path, capsys):
    config = _study_config(setup, tmp_path)
    argv = ["study", "--models", setup["model"], "--config", str(config), "--out", str(tmp_path / "o"),
            "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    res = json.loads(result_path(tmp_path / "o", setup["model"], "representation").read_text())
    assert res["config"]["diag_items"] == 2 and res["config"]["limit"] == 3 and "mmlu" in res["config"]["data"]
    config.write_text("[representation]\ndiag_items = 0\n")
    assert main(argv) == 2 and "diag_items" in capsys.readouterr().err


def test_run_and_study_take_the_load_flags(setup, tmp_path, capsys):
    """A pickled checkpoint is refused by `run` and `study` (one line, exit 2) until --allow-pickle; with it, the
    models that representation loads beside the studied one (CKA between models) load with the same flags."""
    import shutil

    from mechhybrid.loading import load
    from tests.conftest import save_pickled

    pickled = tmp_path / "pickled"
    save_pickled(load(setup["model"]).hf_model, pickled)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(f"{setup['model']}/{name}", pickled / name)
    assert not list(pickled.glob("*.safetensors"))
    capsys.readouterr()
    assert _run({**setup, "model": str(pickled)}, tmp_path / "a") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-pickle" in err
    assert _run({**setup, "model": str(pickled)}, tmp_path / "a", "--allow-pickle") == 0
    assert result_path(tmp_path / "a", str(pickled), "component_ablation").is_file()

    config = _study_config(setup, tmp_path)
    argv = ["study", "--models", str(pickled), setup["model"], "--config", str(config), "--out",
            str(tmp_path / "s"), "--no-progress"]
    assert main(argv) == 2 and "--allow-pickle" in capsys.readouterr().err
    assert main(argv + ["--allow-pickle"]) == 0, capsys.readouterr().err
    rows = (tmp_path / "s" / "results.csv").read_text()
    assert f"cka_models:{pickled}" in rows  # the safetensors model compared with the pickled one, and back


def test_same_bytes_across_processes_and_hash_seeds(setup, tmp_path):
    import os
    import subprocess
    import sys

    outs, procs = [], []
    for hash_seed in ("1", "2"):  # two interpreters at once: half the wall time of one after the other
        out = tmp_path / f"o{hash_seed}"
        code = "import sys, torch; torch.set_num_threads(1); from analyses.cli import main; sys.exit(main(sys.argv[1:]))"
        argv = ["run", "component_ablation", "--model", setup["model"], "--config", setup["config"],
                "--out", str(out), "--no-progress", "--limit", "2"]
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        procs.append(subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
        outs.append(out)
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    a, b = (result_path(o, setup["model"], "component_ablation").read_bytes() for o in outs)
    assert a == b and (outs[0] / "results.csv").read_bytes() == (outs[1] / "results.csv").read_bytes()


def _frames(stderr: str) -> list[tuple[str, int, int | None]]:
    """Every tqdm frame in captured stderr as (description, done, total or None for a bar without one)."""
    frames = []
    for frame in re.split(r"[\r\n]+", stderr):
        with_total = re.match(r"(.+?): +\d+%\|.*?\| (\d+)/(\d+) \[", frame)
        without = re.match(r"(.+?): (\d+)job \[", frame)
        if with_total:
            frames.append((with_total[1], int(with_total[2]), int(with_total[3])))
        elif without:
            frames.append((without[1], int(without[2]), None))
    return [f for f in frames if not f[0].startswith("Loading weights")]  # transformers' own loading bars


def _final_bar_counts(stderr: str) -> dict[str, tuple[int, int]]:
    """Each bar's last 'done/total', by its description."""
    return {desc: (done, total) for desc, done, total in _frames(stderr) if total is not None}


def _totals_fixed_before_the_first_job(stderr: str) -> None:
    """Every bar shows its total from its first frame and never changes it; the only frames without a total
    are a parallel study's, while it counts (and no job has run)."""
    totals: dict[str, set] = {}
    for desc, done, total in _frames(stderr):
        if total is None:
            assert desc.endswith(", counting jobs") and done == 0, (desc, done)
        else:
            totals.setdefault(desc, set()).add(total)
    assert totals and all(len(t) == 1 for t in totals.values()), totals


def test_study_in_worker_processes_equals_the_sequential_study(setup, tmp_path, capsys):
    """--jobs 2 (one single-threaded worker per model) writes the same Results, byte for byte, as one process
    running the models in turn on one thread; both models' timings survive the concurrent updates; a worker's
    user error comes back as the usual one line, exit 2."""
    import torch

    second = tmp_path / "tiny-llama"
    build_tiny("llama").save_pretrained(second)
    word_tokenizer().save_pretrained(second)
    models = [setup["model"], str(second)]
    config = _study_config(setup, tmp_path)
    # Study A's analyses: retrieval needs the zoo's language, so on these tiny models it would only add skips.
    argv = ["study", "--config", str(config), "--analyses", "component_ablation,representation", "--models", *models]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    capsys.readouterr()
    try:
        assert main(argv + ["--out", str(tmp_path / "seq"), "--jobs", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    sequential_err = capsys.readouterr().err
    sequential_bars = _final_bar_counts(sequential_err)
    assert main(argv + ["--out", str(tmp_path / "par"), "--jobs", "2"]) == 0
    # The workers' progress adds up into one bar that ends where the sequential study's bars end together.
    parallel_err = capsys.readouterr().err
    parallel_bars = _final_bar_counts(parallel_err)
    _totals_fixed_before_the_first_job(sequential_err)
    _totals_fixed_before_the_first_job(parallel_err)
    assert len(sequential_bars) == 4 and all(done == total > 0 for done, total in sequential_bars.values())
    jobs = sum(total for _, total in sequential_bars.values())
    assert parallel_bars == {"study (2 processes)": (jobs, jobs)}
    for name in models:
        for analysis in ("component_ablation", "representation"):
            seq = result_path(tmp_path / "seq", name, analysis).read_bytes()
            assert seq == result_path(tmp_path / "par", name, analysis).read_bytes(), (name, analysis)
    assert (tmp_path / "seq" / "results.csv").read_bytes() == (tmp_path / "par" / "results.csv").read_bytes()
    assert (tmp_path / "seq" / "study.json").read_bytes() == (tmp_path / "par" / "study.json").read_bytes()
    assert len(json.loads((tmp_path / "par" / "timings.json").read_text())) == 4

    capsys.readouterr()
    assert main(argv[:-2] + [setup["model"], str(tmp_path / "absent"), "--out", str(tmp_path / "bad"),
                             "--jobs", "2", "--no-progress"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mechhybrid: error:")]
    assert len(errors) == 1 and "absent" in errors[0]
    # The other worker's model finished: results.csv holds it, in step with the Results on disk, and the
    # study's notes say what ran.
    _assert_table_in_step(tmp_path / "bad", {setup["model"]})
    assert (tmp_path / "bad" / "study.json").read_bytes() == (tmp_path / "seq" / "study.json").read_bytes()


def _assert_table_in_step(out, models: set[str]) -> None:
    """results.csv lists exactly the rows of the Result files under `out`, and they are of `models`."""
    import csv

    with open(out / "results.csv", newline="") as fh:
        table = sorted((r["model"], r["analysis"], r["condition"], r["method"], r["metric"])
                       for r in csv.DictReader(fh))
    stored = sorted((res["model"]["name"], res["analysis"], r["condition"], r["method"], r["metric"])
                    for res in (json.loads(p.read_text()) for p in (out / "results").glob("*/*.json"))
                    for r in res["rows"])
    assert table == stored and {row[0] for row in table} == models


def test_a_study_that_stops_on_a_bad_model(setup, tmp_path, capsys):
    """Sequential study: the good model's finished Results stay and results.csv is in step with them; a bad
    model first means no work at all, and no folder."""
    config = _study_config(setup, tmp_path)
    absent = str(tmp_path / "absent")
    out = tmp_path / "good-then-bad"
    argv = ["study", "--config", str(config), "--analyses", "component_ablation,representation", "--no-progress",
            "--jobs", "1", "--models"]
    capsys.readouterr()
    assert main(argv + [setup["model"], absent, "--out", str(out)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and absent in errors[0], errors
    assert result_path(out, setup["model"], "component_ablation").is_file()
    _assert_table_in_step(out, {setup["model"]})

    first_bad = tmp_path / "bad-first"
    assert main(argv + [absent, setup["model"], "--out", str(first_bad)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not first_bad.exists()
