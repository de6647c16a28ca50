"""The command-line flags of `mechhybrid.load` (safety and dtype), shared by every command that loads a model."""

from __future__ import annotations

import argparse

from mechhybrid.errors import MechHybridError

__all__ = ["add_load_flags", "load_options", "load_from_args"]


def add_load_flags(parser: argparse.ArgumentParser) -> None:
    """--allow-pickle, --allow-missing-weights, --trust-remote-code and --dtype: the opt-ins are off by default."""
    parser.add_argument("--allow-pickle", action="store_true", help="allow pickled (.bin/.pt) weights: they can run code")
    parser.add_argument(
        "--allow-missing-weights", action="store_true",
        help="load a checkpoint with tensors missing, unexpected or of the wrong shape (left at random init)",
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true",
        help="allow a checkpoint's own code (auto_map) for a model type that transformers does not implement",
    )
    parser.add_argument("--dtype", default=None, help="torch dtype to load in, e.g. float32 or bfloat16")


def load_options(args) -> dict:
    """The keyword options of `mechhybrid.load` that the flags of `add_load_flags` ask for."""
    import torch

    dtype = None
    if args.dtype is not None:
        dtype = getattr(torch, args.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise MechHybridError(f"unknown dtype {args.dtype!r}; e.g. float32, bfloat16, float16")
    return dict(dtype=dtype, allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
                allow_missing_weights=args.allow_missing_weights)


def load_from_args(args):
    """`mechhybrid.load(args.model)` with the options of `add_load_flags`."""
    from mechhybrid.loading import load

    return load(args.model, **load_options(args))
