"""Where a sweep patches: the sites of causal tracing, as data, and what each one means for a forward.

A site is one place whose value at a token can be taken from another run:

- `Embeddings()`: the token embeddings, the input embedding module's output (before any multiplier the family
  applies). Patching it at every position is running on the other tokens, in every family, zamba2 included
  (whose shared blocks re-read the embeddings beside the residual stream).
- `Residual(layer, "pre" | "post")` (`mechhybrid.interventions`): the residual stream before / after a decoder
  layer. `Residual(l, "post")` is `Residual(l + 1, "pre")` (the final norm's input after the last layer).
- a `Component` (`hm.components`): a mixer's or MLP's output, in the module's own units.
- `Head(component, head)`: one head's slice at the input of the component's output projection, for every
  component with heads (attention, Gated DeltaNet, Mamba-2; not Mamba-1, RG-LRU or LFM2's convolution).
- `StateSite(layer)`: a recurrent layer's state right after token p (`PatchState`'s semantics: what token p + 1
  is computed from), carried forward through the recurrence.

An activation site at position p changes nothing before p and nothing below its layer; a state site at p changes
nothing before p + 1. A site after which no token mixer runs (the last layer's components, its output) changes
only the positions it patches. `resolve` turns a site into those facts plus the hook point its value flows
through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

from mechhybrid.components import Component
from mechhybrid.errors import MechHybridError
from mechhybrid.interventions import RESIDUAL_WHERE, Residual

__all__ = [
    "Embeddings", "Head", "StateSite", "Site", "SITE_SETS", "Resolved", "resolve", "site_name", "residual_sites",
    "component_sites", "head_sites", "state_sites", "select_sites",
]


@dataclass(frozen=True)
class Embeddings:
    """The token embeddings (the output of `hf_model.get_input_embeddings()`)."""

    @property
    def name(self) -> str:
        return "embed"


@dataclass(frozen=True)
class Head:
    """Head `head` of `component`, at the input of its output projection (`[..., head_dim]` of that input)."""

    component: Component
    head: int

    @property
    def name(self) -> str:
        """E.g. `L3.attention.h2`."""
        return f"{self.component.name}.h{self.head}"


@dataclass(frozen=True)
class StateSite:
    """The recurrent state (recurrent tensor and conv window) of decoder layer `layer`."""

    layer: int

    @property
    def name(self) -> str:
        return f"L{self.layer}.state"


Site = Union[Embeddings, Residual, Component, Head, StateSite]
SITE_SETS = ("residual", "components", "heads", "states", "embeddings")
"""Names `sweep(sites=...)` accepts for a whole set: every residual site (pre and post of every layer), every
component, every head of every component with heads, every recurrent layer's state, the embeddings."""


@dataclass(frozen=True)
class Resolved:
    """What one site means for a forward."""

    name: str
    layer: int
    """The first decoder layer whose computation the site changes (`n_layers` for the last layer's output)."""
    shift: int
    """A patch at position p changes positions from p + shift on (0 for activations, 1 for states)."""
    point: tuple[str, str] | None
    """(module path, "in" | "out"): the tensor that carries the value; None for a state."""
    channels: slice | None = None
    """The slice of that tensor's last axis (one head); None for all of it."""
    state_layer: int | None = None
    """The layer whose state is patched (state sites only)."""
    local: bool = False
    """True when no token mixer (a component of a kind other than `mlp`) runs after the site: a patch at p then
    changes position p only."""


def site_name(site) -> str:
    return site.name


def _embedding_path(hm) -> str:
    module = hm.hf_model.get_input_embeddings()
    for name, candidate in hm.hf_model.named_modules():
        if candidate is module:
            return name
    raise MechHybridError(f"{hm.family}: the input embedding module is not a sub-module of the model")


def _local(hm, point: tuple[str, str]) -> bool:
    """Whether every token mixer has finished (its output returned) before `point` in the model's forward."""
    at = hm.execution_index(point)
    return all(hm.execution_index((c.path, "out")) <= at for c in hm.components if c.kind != "mlp")


def _layer_input(hm, layer: int) -> tuple[str, str]:
    """The decoder layer's first input; after the last layer, the final norm's input (the same tensor)."""
    if layer == hm.n_layers:
        return (hm.family_spec.final_norm, "in")
    return (f"{hm.family_spec.layers}.{layer}", "in")


def resolve(hm, site) -> Resolved:
    """The site checked against the model, with its first layer, shift and hook point."""
    if isinstance(site, Embeddings):
        point = (_embedding_path(hm), "out")
        return Resolved(site.name, 0, 0, point, local=_local(hm, point))
    if isinstance(site, Residual):
        if not 0 <= site.layer < hm.n_layers:
            raise MechHybridError(f"{site.name}: layer {site.layer} out of range 0..{hm.n_layers - 1}")
        layer = site.layer + (site.where == "post")
        point = _layer_input(hm, layer)
        return Resolved(site.name, layer, 0, point, local=_local(hm, point))
    if isinstance(site, Component):
        _check_component(hm, site)
        point = (site.path, "out")
        return Resolved(site.name, site.layer, 0, point, local=_local(hm, point))
    if isinstance(site, Head):
        component = site.component
        _check_component(hm, component)
        if component.n_heads is None:
            raise MechHybridError(f"{site.name}: {component.name} ({component.kind}) has no heads")
        if not 0 <= site.head < component.n_heads:
            raise MechHybridError(
                f"{site.name}: head out of range; {component.name} has heads 0..{component.n_heads - 1}"
            )
        width = hm.out_proj_weight(component).shape[1] // component.n_heads
        channels = slice(site.head * width, (site.head + 1) * width)
        # The output projection maps each position on its own: what follows the component's output decides.
        local = _local(hm, (component.path, "out"))
        return Resolved(site.name, component.layer, 0, (component.out_proj, "in"), channels, local=local)
    if isinstance(site, StateSite):
        from mechhybrid.state.spec import resolve_layers

        (layer,) = resolve_layers(hm, [site.layer])
        return Resolved(site.name, layer, 1, None, state_layer=layer)
    raise MechHybridError(
        f"not a site: {type(site).__name__}; use Embeddings(), Residual(layer, where), a Component, Head(component, "
        "head) or StateSite(layer)"
    )


def _check_component(hm, component: Component) -> None:
    if component not in set(hm.components):
        raise MechHybridError(f"{component.name} ({component.path}) is not a component of this model")


def residual_sites(hm, where: Sequence[str] = RESIDUAL_WHERE) -> list[Residual]:
    """The residual stream before and/or after every layer, layer by layer."""
    return [Residual(layer, w) for layer in range(hm.n_layers) for w in where]


def component_sites(hm, kinds: Sequence[str] | None = None) -> list[Component]:
    """Every component (of the given kinds), in forward order."""
    return list(hm.components) if kinds is None else hm.components.by_kind(*kinds)


def head_sites(hm, components: Sequence[Component] | None = None) -> list[Head]:
    """Every head of every component with heads (or of the given ones), in forward order."""
    chosen = [c for c in (hm.components if components is None else components) if c.n_heads is not None]
    return [Head(c, h) for c in chosen for h in range(c.n_heads)]


def state_sites(hm) -> list[StateSite]:
    """Every layer that carries a recurrent state (none in a Transformer)."""
    from mechhybrid.state.spec import state_components

    return [StateSite(layer) for layer in sorted(state_components(hm))]


def select_sites(hm, sites) -> list[tuple]:
    """Site groups (each patched as one): a set's name (`SITE_SETS`), one site, or a sequence of sites and of
    tuples of sites (a tuple is patched together and named by its members joined with `+`)."""
    if isinstance(sites, str):
        makers = {"residual": residual_sites, "components": component_sites, "heads": head_sites,
                  "states": state_sites, "embeddings": lambda hm: [Embeddings()]}
        if sites not in makers:
            raise MechHybridError(f"unknown site set {sites!r}; choose one of {', '.join(SITE_SETS)}")
        groups = [(s,) for s in makers[sites](hm)]
    elif isinstance(sites, (Embeddings, Residual, Component, Head, StateSite)):
        groups = [(sites,)]
    else:
        groups = [tuple(s) if isinstance(s, (tuple, list)) else (s,) for s in sites]
    if not groups or any(not g for g in groups):
        raise MechHybridError(f"empty site selection ({sites!r}): name at least one site to patch")
    return groups
