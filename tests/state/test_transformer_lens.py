"""Cross-check against an independent implementation: transformer-lens 4.3 `TransformerBridge` on the same weights.

Its opt-in eager scan (`eager_scan = True` on a mixer bridge) fires `hook_ssm_state`, the whole state trajectory
`[batch, seq, ...]` of a prefill; our state at t must equal its trajectory at t, and the same zero ablation (its
`hook_out` set to 0, our `Ablate(method="zero")`) must give the same logits.
"""

from __future__ import annotations

import pytest
import torch

from mechhybrid import Ablate
from mechhybrid.state import read_state
from tests.conftest import both_shapes, build_tiny, random_ids
from tests.state.helpers import TOL

bridge_module = pytest.importorskip("transformer_lens.model_bridge")

CASES = {
    # model_type: (mixer attribute of a bridge block, our component kind)
    "qwen3_5_text": ("linear_attn", "linear_attention"),
    "mamba2": ("mixer", "ssm"),
}


def _word_tokenizer(directory):
    """A 97-word tokenizer saved next to the config (the bridge reads `name_or_path`, so load it back)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(97)}, unk_token="w0"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="w0", pad_token="w1", eos_token="w2",
                            bos_token="w3").save_pretrained(directory)
    return PreTrainedTokenizerFast.from_pretrained(directory)


@pytest.fixture(scope="module")
def bridges(tmp_path_factory):
    built = {}

    def get(model_type, shape):
        if (model_type, shape) not in built:
            # A separate copy of the same weights (same seed): the bridge re-wires the model it wraps.
            model = build_tiny(model_type, shape=shape)
            directory = tmp_path_factory.mktemp(f"{model_type}-{shape}")
            model.config.save_pretrained(directory)
            bridge = bridge_module.TransformerBridge.boot_transformers(
                str(directory), hf_model=model, tokenizer=_word_tokenizer(directory)
            )
            built[model_type, shape] = bridge
        return built[model_type, shape]

    return get


@pytest.mark.parametrize("model_type,shape", both_shapes(CASES))
def test_state_equals_transformer_lens_eager_scan(tiny_models, bridges, model_type, shape):
    attr, kind = CASES[model_type]
    _, hm = tiny_models(model_type, shape)
    bridge = bridges(model_type, shape)
    layers = [c.layer for c in hm.components.by_kind(kind)]
    for layer in layers:
        getattr(bridge.blocks[layer], attr).eager_scan = True
    ids = random_ids(1, 9, seed=40)
    try:
        with torch.no_grad():
            logits, cache = bridge.run_with_cache(ids)
    finally:
        for layer in layers:
            getattr(bridge.blocks[layer], attr).eager_scan = False
    assert (logits - hm.logits(ids)).abs().max().item() < TOL
    ours = read_state(hm, ids, layers, list(range(9)))
    for layer in layers:
        trajectory = cache[f"blocks.{layer}.{attr}.hook_ssm_state"]  # [batch, seq, head, ., .]
        assert trajectory.shape[:2] == (1, 9)
        for t in range(9):
            assert (ours[(layer, t)].recurrent - trajectory[:, t]).abs().max().item() < TOL, (layer, t)


@pytest.mark.parametrize("model_type,shape", both_shapes(CASES))
def test_zero_ablation_equals_transformer_lens(tiny_models, bridges, model_type, shape):
    attr, kind = CASES[model_type]
    _, hm = tiny_models(model_type, shape)
    bridge = bridges(model_type, shape)
    component = hm.components.by_kind(kind)[1]
    ids = random_ids(2, 8, seed=41)
    with torch.no_grad():
        theirs = bridge.run_with_hooks(
            ids, fwd_hooks=[(f"blocks.{component.layer}.{attr}.hook_out", lambda value, hook: torch.zeros_like(value))]
        )
    ours = hm.logits(ids, [Ablate([component], "zero")])
    assert (ours - theirs).abs().max().item() < TOL
    assert (ours - hm.logits(ids)).abs().max().item() > 1e-3
