"""Shared fixtures: tiny random-weight models of every family, built from explicit configs."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from tests.tiny_configs import TINY_CONFIGS

warnings.filterwarnings("ignore", message=".*fast path.*")
logging.getLogger("transformers").setLevel(logging.ERROR)
logging.getLogger("mechhybrid").setLevel(logging.ERROR)
# Tiny models run fastest on one thread: two threads on two shared cores made a 40k-parameter forward 30x
# slower (1.9 s vs 0.05 s) while other processes were busy.
torch.set_num_threads(1)

ALL_MODEL_TYPES = tuple(TINY_CONFIGS)


def build_tiny(model_type: str, seed: int = 0):
    """A tiny random-weight transformers model of one family (float32, eval mode)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, **TINY_CONFIGS[model_type])
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="session")
def tiny_models():
    """model_type -> (transformers model, HybridModel), built once per test session."""
    import mechhybrid

    cache = {}

    def get(model_type: str):
        if model_type not in cache:
            model = build_tiny(model_type)
            cache[model_type] = (model, mechhybrid.load(model))
        return cache[model_type]

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
