"""Padded batches give every prompt what it gets alone, in every family and entry point.

The reference is each prompt run by itself, unpadded, through the same entry point (and, for the source-mask
identity, a property: patching everything from the very same padded input changes nothing). Batching alone moves
fp32 logits by ~1e-5, so comparisons are at 1e-4.
"""

from __future__ import annotations

import pytest
import torch

from mechhybrid import Ablate, Capture, MechHybridError, Patch, ReadState
from tests.conftest import ALL_MODEL_TYPES, both_shapes, random_ids

LENGTHS = (7, 4, 2)
ATOL = 1e-4


def _padded(lengths, side: str, seed: int = 0):
    """(ids [batch, seq], mask, per-row unpadded ids): random prompts padded with token 0 on one side."""
    seq = max(lengths)
    rows = [random_ids(1, n, seed + i)[0] for i, n in enumerate(lengths)]
    ids = torch.zeros(len(rows), seq, dtype=torch.long)
    mask = torch.zeros(len(rows), seq, dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(seq - len(row), seq) if side == "left" else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    return ids, mask, rows


def _real(tensor_row, mask_row):
    """A row's values at its real tokens (dim 0 = seq)."""
    return tensor_row[mask_row.bool()]


def _positions(side: str):
    """Positions valid in every row, in the batch's layout and in each prompt alone: (batch, alone(n))."""
    if side == "left":
        return [-2], lambda n: [-2]
    return [1], lambda n: [1]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("model_type,shape", both_shapes(ALL_MODEL_TYPES))
def test_every_entry_point_matches_each_prompt_alone(tiny_models, model_type, shape, side):
    _, hm = tiny_models(model_type, shape)
    ids, mask, rows = _padded(LENGTHS, side)
    batch_positions, alone_positions = _positions(side)
    attention = hm.components.by_kind("attention") or hm.components[:1]
    first = hm.components[0]

    def sets(row_ids, positions):
        return [
            [],
            [Ablate(attention, method="zero", positions=positions)],
            [Patch(hm.components, source_ids=row_ids)],  # from the same input: changes nothing
        ]

    many = hm.logits_many(ids, sets(ids, batch_positions), attention_mask=mask)
    plain = hm.logits(ids, attention_mask=mask)
    captured = hm.run(ids, [Capture([first])], attention_mask=mask).captures[first]
    hidden = hm.hidden_states(ids, attention_mask=mask)
    for b, row in enumerate(rows):
        alone_ids = row[None]
        alone = hm.logits_many(alone_ids, sets(alone_ids, alone_positions(len(row))))
        for s in range(alone.shape[0]):
            torch.testing.assert_close(_real(many[s, b], mask[b]), alone[s, 0], atol=ATOL, rtol=0)
        torch.testing.assert_close(_real(plain[b], mask[b]), alone[0, 0], atol=ATOL, rtol=0)
        alone_capture = hm.run(alone_ids, [Capture([first])]).captures[first]
        torch.testing.assert_close(_real(captured[b], mask[b]), alone_capture[0], atol=ATOL, rtol=0)
        alone_hidden = hm.hidden_states(alone_ids)
        torch.testing.assert_close(hidden[:, b][:, mask[b].bool()], alone_hidden[:, 0], atol=ATOL, rtol=0)


@pytest.mark.parametrize("model_type", ["qwen3_5_text", "falcon_h1", "mamba2", "gpt2", "recurrent_gemma"])
def test_resample_and_patch_sources_run_with_their_own_mask(tiny_models, model_type):
    """A left-padded input patched from a right-padded source of the same prompts: the source's mask aligns
    nothing (positions index the batch as given), so use the same prompts padded the same way, and a source
    whose padding differs is refused where it would write a padding activation into a real token."""
    _, hm = tiny_models(model_type)
    ids, mask, rows = _padded(LENGTHS, "left")
    other, other_mask, other_rows = _padded(LENGTHS, "left", seed=10)
    mlps = hm.components.by_kind("mlp") or hm.components[-1:]
    patched = hm.logits(ids, [Patch(mlps, source_ids=other, source_mask=other_mask, positions=[-1])],
                        attention_mask=mask)
    resampled = hm.logits(ids, [Ablate(mlps, method="resample", source_ids=other, positions=[-1])],
                          attention_mask=mask)
    for b, (row, source_row) in enumerate(zip(rows, other_rows)):
        alone = hm.logits(row[None], [Patch(mlps, source_ids=source_row[None], positions=[-1])])
        torch.testing.assert_close(_real(patched[b], mask[b]), alone[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(_real(resampled[b], mask[b]), alone[0], atol=ATOL, rtol=0)
    right, right_mask, _ = _padded(LENGTHS, "right", seed=10)
    with pytest.raises(MechHybridError, match="padding in the source"):
        hm.logits(ids, [Patch(mlps, source_ids=right, source_mask=right_mask)], attention_mask=mask)


@pytest.mark.parametrize("model_type", ["qwen3_5_text", "mamba2", "gpt2"])
def test_mean_ablation_averages_only_real_reference_tokens(tiny_models, model_type):
    _, hm = tiny_models(model_type)
    reference, reference_mask, reference_rows = _padded(LENGTHS, "left", seed=20)
    ids = random_ids(1, 5, 3)
    mlps = hm.components.by_kind("mlp") or hm.components[-1:]
    got = hm.logits(ids, [Ablate(mlps, method="mean", reference_ids=reference, reference_mask=reference_mask)])
    # Reference mean by hand: every real token's output, from each reference prompt run alone.
    means = {}
    for component in mlps:
        outputs = [hm.run(r[None], [Capture([component])]).captures[component][0] for r in reference_rows]
        means[component] = torch.cat(outputs).mean(0)
    from tests.core import reference as ref

    spec = [(c.path, "out", lambda t, m=means[c]: m.expand_as(t).clone()) for c in mlps]
    torch.testing.assert_close(got, ref.logits(hm.hf_model, ids, spec), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "mask_of, message",
    [
        (lambda ids: torch.ones(ids.shape[0], ids.shape[1] + 1, dtype=torch.long), "has shape"),
        (lambda ids: torch.tensor([[1, 0, 1, 1]]).expand(ids.shape[0], -1), "padding between real tokens"),
        (lambda ids: torch.zeros_like(ids), "masks every token"),
        (lambda ids: torch.full_like(ids, 2), "only 0 and 1"),
    ],
)
def test_bad_masks_are_refused_in_one_line(tiny_models, mask_of, message):
    _, hm = tiny_models("qwen2")
    ids = random_ids(2, 4, 0)
    with pytest.raises(MechHybridError, match=message) as error:
        hm.logits(ids, attention_mask=mask_of(ids))
    assert "\n" not in str(error.value)


def test_state_interventions_refuse_padding(tiny_models):
    _, hm = tiny_models("qwen3_5_text")
    ids, mask, _ = _padded(LENGTHS, "left")
    with pytest.raises(MechHybridError, match="unpadded"):
        hm.run(ids, [ReadState([0], [-1])], attention_mask=mask)


@pytest.mark.parametrize(
    "ids, message",
    [
        (torch.zeros(1, 4), "integer token ids"),
        (torch.tensor([[1, 2, 97]]), "outside the model's vocabulary"),
        (torch.tensor([[1, -1, 3]]), "outside the model's vocabulary"),
        (torch.zeros(1, 0, dtype=torch.long), "empty"),
        (torch.zeros(4, dtype=torch.long), "2-D"),
    ],
)
def test_bad_input_ids_are_refused_in_one_line(tiny_models, ids, message):
    _, hm = tiny_models("qwen2")
    for call in (hm.logits, hm.hidden_states, lambda x: hm.logits_many(x, [[]]), hm.read_state, hm.generate):
        with pytest.raises(MechHybridError, match=message):
            call(ids)


def test_learned_position_table_is_a_hard_limit(tiny_models):
    _, hm = tiny_models("gpt2")
    limit = hm.config.n_positions
    hm.logits(random_ids(1, limit, 0))
    with pytest.raises(MechHybridError, match="learned positions"):
        hm.logits(random_ids(1, limit + 1, 0))
