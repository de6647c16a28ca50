"""Generation through the cache equals slow references, and every intervention applies only in its phase."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from mechhybrid import Ablate, Capture
from mechhybrid.generation import generate, greedy_reference
from mechhybrid.state import EditState, ReadState, read_state, resolve_layers, run_with_state, zero_state
from mechhybrid.state import cache as cache_ops
from tests.conftest import both_shapes, random_ids
from tests.state.helpers import STATEFUL, TOL, max_gap

PROMPT, NEW = 5, 6


@pytest.mark.parametrize("model_type,shape", both_shapes(STATEFUL))
def test_generate_equals_greedy_no_cache_loop_and_transformers(tiny_models, model_type, shape):
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(2, PROMPT, seed=20)
    result = generate(hm, ids, max_new_tokens=NEW)
    assert result.tokens.shape == (2, PROMPT + NEW) and result.logits.shape == (2, NEW, hm.vocab_size)
    assert torch.equal(result.tokens, greedy_reference(hm, ids, NEW))
    # transformers' own greedy generate, where its cache is exact (every family once position_ids are passed;
    # EOS disabled so that a random model emitting token 2 does not stop early).
    config = GenerationConfig(max_new_tokens=NEW, do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        theirs = model.generate(ids, generation_config=config, attention_mask=torch.ones_like(ids))
    assert torch.equal(result.tokens, theirs)


def _hooked_greedy(hm, ids, component, prefill_zero: bool, decode_zero: bool):
    """Reference: the model's own cached loop, with a plain torch forward hook zeroing `component`'s output
    in the chosen phases; returns (tokens, chosen logits, the component's output per decode step)."""
    module = hm.module(component.path)
    state = {"zero": prefill_zero, "outs": []}

    def hook(mod, args, output):
        first = output[0] if isinstance(output, tuple) else output
        if state["zero"]:
            first.zero_()
        state["outs"].append(first.detach().clone())

    batch = ids.shape[0]
    cache = cache_ops.new_cache(hm, batch)
    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            last = hm.hf_model(ids, **cache_ops.forward_kwargs(hm, cache, 0, PROMPT, batch)).logits[:, -1]
            state["zero"], state["outs"] = decode_zero, []
            tokens, chosen = ids, []
            for step in range(NEW):
                chosen.append(last)
                tokens = torch.cat([tokens, last.argmax(-1, keepdim=True)], 1)
                if step < NEW - 1:
                    kwargs = cache_ops.forward_kwargs(hm, cache, PROMPT + step, PROMPT + step + 1, batch)
                    last = hm.hf_model(tokens[:, -1:], **kwargs).logits[:, -1]
    finally:
        handle.remove()
    return tokens, torch.stack(chosen, 1), torch.cat(state["outs"], 1)


@pytest.mark.parametrize("model_type,shape,kind", both_shapes([
    ("qwen3_5_text", "attention"), ("jamba", "ssm"), ("recurrent_gemma", "recurrent"), ("mamba2", "ssm"),
]) + both_shapes([("recurrent_gemma", "attention")], shapes=("alt",)))  # its window (4) < PROMPT + NEW
def test_decode_only_ablation_equals_hooked_reference(tiny_models, model_type, shape, kind):
    _, hm = tiny_models(model_type, shape)
    component = hm.components.by_kind(kind)[0]
    ids = random_ids(2, PROMPT, seed=21)
    ours = generate(hm, ids, [Ablate([component], phase="decode")], max_new_tokens=NEW)
    tokens, logits, _ = _hooked_greedy(hm, ids, component, prefill_zero=False, decode_zero=True)
    assert torch.equal(ours.tokens, tokens)
    assert (ours.logits - logits).abs().max().item() < TOL
    # The prompt was read clean: the first token's logits are the plain forward's.
    assert (ours.logits[:, 0] - hm.logits(ids)[:, -1]).abs().max().item() < TOL
    assert (ours.logits[:, 1:] - generate(hm, ids, max_new_tokens=NEW).logits[:, 1:]).abs().max().item() > 1e-4
    overridden = generate(hm, ids, [Ablate([component])], max_new_tokens=NEW, phase="decode")
    assert torch.equal(overridden.tokens, ours.tokens)


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text", "bamba"]))
def test_prefill_only_ablation_leaves_decode_outputs_untouched(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    attention = hm.components.by_kind("attention")[0]
    ids = random_ids(2, PROMPT, seed=22)
    ours = generate(hm, ids, [Ablate([attention], phase="prefill"), Capture([attention])], max_new_tokens=NEW)
    tokens, logits, decode_outs = _hooked_greedy(hm, ids, attention, prefill_zero=True, decode_zero=False)
    assert torch.equal(ours.tokens, tokens)
    assert (ours.logits - logits).abs().max().item() < TOL
    assert ours.captures["prefill"][attention].abs().max().item() == 0.0
    decode = ours.captures["decode"][attention]  # [batch, NEW - 1, d_model]: one per decode step
    assert decode.shape == (2, NEW - 1, hm.d_model)
    assert (decode - decode_outs).abs().max().item() < TOL and decode.abs().max().item() > 1e-3


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text", "jamba"]))
def test_state_after_each_generated_token(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    layer = resolve_layers(hm, None)[0]
    ids = random_ids(1, PROMPT, seed=23)
    result = generate(hm, ids, [ReadState([layer], None, phase="decode")], max_new_tokens=NEW)
    assert sorted(p for _, p in result.states) == list(range(PROMPT, PROMPT + NEW))
    truth = read_state(hm, result.tokens, [layer], list(range(PROMPT, PROMPT + NEW)))
    for key, state in truth.items():
        assert max_gap(result.states[key], state) < TOL


@pytest.mark.parametrize("model_type,shape", both_shapes(["qwen3_5_text"]))
def test_state_edit_in_the_prompt_carries_into_generation(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    ids = random_ids(2, PROMPT, seed=24)
    edit = EditState([1], 2, zero_state)
    ours = generate(hm, ids, [edit], max_new_tokens=NEW)
    assert (ours.logits[:, 0] - run_with_state(hm, ids, [edit]).logits[:, -1]).abs().max().item() < TOL
    assert torch.equal(ours.tokens, greedy_reference_with_state(hm, ids, edit))


def greedy_reference_with_state(hm, ids, edit):
    """Greedy loop of full (segmented, uncached across steps) forwards with the same state edit."""
    tokens = ids
    for _ in range(NEW):
        logits = run_with_state(hm, tokens, [edit]).logits[:, -1]
        tokens = torch.cat([tokens, logits.argmax(-1, keepdim=True)], 1)
    return tokens


@pytest.mark.parametrize("model_type,shape", both_shapes(["mamba2", "jamba", "recurrent_gemma"]))
def test_decode_phase_state_edit_equals_segmented_forward(tiny_models, model_type, shape):
    """Zeroing a state after a generated token == the same edit in one segmented forward over the final tokens."""
    _, hm = tiny_models(model_type, shape)
    ids = random_ids(2, PROMPT, seed=25)
    layer = min(c.layer for c in hm.components if c.kind in ("ssm", "recurrent"))
    edit = EditState([layer], PROMPT + 1, zero_state, phase="decode")
    ours = generate(hm, ids, [edit], max_new_tokens=NEW)
    full = run_with_state(hm, ours.tokens, [EditState([layer], PROMPT + 1, zero_state)]).logits
    assert (ours.logits - full[:, PROMPT - 1 : PROMPT - 1 + NEW]).abs().max().item() < TOL
    assert (ours.logits - generate(hm, ids, max_new_tokens=NEW).logits).abs().max().item() > 1e-4
