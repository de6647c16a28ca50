"""Benchmark objects and the generic scoring helpers, against logits functions whose right
answers follow from arithmetic (uniform logits, an oracle that knows the next token)."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from mechhybrid.zoo import language as lang
from mechhybrid.zoo.benchmarks import (NEEDLE_DEPTHS, NEEDLE_LENGTHS, Benchmark, benchmark_names, by_meta,
                                       get_benchmark, score_items, summarize)
from mechhybrid.zoo.tokenizer import TOKEN_ID

V = 256


def uniform(ids):
    return torch.zeros(ids.shape[0], ids.shape[1], V)


def oracle(ids):
    """Puts logit 20 on the token that really comes next (teacher forcing makes it visible)."""
    out = torch.zeros(ids.shape[0], ids.shape[1], V)
    out[:, :-1].scatter_(-1, ids[:, 1:, None], 20.0)
    return out


def small(name, n=12):
    b = get_benchmark(name)
    return Benchmark(b.name, b.version, b.metric, b.description, b.items[:: max(1, len(b.items) // n)])


def test_names_versions_and_frozen():
    assert benchmark_names() == ["lm", "facts", "needle", "recall"]
    for name in benchmark_names():
        b = get_benchmark(name)
        assert b.name == name and lang.LANGUAGE_VERSION in b.version and len(b.items) > 0
        with pytest.raises(dataclasses.FrozenInstanceError):
            b.name = "x"


def test_needle_grid_has_exact_context_lengths():
    b = get_benchmark("needle")
    cells = {}
    for it in b.items:
        m = it.meta_dict()
        assert len(it.input_ids) == m["context_len"]
        cells[(m["context_len"], m["depth"])] = cells.get((m["context_len"], m["depth"]), 0) + 1
    assert set(cells) == {(L, d) for L in NEEDLE_LENGTHS for d in NEEDLE_DEPTHS}
    assert len(set(cells.values())) == 1


def test_uniform_logits_give_vocab_perplexity_and_no_exact_matches():
    lm = small("lm", 4)
    scores = score_items(lm, uniform, batch_size=3)
    assert scores.values.shape == scores.weights.shape == (len(lm.items),)
    assert np.array_equal(scores.weights, [len(it.input_ids) - 1 for it in lm.items])
    assert summarize(lm, scores) == pytest.approx(V, rel=1e-9)
    for name in ("needle", "recall"):  # argmax of a tie is token 0 (<pad>): never a value digit
        assert summarize(get_benchmark(name), score_items(small(name), uniform, 8)) == 0.0


def test_oracle_gets_everything_right():
    for name in ("needle", "recall"):
        b = small(name)
        assert np.all(score_items(b, oracle, 5).values == 1.0)
    lm = small("lm", 4)
    ppl = summarize(lm, score_items(lm, oracle, 4))
    assert ppl == pytest.approx(math.exp(math.log1p((V - 1) * math.exp(-20))), rel=1e-6)


def test_facts_scored_by_choice_likelihood():
    truth = {}
    for country, capital, language in lang.FACTS:
        truth[(TOKEN_ID["capital"], TOKEN_ID[country])] = TOKEN_ID[capital]
        truth[(TOKEN_ID["language"], TOKEN_ID[country])] = TOKEN_ID[language]

    def knows_facts(ids):  # favours the true answer after 'the REL of COUNTRY is'
        out = torch.zeros(ids.shape[0], ids.shape[1], V)
        for row in range(ids.shape[0]):
            out[row, 5, truth[(int(ids[row, 2]), int(ids[row, 4]))]] = 5.0
        return out

    facts = get_benchmark("facts")
    assert summarize(facts, score_items(facts, knows_facts, 7)) == 1.0
    # Preferring whichever choice is listed first scores the share of items whose answer is listed first.
    expected = float(np.mean([it.correct == 0 for it in facts.items]))
    first = {it.choices[0][0] for it in facts.items}

    def likes_listed_first(ids):
        out = torch.zeros(ids.shape[0], ids.shape[1], V)
        for row in range(ids.shape[0]):
            item = next(it for it in facts.items if tuple(ids[row, :6].tolist()) == it.input_ids
                        and int(ids[row, 6]) in {c[0] for c in it.choices})
            out[row, 5, item.choices[0][0]] = 5.0
        return out

    assert first and summarize(facts, score_items(facts, likes_listed_first, 16)) == pytest.approx(expected)


def test_scores_do_not_depend_on_batch_size():
    table = torch.randn(V, V, generator=torch.Generator().manual_seed(0))

    def bigram(ids):
        return table[ids]

    for name in benchmark_names():
        b = small(name, 10)
        a, c = score_items(b, bigram, 1), score_items(b, bigram, 16)
        np.testing.assert_allclose(a.values, c.values, rtol=0, atol=1e-9)


def test_by_meta_groups_needle_scores_per_length():
    b = small("needle", 40)
    grouped = by_meta(b, score_items(b, oracle, 8), "context_len")
    assert sorted(grouped) == list(NEEDLE_LENGTHS) and set(grouped.values()) == {1.0}


def test_bench_2_has_100_needles_per_length_and_keeps_bench_1_reproducible():
    from mechhybrid.errors import MechHybridError
    from mechhybrid.zoo.benchmarks import BENCHMARK_VERSION, BENCHMARK_VERSIONS, CHANCE

    assert BENCHMARK_VERSIONS == ("zoo-bench-1", "zoo-bench-2") and BENCHMARK_VERSION == "zoo-bench-2"
    new, old = get_benchmark("needle", "zoo-bench-2"), get_benchmark("needle", "zoo-bench-1")
    for bench, per_length in ((new, 100), (old, 40)):
        lengths = [it.meta_dict()["context_len"] for it in bench.items]
        assert {L: lengths.count(L) for L in NEEDLE_LENGTHS} == {L: per_length for L in NEEDLE_LENGTHS}
    assert len(new.items) == 400 and new.version == f"zoo-bench-2/{lang.LANGUAGE_VERSION}"
    # zoo-bench-1's items are the first 8 of each of zoo-bench-2's cells: old cards stay re-measurable.
    assert old.items == tuple(it for i, it in enumerate(new.items) if i % 20 < 8)
    assert old.version == f"zoo-bench-1/{lang.LANGUAGE_VERSION}" and get_benchmark("needle") is new
    for name in ("lm", "facts", "recall"):
        assert get_benchmark(name, "zoo-bench-1").items == get_benchmark(name, "zoo-bench-2").items
    # Chance is stated: 1 of 100 two-digit values, 1 of 4 choices; perplexity has none.
    assert new.chance == CHANCE["needle"] == 0.01 and "chance 0.01" in new.description
    assert get_benchmark("facts").chance == 0.25 and get_benchmark("lm").chance is None
    with pytest.raises(MechHybridError, match="unknown zoo benchmark version 'zoo-bench-9'; known: zoo-bench-1"):
        get_benchmark("needle", "zoo-bench-9")
