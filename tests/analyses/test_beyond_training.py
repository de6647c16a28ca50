"""Inputs longer than a zoo model was trained on run, and the Result says so (notes), instead of refusing."""

from __future__ import annotations

import mechhybrid
from analyses.ablation.config import ComponentAblationConfig
from analyses.data import load_tasks
from mechhybrid.zoo.registry import load_card


def test_needle_beyond_the_training_length_is_noted(capsys):
    hm = mechhybrid.load("zoo:hybrid-gdn")
    trained = load_card("hybrid-gdn")["recipe"]["seq_len"]
    tasks = load_tasks(hm, ComponentAblationConfig(limit=2, benchmarks=("needle", "facts")), "component_ablation")
    longest_needle = max(len(s.ids) for s in tasks.tasks["needle"].sequences())
    assert longest_needle > trained  # the zoo's needle grid reaches past the training length on purpose
    notes = [n for n in tasks.notes if "trained on" in n]
    assert len(notes) == 1 and notes[0].startswith("needle:") and f"{longest_needle} tokens" in notes[0]
    assert "beyond the" in capsys.readouterr().err
