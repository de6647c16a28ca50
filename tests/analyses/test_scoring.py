"""Batched, padded scoring checked against a plain per-sequence reference (transformers forward, no engine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analyses.ablation.conditions import BASELINE
from analyses.hidden import hidden_states_many
from analyses.scoring import Condition, References, interventions_for, score_seqs
from analyses.tasks import LOSS_CLAMP, Seq

SEQS = [Seq(tuple(range(5, 17)), ((1, 12),)), Seq((3, 9, 4, 7, 7, 20), ((2, 4), (4, 6))),
        Seq((11, 12, 13), ((2, 3),))]


def _reference(model, seq: Seq):
    """Per span: (sum log p, clamped nll, tokens, exact) from one unpadded plain forward."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([seq.ids])).logits[0].double(), -1)
    out = []
    for start, end in seq.spans:
        lp = torch.stack([logp[t - 1, seq.ids[t]] for t in range(start, end)])
        exact = all(int(logp[t - 1].argmax()) == seq.ids[t] for t in range(start, end))
        out.append((float(lp.sum()), float((-lp).clamp(max=LOSS_CLAMP).sum()), end - start, float(exact)))
    return out


@pytest.mark.parametrize("fixture", ["hm_qwen2", "hm_hybrid"])
def test_padded_batches_equal_unpadded_plain_forward(fixture, request):
    hm = request.getfixturevalue(fixture)
    got = score_seqs(hm, SEQS, [BASELINE], refs=None, batch_size=3)
    want = [span for s in SEQS for span in _reference(hm.hf_model, s)]
    assert got.logp.shape == (1, len(want))
    for k, (lp, nll, n, exact) in enumerate(want):
        assert got.logp[0, k] == pytest.approx(lp, abs=1e-4)
        assert got.nll_clamped[0, k] == pytest.approx(nll, abs=1e-4)
        assert got.n_tok[0, k] == n and got.exact[0, k] == exact


def test_many_conditions_equal_one_at_a_time(hm_qwen2):
    hm = hm_qwen2
    refs = References.from_docs([tuple(range(3, 40))], n_ref=2, ref_len=8)
    conds = [BASELINE] + [Condition(f"layer:{c.layer}:{c.kind}", m, (c,))
                          for c in hm.components[:3] for m in ("zero", "mean", "resample")]
    together = score_seqs(hm, SEQS, conds, refs, batch_size=2)
    for i, cond in enumerate(conds):
        alone = score_seqs(hm, SEQS, [cond], refs, batch_size=2)
        np.testing.assert_allclose(together.logp[i], alone.logp[0], atol=1e-5)
    assert not np.allclose(together.logp[0], together.logp[1])  # ablation did something


def test_resample_source_is_one_tensor_per_shape():
    refs = References.from_docs([(1, 2, 3)])
    ids = torch.zeros(2, 5, dtype=torch.long)
    a, b = refs.source_like(ids), refs.source_like(ids.clone())
    assert a is b and a.shape == (2, 5) and a.flatten()[:4].tolist() == [1, 2, 3, 1]


def test_hidden_states_many_equals_loop(hm_hybrid):
    hm = hm_hybrid
    x = torch.randint(3, 97, (2, 7), generator=torch.Generator().manual_seed(0))
    conds = [Condition("a", "zero", (c,)) for c in hm.components[:3]] + [BASELINE]
    sets = [interventions_for(c, x, None) for c in conds]
    many = hidden_states_many(hm, x, sets)
    loop = torch.stack([hm.hidden_states(x, s) for s in sets])
    assert many.shape == (4, hm.n_layers, 2, 7, 32)
    torch.testing.assert_close(many, loop, atol=1e-5, rtol=1e-5)
