"""The state map: for every family with recurrent layers, what a layer's state is and where it lives.

Axis names (added to the house set in `mechhybrid.interventions`): `channel` (a short convolution's input
channels), `width` (its window, oldest token first), `d_k` / `d_v` (Gated DeltaNet key / value dims),
`d_inner` (Mamba-1's expanded width), `lru_width` (RG-LRU's width).

`continuation` says how the model's own cache may be continued *exactly* (float32, torch path, transformers
5.24, tiny random models of tests/tiny_configs.py, 40 tokens continued in pieces of 8+1+17+9 after a 5-token
prefix; the same measurement is `mechhybrid check-cache` and the last table of benchmarks/bench_state.py):

- `chunk`: several tokens at once from a prefix cache match the full forward to <= 1.3e-6 (qwen3_5, qwen3_next,
  falcon_h1, zamba2, nemotron_h, bamba, granitemoehybrid, lfm2, mamba2). Bamba only with explicit
  `position_ids`: its model defaults them to `arange(seq)` whatever the cache holds, which rotates the
  continued queries/keys as if they started at 0 (drift 1e-3 without, 8e-8 with).
- `token`: only one token at a time is exact. Jamba's multi-token Mamba-1 scan ignores the cached state
  (`mamba_selective_scan` starts from zeros: drift 2e-5..8e-4); recurrent_gemma's multi-token path re-pads its
  conv window instead of continuing it (drift 5.6e-2). Their one-token decode paths are exact (<= 4e-7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from mechhybrid.errors import MechHybridError

STATE_KINDS = ("ssm", "linear_attention", "recurrent", "conv")
"""Component kinds that carry information across tokens in a fixed-size state."""


@dataclass(frozen=True)
class Layout:
    """What one mixer kind's state is: the recurrent tensor and the short-conv window, with axis names."""

    recurrent: tuple[str, ...] | None
    """Axes of the recurrent state (batch first); None where the mixer has only a conv window (lfm2)."""
    conv: tuple[str, ...] = ("batch", "channel", "width")
    """Axes of the conv window: the last `width` pre-convolution inputs."""
    name: str = ""
    """Human name of the state (e.g. `Gated DeltaNet memory S`)."""
    chunk: str | None = None
    """How the mixer's chunked scan takes its chunk size (`mechhybrid.state.chunks`): `attribute` (the mixer's
    `chunk_size`: transformers' Mamba-2 mixers), `argument` (a `chunk_size` keyword of the mixer's forward, which
    transformers' Gated DeltaNet hands on to its chunked kernel); None: no chunked scan."""
    max_chunk: int = 64
    """Largest chunk `mechhybrid.state.chunks` fits to a forward: the fastest on one CPU thread for a 32-token
    forward of 128 rows of the zoo's sizes (Gated DeltaNet 16: 15 ms vs 68 ms at 64; Mamba-2 32: 31 vs 58 ms)."""


GDN = Layout(("batch", "head", "d_k", "d_v"), name="Gated DeltaNet memory S", chunk="argument", max_chunk=16)
MAMBA2 = Layout(("batch", "head", "head_dim", "d_state"), name="Mamba-2 ssm_state", chunk="attribute", max_chunk=32)
MAMBA1 = Layout(("batch", "d_inner", "d_state"), name="Mamba-1 ssm_state")
RGLRU = Layout(("batch", "lru_width"), name="RG-LRU hidden state")
SHORTCONV = Layout(None, name="gated short-conv window")


@dataclass(frozen=True)
class StateSpec:
    """Where a family's recurrent state lives and how its cache may be continued."""

    family: str
    layouts: Mapping[str, Layout]
    """Component kind -> state layout, for the kinds of this family that carry state."""
    continuation: str = "chunk"
    """`chunk` (several tokens at once from a cache is exact) or `token` (only one at a time is)."""
    store: str = "cache"
    """`cache`: `cache.layers[i].conv_states[0]` / `.recurrent_states[0]` of the transformers Cache;
    `module`: attributes of the mixer module itself (recurrent_gemma keeps `conv1d_state` and
    `rg_lru.recurrent_states` on the module and only the KV cache in the Cache)."""
    pass_positions: bool = True
    """Pass explicit `position_ids` when continuing (bamba needs them; mamba2's forward has no positions and
    forwards unknown kwargs into its kernels, so it gets none)."""

    def __post_init__(self):
        if any(layout.chunk not in (None, "attribute", "argument") for layout in self.layouts.values()):
            raise ValueError("a layout's chunk must be None, attribute or argument")
        if self.continuation not in ("chunk", "token"):
            raise ValueError(f"continuation must be chunk or token, got {self.continuation!r}")
        if self.store not in ("cache", "module"):
            raise ValueError(f"store must be cache or module, got {self.store!r}")


STATE_SPECS: dict[str, StateSpec] = {
    spec.family: spec
    for spec in (
        StateSpec("qwen3_5", {"linear_attention": GDN}),
        StateSpec("qwen3_next", {"linear_attention": GDN}),
        StateSpec("falcon_h1", {"ssm": MAMBA2}),
        StateSpec("jamba", {"ssm": MAMBA1}, continuation="token"),
        StateSpec("recurrent_gemma", {"recurrent": RGLRU}, continuation="token", store="module"),
        StateSpec("zamba2", {"ssm": MAMBA2}),
        StateSpec("nemotron_h", {"ssm": MAMBA2}),
        StateSpec("bamba", {"ssm": MAMBA2}),
        StateSpec("granitemoehybrid", {"ssm": MAMBA2}),
        StateSpec("lfm2", {"conv": SHORTCONV}),
        StateSpec("mamba2", {"ssm": MAMBA2}, pass_positions=False),
        # Transformer controls: no recurrent state; attention's counterpart is the KV cache.
        StateSpec("qwen2", {}),
        StateSpec("llama", {}),
        StateSpec("gpt2", {}),
    )
}

def _where(spec: StateSpec, layout: Layout) -> str:
    recurrent = "" if layout.recurrent is None else f"{', '.join(layout.recurrent)}"
    if spec.store == "module":
        return f"<mixer>.rg_lru.recurrent_states [{recurrent}] + <mixer>.conv1d_state [batch, channel, width]"
    head = f"cache.layers[layer].recurrent_states[0] [{recurrent}] + " if recurrent else ""
    return head + "cache.layers[layer].conv_states[0] [batch, channel, width]"


FAMILY_STATE = {
    name: {kind: _where(spec, layout) for kind, layout in spec.layouts.items()} for name, spec in STATE_SPECS.items()
}
"""Family -> kind -> where that kind's state lives, in the shape of `Family.state` (for the family table)."""


def spec_for(hm) -> StateSpec:
    """The state spec of a HybridModel's family."""
    if hm.family not in STATE_SPECS:
        raise MechHybridError(f"family {hm.family!r} has no state map")
    return STATE_SPECS[hm.family]


def state_components(hm) -> dict[int, object]:
    """Layer -> the Component whose mixer carries state in that layer (one per layer in every family)."""
    spec = spec_for(hm)
    found = {}
    for component in hm.components:
        if component.kind in spec.layouts:
            found[component.layer] = component
    return found


def resolve_layers(hm, layers) -> tuple[int, ...]:
    """Layer indices (ints or Components; None = every layer with state), checked to carry state."""
    carriers = state_components(hm)
    if layers is None:
        if not carriers:
            raise MechHybridError(f"{hm.family} has no layer with a recurrent state")
        return tuple(sorted(carriers))
    items = (layers,) if isinstance(layers, int) or hasattr(layers, "layer") else tuple(layers)
    out = []
    for item in items:
        layer = int(item.layer if hasattr(item, "layer") else item)
        if not 0 <= layer < hm.n_layers:
            raise MechHybridError(f"layer {layer} out of range: the model has layers 0..{hm.n_layers - 1}")
        if layer not in carriers:
            kinds = sorted({c.kind for c in hm.components if c.layer == layer})
            raise MechHybridError(
                f"layer {layer} has no recurrent state (it holds {', '.join(kinds)}); layers with state: "
                f"{', '.join(map(str, sorted(carriers))) or 'none'}"
            )
        out.append(layer)
    if len(set(out)) != len(out):
        raise MechHybridError("a layer is selected twice")
    return tuple(out)
