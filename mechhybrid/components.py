"""The component map: every mixer and MLP of a model as a `Component`, in forward order, with selection helpers.

What a component's output means. Every API that reads or writes a component (`Capture`, per-head contributions,
`Steer`, `Patch`, `Ablate`) works on the output of the module at `Component.path`, in that module's own units: the
value before any factor the decoder layer applies afterwards. Where the layer scales it before the residual add
(falcon_h1's `attention_out_multiplier` / `ssm_out_multiplier`, granitemoehybrid's `residual_multiplier`), the
residual stream receives `residual_scale * output`: `to_residual_units` converts a captured output (or per-head
contribution) into what the residual stream receives, `from_residual_units` converts a residual-stream direction
into the output change that adds it (a steering vector). Not every component writes to the residual stream
(`writes_to`): zamba2's shared attention and MLP feed the Mamba block of their layer instead, so direct logit
attribution must use `ComponentMap.residual_writers()`.

The identity this gives, checked against transformers' own forward for every family in
`tests/core/test_component_semantics.py`: a decoder layer's output minus its input is the sum, over the layer's
residual writers, of `to_residual_units(component, output)`. It holds because in every family in the table the
residual add is the last operation on a component's output; a family with a norm after the mixer (Gemma-2-style
post-norms) would break it and must not be added without a new `writes_to` target. In half precision it holds up
to the rounding of the add (mamba2 with `residual_in_fp32` adds in float32).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

from mechhybrid.errors import MechHybridError, UnsupportedFamilyError
from mechhybrid.families import KINDS, Family, Slot
from mechhybrid.results.vocabulary import THIRDS

__all__ = ["THIRDS", "Component", "ComponentMap", "build_components", "from_residual_units", "to_residual_units"]


@dataclass(frozen=True)
class Component:
    """One mixer or MLP: what it is, where its output goes, and in which units (see the module docstring)."""

    layer: int
    """Index of the decoder layer that holds it."""
    kind: str
    """One of `attention`, `ssm`, `linear_attention`, `recurrent`, `conv`, `mlp`."""
    path: str
    """Dotted path, inside the transformers model, of the module whose output is this component's output: what
    `Capture` records and `Ablate` / `Patch` / `Steer` change, in the module's own units (before `residual_scale`).
    Where the output goes is `writes_to`."""
    n_heads: int | None = None
    """Number of heads at the input of the output projection; None where the component has no heads."""
    n_params: int = 0
    """Parameters of the module (a module whose weights are tied elsewhere counts them here too)."""
    out_proj: str | None = None
    """Dotted path of the output projection whose input holds the heads; None without heads."""
    layer_path: str = ""
    """Dotted path of the decoder layer that holds the component (what `skip` makes an identity)."""
    label: str | None = None
    """Its name within the layer where the kind alone would repeat (granitemoehybrid's `shared_mlp`); None uses
    the kind."""
    writes_to: str = "residual"
    """What the output is added into (`mechhybrid.families.WRITE_TARGETS`): `residual` for the residual stream,
    `mlp_input` / `mamba_input` for zamba2's shared block, which feeds its layer's Mamba instead."""
    residual_scale: float = 1.0
    """The factor the layer applies to the output before adding it to the residual stream (1 for most families;
    falcon_h1's mixer out-multipliers, granitemoehybrid's `residual_multiplier`). Meaningful only for
    residual writers."""

    @property
    def name(self) -> str:
        """Short human name, unique within a model, e.g. `L3.attention`, `L3.shared_mlp`."""
        return f"L{self.layer}.{self.label or self.kind}"

    @property
    def writes_residual(self) -> bool:
        """Whether the layer adds this component's output (times `residual_scale`) to the residual stream."""
        return self.writes_to == "residual"

    def __str__(self) -> str:
        return self.name


def to_residual_units(component: Component, value):
    """`value` (a component output `[..., d_model]` or per-head contributions `[..., head, d_model]`, in the
    module's units) as the residual stream receives it: `value * component.residual_scale`."""
    if not component.writes_residual:
        raise MechHybridError(
            f"{component.name} writes to {component.writes_to}, not to the residual stream: it has no residual units"
        )
    return value * component.residual_scale


def from_residual_units(component: Component, value):
    """The change of `component`'s output (module units) that adds `value` to the residual stream: the inverse
    of `to_residual_units`, for steering vectors measured in the residual stream."""
    if not component.writes_residual:
        raise MechHybridError(
            f"{component.name} writes to {component.writes_to}, not to the residual stream: it has no residual units"
        )
    if component.residual_scale == 0:
        raise MechHybridError(f"{component.name} has residual_scale 0: no output change reaches the residual stream")
    return value / component.residual_scale


def _resolve(root, dotted: str):
    module = root
    for part in dotted.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part, None)
        if module is None:
            return None
    return module


def _has_path(root, dotted: str) -> bool:
    module = root
    for part in dotted.split("."):
        if part.isdigit():
            module = module[int(part)]
        elif part in getattr(module, "_modules", {}):
            module = module._modules[part]
        else:
            return False
    return module is not None


def build_components(hf_model, family: Family) -> list[Component]:
    """One Component per mixer and MLP that exists in `hf_model`, layer by layer, in the family's slot order."""
    layers = _resolve(hf_model, family.layers)
    if layers is None:
        raise MechHybridError(f"{family.name}: no decoder layers at {family.layers!r}")
    config = getattr(hf_model, "config", None)
    found = []
    for index, layer in enumerate(layers):
        layer_path = f"{family.layers}.{index}"
        for slot in family.slots:
            if not _has_path(layer, slot.attr):
                continue
            module = _resolve(layer, slot.attr)
            kind, out_proj, heads_from = slot.resolve(module)
            n_heads = None
            if out_proj is not None:
                n_heads = int(getattr(config, heads_from))
            found.append(
                Component(
                    layer=index, kind=kind, path=f"{layer_path}.{slot.attr}", n_heads=n_heads,
                    n_params=sum(p.numel() for p in module.parameters()),
                    out_proj=None if out_proj is None else f"{layer_path}.{slot.attr}.{out_proj}",
                    layer_path=layer_path, label=slot.label, writes_to=slot.writes_to,
                    residual_scale=_residual_scale(config, slot, family),
                )
            )
    return found


def _residual_scale(config, slot: Slot, family: Family) -> float:
    if slot.scale_from is None:
        return 1.0
    value = getattr(config, slot.scale_from, None)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise UnsupportedFamilyError(
            f"{family.name}: config.{slot.scale_from} should be the number that scales {slot.attr}'s output, "
            f"got {value!r}"
        )
    return float(value)


class ComponentMap(Sequence[Component]):
    """The components of a model in forward order, with the selections analyses need."""

    def __init__(self, components: Iterable[Component], n_layers: int):
        self._items = tuple(components)
        self.n_layers = n_layers
        # Results are keyed by name: two components of one name would overwrite each other's numbers.
        names = [c.name for c in self._items]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UnsupportedFamilyError(f"component names repeat ({', '.join(repeated)}): label the family's slots")
        self._by_name = dict(zip(names, self._items))

    def __getitem__(self, index):
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ComponentMap({len(self)} components over {self.n_layers} layers: {', '.join(map(str, self))})"

    def kinds(self) -> list[str]:
        """The kinds present, in order of first appearance."""
        return list(dict.fromkeys(c.kind for c in self._items))

    def by_kind(self, *kinds: str) -> list[Component]:
        """Every component of the given kinds, in forward order."""
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise MechHybridError(f"unknown component kind(s) {sorted(unknown)}; kinds: {', '.join(KINDS)}")
        return [c for c in self._items if c.kind in kinds]

    def mixers(self) -> list[Component]:
        """Every component that is not an MLP."""
        return [c for c in self._items if c.kind != "mlp"]

    def residual_writers(self) -> list[Component]:
        """Every component whose output the model adds to the residual stream (what direct logit attribution and
        residual-stream decompositions may sum); zamba2's shared attention and MLP are not among them."""
        return [c for c in self._items if c.writes_residual]

    def named(self, name: str) -> Component:
        """The component called `name` (e.g. `L3.shared_mlp`)."""
        if name not in self._by_name:
            names = list(self._by_name)
            shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
            raise MechHybridError(f"no component named {name!r}; components: {shown}")
        return self._by_name[name]

    def by_layers(self, layers: Iterable[int]) -> list[Component]:
        """Every component in the given layers."""
        wanted = set(layers)
        bad = sorted(i for i in wanted if not 0 <= i < self.n_layers)
        if bad:
            raise MechHybridError(f"layer(s) {bad} out of range: the model has layers 0..{self.n_layers - 1}")
        return [c for c in self._items if c.layer in wanted]

    def third_layers(self, name: str) -> range:
        """The layers of one third of the depth (early / middle / late); the remainder goes to the later thirds."""
        if name not in THIRDS:
            raise MechHybridError(f"unknown third {name!r}; choose one of {', '.join(THIRDS)}")
        cut = [self.n_layers * i // 3 for i in range(4)]
        index = THIRDS.index(name)
        return range(cut[index], cut[index + 1])

    def third(self, name: str, kind: str | None = None) -> list[Component]:
        """The components in one third of the depth, optionally of one kind only."""
        chosen = self.by_layers(self.third_layers(name))
        return chosen if kind is None else [c for c in chosen if c.kind == kind]

    def find(self, layer: int, kind: str) -> Component:
        """The single component of `kind` at `layer` (clear error if there is none or several)."""
        matches = [c for c in self._items if c.layer == layer and c.kind == kind]
        if len(matches) != 1:
            which = f" ({', '.join(c.name for c in matches)}: pick one with named())" if matches else ""
            raise MechHybridError(f"layer {layer} has {len(matches)} component(s) of kind {kind!r}{which}")
        return matches[0]

    def sample_matched(
        self,
        like: Sequence[Component],
        seed: int,
        same_kind_mix: bool = False,
        pool: Sequence[Component] | None = None,
    ) -> list[Component]:
        """A random selection of as many components as `like` (Study A's matched random control).

        The pool defaults to every component (MLPs included) that is not in `like`; `same_kind_mix=True` draws,
        for each kind, as many of that kind as `like` has. Sampling is seeded and independent of global RNGs.
        """
        if not like:
            raise MechHybridError("sample_matched needs a non-empty selection to match")
        candidates = [c for c in (self._items if pool is None else pool) if c not in set(like)]
        rng = random.Random(seed)
        if not same_kind_mix:
            if len(candidates) < len(like):
                raise MechHybridError(f"cannot draw {len(like)} components from a pool of {len(candidates)}")
            chosen = set(rng.sample(candidates, len(like)))
        else:
            chosen = set()
            for kind in dict.fromkeys(c.kind for c in like):
                need = sum(c.kind == kind for c in like)
                same = [c for c in candidates if c.kind == kind]
                if len(same) < need:
                    raise MechHybridError(f"cannot draw {need} {kind} component(s) from a pool of {len(same)}")
                chosen.update(rng.sample(same, need))
        return [c for c in self._items if c in chosen]
