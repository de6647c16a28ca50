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
    with pytest.raises(MechHybridError, match=r"test.jsonl record 0: field 'choices' is missing"):
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


# Variants that real copies of the data sets use: each must give the very task the public schema gives.

def _task_of(name, tmp_path, records, file="test.jsonl", **kw):
    path = fx.write(tmp_path / name / file, records) if not file.endswith("array.json") else _array(
        tmp_path / name / file, records)
    task, _ = read_benchmark(name, path, Recorder(), limit=100, seed=0, **kw)
    return task


def _array(path, records):
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1))  # a JSON array, pretty-printed over many lines
    return path


def _same_items(a, b):
    return [(it.context, it.choices, it.answer) for it in a.items] == [(it.context, it.choices, it.answer)
                                                                        for it in b.items]


def test_mmlu_answer_as_index_letter_or_digit_string_and_json_array_or_lines(tmp_path):
    records = fx.mmlu(4)
    as_index = _task_of("mmlu", tmp_path / "i", records)
    assert [it.answer for it in as_index.items] == [0, 1, 2, 3]
    letters = [dict(r, answer="ABCD"[r["answer"]]) for r in records]
    assert _same_items(_task_of("mmlu", tmp_path / "l", letters), as_index)
    digits = [dict(r, answer=str(r["answer"])) for r in records]
    assert _same_items(_task_of("mmlu", tmp_path / "d", digits), as_index)
    # A JSON array, with either suffix, and JSON Lines under a .json suffix: the same records.
    for file, recs in (("test-array.json", letters), ("test.json", records)):
        assert _same_items(_task_of("mmlu", tmp_path / file, recs, file=file), as_index), file
    arr = _array(tmp_path / "arr" / "test.jsonl", records)
    assert _same_items(read_benchmark("mmlu", arr, Recorder(), 100, 0)[0], as_index)


def test_arc_choices_as_table_list_of_labelled_or_plain_list(tmp_path):
    texts = ["water", "moon", "dog", "sun", "cat"]
    table = [{"question": "why ?", "choices": {"text": texts, "label": list("ABCDE")}, "answerKey": "D"},
             {"question": "how ?", "choices": {"text": texts[:4], "label": list("1234")}, "answerKey": "2"}]
    reference = _task_of("arc", tmp_path / "t", table)
    assert [it.answer for it in reference.items] == [3, 1]
    assert [len(it.choices) for it in reference.items] == [5, 4]
    allenai = [{"id": "a", "question": {"stem": r["question"], "choices": [
        {"text": t, "label": lab} for t, lab in zip(r["choices"]["text"], r["choices"]["label"])]},
        "answerKey": r["answerKey"]} for r in table]
    assert _same_items(_task_of("arc", tmp_path / "a", allenai), reference)
    plain = [{"question": "why ?", "choices": texts, "answerKey": "D"},
             {"question": "how ?", "choices": texts[:4], "answerKey": "2"}]  # a 1-based number: the second
    tok = Recorder()
    task, _ = read_benchmark("arc", fx.write(tmp_path / "p/test.jsonl", plain), tok, 100, 0)
    assert [it.answer for it in task.items] == [3, 1]
    assert "Question: how ?\nA. water\nB. moon\nC. dog\nD. sun\nAnswer:" in tok.texts  # lettered here


def test_hellaswag_label_as_int_or_digit_string(tmp_path):
    as_text = fx.hellaswag(4)
    as_int = [dict(r, label=int(r["label"])) for r in as_text]
    a, b = _task_of("hellaswag", tmp_path / "s", as_text, "validation.jsonl"), \
        _task_of("hellaswag", tmp_path / "i", as_int, "validation.jsonl")
    assert [it.answer for it in a.items] == [0, 1, 2, 3] and _same_items(a, b)


def _spoil(records, index, **changes):
    records = [dict(r) for r in records]
    for key, value in changes.items():
        if value is None:
            records[index].pop(key)
        else:
            records[index][key] = value
    return records


BAD_RECORDS = [
    ("mmlu", "test", _spoil(fx.mmlu(3), 1, answer="E"),
     "record 1: field 'answer' must be an index 0-3 or a letter A-D"),
    ("mmlu", "test", _spoil(fx.mmlu(3), 1, answer=4), "record 1: field 'answer' must be an index 0-3"),
    ("mmlu", "test", _spoil(fx.mmlu(3), 1, answer=True), "record 1: field 'answer' must be"),
    ("mmlu", "test", _spoil(fx.mmlu(3), 1, choices="red blue"), "record 1: field 'choices' must be a list"),
    ("mmlu", "test", _spoil(fx.mmlu(3), 1, question=None), "record 1: field 'question' is missing"),
    ("arc", "test", _spoil(fx.arc(3), 1, answerKey="F"), "record 1: field 'answerKey' 'F' is not among the labels"),
    ("arc", "test", _spoil(fx.arc(3), 1, choices={"text": ["a", "b", "c"], "label": ["A", "B"]}),
     "record 1: field 'choices' has 3 texts but 2 labels"),
    ("arc", "test", _spoil(fx.arc(3), 1, choices=7), "record 1: field 'choices' must be"),
    ("hellaswag", "validation", _spoil(fx.hellaswag(3), 1, label="x"), "record 1: field 'label' must be an index 0-3"),
    ("hellaswag", "validation", _spoil(fx.hellaswag(3), 1, label=7), "record 1: field 'label' must be an index"),
    ("hellaswag", "validation", _spoil(fx.hellaswag(3), 1, label=""), "record 1: field 'label' must be"),
    ("hellaswag", "validation", _spoil(fx.hellaswag(3), 1, endings=None), "record 1: field 'endings' is missing"),
    ("truthfulqa", "validation", _spoil(fx.truthfulqa(3), 1, mc1_targets={"choices": ["a", "b"], "labels": [1, 1]}),
     "record 1: field 'mc1_targets.labels' must be one 0/1 per choice with exactly one 1"),
    ("gsm8k", "test", _spoil(fx.gsm8k(3), 1, answer="it is 4"), "record 1: field 'answer' lacks its '#### N' line"),
    ("wikitext", "validation", _spoil(fx.wikitext(3), 1, text=["a"]), "record 1: field 'text' must be text"),
]


@pytest.mark.parametrize("name, split, records, message", BAD_RECORDS,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD_RECORDS)])
def test_a_bad_record_is_one_line_naming_file_record_and_field(tmp_path, name, split, records, message):
    path = fx.write(tmp_path / name / f"{split}.jsonl", records)
    with pytest.raises(MechHybridError) as err:
        read_benchmark(name, path, Recorder(), limit=100, seed=0, **({"max_len": 4} if name == "wikitext" else {}))
    text = str(err.value)
    assert text.startswith(f"{name}: {path} ") and message in text and "\n" not in text, text


def test_unreadable_lines_and_records_that_are_not_objects(tmp_path):
    lines = tmp_path / "mmlu" / "test.jsonl"
    lines.parent.mkdir()
    lines.write_text('{"question": "a"}\n{"question": \n')
    with pytest.raises(MechHybridError, match=r"cannot read data file .*test.jsonl: line 2 is not JSON"):
        read_benchmark("mmlu", lines, Recorder(), 3, 0)
    lines.write_text('[{"question": "a"}, 3]')
    with pytest.raises(MechHybridError, match=r"test.jsonl record 1 is not an object"):
        read_benchmark("mmlu", lines, Recorder(), 3, 0)
