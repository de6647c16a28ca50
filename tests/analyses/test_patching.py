"""The patching analysis: its zoo pairs, its numbers against a direct `mechhybrid.tracing.sweep` call, the JSONL
path through the CLI (and one line, exit 2, for a bad file), attribution agreement against a stand-in estimator,
and one shipped zoo model end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import mechhybrid
import mechhybrid.tracing as tracing
from analyses import studies
from analyses.cli import main
from analyses.patching import FULL, SPEC, PatchingConfig, run
from analyses.patching import attribution as attr
from analyses.patching.pairs import TASKS, file_pairs, zoo_pairs
from analyses.patching.sweeps import run_sweep, site_infos
from analyses.schema import read_result, result_path
from mechhybrid.errors import MechHybridError
from mechhybrid.results import read_side
from mechhybrid.tracing import LogitDiff, residual_sites, state_sites, sweep
from tests.analyses.conftest import word_tokenizer
from tests.conftest import build_tiny

PAIRS = [
    {"prompt": "the cat is red and the dog is blue what is the cat",
     "corrupted_prompt": "the cat is green and the dog is blue what is the cat",
     "answer": " red", "corrupted_answer": " green"},
    {"prompt": "the sun is red and the moon is blue what is the moon",
     "corrupted_prompt": "the sun is red and the moon is green what is the moon",
     "answer": " blue", "corrupted_answer": " green"},
    {"prompt": "the dog is blue and the cat is red what is the dog",
     "corrupted_prompt": "the sun is blue and the cat is red what is the dog",
     "answer": " blue", "corrupted_answer": None},
]


def _jsonl(path, pairs):
    path.write_text("\n".join(json.dumps(p) for p in pairs) + "\n")
    return path


@pytest.fixture(scope="module")
def hm_words():
    """A tiny qwen3_5 hybrid (three Gated DeltaNet layers, one attention layer) with the word tokenizer."""
    model = build_tiny("qwen3_5_text")
    assert sum(p.numel() for p in model.parameters()) < 200_000
    return mechhybrid.load((model, word_tokenizer()))


@pytest.fixture
def registered(monkeypatch):
    """`mechhybrid run patching` works before the study lists the analysis (the lead adds its Step)."""
    if "patching" not in [s.name for s in studies.STUDY]:
        step = studies.Step(SPEC, zoo_seconds=0.0, full=FULL, protocol="test")
        monkeypatch.setattr(studies, "STUDY", studies.STUDY + (step,))


@pytest.mark.parametrize("task", list(TASKS))
def test_zoo_pairs_line_up_and_swap_what_they_say(task):
    from mechhybrid.zoo.language import NAMES

    pairs = zoo_pairs(task, 4, 64, 0.5, seed=1)
    assert pairs.n == 4 and len({len(c) for c in pairs.clean}) == 1  # one shape: positions line up
    length = len(pairs.clean[0])
    if task.startswith("needle"):
        assert length == 64
    elif task.startswith("recall"):
        assert 59 <= length <= 64
    for b in range(pairs.n):
        diff = [p for p, (c, x) in enumerate(zip(pairs.clean_text[b], pairs.corrupted_text[b])) if c != x]
        swapped = [pairs.clean_text[b][p] for p in diff]
        if pairs.corruption == "value":
            assert len(diff) in (1, 2) and pairs.corrupted_answers[b][0] != pairs.answers[b][0]
            value = slice(diff[0], diff[0] + 2)
            assert pairs.corrupted_text[b][value] != pairs.clean_text[b][value]
        elif pairs.corruption == "key":
            assert len(diff) == 1 and swapped[0] in NAMES and pairs.corrupted_answers[b] is None
            assert pairs.clean_text[b][-2] == swapped[0]  # the question asks the swapped key
        else:
            assert len(diff) == 1 and pairs.corrupted_answers[b] != pairs.answers[b]
    # What is swapped sits at the same token in every pair: positions line up across pairs.
    assert len({tuple(p for p, (c, x) in enumerate(zip(cs, xs)) if c != x)[0]
                for cs, xs in zip(pairs.clean_text, pairs.corrupted_text)}) == 1


@pytest.mark.parametrize("site_set", ["residual", "states", "heads"])
def test_numbers_equal_a_direct_sweep(hm_words, tmp_path, site_set):
    pairs = file_pairs(_jsonl(tmp_path / "p.jsonl", PAIRS), hm_words.tokenizer, 8)
    assert pairs.n == 3 and pairs.corrupted_answers[2] is None
    sites = site_infos(hm_words, site_set)[0]
    for direction in ("denoise", "noise"):
        direct = sweep(hm_words, pairs.clean, pairs.corrupted, sites, LogitDiff(pairs.answers, pairs.corrupted_answers),
                       direction=direction)
        batch = run_sweep(hm_words, pairs, site_set, direction, per_pair=False, seed=0)
        one_by_one = run_sweep(hm_words, pairs, site_set, direction, per_pair=True, seed=0)
        assert batch.positions == direct.positions == tuple(range(len(pairs.clean[0])))
        # A random tiny model's clean - corrupted gap is ~1e-3 logits, so the tolerances are in raw logits: float32
        # rounding of the sweep's own normalisation (raw ~1.6, eps 1.2e-7) is 1e-6 / gap normalised, and each
        # pair alone is another forward (other batch shapes, other summation order).
        gap = abs(direct.clean_metric - direct.corrupted_metric)
        np.testing.assert_allclose(batch.values, direct.values.numpy(), atol=max(1e-4, 1e-6 / gap))
        np.testing.assert_allclose(one_by_one.values, direct.values.numpy(), atol=max(1e-4, 1e-5 / gap))
        assert math.isclose(one_by_one.clean, direct.clean_metric, abs_tol=1e-4)
        assert batch.ci_low is None and one_by_one.ci_low is not None
        finite = np.isfinite(one_by_one.ci_low)
        assert finite.all() and (one_by_one.ci_low <= one_by_one.ci_high + 1e-12).all()


def test_rows_carry_the_sweep_and_the_tokens(hm_words, tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", PAIRS)
    cfg = PatchingConfig(pairs_file=str(path), sites=("residual", "states"), directions=("denoise",),
                         attribution=())
    result = run(hm_words, cfg)
    pairs = file_pairs(path, hm_words.tokenizer, 8)
    direct = sweep(hm_words, pairs.clean, pairs.corrupted, residual_sites(hm_words, ("pre",)),
                   LogitDiff(pairs.answers, pairs.corrupted_answers))
    entries = [r for r in result.rows if r.method == "patch"]
    n_positions = len(pairs.clean[0])
    tolerance = max(1e-4, 1e-6 / abs(direct.clean_metric - direct.corrupted_metric))  # raw 1e-6 (see above)
    assert len(entries) == (hm_words.n_layers + len(state_sites(hm_words))) * n_positions
    for row in entries:
        if row.coords["site_set"] == "residual":
            assert row.value == pytest.approx(direct.value(row.coords["site"], row.coords["position"]), abs=tolerance)
        assert row.n == 3 and row.coords["token"] and row.coords["direction"] == "denoise"
    tokens = {r.coords["position"]: r.coords["token"] for r in entries}
    assert tokens[0] == "<s>" and tokens[4] == "red→green"  # the first pair's token, and what it swaps to
    assert [s.name for s in result.side] == ["tokens"] and len(result.side_data["tokens"]) == 3 * n_positions


def test_attribution_agreement_against_a_stand_in(hm_words, tmp_path, monkeypatch):
    path = _jsonl(tmp_path / "p.jsonl", PAIRS)
    cfg = PatchingConfig(pairs_file=str(path), sites=("residual",), directions=("denoise",), attribution=("atp", "ig"),
                         top_k=3)

    def stand_in(hm, clean, corrupted, sites, metric, positions=None, direction="denoise", method="atp", ig_steps=5):
        exact = sweep(hm, clean, corrupted, sites, metric, positions, direction)
        if method == "ig":  # every entry right but the largest, which it calls nothing
            flat = exact.values.flatten()
            flat[flat.abs().argmax()] = 0.0
            exact.values = flat.view_as(exact.values)
        return exact

    monkeypatch.setattr(tracing, "attribute", stand_in, raising=False)
    result = run(hm_words, cfg)
    rows = {(r.coords.get("estimator"), r.metric): r for r in result.rows if r.method == "attribution"
            and r.metric in ("spearman", "top_k_overlap")}
    assert rows[("atp", "spearman")].value == pytest.approx(1.0)
    assert rows[("atp", "top_k_overlap")].value == 1.0
    exact = np.array([r.value for r in result.rows if r.method == "patch"])
    k = min(3, int((np.abs(exact) >= attr.EFFECT_FLOOR).sum()))
    assert rows[("ig", "top_k_overlap")].value == pytest.approx((k - 1) / k)
    missed = [r for r in result.rows if r.metric == "top_k_missed"]
    assert len(missed) == 1 and missed[0].coords["estimator"] == "ig"
    assert abs(missed[0].value) == pytest.approx(np.abs(exact).max())
    assert rows[("ig", "spearman")].value < 1.0

    monkeypatch.delattr(tracing, "attribute")
    result = run(hm_words, cfg)
    assert result.extra["attribution"] == attr.NOT_AVAILABLE and attr.NOT_AVAILABLE in result.extra["notes"]
    assert not [r for r in result.rows if r.method == "attribution"]


def _config(tmp_path, pairs_file, **options):
    lines = [f'pairs_file = "{pairs_file}"', 'sites = ["residual", "components"]', 'directions = ["denoise", "noise"]',
             "attribution = []"] + [f"{k} = {json.dumps(v)}" for k, v in options.items()]
    path = tmp_path / "patching.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_jsonl_pairs_through_the_cli(setup, tmp_path, registered, capsys):
    pairs = _jsonl(tmp_path / "pairs.jsonl", PAIRS)
    out = tmp_path / "out"
    argv = ["run", "patching", "--model", setup["model"], "--config", _config(tmp_path, pairs), "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    result = read_result(result_path(out, setup["model"], "patching"))
    n_sites = 4 + 8  # a tiny qwen2: 4 residual sites, 4 attention + 4 MLP components
    entries = [r for r in result.rows if r.method == "patch"]
    assert len(entries) == n_sites * 14 * 2 and all(r.value is None or math.isfinite(r.value) for r in entries)
    assert len(read_side(result, "tokens", out)) == 3 * 14
    assert result.data[0].n == 3 and "patch" in result.extra["semantics"]


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "the cat is red", "corrupted_prompt": "the cat is very red", "answer": " red", '
     '"corrupted_answer": " blue"}', "line 2: prompt tokenises to 5 tokens and corrupted_prompt to 6"),
    ('{"prompt": "the cat is red", "corrupted_prompt": "the dog is red", "answer": " red", '
     '"corrupted_answer": " red"}', "line 2: answer ' red' and corrupted_answer ' red' do not differ"),
    ('{"prompt": "the cat", "corrupted_prompt": "the dog"}', "line 2: expected an object with prompt"),
    ("not json", "line 2: not JSON"),
])
def test_bad_jsonl_is_one_line_exit_2(setup, tmp_path, registered, capsys, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(PAIRS[0]) + "\n" + line + "\n")
    out = tmp_path / "out"
    argv = ["run", "patching", "--model", setup["model"], "--config", _config(tmp_path, path), "--out", str(out),
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not out.exists()


def test_config_refuses_unknown_names():
    with pytest.raises(MechHybridError, match="sites: unknown 'layers'"):
        PatchingConfig(sites=("layers",))
    with pytest.raises(MechHybridError, match="tasks: unknown"):
        PatchingConfig(tasks=("needle",))


def test_a_shipped_zoo_model_end_to_end():
    hm = mechhybrid.load("zoo:hybrid-gdn")
    cfg = PatchingConfig(tasks=("facts_subject",), pairs=2, sites=("residual", "states"), directions=("denoise",),
                         attribution=())
    torch.manual_seed(0)
    result = run(hm, cfg)
    entries = [r for r in result.rows if r.method == "patch"]
    n_sites = hm.n_layers + len(state_sites(hm))
    assert len(entries) == n_sites * 6  # "<bos> the capital|language of COUNTRY is": every site, every position
    assert {(r.coords["site"], r.coords["position"]) for r in entries} == {
        (s, p) for s in [f"L{i}.resid_pre" for i in range(hm.n_layers)] + [x.name for x in state_sites(hm)]
        for p in range(6)}
    assert all(r.value is not None and math.isfinite(r.value) for r in entries)
    clean, corrupted = (next(r.value for r in result.rows if r.coords.get("run") == run_)
                        for run_ in ("clean", "corrupted"))
    assert clean > corrupted + 1.0  # the zoo model knows its facts: the corruption moves the answer
    # Patching the residual stream into the first layer at the swapped subject restores the clean run exactly
    # (everything after the embedding of that token is recomputed from it), and nothing before it does.
    first = {r.coords["position"]: r.value for r in entries if r.coords["site"] == "L0.resid_pre"}
    assert first[4] == pytest.approx(1.0, abs=1e-4) and all(abs(first[p]) < 1e-4 for p in range(4))


def _ranks(values):
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks


def test_spearman_over_the_entries_that_move_the_metric():
    from analyses.patching.sweeps import SetSweep

    rng = np.random.default_rng(0)
    exact = rng.normal(0, 1e-4, (6, 10))  # a tail that changes almost nothing
    exact[0, 3], exact[2, 5], exact[4, 7], exact[5, 9], exact[1, 8] = 0.9, 0.5, 0.3, -0.2, 0.05
    estimate = rng.normal(0, 1e-4, exact.shape)  # the tail in another order
    moving = np.abs(exact) >= attr.EFFECT_FLOOR
    estimate[moving] = exact[moving] * 2.0 + 0.01  # the same order where it matters
    swept = SetSweep("t", "residual", "denoise", tuple(range(6)), tuple(range(10)), exact, None, None, 1.0, 0.0, 1,
                     "test", (True,) * 10)
    found = attr.agreement(swept, estimate, k=3, seed=0)
    x, y = exact.ravel(), estimate.ravel()
    assert found.rho == pytest.approx(np.corrcoef(_ranks(x), _ranks(y))[0, 1])
    assert found.rho < 0.5 and found.n == 60
    assert found.n_effects == 5 and found.rho_effects == pytest.approx(1.0)
    estimate[moving] = -exact[moving]  # reversed where it matters
    assert attr.agreement(swept, estimate, k=3, seed=0).rho_effects == pytest.approx(-1.0)
