"""The component map: every mixer and MLP of a model as a `Component`, in forward order, with selection helpers."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

from mechhybrid.errors import MechHybridError
from mechhybrid.families import KINDS, Family

THIRDS = ("early", "middle", "late")


@dataclass(frozen=True)
class Component:
    """One mixer or MLP: what it is and where its output joins the residual stream."""

    layer: int
    """Index of the decoder layer that holds it."""
    kind: str
    """One of `attention`, `ssm`, `linear_attention`, `recurrent`, `conv`, `mlp`."""
    path: str
    """Dotted path, inside the transformers model, of the module whose output this component adds to the
    residual stream (through the layer's residual connection)."""
    n_heads: int | None = None
    """Number of heads at the input of the output projection; None where the component has no heads."""
    n_params: int = 0
    """Parameters of the module (a module whose weights are tied elsewhere counts them here too)."""
    out_proj: str | None = None
    """Dotted path of the output projection whose input holds the heads; None without heads."""
    layer_path: str = ""
    """Dotted path of the decoder layer that holds the component (what `skip` makes an identity)."""

    @property
    def name(self) -> str:
        """Short human name, e.g. `L3.attention`."""
        return f"L{self.layer}.{self.kind}"

    def __str__(self) -> str:
        return self.name


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
                    layer_path=layer_path,
                )
            )
    return found


class ComponentMap(Sequence[Component]):
    """The components of a model in forward order, with the selections analyses need."""

    def __init__(self, components: Iterable[Component], n_layers: int):
        self._items = tuple(components)
        self.n_layers = n_layers

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
            raise MechHybridError(f"layer {layer} has {len(matches)} component(s) of kind {kind!r}")
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
