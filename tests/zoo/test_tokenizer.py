"""The zoo tokenizer: a real HF tokenizer on disk that round-trips the language."""

import json

import pytest

from mechhybrid.zoo import language as lang
from mechhybrid.zoo.language import doc_rng, sample_doc
from mechhybrid.zoo.tokenizer import encode_words, save_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("tok")
    save_tokenizer(directory)
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in directory.iterdir()}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    assert isinstance(tok, PreTrainedTokenizerFast)
    return tok


def test_special_tokens_and_size(tokenizer):
    assert len(tokenizer) == len(lang.VOCAB) <= 256
    assert (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2, 3)


@pytest.mark.parametrize("kind", ["text", "needle", "recall", "copy"])
def test_round_trip_and_same_ids_as_the_data_pipeline(tokenizer, kind):
    for i in range(20):
        words = sample_doc(doc_rng(0, "tok", i), kind).words
        text = " ".join(words[1:])
        ids = tokenizer(text)["input_ids"]
        assert ids == encode_words(words)  # <bos> is prepended, like a Llama-family tokenizer
        assert len(ids) == len(words)  # one word, one token
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
        assert tokenizer.convert_ids_to_tokens(ids) == list(words)


def test_unknown_word_maps_to_unk(tokenizer):
    assert tokenizer("the zebra runs")["input_ids"][2] == tokenizer.unk_token_id


def test_config_names_a_fast_tokenizer(tmp_path):
    save_tokenizer(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
