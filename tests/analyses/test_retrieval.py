"""The retrieval analysis: prompts, scorers, and generation under phase-limited ablations, checked against a
plain-torch reference (forward hooks and a greedy loop without a cache)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses.retrieval import RetrievalConfig
from analyses.retrieval.analysis import plan, run
from analyses.retrieval.conditions import kind_conditions
from analyses.retrieval.generate import decoder, generate_scores
from analyses.retrieval.prompts import just_read_twice, text_grid, zoo_grid
from analyses.retrieval.scorers import score_exact, score_string_match_all, score_substring
from mechhybrid.errors import MechHybridError


def test_zoo_grid_prompts_hold_their_needle():
    from mechhybrid.zoo.tokenizer import encode_words

    prompts = zoo_grid((64, 128), (0.0, 0.5, 1.0), per_cell=2, seed=3)
    assert len(prompts) == 12
    question = encode_words(["what", "is", "the", "code", "of"])
    for p in prompts:
        assert len(p.ids) + len(p.answer_ids) + 1 == p.context_length  # the doc minus its answer and "."
        assert tuple(p.ids[v] for v in p.value_positions) == p.answer_ids
        assert list(p.ids[-7:-2]) == question
        assert p.needle_positions[0] < p.value_positions[0] <= p.value_positions[-1] < p.needle_positions[-1]
    # Deeper needles sit later; another seed draws other prompts.
    at = {(p.context_length, p.depth): p.needle_positions[0] for p in prompts if p.index == 0}
    assert at[(128, 0.0)] < at[(128, 0.5)] < at[(128, 1.0)]
    assert [p.ids for p in zoo_grid((64,), (0.5,), 2, seed=4)] != [p.ids for p in prompts[2:4]]


def test_just_read_twice_repeats_the_context_before_the_question():
    p = zoo_grid((64,), (0.5,), 1, seed=0)[0]
    twice = just_read_twice(p)
    context = p.ids[1:-7]
    assert twice.ids == p.ids[:1] + context + context + p.ids[-7:]
    assert tuple(twice.ids[v] for v in twice.value_positions) == p.answer_ids
    assert twice.value_positions[0] > len(context)  # the copy nearer the question


class _WordTokenizer:
    """Whitespace tokens, ids in order of first sight: enough to place a needle by hand."""

    bos_token_id = None

    def __init__(self):
        self.ids: dict[str, int] = {}

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.ids.setdefault(w, len(self.ids)) for w in text.split()]}


def test_text_grid_places_the_needle_after_a_sentence_end(tmp_path):
    hay = tmp_path / "essay.txt"
    hay.write_text(" ".join(f"filler sentence number {i} ends here." for i in range(40)))
    tok = _WordTokenizer()
    prompts = text_grid(tok, hay, (60, 120), (0.0, 0.5, 1.0), "the magic code is red blue .",
                        "what is the magic code ?", "the magic code is", "red blue")
    assert len(prompts) == 6
    for p in prompts:
        assert tuple(p.ids[v] for v in p.value_positions) == p.answer_ids
        before = p.ids[:p.needle_positions[0]]
        assert not before or before[-1] == tok.ids["here."]  # inserted after a sentence end
    depth0, depth1 = prompts[0], prompts[2]
    assert depth0.needle_positions[0] == 0 and depth1.needle_positions[0] > 50
    with pytest.raises(MechHybridError, match="not found"):
        text_grid(tok, tmp_path / "missing.txt", (60,), (0.5,), "n", "q", "p", "a")


def test_scorers():
    assert score_exact([5, 6, 7], (5, 6)) == 1.0 and score_exact([5, 7, 6], (5, 6)) == 0.0
    answer = "eat a sandwich and sit in Dolores Park on a sunny day"  # 12 words -> 5 chunks of <= 3
    assert score_substring("I would eat a sandwich", answer) == pytest.approx(1 / 4)  # 4 chunks of 3 words
    assert score_substring("EAT A SANDWICH and sit in dolores park on a sunny day", answer) == 1.0
    assert score_string_match_all("the code is 3 4 .", "3 4") == 1.0
    assert score_string_match_all("the code is 3 5 .", ["3 4", "3 5"]) == 0.5


@pytest.fixture(scope="module")
def hm_gdn():
    import mechhybrid

    return mechhybrid.load("zoo:hybrid-gdn")


def _reference_greedy(hm, prompt, new, zero_from, zero_to, kind="attention"):
    """Greedy decoding by full forwards without a cache, the kind's outputs zeroed at positions
    [zero_from, zero_to) by plain forward hooks."""
    model = hm.hf_model
    modules = [hm.module(c.path) for c in hm.components if c.kind == kind]

    def hook(module, args, output):
        out = output[0] if isinstance(output, tuple) else output
        out = out.clone()
        out[:, zero_from:zero_to] = 0
        return (out,) + tuple(output[1:]) if isinstance(output, tuple) else out

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        ids = torch.tensor([prompt.ids])
        with torch.no_grad():
            for _ in range(new):
                nxt = model(input_ids=ids).logits[0, -1].argmax()
                ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    finally:
        for h in handles:
            h.remove()
    return ids[0, len(prompt.ids):].tolist()


@pytest.mark.parametrize("phase", ["prefill", "generation", "all"])
def test_phase_limited_ablation_equals_hooked_reference(hm_gdn, phase):
    prompts = zoo_grid((64, 96), (0.2, 0.8), per_cell=1, seed=1)
    cond = next(c for c in kind_conditions(hm_gdn, ["attention"], (phase,)))
    scores = generate_scores(hm_gdn, prompts, cond, max_new_tokens=3, batch_size=3, generation_phase="answer",
                             decode=decoder(hm_gdn, True))
    for i, p in enumerate(prompts):
        n = len(p.ids)
        span = {"prefill": (0, n), "generation": (n - 1, None), "all": (0, None)}[phase]
        ref = _reference_greedy(hm_gdn, p, 3, *span)
        assert scores["exact"][i] == float(tuple(ref[:2]) == p.answer_ids)


def test_run_rows_and_baseline_against_reference(hm_gdn):
    cfg = RetrievalConfig(lengths=(64,), depths=(0.0, 1.0), per_cell=2, phases=("all",), kinds=("attention",))
    result = run(hm_gdn, cfg)
    prompts = zoo_grid((64,), (0.0, 1.0), 2, seed=0)
    expected = np.mean([tuple(_reference_greedy(hm_gdn, p, 3, 0, 0)[:2]) == p.answer_ids for p in prompts])
    overall = {(r.condition, r.metric): r for r in result.rows if "depth" not in r.coords
               and "context_length" not in r.coords}
    assert overall[("baseline", "acc:exact")].value == pytest.approx(expected)
    drop = overall[("zero:attention:all", "drop:exact")]
    assert drop.value == pytest.approx(expected - overall[("zero:attention:all", "acc:exact")].value)
    cells = [r for r in result.rows if r.condition == "baseline" and "depth" in r.coords]
    assert sorted((r.coords["context_length"], r.coords["depth"]) for r in cells) == [(64, 0.0), (64, 1.0)]
    assert all(r.n == 2 for r in cells)
    assert result.extra["chance"] == 0.01 and result.extra["generation_phase"] == "answer"


def test_bad_inputs(hm_gdn):
    with pytest.raises(MechHybridError, match="depths"):
        RetrievalConfig(depths=(1.5,))
    with pytest.raises(MechHybridError, match="phase"):
        RetrievalConfig(phases=("later",))
    with pytest.raises(MechHybridError, match="none of the kinds"):
        plan(hm_gdn, RetrievalConfig(kinds=("ssm",)))


def _reference_retrieval_scores(hm, prompts):
    """Wu et al.'s retrieval score from a hand-computed attention (tests/core/attention_reference.py): per head,
    the share of answer tokens at which the model predicts that token and the head's argmax key holds it."""
    from tests.core import attention_reference as ref

    layers = [c.layer for c in hm.components if c.kind == "attention"]
    hits = {}
    for p in prompts:
        ids = torch.tensor([p.ids + p.answer_ids])
        n, m = len(p.ids), len(p.answer_ids)
        with ref.inputs_of(hm, layers) as seen, torch.no_grad():
            logits = hm.hf_model(input_ids=ids).logits[0]
            probs = {layer: ref.softmax(ref.scores(hm, layer, seen[layer])[0])[0] for layer in layers}
        for layer, pr in probs.items():
            for head in range(pr.shape[0]):
                hits.setdefault((layer, head), 0.0)
                for step, token in enumerate(p.answer_ids):
                    q = n - 1 + step
                    key = int(pr[head, q].argmax())
                    if int(logits[q].argmax()) == token and key in p.value_positions and p.ids[key] == token:
                        hits[(layer, head)] += 1.0 / m
    return {k: v / len(prompts) for k, v in hits.items()}


def test_retrieval_scores_equal_hand_attention(hm_gdn):
    from analyses.retrieval.heads import retrieval_scores

    prompts = zoo_grid((64, 96), (0.1, 0.9), per_cell=2, seed=5)
    got = retrieval_scores(hm_gdn, prompts)
    want = _reference_retrieval_scores(hm_gdn, prompts)
    assert set(got) == set(want) and len(got) == 4  # one attention layer, 4 heads
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12)
    assert max(want.values()) > 0  # the test can see a hit


def test_needle_mask_marks_each_prompts_own_needle():
    from analyses.retrieval.heads import _needle_mask

    prompts = zoo_grid((64, 96), (0.0, 1.0), per_cell=1, seed=2)
    mask = _needle_mask(prompts)
    assert mask.shape == (4, max(len(p.ids) for p in prompts))
    for row, p in enumerate(prompts):
        assert mask[row].nonzero().flatten().tolist() == list(p.needle_positions)


def test_head_curve_ends_at_the_baseline_and_counts_without_running(hm_gdn, monkeypatch):
    from analyses.retrieval import analysis as A

    cfg = RetrievalConfig(lengths=(64,), depths=(0.5,), per_cell=3, phases=("all",), kinds=("attention",),
                          exposure_scales=(), retrieval_heads=False, head_selections=("entropy", "static"))
    monkeypatch.setattr(A, "generate_scores", lambda *a, **k: pytest.fail("count must not generate"))
    # baseline, zero:attention:all, k = 0..4 for entropy and static, mask_needle:all
    assert A.count(hm_gdn, cfg) == 1 + 1 + 2 * 5 + 1
    monkeypatch.undo()
    rows = run(hm_gdn, cfg).rows
    whole = {(r.condition, r.metric): r.value for r in rows if "context_length" not in r.coords}
    for selection in ("static", "entropy"):
        assert whole[(f"heads:{selection}:all:k4", "acc:exact")] == whole[("baseline", "acc:exact")]
        assert whole[(f"heads:{selection}:all:k0", "acc:exact")] == whole[("zero:attention:all", "acc:exact")]
        assert whole[(f"heads:{selection}:all:k4", "retention:lm")] == 1.0


def test_lm_retention_equals_hooked_losses(hm_gdn):
    """retention:lm at k=0 = (loss per token) / (loss per token with attention zeroed), both computed here with
    plain forward hooks and log_softmax."""
    from analyses.retrieval.retention import retention_rows
    from analyses.retrieval.heads import HeadState, head_conditions
    from analyses.zoo_tasks import zoo_task

    cfg = RetrievalConfig(lengths=(64,), depths=(0.5,), per_cell=1, phases=(), exposure_scales=(),
                          retrieval_heads=False)
    conds = head_conditions(hm_gdn, cfg, HeadState(hm_gdn, cfg))
    task = zoo_task("lm", 6, 0)
    rows = retention_rows(hm_gdn, conds, {"lm": task}, batch_size=4, seed=0)
    by_k = {r.coords["k"]: r for r in rows}
    assert by_k[4].value == 1.0  # every head kept: nothing changes

    def loss(zero: bool) -> float:
        modules = [hm_gdn.module(c.path) for c in hm_gdn.components if c.kind == "attention"]
        zeroed = lambda m, a, o: (torch.zeros_like(o[0]),) + tuple(o[1:])  # noqa: E731
        handles = [m.register_forward_hook(zeroed) for m in modules] if zero else []
        total = count = 0.0
        try:
            with torch.no_grad():
                for doc in task.docs:
                    ids = torch.tensor([doc])
                    logp = torch.log_softmax(hm_gdn.hf_model(input_ids=ids).logits[0, :-1].double(), -1)
                    total -= logp.gather(-1, ids[0, 1:, None]).sum().item()
                    count += len(doc) - 1
        finally:
            for h in handles:
                h.remove()
        return total / count

    assert by_k[0].value == pytest.approx(loss(False) / loss(True), rel=1e-5)
    assert by_k[0].ci_low <= by_k[0].value <= by_k[0].ci_high


def _cli_error(capsys, argv) -> str:
    from mechhybrid.cli import main

    capsys.readouterr()
    rc = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("mechhybrid: error: "), (rc, lines)
    return lines[0]


@pytest.mark.parametrize("config, model, message", [
    ("lengths = [12]\n", "zoo:hybrid-gdn", "shorter than the zoo's needle"),
    ("depths = [0.5, 1.2]\n", "zoo:hybrid-gdn", "depths must lie in [0, 1]"),
    ("head_ks = [0, 5]\n", "zoo:hybrid-gdn", "head_ks [5] exceed the 4 heads"),
    ("head_ks = [1]\n", "zoo:ssm-mamba2", "has no attention heads"),
    ('haystack = "HAY"\nneedle = ""\n', "zoo:hybrid-gdn", "needle is empty"),
    ('haystack = "HAY"\nlengths = [5000]\n', "zoo:hybrid-gdn", "fewer than the context length 5000"),
    ('haystack = "NOWHERE"\n', "zoo:hybrid-gdn", "haystack file not found"),
])
def test_bad_input_through_the_cli(tmp_path, capsys, config, model, message):
    hay = tmp_path / "hay.txt"
    hay.write_text("a short essay. it has two sentences.")
    cfg = tmp_path / "retrieval.toml"
    cfg.write_text(config.replace("HAY", str(hay)).replace("NOWHERE", str(tmp_path / "missing.txt")))
    out = tmp_path / "out"
    line = _cli_error(capsys, ["run", "retrieval", "--model", model, "--config", str(cfg), "--out", str(out),
                               "--no-progress"])
    assert message in line
    assert not (out / "results").exists()  # nothing half-written


@pytest.mark.parametrize("name", ["hybrid-gdn", "hybrid-parallel", "hybrid-jamba", "hybrid-griffin", "transformer",
                                  "ssm-mamba2"])
def test_every_zoo_model_gets_every_condition(name):
    """Properties on the shipped zoo, not findings: every condition present, accuracies in [0, 1], the head curve
    at every k where there are heads, the chance level said."""
    import mechhybrid

    from analyses.retrieval.heads import attention_layers

    hm = mechhybrid.load(f"zoo:{name}")
    cfg = RetrievalConfig(lengths=(64,), depths=(0.5,), per_cell=1, random_head_sets=2, retention_items=4)
    result = run(hm, cfg)
    conditions = {r.condition for r in result.rows}
    expected = {c.name for c in plan(hm, cfg)} - {"ablate_heads:random:1"}  # a second set may not exist
    assert expected <= conditions
    for r in result.rows:
        if r.metric.startswith("acc:") or r.metric == "retrieval_score":
            assert 0.0 <= r.value <= 1.0
    layers = attention_layers(hm)
    ks = sorted(r.coords["k"] for r in result.rows if r.metric == "acc:exact" and r.method == "keep_heads"
                and r.coords["selection"] == "entropy" and "context_length" not in r.coords)
    assert ks == (list(range(max(c.n_heads for c in layers) + 1)) if layers else [])
    assert result.extra["chance"] == 0.01 and result.extra["scorer"] == "exact"


def test_set_logits_condition_equals_edit_by_hand(hm_gdn):
    """set_logits = [[3, 2, -50]]: head 2 of layer 3 cannot see the needle's value while the answer is produced;
    the condition's scores equal generating with that EditLogits written out here."""
    from mechhybrid.attention import EditLogits

    cfg = RetrievalConfig(lengths=(64,), depths=(0.0, 1.0), per_cell=1, phases=(), head_curve=False,
                          exposure_scales=(), retrieval_heads=False, set_logits=((3, 2, -50.0),))
    cond = next(c for c in plan(hm_gdn, cfg) if c.name.startswith("set_logits"))
    assert cond.name == "set_logits:L3.H2=-50" and cond.coords["logit"] == -50.0
    prompts = zoo_grid((64,), (0.0, 1.0), 1, seed=0)
    for p in prompts:
        mask = torch.zeros(1, len(p.ids), dtype=torch.bool)
        mask[0, list(p.value_positions)] = True
        by_hand = hm_gdn.generate(torch.tensor([p.ids]), [EditLogits(keys=mask, op="set", value=-50.0, layers=[3],
                                                                     heads=[2])], max_new_tokens=3,
                                  phase="generation")
        got = hm_gdn.generate([torch.tensor(p.ids)], cond.for_prompts([p]), max_new_tokens=3, phase="generation")
        assert got.generated(0).tolist() == by_hand.generated(0).tolist()
    with pytest.raises(MechHybridError, match="no attention head 7 at layer 3"):
        plan(hm_gdn, RetrievalConfig(set_logits=((3, 7, 1.0),)))


def _layer(layer: int, n_heads: int):
    from types import SimpleNamespace

    return SimpleNamespace(layer=layer, n_heads=n_heads)


def test_random_head_subsets_enumerate_every_subset_once():
    """Few subsets: every k-subset of every layer is kept in exactly one trial, the same for a seed; many: as
    many seeded draws as the cap, k heads each."""
    from itertools import combinations
    from math import comb

    from analyses.retrieval.subsets import head_subsets

    layers = [_layer(1, 4), _layer(3, 4), _layer(5, 2)]
    for k in range(5):
        trials = head_subsets(layers, k, cap=6, seed=0)
        assert len(trials) == comb(4, k)
        for layer in (1, 3):
            assert sorted(t[layer] for t in trials) == list(combinations(range(4), k))  # each exactly once
        # A 2-head layer: its own subsets in turn (both heads once k >= 2).
        assert {t[5] for t in trials} == set(combinations(range(2), min(k, 2)))
        assert head_subsets(layers, k, cap=6, seed=0) == trials
    pairs = [head_subsets(layers, 2, cap=6, seed=s) for s in range(4)]
    assert len({tuple(t[3] for t in p) for p in pairs}) > 1  # the layers' pairing is drawn, per seed
    assert [t[1] for t in pairs[0]] == list(combinations(range(4), 2))  # the first layer in order
    drawn = head_subsets([_layer(0, 8)], 3, cap=6, seed=0)
    assert len(drawn) == 6 and all(len(t[0]) == 3 == len(set(t[0])) for t in drawn)
    assert drawn == head_subsets([_layer(0, 8)], 3, cap=6, seed=0) != head_subsets([_layer(0, 8)], 3, cap=6, seed=1)


def test_random_curve_has_every_subset_and_its_ends_are_the_baseline_and_zero(hm_gdn):
    """hybrid-gdn (one 4-head attention layer): C(4, k) trials at each k, every subset once; k = 4 is the
    baseline and k = 0 zeroing attention; the pooled rows average the trials, the statistic
    rows summarise them, and k95 is read from the pooled retention."""
    from itertools import combinations
    from math import comb

    cfg = RetrievalConfig(lengths=(64,), depths=(0.5,), per_cell=3, phases=("all",), kinds=("attention",),
                          exposure_scales=(), retrieval_heads=False, head_selections=("random",), retention_items=4)
    result = run(hm_gdn, cfg)
    whole = [r for r in result.rows if "context_length" not in r.coords]
    trials = [r for r in whole if r.coords.get("selection") == "random" and "trial" in r.coords
              and r.metric == "acc:exact"]
    for k in range(5):
        mine = sorted((r for r in trials if r.coords["k"] == k), key=lambda r: r.coords["trial"])
        assert [r.coords["trial"] for r in mine] == list(range(comb(4, k)))
        kept = [tuple(t["3"]) for t in result.extra["random_head_subsets"][str(k)]]
        assert sorted(kept) == list(combinations(range(4), k))
        pooled = next(r for r in whole if r.condition == f"heads:random:all:k{k}" and r.metric == "acc:exact"
                      and "statistic" not in r.coords)
        assert pooled.value == pytest.approx(np.mean([r.value for r in mine]))
        stats = {r.coords["statistic"]: r.value for r in whole if r.condition == f"heads:random:all:k{k}"
                 and r.metric == "acc:exact" and "statistic" in r.coords}
        values = [r.value for r in mine]
        assert stats == {"median": pytest.approx(np.median(values)), "min": min(values), "max": max(values)}
    assert not [r for r in result.rows if "trial" in r.coords and "context_length" in r.coords]  # no trial grids
    by = {(r.condition, r.metric): r.value for r in whole if "statistic" not in r.coords}
    assert by[("heads:random:all:k4:t0", "acc:exact")] == by[("baseline", "acc:exact")]
    assert by[("heads:random:all:k0:t0", "acc:exact")] == by[("zero:attention:all", "acc:exact")]
    assert by[("heads:random:all:k4:t0", "retention:lm")] == 1.0
    k95 = next(r for r in whole if r.condition == "heads:random:all:k95")
    pooled = sorted((r for r in whole if r.metric == "retention:exact" and r.coords.get("selection") == "random"
                     and "trial" not in r.coords and "statistic" not in r.coords), key=lambda r: r.coords["k"])
    assert len(pooled) == 5
    assert k95.value == next((r.coords["k"] for r in pooled if r.ci_high >= 0.95), None)


def test_random_trials_are_deterministic_and_capped(hm_gdn):
    cfg = RetrievalConfig(head_selections=("random",), random_head_subsets_max=3, retrieval_heads=False)
    names = [c.name for c in plan(hm_gdn, cfg) if c.coords.get("selection") == "random"]
    # C(4, k) = 1, 4, 6, 4, 1 -> 1, 3, 3, 3, 1 trials: seeded draws where the subsets exceed the cap.
    assert len(names) == 1 + 3 + 3 + 3 + 1
    assert names == [c.name for c in plan(hm_gdn, cfg) if c.coords.get("selection") == "random"]
    with pytest.raises(MechHybridError, match="random_head_subsets_max"):
        RetrievalConfig(random_head_subsets_max=0)
