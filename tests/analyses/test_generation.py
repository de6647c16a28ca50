"""The generative path (GSM8K): greedy generation under ablation, answers read after '####'."""

from __future__ import annotations

import sys

import pytest
import torch

from analyses.ablation.conditions import BASELINE
from analyses.scoring import Condition, score_task
from analyses.tasks import GenItem, GenTask
from mechhybrid.errors import MechHybridError
from tests.analyses.conftest import word_tokenizer


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


class _WithoutGenerate:
    """A model layer from before issue 4: everything but `generate`."""

    def __init__(self, hm):
        self._hm = hm

    def __getattr__(self, name):
        if name == "generate":
            raise AttributeError(name)
        return getattr(self._hm, name)


def test_missing_generation_is_a_clear_error(hm_qwen2, monkeypatch):
    monkeypatch.setitem(sys.modules, "mechhybrid.generation", None)
    with pytest.raises(MechHybridError, match="needs greedy generation"):
        score_task(_WithoutGenerate(hm_qwen2), _task(word_tokenizer(), ["4"]), [BASELINE], refs=None)
