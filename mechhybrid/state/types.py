"""`State` (one layer's recurrent state at one position) and the state interventions, as data.

Position semantics: the state "at p" is the state right *after* token p was read, i.e. what token p + 1 sees.
`PatchState(position=t - 1)` therefore changes what every token from t on is computed from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, Union

import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.interventions import as_positions, check_phase


@dataclass(frozen=True)
class State:
    """One layer's recurrent state right after one token position."""

    layer: int
    """Decoder layer index."""
    position: int
    """Token position (non-negative) after which the state was taken."""
    kind: str
    """Mixer kind: `ssm`, `linear_attention`, `recurrent` or `conv`."""
    recurrent: torch.Tensor | None
    """The recurrent state (`recurrent_axes`); None for a conv-only mixer (lfm2)."""
    conv: torch.Tensor
    """The short-conv window `[batch, channel, width]` (oldest input first)."""
    recurrent_axes: tuple[str, ...] | None
    """Axis names of `recurrent`, batch first (e.g. batch, head, d_k, d_v for Gated DeltaNet)."""
    conv_axes: tuple[str, ...] = ("batch", "channel", "width")
    """Axis names of `conv`."""

    def __post_init__(self):
        if (self.recurrent is None) != (self.recurrent_axes is None):
            raise MechHybridError("State: recurrent and recurrent_axes must both be given or both be None")
        if self.recurrent is not None and self.recurrent.ndim != len(self.recurrent_axes):
            raise MechHybridError(
                f"State: recurrent has {self.recurrent.ndim} dims, axes {self.recurrent_axes} name "
                f"{len(self.recurrent_axes)}"
            )
        if self.conv.ndim != len(self.conv_axes):
            raise MechHybridError(f"State: conv has {self.conv.ndim} dims, axes {self.conv_axes}")
        if self.recurrent is not None and self.recurrent.shape[0] != self.conv.shape[0]:
            raise MechHybridError("State: recurrent and conv disagree on the batch size")

    @property
    def batch(self) -> int:
        return int(self.conv.shape[0])

    def replace(self, recurrent: torch.Tensor | None = None, conv: torch.Tensor | None = None) -> "State":
        """A copy with new tensors (same axes); omitted tensors are kept."""
        return State(
            self.layer, self.position, self.kind,
            self.recurrent if recurrent is None else recurrent,
            self.conv if conv is None else conv,
            self.recurrent_axes, self.conv_axes,
        )

    def select(self, rows) -> "State":
        """The state of some batch rows (a slice or an index tensor)."""
        recurrent = None if self.recurrent is None else self.recurrent[rows]
        return self.replace(recurrent=recurrent, conv=self.conv[rows])


StateFn = Callable[[State], State]


def _layers(value) -> tuple | None:
    if value is None:
        return None
    if isinstance(value, int) or hasattr(value, "layer"):
        return (value,)
    return tuple(value)


@dataclass(frozen=True, eq=False)
class ReadState:
    """Read the state of `layers` (ints or Components; None = every layer with state) right after each of
    `positions` (negative = from the end; None = after every token of the phase, in generation only)."""

    layers: Sequence | None = None
    positions: Sequence[int] | int | None = -1
    phase: str = "all"

    def __post_init__(self):
        object.__setattr__(self, "layers", _layers(self.layers))
        object.__setattr__(self, "positions", as_positions(self.positions))
        check_phase(self.phase)


@dataclass(frozen=True, eq=False)
class PatchState:
    """Replace the state of `layers` right after `position` by the state after `source_position` of a clean run
    on `source_ids` (or by `state`: one State, or layer -> State), so that every later token is computed from it.

    `source_position` defaults to `position`, each resolved against its own sequence: a negative position
    counts from the end of the input for `position` and from the end of the source for the source's index, so
    `position=-1` moves the source's last-token state to the input's last token whatever their lengths; a
    non-negative one is the same absolute index in both."""

    layers: Sequence | None
    position: int
    source_ids: torch.Tensor | None = None
    state: Union[State, Mapping[int, State], None] = None
    phase: str = "all"
    source_position: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "layers", _layers(self.layers))
        object.__setattr__(self, "position", int(self.position))
        if self.source_position is not None:
            if self.source_ids is None:
                raise MechHybridError("PatchState source_position needs source_ids")
            object.__setattr__(self, "source_position", int(self.source_position))
        if (self.source_ids is None) == (self.state is None):
            raise MechHybridError("PatchState needs exactly one of source_ids or state")
        if isinstance(self.state, State):
            object.__setattr__(self, "state", {self.state.layer: self.state})
        if self.source_ids is not None and (
            not isinstance(self.source_ids, torch.Tensor) or self.source_ids.ndim != 2
        ):
            raise MechHybridError("PatchState source_ids must be a 2-D LongTensor [batch, seq]")
        check_phase(self.phase)


@dataclass(frozen=True, eq=False)
class EditState:
    """Apply `fn(State) -> State` to the state of `layers` right after `position` (zero it, scale it, add or
    project out a direction, write a key -> value association): the edit carries forward through the recurrence."""

    layers: Sequence | None
    position: int
    fn: StateFn
    phase: str = "all"

    def __post_init__(self):
        object.__setattr__(self, "layers", _layers(self.layers))
        object.__setattr__(self, "position", int(self.position))
        if not callable(self.fn):
            raise MechHybridError("EditState fn must be callable: State -> State")
        check_phase(self.phase)


STATE_INTERVENTIONS = (ReadState, PatchState, EditState)


def is_state_intervention(item) -> bool:
    return isinstance(item, STATE_INTERVENTIONS)


def zero_state(state: State) -> State:
    """EditState fn: the layer forgets everything before (recurrent state and conv window to 0)."""
    recurrent = None if state.recurrent is None else torch.zeros_like(state.recurrent)
    return state.replace(recurrent=recurrent, conv=torch.zeros_like(state.conv))


def scale_state(factor: float) -> StateFn:
    """EditState fn factory: multiply the recurrent state (not the conv window) by `factor`."""

    def fn(state: State) -> State:
        if state.recurrent is None:
            raise MechHybridError(f"layer {state.layer} has no recurrent tensor to scale (conv window only)")
        return state.replace(recurrent=state.recurrent * factor)

    return fn


def add_to_state(delta: torch.Tensor, scale: float = 1.0) -> StateFn:
    """EditState fn factory: recurrent <- recurrent + scale * delta (`delta` shaped like one row of the state,
    i.e. the recurrent axes without `batch`, or broadcastable to them)."""

    def fn(state: State) -> State:
        if state.recurrent is None:
            raise MechHybridError(f"layer {state.layer} has no recurrent tensor to add to (conv window only)")
        return state.replace(recurrent=state.recurrent + scale * delta.to(state.recurrent))

    return fn


def project_out(direction: torch.Tensor, axis: str) -> StateFn:
    """EditState fn factory: remove the component along `direction` from the named axis of the recurrent state
    (e.g. `d_v` of a Gated DeltaNet memory: whatever any key reads back loses that value direction)."""

    def fn(state: State) -> State:
        axes = state.recurrent_axes or ()
        if axis not in axes:
            raise MechHybridError(f"state of layer {state.layer} has axes {axes}; no axis {axis!r}")
        dim = axes.index(axis)
        moved = state.recurrent.movedim(dim, -1)
        if direction.shape != (moved.shape[-1],):
            raise MechHybridError(f"direction must have shape ({moved.shape[-1]},) for axis {axis!r}")
        unit = torch.nn.functional.normalize(direction.to(moved), dim=0)
        projected = moved - (moved @ unit)[..., None] * unit
        return state.replace(recurrent=projected.movedim(-1, dim))

    return fn


def write_association(key: torch.Tensor, value: torch.Tensor, beta: float = 1.0, head: int | None = None) -> StateFn:
    """EditState fn factory for a Gated DeltaNet memory `S [batch, head, d_k, d_v]`: the delta-rule write
    S <- S + beta * k (v - S^T k)^T (Yang et al. 2024, eq. 3), so that reading with key k returns ~v."""

    def fn(state: State) -> State:
        if state.recurrent_axes != ("batch", "head", "d_k", "d_v"):
            raise MechHybridError("write_association needs a Gated DeltaNet state [batch, head, d_k, d_v]")
        memory = state.recurrent.clone()
        heads = range(memory.shape[1]) if head is None else [head]
        for h in heads:
            k = key.to(memory.dtype)
            old = torch.einsum("bkv,k->bv", memory[:, h], k)
            memory[:, h] += beta * torch.einsum("k,bv->bkv", k, value.to(memory.dtype) - old)
        return state.replace(recurrent=memory)

    return fn
