"""The built-in metrics against hand computations on plain forwards (and on the reference's patched forwards)."""

from __future__ import annotations

import pytest
import torch

from mechhybrid.interventions import Residual
from mechhybrid.tracing import AnswerProb, AnswerRank, KLToClean, LogitDiff, Reuse, state_sites, sweep
from tests.conftest import both_shapes, random_ids
from tests.core.test_tracing_reference import patched_logits, value_at

TOL = 1e-4


def _logits(hm, row) -> torch.Tensor:
    """`[seq, vocab]` logits of one unpadded token row."""
    with torch.no_grad():
        return hm.hf_model(torch.tensor([list(row)])).logits[0].float()


def _prompts(seed: int, lengths=(6, 5)):
    return [random_ids(1, n, seed + i)[0].tolist() for i, n in enumerate(lengths)]


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text", "gpt2"]))
def test_logit_diff_reads_the_first_differing_token(tiny_models, model_type, shape):
    """Row 0: answers [5, 6] vs [5, 8] share their first token, so it is appended and token 2 is compared; row 1
    has no corrupted answer and contributes its clean answer's log-probability."""
    _, hm = tiny_models(model_type, shape)
    clean, corrupted = _prompts(1), _prompts(2)
    answers, wrong = [[5, 6], [9, 3]], [[5, 8], None]

    def raw(prompts):
        first = _logits(hm, prompts[0] + [5])[-1]
        second = _logits(hm, prompts[1])[-1].log_softmax(-1)
        return ((first[6] - first[8]) + second[9]).item() / 2

    site = Residual(1, "post")
    result = sweep(hm, clean, corrupted, [site], LogitDiff(answers, wrong), positions=[-2])
    assert result.normalised and result.metric == "logit_diff"
    assert result.clean_metric == pytest.approx(raw(clean), abs=TOL)
    assert result.corrupted_metric == pytest.approx(raw(corrupted), abs=TOL)
    # The patched entry, by hand: each row's corrupted prompt (plus the shared answer token) with the clean value.
    rows = [corrupted[0] + [5], corrupted[1]]
    sources = [clean[0] + [5], clean[1]]
    patched = []
    for row, source, position in zip(rows, sources, (4, 3)):
        value = value_at(hm, torch.tensor([source]), site)
        patched.append(patched_logits(hm, torch.tensor([row]), [(site, [position], value)])[0, -1].float())
    by_hand = ((patched[0][6] - patched[0][8]) + patched[1].log_softmax(-1)[9]).item() / 2
    expected = (by_hand - raw(corrupted)) / (raw(clean) - raw(corrupted))
    assert result.values.item() == pytest.approx(expected, abs=TOL * 10)


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text"]))
def test_whole_answer_log_probability_by_teacher_forcing(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    clean, corrupted = _prompts(3, (5, 5)), _prompts(4, (5, 5))
    answers, wrong = [[5, 6, 7], [9]], [[4, 6], [2, 8]]

    def logprob(prompt, answer):
        logp = _logits(hm, prompt + answer[:-1]).log_softmax(-1)[len(prompt) - 1:]
        return sum(logp[j, token] for j, token in enumerate(answer)).item()

    def raw(prompts):
        return sum(logprob(p, a) - logprob(p, w) for p, a, w in zip(prompts, answers, wrong)) / 2

    result = sweep(hm, clean, corrupted, "embeddings", LogitDiff(answers, wrong, whole_answer=True),
                   positions=[(0, 1, 2, 3, 4)] + [-1])
    assert result.clean_metric == pytest.approx(raw(clean), abs=TOL)
    assert result.corrupted_metric == pytest.approx(raw(corrupted), abs=TOL)
    assert result.values[0, 0].item() == pytest.approx(1.0, abs=TOL * 10)  # every prompt token's embedding
    prob = sweep(hm, clean, corrupted, "embeddings", AnswerProb(answers, whole_answer=True), positions=[-1])
    expected = sum(torch.tensor(logprob(p, a)).exp() for p, a in zip(clean, answers)) / 2
    assert prob.clean_metric == pytest.approx(expected.item(), abs=TOL)


@pytest.mark.parametrize("model_type,shape", both_shapes(["falcon_h1"]))
def test_probability_rank_and_kl(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    clean, corrupted = _prompts(5), _prompts(6)
    answers = [11, 12]
    last = {name: [_logits(hm, p)[-1] for p in prompts] for name, prompts in (("clean", clean), ("x", corrupted))}
    prob = sweep(hm, clean, corrupted, "embeddings", AnswerProb(answers), positions=[-1])
    hand = sum(l.softmax(-1)[a] for l, a in zip(last["x"], answers)).item() / 2
    assert prob.corrupted_metric == pytest.approx(hand, abs=1e-6) and not prob.normalised
    rank = sweep(hm, clean, corrupted, "embeddings", AnswerRank(answers), positions=[-1])
    hand = sum((l > l[a]).sum() for l, a in zip(last["clean"], answers)).item() / 2
    assert rank.clean_metric == hand
    last_layer = Residual(hm.n_layers - 1, "post")  # at the last token: the whole clean distribution
    kl = sweep(hm, clean, corrupted, [last_layer], KLToClean(), positions=[-1, -2])
    p, q = torch.stack(last["clean"]).log_softmax(-1), torch.stack(last["x"]).log_softmax(-1)
    assert kl.clean_metric == pytest.approx(0.0, abs=1e-6)
    assert kl.corrupted_metric == pytest.approx((p.exp() * (p - q)).sum(-1).mean().item(), abs=1e-5)
    assert abs(kl.values[0, 0].item()) < 1e-5
    assert kl.values[0, 1].item() == pytest.approx(kl.corrupted_metric, abs=1e-5)  # the last layer, earlier


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text", "mamba2"]))
def test_teacher_forcing_reads_before_a_later_start(tiny_models, model_type, shape):
    """A state patched after the prompt's last token changes only the answer tokens after it; the read at the
    last prompt token stays the base run's. The fast path (which starts after the state) equals a run that
    recomputes everything from token 0 (a different path: the state written inside the run)."""
    _, hm = tiny_models(model_type, shape)
    clean, corrupted = _prompts(7), _prompts(8)
    metric = LogitDiff([[5, 6, 7], [9, 4]], [[4, 6, 1], [2, 8]], whole_answer=True)
    sites = state_sites(hm)[:2]
    fast = sweep(hm, clean, corrupted, sites, metric, positions=[-1, -2])
    slow = sweep(hm, clean, corrupted, sites, metric, positions=[-1, -2], reuse=Reuse(False, False))
    assert (fast.values - slow.values).abs().max().item() < TOL
    assert (fast.values[:, 0]).abs().max().item() > 1e-3  # the patch after the prompt reaches the answer
