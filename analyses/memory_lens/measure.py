"""One batch of needle prompts through the memory lens: per prompt, the true value token's rank and probability
under every readout, and whether each edit of a memory towards another value flips the answer.

The counterfactual of an edit is the same prompt with another value (`other_values`). A Gated DeltaNet memory gets
the delta-rule write KEY -> that prompt's value vector (`write_associations`, per key / value probe). A Mamba
state (Mamba-2, Mamba-1) gets the minimal-norm rank-1 edit along the question token's own read vector
(`write_readouts` with `carried`: its C times its decay exp(dt A)), so that what the question token reads from the
state before it is what it reads in the other prompt; labelled probe `query`.

Records are keyed by (layer, head, probe, readout) with head -1 for all heads, and (layer, kind, probe) for edits
with layer -1 for every layer of that kind edited at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from mechhybrid.lens import Alternative, direct_logits, head_only, last_token_logits, memory_lens, with_head
from mechhybrid.lens import carried, lens_components, write_associations, write_readouts
from mechhybrid.lens.memory import GatedDeltaNet, Mamba1, Mamba2

from ..retrieval.prompts import NeedlePrompt

__all__ = ["Batch", "measure", "key_position", "other_values"]

ALL = -1


def key_position(prompt: NeedlePrompt) -> int:
    """The needle's KEY token: "the code of KEY is V V ." puts it two tokens before the first value."""
    return prompt.value_positions[0] - 2


def other_values(prompts: list[NeedlePrompt], seed: int) -> list[tuple[int, ...]]:
    """Per prompt, another zoo value whose first token differs from the true one (a seeded draw)."""
    from mechhybrid.zoo.language import DIGITS
    from mechhybrid.zoo.tokenizer import encode_words

    digits = encode_words(list(DIGITS))
    out = []
    for p in prompts:
        rng = random.Random(f"{seed}/{p.ids}")
        first = rng.choice([d for d in digits if d != p.answer_ids[0]])
        out.append((first, rng.choice(digits)))
    return out


@dataclass
class Batch:
    """Per-prompt outcomes of one batch (lists aligned with its prompts)."""

    answered: list[bool]
    """The model's top-1 at the question token is the needle's first value token."""
    reads: dict[tuple, list[tuple[int, float]]] = field(default_factory=dict)
    """(layer, head, probe, readout) -> per prompt (rank of the true token, 1 = first; its probability)."""
    edits: dict[tuple, list[tuple[bool, bool]]] = field(default_factory=dict)
    """(layer, kind, probe) -> per prompt (flipped to the written value, top-1 changed at all)."""


def _rank_prob(logits: torch.Tensor, target: torch.Tensor) -> list[tuple[int, float]]:
    logits = logits.float()
    true = logits.gather(1, target[:, None])
    ranks = (logits > true).sum(1) + 1
    probs = logits.softmax(-1).gather(1, target[:, None])[:, 0]
    return [(int(r), float(p)) for r, p in zip(ranks, probs)]


def _positions(prompts, probes) -> dict:
    where = {"key": key_position, "value": lambda p: p.value_positions[0]}
    return {name: torch.tensor([where[name](p) for p in prompts]) for name in probes if name != "query"}


def measure(hm, prompts: list[NeedlePrompt], probes, through_model: bool, edit: bool, beta: float,
            seed: int) -> Batch:
    """The lens on one batch of equally long prompts."""
    ids = torch.tensor([p.ids for p in prompts], device=hm.device)
    target = torch.tensor([p.answer_ids[0] for p in prompts], device=hm.device)
    pre, lenses = memory_lens(hm, ids, _positions(prompts, probes))
    batch = Batch(answered=[bool(t) for t in pre.logits.argmax(-1) == target])
    alternatives, keys = [], []
    for layer, lens in lenses.items():
        heads = [ALL] + (list(range(lens.n_heads)) if lens.reader.has_heads else [])
        for probe in probes:
            y = lens.readouts[probe]
            for head in heads:
                alone = y if head == ALL else head_only(y, head)
                batch.reads[(layer, head, probe, "direct")] = _rank_prob(direct_logits(hm, lens, alone), target)
                if through_model:
                    swapped = y if head == ALL else with_head(lens.actual, y, head)
                    alternatives.append(Alternative(outputs={layer: lens.output(swapped)}))
                    keys.append(("read", (layer, head, probe, "model")))
    if edit:
        _edit_alternatives(hm, pre, prompts, lenses, probes, beta, seed, alternatives, keys)
    if alternatives:
        logits = last_token_logits(hm, pre, lens_components(hm), alternatives)
        _collect(batch, keys, logits, target, pre.logits.argmax(-1), prompts, seed)
    return batch


def _edit_alternatives(hm, pre, prompts, lenses, probes, beta, seed, alternatives, keys) -> None:
    """Every GDN memory and Mamba state edited before the question token towards the other value (module
    docstring): each layer alone, then every layer of a kind at once."""
    gdn = {layer: lens for layer, lens in lenses.items() if lens.reader is GatedDeltaNet}
    mamba = {layer: lens for layer, lens in lenses.items() if lens.reader in (Mamba2, Mamba1)}
    probes = [p for p in probes if p != "query"]
    if not mamba and not (gdn and probes):
        return
    edited = {**mamba, **(gdn if probes else {})}
    counter_pre, counter = memory_lens(hm, _counter_ids(hm, prompts, seed), layers=sorted(edited))
    rows = torch.arange(len(prompts))
    first_value = torch.tensor([p.value_positions[0] for p in prompts])
    positions = _positions(prompts, probes)
    for probe in probes if gdn else ():
        fns = {}
        for layer, lens in gdn.items():
            key = lens.parts.keys[rows, positions[probe]]
            fns[layer] = write_associations(key, counter[layer].parts.values[rows, first_value], beta)
        _add_edits(fns, next(iter(gdn.values())).kind, probe, alternatives, keys)
    if mamba:
        fns = {layer: write_readouts(carried(pre, lens)[0], carried(counter_pre, counter[layer])[1])
               for layer, lens in mamba.items()}
        _add_edits(fns, next(iter(mamba.values())).kind, "query", alternatives, keys)


def _add_edits(fns: dict, kind: str, probe: str, alternatives: list, keys: list) -> None:
    """One alternative per layer's edit, then one with them all."""
    for layer, fn in fns.items():
        alternatives.append(Alternative(edits={layer: fn}))
        keys.append(("edit", (layer, kind, probe)))
    alternatives.append(Alternative(edits=fns))
    keys.append(("edit", (ALL, kind, probe)))


def _counter_ids(hm, prompts, seed) -> torch.Tensor:
    """The prompts with their needle's value replaced by the other value (`other_values`)."""
    counter = [list(p.ids) for p in prompts]
    for row, (p, other) in enumerate(zip(prompts, other_values(prompts, seed))):
        for pos, token in zip(p.value_positions, other):
            counter[row][pos] = token
    return torch.tensor(counter, device=hm.device)


def _collect(batch: Batch, keys, logits, target, base_top, prompts, seed) -> None:
    other_first = torch.tensor([o[0] for o in other_values(prompts, seed)], device=target.device)
    for (what, key), out in zip(keys, logits):
        if what == "read":
            batch.reads[key] = _rank_prob(out, target)
        else:
            top = out.argmax(-1)
            batch.edits[key] = [(bool(f), bool(c)) for f, c in zip(top == other_first, top != base_top)]
