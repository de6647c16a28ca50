"""Generate every prompt of a grid under one condition and score it: per-prompt arrays, one per scorer.

Prompts go to `hm.generate` as a list of different lengths in batches of `batch_size` (each row generates what
its prompt generates alone). Greedy, `max_new_tokens` per prompt.
"""

from __future__ import annotations

import numpy as np
import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.finite import check_finite

from .conditions import Condition
from .prompts import NeedlePrompt
from .scorers import SCORERS, score

__all__ = ["generate_scores", "decoder"]


def decoder(hm, zoo: bool):
    """ids -> text for the string scorers: the zoo's words joined by spaces, else the model's tokenizer."""
    if zoo:
        from mechhybrid.zoo.language import VOCAB

        return lambda ids: " ".join(VOCAB[int(i)] for i in ids)
    if hm.tokenizer is None:
        raise MechHybridError(f"retrieval on {hm.name} needs its tokenizer to read the answers")
    return lambda ids: hm.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)


def generate_scores(hm, prompts: list[NeedlePrompt], cond: Condition, *, max_new_tokens: int, batch_size: int,
                    generation_phase: str, decode) -> dict[str, np.ndarray]:
    """{scorer: [prompt] scores} of `prompts` generated under `cond`."""
    out = {name: np.zeros(len(prompts)) for name in SCORERS}
    # Longest first, so that a batch holds prompts of similar lengths (less padding to carry).
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i].ids), i))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        new = max_new_tokens or max(len(prompts[i].answer_ids) for i in chunk) + 1
        ids = [torch.tensor(prompts[i].ids, dtype=torch.long) for i in chunk]
        with torch.no_grad():
            gen = hm.generate(ids, cond.for_prompts([prompts[i] for i in chunk]), max_new_tokens=new, phase=cond.phase,
                              generation_phase=generation_phase, keep_logits=True)
        for row, i in enumerate(chunk):
            logits = gen.logits[row:row + 1]
            if not torch.isfinite(logits).all():
                check_finite(hm, ids[row][None], logits)  # raises, naming the first non-finite component
            tokens = gen.generated(row).tolist()
            text = decode(tokens)
            p = prompts[i]
            for name in SCORERS:
                out[name][i] = score(name, tokens, text, p.answer_ids, p.answer_text)
    return out
