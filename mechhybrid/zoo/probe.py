"""The training probe: needle and recall items from their own random stream, scored while a model trains.

The probe watches retrieval during training and drives the stopping rule (`curves.stop_reason`), so it must
not be the test set: its items come from the stream PROBE_STREAM of the recipe's seed, which neither the
training batches ("train") nor any benchmark split ("bench-*" of BENCH_SEED) draws from
(tests/zoo/test_probe.py checks that no item is shared). Its design follows the needle benchmark: every
probed context length gets the benchmark's depths in turn, `recipe.probe_needles_per_length` items each;
recall documents have the benchmark's 8 pairs and 8 queries.
"""

from __future__ import annotations

import functools

import numpy as np

from mechhybrid.zoo import benchmarks as bm
from mechhybrid.zoo import language as lang
from mechhybrid.zoo.curves import standard_error
from mechhybrid.zoo.tokenizer import encode_words

__all__ = ["PROBE_STREAM", "PROBE_BATCH", "probe_benchmarks", "run_probe"]

PROBE_STREAM = "train-probe"
"""RNG stream of the probe's documents (per recipe seed)."""
PROBE_BATCH = 16
"""Sequences per forward when probing (fixed: the same model gives the same probe every time)."""


@functools.lru_cache(maxsize=8)
def probe_benchmarks(seed: int, lengths: tuple[int, ...], per_length: int,
                     recall_docs: int) -> tuple[bm.Benchmark, bm.Benchmark]:
    """(needle, recall) probe items for a recipe: `per_length` needles at each of `lengths`, depths cycling
    through the benchmark's NEEDLE_DEPTHS, and `recall_docs` recall documents of 8 queries each."""
    needles = []
    for length in lengths:
        for k in range(per_length):
            depth = bm.NEEDLE_DEPTHS[k % len(bm.NEEDLE_DEPTHS)]
            doc = lang.needle_doc(lang.doc_rng(seed, f"{PROBE_STREAM}/needle/{length}", k), length, depth)
            needles.append(bm.Item(tuple(encode_words(doc.words)), doc.answer_spans,
                                   meta=(("context_len", length), ("depth", depth))))
    recalls = []
    for i in range(recall_docs):
        doc = lang.recall_doc(lang.doc_rng(seed, f"{PROBE_STREAM}/recall", i), bm.RECALL_PAIRS, bm.RECALL_PAIRS)
        recalls.append(bm.Item(tuple(encode_words(doc.words)), doc.answer_spans))
    label = f"{PROBE_STREAM}/{seed}/{lang.LANGUAGE_VERSION}"
    return (bm.Benchmark("needle", label, "exact_match", "training probe: needles", tuple(needles),
                         bm.CHANCE["needle"]),
            bm.Benchmark("recall", label, "exact_match", "training probe: recall", tuple(recalls),
                         bm.CHANCE["recall"]))


def _recall_se(values: np.ndarray) -> float | None:
    # Queries of one document share its keys: the document, not the query, is the independent unit.
    if len(values) < 2:
        return None  # not NaN: the log and the card are strict JSON
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def run_probe(model, recipe) -> dict:
    """One probe point (without its step): needle accuracy, standard error and n per probed length (keys are
    the lengths as text), recall accuracy over all queries with its standard error and query count.

    The model is put in eval mode for the probe and back in train mode after; the probe draws no random
    numbers, so it never changes the training trajectory."""
    import torch

    needle, recall = probe_benchmarks(recipe.seed, tuple(recipe.probe_lengths), recipe.probe_needles_per_length,
                                      recipe.probe_recall_docs)
    model.eval()
    with torch.no_grad():
        needle_scores = bm.score_items(needle, lambda x: model(input_ids=x).logits, PROBE_BATCH)
        recall_scores = bm.score_items(recall, lambda x: model(input_ids=x).logits, PROBE_BATCH)
    model.train()
    point: dict = {"needle": {}, "needle_se": {}, "needle_n": {}}
    for length in recipe.probe_lengths:
        values = [v for it, v in zip(needle.items, needle_scores.values) if it.meta_dict()["context_len"] == length]
        hits = float(np.sum(values))
        point["needle"][str(length)] = hits / len(values)
        point["needle_se"][str(length)] = standard_error(hits, len(values))
        point["needle_n"][str(length)] = len(values)
    queries = sum(len(it.answer_spans) for it in recall.items)
    point["recall"] = float(np.mean(recall_scores.values))  # every document has the same number of queries
    point["recall_se"] = _recall_se(recall_scores.values)
    point["recall_n"] = queries
    return point
