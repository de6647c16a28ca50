"""Per-query head choice (`KeepTopHeads`) and static head choice (`KeepHeads`) against a hand computation.

The reference is the independent eager attention of `attention_reference`: probabilities from the module's own
input, then, written here, each head's entropy (-sum p log2 p) or L2 norm at each query, the k most peaked heads
ranked by sorting (score, head index) in Python, and the dropped heads' probabilities zeroed, which zeroes their
outputs before the gate and the output projection. The edited attention module's output must equal it in the
same run (1e-5) and the model's logits a plain transformers forward whose attention module is replaced by it
(1e-4). In `generate` each phase chooses heads at exactly its queries; a batch of prompts of different lengths
generates what each prompt generates alone.
"""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack

import pytest
import torch

from mechhybrid import AblateHeads, KeepHeads, KeepTopHeads, MechHybridError
from mechhybrid.attention import MaskKeys
from mechhybrid.generation import generate
from mechhybrid.state import ReadState
from tests.conftest import ALL_MODEL_TYPES, both_shapes, build_tiny, random_ids
from tests.core import attention_reference as ref

ATTENTION_TYPES = tuple(t for t in ALL_MODEL_TYPES if t != "mamba2")
SEQ = 7
SHARPEN = 3.0
"""Factor on the query and key projections of the test models (gpt2's fused c_attn, values included). At their
random initialisation attention is nearly uniform in most families: entropies of different heads then differ by
~1e-7, where rounding decides the choice; logits 9x larger separate the heads (checked at every choice:
`_check_margin`). qwen3_5 and qwen3_next norm q and k after the projection, so it leaves their logits alone (their
heads are apart already); recurrent_gemma and lfm2 start peaked, and sharper their heads saturate (L2 norms within
1e-7 of 1), so they keep their own weights."""
UNSHARPENED = ("recurrent_gemma", "lfm2")
MARGIN = 1e-6
"""Relative gap below which the k-th and (k+1)-th scores (when not equal) would let rounding decide the choice:
float32 probabilities differ between two computations by ~1e-7 relative, and so do their entropies and norms
(also near 0, where a saturated head's entropy comes from its small probabilities)."""
_QK_PARAMETERS = ("q_proj", "k_proj", "c_attn")


@pytest.fixture(scope="module")
def sharp_models():
    """(model_type, shape) -> (transformers model, HybridModel): the tiny model with sharpened attention."""
    import mechhybrid

    cache = {}

    def get(model_type: str, shape: str = "base", eager: bool = False):
        if (model_type, shape, eager) not in cache:
            model = build_tiny(model_type, shape=shape)
            if eager:
                model.config._attn_implementation = "eager"
            hm = mechhybrid.load(model)
            # zamba2's shared block is one module for several layers: each module once.
            modules = {id(m): m for m in (hm.module(c.path) for c in _attention(hm))}
            with torch.no_grad():
                for module in modules.values() if model_type not in UNSHARPENED else ():
                    for name, parameter in module.named_parameters():
                        if name.split(".")[0] in _QK_PARAMETERS:
                            parameter.mul_(SHARPEN)
            cache[model_type, shape, eager] = (model, hm)
        return cache[model_type, shape, eager]

    return get


def _attention(hm) -> list:
    return [c for c in hm.components if c.kind == "attention"]


def _hand_keep(probs: torch.Tensor, k: int, score: str, queries) -> torch.Tensor:
    """`bool[batch, head, query]`: the heads kept at each query (every head at queries outside `queries`)."""
    batch, n_heads, seq, _ = probs.shape
    if score == "entropy":
        logs = torch.where(probs > 0, torch.log2(probs), torch.zeros_like(probs))
        order_key = -(probs * logs).sum(-1)  # lower = more peaked
    else:
        order_key = -probs.pow(2).sum(-1).sqrt()  # higher norm = more peaked
    keep = torch.ones(batch, n_heads, seq, dtype=torch.bool)
    for b in range(batch):
        for q in range(seq) if queries is None else queries:
            ranked = sorted(range(n_heads), key=lambda h: (order_key[b, h, q].item(), h))
            keep[b, :, q] = False
            keep[b, ranked[:k], q] = True
            if 0 < k < n_heads:
                _check_margin(order_key[b, ranked[k - 1], q].item(), order_key[b, ranked[k], q].item())
    return keep


def _check_margin(last_kept: float, first_dropped: float) -> None:
    """The test's own assumption: the choice is not decided by rounding (an exact tie is: by head index)."""
    gap = first_dropped - last_kept
    assert gap == 0 or gap > MARGIN * max(abs(last_kept), abs(first_dropped)), (
        f"near tie ({last_kept!r} vs {first_dropped!r}) between the kept and the dropped head: change the seed")


def _hand_output(hm, layer, bound, k, score, queries=None, masked_keys=None):
    """The attention module's output with the k most peaked heads kept at `queries` (after hiding
    `masked_keys` from every head and query, when given)."""
    logits, v, gate = ref.scores(hm, layer, bound)
    if masked_keys is not None:
        logits[..., masked_keys] = float("-inf")
    probs = ref.softmax(logits)
    keep = _hand_keep(probs, k, score, queries)
    return ref.output(hm, layer, probs * keep[..., None], v, gate)


def _hand_static(hm, layer, bound, heads, queries):
    """The attention module's output with only `heads` kept at `queries` (KeepHeads, by hand)."""
    logits, v, gate = ref.scores(hm, layer, bound)
    probs = ref.softmax(logits)
    keep = torch.ones(probs.shape[:3], dtype=torch.bool)
    drop = torch.tensor([h for h in range(probs.shape[1]) if h not in heads])
    keep[:, drop[:, None], torch.tensor(queries)[None]] = False
    return ref.output(hm, layer, probs * keep[..., None], v, gate)


def _replaced_forward(model, hm, ids, hand) -> torch.Tensor:
    """A plain transformers forward whose every attention module returns `hand(layer, bound inputs)`."""
    with torch.no_grad(), ExitStack() as stack:
        for c in _attention(hm):
            stack.enter_context(ref.replace_output(hm, c.layer, lambda bound, layer=c.layer: hand(layer, bound)))
        return model(ids).logits


# (k, score, query positions, keys hidden first by a MaskKeys of the same set)
CASES = [(1, "entropy", None, None), (2, "l2", None, None), (-1, "entropy", [0, 4, 6], None),
         (2, "entropy", None, [1, 2])]


def _check_choice(model, hm):
    ids = random_ids(2, SEQ, seed=41)
    layer = _attention(hm)[-1].layer
    n_heads = _attention(hm)[-1].n_heads
    for k, score, queries, hidden in CASES:
        k = k % n_heads  # -1: every head but one
        items = [KeepTopHeads(k, score=score, layers=[layer], positions=queries)]
        items = items if hidden is None else [MaskKeys(keys=hidden, layers=[layer]), *items]
        outputs: dict = {}
        with ref.inputs_of(hm, [layer], outputs) as seen:
            logits = hm.logits(ids, items)
        with torch.no_grad():
            hand = _hand_output(hm, layer, seen[layer], k, score, queries, hidden)
        torch.testing.assert_close(outputs[layer], hand, atol=1e-5, rtol=0, msg=f"{k} {score} {queries}")

        def replaced(bound, args=(k, score, queries, hidden)):
            return _hand_output(hm, layer, bound, *args)

        with torch.no_grad(), ref.replace_output(hm, layer, replaced):
            expected = model(ids).logits
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0, msg=f"{k} {score} {queries}")


@pytest.mark.parametrize("model_type, shape", both_shapes(ATTENTION_TYPES))
def test_keep_top_heads_equals_the_hand_choice(sharp_models, model_type, shape):
    _check_choice(*sharp_models(model_type, shape))


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "recurrent_gemma"])
def test_keep_top_heads_on_an_eager_model(sharp_models, model_type):
    """Models loaded with eager attention keep their own eager kernel's output for the kept heads."""
    _check_choice(*sharp_models(model_type, "alt", eager=True))


@pytest.mark.parametrize("model_type, shape", both_shapes(ATTENTION_TYPES))
def test_every_head_changes_nothing_and_no_head_zeroes_attention(sharp_models, model_type, shape):
    """k >= heads is the plain forward bit for bit; k = 0 is AblateHeads of every head of every layer."""
    _, hm = sharp_models(model_type, shape)
    ids = random_ids(2, SEQ, seed=42)
    n_heads = _attention(hm)[0].n_heads
    plain = hm.logits(ids)
    for k in (n_heads, n_heads + 3):
        assert torch.equal(hm.logits(ids, [KeepTopHeads(k)]), plain)
        assert torch.equal(hm.logits(ids, [KeepTopHeads(k, score="l2")]), plain)
    zero = hm.logits(ids, [KeepTopHeads(0)])
    ablated = hm.logits(ids, [AblateHeads(c, list(range(c.n_heads))) for c in _attention(hm)])
    assert torch.equal(zero, ablated)
    assert (zero - plain).abs().max() > 1e-3


@pytest.mark.parametrize("model_type, shape", both_shapes(["llama", "zamba2", "recurrent_gemma", "qwen2"]))
def test_every_layer_equals_the_hand_choice_at_every_layer(sharp_models, model_type, shape):
    """layers=None chooses heads at every attention layer (zamba2's shared block per calling layer; qwen2's
    second shape mixes sliding and full layers)."""
    model, hm = sharp_models(model_type, shape)
    ids = random_ids(2, SEQ, seed=43)
    logits = hm.logits(ids, [KeepTopHeads(2, score="l2")])
    expected = _replaced_forward(model, hm, ids, lambda layer, bound: _hand_output(hm, layer, bound, 2, "l2"))
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)


def test_alternative_sets_stack_into_one_forward(sharp_models):
    _, hm = sharp_models("bamba", "alt")
    ids = random_ids(2, SEQ, seed=44)
    sets = [[], [KeepTopHeads(1)], [KeepTopHeads(3, score="l2", positions=[-1])], [KeepTopHeads(0)],
            [MaskKeys(keys=[2]), KeepTopHeads(2)]]
    many = hm.logits_many(ids, sets)
    for index, items in enumerate(sets):
        torch.testing.assert_close(many[index], hm.logits(ids, items), atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ["llama", "qwen3_5_text", "zamba2"])
def test_left_padded_rows_choose_what_each_row_alone_chooses(sharp_models, model_type):
    _, hm = sharp_models(model_type, "alt")
    short, full = random_ids(1, 5, seed=45), random_ids(1, 8, seed=46)
    ids = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), short], 1), full])
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[0, :3] = 0
    for item in (KeepTopHeads(2), KeepTopHeads(1, score="l2", positions=[-1])):
        logits = hm.logits(ids, [item], attention_mask=mask)
        torch.testing.assert_close(logits[0, 3:], hm.logits(short, [item])[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(logits[1], hm.logits(full, [item])[0], atol=1e-4, rtol=0)


def test_head_choice_composes_with_state_interventions(sharp_models):
    """With a ReadState the run goes in segments through the cache (token by token in jamba): same logits."""
    _, hm = sharp_models("jamba", "base")
    ids = random_ids(1, SEQ, seed=47)
    item = KeepTopHeads(1, score="l2")
    result = hm.run(ids, [item, ReadState(layers=[0], positions=[3])])
    torch.testing.assert_close(result.logits, hm.logits(ids, [item]), atol=1e-5, rtol=0)


PROMPT, NEW = 6, 3
SPANS = {"prefill": range(0, PROMPT), "decode": range(PROMPT, PROMPT + NEW - 1), "all": range(0, PROMPT + NEW - 1),
         "generation": range(PROMPT - 1, PROMPT + NEW - 1)}
"""The queries each phase (and `generation`, read as `answer`) acts on, in prompt + generated tokens."""


def _generate_in_phase(hm, prompt, items: list, phase: str):
    """generate with every item in `phase` (`generation`: generate's override, read as `answer`)."""
    if phase == "generation":
        return generate(hm, prompt, items, max_new_tokens=NEW, phase="generation")
    return generate(hm, prompt, [dataclasses.replace(i, phase=phase) for i in items], max_new_tokens=NEW)


@pytest.mark.parametrize("model_type, shape", both_shapes(ATTENTION_TYPES))
def test_phases_in_generate_choose_heads_at_their_queries(sharp_models, model_type, shape):
    """Each phase chooses heads at the queries its tokens are, from the pattern of the whole sequence so far
    (decode steps read the cache; sliding windows their window cache): a full forward over the generated tokens
    with the hand choice on exactly those queries."""
    model, hm = sharp_models(model_type, shape)
    prompt = random_ids(2, PROMPT, seed=48)
    plain = generate(hm, prompt, max_new_tokens=NEW)
    for phase, span in SPANS.items():
        gen = _generate_in_phase(hm, prompt, [KeepTopHeads(1)], phase)
        if phase == "decode":  # the first answer token comes from the prefill
            assert torch.equal(gen.logits[:, 0], plain.logits[:, 0])
        else:
            assert (gen.logits[:, 0] - plain.logits[:, 0]).abs().max() > 1e-4, phase
        expected = _replaced_forward(model, hm, gen.tokens[:, :-1], lambda layer, bound, span=span: _hand_output(
            hm, layer, bound, 1, "entropy", list(span)))[:, PROMPT - 1 :]
        torch.testing.assert_close(gen.logits, expected, atol=1e-4, rtol=0, msg=phase)


@pytest.mark.parametrize("model_type, shape", both_shapes(ATTENTION_TYPES))
def test_static_keep_heads_in_generate_keeps_its_heads_at_its_queries(sharp_models, model_type, shape):
    """KeepHeads with a list of heads (one per attention component) in every phase of generate."""
    model, hm = sharp_models(model_type, shape)
    prompt = random_ids(2, PROMPT, seed=49)
    n_heads = _attention(hm)[0].n_heads
    heads = [0, n_heads - 1]
    for phase, span in SPANS.items():
        gen = _generate_in_phase(hm, prompt, [KeepHeads(c, heads) for c in _attention(hm)], phase)
        expected = _replaced_forward(model, hm, gen.tokens[:, :-1], lambda layer, bound, span=span: _hand_static(
            hm, layer, bound, heads, list(span)))[:, PROMPT - 1 :]
        torch.testing.assert_close(gen.logits, expected, atol=1e-4, rtol=0, msg=phase)


LENGTHS = (7, 3, 5)


@pytest.mark.parametrize("model_type", ATTENTION_TYPES)
def test_a_batch_of_prompts_chooses_what_each_prompt_chooses_alone(sharp_models, model_type):
    """Left-padded (or, for recurrent_gemma, grouped) batches: each row generates what its prompt generates alone,
    with per-query and static head choices in every phase."""
    _, hm = sharp_models(model_type, "alt")
    prompts = [random_ids(1, n, seed=50 + i)[0] for i, n in enumerate(LENGTHS)]
    attention = _attention(hm)
    conditions = {
        "prefill": [KeepTopHeads(1, phase="prefill")],
        "decode": [KeepTopHeads(2, score="l2", phase="decode")],
        "all": [KeepTopHeads(0, layers=[attention[0].layer]), KeepTopHeads(3, phase="all")],
        "static": [KeepHeads(attention[-1], [1], phase="decode"), KeepHeads(attention[0], [0, 2], phase="prefill")],
    }
    plain = generate(hm, prompts, max_new_tokens=NEW)
    for name, items in conditions.items():
        batched = generate(hm, prompts, items, max_new_tokens=NEW)
        assert (batched.logits - plain.logits).abs().max() > 1e-3, name
        for row, prompt in enumerate(prompts):
            alone = generate(hm, prompt[None], items, max_new_tokens=NEW)
            assert torch.equal(batched.generated(row), alone.new_tokens[0]), (name, row)
            torch.testing.assert_close(batched.logits[row], alone.logits[0], atol=1e-4, rtol=0, msg=name)


def _one_line_error(fn, *needles):
    with pytest.raises(MechHybridError) as caught:
        fn()
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_bad_head_choices_are_one_line_errors(sharp_models):
    _, hm = sharp_models("jamba", "base")  # attention at layers 1 and 3, 4 heads
    ids = random_ids(1, 5, seed=51)
    _one_line_error(lambda: KeepTopHeads(-1), "k must be a non-negative integer", "-1")
    _one_line_error(lambda: KeepTopHeads(1.5), "k must be a non-negative integer", "1.5")
    _one_line_error(lambda: KeepTopHeads(True), "k must be a non-negative integer")
    _one_line_error(lambda: KeepTopHeads(1, score="max"), "unknown KeepTopHeads score 'max'", "entropy, l2")
    _one_line_error(lambda: KeepTopHeads(1, phase="decoding"), "decoding")
    _one_line_error(lambda: hm.logits(ids, [KeepTopHeads(1, layers=[0])]), "layer 0 has no softmax attention")
    _one_line_error(lambda: hm.logits(ids, [KeepTopHeads(1, positions=[9])]), "position 9 out of range")
    _one_line_error(lambda: generate(hm, ids, [KeepTopHeads(1, positions=[2], phase="decode")], max_new_tokens=2),
                    "never run in phase 'decode'")
    _, mamba = sharp_models("mamba2", "base")
    _one_line_error(lambda: mamba.logits(ids, [KeepTopHeads(1)]), "mamba2 has no softmax attention")
    _one_line_error(lambda: generate(mamba, ids, [KeepTopHeads(0, phase="decode")], max_new_tokens=2),
                    "mamba2 has no softmax attention")
