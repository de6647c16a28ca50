"""Segmented prompts in the zoo's language, for scoring Gather and Aggregate heads.

A prompt is a run of segments (the units a Gather head condenses into their last token), then a question whose
last token is the final query position (where an Aggregate head reads the segments' last tokens). One segment
holds the answer. Three kinds, each from an RNG stream of its own (never the training stream, the probe's or
the benchmarks'):

- `needle`: whole filler sentences with the needle sentence "the code of KEY is V V ." between two of them, then
  "what is the code of KEY ?"; the segments are the sentences, the needle the answer segment.
- `recall`: "KEY V V ;" pairs, then "| KEY ?"; the segments are the pairs, the queried pair the answer segment.
- `facts`: a zoo multiple-choice item (mechhybrid.zoo.benchmarks `facts`) with its four choices stated as true
  facts ("the capital of peru is lima ." for the choice lima), then the item's own question ("the capital of
  france is"); the segments are the four facts, the one stating the correct choice the answer segment.

Positions are token positions (one zoo word = one token; position 0 is <bos>).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SegmentedPrompt", "needle_prompts", "recall_prompts", "facts_prompts", "scoring_prompts", "STREAM"]

STREAM = "gather-aggregate"
"""The zoo language's RNG stream prefix of these prompts."""


@dataclass(frozen=True)
class SegmentedPrompt:
    """One scoring prompt, its segments and which one answers the question."""

    kind: str
    """needle, recall or facts (config.PROMPT_KINDS)."""
    ids: tuple[int, ...]
    """The prompt, ending at the final query position (the token that predicts the answer)."""
    segments: tuple[tuple[int, int], ...]
    """[start, end) token positions of each segment, in order; its last token is end - 1."""
    answer: int
    """Index (into `segments`) of the segment that holds the answer."""

    def __post_init__(self):
        if not self.segments or not 0 <= self.answer < len(self.segments):
            raise ValueError(f"a {self.kind} prompt needs segments and an answer segment among them")
        last = 0
        for start, end in self.segments:
            if not last <= start < end < len(self.ids):
                raise ValueError(f"segment [{start}, {end}) must follow the previous one and end before the final "
                                 f"query {len(self.ids) - 1}")
            last = end

    @property
    def ends(self) -> tuple[int, ...]:
        """Each segment's last token."""
        return tuple(end - 1 for _, end in self.segments)

    @property
    def query(self) -> int:
        """The final query position."""
        return len(self.ids) - 1


def _encode(words) -> tuple[int, ...]:
    from mechhybrid.zoo.tokenizer import encode_words

    return tuple(encode_words(list(words)))


def _from_pieces(kind: str, pieces: list[list[str]], answer: int, question: list[str]) -> SegmentedPrompt:
    """<bos>, each piece as a segment, then the question."""
    words, spans = ["<bos>"], []
    for piece in pieces:
        spans.append((len(words), len(words) + len(piece)))
        words += piece
    return SegmentedPrompt(kind, _encode(words + question), tuple(spans), answer)


def needle_prompts(n: int, length: int, seed: int) -> list[SegmentedPrompt]:
    """`n` needle prompts of about `length` tokens, the needle at a uniformly drawn sentence boundary."""
    from mechhybrid.zoo import language as lang

    out = []
    for k in range(n):
        rng = lang.doc_rng(seed, f"{STREAM}/needle", k)
        key, value = rng.choice(lang.NAMES), [rng.choice(lang.DIGITS), rng.choice(lang.DIGITS)]
        needle = ["the", "code", "of", key, "is"] + value + ["."]
        question = ["what", "is", "the", "code", "of", key, "?"]
        budget = length - 1 - len(needle) - len(question)
        sentences: list[list[str]] = []
        while not sentences or sum(map(len, sentences)) + len(sentences[-1]) <= budget:
            sentences.append(lang.sentence(rng, fact_rate=0.0))
        if len(sentences) > 1 and sum(map(len, sentences)) > budget:
            sentences.pop()  # whole sentences only, within the budget where possible
        at = rng.randint(0, len(sentences))
        out.append(_from_pieces("needle", sentences[:at] + [needle] + sentences[at:], at, question))
    return out


def recall_prompts(n: int, pairs: int, seed: int) -> list[SegmentedPrompt]:
    """`n` associative-recall prompts of `pairs` key-value pairs, one key queried."""
    from mechhybrid.zoo import language as lang

    out = []
    for k in range(n):
        rng = lang.doc_rng(seed, f"{STREAM}/recall", k)
        keys = rng.sample(lang.NAMES, pairs)
        pieces = [[key, rng.choice(lang.DIGITS), rng.choice(lang.DIGITS), ";"] for key in keys]
        asked = rng.randrange(pairs)
        out.append(_from_pieces("recall", pieces, asked, ["|", keys[asked], "?"]))
    return out


def facts_prompts(n: int, seed: int) -> list[SegmentedPrompt]:
    """Up to `n` of the zoo's multiple-choice facts items (a seeded sample), their choices stated as facts."""
    from mechhybrid.zoo import language as lang
    from mechhybrid.zoo.benchmarks import get_benchmark

    from ..sampling import sample_indices

    bench = get_benchmark("facts")
    column = {"capital": 1, "language": 2}
    out = []
    for i in sample_indices(len(bench.items), n, seed):
        item = bench.items[i]
        meta = item.meta_dict()
        relation, country = meta["relation"], meta["country"]
        pieces = []
        for c, choice in enumerate(item.choices):
            word = lang.VOCAB[choice[0]]
            # The correct choice is stated of the item's own country; a wrong one of the first country it is
            # true of (a language can belong to several).
            of = country if c == item.correct else next(r[0] for r in lang.FACTS if r[column[relation]] == word)
            pieces.append(["the", relation, "of", of, "is", word, "."])
        out.append(_from_pieces("facts", pieces, item.correct, ["the", relation, "of", country, "is"]))
    return out


def scoring_prompts(cfg) -> dict[str, list[SegmentedPrompt]]:
    """kind -> the config's scoring prompts of that kind."""
    return {"needle": needle_prompts(cfg.prompts, cfg.needle_length, cfg.seed),
            "recall": recall_prompts(cfg.prompts, cfg.recall_pairs, cfg.seed),
            "facts": facts_prompts(cfg.prompts, cfg.seed)}
