"""The generative path (GSM8K): greedy generation under ablation, answers read after '####'."""

from __future__ import annotations

import pytest
import torch

from analyses.ablation.conditions import BASELINE
from analyses.scoring import Condition, score_task
from analyses.tasks import GenItem, GenTask
from mechhybrid.errors import MechHybridError
from tests.analyses.conftest import NAN_WHERE, word_tokenizer


def _task(tok, answers):
    prompt = tuple(tok("what is two and two ?")["input_ids"])
    return GenTask("gsm8k", "fixture-1", tuple(GenItem(prompt, a) for a in answers), max_new_tokens=3,
                   tokenizer=tok)


def test_greedy_generation_is_scored_per_condition(hm_qwen2, monkeypatch):
    tok = word_tokenizer()
    task = _task(tok, ["4", "5"])
    # Make the model's greedy continuation known: the reader extracts whatever follows '####'.
    import analyses.datasets.gsm8k as g

    seen = []
    monkeypatch.setattr(g, "extract_answer", lambda text: seen.append(text) or "4")
    conds = [BASELINE, Condition("group:attention", "zero", tuple(hm_qwen2.components.by_kind("attention")))]
    scores = score_task(hm_qwen2, task, conds, refs=None)
    assert [s["correct"].tolist() for s in scores] == [[1.0, 0.0], [1.0, 0.0]]
    from mechhybrid.generation import greedy_reference

    ref = greedy_reference(hm_qwen2, torch.tensor([task.items[0].prompt]), 3)[0, len(task.items[0].prompt):]
    assert seen[0] == tok.decode(ref.tolist(), skip_special_tokens=True)


def test_generation_on_a_nan_weight_is_one_error_naming_where(hm_nan):
    with pytest.raises(MechHybridError, match="non-finite logits") as err:
        score_task(hm_nan, _task(word_tokenizer(), ["4"]), [BASELINE], refs=None)
    assert NAN_WHERE in str(err.value) and "condition baseline" in str(err.value)
