"""Mamba-2's one-token step under a dt limit that binds: equal to the whole forward's chunk scan in every family,
bitwise unchanged where the limit does not bind, and undone by `release_one_token_steps`."""

from __future__ import annotations

import importlib
import weakref

import pytest
import torch

import mechhybrid
from mechhybrid import ssm_step
from mechhybrid.ssm_step import STEP_FUNCTION, STEP_MIXERS, clamp_one_token_steps, release_one_token_steps
from mechhybrid.state import ReadState, resolve_layers, run_with_state
from mechhybrid.state import cache as cache_ops
from tests.conftest import build_tiny, random_ids
from tests.tiny_configs import TINY_CONFIGS

EXACT = 1e-5
SEQ, PROMPT, NEW = 9, 4, 5

BINDING = {
    "mamba2": dict(time_step_limit=(0.5, 1.0)),
    "falcon_h1": dict(time_step_limit=(0.5, 1.0)),
    "bamba": dict(time_step_limit=(0.5, 1.0)),
    "granitemoehybrid": dict(time_step_limit=(0.5, 1.0)),
    # These two take their limit from time_step_min, (time_step_min, inf); dt starts in [1e-3, 0.5] at init.
    "zamba2": dict(time_step_min=0.5, time_step_max=0.001),
    "nemotron_h": dict(time_step_min=0.5, time_step_max=0.001),
}
"""Family -> config changes (on its first tiny shape) that give a dt limit far above most initial dt: it binds."""
SCALE = dict(initializer_range=0.1)
"""Weights 5x transformers' default, so that states are of order 1e-2 to 1 instead of 5e-5 and a comparison at
1e-5 can fail (measured: with transformers' own step, states then differ by 96-160% and decode logits by 1e-4 to
5e-2 of their largest value; with the clamp by at most 1e-6)."""


def _build(model_type: str, changes: dict):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **{**TINY_CONFIGS[model_type], **changes})
    return AutoModelForCausalLM.from_config(config).eval()


def _prefix_state(hm, ids, layer):
    """`layer`'s state after one plain cached forward of `ids` (the chunk scan, no one-token step)."""
    batch, seq = ids.shape
    cache = cache_ops.new_cache(hm, batch)
    with torch.no_grad():
        hm.hf_model(ids, **cache_ops.forward_kwargs(hm, cache, 0, seq, batch))
    return cache_ops.read(hm, cache, layer, seq - 1)


def _relative_gap(ours, reference) -> float:
    """max |ours - reference| / max |reference|."""
    return ((ours - reference).abs().max() / reference.abs().max()).item()


def _state_gap(hm, ids, layers) -> float:
    """The largest relative gap, over every position, state layer and tensor (recurrent, conv window), between
    the state read after each token (every segment but the first is one token) and the state after a plain cached
    forward of the prefix (one chunk scan)."""
    states = hm.read_state(ids, layers, list(range(ids.shape[1])))
    gap = 0.0
    for t in range(ids.shape[1]):
        for layer in layers:
            reference = _prefix_state(hm, ids[:, : t + 1], layer)
            gap = max(gap, _relative_gap(states[(layer, t)].recurrent, reference.recurrent),
                      _relative_gap(states[(layer, t)].conv, reference.conv))
    return gap


def _decode_gap(hm, ids) -> float:
    """Relative gap between generate's decode logits and the full forward's logits over the generated tokens."""
    result = hm.generate(ids[:, :PROMPT], max_new_tokens=NEW)
    full = hm.logits(result.tokens)
    return _relative_gap(result.logits, full[:, PROMPT - 1 : PROMPT - 1 + NEW])


def test_binding_configs_cover_every_step_family():
    assert set(BINDING) == set(STEP_MIXERS)


@pytest.mark.parametrize("model_type", sorted(BINDING))
def test_one_token_steps_equal_the_full_forward_under_a_binding_dt_limit(model_type):
    model = _build(model_type, {**BINDING[model_type], **SCALE})
    hm = mechhybrid.load(model)
    limits = {tuple(m.time_step_limit) for m in model.modules() if hasattr(m, "time_step_limit")}
    assert limits and all(low == 0.5 for low, _ in limits)  # the limit meant, at every Mamba-2 mixer
    ids = random_ids(2, SEQ, seed=50)
    layers = resolve_layers(hm, None)
    assert _state_gap(hm, ids, layers) < EXACT
    logits = run_with_state(hm, ids, [ReadState(None, list(range(SEQ)))]).logits
    assert _relative_gap(logits, hm.logits(ids)) < EXACT
    assert _decode_gap(hm, ids) < EXACT
    # Non-vacuous, and the model really runs the fix: with transformers' own step the same checks fail.
    release_one_token_steps(model, model_type)
    assert _state_gap(hm, ids, layers) > 0.5
    assert _decode_gap(hm, ids) > 5 * EXACT


@pytest.mark.parametrize("model_type,changes", [
    # The defaults: (0, inf), or (1e-3, inf) in zamba2 and nemotron_h.
    *[pytest.param(name, {}, id=f"{name}-default") for name in sorted(STEP_MIXERS)],
    # A finite limit that no dt reaches: the clamp path itself.
    pytest.param("mamba2", dict(time_step_limit=(0.0, 1e3)), id="mamba2-unreached"),
])
def test_steps_are_bitwise_transformers_where_the_limit_does_not_bind(model_type, changes):
    model = _build(model_type, changes)
    hm = mechhybrid.load(model)
    ids = random_ids(2, PROMPT, seed=51)
    ours = hm.generate(ids, max_new_tokens=NEW)
    release_one_token_steps(model, model_type)
    theirs = hm.generate(ids, max_new_tokens=NEW)
    assert torch.equal(ours.logits, theirs.logits) and torch.equal(ours.tokens, theirs.tokens)


@pytest.fixture
def transformers_step(monkeypatch):
    """bamba's module with transformers' own step, restored after the test whatever `load` installed earlier;
    only this test's mixers count as hooked."""
    module = importlib.import_module(STEP_MIXERS["bamba"][0])
    step = getattr(module, STEP_FUNCTION)
    while hasattr(step, "mechhybrid_clamps_dt"):
        step = step.__wrapped__
    monkeypatch.setattr(module, STEP_FUNCTION, step)
    monkeypatch.setattr(ssm_step, "_hooked", weakref.WeakKeyDictionary())
    return module, step


def test_install_is_idempotent_and_release_restores_transformers(transformers_step):
    module, original = transformers_step
    model = build_tiny("bamba")
    mixers = [m for m in model.modules() if isinstance(m, module.BambaMixer)]
    assert len(mixers) == 2
    for _ in range(2):
        assert clamp_one_token_steps(model, "bamba")
        assert getattr(module, STEP_FUNCTION).__wrapped__ is original
        assert all(len(m._forward_pre_hooks) == 1 and len(m._forward_hooks) == 1 for m in mixers)
    release_one_token_steps(model, "bamba")
    assert getattr(module, STEP_FUNCTION) is original
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in mixers)


def test_families_without_a_mamba2_step_are_left_alone():
    model = build_tiny("jamba")
    assert not clamp_one_token_steps(model, "jamba")
    assert all(not m._forward_pre_hooks for m in model.modules())
