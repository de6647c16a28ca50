"""Clean / corrupted prompt pairs for causal tracing: from the zoo's language, or from a user's JSONL file.

On the zoo each task is a set of pairs of one shape, so that token positions mean the same thing in every pair
(the needle sits at the same token in all of them) and the sweep's entries can be pooled position by position:

- `needle_value`: a needle prompt (filler, "the code of KEY is V V .", filler, "what is the code of KEY ?") and
  the same prompt with the needle's value swapped; the corrupted answer is the other value;
- `needle_key`: the same prompt with the needle's key swapped, so that the question no longer matches; there is
  no corrupted answer (the metric reads the clean answer's log-probability);
- `recall_value`, `recall_key`: the zoo's associative recall ("KEY V V ; ... | KEY ? V V . ... KEY ?"), the
  last question's pair (moved to the same place among the pairs in every prompt) with its value, or its key,
  swapped;
- `facts_subject`: "the capital|language of COUNTRY is" with another country whose answer differs.

A swapped value's first digit differs from the clean one's, so that every pair's answers differ at their first
token and the metric reads each prompt's last token. Values, keys and facts are drawn from a stream of their
own (never the training, probe or benchmark streams).

A user's file (`pairs_file`, JSONL) holds one pair per line: `prompt`, `corrupted_prompt`, `answer` and
`corrupted_answer` (a string, or null for "no corrupted answer"), tokenised with the model's tokenizer.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from mechhybrid.errors import MechHybridError

__all__ = ["PairSet", "TASKS", "ZOO_STREAM", "zoo_pairs", "file_pairs", "RECALL_PAIRS"]

TASKS = {
    "needle_value": ("needle", "value"), "needle_key": ("needle", "key"),
    "recall_value": ("recall", "value"), "recall_key": ("recall", "key"),
    "facts_subject": ("facts", "subject"),
}
"""Zoo task -> (benchmark, what the corrupted prompt swaps)."""
ZOO_STREAM = "patching-pairs"
"""The zoo language's RNG stream for these pairs."""
RECALL_PAIRS = 8
"""Key-value pairs of a recall prompt (the zoo benchmark's count: inside the 4-8 the models were trained on)."""
RECALL_ASKED = 3
"""Where the asked pair sits among the pairs of a recall prompt (0-based): the same in every pair."""
_RECALL_HEAD = 2 + 4 * RECALL_PAIRS
"""<bos>, the pairs "KEY V V ;", and "|"."""


@dataclass(frozen=True)
class PairSet:
    """One task's pairs: prompts of the same shape, their answers and their tokens as text."""

    task: str
    """The task's name (TASKS, or `file` for a user's pairs)."""
    benchmark: str
    """Where the prompts come from: needle, recall, facts, or the file's name."""
    corruption: str
    """What the corrupted prompt swaps: value, key, subject, or `file`."""
    clean: tuple[tuple[int, ...], ...]
    corrupted: tuple[tuple[int, ...], ...]
    answers: tuple[tuple[int, ...], ...]
    corrupted_answers: tuple[tuple[int, ...] | None, ...]
    """None: no answer is the corrupted one (the key swapped)."""
    clean_text: tuple[tuple[str, ...], ...]
    """Each clean prompt's tokens as text (the heatmaps' axis)."""
    corrupted_text: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        n = len(self.clean)
        if not n or any(len(x) != n for x in (self.corrupted, self.answers, self.corrupted_answers,
                                              self.clean_text, self.corrupted_text)):
            raise ValueError("a PairSet needs one entry per pair in every field")

    @property
    def n(self) -> int:
        return len(self.clean)

    def token_table(self) -> list[dict]:
        """One row per (pair, position): the clean and the corrupted token, for the side table."""
        return [{"task": self.task, "pair": b, "position": p, "clean": c, "corrupted": x}
                for b, (cs, xs) in enumerate(zip(self.clean_text, self.corrupted_text))
                for p, (c, x) in enumerate(zip(cs, xs))]


def _other_value(rng: random.Random, value: list[str]) -> list[str]:
    from mechhybrid.zoo.language import DIGITS

    return [rng.choice([d for d in DIGITS if d != value[0]]), rng.choice(DIGITS)]


def _zoo_set(task: str, words: list[tuple[list[str], list[str], list[str], list[str] | None]]) -> PairSet:
    from mechhybrid.zoo.tokenizer import encode_words

    benchmark, corruption = TASKS[task]
    return PairSet(
        task, benchmark, corruption,
        tuple(tuple(encode_words(c)) for c, _, _, _ in words), tuple(tuple(encode_words(x)) for _, x, _, _ in words),
        tuple(tuple(encode_words(a)) for _, _, a, _ in words),
        tuple(None if o is None else tuple(encode_words(o)) for _, _, _, o in words),
        tuple(tuple(c) for c, _, _, _ in words), tuple(tuple(x) for _, x, _, _ in words))


def _needle(task: str, n: int, length: int, depth: float, seed: int) -> PairSet:
    from mechhybrid.zoo import language as lang

    made = []
    for k in range(n):
        rng = lang.doc_rng(seed, f"{ZOO_STREAM}/needle/{length}/{depth}", k)
        # The doc ends with the answer's two digits and ".": its first `length` words are the prompt.
        doc = lang.needle_doc(rng, length + 3, depth)
        (start, end), = doc.answer_spans
        clean, value = list(doc.words[:start]), list(doc.words[start:end])
        corrupted = list(clean)
        key_at = doc.random_positions[0]
        if task == "needle_value":
            other = _other_value(rng, value)
            corrupted[key_at + 2: key_at + 4] = other
        else:
            corrupted[key_at] = rng.choice([w for w in lang.NAMES if w != clean[key_at]])
            other = None
        made.append((clean, corrupted, value, other))
    return _zoo_set(task, made)


def _recall(task: str, n: int, length: int, seed: int) -> PairSet:
    from mechhybrid.zoo import language as lang

    # Question j ("KEY ? V V .", 5 words) starts at _RECALL_HEAD + 5j; the prompt stops at its "?".
    question = min(RECALL_PAIRS - 1, (length - _RECALL_HEAD - 2) // 5)
    made = []
    for k in range(n):
        rng = lang.doc_rng(seed, f"{ZOO_STREAM}/recall/{length}", k)
        words = list(lang.recall_doc(rng, RECALL_PAIRS, RECALL_PAIRS).words)
        start = _RECALL_HEAD + 5 * question + 2
        at = words.index(words[start - 2])  # the asked key's pair "KEY V V ;" (no earlier question asks it)
        # The pairs' order is arbitrary: the asked pair goes to the same place in every prompt, so that its
        # tokens sit at the same positions in every pair.
        there = 1 + 4 * RECALL_ASKED
        words[at: at + 4], words[there: there + 4] = words[there: there + 4], words[at: at + 4]
        clean, value = words[:start], words[start: start + 2]
        corrupted = list(clean)
        if task == "recall_value":
            other = _other_value(rng, value)
            corrupted[there + 1: there + 3] = other
        else:
            corrupted[there] = rng.choice([w for w in lang.NAMES if w not in clean])
            other = None
        made.append((clean, corrupted, value, other))
    return _zoo_set(task, made)


def _facts(n: int, seed: int) -> PairSet:
    from mechhybrid.zoo import language as lang

    rng = random.Random(f"{lang.LANGUAGE_VERSION}/{seed}/{ZOO_STREAM}/facts")
    cases = [(row, column) for row in lang.FACTS for column in (1, 2)]
    made = []
    for row, column in rng.sample(cases, min(n, len(cases))):
        other = rng.choice([r for r in lang.FACTS if r[column] != row[column]])
        relation = "capital" if column == 1 else "language"
        prompt = ["<bos>", "the", relation, "of"]
        made.append((prompt + [row[0], "is"], prompt + [other[0], "is"], [row[column]], [other[column]]))
    return _zoo_set("facts_subject", made)


def zoo_pairs(task: str, n: int, length: int, depth: float, seed: int) -> PairSet:
    """`n` pairs of zoo task `task` (TASKS); needle and recall prompts of `length` tokens (recall: the longest
    whole question that fits), the needle at relative `depth`; facts prompts are the benchmark's 6 tokens and
    number at most 48 (24 countries x 2 relations)."""
    if task not in TASKS:
        raise MechHybridError(f"unknown patching task {task!r}; tasks: {', '.join(TASKS)}")
    if task.startswith("needle"):
        if length < 16:
            raise MechHybridError(f"patching length {length} is shorter than the zoo's needle and question "
                                  "(16 tokens)")
        return _needle(task, n, length, depth, seed)
    if task.startswith("recall"):
        if length < _RECALL_HEAD + 2:
            raise MechHybridError(f"patching length {length} is shorter than a zoo recall prompt with one "
                                  f"question ({_RECALL_HEAD + 2} tokens)")
        return _recall(task, n, length, seed)
    return _facts(n, seed)


def _line_pair(tokenizer, obj, where: str):
    keys = ("prompt", "corrupted_prompt", "answer", "corrupted_answer")
    if not isinstance(obj, dict) or any(k not in obj for k in keys[:3]):
        raise MechHybridError(f"{where}: expected an object with {', '.join(keys)} (corrupted_answer may be null)")
    for key in keys:
        value = obj.get(key)
        if not (isinstance(value, str) and value) and not (key == "corrupted_answer" and value is None):
            raise MechHybridError(f"{where}: {key} must be a non-empty string, got {value!r}")
    clean = tuple(tokenizer(obj["prompt"])["input_ids"])
    corrupted = tuple(tokenizer(obj["corrupted_prompt"])["input_ids"])
    if len(clean) != len(corrupted):
        raise MechHybridError(f"{where}: prompt tokenises to {len(clean)} tokens and corrupted_prompt to "
                              f"{len(corrupted)}; patching position by position needs equal lengths")
    if clean == corrupted:
        raise MechHybridError(f"{where}: prompt and corrupted_prompt tokenise to the same tokens; there is nothing "
                              "to patch")
    answer = tuple(tokenizer(obj["answer"], add_special_tokens=False)["input_ids"])
    other = obj.get("corrupted_answer")
    other = None if other is None else tuple(tokenizer(other, add_special_tokens=False)["input_ids"])
    if not answer or other == ():
        raise MechHybridError(f"{where}: an answer tokenises to no tokens")
    if other is not None and all(a == b for a, b in zip(answer, other)):
        raise MechHybridError(f"{where}: answer {obj['answer']!r} and corrupted_answer "
                              f"{obj['corrupted_answer']!r} do not differ at any token (one is the other or its "
                              "start); the metric needs answers that differ")
    return clean, corrupted, answer, other


def file_pairs(path, tokenizer, limit: int) -> PairSet:
    """The first `limit` pairs of a JSONL file (one object per line; blank lines skipped), tokenised."""
    path = Path(path)
    if not path.is_file():
        raise MechHybridError(f"patching pairs_file not found: {path}")
    if tokenizer is None:
        raise MechHybridError(f"patching pairs_file {path}: the model has no tokenizer to tokenise it with")
    made = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if len(made) == limit:
            break
        if not line.strip():
            continue
        where = f"patching pairs_file {path} line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MechHybridError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
        made.append(_line_pair(tokenizer, obj, where))
    if not made:
        raise MechHybridError(f"patching pairs_file {path} holds no pairs")
    text = lambda ids: tuple(tokenizer.decode([t]) for t in ids)  # noqa: E731
    return PairSet("file", path.name, "file", tuple(m[0] for m in made), tuple(m[1] for m in made),
                   tuple(m[2] for m in made), tuple(m[3] for m in made), tuple(text(m[0]) for m in made),
                   tuple(text(m[1]) for m in made))
