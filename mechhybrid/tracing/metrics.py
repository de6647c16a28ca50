"""Metrics of a sweep: functions of the logits, with the standard ones built in.

A metric says which sequences it reads (`tracks`: tokens appended to each prompt, and how many trailing
positions of each row it unembeds) and maps what it read to one number per patched run (`score`). A sweep
unembeds only those positions. Built in:

- `LogitDiff`: logit(clean answer) - logit(corrupted answer), normalised so that 0 = the corrupted run and 1 = the
  clean run. Answers may be several tokens: by default it reads the first token where the two answers differ
  (the shared part is appended to the prompt); `whole_answer=True` compares the whole answers' log-probabilities
  by teacher forcing. A row with no corrupted answer (None) contributes its clean answer's log-probability
  instead (the key swapped, so no answer is the corrupted one), normalised the same way.
- `AnswerProb`: the clean answer's probability (its first differing token, or the whole answer), mean over rows.
- `AnswerRank`: that token's rank among the vocabulary (0 = the top token), mean over rows.
- `KLToClean`: KL(clean || patched) of the next-token distribution at each prompt's last token, mean over rows.

Any callable `fn(logits) -> scalar` is a metric too: it receives `[batch, vocab]` logits at each prompt's last
token.

Axis names: `set` (one patched run), `batch`, `read` (the positions a row reads), `vocab`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from mechhybrid.errors import MechHybridError

__all__ = ["Track", "Metric", "LogitDiff", "AnswerProb", "AnswerRank", "KLToClean", "as_metric"]


@dataclass(frozen=True)
class Track:
    """One sequence per row that a metric reads: the prompt plus `suffix`, and its last `reads` positions."""

    suffix: tuple[tuple[int, ...], ...]
    """Per row: the tokens appended to the prompt (teacher forcing)."""
    reads: tuple[int, ...]
    """Per row: how many trailing positions of prompt + suffix are unembedded (>= 1)."""

    @staticmethod
    def last_token(batch: int) -> "Track":
        return Track(((),) * batch, (1,) * batch)


class Metric:
    """Base class: one track reading each prompt's last token; subclasses define `score`."""

    name = "metric"
    normalised = False
    """True: the sweep reports (raw - corrupted) / (clean - corrupted), so 0 = corrupted and 1 = clean."""

    def tracks(self, batch: int) -> tuple[Track, ...]:
        return (Track.last_token(batch),)

    def score(self, reads: tuple[torch.Tensor, ...], clean: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """`reads[k]`: `[set, batch, read, vocab]` logits of track k (a row's unused reads are padding) -> `[set]`.
        `clean`: the clean run's reads, `[1, batch, read, vocab]` per track."""
        raise NotImplementedError


class _Fn(Metric):
    def __init__(self, fn: Callable):
        self.fn = fn
        self.name = getattr(fn, "__name__", "metric")

    def score(self, reads, clean):
        values = []
        for logits in reads[0][:, :, 0]:  # [batch, vocab] per set
            value = self.fn(logits)
            if not isinstance(value, torch.Tensor):
                value = torch.as_tensor(value, dtype=torch.float32)
            if value.numel() != 1:
                raise MechHybridError(
                    f"metric {self.name} returned shape {tuple(value.shape)}; a metric must return one number "
                    "(a 0-dim tensor or a float) per run"
                )
            values.append(value.reshape(()).float())
        return torch.stack(values)


def as_metric(metric) -> Metric:
    """A Metric, or a callable `fn([batch, vocab] logits) -> scalar` wrapped as one."""
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        return _Fn(metric)
    raise MechHybridError(f"metric must be a Metric (LogitDiff(...), ...) or a callable, got {type(metric).__name__}")


def _answer_rows(value, batch: int, what: str, optional: bool) -> list[tuple[int, ...] | None]:
    if value is None:
        if optional:
            return [None] * batch
        raise MechHybridError(f"{what} are required")
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    rows = list(value)
    if len(rows) != batch:
        raise MechHybridError(f"{what}: {len(rows)} rows; the prompts have {batch}")
    out = []
    for b, row in enumerate(rows):
        if row is None and optional:
            out.append(None)
            continue
        tokens = (int(row),) if isinstance(row, int) else tuple(int(t) for t in row)
        if not tokens:
            raise MechHybridError(f"{what}: row {b} is empty; an answer needs at least one token")
        out.append(tokens)
    return out


class _Answers(Metric):
    """Shared by the answer metrics: per row the clean answer, the corrupted one (or None), and where they differ."""

    def __init__(self, answers, corrupted_answers=None, whole_answer: bool = False):
        if isinstance(answers, torch.Tensor) and answers.ndim == 1:
            answers = answers[:, None]
        self._given = (answers, corrupted_answers)
        self.whole_answer = whole_answer

    def bind(self, batch: int) -> None:
        answers, corrupted = self._given
        self.clean = _answer_rows(answers, batch, "answers", optional=False)
        self.corrupted = _answer_rows(corrupted, batch, "corrupted_answers", optional=True)
        self.differ_at = []
        for b, (a, x) in enumerate(zip(self.clean, self.corrupted)):
            if x is None:
                self.differ_at.append(0)
                continue
            k = next((i for i, (s, t) in enumerate(zip(a, x)) if s != t), None)
            if k is None:
                same = "the same" if a == x else "one a prefix of the other"
                raise MechHybridError(
                    f"pair {b}: clean answer {list(a)} and corrupted answer {list(x)} are {same}; the metric needs "
                    "answers that differ at some token"
                )
            self.differ_at.append(k)

    def tracks(self, batch: int) -> tuple[Track, ...]:
        self.bind(batch)
        if not self.whole_answer:
            return (Track(tuple(a[:k] for a, k in zip(self.clean, self.differ_at)), (1,) * batch),)
        clean = Track(tuple(a[:-1] for a in self.clean), tuple(len(a) for a in self.clean))
        other = [x if x is not None else (a[0],) for a, x in zip(self.clean, self.corrupted)]
        return clean, Track(tuple(x[:-1] for x in other), tuple(len(x) for x in other))

    def _tokens(self, answers) -> torch.Tensor:
        return torch.tensor([a[k] if a is not None else -1 for a, k in zip(answers, self.differ_at)])

    def _whole_logprob(self, reads: torch.Tensor, answers) -> torch.Tensor:
        """`[set, batch]` sum over the answer's tokens of log p(token | prompt, earlier answer tokens)."""
        logp = reads.float().log_softmax(-1)
        out = torch.zeros(reads.shape[:2])
        for b, tokens in enumerate(answers):
            if tokens is not None:
                index = torch.arange(len(tokens))
                out[:, b] = logp[:, b, index, torch.tensor(tokens)].sum(-1)
        return out


class LogitDiff(_Answers):
    """Logit difference of the clean vs the corrupted answer (see the module docstring), normalised."""

    name = "logit_diff"
    normalised = True

    def score(self, reads, clean):
        has_other = torch.tensor([x is not None for x in self.corrupted])
        if self.whole_answer:
            own = self._whole_logprob(reads[0], self.clean)
            other = self._whole_logprob(reads[1], [x for x in self.corrupted])
            return torch.where(has_other, own - other, own).mean(-1)
        logits = reads[0][:, :, 0].float()  # [set, batch, vocab]
        own = self._tokens(self.clean)
        other = self._tokens(self.corrupted).clamp(min=0)
        rows = torch.arange(logits.shape[1])
        diff = logits[:, rows, own] - logits[:, rows, other]
        logprob = logits.log_softmax(-1)[:, rows, own]
        return torch.where(has_other, diff, logprob).mean(-1)


class AnswerProb(_Answers):
    """Probability of the clean answer: its first token where the answers differ, or (`whole_answer`) the whole
    answer by teacher forcing; mean over rows."""

    name = "answer_prob"

    def tracks(self, batch):
        return super().tracks(batch)[:1]

    def score(self, reads, clean):
        if self.whole_answer:
            return self._whole_logprob(reads[0], self.clean).exp().mean(-1)
        probs = reads[0][:, :, 0].float().softmax(-1)
        rows = torch.arange(probs.shape[1])
        return probs[:, rows, self._tokens(self.clean)].mean(-1)


class AnswerRank(_Answers):
    """Rank of the clean answer's first differing token among the vocabulary (0 = the model's top token), mean
    over rows."""

    name = "answer_rank"

    def __init__(self, answers, corrupted_answers=None):
        super().__init__(answers, corrupted_answers)

    def score(self, reads, clean):
        logits = reads[0][:, :, 0].float()
        rows = torch.arange(logits.shape[1])
        own = logits[:, rows, self._tokens(self.clean)]  # [set, batch]
        return (logits > own[..., None]).sum(-1).float().mean(-1)


class KLToClean(Metric):
    """KL(clean || patched) of the next-token distribution at each prompt's last token, mean over rows
    (0 = the clean run's distribution)."""

    name = "kl_to_clean"

    def score(self, reads, clean):
        patched = reads[0][:, :, 0].float().log_softmax(-1)
        reference = clean[0][:, :, 0].float().log_softmax(-1)
        return (reference.exp() * (reference - patched)).sum(-1).mean(-1)


def normalising_gap(clean: float, corrupted: float, name: str) -> float:
    """clean - corrupted, the unit of a normalised metric; one line when the two runs do not differ."""
    gap = clean - corrupted
    if abs(gap) < 1e-12 * max(1.0, abs(clean)):
        raise MechHybridError(
            f"{name}: the clean and corrupted runs score the same ({clean:.6g}); nothing to normalise against"
        )
    return gap


def normalise(raw: torch.Tensor, clean: float, corrupted: float, name: str) -> torch.Tensor:
    """(raw - corrupted) / (clean - corrupted): 0 = the corrupted run, 1 = the clean run."""
    return (raw - corrupted) / normalising_gap(clean, corrupted, name)


def check_metric(values: torch.Tensor, count: int, name: str) -> torch.Tensor:
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != (count,):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise MechHybridError(f"metric {name} returned {shape} for {count} runs; expected one number per run")
    return values.float()
