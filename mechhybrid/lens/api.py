"""The memory lens, public: read every Gated DeltaNet / Mamba state at a prompt's last token with chosen vectors,
see the readouts in token space directly, through the rest of the model, and write associations into the state.

    pre, lenses = memory_lens(hm, ids, probes={"key": key_positions})
    lens = lenses[layer]
    direct = direct_logits(hm, lens, lens.readouts["key"])              # [batch, vocab]
    alt = Alternative(outputs={layer: lens.output(lens.readouts["key"])})
    model = last_token_logits(hm, pre, lens_components(hm), [alt])[0]   # [batch, vocab]

"Through the rest of the model": the layer's output at the last token is replaced by what its output path makes
of the readout (all heads, or one head swapped into the layer's own pre-norm output), and every later layer runs
as usual on top of the unchanged prefix. Read with the token's own query, this reproduces the model (GDN: exactly;
Mamba: up to the D skip, which the readout excludes).

Writing into a state before the last token (EditState fns for `Alternative.edits`): `write_associations` (GDN,
the delta rule KEY -> value) and `write_readouts` (Mamba, a minimal-norm rank-1 edit that makes the state's readout
with given vectors equal given values); `carried(pre, lens)` gives a Mamba layer's vectors for the latter: what
its last token reads the state before it with, and what it reads there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.lens.memory import READERS, Mamba1, Mamba2, Parts
from mechhybrid.lens.run import Alternative, Prefill, last_token_logits, prefill
from mechhybrid.state.spec import spec_for, state_components
from mechhybrid.state.types import State

__all__ = ["LayerLens", "lens_components", "memory_lens", "direct_logits", "head_only", "with_head",
           "write_associations", "write_readouts", "carried", "Alternative", "Prefill", "last_token_logits"]

QUERY = "query"
"""The probe every lens reads with: the last token's own query (GDN) or C (Mamba)."""


@dataclass
class LayerLens:
    """One stateful layer read at the prompt's last token."""

    layer: int
    kind: str
    """Component kind (`linear_attention`, `ssm`)."""
    module: torch.nn.Module
    reader: type
    """The readout math of its state (`mechhybrid.lens.memory`)."""
    parts: Parts
    """What the layer computed at every position (keys, queries, values, gate, skip)."""
    readouts: dict[str, torch.Tensor]
    """probe -> `[batch, head, d]` the memory read with that probe (memory only, no skip term)."""
    actual: torch.Tensor
    """`[batch, head, d]` the layer's own pre-norm output at the last token (query readout + skip)."""

    @property
    def gate(self) -> torch.Tensor:
        """The last token's own output gate z."""
        return self.parts.gate[:, -1]

    @property
    def n_heads(self) -> int:
        return int(self.actual.shape[1])

    def output(self, y: torch.Tensor) -> torch.Tensor:
        """`[batch, d_model]`: `y [batch, head, d]` through the layer's gate, norm and out_proj."""
        return self.reader.output(self.module, y, self.gate)


def lens_components(hm) -> dict:
    """layer -> the Component whose state the lens reads (every layer with a Gated DeltaNet or Mamba state)."""
    spec = spec_for(hm)
    found = {layer: c for layer, c in state_components(hm).items()
             if spec.layouts[c.kind].recurrent in READERS}
    if not found:
        raise MechHybridError(
            f"model {hm.name} ({hm.family}) has no Gated DeltaNet or Mamba layer: the memory lens reads only "
            "their states (RG-LRU has no key/query readout)")
    return found


def memory_lens(hm, input_ids, probes: dict[str, torch.Tensor] | None = None, layers=None):
    """(Prefill, layer -> LayerLens) for every lens layer (or those of `layers`).

    `probes`: name -> `[batch]` positions whose key (the write vector the layer computed there: GDN's
    l2-normed key after its conv and activation, Mamba's B) the state is also read with, scaled as the layer
    scales its query. The `query` probe (the last token's own query / C) is always read."""
    components = lens_components(hm)
    if layers is not None:
        missing = [layer for layer in layers if layer not in components]
        if missing:
            raise MechHybridError(f"layer {missing[0]} has no Gated DeltaNet or Mamba state; lens layers: "
                                  f"{', '.join(map(str, sorted(components)))}")
        components = {layer: components[layer] for layer in layers}
    layouts = spec_for(hm).layouts
    readers = {layer: READERS[layouts[c.kind].recurrent] for layer, c in components.items()}
    names = {layer: readers[layer].projections(hm.module(c.path)) for layer, c in components.items()}
    pre = prefill(hm, input_ids, components, names)
    probes = dict(probes or {})
    if QUERY in probes:
        raise MechHybridError(f"probe name {QUERY!r} is the last token's own query; name the others differently")
    rows = torch.arange(pre.input_ids.shape[0])
    lenses = {}
    for layer, component in components.items():
        module, reader = hm.module(component.path), readers[layer]
        parts = reader.parts(module, pre.projections[layer])
        state = pre.states[layer].recurrent
        readouts = {QUERY: reader.read(state, parts.queries[:, -1])}
        for name, positions in probes.items():
            key = parts.keys[rows, torch.as_tensor(positions)]
            readouts[name] = reader.read(state, key * reader.key_scale(module))
        skip = 0 if parts.skip is None else parts.skip[:, -1]
        lenses[layer] = LayerLens(layer, component.kind, module, reader, parts, readouts, readouts[QUERY] + skip)
    return pre, lenses


def direct_logits(hm, lens: LayerLens, y: torch.Tensor) -> torch.Tensor:
    """`[batch, vocab]`: the readout's layer output alone through the final norm and the unembedding (a
    block-level scale after the mixer, e.g. Falcon-H1's ssm_out_multiplier, cancels in the norm)."""
    with torch.no_grad():
        return hm.logit_lens(lens.output(y))


def head_only(y: torch.Tensor, head: int) -> torch.Tensor:
    """`y [batch, head, d]` with every head but `head` zeroed: one head's readout alone."""
    out = torch.zeros_like(y)
    out[:, head] = y[:, head]
    return out


def with_head(actual: torch.Tensor, y: torch.Tensor, head: int) -> torch.Tensor:
    """The layer's own pre-norm output with head `head` replaced by the readout's."""
    out = actual.clone()
    out[:, head] = y[:, head]
    return out


def write_associations(keys: torch.Tensor, values: torch.Tensor, beta: float = 1.0):
    """EditState fn for a Gated DeltaNet memory `S [batch, head, d_k, d_v]`: per row and head, the delta-rule
    write S <- S + beta k (v - S^T k)^T (Yang et al. 2024, eq. 3) with that row's key `keys [batch, head, d_k]`
    scaled to unit length (the layer's own l2 norm carries an epsilon that leaves small keys short of it) and
    value `values [batch, head, d_v]`; with beta = 1, reading with the unit key then returns exactly v."""

    def fn(state: State) -> State:
        if state.recurrent_axes != ("batch", "head", "d_k", "d_v"):
            raise MechHybridError("write_associations needs a Gated DeltaNet state [batch, head, d_k, d_v]")
        memory = state.recurrent
        k, v = torch.nn.functional.normalize(keys.to(memory.dtype), dim=-1), values.to(memory.dtype)
        old = torch.einsum("bhkv,bhk->bhv", memory, k)
        return state.replace(recurrent=memory + beta * torch.einsum("bhk,bhv->bhkv", k, v - old))

    return fn


def carried(pre: Prefill, lens: LayerLens) -> tuple[torch.Tensor, torch.Tensor]:
    """(vectors, readout) of a Mamba layer: the vectors its last token reads the state before it with (its C
    times its decay exp(dt A): Mamba-2 `[batch, head, d_state]`, Mamba-1 `[batch, d_inner, d_state]`) and that
    state read with them (`[batch, head, d]` as the lens's readouts): what the last token takes from the memory
    before it (`mechhybrid.lens.memory`). A one-line error for a Gated DeltaNet layer."""
    if lens.reader not in (Mamba2, Mamba1):
        raise MechHybridError(f"layer {lens.layer} ({lens.kind}): carried readouts are for Mamba states")
    with torch.no_grad():
        vectors = lens.reader.carried_vectors(lens.parts)
        return vectors, lens.reader.read_carried(pre.before[lens.layer].recurrent, vectors)


def _as_heads(state: State, vectors: torch.Tensor, readouts: torch.Tensor):
    """(state `[batch, head, head_dim, d_state]`, vectors `[batch, head, d_state]`, readouts `[batch, head,
    head_dim]`): a Mamba-1 state as one head of width 1 per channel."""
    h = state.recurrent
    if state.recurrent_axes == Mamba2.layout:
        return h, vectors, readouts
    if state.recurrent_axes == Mamba1.layout:
        batch, channels, n = h.shape
        return h[:, :, None], vectors.expand(batch, channels, n), readouts.reshape(batch, channels, 1)
    raise MechHybridError(f"write_readouts needs a Mamba state ({Mamba2.layout} or {Mamba1.layout}), got "
                          f"{state.recurrent_axes}")


def write_readouts(vectors: torch.Tensor, readouts: torch.Tensor):
    """EditState fn for a Mamba state: per row and head (Mamba-1: per channel), the minimal-norm rank-1 edit
    h <- h + (y - h c) c^T / (c^T c), after which reading the state with c returns exactly y (a vector c of zeros
    leaves its head as it is). Mamba-2 `h [batch, head, head_dim, d_state]`: c = `vectors [batch, head, d_state]`,
    y = `readouts [batch, head, head_dim]`; Mamba-1 `h [batch, d_inner, d_state]`: c = `vectors [batch, d_inner,
    d_state]` (or `[batch, 1, d_state]`, one for every channel), y = `readouts [batch, 1, d_inner]`."""

    def fn(state: State) -> State:
        h, c, y = _as_heads(state, vectors, readouts)
        c, y = c.to(h.dtype), y.to(h.dtype)
        norm = (c * c).sum(-1, keepdim=True)
        direction = torch.where(norm > 0, c / torch.where(norm > 0, norm, torch.ones_like(norm)), 0.0)
        now = torch.einsum("bhpn,bhn->bhp", h, c)
        edited = h + torch.einsum("bhp,bhn->bhpn", y - now, direction)
        return state.replace(recurrent=edited.reshape(state.recurrent.shape))

    return fn
