"""Shared fixtures: tiny random-weight models of every family, built from explicit configs."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from tests.tiny_configs import TINY_CONFIGS, TINY_CONFIGS_ALT

warnings.filterwarnings("ignore", message=".*fast path.*")
logging.getLogger("transformers").setLevel(logging.ERROR)
logging.getLogger("mechhybrid").setLevel(logging.ERROR)
# Tiny models run fastest on one thread: two threads on two shared cores made a 40k-parameter forward 30x
# slower (1.9 s vs 0.05 s) while other processes were busy.
torch.set_num_threads(1)

ALL_MODEL_TYPES = tuple(TINY_CONFIGS)

SHAPES = {"base": TINY_CONFIGS, "alt": TINY_CONFIGS_ALT}
"""Shape name -> its tiny configs (tests/tiny_configs.py): every family in two differently shaped models."""


def both_shapes(cases, known_bugs=None, shapes=tuple(SHAPES)) -> list:
    """pytest parameters `(model_type, shape, *rest)` for every case in each shape, with ids `type-shape-rest`.

    cases: model types, or tuples `(model_type, *rest)` for tests parametrized on more than the model.
    known_bugs: {(model_type, shape, *rest): reason} for cases that fail because of a library bug; each becomes a
    strict xfail, so that the fix turns it into a failure that asks for the mark to go.
    """
    known_bugs = dict(known_bugs or {})
    params = []
    for case in cases:
        model_type, *rest = (case,) if isinstance(case, str) else case
        for shape in shapes:
            values = (model_type, shape, *rest)
            reason = known_bugs.pop(values, None)
            marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)] if reason else []
            params.append(pytest.param(*values, marks=marks, id="-".join(map(str, values))))
    if known_bugs:
        raise ValueError(f"known bugs for cases that are not parametrized: {sorted(known_bugs)}")
    return params


def build_tiny(model_type: str, seed: int = 0, shape: str = "base"):
    """A tiny random-weight transformers model of one family (float32, eval mode) in one of the two shapes."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, **SHAPES[shape][model_type])
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="session")
def tiny_models():
    """(model_type, shape) -> (transformers model, HybridModel), built once per test session."""
    import mechhybrid

    cache = {}

    def get(model_type: str, shape: str = "base"):
        if (model_type, shape) not in cache:
            model = build_tiny(model_type, shape=shape)
            cache[model_type, shape] = (model, mechhybrid.load(model))
        return cache[model_type, shape]

    return get


def random_ids(batch: int, seq: int, seed: int, vocab: int = 97) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=generator)


def save_pickled(model, directory) -> None:
    """A checkpoint with only pickled weights (transformers 5 always writes safetensors, so swap them)."""
    from pathlib import Path

    directory = Path(directory)
    model.save_pretrained(directory)
    (directory / "model.safetensors").unlink()
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
