"""Phases and positions mean what the docs say in every entry point: captures in their phase, prompt-relative
negative positions in prefill, errors for interventions that could never apply, PatchState's source index."""

from __future__ import annotations

import pytest
import torch

from mechhybrid import Ablate, Capture, MechHybridError, PatchState, ReadState, Steer
from mechhybrid.generation import generate
from tests.conftest import random_ids

PROMPT, NEW = 6, 3


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_phased_capture_in_generate_records_its_phase_only(tiny_models, phase):
    _, hm = tiny_models("qwen3_5_text")
    ids = random_ids(2, PROMPT, 1)
    component = hm.components[0]
    result = generate(hm, ids, [Capture([component], phase=phase)], max_new_tokens=NEW)
    other = "decode" if phase == "prefill" else "prefill"
    assert component in result.captures[phase] and component not in result.captures[other]
    # Reference: the captured output over exactly that phase's tokens, from one forward over the final tokens.
    full = hm.run(result.tokens, [Capture([component])]).captures[component]
    span = slice(0, PROMPT) if phase == "prefill" else slice(PROMPT, PROMPT + NEW - 1)
    torch.testing.assert_close(result.captures[phase][component], full[:, span], atol=1e-4, rtol=0)


def test_phased_capture_beside_a_state_intervention_in_run(tiny_models):
    _, hm = tiny_models("mamba2")
    ids = random_ids(1, PROMPT, 2)
    component = hm.components[0]
    result = hm.run(ids, [Capture([component], phase="decode"), Capture([hm.components[1]], phase="prefill"),
                          ReadState([0], [-1])])
    assert component not in result.captures and hm.components[1] in result.captures


def test_prefill_negative_position_counts_from_the_end_of_the_prompt(tiny_models):
    _, hm = tiny_models("qwen2")
    ids = random_ids(1, PROMPT, 3)
    attention = hm.components.by_kind("attention")[0]
    vector = torch.randn(hm.d_model, generator=torch.Generator().manual_seed(0))
    steered = generate(hm, ids, [Steer(attention, vector, positions=[-1], phase="prefill")], max_new_tokens=NEW)
    # The first new token is chosen from the last prompt position, exactly as in `logits`.
    expected = hm.logits(ids, [Steer(attention, vector, positions=[-1])])[:, -1]
    torch.testing.assert_close(steered.logits[:, 0], expected, atol=1e-4, rtol=0)
    plain = generate(hm, ids, [], max_new_tokens=NEW)
    assert not torch.allclose(steered.logits[:, 0], plain.logits[:, 0])


@pytest.mark.parametrize(
    "item_of, message",
    [
        (lambda c: Steer(c, torch.ones(32), positions=[-1], phase="decode"), "never run"),  # last generated token
        (lambda c: Ablate([c], positions=[PROMPT + 1], phase="prefill"), "never run"),
        (lambda c: Ablate([c], positions=[2], phase="decode"), "never run"),
    ],
)
def test_interventions_that_can_never_apply_are_errors(tiny_models, item_of, message):
    _, hm = tiny_models("qwen2")
    component = hm.components.by_kind("attention")[0]
    with pytest.raises(MechHybridError, match=message):
        generate(hm, random_ids(1, PROMPT, 4), [item_of(component)], max_new_tokens=NEW)


def test_patch_state_negative_position_takes_the_sources_own_last_token(tiny_models):
    _, hm = tiny_models("qwen3_5_text")
    ids = random_ids(1, PROMPT, 5)
    source = random_ids(1, PROMPT + 3, 6)
    layers = [c.layer for c in hm.components.by_kind("linear_attention")]
    ours = hm.logits(ids, [PatchState(layers, -1, source_ids=source)])
    states = hm.read_state(source, layers, [-1])
    by_hand = hm.logits(ids, [PatchState(layers, PROMPT - 1, state={l: states[(l, PROMPT + 2)] for l in layers})])
    torch.testing.assert_close(ours, by_hand, atol=0, rtol=0)
    explicit = hm.logits(ids, [PatchState(layers, -1, source_ids=source, source_position=2)])
    states = hm.read_state(source, layers, [2])
    by_hand = hm.logits(ids, [PatchState(layers, PROMPT - 1, state={l: states[(l, 2)] for l in layers})])
    torch.testing.assert_close(explicit, by_hand, atol=0, rtol=0)
    with pytest.raises(MechHybridError, match="source position"):
        hm.logits(ids, [PatchState(layers, PROMPT - 1, source_ids=source[:, :3])])
