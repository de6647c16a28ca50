"""The synthetic language: deterministic, and every answer key agrees with the text it sits in.

Answers are checked by re-parsing the words (not by trusting the generator's spans)."""

import hashlib

import pytest

from mechhybrid.zoo import language as lang
from mechhybrid.zoo.benchmarks import get_benchmark
from mechhybrid.zoo.language import doc_rng, needle_doc, recall_doc, copy_doc, sample_doc, text_doc

KINDS = ("text", "needle", "recall", "copy")


def _corpus_bytes(seed: int, n: int = 40) -> bytes:
    docs = [sample_doc(doc_rng(seed, "t", i), kind) for i in range(n) for kind in KINDS]
    return "\n".join(" ".join(d.words) + repr(d.answer_spans) for d in docs).encode()


def test_generator_is_deterministic_per_seed():
    a, b = _corpus_bytes(0), _corpus_bytes(0)
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
    assert _corpus_bytes(1) != a


def test_vocabulary_fits_a_256_token_model_and_has_no_duplicates():
    assert len(lang.VOCAB) == len(set(lang.VOCAB)) <= 256
    assert lang.VOCAB[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")


def _parse_needles(words):
    """All (key, value) of needle sentences 'the code of K is D D .' in `words`."""
    found = []
    for i in range(len(words) - 7):
        if words[i:i + 3] == ("the", "code", "of") and words[i + 4] == "is" and words[i - 1] != "is":
            found.append((words[i + 3], words[i + 5:i + 7]))
    return found


def _check_needle(words, spans, length):
    assert len(words) == length
    q = len(words) - 10  # 'what is the code of K ?' + 2 value words + '.'
    assert words[q:q + 5] == ("what", "is", "the", "code", "of") and words[q + 6] == "?"
    needles = _parse_needles(words[:q])
    assert len(needles) == 1, needles  # exactly one needle, so the answer is unambiguous
    key, value = needles[0]
    assert words[q + 5] == key
    (s, e), = spans
    assert words[s:e] == value and e == len(words) - 1 and words[-1] == "."


@pytest.mark.parametrize("length", [40, 64, 200, 512])
@pytest.mark.parametrize("depth", [0.0, 0.3, 1.0])
def test_needle_answer_is_the_value_placed_in_the_text(length, depth):
    for i in range(5):
        doc = needle_doc(doc_rng(3, "needle-test", i), length, depth)
        _check_needle(doc.words, doc.answer_spans, length)
        s, e = doc.needle_span
        assert doc.words[s:s + 3] == ("the", "code", "of")
        filler = length - 19  # bos + needle (8) + question (7) + value (2) + '.'
        assert s - 1 == round(depth * filler)


def test_every_needle_benchmark_item_is_answerable_from_its_text():
    inv = {i: w for i, w in enumerate(lang.VOCAB)}
    for item in get_benchmark("needle").items:
        words = tuple(inv[i] for i in item.input_ids)
        _check_needle(words, item.answer_spans, item.meta_dict()["context_len"])


def _check_recall(words, spans):
    bar = words.index("|")
    pairs = {}
    for j in range(1, bar, 4):
        k, d1, d2, sep = words[j:j + 4]
        assert sep == ";" and k not in pairs
        pairs[k] = (d1, d2)
    assert len(spans) == (len(words) - bar - 1) // 5
    for s, e in spans:
        assert words[s - 1] == "?" and words[e] == "."
        assert words[s:e] == pairs[words[s - 2]]


def test_recall_answers_match_their_pairs():
    for i in range(50):
        doc = recall_doc(doc_rng(5, "recall-test", i), 4 + i % 5, 2 + i % 3)
        _check_recall(doc.words, doc.answer_spans)
    inv = {i: w for i, w in enumerate(lang.VOCAB)}
    for item in get_benchmark("recall").items:
        _check_recall(tuple(inv[i] for i in item.input_ids), item.answer_spans)


def test_random_positions_are_exactly_the_fresh_draws():
    # Re-parsed from the words: keys and values of needles and recall pairs, queried keys, first copy spans.
    doc = needle_doc(doc_rng(3, "rand", 0), 100, 0.5)
    s, _ = doc.needle_span
    assert [doc.words[p] for p in doc.random_positions] == [doc.words[s + 3], *doc.words[s + 5:s + 7]]
    doc = recall_doc(doc_rng(3, "rand", 1), 5, 3)
    bar = doc.words.index("|")
    expected = [p for p in range(1, bar) if doc.words[p] != ";"] + [s - 2 for s, _ in doc.answer_spans]
    assert list(doc.random_positions) == expected
    doc = copy_doc(doc_rng(3, "rand", 2), 80)
    (s, e), = doc.answer_spans
    assert list(doc.random_positions) == list(range(1, 1 + e - s))
    assert text_doc(doc_rng(3, "rand", 3), 80).random_positions == ()


def test_copy_docs_repeat_their_span_at_a_random_offset():
    offsets = set()
    for i in range(30):
        doc = copy_doc(doc_rng(7, "copy-test", i), 128)
        (s, e), = doc.answer_spans
        assert doc.words[s - 1] == "|" and e == len(doc.words)
        assert doc.words[1:1 + e - s] == doc.words[s:e]
        offsets.add(s)
    assert len(offsets) > 10  # not a fixed period: a positional shortcut would not do


def test_running_text_verbs_agree_with_their_subject():
    sg = {s for s, _ in lang.NOUNS}
    pl = {p for _, p in lang.NOUNS}
    verbs_sg = {v for v, _ in lang.VERBS + lang.INTRANS}
    verbs_pl = {v for _, v in lang.VERBS + lang.INTRANS}
    checked = 0
    for i in range(30):
        words = text_doc(doc_rng(9, "agree", i), 256).words
        starts = [0] + [j for j, w in enumerate(words) if w == "."]
        for st in starts[:-1]:
            sent = words[st + 1:]
            # Subject = the first noun of the sentence; its verb = the first verb not inside 'that ...'.
            if not sent or sent[0] != "the" or sent[1] in ("capital", "language"):
                continue
            head = next(w for w in sent if w in sg or w in pl)
            j = sent.index(head) + 1
            if sent[j] in lang.PREPS or sent[j] == "that":
                continue  # nested structure: checked by the model's loss, not by this simple parse
            verb = sent[j]
            assert (verb in verbs_sg) == (head in sg) and (verb in verbs_pl) == (head in pl), sent[:j + 1]
            checked += 1
    assert checked > 50


def test_facts_recur_in_running_text():
    seen = set()
    for i in range(100):
        words = text_doc(doc_rng(11, "facts", i), 256).words
        for j in range(len(words) - 5):
            if words[j:j + 3] == ("the", "capital", "of"):
                seen.add((words[j + 3], words[j + 5]))
    truth = {(c, cap) for c, cap, _ in lang.FACTS}
    assert seen <= truth and len(seen) == len(truth)
