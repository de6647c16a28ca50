"""Readers of Study A's benchmarks from local files in their public schemas, formatted as Study A did."""

from __future__ import annotations

import pytest

from analyses.datasets import READERS, extract_answer, read_benchmark
from analyses.datasets.files import find_split
from mechhybrid.errors import MechHybridError
from tests.analyses import datasets_fixtures as fx


class Recorder:
    """A stand-in tokenizer that keeps every text it encodes (so prompts can be read back exactly)."""

    def __init__(self):
        self.texts = []

    def __call__(self, text, add_special_tokens=True):
        self.texts.append(text)
        ids = [1] if add_special_tokens else []
        return {"input_ids": ids + [3 + (ord(ch) % 90) for ch in text]}

    def decode(self, ids, skip_special_tokens=True):
        return ""


@pytest.fixture
def data(tmp_path):
    return fx.write_all(tmp_path)


def test_mmlu_five_shot_letters_from_dev_same_subject(data):
    tok = Recorder()
    task, refs = read_benchmark("mmlu", data["mmlu"], tok, limit=3, seed=0)
    assert refs is None and task.n == 3 and not task.length_norm
    prompt = tok.texts[0]
    subject = "science" if "what is 1 ?" in prompt.split("\n\n")[-1] or "what is 3 ?" in prompt.split("\n\n")[-1] \
        or "what is 5 ?" in prompt.split("\n\n")[-1] else "astronomy"
    assert prompt.startswith(f"The following are multiple choice questions (with answers) about {subject}.\n\n")
    assert prompt.count("Answer:") == 3  # the 2 dev shots of this subject (fewer than 5 exist) + the question
    assert prompt.endswith("A. red\nB. blue\nC. green\nD. cat\nAnswer:")
    assert tok.texts[1:5] == [" A", " B", " C", " D"]
    assert task.version.startswith("mmlu:test:sha256-")


def test_limit_is_a_seeded_sample(data):
    a, _ = read_benchmark("mmlu", data["mmlu"], Recorder(), limit=3, seed=0)
    b, _ = read_benchmark("mmlu", data["mmlu"], Recorder(), limit=3, seed=0)
    c, _ = read_benchmark("mmlu", data["mmlu"], Recorder(), limit=3, seed=5)
    assert a == b and [i.answer for i in a.items] != [i.answer for i in c.items]


def test_arc_challenge_25_shot_with_numeric_labels(data):
    tok = Recorder()
    task, _ = read_benchmark("arc", data["arc"], tok, limit=10, seed=0)
    assert task.n == 5  # ARC-Challenge, not the 9-item ARC-Easy decoy
    assert tok.texts[0].count("Answer:") == 4  # 3 train shots + the question
    assert [it.answer for it in task.items] == [2, 1, 2, 1, 2]


def test_hellaswag_from_datasets_arrow_cache_length_normalised(data):
    tok = Recorder()
    task, _ = read_benchmark("hellaswag", data["hellaswag"], tok, limit=10, seed=0)
    assert task.length_norm and task.n == 4 and [it.answer for it in task.items] == [0, 1, 2, 3]
    assert tok.texts[0].endswith("Cat: a cat is in the water It")
    assert " was red. a" in tok.texts  # lm-eval's [title] clean-up


def test_truthfulqa_mc1_zero_shot(data):
    tok = Recorder()
    task, _ = read_benchmark("truthfulqa", data["truthfulqa"], tok, limit=10, seed=0)
    assert task.length_norm and tok.texts[0] == "Q: what is the moon 0 ?\nA:"
    assert all(it.answer == 0 for it in task.items)


def test_gsm8k_eight_shot_and_answer_extraction(data):
    tok = Recorder()
    task = read_benchmark("gsm8k", data["gsm8k"], tok, limit=10, seed=0)[0]
    assert [it.answer for it in task.items] == ["0", "2", "4", "6"] and task.max_new_tokens == 128
    assert tok.texts[0].count("Question:") == 5  # 4 train shots + the question
    assert extract_answer(" 3 + 4 = 7\n#### 1,007\n\nQuestion: 9 #### 3") == "1007"
    assert extract_answer("no marker 42") is None
    assert extract_answer("#### 2.50") == "2.5"


def test_wikitext_windows_and_held_out_reference(data):
    from tests.analyses.conftest import word_tokenizer

    task, refs = read_benchmark("wikitext", data["wikitext"], word_tokenizer(), limit=2, seed=0, max_len=32)
    assert task.n == 2 and all(len(d) == 32 for d in task.docs)
    assert refs and all(len(r) == 32 for r in refs) and refs[0] != task.docs[0]


def test_errors_are_clear(tmp_path, data):
    with pytest.raises(MechHybridError, match="not found"):
        read_benchmark("mmlu", tmp_path / "nope", Recorder(), 3, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MechHybridError, match="no test split"):
        read_benchmark("mmlu", tmp_path / "empty", Recorder(), 3, 0)
    bad = fx.write(tmp_path / "bad/test.jsonl", [{"query": "x"}])
    with pytest.raises(MechHybridError, match="lacks field 'question'"):
        read_benchmark("mmlu", bad, Recorder(), 3, 0)
    broken = tmp_path / "broken/test.parquet"
    broken.parent.mkdir()
    broken.write_bytes(b"not parquet")
    with pytest.raises(MechHybridError, match="cannot read data file"):
        read_benchmark("mmlu", broken, Recorder(), 3, 0)
    assert set(READERS) == {"mmlu", "arc", "hellaswag", "truthfulqa", "gsm8k", "wikitext"}
    assert find_split(data["gsm8k"], ("train",), ("main",))[0].name.startswith("train")


def test_long_prompts_lose_their_earliest_tokens():
    from analyses.tasks import ChoiceItem, ChoiceTask, GenItem, GenTask, fit_to

    task = ChoiceTask("mmlu", "v", (ChoiceItem(tuple(range(10)), ((50,), (51, 52)), 1),
                                    ChoiceItem((1, 2), ((3,),), 0)))
    fitted, cut = fit_to(task, 6)
    assert cut == 1 and fitted.items[0].context == (6, 7, 8, 9) and fitted.items[1] == task.items[1]
    gen, cut = fit_to(GenTask("gsm8k", "v", (GenItem(tuple(range(10)), "1"),), max_new_tokens=4), 8)
    assert cut == 1 and gen.items[0].prompt == (6, 7, 8, 9)


def test_a_whole_cache_directory_finds_each_data_set(tmp_path):
    fx.write_all(tmp_path / "hub")
    cache = str(tmp_path / "hub")
    assert read_benchmark("mmlu", cache, Recorder(), 100, 0)[0].n == 6
    assert read_benchmark("arc", cache, Recorder(), 100, 0)[0].n == 5
    assert read_benchmark("truthfulqa", cache, Recorder(), 100, 0)[0].n == 3
    assert read_benchmark("gsm8k", cache, Recorder(), 100, 0)[0].n == 4
