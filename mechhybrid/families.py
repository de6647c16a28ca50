"""The family table: one small declarative entry per architecture family.

An entry says where the decoder layers are, which sub-module of a layer is which mixer (and of which kind), where
each mixer's heads meet its output projection, what each sub-module's output is added into and by which factor
(`Slot.writes_to`, `Slot.scale_from`), how the blocks are wired (sequential or parallel), and where the final norm
and unembedding live. Nothing else in mechhybrid branches on the family: adding a family means adding
one `Family` here and one tiny config in `tests/tiny_configs.py` (and, for a family with recurrent layers, its
state layout in `mechhybrid.state.spec.STATE_SPECS`, kept there because the state code builds on the engine,
which builds on this table).

Kinds: `attention`, `ssm` (Mamba-1/2), `linear_attention` (Gated DeltaNet), `recurrent` (RG-LRU), `conv` (LFM2's
gated short convolution), `mlp` (dense or MoE).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping

from mechhybrid.errors import UnsupportedFamilyError
from mechhybrid.results.vocabulary import COMPONENT_KINDS as KINDS  # public as mechhybrid.KINDS

WRITE_TARGETS = ("residual", "mlp_input", "mamba_input")
"""Where a component's output goes. `residual`: the layer adds it (times the slot's scale) to the residual
stream. `mlp_input`: it is normalised and becomes the whole input of the MLP after it, with no residual around
either (zamba2's shared attention). `mamba_input`: a linear projection of it is added to the input of the layer's
Mamba block, before that block's input norm, and reaches the residual stream only through the Mamba (zamba2's
shared MLP, through the hybrid layer's `linear`)."""


@dataclass(frozen=True)
class Slot:
    """One place inside a decoder layer where a component may sit."""

    attr: str
    """Dotted path of the sub-module relative to the layer (e.g. `self_attn`, `shared_transformer.self_attn`)."""
    kind: str | Mapping[str, str]
    """The component kind, or a map from the sub-module's class name to its kind (for blocks whose mixer type
    varies by layer, such as nemotron_h's `mixer` or recurrent_gemma's `temporal_block`)."""
    out_proj: str | Mapping[str, str] | None = None
    """The output projection (relative to the sub-module) whose input is the concatenation of the heads; None
    where the component has no heads. A map, like `kind`, when it depends on the sub-module's class."""
    heads_from: str | Mapping[str, str] | None = None
    """The config attribute holding the number of heads at that projection's input (map by class, like `kind`)."""
    label: str | None = None
    """The name the component goes by in its layer (`L3.shared_mlp`) where the kind alone would repeat;
    None names it by its kind (`L3.mlp`)."""
    writes_to: str = "residual"
    """What the sub-module's output is added into: one of `WRITE_TARGETS`."""
    scale_from: str | None = None
    """The config attribute holding the factor the layer multiplies the sub-module's output by before adding it to
    the residual stream (falcon_h1's `attention_out_multiplier`, granite's `residual_multiplier`); None for 1."""

    def __post_init__(self):
        if self.writes_to not in WRITE_TARGETS:
            raise ValueError(f"slot {self.attr!r}: writes_to {self.writes_to!r} is not one of {WRITE_TARGETS}")

    def resolve(self, module) -> tuple[str, str | None, str | None]:
        """(kind, out_proj, heads_from) for this concrete sub-module."""
        cls = type(module).__name__
        return _pick(self.kind, cls, self.attr), _pick(self.out_proj, cls, self.attr), _pick(
            self.heads_from, cls, self.attr
        )


def _pick(value, cls: str, attr: str):
    if value is None or isinstance(value, str):
        return value
    if cls not in value:
        raise UnsupportedFamilyError(f"sub-module {attr!r} of class {cls} has no kind in the family table")
    return value[cls]


@dataclass(frozen=True)
class Family:
    """A declarative description of one architecture family."""

    name: str
    """Family name used throughout mechhybrid (and in results)."""
    model_types: tuple[str, ...]
    """Values of `config.model_type` that belong to this family."""
    layers: str
    """Dotted path of the ModuleList of decoder layers inside the CausalLM."""
    slots: tuple[Slot, ...]
    """Candidate component places per layer, in forward order; a layer holds the subset that exists."""
    final_norm: str
    """Dotted path of the final norm applied before the unembedding."""
    topology: str = "sequential"
    """`sequential` (mixer then MLP, each with its own residual) or `parallel` (mixers run side by side on the
    same input and are summed, Falcon-H1)."""
    control: str | None = None
    """`transformer` or `ssm` for the families the study uses as controls; None for hybrids."""
    logits_from_unembed: Callable[[object, object], object] | None = None
    """Maps `lm_head(final_norm(h))` to the model's logits where the model rescales them (soft-capping,
    muP multipliers); None where the logits are the unembedding itself."""
    learned_positions: str | None = None
    """The config attribute holding the size of a learned absolute position table (GPT-2's `n_positions`):
    longer inputs have no position embedding and are refused. None where positions are computed (RoPE)."""
    left_padding_exact: bool = True
    """Whether a left-padded batch run with its attention mask (and positions derived from it) gives every row, in
    prefill and in cached decode, what it gets alone. Measured on transformers 5.24's torch path (float32, the
    tiny models of tests/tiny_configs.py, prompts of 30 / 3 / 17 tokens padded with random ids): <= 1.5e-6 for
    every family but recurrent_gemma, whose recurrent block's short convolution reads the padding tokens (the mask
    reaches only its attention; 0.015 to 1.2). `generate` batches prompts of different lengths left-padded where
    this is True and groups them by length where it is False; tests/core/test_generation_batched.py checks both."""


_ATTN = Slot("self_attn", "attention", "o_proj", "num_attention_heads")
_MLP = Slot("mlp", "mlp")
_FF = Slot("feed_forward", "mlp")
_GDN = Slot("linear_attn", "linear_attention", "out_proj", "linear_num_value_heads")


def _softcap(config, logits):
    cap = config.logits_soft_cap
    return logits if cap is None else (logits / cap).tanh() * cap


FAMILIES: tuple[Family, ...] = (
    Family("qwen3_5", ("qwen3_5_text", "qwen3_5"), "model.layers", (_GDN, _ATTN, _MLP), "model.norm"),
    Family("qwen3_next", ("qwen3_next",), "model.layers", (_GDN, _ATTN, _MLP), "model.norm"),
    Family(
        "falcon_h1", ("falcon_h1",), "model.layers",
        # The layer scales each mixer's output before the residual add; the MLP's own `mlp_multipliers` act
        # inside the module, so its output is already in residual units.
        (
            Slot("mamba", "ssm", "out_proj", "mamba_n_heads", scale_from="ssm_out_multiplier"),
            replace(_ATTN, scale_from="attention_out_multiplier"),
            _FF,
        ),
        "model.final_layernorm",
        topology="parallel",
        logits_from_unembed=lambda config, logits: logits * config.lm_head_multiplier,
    ),
    Family("jamba", ("jamba",), "model.layers", (Slot("mamba", "ssm"), _ATTN, _FF), "model.final_layernorm"),
    Family(
        "recurrent_gemma", ("recurrent_gemma",), "model.layers",
        (
            Slot(
                "temporal_block",
                {"RecurrentGemmaRecurrentBlock": "recurrent", "RecurrentGemmaAttention": "attention"},
                {"RecurrentGemmaRecurrentBlock": None, "RecurrentGemmaAttention": "o_proj"},
                {"RecurrentGemmaRecurrentBlock": None, "RecurrentGemmaAttention": "num_attention_heads"},
            ),
            Slot("mlp_block", "mlp"),
        ),
        "model.final_norm",
        logits_from_unembed=_softcap,
        left_padding_exact=False,
    ),
    Family(
        "zamba2", ("zamba2",), "model.layers",
        (
            # The shared block reaches the residual stream only through the Mamba it feeds: attention ->
            # pre_ff_layernorm -> feed_forward -> the hybrid layer's `linear` -> added to the Mamba's input.
            Slot(
                "shared_transformer.self_attn", "attention", "o_proj", "num_attention_heads", writes_to="mlp_input",
            ),
            Slot("shared_transformer.feed_forward", "mlp", writes_to="mamba_input"),
            Slot("mamba_decoder.mamba", "ssm", "out_proj", "n_mamba_heads"),
            Slot("mamba", "ssm", "out_proj", "n_mamba_heads"),
        ),
        "model.final_layernorm",
    ),
    Family(
        "nemotron_h", ("nemotron_h",), "model.layers",
        (
            Slot(
                "mixer",
                {"NemotronHMamba2Mixer": "ssm", "NemotronHAttention": "attention", "NemotronHMLP": "mlp",
                 "NemotronHMoE": "mlp"},
                {"NemotronHMamba2Mixer": "out_proj", "NemotronHAttention": "o_proj", "NemotronHMLP": None,
                 "NemotronHMoE": None},
                {"NemotronHMamba2Mixer": "mamba_num_heads", "NemotronHAttention": "num_attention_heads",
                 "NemotronHMLP": None, "NemotronHMoE": None},
            ),
        ),
        "model.norm_f",
    ),
    Family(
        "bamba", ("bamba",), "model.layers",
        (Slot("mamba", "ssm", "out_proj", "mamba_n_heads"), _ATTN, _FF), "model.final_layernorm",
    ),
    Family(
        "granitemoehybrid", ("granitemoehybrid",), "model.layers",
        (
            Slot("mamba", "ssm", "out_proj", "mamba_n_heads", scale_from="residual_multiplier"),
            replace(_ATTN, scale_from="residual_multiplier"),
            Slot("block_sparse_moe", "mlp", scale_from="residual_multiplier"),
            Slot("shared_mlp", "mlp", label="shared_mlp", scale_from="residual_multiplier"),
        ),
        "model.norm",
        logits_from_unembed=lambda config, logits: logits / config.logits_scaling,
    ),
    Family(
        "lfm2", ("lfm2",), "model.layers",
        (Slot("conv", "conv"), Slot("self_attn", "attention", "out_proj", "num_attention_heads"), _FF),
        "model.embedding_norm",
    ),
    Family(
        "mamba2", ("mamba2",), "backbone.layers", (Slot("mixer", "ssm", "out_proj", "num_heads"),),
        "backbone.norm_f", control="ssm",
    ),
    Family("qwen2", ("qwen2",), "model.layers", (_ATTN, _MLP), "model.norm", control="transformer"),
    Family("llama", ("llama",), "model.layers", (_ATTN, _MLP), "model.norm", control="transformer"),
    Family(
        "gpt2", ("gpt2",), "transformer.h",
        (Slot("attn", "attention", "c_proj", "n_head"), _MLP), "transformer.ln_f", control="transformer",
        learned_positions="n_positions",
    ),
)

FAMILY_NAMES = tuple(f.name for f in FAMILIES)
_BY_MODEL_TYPE = {mt: f for f in FAMILIES for mt in f.model_types}


def family_for_config(config) -> Family:
    """The family entry for a transformers config, or a clear error listing the supported families."""
    model_type = getattr(config, "model_type", None)
    # Multimodal wrappers (qwen3_5) keep the language model's config under `text_config`.
    if model_type not in _BY_MODEL_TYPE and getattr(config, "text_config", None) is not None:
        model_type = config.text_config.model_type
    if model_type not in _BY_MODEL_TYPE:
        raise UnsupportedFamilyError(
            f"unsupported model family {model_type!r}; supported: {', '.join(FAMILY_NAMES)}"
        )
    return _BY_MODEL_TYPE[model_type]


def get_family(name: str) -> Family:
    """The family entry by its mechhybrid name."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise UnsupportedFamilyError(f"unknown family {name!r}; supported: {', '.join(FAMILY_NAMES)}")
