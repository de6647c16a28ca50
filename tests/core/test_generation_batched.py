"""Batched generation: a batch of prompts of different lengths generates what each prompt generates alone, in every
family (left-padded or grouped by length, as `Family.left_padding_exact` says), stops rows at EOS or a stop string,
and reads Study B's "generation" in the chosen way.

References: each prompt generated alone (`generate` on one unpadded row, itself checked against no-cache greedy
loops and transformers in tests/state/test_generation.py), a no-cache greedy loop, a plain forward for the first
answer token, and a left-padded loop written here on the bare transformers model. Batching alone moves fp32 logits
by ~1e-6, so logits are compared at 1e-4 and tokens exactly.
"""

from __future__ import annotations

import pytest
import torch

from mechhybrid import Ablate, Capture, KeepHeads, MechHybridError, Steer
from mechhybrid.generation import generate, greedy_reference
from mechhybrid.state import cache as cache_ops
from mechhybrid.state.spec import spec_for
from tests.conftest import ALL_MODEL_TYPES, both_shapes, random_ids

LENGTHS = (7, 3, 5)
NEW = 4
ATOL = 1e-4


def _prompts(lengths=LENGTHS, seed: int = 0) -> list[torch.Tensor]:
    return [random_ids(1, n, seed + i)[0] for i, n in enumerate(lengths)]


def _conditions(hm) -> dict[str, list]:
    """Interventions in each phase, on columns shared by every row and on columns that differ per row."""
    attention = hm.components.by_kind("attention") or hm.components[:1]
    mixer, last = hm.components[0], hm.components[-1]
    vector = torch.randn(hm.d_model, generator=torch.Generator().manual_seed(1))
    reference = random_ids(2, 6, seed=50)
    return {
        "none": [],
        # positions=None also writes the padding columns of a left-padded batch; -1 lands on one shared column.
        "prefill_shared": [
            Ablate(attention, phase="prefill"),
            Steer(last, vector, positions=[-1], phase="prefill"),
            Ablate([last], method="mean", reference_ids=reference, positions=[0], phase="all"),
        ],
        "prefill_per_row": [Steer(mixer, vector, positions=[1], phase="prefill")],  # column 1 + each row's padding
        "decode": [Ablate([mixer], method="skip", phase="decode"), Steer(last, vector, positions=[-2], phase="decode")],
    }


@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_batch_of_prompts_generates_what_each_prompt_generates_alone(tiny_models, model_type, shape):
    _, hm = tiny_models(model_type, shape)
    prompts = _prompts()
    expected_strategy = "left_padded" if hm.family_spec.left_padding_exact else "grouped"
    plain = None
    for name, items in _conditions(hm).items():
        batched = generate(hm, prompts, items, max_new_tokens=NEW)
        assert batched.strategy == expected_strategy
        assert batched.prompt_lengths.tolist() == list(LENGTHS) and batched.n_generated.tolist() == [NEW] * 3
        assert batched.logits.shape == (3, NEW, hm.vocab_size)
        for row, prompt in enumerate(prompts):
            alone = generate(hm, prompt[None], items, max_new_tokens=NEW)
            assert torch.equal(batched.generated(row), alone.new_tokens[0]), (name, row)
            assert torch.equal(batched.tokens[row, : len(prompt) + NEW], alone.tokens[0])
            torch.testing.assert_close(batched.logits[row], alone.logits[0], atol=ATOL, rtol=0)
            if name == "none":
                reference = greedy_reference(hm, prompt[None], NEW)[0]
                assert torch.equal(batched.tokens[row, : len(prompt) + NEW], reference)
        if plain is None:
            plain = batched
        else:  # every condition must change something, or the comparison above proves nothing
            assert (batched.logits - plain.logits).abs().max() > 1e-3, name


def _attention_edits(needle: torch.Tensor) -> list:
    """Study B's needle exposure, keyed per prompt: hide the last prompt token while decoding, focus the needle
    (a boolean key mask, one row per prompt) in prefill, add to key 0's logit at the last prompt position."""
    from mechhybrid.attention import EditLogits, FocusKeys, MaskKeys

    return [
        MaskKeys(keys=[-1], phase="decode"),
        FocusKeys(keys=needle, scale=4.0, phase="prefill"),
        EditLogits(keys=[0], op="add", value=5.0, heads=[0], positions=[-1], phase="prefill"),
    ]


@pytest.mark.parametrize("model_type", ["qwen2", "gpt2", "qwen3_5_text", "jamba", "zamba2", "recurrent_gemma"])
def test_attention_edits_in_a_batch_of_prompts_match_each_prompt_alone(tiny_models, model_type):
    _, hm = tiny_models(model_type)
    prompts = _prompts(seed=6)
    needle = torch.zeros(3, min(LENGTHS), dtype=torch.bool)
    needle[0, 2], needle[1, 1], needle[2, 0] = True, True, True  # the needle sits at another depth in each prompt
    batched = generate(hm, prompts, _attention_edits(needle), max_new_tokens=NEW)
    plain = generate(hm, prompts, max_new_tokens=NEW)
    assert (batched.logits - plain.logits).abs().max() > 5 * ATOL  # zamba2's shared attention moves them by 9e-4
    for row, prompt in enumerate(prompts):
        alone = generate(hm, prompt[None], _attention_edits(needle[row : row + 1]), max_new_tokens=NEW)
        assert torch.equal(batched.generated(row), alone.new_tokens[0])
        torch.testing.assert_close(batched.logits[row], alone.logits[0], atol=ATOL, rtol=0)
    with pytest.raises(MechHybridError, match="keys mask has 2 rows; there are 3 prompts"):
        generate(hm, prompts, _attention_edits(needle[:2]), max_new_tokens=NEW)


def _left_padded_loop(model, hm, prompts, new: int) -> torch.Tensor:
    """`[batch, new, vocab]`: the bare model run left-padded with the mask and positions from it, as
    transformers' own generate prepares them."""
    width, batch = max(len(p) for p in prompts), len(prompts)
    ids = random_ids(batch, width, seed=99)  # padding of random tokens: an exact family never reads them
    mask = torch.zeros(batch, width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):], mask[row, width - len(prompt):] = prompt, 1
    cache, chosen, token = cache_ops.new_cache(hm, batch), [], ids
    with torch.no_grad():
        for _ in range(new):
            kwargs = {"attention_mask": mask, "cache": cache, "use_cache": True}
            if spec_for(hm).pass_positions:
                kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)[:, -token.shape[1]:]
            logits = model(token, **kwargs).logits[:, -1]
            chosen.append(logits)
            token = logits.argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones(batch, 1, dtype=torch.long)], 1)
    return torch.stack(chosen, 1)


NOT_PADDING_EXACT = [t for t in ALL_MODEL_TYPES if t == "recurrent_gemma"]


def test_the_declared_property_lists_every_family_that_is_not_padding_exact():
    from mechhybrid.families import FAMILIES

    assert [f.name for f in FAMILIES if not f.left_padding_exact] == NOT_PADDING_EXACT


@pytest.mark.parametrize("model_type,shape", both_shapes(NOT_PADDING_EXACT))
def test_a_family_declared_not_padding_exact_is_not_and_is_grouped(tiny_models, model_type, shape):
    """The declaration stays true: left padding beyond the local-attention window moves recurrent_gemma's logits,
    so generate groups its prompts by length and stays exact."""
    model, hm = tiny_models(model_type, shape)
    prompts = _prompts((30, 3, 17), seed=7)
    padded = _left_padded_loop(model, hm, prompts, NEW)
    gaps = [(padded[row] - generate(hm, p[None], max_new_tokens=NEW).logits[0]).abs().max().item()
            for row, p in enumerate(prompts)]
    assert max(gaps) > 1e-2
    batched = generate(hm, prompts, max_new_tokens=NEW)
    assert batched.strategy == "grouped"
    for row, prompt in enumerate(prompts):
        torch.testing.assert_close(batched.logits[row], generate(hm, prompt[None], max_new_tokens=NEW).logits[0],
                                   atol=ATOL, rtol=0)


@pytest.mark.parametrize("model_type", ["qwen3_5_text", "mamba2", "gpt2", "recurrent_gemma"])
def test_padded_tensor_with_mask_and_list_of_prompts_agree(tiny_models, model_type):
    _, hm = tiny_models(model_type)
    prompts = _prompts()
    from_list = generate(hm, prompts, max_new_tokens=NEW)
    for side in ("left", "right"):
        ids = torch.full((3, max(LENGTHS)), 5, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            span = slice(ids.shape[1] - len(prompt), None) if side == "left" else slice(0, len(prompt))
            ids[row, span], mask[row, span] = prompt, 1
        from_mask = generate(hm, ids, max_new_tokens=NEW, attention_mask=mask)
        assert torch.equal(from_mask.tokens, from_list.tokens)
        torch.testing.assert_close(from_mask.logits, from_list.logits, atol=1e-6, rtol=0)
    same_length = generate(hm, [p[:3] for p in prompts], max_new_tokens=NEW, keep_logits=False)
    assert same_length.strategy == "aligned" and same_length.logits is None and same_length.prompt_len == 3
    assert torch.equal(same_length.tokens, greedy_reference(hm, torch.stack([p[:3] for p in prompts]), NEW))


def _truncate_at(tokens: torch.Tensor, stop) -> torch.Tensor:
    """Tokens up to and including the first one for which `stop(prefix)` holds."""
    for index in range(len(tokens)):
        if stop(tokens[: index + 1].tolist()):
            return tokens[: index + 1]
    return tokens


@pytest.mark.parametrize("model_type", ["qwen2", "falcon_h1", "recurrent_gemma"])
def test_eos_stops_each_row_and_finished_rows_stop_growing(tiny_models, model_type):
    _, hm = tiny_models(model_type)
    prompts = _prompts(seed=3)
    new = 6
    plain = generate(hm, prompts, max_new_tokens=new)
    eos = int(plain.generated(1)[1])  # row 1's second token
    stopped = generate(hm, prompts, max_new_tokens=new, eos_token_id=[eos], pad_token_id=-1)
    for row in range(3):
        expected = _truncate_at(plain.generated(row), lambda t: t[-1] == eos)
        n = len(expected)
        assert torch.equal(stopped.generated(row), expected) and int(stopped.n_generated[row]) == n
        torch.testing.assert_close(stopped.logits[row, :n], plain.logits[row, :n], atol=ATOL, rtol=0)
        assert not stopped.logits[row, n:].any()
        assert (stopped.tokens[row, len(prompts[row]) + n :] == -1).all()
        assert stopped.attention_mask[row].sum() == len(prompts[row]) + n
    assert int(stopped.n_generated[1]) <= 2 < new


class _Words:
    """A stand-in tokenizer: token t decodes to the word `w{t}`."""

    def decode(self, ids):
        return " ".join(f"w{t}" for t in ids)


def test_a_stop_string_stops_its_row(tiny_models, monkeypatch):
    _, hm = tiny_models("qwen3_5_text")
    monkeypatch.setattr(hm, "tokenizer", _Words())
    prompts = _prompts(seed=4)
    plain = generate(hm, prompts, max_new_tokens=6)
    target = f"w{int(plain.generated(0)[1])} w{int(plain.generated(0)[2])}"  # two tokens of row 0
    stopped = generate(hm, prompts, max_new_tokens=6, stop_strings=[target])
    for row in range(3):
        expected = _truncate_at(plain.generated(row), lambda t: target in _Words().decode(t))
        assert torch.equal(stopped.generated(row), expected)
    assert int(stopped.n_generated[0]) <= 3


@pytest.mark.parametrize("model_type", ALL_MODEL_TYPES)
def test_answer_and_decode_readings_of_generation(tiny_models, model_type):
    """A decode-only ablation never touches the first answer token (the last prompt position chooses it); the
    answer reading does, exactly as an ablation of the last prompt position in a plain forward."""
    _, hm = tiny_models(model_type)
    prompts = _prompts(seed=5)
    everything = Ablate(hm.components)
    plain = generate(hm, prompts, max_new_tokens=NEW)
    decode_only = generate(hm, prompts, [Ablate(hm.components, phase="decode")], max_new_tokens=NEW)
    decode_reading = generate(hm, prompts, [everything], max_new_tokens=NEW, phase="generation",
                              generation_phase="decode")
    answer = generate(hm, prompts, [everything], max_new_tokens=NEW, phase="generation")
    assert (answer.phase, answer.generation_phase) == ("generation", "answer")
    assert decode_reading.generation_phase == "decode"
    for result in (decode_only, decode_reading):
        torch.testing.assert_close(result.logits[:, 0], plain.logits[:, 0], atol=1e-6, rtol=0)
        assert (result.logits[:, 1:] - plain.logits[:, 1:]).abs().max() > 1e-3
    assert torch.equal(decode_only.tokens, decode_reading.tokens)
    for row, prompt in enumerate(prompts):
        first = hm.logits(prompt[None], [Ablate(hm.components, positions=[-1])])[0, -1]
        torch.testing.assert_close(answer.logits[row, 0], first, atol=ATOL, rtol=0)
        assert (answer.logits[row, 0] - plain.logits[row, 0]).abs().max() > 1e-3
    # The answer reading is the decode-phase ablation plus the last prompt position in prefill.
    by_hand = generate(hm, prompts, [Ablate(hm.components, phase="decode"),
                                     Ablate(hm.components, positions=[-1], phase="prefill")], max_new_tokens=NEW)
    assert torch.equal(by_hand.tokens, answer.tokens)
    torch.testing.assert_close(by_hand.logits, answer.logits, atol=1e-6, rtol=0)


def _head_mask(hm, seq):
    attention = hm.components.by_kind("attention")[0]
    return KeepHeads(attention, torch.ones(1, seq, attention.n_heads, dtype=torch.bool))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda hm: generate(hm, [[1, 2], []]), "prompt 1 is empty"),
        (lambda hm: generate(hm, [[1, 2, 3]], max_new_tokens=0), "max_new_tokens must be an integer of at least 1"),
        (lambda hm: generate(hm, [[1, 2, 3], [[4, 5]]]), "prompt 1 must be a list of integer token ids"),
        (lambda hm: generate(hm, [[1, 2], [3]], attention_mask=torch.ones(2, 2)), "attention_mask goes with"),
        (lambda hm: generate(hm, torch.tensor([[1, 2], [3, 4]]), attention_mask=torch.tensor([[1, 1], [0, 0]])),
         "masks every token"),
        (lambda hm: generate(hm, [[1, 2]], phase="generating"), "unknown phase 'generating'"),
        (lambda hm: generate(hm, [[1, 2]], generation_phase="first"), "unknown generation_phase 'first'"),
        (lambda hm: generate(hm, [[1, 2]], eos_token_id=500), "eos_token_id 500"),
        (lambda hm: generate(hm, [[1, 2]], eos_token_id=2.5), "eos_token_id 2.5"),
        (lambda hm: generate(hm, [[1, 2]], pad_token_id="pad"), "pad_token_id must be an integer"),
        (lambda hm: generate(hm, [[1, 2]], stop_strings=["x"]), "need the model's tokenizer"),
        (lambda hm: generate(hm, [[1, 2], [3]], [Capture(hm.components[:1])]), "needs prompts of one length"),
        (lambda hm: generate(hm, [[1, 2], [3]], [Ablate(hm.components[:1], positions=[2], phase="prefill")]),
         r"prompt 0 \(2 tokens\): Ablate position 2"),
        (lambda hm: generate(hm, [[1, 2, 3]], [_head_mask(hm, 3)]), "per-token head mask .* give it phase='prefill'"),
        (lambda hm: generate(hm, [[1, 2, 3]], [Ablate(hm.components, positions=[0])], phase="generation"),
         "not part of the answer"),
    ],
)
def test_bad_input_is_one_line(tiny_models, call, message):
    _, hm = tiny_models("qwen2")
    with pytest.raises(MechHybridError, match=message) as error:
        call(hm)
    assert "\n" not in str(error.value)


def test_prompt_and_new_tokens_beyond_a_learned_position_table(tiny_models):
    _, hm = tiny_models("gpt2")
    limit = hm.config.n_positions
    generate(hm, [[1] * (limit - 3)], max_new_tokens=4)  # positions 0..limit - 1: the whole table
    with pytest.raises(MechHybridError, match="learned position table"):
        generate(hm, [[1] * (limit - 3), [2]], max_new_tokens=5)
