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
    assert set(wa.unique().tolist()) <= {0.0, 1.0, RECIPE.answer_weight}
    assert (wa == RECIPE.answer_weight).any()


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
