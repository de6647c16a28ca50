"""The zoo's synthetic language: seeded, versioned, English-like, with known structure.

Every document is a list of words (one word = one token of the zoo tokenizer). Four kinds:

- ``text``: running text from a small stochastic grammar. Subject-verb agreement crosses
  adjectives, prepositional phrases and relative clauses ("the big cat near the dogs runs"),
  so predicting the verb needs more than the previous token. World facts ("the capital of
  france is paris .") are mixed in and recur across the corpus, to be memorised.
- ``needle``: filler text with one needle sentence ("the code of anna is seven three .") at a
  chosen depth, then a question with an answer prefix ("what is the code of anna ? seven
  three ."): Study B's protocol in miniature; key and value are fresh random draws.
- ``recall``: dense multi-query associative recall ("anna seven three ; bob ... | bob ? ...").
- ``copy``: a random span repeated at a random offset (fixed-period repeats teach a
  positional shortcut, random offsets teach induction).

A ``Doc`` also records which word positions are answers, so the loss can up-weight them and
tests can check every answer against the text it was placed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = [
    "LANGUAGE_VERSION", "SPECIAL_TOKENS", "VOCAB", "FACTS", "Doc",
    "text_doc", "needle_doc", "recall_doc", "copy_doc", "sample_doc", "doc_rng",
]

LANGUAGE_VERSION = "zoo-lang-1"
"""Bump whenever any word list, template or sampling rule changes (cards record it)."""

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
"""Ids 0..3 in this order; recipes.py relies on pad=0, bos=1, eos=2."""

PUNCT = (".", ",", "?", ";", "|")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NAMES = ("anna", "bob", "carl", "dora", "emil", "fay", "gus", "hana", "ivan", "jade", "kurt",
         "lena", "milo", "nora", "otto", "pia", "quin", "rosa", "sven", "tara", "ugo", "vera",
         "walt", "xena", "yuri", "zoe", "abel", "bea", "cleo", "dirk", "elsa", "finn")
FACTS = (  # (country, capital, language): fixed world knowledge, memorised by the models
    ("france", "paris", "french"), ("spain", "madrid", "spanish"), ("italy", "rome", "italian"),
    ("germany", "berlin", "german"), ("japan", "tokyo", "japanese"), ("egypt", "cairo", "arabic"),
    ("peru", "lima", "spanish"), ("kenya", "nairobi", "swahili"), ("chile", "santiago", "spanish"),
    ("norway", "oslo", "norwegian"), ("greece", "athens", "greek"), ("russia", "moscow", "russian"),
    ("china", "beijing", "chinese"), ("india", "delhi", "hindi"), ("cuba", "havana", "spanish"),
    ("austria", "vienna", "german"), ("portugal", "lisbon", "portuguese"), ("brazil", "brasilia", "portuguese"),
    ("poland", "warsaw", "polish"), ("sweden", "stockholm", "swedish"), ("ireland", "dublin", "english"),
    ("canada", "ottawa", "english"), ("mexico", "mexico_city", "spanish"), ("turkey", "ankara", "turkish"),
)
DETS_SG = ("a", "this", "every", "one")
DETS_PL = ("these", "those", "some", "many")
NOUNS = (("cat", "cats"), ("dog", "dogs"), ("bird", "birds"), ("child", "children"), ("farmer", "farmers"),
         ("king", "kings"), ("teacher", "teachers"), ("horse", "horses"), ("friend", "friends"),
         ("sailor", "sailors"), ("baker", "bakers"), ("fox", "foxes"), ("girl", "girls"), ("boy", "boys"),
         ("wolf", "wolves"), ("doctor", "doctors"), ("student", "students"), ("queen", "queens"),
         ("mouse", "mice"), ("man", "men"))
OBJECTS = ("apple", "river", "house", "garden", "book", "bridge", "stone", "forest", "road", "boat",
           "bread", "letter", "window", "hill", "lamp", "table")
VERBS = (("sees", "see"), ("likes", "like"), ("finds", "find"), ("helps", "help"), ("follows", "follow"),
         ("watches", "watch"), ("keeps", "keep"), ("paints", "paint"), ("carries", "carry"),
         ("builds", "build"), ("remembers", "remember"), ("visits", "visit"))
INTRANS = (("sleeps", "sleep"), ("runs", "run"), ("sings", "sing"), ("waits", "wait"), ("laughs", "laugh"),
           ("works", "work"))
ADJS = ("big", "small", "old", "young", "red", "green", "quiet", "happy", "tired", "brave", "clever",
        "dark", "bright", "slow", "quick", "gentle")
PREPS = ("near", "behind", "under", "beside", "with", "from", "across", "inside")
FUNCTION = ("the", "that", "and", "but", "then", "of", "is", "what", "capital", "language", "code")


def _vocab() -> tuple[str, ...]:
    words: list[str] = list(SPECIAL_TOKENS) + list(PUNCT) + list(DIGITS) + list(NAMES)
    for row in FACTS:
        words += [w for w in row]
    words += list(DETS_SG) + list(DETS_PL) + [w for pair in NOUNS for w in pair] + list(OBJECTS)
    words += [w for pair in VERBS + INTRANS for w in pair] + list(ADJS) + list(PREPS) + list(FUNCTION)
    return tuple(dict.fromkeys(words))  # languages repeat across countries; keep first occurrence


VOCAB = _vocab()
"""Every word of the language, specials first; the tokenizer's ids are positions here."""


@dataclass(frozen=True)
class Doc:
    """One generated document, as words, with its answer positions."""

    kind: str
    """'text', 'needle', 'recall' or 'copy'."""
    words: tuple[str, ...]
    """The document's words, starting with <bos>."""
    answer_spans: tuple[tuple[int, int], ...] = ()
    """[start, end) word positions whose words are answers to a question in the doc."""
    needle_span: tuple[int, int] = (0, 0)
    """For needle docs: [start, end) of the needle sentence (its depth in the text)."""
    random_positions: tuple[int, ...] = ()
    """Word positions holding fresh uniform draws (keys, values, copy spans at first sight): no model can
    predict them, so training down-weights them (their gradient is noise that delays retrieval)."""


def doc_rng(seed: int, stream: str, index: int) -> random.Random:
    """An independent RNG per (seed, stream, index): documents never depend on generation order."""
    return random.Random(f"{LANGUAGE_VERSION}/{seed}/{stream}/{index}")


def _zipf(rng: random.Random, options: tuple) -> object:
    # A Zipf-like choice gives natural word frequencies (a few common words, a long tail).
    weights = [1.0 / (rank + 1) for rank in range(len(options))]
    return rng.choices(options, weights=weights)[0]


def _noun_phrase(rng: random.Random, plural: bool, depth: int) -> list[str]:
    det = "the" if rng.random() < 0.5 else _zipf(rng, DETS_PL if plural else DETS_SG)
    words = [det]
    if rng.random() < 0.4:
        words.append(_zipf(rng, ADJS))
    words.append(_zipf(rng, NOUNS)[1 if plural else 0])
    roll = rng.random()
    if depth == 0 and roll < 0.25:  # PP: the verb must skip the PP's noun to agree with the head
        words += [_zipf(rng, PREPS)] + _noun_phrase(rng, rng.random() < 0.5, depth + 1)
    elif depth == 0 and roll < 0.4:  # relative clause: agreement inside and across it
        words += ["that", _zipf(rng, VERBS)[0 if not plural else 1]] + _object(rng)
    return words


def _object(rng: random.Random) -> list[str]:
    if rng.random() < 0.5:
        return ["the", _zipf(rng, OBJECTS)]
    return _noun_phrase(rng, rng.random() < 0.5, depth=1)


def _clause(rng: random.Random) -> list[str]:
    plural = rng.random() < 0.5
    words = _noun_phrase(rng, plural, depth=0)
    if rng.random() < 0.3:
        words.append(_zipf(rng, INTRANS)[1 if plural else 0])
    else:
        words += [_zipf(rng, VERBS)[1 if plural else 0]] + _object(rng)
    return words


def fact_sentence(rng: random.Random) -> list[str]:
    """A world fact: the capital or the language of a country."""
    country, capital, lang = rng.choice(FACTS)
    relation, answer = ("capital", capital) if rng.random() < 0.6 else ("language", lang)
    return ["the", relation, "of", country, "is", answer, "."]


def sentence(rng: random.Random, fact_rate: float = 0.12) -> list[str]:
    """One sentence of running text (a fact with probability `fact_rate`)."""
    if rng.random() < fact_rate:
        return fact_sentence(rng)
    words = _clause(rng)
    if rng.random() < 0.2:
        words += [rng.choice(("and", "but", "then"))] + _clause(rng)
    return words + ["."]


def filler(rng: random.Random, n_words: int, fact_rate: float = 0.12) -> list[str]:
    """Whole sentences of running text totalling at least `n_words` words."""
    words: list[str] = []
    while len(words) < n_words:
        words += sentence(rng, fact_rate)
    return words


def text_doc(rng: random.Random, length: int) -> Doc:
    """Running text of about `length` words, cut at a sentence end not past `length`."""
    words = ["<bos>"]
    while True:
        nxt = sentence(rng)
        if len(words) + len(nxt) > length:
            break
        words += nxt
    return Doc("text", tuple(words))


def _value(rng: random.Random) -> list[str]:
    return [rng.choice(DIGITS), rng.choice(DIGITS)]  # 100 values: chance exact match is 0.01


def needle_doc(rng: random.Random, length: int, depth: float) -> Doc:
    """Filler with a needle at relative `depth` (0..1), then the question and its answer.

    The whole doc has exactly `length` words: filler is trimmed to whole words around the
    needle so that context lengths of the needle grid are exact.
    """
    key, value = rng.choice(NAMES), _value(rng)
    needle = ["the", "code", "of", key, "is"] + value + ["."]
    question = ["what", "is", "the", "code", "of", key, "?"]
    n_fill = length - 1 - len(needle) - len(question) - len(value) - 1
    if n_fill < 0:
        raise ValueError(f"needle doc of {length} words is too short")
    text = filler(rng, n_fill + 8, fact_rate=0.0)[:n_fill]
    cut = round(depth * n_fill)
    words = ["<bos>"] + text[:cut] + needle + text[cut:] + question + value + ["."]
    start = len(words) - 1 - len(value)
    key_at = 1 + cut + 3  # "the code of KEY is V V ."
    return Doc("needle", tuple(words), ((start, start + len(value)),), (1 + cut, 1 + cut + len(needle)),
               random_positions=(key_at, key_at + 2, key_at + 3))


def recall_doc(rng: random.Random, n_pairs: int, n_queries: int) -> Doc:
    """Dense associative recall: `n_pairs` distinct keys with values, then `n_queries` queries."""
    keys = rng.sample(NAMES, n_pairs)
    values = {k: _value(rng) for k in keys}
    words = ["<bos>"]
    for k in keys:
        words += [k] + values[k] + [";"]
    random_positions = [p for p in range(1, len(words)) if words[p] != ";"]
    words.append("|")
    spans = []
    for k in rng.sample(keys, n_queries):
        random_positions.append(len(words))  # which key is asked next is a fresh draw too
        words += [k, "?"]
        spans.append((len(words), len(words) + 2))
        words += values[k] + ["."]
    return Doc("recall", tuple(words), tuple(spans), random_positions=tuple(random_positions))


_CONTENT = tuple(w for w in VOCAB[len(SPECIAL_TOKENS):] if w not in PUNCT)


def copy_doc(rng: random.Random, length: int) -> Doc:
    """A random span, filler of random length, the span again (its repeat is the answer)."""
    span_len = rng.randint(6, 16)
    span = [rng.choice(_CONTENT) for _ in range(span_len)]
    gap = rng.randint(0, max(0, length - 2 * span_len - 2))
    words = ["<bos>"] + span + filler(rng, gap, fact_rate=0.0)[:gap] + ["|"]
    start = len(words)
    words += span
    return Doc("copy", tuple(words), ((start, start + span_len),), random_positions=tuple(range(1, 1 + span_len)))


def sample_doc(rng: random.Random, kind: str) -> Doc:
    """A training document of `kind` with the recipe's length ranges."""
    if kind == "text":
        return text_doc(rng, rng.randint(64, 256))
    if kind == "needle":
        return needle_doc(rng, rng.randint(64, 256), rng.random())
    if kind == "recall":
        n_pairs = rng.randint(4, 8)
        return recall_doc(rng, n_pairs, n_pairs)
    if kind == "copy":
        return copy_doc(rng, rng.randint(32, 128))
    raise ValueError(f"unknown document kind {kind!r}")
