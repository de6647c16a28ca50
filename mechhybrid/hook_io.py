"""What a torch hook sees and hands back: the tensor among a module's inputs or in its output, and those inputs
or that output with the tensor replaced. Decoder blocks and mixers return a tensor, a tuple or a list depending
on the family (transformers 5), and take their hidden states positionally or by keyword."""

from __future__ import annotations

__all__ = ["first", "input_of", "replace_input", "replace_output"]


def first(value):
    """The tensor of an output (or of positional inputs): the first item of a tuple or list, else the value."""
    return value[0] if isinstance(value, (tuple, list)) else value


def input_of(args, kwargs):
    """The hidden-states input of a forward pre-hook's (args, kwargs): the first positional one, else the first
    keyword one."""
    return args[0] if args else next(iter(kwargs.values()))


def replace_input(args, kwargs, new):
    """(args, kwargs) with the hidden-states input (as `input_of` finds it) replaced by `new`."""
    if args:
        return (new, *args[1:]), kwargs
    key = next(iter(kwargs))
    return args, {**kwargs, key: new}


def replace_output(output, new):
    """A module's output with its tensor (as `first` finds it) replaced by `new`, in the same container."""
    if isinstance(output, tuple):
        return (new, *output[1:])
    if isinstance(output, list):
        return [new, *output[1:]]
    return new
