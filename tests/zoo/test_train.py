"""A few seeded training steps of each family are deterministic, and resume equals no resume."""

import dataclasses

import pytest
import torch

from mechhybrid.zoo.recipes import RECIPE
from mechhybrid.zoo.train import make_batch, train_model, weighted_loss
from mechhybrid.zoo.tokenizer import TOKEN_ID

TINY = dataclasses.replace(RECIPE, batch_size=2, seq_len=48, checkpoint_every=1, stop_patience_steps=None,
                           min_steps=0, induction_warmup_steps=0)  # the mix (test_resume.py crosses the warm-up's end)
NAMES = ["hybrid-gdn", "hybrid-parallel", "hybrid-griffin", "hybrid-jamba", "transformer", "ssm-mamba2"]


def test_batches_are_a_pure_function_of_the_step():
    step = RECIPE.induction_warmup_steps + 5  # a step of the mix, after the warm-up
    a, wa = make_batch(step)
    b, wb = make_batch(step)
    c, _ = make_batch(step + 1)
    assert a.shape[0] == RECIPE.batch_size and a.shape[1] <= RECIPE.seq_len
    assert torch.equal(a, b) and torch.equal(wa, wb) and not torch.equal(a, c)
    assert (wa[a == TOKEN_ID["<pad>"]] == 0).all()
    # One document per row: each row starts with <bos>, holds no other, and rows are sorted longest first.
    assert (a[:, 0] == TOKEN_ID["<bos>"]).all() and ((a == TOKEN_ID["<bos>"]).sum(1) == 1).all()
    lengths = (a != TOKEN_ID["<pad>"]).sum(1)
    assert lengths[0] == a.shape[1] and (lengths[:-1] >= lengths[1:]).all()
    allowed = torch.tensor([0.0, 1.0, RECIPE.answer_weight, RECIPE.random_weight])
    assert torch.isclose(wa.unique()[:, None], allowed[None]).any(1).all()
    assert (wa == RECIPE.answer_weight).any()
    assert torch.isclose(wa, torch.tensor(RECIPE.random_weight)).any()


def test_answers_are_up_weighted_and_random_draws_down_weighted_in_every_retrieval_doc():
    import random

    from mechhybrid.zoo import language as lang
    from mechhybrid.zoo.train import _document_rows

    one_doc = dataclasses.replace(RECIPE, batch_size=1)
    for kind in ("needle", "recall", "copy"):
        recipe = dataclasses.replace(one_doc, mix=((kind, 1.0),))
        ((ids, w),) = _document_rows(random.Random(11), recipe)
        rng = random.Random(11)  # replay the draws: the document kind, then the document
        rng.choices([kind], weights=[1.0])
        doc = lang.sample_doc(rng, kind)
        assert len(ids) == len(doc.words) and w[0] == 0.0
        answers = {p for s, e in doc.answer_spans for p in range(s, e)}
        assert answers and all(w[p] == RECIPE.answer_weight for p in answers)
        assert doc.random_positions and all(w[p] == RECIPE.random_weight for p in doc.random_positions)
        predictable = set(range(1, len(doc.words))) - answers - set(doc.random_positions)
        assert all(w[p] == 1.0 for p in predictable)


def test_micro_batches_add_up_to_the_whole_batch_loss_and_gradient():
    from mechhybrid.zoo.recipes import build_model, zoo_spec
    from mechhybrid.zoo.train import micro_batches, train_step

    ids, w = make_batch(2)
    parts = list(micro_batches(ids, w, RECIPE.micro_batch))
    assert sum(p[0].shape[0] for p in parts) == ids.shape[0]
    assert [p[0].shape[1] for p in parts] == sorted((p[0].shape[1] for p in parts), reverse=True)
    assert parts[-1][0].shape[1] < ids.shape[1]  # short rows really are cut

    whole, split = build_model(zoo_spec("transformer"), 0), build_model(zoo_spec("transformer"), 0)
    loss = weighted_loss(whole(input_ids=ids).logits, ids, w)
    loss.backward()
    opt = torch.optim.SGD(split.parameters(), lr=0.0)  # lr 0: only the accumulated gradient is compared
    assert train_step(split, opt, ids, w, dataclasses.replace(RECIPE, grad_clip=1e9)) == pytest.approx(
        loss.item(), rel=1e-5)
    for (name, p), q in zip(whole.named_parameters(), split.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-4, msg=name)


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


def test_warmup_draws_the_mix_weighed_on_answers_only():
    import dataclasses

    recipe = dataclasses.replace(RECIPE, induction_warmup_steps=3, warmup_mix=None)
    ids, w = make_batch(2, recipe)
    plain_ids, plain_w = make_batch(2, dataclasses.replace(recipe, induction_warmup_steps=0))
    # The same documents as the mix's step 2; weight 1 exactly where the mix weighs an answer, 0 elsewhere.
    assert torch.equal(ids, plain_ids)
    assert torch.equal(w, (plain_w == recipe.answer_weight).float())
    assert w.sum() > 0 and (plain_w == 1.0).any()


def test_copy_only_warmup_draws_copy_documents_weighed_on_answers_only():
    import dataclasses

    from mechhybrid.zoo.tokenizer import encode_words

    recipe = dataclasses.replace(RECIPE, induction_warmup_steps=3)
    assert recipe.warmup_mix == (("copy", 1.0),)  # the recipe's own warm-up
    ids, w = make_batch(2, recipe)
    bar = encode_words(["|"])[0]
    for row_ids, row_w in zip(ids.tolist(), w.tolist()):
        # A copy document: <bos> span filler | span; weighed exactly on the repeated span, with weight 1.
        cut = row_ids.index(bar)
        weighed = [t for t, x in enumerate(row_w) if x > 0]
        assert set(row_w) <= {0.0, 1.0} and weighed == list(range(cut + 1, cut + 1 + len(weighed)))
        assert row_ids[cut + 1 : cut + 1 + len(weighed)] == row_ids[1 : 1 + len(weighed)]
    after_ids, after_w = make_batch(3, recipe)
    plain_ids, plain_w = make_batch(3, dataclasses.replace(recipe, induction_warmup_steps=0))
    assert torch.equal(after_ids, plain_ids) and torch.equal(after_w, plain_w)  # the mix resumes unchanged
