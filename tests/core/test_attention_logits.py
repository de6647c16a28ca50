"""Attention-logit edits (`MaskKeys`, `EditLogits`, `FocusKeys`) against an eager attention edited by hand.

For every family with softmax attention, in both tiny shapes: the edited attention module's output equals the hand
computation from that module's own input in the same run (1e-5), and the model's logits equal a plain transformers
forward whose attention module is replaced by the hand computation (1e-4, a separate run). In `generate`, each
phase edits exactly the queries it runs: a decode-only edit leaves the first answer token's logits alone.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest
import torch

from mechhybrid import MechHybridError
from mechhybrid.attention import EditLogits, FocusKeys, MaskKeys
from mechhybrid.state import ReadState
from tests.conftest import ALL_MODEL_TYPES, both_shapes, build_tiny, random_ids
from tests.core import attention_reference as ref

ATTENTION_TYPES = tuple(t for t in ALL_MODEL_TYPES if t != "mamba2")
SEQ = 7


def _layers(hm) -> list[int]:
    return sorted({c.layer for c in hm.components if c.kind == "attention"})


def _n_heads(hm) -> int:
    return next(c.n_heads for c in hm.components if c.kind == "attention")


def _select(batch, n_heads, seq, heads, queries, keys) -> torch.Tensor:
    """`bool[batch, head, query, key]` by hand (None = all)."""
    pick = lambda chosen, n: torch.ones(n, dtype=torch.bool) if chosen is None else torch.isin(
        torch.arange(n), torch.tensor([c % n for c in chosen], dtype=torch.long))
    return (pick(heads, n_heads)[:, None, None] & pick(queries, seq)[None, :, None]
            & pick(keys, seq)[None, None, :]).expand(batch, -1, -1, -1)


def _hand_edit(kind: str, logits: torch.Tensor, select: torch.Tensor, value: float) -> torch.Tensor:
    """The edit on hand-computed logits (hidden keys are -inf and stay hidden)."""
    seen = torch.isfinite(logits) & select
    if kind == "mask":
        return logits.masked_fill(select, float("-inf"))
    if kind == "focus":
        top = logits.amax(-1, keepdim=True).expand_as(logits)
        return torch.where(seen, top * value, logits)
    new = {"add": logits + value, "scale": logits * value, "set": torch.full_like(logits, value)}[kind]
    return torch.where(seen, new, logits)


def _item(kind: str, value: float, **selection):
    if kind == "mask":
        return MaskKeys(**selection)
    if kind == "focus":
        return FocusKeys(scale=value, **selection)
    return EditLogits(op=kind, value=value, **selection)


# (kind, value, heads, query positions, keys): every op, a head subset and all heads, all queries, and a query
# left with no visible key (every key of query 3 hidden).
CASES = [
    ("mask", 0.0, [0, -1], [3, 6], [1, 2]),
    ("mask", 0.0, None, None, [2]),
    ("mask", 0.0, [1], [3], [0, 1, 2, 3]),
    ("add", 2.5, [1], [4, 6], [0, 5]),
    ("scale", -1.7, None, [5, 6], [1, 4]),
    ("set", 3.0, [0, -1], None, [2]),
    ("focus", 1.5, [1, 0], [6], [3]),
    ("focus", 0.5, None, None, [1, 4]),
]


def _hand_output(hm, layer, bound, kind, value, heads, queries, keys):
    logits, v, gate = ref.scores(hm, layer, bound)
    batch, n_heads, seq, _ = logits.shape
    heads = None if heads is None else [h % n_heads for h in heads]
    select = _select(batch, n_heads, seq, heads, queries, keys)
    return ref.output(hm, layer, ref.softmax(_hand_edit(kind, logits, select, value)), v, gate)


@pytest.mark.parametrize("model_type, shape", both_shapes(ATTENTION_TYPES))
def test_every_edit_equals_hand_attention(tiny_models, model_type, shape):
    _check_every_edit(*tiny_models(model_type, shape))


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "recurrent_gemma"])
def test_every_edit_on_an_eager_model(model_type):
    """Models loaded with eager attention take the edits through their own eager kernel and float mask."""
    import mechhybrid

    model = build_tiny(model_type, shape="alt")
    model.config._attn_implementation = "eager"
    _check_every_edit(model, mechhybrid.load(model))


def _check_every_edit(model, hm):
    ids = random_ids(2, SEQ, seed=21)
    layer = _layers(hm)[-1]
    n_heads = _n_heads(hm)
    for kind, value, heads, queries, keys in CASES:
        item = _item(kind, value, keys=keys, layers=[layer], heads=None if heads is None else
                     [h % n_heads for h in heads], positions=queries)
        outputs: dict = {}
        with ref.inputs_of(hm, [layer], outputs) as seen:
            logits = hm.logits(ids, [item])
        with torch.no_grad():
            hand = _hand_output(hm, layer, seen[layer], kind, value, heads, queries, keys)
        torch.testing.assert_close(outputs[layer], hand, atol=1e-5, rtol=0, msg=f"{kind} {keys}")

        def replaced(bound, args=(kind, value, heads, queries, keys)):
            return _hand_output(hm, layer, bound, *args)

        with torch.no_grad(), ref.replace_output(hm, layer, replaced):
            expected = model(ids).logits
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0, msg=f"{kind} {keys}")


@pytest.mark.parametrize("model_type, shape", both_shapes(["llama", "zamba2", "recurrent_gemma", "qwen2"]))
def test_an_edit_on_every_layer_equals_the_hand_edit_on_every_layer(tiny_models, model_type, shape):
    """layers=None edits every attention layer (qwen2's second shape: sliding and full layers alike)."""
    model, hm = tiny_models(model_type, shape)
    ids = random_ids(2, SEQ, seed=22)
    logits = hm.logits(ids, [MaskKeys(keys=[0, 3])])
    with torch.no_grad(), ExitStack() as stack:
        for layer in _layers(hm):
            stack.enter_context(ref.replace_output(
                hm, layer, lambda bound, layer=layer: _hand_output(hm, layer, bound, "mask", 0.0, None, None, [0, 3])))
        expected = model(ids).logits
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("model_type, shape", both_shapes(["llama", "jamba", "falcon_h1", "gpt2"]))
def test_edits_that_select_nothing_change_nothing(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    ids = random_ids(2, SEQ, seed=23)
    plain = hm.logits(ids)
    nothing = torch.zeros(2, SEQ, dtype=torch.bool)
    for item in (MaskKeys(keys=()), MaskKeys(keys=nothing), EditLogits(keys=[1], op="set", value=9.0, positions=()),
                 FocusKeys(keys=(), scale=3.0)):
        assert torch.equal(hm.logits(ids, [item]), plain), item
    # Adding 0 selects keys, so the edited queries run the eager kernel: equal up to its rounding.
    torch.testing.assert_close(hm.logits(ids, [EditLogits(keys=[1, 2], op="add", value=0.0)]), plain,
                               atol=1e-5, rtol=0)


def test_alternative_sets_stack_into_one_forward(tiny_models):
    _, hm = tiny_models("bamba", "alt")
    ids = random_ids(2, SEQ, seed=24)
    sets = [[], [MaskKeys(keys=[2], heads=[1])], [FocusKeys(keys=[1], scale=2.0, positions=[-1])],
            [EditLogits(keys=[0], op="add", value=-3.0), MaskKeys(keys=[4])]]
    many = hm.logits_many(ids, sets)
    for index, items in enumerate(sets):
        torch.testing.assert_close(many[index], hm.logits(ids, items), atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type, shape", both_shapes(["llama", "qwen3_5_text", "lfm2"]))
def test_left_padded_rows_get_their_own_edit(tiny_models, model_type, shape):
    """Keys in the caller's layout (a per-row mask, or -1 = each row's last token) edit what each row alone gets."""
    _, hm = tiny_models(model_type, shape)
    short, full = random_ids(1, 5, seed=25), random_ids(1, 8, seed=26)
    ids = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), short], 1), full])
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[0, :3] = 0
    keys = torch.zeros(2, 8, dtype=torch.bool)
    keys[0, 3 + 1], keys[1, 1] = True, True  # token 1 of each row
    for padded_item, alone_item in ((MaskKeys(keys=keys), MaskKeys(keys=[1])),
                                    (FocusKeys(keys=[-1], scale=2.0), FocusKeys(keys=[-1], scale=2.0))):
        logits = hm.logits(ids, [padded_item], attention_mask=mask)
        torch.testing.assert_close(logits[0, 3:], hm.logits(short, [alone_item])[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(logits[1], hm.logits(full, [alone_item])[0], atol=1e-4, rtol=0)


def test_edits_compose_with_state_interventions(tiny_models):
    """With a ReadState the run goes in segments through the cache (token by token in jamba): same logits."""
    _, hm = tiny_models("jamba", "base")
    ids = random_ids(1, SEQ, seed=27)
    item = FocusKeys(keys=[1, 2], scale=2.0, heads=[0, 2])
    result = hm.run(ids, [item, ReadState(layers=[0], positions=[3])])
    torch.testing.assert_close(result.logits, hm.logits(ids, [item]), atol=1e-5, rtol=0)


PROMPT, NEW = 6, 3
SPANS = {"prefill": range(0, PROMPT), "decode": range(PROMPT, PROMPT + NEW - 1), "all": range(0, PROMPT + NEW - 1)}


@pytest.mark.parametrize("model_type, shape", both_shapes(ATTENTION_TYPES))
def test_phases_in_generate_equal_the_hand_edit_on_their_queries(tiny_models, model_type, shape):
    """Each phase edits the queries its tokens are: the prompt (prefill), the generated tokens read back
    (decode), or both. Checked against a full forward over the generated tokens with the hand edit on exactly
    those queries; sliding windows shorter than prompt + answer run through their window cache."""
    model, hm = tiny_models(model_type, shape)
    prompt = random_ids(2, PROMPT, seed=28)
    plain = hm.generate(prompt, max_new_tokens=NEW)
    layers = _layers(hm)
    for kind, value, keys, heads in (("mask", 0.0, [1, 4], None), ("mask", 0.0, [2], [1]), ("focus", 2.0, [2], None)):
        for phase, span in SPANS.items():
            item = _item(kind, value, keys=keys, heads=heads, phase=phase)
            gen = hm.generate(prompt, [item], max_new_tokens=NEW)
            if phase == "decode":  # the first answer token comes from the prefill
                assert torch.equal(gen.logits[:, 0], plain.logits[:, 0])
            with torch.no_grad(), ExitStack() as stack:
                for layer in layers:
                    stack.enter_context(ref.replace_output(hm, layer, lambda bound, layer=layer: _hand_output(
                        hm, layer, bound, kind, value, heads, list(span), keys)))
                expected = model(gen.tokens[:, :-1]).logits[:, PROMPT - 1 :]
            torch.testing.assert_close(gen.logits, expected, atol=1e-4, rtol=0, msg=f"{kind} {phase}")


def test_prefill_keys_count_from_the_end_of_the_prompt(tiny_models):
    _, hm = tiny_models("llama", "base")
    prompt = random_ids(1, PROMPT, seed=29)
    by_end = hm.generate(prompt, [MaskKeys(keys=[-1], phase="decode")], max_new_tokens=NEW)
    absolute = hm.generate(prompt, [MaskKeys(keys=[PROMPT - 1], phase="decode")], max_new_tokens=NEW)
    assert torch.equal(by_end.logits, absolute.logits)


def _one_line_error(fn, *needles):
    with pytest.raises(MechHybridError) as caught:
        fn()
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_bad_edits_are_one_line_errors(tiny_models):
    _, hm = tiny_models("jamba", "base")  # attention at layers 1 and 3, 4 heads
    ids = random_ids(2, 6, seed=30)
    _one_line_error(lambda: EditLogits(keys=[1], op="mul", value=2.0), "unknown EditLogits op 'mul'")
    _one_line_error(lambda: MaskKeys(keys=torch.tensor([0.5])), "integer positions or a boolean mask")
    _one_line_error(lambda: MaskKeys(keys=torch.zeros(3, dtype=torch.bool)), "must be 2-D")
    _one_line_error(lambda: hm.logits(ids, [MaskKeys(keys=[6])]), "key position 6 out of range", "6 tokens")
    _one_line_error(lambda: hm.logits(ids, [MaskKeys(keys=[1], layers=[4])]), "layer 4 out of range")
    _one_line_error(lambda: hm.logits(ids, [MaskKeys(keys=[1], layers=[0])]), "layer 0 has no softmax attention")
    _one_line_error(lambda: hm.logits(ids, [MaskKeys(keys=[1], heads=[4])]), "head 4 out of range", "0..3")
    _one_line_error(lambda: hm.logits(ids, [MaskKeys(keys=[1], positions=[9])]), "position 9 out of range")
    _one_line_error(lambda: hm.logits(ids, [MaskKeys(keys=torch.ones(1, 6, dtype=torch.bool))]), "batch 1")
    _one_line_error(lambda: hm.logits(ids, [MaskKeys(keys=torch.ones(2, 7, dtype=torch.bool))]), "covers 7")
    _one_line_error(lambda: hm.generate(ids, [MaskKeys(keys=[9], phase="decode")], max_new_tokens=2),
                    "key position 9 out of range")


def test_a_family_without_softmax_attention_is_refused(tiny_models):
    _, hm = tiny_models("mamba2", "base")
    _one_line_error(lambda: hm.logits(random_ids(1, 5, seed=31), [FocusKeys(keys=[1])]),
                    "mamba2 has no softmax attention")


def test_a_forward_that_does_not_install_the_function_refuses_its_edits(tiny_models):
    """A code path that compiles attention items but runs the model without `installed` fails loudly."""
    from mechhybrid.engine import compile_plan
    from mechhybrid.state.runner import forward_with_ops

    _, hm = tiny_models("llama", "base")
    ids = random_ids(1, 5, seed=32)
    plan = compile_plan(hm, ids, [[MaskKeys(keys=[1], layers=[2])]], phase="prefill")
    _one_line_error(lambda: forward_with_ops(hm, plan.ops, ids, {}), "does not install")
