"""Interventions are data: small frozen dataclasses that one engine (`mechhybrid.engine`) applies in one trace.

Axis names used in shape comments throughout mechhybrid: `batch`, `seq`, `layer`, `head`, `head_dim`,
`d_model`, `d_state`, `vocab`, `set` (one alternative intervention set in `logits_many`).

Positions are token indices into the sequence (None = every position); negative ones count from its end. In a
padded batch they index the batch as given (with left padding, -1 is every row's last token). Every
intervention takes a `phase`: `all`, `prefill` (while the prompt is read) or `decode` (while tokens are
generated). A plain forward (`logits`, `run`, `logits_many`) is a prefill: interventions with `phase="decode"` do
not apply there.

Sources and padding: a source of the input's shape (`Patch.source_ids`, `Ablate(method="resample")`) runs with
its own `source_mask`, or, when that is None, with the input's `attention_mask`; its value at position p is
patched into position p. A mean's reference batch runs with its own `reference_mask` (None: unpadded), and the
mean is over its real tokens only.

Order: at one component, writes apply in the order given and a `Capture` always records the value that flows on
(after every write at that point), wherever it is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch

from mechhybrid.components import Component
from mechhybrid.errors import MechHybridError
from mechhybrid.results.vocabulary import ABLATION_METHODS as METHODS
PHASES = ("all", "prefill", "decode")
UNITS = ("module", "residual")
"""`module`: a component's output as its module returns it; `residual`: as the residual stream receives it, after
the family's multiplier (`Component.residual_scale`: Falcon-H1's `attention_out_multiplier`, Granite's
`residual_multiplier`, ...). Direct attribution built from captures needs `residual`."""


def check_units(units: str) -> None:
    if units not in UNITS:
        raise MechHybridError(f"unknown units {units!r}; choose one of {', '.join(UNITS)}")

Positions = Union[Sequence[int], None]

RESIDUAL_WHERE = ("pre", "post")
"""`pre`: the residual stream as decoder layer `layer` receives it; `post`: as the layer returns it (the next
layer's `pre`, or the final norm's input after the last layer)."""


@dataclass(frozen=True)
class Residual:
    """The residual stream before (`where="pre"`) or after (`"post"`) decoder layer `layer`, `[batch, seq,
    d_model]`: a target that `Patch`, `Steer` and `Capture` accept wherever they accept a component.

    `Residual(0, "pre")` is what the first layer receives (the embedding, after any multiplier the family applies
    to it). It is the residual stream only: zamba2's shared blocks also read a copy of the token embeddings, which
    a residual target does not reach."""

    layer: int
    where: str = "pre"

    def __post_init__(self):
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 0:
            raise MechHybridError(f"Residual layer must be a non-negative int, got {self.layer!r}")
        if self.where not in RESIDUAL_WHERE:
            raise MechHybridError(f"Residual where={self.where!r}; choose one of {', '.join(RESIDUAL_WHERE)}")

    @property
    def name(self) -> str:
        """E.g. `L3.resid_pre`."""
        return f"L{self.layer}.resid_{self.where}"

    def __str__(self) -> str:
        return self.name


def _as_components(value, name: str, residual: bool = False) -> tuple:
    """Components (and, where `residual`, Residual targets) as a tuple; one line for anything else."""
    allowed = (Component, Residual) if residual else (Component,)
    items = (value,) if isinstance(value, allowed) else tuple(value)
    if not all(isinstance(c, allowed) for c in items):
        what = "Component objects from hm.components or Residual(layer, where)" if residual else (
            "Component objects from hm.components")
        raise MechHybridError(f"{name}: components must be {what}")
    return items


def as_positions(value) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value,)
    if isinstance(value, torch.Tensor):
        value = value.flatten().tolist()
    return tuple(int(p) for p in value)


def check_phase(phase: str) -> None:
    if phase not in PHASES:
        raise MechHybridError(f"unknown phase {phase!r}; choose one of {', '.join(PHASES)}")


class _Base:
    """Shared normalisation: components to a tuple, positions to a tuple of ints, phase checked."""

    targets_residual = False
    """Whether `Residual` targets are accepted besides components (Patch, Capture, Steer)."""

    def _normalise(self, components_field: str | None = "components", allow_empty: bool = True) -> None:
        if components_field is not None:
            items = _as_components(getattr(self, components_field), type(self).__name__, self.targets_residual)
            if not items and not allow_empty:
                raise MechHybridError(f"{type(self).__name__}: empty component selection")
            object.__setattr__(self, components_field, items)
        if hasattr(self, "positions"):
            object.__setattr__(self, "positions", as_positions(self.positions))
        check_phase(self.phase)


@dataclass(frozen=True, eq=False)
class Ablate(_Base):
    """Remove components, with named semantics.

    - `zero`: the component's output becomes 0.
    - `mean`: its mean output over `reference_ids` (over batch and positions, or per position with
      `per_position=True`).
    - `resample`: its output on `source_ids` (same shape as the input), position by position.
    - `skip`: the whole decoder layer that holds the component becomes the identity (output hidden state = input
      hidden state). In a parallel block (falcon_h1) that removes both mixers *and* the MLP; in a sequential
      block, the mixer and its MLP. Study A used `skip` for Qwen3.5 and `zero` for Falcon-H1: mechhybrid offers
      both for every family and every result names the one it used.
    An empty selection is allowed and changes nothing.
    """

    components: Sequence[Component]
    method: str = "zero"
    positions: Positions = None
    reference_ids: torch.Tensor | None = None
    per_position: bool = False
    source_ids: torch.Tensor | None = None
    phase: str = "all"
    source_mask: torch.Tensor | None = None
    """`resample`: the source's padding (1 = real token); None = the input's attention_mask."""
    reference_mask: torch.Tensor | None = None
    """`mean`: the reference batch's padding (1 = real token); None = unpadded."""

    def __post_init__(self):
        self._normalise()
        if self.method not in METHODS:
            raise MechHybridError(f"unknown ablation method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method == "mean" and self.reference_ids is None:
            raise MechHybridError("Ablate(method='mean') needs reference_ids (the batch to average over)")
        if self.method == "resample" and self.source_ids is None:
            raise MechHybridError("Ablate(method='resample') needs source_ids (the input to take outputs from)")
        if self.per_position and self.method != "mean":
            raise MechHybridError("per_position=True only applies to method='mean'")
        if self.source_mask is not None and self.method != "resample":
            raise MechHybridError("source_mask only applies to method='resample'")
        if self.reference_mask is not None and self.method != "mean":
            raise MechHybridError("reference_mask only applies to method='mean'")


@dataclass(frozen=True, eq=False)
class _HeadChoice(_Base):
    """A choice of heads of one component, at the input of its output projection (AblateHeads, KeepHeads)."""

    component: Component
    heads: Sequence[int] | torch.Tensor
    positions: Positions = None
    phase: str = "all"

    def __post_init__(self):
        _as_components(self.component, type(self).__name__)
        self._normalise(components_field=None)


@dataclass(frozen=True, eq=False)
class AblateHeads(_HeadChoice):
    """Zero chosen heads at the input of the component's output projection.

    `heads` is a list of head indices, or a boolean mask `[batch, seq, head]` (True = ablate) so that the choice
    can differ per query token (Study B keeps the k lowest-entropy heads per token).
    """


@dataclass(frozen=True, eq=False)
class KeepHeads(_HeadChoice):
    """Zero every head except the chosen ones (a list, or a boolean mask `[batch, seq, head]`, True = keep)."""


@dataclass(frozen=True, eq=False)
class Patch(_Base):
    """Activation patching: the components' outputs at `positions` taken from a run on `source_ids`.

    With `heads`, only those heads' contributions are patched (at the input of the output projection).
    `source_mask` is the source's padding (1 = real token); None = the input's attention_mask. `components` may
    include `Residual` targets (not with `heads`).
    """

    targets_residual = True

    components: Sequence[Component]
    source_ids: torch.Tensor
    positions: Positions = None
    heads: Sequence[int] | None = None
    phase: str = "all"
    source_mask: torch.Tensor | None = None

    def __post_init__(self):
        self._normalise()
        if self.heads is not None:
            object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))
            _refuse_residual(self.components, "Patch heads")


@dataclass(frozen=True, eq=False)
class Capture(_Base):
    """Record the components' outputs (or, with `per_head=True`, each head's contribution `[batch, seq, head,
    d_model]`, which sums, plus the projection's bias, to the output) in the same pass that intervenes.

    The value recorded is the one that flows on from the component, after every other intervention on it in the
    same set (a Capture listed before an Ablate of the same component records the ablated output). `components`
    may include `Residual` targets (not with `per_head`; their units are already the residual stream's)."""

    targets_residual = True

    components: Sequence[Component]
    positions: Positions = None
    per_head: bool = False
    phase: str = "all"
    units: str = "module"
    """`module` (the module's own output) or `residual` (times the family's multiplier; see UNITS)."""

    def __post_init__(self):
        self._normalise()
        check_units(self.units)
        if self.per_head:
            _refuse_residual(self.components, "Capture per_head")


def _refuse_residual(items, what: str) -> None:
    residual = [c for c in items if isinstance(c, Residual)]
    if residual:
        raise MechHybridError(f"{what} applies to components with heads, not to {residual[0].name}")


@dataclass(frozen=True, eq=False)
class Steer(_Base):
    """Add `scale * vector` to a component's output (or to a `Residual` target) at `positions`; with
    `units="residual"` the vector is what the residual stream receives (divided by the family's multiplier before
    it is added). `vector` is `[d_model]`, or `[batch, d_model]` for one vector per row of the input."""

    component: Component
    vector: torch.Tensor
    positions: Positions = None
    scale: float = 1.0
    phase: str = "all"
    units: str = "module"

    def __post_init__(self):
        _as_components(self.component, "Steer", residual=True)
        self._normalise(components_field=None)
        check_units(self.units)
        if self.vector.ndim not in (1, 2):
            raise MechHybridError(
                f"Steer vector must be [d_model] or [batch, d_model], got shape {tuple(self.vector.shape)}"
            )


Intervention = Union[Ablate, AblateHeads, KeepHeads, Patch, Capture, Steer]
StateFn = Callable[[torch.Tensor], torch.Tensor]
