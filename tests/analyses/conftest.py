"""Fixtures for the analyses tests: tiny models, small hand-made benchmarks, a tiny word-level tokenizer.

Sizes are explicit and small (tests/tiny_configs.py: hidden 32, 4 layers, vocab 97) so that every test runs
in seconds on two shared CPU cores.
"""

from __future__ import annotations

import random

import pytest
import torch

from analyses.data import task_set
from analyses.tasks import ChoiceItem, ChoiceTask, LMTask, SpanItem, SpanTask
from tests.analyses import datasets_fixtures as fx
from tests.conftest import build_tiny

VOCAB = 97
WORDS = ("the a of and to in is was for on that with as by it at from his her they be this are were an which "
         "or has had not but one all their who two when there she will would if "
         "only other new some time these may up out first also after question answer following "
         "multiple choice questions answers science astronomy cat dog sun moon water red blue green three what "
         "why how").split()


@pytest.fixture(scope="session")
def hm_qwen2():
    """A tiny qwen2 Transformer (the fastest family on CPU), wrapped once per session."""
    import mechhybrid

    model = build_tiny("qwen2")
    assert sum(p.numel() for p in model.parameters()) < 60_000
    return mechhybrid.load(model)


@pytest.fixture(scope="session")
def hm_hybrid():
    """A tiny qwen3_5 hybrid: three Gated DeltaNet layers, then one attention layer."""
    import mechhybrid

    return mechhybrid.load(build_tiny("qwen3_5_text"))


@pytest.fixture(scope="session")
def hm_nan():
    """A tiny qwen2 whose layer-1 attention output projection holds one NaN (a damaged checkpoint)."""
    import mechhybrid

    model = build_tiny("qwen2", seed=2)
    with torch.no_grad():
        model.model.layers[1].self_attn.o_proj.weight[0, 0] = float("nan")
    return mechhybrid.load(model)


NAN_WHERE = "first non-finite value in L1.attention (model.layers.1.self_attn)"


def make_tasks(seed: int = 0, n: int = 6, doc_len: int = 24):
    """A TaskSet with an lm, a multiple-choice and a span benchmark of random tokens, and reference docs."""
    rng = random.Random(seed)
    tok = lambda: rng.randrange(3, VOCAB)  # noqa: E731
    docs = [tuple(tok() for _ in range(doc_len)) for _ in range(n + 4)]
    lm = LMTask("lm", "fixture-1", tuple(docs[:n]))
    facts = ChoiceTask("facts", "fixture-1", tuple(
        ChoiceItem(tuple(tok() for _ in range(5)), tuple((tok(),) for _ in range(4)), rng.randrange(4))
        for _ in range(n)))
    needle = SpanTask("needle", "fixture-1", tuple(
        SpanItem(tuple(tok() for _ in range(10)), ((6, 8),)) for _ in range(n)))
    return task_set([lm, facts, needle], reference_docs=docs[n:])


@pytest.fixture
def tasks():
    return make_tasks()


def word_tokenizer():
    """A word-level HF tokenizer over WORDS (ids below the tiny models' vocab of 97), <s> prepended."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "<unk>"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(WORDS)) + list("ABCD0123456789.?:#"))}
    assert len(vocab) <= VOCAB, len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", unk_token="<unk>")


def zero_out_proj(hm, component) -> None:
    """Make `component` contribute nothing: zero its output projection (the known-answer fixture)."""
    module = hm.module(component.out_proj) if component.out_proj else None
    if module is None:
        raise ValueError(f"{component} has no output projection")
    with torch.no_grad():
        module.weight.zero_()
        if getattr(module, "bias", None) is not None:
            module.bias.zero_()


CONFIG = """
kinds = ["attention"]
limit = 3
lm_tokens = 24
thirds = false
context_lengths = [12]
resilience_removed = [1]
batch_size = 4

[data]
wikitext = "{data}/wikitext"
mmlu = "{data}/mmlu"
"""


@pytest.fixture(scope="session")
def setup(tmp_path_factory):
    """A tiny qwen2 checkpoint with a word-level tokenizer, fixture data, and a TOML config."""
    root = tmp_path_factory.mktemp("cli")
    model_dir = root / "tiny-qwen2"
    build_tiny("qwen2").save_pretrained(model_dir)
    word_tokenizer().save_pretrained(model_dir)
    data = fx.write_all(root / "data")
    config = root / "ablation.toml"
    config.write_text(CONFIG.format(data=root / "data"))
    assert data["wikitext"].endswith("wikitext")
    return {"root": root, "model": str(model_dir), "config": str(config)}
