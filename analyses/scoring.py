"""Score tasks under many ablation conditions, batched: one `hm.logits_many` call evaluates every condition
of a chunk on one batch of sequences (a sweep is not one forward per component per batch).

Axis names: "set" (a condition's intervention set), "batch", "seq" (token position), "vocab".
Sequences are right-padded: every model here is causal, so padding after a sequence's last token cannot
change the logits at its scored positions (checked against unpadded runs in tests/analyses).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.finite import check_finite
from mechhybrid.results.vocabulary import ABLATION_METHODS

from mechhybrid.zoo.scoring import STAT_NAMES, Seq, SeqScores, span_masks, span_stats

from .tasks import GenTask, Task
from .timing import FORWARD

__all__ = ["Condition", "References", "interventions_for", "score_seqs", "score_task", "vocab_size"]


@dataclass(frozen=True)
class Condition:
    """One thing done to the model: a name from docs/results-schema.md, a method, the components."""

    name: str
    method: str
    """none (baseline) | zero | mean | resample | skip."""
    components: tuple = ()
    coords: dict = field(default_factory=dict, compare=False)
    """The name's typed coordinates, written on every row of the condition (not part of its identity)."""

    def __post_init__(self):
        if self.method not in ("none",) + ABLATION_METHODS:
            raise ValueError(f"unknown ablation method {self.method!r}")
        if (self.method == "none") != (len(self.components) == 0):
            raise ValueError(f"condition {self.name!r}: method 'none' iff no components")

    @property
    def key(self) -> str:
        return f"{self.name}|{self.method}"


@dataclass
class References:
    """Held-out text that the `mean` and `resample` methods draw on (never the items being scored)."""

    mean_ids: torch.Tensor
    """[batch, seq] reference batch: a mean-ablated component outputs its mean over batch and positions."""
    stream: torch.Tensor
    """[tokens] a token stream cut into resample sources of whatever shape a batch has."""

    def __post_init__(self):
        if self.mean_ids.ndim != 2 or self.stream.ndim != 1 or self.stream.numel() == 0:
            raise ValueError("References: mean_ids is [batch, seq] and stream a non-empty [tokens]")

    @classmethod
    def from_docs(cls, docs, n_ref: int = 8, ref_len: int = 64) -> "References":
        stream = torch.tensor([t for d in docs for t in d], dtype=torch.long)
        if stream.numel() == 0:
            raise MechHybridError("no reference text for mean/resample ablation")
        reps = -(-(n_ref * ref_len) // stream.numel())
        mean_ids = stream.repeat(reps)[: n_ref * ref_len].view(n_ref, ref_len)
        return cls(mean_ids=mean_ids, stream=stream)

    def mean_on(self, device) -> torch.Tensor:
        """mean_ids on `device`, one tensor object per device (the engine captures a source once per object)."""
        cache = self.__dict__.setdefault("_means", {})
        if str(device) not in cache:
            cache[str(device)] = self.mean_ids.to(device)
        return cache[str(device)]

    def source_like(self, input_ids: torch.Tensor) -> torch.Tensor:
        """A [batch, seq] resample source of other text, the same for every condition (paired)."""
        # Memoised by shape: the engine runs one clean source forward per distinct tensor object, so every
        # condition of a batch must get the very same tensor.
        key = (tuple(input_ids.shape), str(input_ids.device))
        cache = self.__dict__.setdefault("_sources", {})
        if key not in cache:
            need = input_ids.numel()
            reps = -(-need // self.stream.numel())
            cache[key] = self.stream.repeat(reps)[:need].view_as(input_ids).to(input_ids.device)
        return cache[key]


def _ablate(components, method, **kwargs):
    from mechhybrid import Ablate

    return Ablate(tuple(components), method=method, **kwargs)


def interventions_for(cond: Condition, input_ids: torch.Tensor, refs: References | None) -> list:
    """The intervention set of one condition on one batch (mean/resample need `refs`)."""
    if cond.method == "none":
        return []
    kwargs = {}
    if cond.method in ("mean", "resample") and refs is None:
        raise MechHybridError(f"method {cond.method!r} needs reference text (an lm benchmark)")
    if cond.method == "mean":
        kwargs["reference_ids"] = refs.mean_on(input_ids.device)
    elif cond.method == "resample":
        kwargs["source_ids"] = refs.source_like(input_ids)
    return [_ablate(cond.components, cond.method, **kwargs)]


def vocab_size(hm) -> int:
    emb = hm.hf_model.get_output_embeddings()
    if emb is not None and getattr(emb, "weight", None) is not None:
        return int(emb.weight.shape[0])
    return int(hm.hf_model.config.vocab_size)


def _finite(hm, ids: torch.Tensor, logits: torch.Tensor, cond: Condition) -> torch.Tensor:
    """`logits`, after checking that they are finite: a damaged model (NaN weights, a half-precision overflow)
    ends the analysis with one line naming the model, the condition and where the first non-finite value
    appeared, instead of a loss of NaN that would read as a finding."""
    try:
        check_finite(hm, ids, logits)
    except MechHybridError as exc:
        raise MechHybridError(f"{exc} (condition {cond.name}, method {cond.method})") from None
    return logits


def score_seqs(hm, seqs: list[Seq], conds: list[Condition], refs: References | None,
               batch_size: int = 16, budget_mb: float = 512, pad_id: int = 0) -> SeqScores:
    """SeqScores [set, span] for every condition, via hm.logits_many on length-sorted, right-padded batches."""
    n_sets, n = len(conds), len(seqs)
    offsets = np.cumsum([0] + [len(s.spans) for s in seqs])
    out = [np.zeros((n_sets, int(offsets[-1]))) for _ in STAT_NAMES]
    order = sorted(range(n), key=lambda i: (-len(seqs[i].ids), i))
    vocab = vocab_size(hm)
    device = getattr(hm.hf_model, "device", torch.device("cpu"))
    for b0 in range(0, n, batch_size):
        idx = order[b0:b0 + batch_size]
        width = len(seqs[idx[0]].ids)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : len(seqs[i].ids)] = torch.tensor(seqs[i].ids)
        ids = ids.to(device)
        masks = span_masks(ids, [seqs[i] for i in idx])
        cols = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in idx])
        # Chunk the sets so that one forward's logits stay within the memory budget (vocab 150k on real models).
        chunk = max(1, int(budget_mb * 2**20 // (4 * len(idx) * width * vocab)))
        for c0 in range(0, n_sets, chunk):
            sets = [interventions_for(c, ids, refs) for c in conds[c0:c0 + chunk]]
            in_order = iter(conds[c0:c0 + chunk])  # logits_many reduces the sets one by one, in order
            with torch.no_grad(), FORWARD:
                stats = hm.logits_many(
                    ids, sets, reduce=lambda part: span_stats(_finite(hm, ids, part, next(in_order)), ids, masks),
                    max_rows=len(sets) * len(idx))
            stats = stats.double().cpu().numpy()  # [set, 5, span]
            for k in range(len(STAT_NAMES)):
                out[k][c0:c0 + len(sets), cols] = stats[:, k]
    return SeqScores(*out)


def _score_gen(hm, task: GenTask, conds: list[Condition], refs) -> list[dict[str, np.ndarray]]:
    from .datasets.gsm8k import extract_answer

    if task.tokenizer is None:
        raise MechHybridError(f"benchmark {task.name!r} needs the model's tokenizer to read its answers")
    results = []
    for cond in conds:
        correct = []
        for item in task.items:
            ids = torch.tensor([item.prompt], dtype=torch.long)
            with torch.no_grad(), FORWARD:
                out = hm.generate(ids, interventions_for(cond, ids, refs), max_new_tokens=task.max_new_tokens)
            _finite(hm, out.tokens, out.logits, cond)
            text = task.tokenizer.decode(out.new_tokens[0].tolist(), skip_special_tokens=True)
            correct.append(float(extract_answer(text) == item.answer))
        results.append({"correct": np.asarray(correct)})
    return results


def score_task(hm, task: Task, conds: list[Condition], refs: References | None,
               batch_size: int = 16, budget_mb: float = 512, pad_id: int = 0) -> list[dict[str, np.ndarray]]:
    """Per-item scores of `task` under each condition: one dict of [item] arrays per condition."""
    if isinstance(task, GenTask):
        return _score_gen(hm, task, conds, refs)
    scores = score_seqs(hm, task.sequences(), conds, refs, batch_size, budget_mb, pad_id)
    return [task.reduce(scores.take(i)) for i in range(len(conds))]
