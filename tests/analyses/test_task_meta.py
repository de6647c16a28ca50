"""Benchmark Tasks keep their items' labels (a needle's context length and depth), so that an analysis can break
its scores down by them; the labels never change what is scored or the score cache's key."""

from __future__ import annotations

from analyses.tasks import ChoiceItem, ChoiceTask, GenItem, GenTask, SpanItem, fit_to, items_by
from analyses.zoo_tasks import zoo_task


def test_zoo_needle_items_carry_their_context_length_and_depth():
    from mechhybrid.zoo.benchmarks import NEEDLE_DEPTHS, NEEDLE_LENGTHS
    from mechhybrid.zoo.tokenizer import encode_words

    task = zoo_task("needle", limit=60, seed=0)
    assert task.n == 60
    key_words = tuple(encode_words(["the", "code", "of"]))
    for item in task.items:
        meta = dict(item.meta)
        length, depth, start = meta["context_len"], meta["depth"], meta["needle_start"]
        assert length in NEEDLE_LENGTHS and depth in NEEDLE_DEPTHS
        # By hand from the needle document's layout: one token per word, exactly `length` of them; <bos>, then
        # the filler cut at round(depth * filler words), where filler = length - <bos> - needle (8) - question
        # (7) - value (2) - final "." = length - 19.
        assert len(item.ids) == length
        assert item.ids[start:start + 3] == key_words
        assert start - 1 == round(depth * (length - 19))
    by_length = items_by(task, "context_len")
    assert set(by_length) <= set(NEEDLE_LENGTHS) and len(by_length) > 1
    assert sorted(i for idx in by_length.values() for i in idx) == list(range(task.n))
    assert all(len(task.items[i].ids) == length for length, idx in by_length.items() for i in idx)
    assert items_by(zoo_task("lm", limit=4, seed=0), "context_len") == {}


def test_zoo_facts_keep_their_labels():
    from mechhybrid.zoo.benchmarks import get_benchmark

    task = zoo_task("facts", limit=len(get_benchmark("facts").items), seed=0)
    assert [it.meta for it in task.items] == [it.meta for it in get_benchmark("facts").items]
    assert all(dict(it.meta).keys() == {"relation", "country"} for it in task.items)


def test_labels_survive_truncation_and_stay_out_of_the_score_key():
    labelled = ChoiceItem((5, 6, 7, 8, 9), ((3,), (4,)), 1, meta=(("subject", "astronomy"),))
    cut, n_cut = fit_to(ChoiceTask("mc", "v1", (labelled,)), max_len=3)
    assert n_cut == 1 and cut.items[0].context == (8, 9) and cut.items[0].meta == (("subject", "astronomy"),)
    gen, n_cut = fit_to(GenTask("gen", "v1", (GenItem((1, 2, 3, 4), "7", meta=(("k", 1),)),), max_new_tokens=2),
                        max_len=4)
    assert n_cut == 1 and gen.items[0].prompt == (3, 4) and gen.items[0].meta == (("k", 1),)
    # The score cache is keyed by repr(task): labels do not change what is scored, so not the key either.
    plain = SpanItem((1, 2, 3), ((1, 3),))
    assert repr(SpanItem((1, 2, 3), ((1, 3),), meta=(("depth", 0.5),))) == repr(plain)
    assert items_by(ChoiceTask("mc", "v1", (labelled, ChoiceItem((1,), ((2,),), 0))), "subject") == {"astronomy": [0]}
