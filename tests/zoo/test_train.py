"""A few seeded training steps of each family are deterministic, and resume equals no resume."""

import dataclasses

import pytest
import torch

from mechhybrid.zoo.recipes import RECIPE
from mechhybrid.zoo.train import make_batch, train_model, weighted_loss
from mechhybrid.zoo.tokenizer import TOKEN_ID

TINY = dataclasses.replace(RECIPE, batch_size=2, seq_len=48, checkpoint_every=1)
NAMES = ["hybrid-gdn", "hybrid-parallel", "hybrid-griffin", "transformer", "ssm-mamba2"]


def test_batches_are_a_pure_function_of_the_step():
    a, wa = make_batch(5)
    b, wb = make_batch(5)
    c, _ = make_batch(6)
    assert a.shape == (RECIPE.batch_size, RECIPE.seq_len)
    assert torch.equal(a, b) and torch.equal(wa, wb) and not torch.equal(a, c)
    assert (wa[a == TOKEN_ID["<pad>"]] == 0).all()
    allowed = torch.tensor([0.0, 1.0, RECIPE.answer_weight, RECIPE.random_weight])
    assert torch.isclose(wa.unique()[:, None], allowed[None]).any(1).all()
    assert (wa == RECIPE.answer_weight).any()
    assert torch.isclose(wa, torch.tensor(RECIPE.random_weight)).any()


def test_answers_are_up_weighted_and_random_draws_down_weighted_in_every_retrieval_doc():
    import random

    from mechhybrid.zoo import language as lang
    from mechhybrid.zoo.train import _pack

    one_doc = dataclasses.replace(RECIPE, batch_size=1)
    for kind in ("needle", "recall", "copy"):
        recipe = dataclasses.replace(one_doc, mix=((kind, 1.0),))
        rows, weights = _pack(random.Random(11), recipe)
        rng = random.Random(11)  # replay _pack's draws: the document kind, then the document
        rng.choices([kind], weights=[1.0])
        doc = lang.sample_doc(rng, kind)
        w = weights[0]
        answers = {p for s, e in doc.answer_spans for p in range(s, e)}
        assert answers and all(w[p] == RECIPE.answer_weight for p in answers)
        assert doc.random_positions and all(w[p] == RECIPE.random_weight for p in doc.random_positions)
        predictable = set(range(len(doc.words))) - answers - set(doc.random_positions)
        assert all(w[p] == 1.0 for p in predictable)


def test_weighted_loss_is_a_weighted_mean_of_token_nll():
    torch.manual_seed(0)
    logits, ids = torch.randn(1, 4, 7), torch.tensor([[1, 2, 3, 4]])
    w = torch.tensor([[0.0, 1.0, 0.0, 3.0]])
    nll = -torch.log_softmax(logits, -1)[0, [0, 2], [2, 4]]
    assert weighted_loss(logits, ids, w).item() == pytest.approx(((nll[0] + 3 * nll[1]) / 4).item(), rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_seeded_steps_are_deterministic_and_resumable(name, tmp_path):
    straight = train_model(name, tmp_path / "a", steps=2, recipe=TINY, verbose=False, probe=False)["loss"]
    again = train_model(name, tmp_path / "b", steps=2, recipe=TINY, verbose=False, probe=False)["loss"]
    train_model(name, tmp_path / "c", steps=1, recipe=TINY, verbose=False, probe=False)
    resumed = train_model(name, tmp_path / "c", steps=2, recipe=TINY, verbose=False, probe=False)["loss"]
    assert len(straight) == 2 and straight == again == resumed
    other = train_model(name, tmp_path / "d", steps=1, seed=1, recipe=TINY, verbose=False, probe=False)["loss"]
    assert other[0] != straight[0]
