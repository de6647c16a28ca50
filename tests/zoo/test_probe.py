"""The training probe: its own items (never a benchmark's), its sizes, and its scores against oracle and
uniform logits whose right answers follow from arithmetic."""

import dataclasses
import types

import pytest
import torch

from mechhybrid.zoo import benchmarks as bm
from mechhybrid.zoo.curves import standard_error
from mechhybrid.zoo.probe import PROBE_STREAM, probe_benchmarks, run_probe
from mechhybrid.zoo.recipes import RECIPE
from mechhybrid.zoo.train import make_batch

V = 256


def _probe(recipe=RECIPE):
    return probe_benchmarks(recipe.seed, tuple(recipe.probe_lengths), recipe.probe_needles_per_length,
                            recipe.probe_recall_docs)


def test_probe_sizes_follow_the_recipe():
    needle, recall = _probe()
    assert RECIPE.probe_lengths == (128, 256) and RECIPE.probe_lengths[-1] == RECIPE.seq_len
    for length in RECIPE.probe_lengths:
        items = [it for it in needle.items if it.meta_dict()["context_len"] == length]
        assert len(items) >= 100 and all(len(it.input_ids) == length for it in items)
        depths = [it.meta_dict()["depth"] for it in items]
        assert {d: depths.count(d) for d in set(depths)} == {d: 20 for d in bm.NEEDLE_DEPTHS}
    assert sum(len(it.answer_spans) for it in recall.items) >= 100


def test_probe_shares_no_item_with_any_benchmark_or_the_training_stream():
    needle, recall = _probe()
    probe_ids = {it.input_ids for it in needle.items + recall.items}
    assert len(probe_ids) == len(needle.items) + len(recall.items)  # no duplicates either
    for version in bm.BENCHMARK_VERSIONS:
        for name in bm.benchmark_names():
            bench = {it.input_ids for it in bm.get_benchmark(name, version).items}
            assert not probe_ids & bench, (version, name)
    trained = set()
    for step in range(25):
        ids, _ = make_batch(step)
        trained |= {tuple(t for t in row.tolist() if t != 0) for row in ids}
    assert not probe_ids & trained
    assert PROBE_STREAM != "train" and not PROBE_STREAM.startswith("bench")


def test_probe_items_depend_on_the_seed_only():
    a, b = _probe(), _probe(dataclasses.replace(RECIPE, seed=1))
    assert a[0].items[0].input_ids != b[0].items[0].input_ids
    probe_benchmarks.cache_clear()
    assert _probe()[0].items == a[0].items


class FakeModel:
    """A 'model' whose logits come from a function of the input ids; records its train/eval mode."""

    def __init__(self, logits_fn):
        self.logits_fn, self.training = logits_fn, True

    def eval(self):
        self.training = False

    def train(self):
        self.training = True

    def __call__(self, input_ids):
        assert not self.training and not torch.is_grad_enabled()
        return types.SimpleNamespace(logits=self.logits_fn(input_ids))


def oracle(ids):
    out = torch.zeros(ids.shape[0], ids.shape[1], V)
    out[:, :-1].scatter_(-1, ids[:, 1:, None], 20.0)
    return out


@pytest.mark.parametrize("logits_fn, accuracy", [(oracle, 1.0), (lambda ids: torch.zeros(*ids.shape, V), 0.0)])
def test_probe_scores_and_standard_errors(logits_fn, accuracy):
    recipe = dataclasses.replace(RECIPE, probe_lengths=(40, 64), probe_needles_per_length=10, probe_recall_docs=3)
    model = FakeModel(logits_fn)
    point = run_probe(model, recipe)
    assert model.training  # handed back in train mode
    assert point["needle"] == {"40": accuracy, "64": accuracy} and point["needle_n"] == {"40": 10, "64": 10}
    assert point["needle_se"]["40"] == standard_error(10 * accuracy, 10)
    assert point["recall"] == accuracy and point["recall_n"] == 24 and point["recall_se"] == 0.0
