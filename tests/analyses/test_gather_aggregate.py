"""gather_aggregate: Gather / Aggregate scores against a hand computation from plain eager attention on a tiny
model with crafted segments; the segmented zoo prompts; the head sets; properties on one shipped zoo model; a
model without attention heads refused through the CLI; the report view."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from analyses.gather_aggregate import GatherAggregateConfig, run
from analyses.gather_aggregate.ablation import head_sets
from analyses.gather_aggregate.prompts import SegmentedPrompt, facts_prompts, needle_prompts, recall_prompts
from analyses.gather_aggregate.scores import METRICS, candidates, head_scores
from mechhybrid.errors import MechHybridError
from tests.conftest import build_tiny

SMALL = dict(prompts=3, items=4, random_sets=2, needle_length=40, recall_pairs=3)


def _crafted() -> list[SegmentedPrompt]:
    """Two prompts of different lengths (batched, so one is padded), three segments each."""
    gen = torch.Generator().manual_seed(5)
    ids = [tuple(torch.randint(4, 97, (n,), generator=gen).tolist()) for n in (14, 17)]
    return [SegmentedPrompt("needle", ids[0], ((1, 4), (4, 8), (8, 11)), 1),
            SegmentedPrompt("recall", ids[1], ((2, 5), (5, 6), (7, 12)), 2)]


def _hand(model, prompt: SegmentedPrompt) -> dict[str, list[float]]:
    """The three scores of every head from transformers' eager attention, by plain loops."""
    with torch.no_grad():
        att = model(torch.tensor([prompt.ids]), output_attentions=True).attentions  # layer -> [1, head, q, k]
    out = {m: [] for m in METRICS}
    for probs in att:
        p = probs[0].double()
        for h in range(p.shape[0]):
            gather = [sum(float(p[h, end - 1, k]) for k in range(start, end)) for start, end in prompt.segments]
            out["gather"].append(sum(gather) / len(gather))
            q = len(prompt.ids) - 1
            out["aggregate"].append(sum(float(p[h, q, end - 1]) for _, end in prompt.segments))
            out["aggregate_answer"].append(float(p[h, q, prompt.segments[prompt.answer][1] - 1]))
    return out


def test_scores_equal_a_hand_computation_from_eager_attention():
    import mechhybrid

    model = build_tiny("qwen2", seed=2)
    assert model.config.num_hidden_layers == 4 and model.config.num_attention_heads == 4
    eager = copy.deepcopy(model)
    eager.config._attn_implementation = "eager"
    hm = mechhybrid.load(model)
    prompts = _crafted()
    got = head_scores(hm, prompts, batch_size=2)
    assert got.heads == [(layer, h) for layer in range(4) for h in range(4)]
    for row, prompt in enumerate(prompts):
        want = _hand(eager, prompt)
        for metric in METRICS:
            np.testing.assert_allclose(got.values[metric][row], want[metric], atol=1e-6, rtol=0)
    # Uniform attention over the causal keys: a segment [s, e) at its last token e-1 gets (e-s)/e.
    first = prompts[0]
    np.testing.assert_allclose(got.uniform["gather"][0], np.full(16, (3 / 4 + 4 / 8 + 3 / 11) / 3))
    np.testing.assert_allclose(got.uniform["aggregate"][0], np.full(16, 3 / len(first.ids)))
    np.testing.assert_allclose(got.uniform["aggregate_answer"][0], np.full(16, 1 / len(first.ids)))
    # The top head of a role is the one with the highest mean; min_lift can leave a role without candidates.
    mean = got.values["aggregate"].mean(0)
    assert candidates(got, "aggregate", 1, 0.0) == [got.heads[int(np.argmax(mean))]]
    assert candidates(got, "aggregate", 2, 1e9) == []


def test_segmented_zoo_prompts_hold_their_answer():
    from mechhybrid.zoo.language import VOCAB

    words = lambda p, span: [VOCAB[t] for t in p.ids[span[0]:span[1]]]  # noqa: E731
    for p in needle_prompts(4, 64, seed=1):
        needle = words(p, p.segments[p.answer])
        assert needle[:3] == ["the", "code", "of"] and needle[-1] == "."
        assert [VOCAB[t] for t in p.ids[-7:]] == ["what", "is", "the", "code", "of", needle[3], "?"]
        assert all(words(p, s)[-1] == "." for s in p.segments) and abs(len(p.ids) - 64) < 30
    for p in recall_prompts(4, 5, seed=1):
        assert len(p.segments) == 5 and words(p, p.segments[p.answer])[0] == VOCAB[p.ids[-2]]
    from mechhybrid.zoo.benchmarks import get_benchmark

    bench = get_benchmark("facts")
    for p in facts_prompts(6, seed=0):
        stated = words(p, p.segments[p.answer])
        item = next(it for it in bench.items if tuple(it.input_ids[1:]) == p.ids[-5:])
        assert stated[5] == VOCAB[item.choices[item.correct][0]] and stated[3] == VOCAB[p.ids[-2]]
    assert needle_prompts(2, 64, 1) == needle_prompts(2, 64, 1) != needle_prompts(2, 64, 2)


def test_head_sets_draw_random_heads_outside_the_candidates_deterministically():
    heads = [(layer, h) for layer in range(4) for h in range(4)]
    chosen = {"gather": [(2, 3)], "aggregate": [(0, 3), (1, 1)]}
    sets = head_sets(heads, chosen, 3, seed=7, notes=[])
    names = [s.name for s in sets]
    assert names[:5] == ["baseline", "ablate:gather", "ablate:aggregate", "ablate:aggregate:L0H3",
                         "ablate:aggregate:L1H1"] and "ablate:both" in names
    randoms = [s for s in sets if s.coords.get("removal") == "random"]
    assert sorted({s.coords["k"] for s in randoms}) == [1, 2, 3] and len(randoms) == 9
    union = {(2, 3), (0, 3), (1, 1)}
    assert all(not union & set(s.heads) for s in randoms)
    assert len({s.heads for s in randoms}) == len(randoms)  # never one set twice
    again = head_sets(heads, chosen, 3, seed=7, notes=[])
    assert [s.heads for s in again] == [s.heads for s in sets]
    assert [s.heads for s in head_sets(heads, chosen, 3, seed=8, notes=[])] != [s.heads for s in sets]
    notes: list[str] = []
    few = head_sets(heads[:4], {"gather": [(0, 0)], "aggregate": [(0, 1)]}, 3, seed=0, notes=notes)
    assert [s.heads for s in few if s.coords.get("k") == 2 and s.coords["removal"] == "random"] == [((0, 2), (0, 3))]
    assert any("every subset" in n for n in notes)


@pytest.fixture(scope="module")
def zoo_result():
    import mechhybrid

    hm = mechhybrid.load("zoo:hybrid-griffin")
    return run(hm, GatherAggregateConfig(**SMALL)), hm


def test_properties_on_a_zoo_model(zoo_result):
    result, hm = zoo_result
    heads = {(c.layer, h) for c in hm.components if c.kind == "attention" for h in range(c.n_heads)}
    scores = [r for r in result.rows if r.condition == "scores"]
    for metric in METRICS:
        for bench in ("needle", "recall", "facts", "all"):
            mine = {(r.coords["layer"], r.coords["head"]) for r in scores
                    if r.metric == metric and r.coords["benchmark"] == bench}
            assert mine == heads, (metric, bench)  # every head scored
    assert all(0.0 <= r.value <= 1.0 and r.ci_low <= r.value <= r.ci_high for r in scores)
    assert all(r.n == 3 * SMALL["prompts"] for r in scores if r.coords["benchmark"] == "all")
    assert result.extra["left_out"] == ["recurrent (layers 0, 1, 3)"]
    assert set(result.extra["candidates"]) == {"gather", "aggregate"}
    drops = [r for r in result.rows if r.metric.startswith("drop:")]
    assert {r.metric for r in drops} == {"drop:needle", "drop:recall", "drop:facts"}
    assert {r.coords["removal"] for r in drops} == {"candidate", "random"}
    assert result.seed == 0 and result.extra["ablation"].startswith("AblateHeads")
    assert [d.n for d in result.data] == [SMALL["prompts"]] * 3 + [SMALL["items"]] * 3
    # A zeroed set changes accuracy by exactly the paired difference of the rows.
    acc = {(r.condition, r.metric): r.value for r in result.rows if r.metric.startswith("acc:")}
    for r in drops:
        bench = r.metric.split(":")[1]
        assert r.value == pytest.approx(acc[("baseline", f"acc:{bench}")] - acc[(r.condition, f"acc:{bench}")])


def test_a_model_without_attention_heads_is_one_line_and_exit_2(tmp_path, capsys):
    from analyses.cli import main
    from tests.analyses.conftest import word_tokenizer

    path = tmp_path / "tiny-mamba2"
    build_tiny("mamba2").save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    capsys.readouterr()  # the save's progress bar
    out = tmp_path / "out"
    code = main(["run", "gather_aggregate", "--model", str(path), "--out", str(out), "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "no softmax-attention heads" in err[0] and "Traceback" not in err[0], err
    assert not out.exists()
    with pytest.raises(MechHybridError, match="needle_lengths"):
        GatherAggregateConfig(needle_lengths=(100,))


def test_the_view_renders(zoo_result, tmp_path):
    import reports
    from analyses.schema import write_result, write_results_csv

    result, _ = zoo_result
    write_result(result, tmp_path)
    write_results_csv(tmp_path)
    reports.render(tmp_path)
    import re

    page = re.sub(r"<[^>]+>", "", (tmp_path / "compare.html").read_text())
    assert "Gather and Aggregate scores per head" in page and "Zeroing the candidates vs as many random heads" in page
    assert "the highest aggregate score is" in page
    assert "Aggregate role" in (tmp_path / "index.html").read_text()
    chart = reports.chart_for_result(result.to_dict() if hasattr(result, "to_dict") else result)
    assert chart is not None
