"""Model recipes of the zoo: one training recipe for all models, one tiny config per family.

Sizes follow the zoo's feasibility run (hidden 128, 4 layers, Mamba-2 6 layers,
256-token vocabulary, tied embeddings, about 0.6-0.85M parameters), so that every
model trains in about an hour of one CPU core or less (17-66 min) and analyses run in seconds.

Jamba trains on mechhybrid.mamba1_scan's Mamba-1 scan: bitwise transformers' reference scan, with a backward
linear in the length (0.69 s a step instead of 2.6 s). Zoo names:

    hybrid-gdn       qwen3_5 text: Gated DeltaNet + attention 3:1 (sequential)
    hybrid-parallel  falcon_h1: Mamba-2 and attention side by side (parallel)
    hybrid-griffin   recurrent_gemma: RG-LRU + local attention (window 128) 2:1
    hybrid-jamba     jamba: Mamba-1 + attention 3:1, 4-expert top-2 MoE MLP every other layer
    transformer      qwen2: the Transformer control
    ssm-mamba2       mamba2: the pure state-space control (6 layers)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from mechhybrid.errors import MechHybridError

__all__ = ["Recipe", "ZooSpec", "RECIPE", "ZOO_SPECS", "zoo_spec", "build_config", "build_model", "recipe_dict"]

VOCAB_SIZE = 256
HIDDEN = 128


@dataclass(frozen=True)
class Recipe:
    """The one training recipe shared by every zoo model (same data, budget, optimiser)."""

    version: int = 7
    """Bumped whenever a field's default changes (cards record the whole recipe). Recipe 6 was recipe 5 with
    `stop_after_probe`: recipe 5's plateau rule stopped a model that had not begun to retrieve (Jamba, needle
    probe 0.015 at step 3,000), a plateau at chance, not convergence. The two train identically; only when a
    run stops differs, so a recipe-5 run continues as a recipe-6 run (`zoo train --carry-over 5`). Recipe 7
    shortens the warm-up to 600 steps (`induction_warmup_steps`: see there)."""
    steps: int = 8000
    """The most optimiser steps (exactly this many when stop_patience_steps is None). Recipe 4 trained every
    model for a fixed 5,000: the hybrids had learned to retrieve by step 2,000, the Transformer control never
    began; recipe 5 stops each model by the same plateau rule instead, within this budget."""
    batch_size: int = 16
    """Documents per step, one per row (about 1,600 tokens a step after the warm-up; recipe 4's 5,000 steps
    were 8,075,296 tokens)."""
    seq_len: int = 256
    """The training context length: the longest document."""
    micro_batch: int = 4
    """Rows per forward: the length-sorted rows are split so that padding costs little compute."""
    lr: float = 3e-3
    """Constant learning rate: a cosine schedule had already decayed when retrieval began."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas."""
    grad_clip: float = 1.0
    """Global gradient-norm clip."""
    answer_weight: float = 4.0
    """Loss weight on answer tokens of needle, recall and copy documents (up-weighted: they carry the retrieval signal)."""
    random_weight: float = 0.1
    """Loss weight on tokens that are fresh uniform draws (keys, values, copy spans at first sight). Recipe 1
    weighted them 1, though their loss (2.3-5.5 nats a token) is irreducible: gradient noise. (Recipe 1's
    failure to learn any retrieval was traced to packing documents into rows: see train._document_rows.)"""
    mix: tuple[tuple[str, float], ...] = (("text", 0.2), ("needle", 0.25), ("recall", 0.3), ("copy", 0.25))
    """Probability of each document kind in the training stream."""
    induction_warmup_steps: int = 600
    """Steps at the start that draw from `warmup_mix` and weigh only the answers, with weight 1; the mix and
    the weights above apply after it. Measured on the Transformer control (one thread, copy-token accuracy on 64
    held-out copy documents, chance about 0.004): with any loss on non-answer tokens it formed no induction in
    800-900 steps (0.001-0.008 under recipe 4, a copy-heavy mix, answer weight 16, packed rows, no text documents,
    copy documents alone); with copy answers only it began by step 200 (0.04) and reached 0.28 by step 600.
    Recipes 5-6 warmed up for 1,000 steps: the Transformer crossed needle 0.5 only at step 2,250, the Gated
    DeltaNet hybrid (which under recipe 4, no warm-up, crossed 0.9 by step 2,000) was still at chance at step
    4,250, the Jamba-style one at 3,425. With 600 steps the Transformer's training probe read needle 0.35 at step
    750 and 0.99 at 1,000 (recipe 7, measured 2026-12-02)."""
    warmup_mix: tuple[tuple[str, float], ...] | None = (("copy", 1.0),)
    """What the warm-up draws; None: `mix`. Copy documents only: drawing the whole mix with answers-only loss
    (measured 2026-12-02, 1,000 warm-up steps) left the Transformer's answer loss flat through the warm-up and its
    needle probe at 0.005 at step 2,000."""
    seed: int = 0
    """Seed of initialisation and data order."""
    checkpoint_every: int = 250
    """Steps between resumable checkpoints."""
    eval_every: int = 250
    """Steps between training probes (retrieval, not only loss, is watched; see mechhybrid.zoo.probe)."""
    stop_patience_steps: int | None = 2000
    """The stopping rule, the same for every model: stop once the probe's needle accuracy (mean over
    probe_lengths) has not improved by more than its standard error over this many steps
    (mechhybrid.zoo.curves.plateau_reason). None: no early stop, train exactly `steps` steps."""
    min_steps: int = 3000
    """The stopping rule never stops a run before this step (the induction warm-up plus one patience window,
    so that no model is judged on a window that is all warm-up, where the needle probe cannot move)."""
    stop_after_probe: float = 0.5
    """The plateau rule stops a run only once the probe's needle accuracy has reached this (the first
    steps-to-retrieval threshold, curves.RETRIEVAL_THRESHOLDS): a model still at chance trains on to `steps`."""
    probe_lengths: tuple[int, ...] = (128, 256)
    """Context lengths of the probe's needles (256 is the training length, seq_len)."""
    probe_needles_per_length: int = 100
    """Probe needles per context length (standard error about 0.03 at 0.9)."""
    probe_recall_docs: int = 13
    """Probe recall documents of 8 queries each (104 queries)."""

    def __post_init__(self):
        if not 0 <= self.induction_warmup_steps <= self.steps:
            raise MechHybridError(f"recipe induction_warmup_steps={self.induction_warmup_steps} must be between 0 "
                                  f"and steps={self.steps}")
        if self.stop_patience_steps is not None and (
                self.stop_patience_steps < self.eval_every or self.stop_patience_steps % self.eval_every):
            raise MechHybridError(f"recipe stop_patience_steps={self.stop_patience_steps} must be a positive "
                                  f"multiple of eval_every={self.eval_every} (or None)")
        if not 0 <= self.stop_after_probe <= 1:
            raise MechHybridError(f"recipe stop_after_probe={self.stop_after_probe} must be between 0 and 1")
        if not 0 <= self.min_steps <= self.steps:
            raise MechHybridError(f"recipe min_steps={self.min_steps} must be between 0 and steps={self.steps}")
        if self.warmup_mix is not None and (not self.warmup_mix or any(p < 0 for _, p in self.warmup_mix)
                                            or sum(p for _, p in self.warmup_mix) <= 0):
            raise MechHybridError(f"recipe warmup_mix={self.warmup_mix} must be (kind, probability) pairs with a "
                                  f"positive total (or None: the mix)")
        if not self.probe_lengths or min(self.probe_lengths) < 19 or self.probe_needles_per_length < 1:
            raise MechHybridError(f"recipe probe_lengths={self.probe_lengths} must be lengths >= 19 (a needle "
                                  f"document's minimum) and probe_needles_per_length="
                                  f"{self.probe_needles_per_length} >= 1")
        if min(self.steps, self.eval_every, self.checkpoint_every, self.probe_recall_docs) < 1:
            raise MechHybridError("recipe steps, eval_every, checkpoint_every and probe_recall_docs must be >= 1")


RECIPE = Recipe()

STOPPING_FIELDS = ("version", "steps", "stop_patience_steps", "min_steps", "stop_after_probe")
"""Fields that decide only when a run stops, not what any step computes: a run continues under a recipe that
differs from its own in these alone (`train.carry_over`)."""


@dataclass(frozen=True)
class ZooSpec:
    """One zoo model: which family, which topology, and the config overrides that make it tiny."""

    name: str
    """Zoo name, used as `zoo:NAME`."""
    model_type: str
    """transformers model_type given to AutoConfig.for_model."""
    family: str
    """Family-table key (matches mechhybrid's family table)."""
    topology: str
    """'sequential', 'parallel' or 'pure' (a control)."""
    description: str
    """One line for `zoo list`."""
    config: dict = field(default_factory=dict)
    """Keyword overrides for the config (sizes, layer pattern)."""


_COMMON = dict(vocab_size=VOCAB_SIZE, hidden_size=HIDDEN, tie_word_embeddings=True,
               pad_token_id=0, bos_token_id=1, eos_token_id=2)

ZOO_SPECS: tuple[ZooSpec, ...] = (
    ZooSpec("hybrid-gdn", "qwen3_5_text", "qwen3_5", "sequential",
            "Gated DeltaNet + attention, 3:1 (Qwen3.5-style)",
            dict(num_hidden_layers=4, intermediate_size=320, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=32, linear_num_key_heads=4, linear_num_value_heads=4, linear_key_head_dim=32,
                 linear_value_head_dim=32, linear_conv_kernel_dim=4, max_position_embeddings=2048,
                 layer_types=["linear_attention"] * 3 + ["full_attention"])),
    ZooSpec("hybrid-parallel", "falcon_h1", "falcon_h1", "parallel",
            "Mamba-2 and attention side by side in every block (Falcon-H1-style)",
            dict(num_hidden_layers=4, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=32, mamba_d_ssm=128, mamba_n_heads=4, mamba_d_head=32, mamba_n_groups=1,
                 mamba_d_state=16, mamba_d_conv=4, mamba_expand=1, mamba_chunk_size=64,
                 max_position_embeddings=2048)),
    ZooSpec("hybrid-griffin", "recurrent_gemma", "recurrent_gemma", "sequential",
            "RG-LRU + local attention, 2:1 (RecurrentGemma-style, window 128)",
            dict(num_hidden_layers=4, intermediate_size=768, num_attention_heads=4, num_key_value_heads=2,
                 lru_width=128, attention_window_size=128, conv1d_width=4,
                 block_types=["recurrent", "recurrent", "attention"])),
    ZooSpec("hybrid-jamba", "jamba", "jamba", "sequential",
            "Mamba-1 + attention 3:1, mixture-of-experts MLP every other layer (Jamba-style)",
            dict(num_hidden_layers=4, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
                 attn_layer_period=4, attn_layer_offset=3, num_experts=4, num_experts_per_tok=2,
                 expert_layer_period=2, expert_layer_offset=1, mamba_d_state=16, mamba_d_conv=4,
                 mamba_expand=2, mamba_dt_rank=8, max_position_embeddings=2048)),
    ZooSpec("transformer", "qwen2", "qwen2", "pure",
            "Transformer control (Qwen2-style)",
            dict(num_hidden_layers=4, intermediate_size=384, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=2048)),
    ZooSpec("ssm-mamba2", "mamba2", "mamba2", "pure",
            "Pure state-space control (Mamba-2, 6 layers)",
            dict(num_hidden_layers=6, num_heads=8, head_dim=32, expand=2, state_size=32, n_groups=1,
                 conv_kernel=4, chunk_size=64)),
)


def zoo_spec(name: str) -> ZooSpec:
    """The spec of zoo model `name`; MechHybridError listing the known names otherwise."""
    for spec in ZOO_SPECS:
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in ZOO_SPECS)
    raise MechHybridError(f"unknown zoo recipe {name!r}; known: {known}")


def build_config(spec: ZooSpec):
    """A transformers config for `spec` (AutoConfig.for_model, as a hub checkpoint would carry)."""
    from transformers import AutoConfig

    kwargs = dict(_COMMON)
    kwargs.update(spec.config)
    return AutoConfig.for_model(spec.model_type, **kwargs)


def build_model(spec: ZooSpec, seed: int):
    """A freshly initialised float32 model for `spec`, seeded so that init is reproducible."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(build_config(spec), dtype=torch.float32)


def recipe_dict(recipe: Recipe = RECIPE) -> dict:
    """The recipe as plain JSON (for the model card)."""
    return dataclasses.asdict(recipe)
