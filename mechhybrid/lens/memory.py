"""Readout math of the memory lens, per mixer: a recurrent state read with a chosen vector, then mapped through
the layer's own output path.

Axis names: batch, seq, head, d_k, d_v (Gated DeltaNet), head_dim, d_state (Mamba-2), d_inner (Mamba-1),
d_model.

Every readout is the *memory part* of what the layer computes at the token whose state is read:
- Gated DeltaNet (`S [batch, head, d_k, d_v]`): `y = S^T u`, u = an l2-normed key-like vector / sqrt(d_k),
  exactly as the layer scales its query (Yang et al. 2024; transformers `torch_recurrent_gated_delta_rule`).
  With u = the token's own query, y is the layer's own pre-norm output there (no skip term exists).
- Mamba-2 (`h [batch, head, head_dim, d_state]`): `y = h C` per head (C of the head's group); the D skip
  `D x_t` is excluded: it carries the current token, not the memory.
- Mamba-1 (`h [batch, d_inner, d_state]`): `y = h C` per channel, D skip excluded likewise.
Output path (`output`): the layer's own gate and norm with the read token's own output gate z, then out_proj:
gated RMSNorm (GDN: per head; Mamba-2: per group) or, for Mamba-1, `y * silu(z)`.

What a Mamba token reads from the state *before* it: the step is `h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T`,
so `h_t C_t = h_{t-1} (exp(dt_t A) C_t) + dt_t (B_t . C_t) x_t`. `carried_vectors(parts)` is exp(dt_t A) C_t, the
question token's C after its own discretisation (Mamba-2: one decay per head; Mamba-1: one per channel and state,
so one vector per channel), and `read_carried(state, vectors)` reads the earlier state with it (Gu & Dao 2023,
eq. 2a; Dao & Gu 2024, sec. 2). dt = softplus(dt_raw + dt_bias), A = -exp(A_log), as the 1-token step applies
them (the full-sequence scan also clamps dt to `time_step_limit`, (0, inf) by default).

The vectors a state is read with come from `parts`: the layer's projections recomputed from the captured
pre-convolution projections (the modules' own weights, causal conv and activation as the layer applies them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.activations import ACT2FN

from mechhybrid.errors import MechHybridError

__all__ = ["READERS", "Parts", "reader_for", "causal_conv", "l2norm"]


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The delta-rule kernels' normalisation: x / sqrt(sum x^2 + eps) over the last axis."""
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def causal_conv(conv: torch.nn.Conv1d, x: torch.Tensor, activation: str) -> torch.Tensor:
    """The mixer's depthwise causal conv over a whole sequence `[batch, seq, channel]` plus its activation."""
    seq = x.shape[1]
    out = F.conv1d(x.transpose(1, 2).to(conv.weight.dtype), conv.weight, conv.bias,
                   padding=conv.weight.shape[-1] - 1, groups=x.shape[-1])[..., :seq]
    return ACT2FN[activation](out).transpose(1, 2)


@dataclass(frozen=True)
class Parts:
    """What a layer computed at every position that the lens reads with."""

    keys: torch.Tensor
    """`[batch, seq, head, dim]` the write vectors as the layer writes them (GDN: l2-normed keys; Mamba: B),
    per head of the state; read with one as a query: `reader.read(state, key * reader.key_scale(module))`."""
    queries: torch.Tensor
    """`[batch, seq, head, dim]` the read vectors (GDN: l2-normed queries / sqrt(d_k); Mamba: C)."""
    values: torch.Tensor
    """`[batch, seq, head, d]` what a write stores (GDN: v; Mamba-2: x per head; Mamba-1: x `[.., 1, d_inner]`)."""
    gate: torch.Tensor
    """`[batch, seq, ...]` the output gate z, shaped as the output path takes it."""
    skip: torch.Tensor | None
    """`[batch, seq, head, d]` the D skip term `D x` (Mamba); None for GDN."""
    decay: torch.Tensor | None = None
    """exp(dt A), the factor each token applies to the state before it (Mamba-2: `[batch, seq, head, 1]`;
    Mamba-1: `[batch, seq, d_inner, d_state]`); None for GDN."""


class GatedDeltaNet:
    """qwen3_5 / qwen3_next linear attention."""

    layout = ("batch", "head", "d_k", "d_v")
    has_heads = True

    @staticmethod
    def projections(module) -> tuple[str, ...]:
        if hasattr(module, "in_proj_qkvz"):
            return ("in_proj_qkvz", "in_proj_ba")
        return ("in_proj_qkv", "in_proj_z")

    @staticmethod
    def parts(module, proj: dict) -> Parts:
        if "in_proj_qkvz" in proj:
            q, k, v, z, _, _ = module.fix_query_key_value_ordering(proj["in_proj_qkvz"], proj["in_proj_ba"])
            mixed = torch.cat([t.reshape(*t.shape[:2], -1) for t in (q, k, v)], dim=-1)
        else:
            mixed = proj["in_proj_qkv"]
            z = proj["in_proj_z"]
        batch, seq = mixed.shape[:2]
        mixed = causal_conv(module.conv1d, mixed, module.activation)
        q, k, v = torch.split(mixed, [module.key_dim, module.key_dim, module.value_dim], dim=-1)
        repeat = module.num_v_heads // module.num_k_heads
        q, k = (t.reshape(batch, seq, module.num_k_heads, module.head_k_dim).repeat_interleave(repeat, dim=2)
                for t in (q, k))
        scale = module.head_k_dim ** -0.5
        return Parts(l2norm(k.float()), l2norm(q.float()) * scale,
                     v.reshape(batch, seq, module.num_v_heads, module.head_v_dim).float(),
                     z.reshape(batch, seq, module.num_v_heads, module.head_v_dim), None)

    @staticmethod
    def key_scale(module) -> float:
        """What turns a key into a query: the layer divides its l2-normed queries by sqrt(d_k)."""
        return module.head_k_dim ** -0.5

    @staticmethod
    def read(state: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """`[batch, head, d_v]` = S^T u per head."""
        return torch.einsum("bhkv,bhk->bhv", state.float(), vector.float())

    @staticmethod
    def output(module, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """`[batch, d_model]` from `y [batch, head, d_v]` and the token's gate `[batch, head, d_v]`."""
        batch = y.shape[0]
        normed = module.norm(y.reshape(-1, module.head_v_dim).to(gate.dtype), gate.reshape(-1, module.head_v_dim))
        return module.out_proj(normed.reshape(batch, -1))


class Mamba2:
    """Mamba-2 mixers (mamba2, falcon_h1, bamba, nemotron_h, zamba2, granitemoehybrid)."""

    layout = ("batch", "head", "head_dim", "d_state")
    has_heads = True

    @staticmethod
    def projections(module) -> tuple[str, ...]:
        return ("in_proj",)

    @staticmethod
    def parts(module, proj: dict) -> Parts:
        projected = proj["in_proj"]
        if hasattr(module, "mup_vector"):  # Falcon-H1 scales its projections by a fixed muP vector
            projected = projected * module.mup_vector
        inner, heads, groups, n = module.intermediate_size, module.num_heads, module.n_groups, module.ssm_state_size
        gate, xbc, _ = projected.split([inner, module.conv_dim, heads], dim=-1)
        xbc = causal_conv(module.conv1d, xbc, module.activation)
        x, b, c = torch.split(xbc, [inner, groups * n, groups * n], dim=-1)
        batch, seq = x.shape[:2]
        per_group = heads // groups
        b, c = (t.reshape(batch, seq, groups, n).repeat_interleave(per_group, dim=2) for t in (b, c))
        x = x.reshape(batch, seq, heads, module.head_dim)
        skip = x * module.D.reshape(1, 1, heads, 1)
        dt = F.softplus(projected[..., -heads:].float() + module.dt_bias.float())  # [batch, seq, head]
        decay = torch.exp(dt * -torch.exp(module.A_log.float()))[..., None]
        return Parts(b.float(), c.float(), x.float(), gate, skip.float(), decay)

    @staticmethod
    def carried_vectors(parts: Parts) -> torch.Tensor:
        """`[batch, head, d_state]`: the last token's C times its decay (module docstring)."""
        return parts.decay[:, -1] * parts.queries[:, -1]

    @staticmethod
    def read_carried(state: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """`[batch, head, head_dim]` = h c per head (`vectors [batch, head, d_state]`), as `read`."""
        return torch.einsum("bhpn,bhn->bhp", state.float(), vectors.float())

    @staticmethod
    def key_scale(module) -> float:
        """B and C share one space: B is read as it is."""
        return 1.0

    @staticmethod
    def read(state: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """`[batch, head, head_dim]` = h C per head."""
        return torch.einsum("bhpn,bhn->bhp", state.float(), vector.float())

    @staticmethod
    def output(module, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        y = y.reshape(y.shape[0], -1).to(gate.dtype)
        if isinstance(module.norm, torch.nn.Identity):  # Falcon-H1 without its gated norm
            return module.out_proj(y * F.silu(gate))
        return module.out_proj(module.norm(y, gate))


class Mamba1:
    """Mamba-1 mixers (jamba), with Jamba's norms on dt, B and C."""

    layout = ("batch", "d_inner", "d_state")
    has_heads = False

    @staticmethod
    def projections(module) -> tuple[str, ...]:
        return ("in_proj",)

    @staticmethod
    def parts(module, proj: dict) -> Parts:
        x, gate = proj["in_proj"].chunk(2, dim=-1)
        x = causal_conv(module.conv1d, x, module.activation)
        step, b, c = torch.split(module.x_proj(x), [module.time_step_rank, module.ssm_state_size,
                                                    module.ssm_state_size], dim=-1)
        b, c = module.b_layernorm(b), module.c_layernorm(c)
        dt = F.softplus(module.dt_layernorm(step).float() @ module.dt_proj.weight.float().T
                        + module.dt_proj.bias.float())  # [batch, seq, d_inner]
        decay = torch.exp(dt[..., None] * -torch.exp(module.A_log.float()))  # [batch, seq, d_inner, d_state]
        return Parts(b[:, :, None].float(), c[:, :, None].float(), x[:, :, None].float(), gate,
                     (x * module.D)[:, :, None].float(), decay)

    @staticmethod
    def carried_vectors(parts: Parts) -> torch.Tensor:
        """`[batch, d_inner, d_state]`: the last token's C times its decay, one vector per channel (module
        docstring)."""
        return parts.decay[:, -1] * parts.queries[:, -1]

    @staticmethod
    def read_carried(state: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """`[batch, 1, d_inner]` = h_d . c_d per channel d (`vectors [batch, d_inner, d_state]`)."""
        return torch.einsum("bdn,bdn->bd", state.float(), vectors.float())[:, None]

    @staticmethod
    def key_scale(module) -> float:
        """B and C share one space: B is read as it is."""
        return 1.0

    @staticmethod
    def read(state: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        """`[batch, 1, d_inner]` = h C per channel (one "head": the whole layer)."""
        return torch.einsum("bdn,bn->bd", state.float(), vector[:, 0].float())[:, None]

    @staticmethod
    def output(module, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        y = y.reshape(y.shape[0], -1).to(gate.dtype)
        return module.out_proj(y * F.silu(gate))


READERS = {GatedDeltaNet.layout: GatedDeltaNet, Mamba2.layout: Mamba2, Mamba1.layout: Mamba1}
"""State layout (`mechhybrid.state.spec`) -> its reader. RG-LRU has no key/query readout: its state is
elementwise-gated, with no key to address it by, so it has no reader."""


def reader_for(layout: tuple[str, ...] | None, layer: int):
    """The reader of a state layout; a one-line error for a layout without one."""
    if layout not in READERS:
        raise MechHybridError(f"layer {layer}: the memory lens has no key/query readout for a state with axes "
                              f"{layout} (Gated DeltaNet, Mamba-2 and Mamba-1 states have one)")
    return READERS[layout]
