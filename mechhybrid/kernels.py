"""One notice, once per process, when a recurrent family runs on transformers' reference torch path."""

from __future__ import annotations

import importlib.util
import logging

logger = logging.getLogger("mechhybrid")

# Which optional kernel packages speed up which mixer kinds (transformers picks them up when importable).
_KERNELS = {"linear_attention": ("fla",), "ssm": ("mamba_ssm", "causal_conv1d"), "conv": ("causal_conv1d",)}
_noticed = False


def missing_kernels(kinds) -> list[str]:
    """The kernel packages that would accelerate these component kinds and are not installed."""
    wanted = dict.fromkeys(pkg for kind in kinds for pkg in _KERNELS.get(kind, ()))
    return [pkg for pkg in wanted if importlib.util.find_spec(pkg) is None]


def notice_reference_path(kinds) -> None:
    """Say once that the reference path is correct but slower, and how to get the kernels."""
    global _noticed
    missing = missing_kernels(kinds)
    if _noticed or not missing:
        return
    _noticed = True
    logger.warning(
        "mechhybrid: %s not installed; recurrent mixers run on transformers' reference PyTorch path "
        "(exact, slower). On a CUDA machine: pip install flash-linear-attention mamba-ssm causal-conv1d",
        ", ".join(missing),
    )


def silence_notice() -> None:
    """This process says nothing (another process of the same job has said it)."""
    global _noticed
    _noticed = True


class _DropKernelFallbackNotes(logging.Filter):
    """transformers says "falling back to its reference PyTorch implementation" once per kernel function (up to
    four lines per model); mechhybrid's single notice above replaces that wall."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "falling back to its reference PyTorch implementation" not in record.getMessage()


logging.getLogger("transformers.integrations.hub_kernels").addFilter(_DropKernelFallbackNotes())
