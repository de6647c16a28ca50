"""Needle-in-a-haystack prompts on a grid of context length x needle depth.

Two sources, one shape (`NeedlePrompt`):
- the zoo's own language (`zoo_grid`): its 256-word vocabulary cannot express user text, so the needle is the
  zoo's "the code of KEY is V V ." sentence in zoo filler, asked as "what is the code of KEY ?", drawn from a
  stream of its own (never the training stream, the training probe's or the held-out benchmarks');
- a user's haystack (`text_grid`, real models): a text file as filler, a needle sentence inserted after the
  sentence end nearest the depth (as Study B's Needle_test does), then the question and an answer prefix.

Positions are token positions in the prompt; `value_positions` are the needle's answer tokens (the tokens a
retrieval head must attend to while the model copies them) and `needle_positions` the whole needle sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mechhybrid.errors import MechHybridError

__all__ = ["NeedlePrompt", "zoo_grid", "text_grid", "ZOO_STREAM", "just_read_twice"]

ZOO_MIN_LENGTH = 19
"""The shortest zoo needle prompt plus answer: <bos>, 8 needle, 7 question, 2 value and 1 full-stop tokens."""
ZOO_STREAM = "retrieval-needle"
"""The zoo language's RNG stream for these prompts (disjoint from training, probe and benchmark streams)."""


@dataclass(frozen=True)
class NeedlePrompt:
    """One prompt of the grid and what answers it."""

    ids: tuple[int, ...]
    """The prompt (context, question, answer prefix), without the answer."""
    answer_ids: tuple[int, ...]
    """The answer's tokens, as the model should generate them."""
    answer_text: str
    """The answer as text (what the string scorers look for)."""
    context_length: int
    """The grid's context length (tokens of the whole prompt for the zoo, of the haystack for text)."""
    depth: float
    """Relative needle depth in the haystack, 0 = first, 1 = last."""
    needle_positions: tuple[int, ...]
    """Prompt positions of the needle sentence."""
    value_positions: tuple[int, ...]
    """Prompt positions of the needle's answer tokens (what a retrieval head copies from)."""
    index: int = 0
    """The prompt's number within its grid cell."""

    @property
    def coords(self) -> dict:
        return {"context_length": self.context_length, "depth": self.depth}


def zoo_grid(lengths, depths, per_cell: int, seed: int) -> list[NeedlePrompt]:
    """`per_cell` zoo needle prompts per (length, depth); the doc of `length` words minus its answer and its
    final full stop is the prompt."""
    from mechhybrid.zoo import language as lang
    from mechhybrid.zoo.tokenizer import encode_words

    prompts = []
    for length in lengths:
        for depth in depths:
            for k in range(per_cell):
                rng = lang.doc_rng(seed, f"{ZOO_STREAM}/{length}/{depth}", k)
                try:
                    doc = lang.needle_doc(rng, length, depth)
                except ValueError:
                    raise MechHybridError(f"retrieval context length {length} is shorter than the zoo's needle, "
                                          f"question and answer ({ZOO_MIN_LENGTH} tokens)") from None
                (start, end), = doc.answer_spans
                words = doc.words[:start]
                values = tuple(range(doc.random_positions[1], doc.random_positions[2] + 1))
                prompts.append(NeedlePrompt(
                    tuple(encode_words(words)), tuple(encode_words(doc.words[start:end])),
                    " ".join(doc.words[start:end]), length, float(depth), tuple(range(*doc.needle_span)), values,
                    k))
    return prompts


def just_read_twice(prompt: NeedlePrompt, context_start: int = 1) -> NeedlePrompt:
    """The prompt with its context (everything before the question) repeated once before the question, as in
    just-read-twice prompting; positions keep pointing at the second copy's needle, the one nearer the question.
    `context_start`: tokens kept once at the front (the zoo's <bos>)."""
    question_at = max(prompt.needle_positions[-1] + 1, _question_start(prompt))
    head, context, tail = (prompt.ids[:context_start], prompt.ids[context_start:question_at],
                           prompt.ids[question_at:])
    shift = len(context)
    return NeedlePrompt(head + context + context + tail, prompt.answer_ids, prompt.answer_text,
                        prompt.context_length, prompt.depth, tuple(p + shift for p in prompt.needle_positions),
                        tuple(p + shift for p in prompt.value_positions), prompt.index)


def _question_start(prompt: NeedlePrompt) -> int:
    # The zoo's question is its last 7 words: "what is the code of KEY ?".
    return len(prompt.ids) - 7


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def text_grid(tokenizer, haystack_file, lengths, depths, needle: str, question: str, answer_prefix: str,
              answer: str) -> list[NeedlePrompt]:
    """One prompt per (length, depth) from a user's haystack text: its sentences fill `length` tokens, the
    needle goes after the sentence end nearest `depth` of them, then the question and the answer prefix."""
    path = Path(haystack_file)
    if not path.is_file():
        raise MechHybridError(f"retrieval haystack file not found: {path}")
    sentences = [s for s in _SENTENCE_END.split(path.read_text(encoding="utf-8", errors="replace")) if s.strip()]
    if not sentences:
        raise MechHybridError(f"retrieval haystack file {path} holds no text")
    encode = lambda text: tuple(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    pieces = [encode(" " + s) for s in sentences]
    needle_ids, tail_ids = encode(" " + needle), encode("\n" + question + "\n" + answer_prefix)
    answer_ids = encode(" " + answer)
    bos = (tokenizer.bos_token_id,) if tokenizer.bos_token_id is not None else ()
    prompts = []
    for length in lengths:
        if sum(len(p) for p in pieces) < length:
            raise MechHybridError(f"retrieval haystack file {path} holds {sum(len(p) for p in pieces)} tokens, "
                                  f"fewer than the context length {length} asked for")
        chosen, total = [], 0
        while total < length:
            chosen.append(pieces[len(chosen)])
            total += len(chosen[-1])
        for depth in depths:
            ends = [sum(len(p) for p in chosen[:i]) for i in range(len(chosen) + 1)]
            cut = min(range(len(ends)), key=lambda i: abs(ends[i] - depth * total))
            before = bos + tuple(t for p in chosen[:cut] for t in p)
            after = tuple(t for p in chosen[cut:] for t in p)
            needle_at = tuple(range(len(before), len(before) + len(needle_ids)))
            values = _find(needle_ids, answer_ids, len(before)) or needle_at
            prompts.append(NeedlePrompt(before + needle_ids + after + tail_ids, answer_ids, answer, length,
                                        float(depth), needle_at, values))
    return prompts


def _find(haystack: tuple[int, ...], part: tuple[int, ...], offset: int) -> tuple[int, ...]:
    """Positions (plus offset) where the answer's tokens sit inside the needle, or () when tokenised apart."""
    for i in range(len(haystack) - len(part) + 1):
        if haystack[i:i + len(part)] == part:
            return tuple(range(offset + i, offset + i + len(part)))
    return ()
