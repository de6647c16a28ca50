"""Two tiny, explicit configs per supported family: the test-side half of "adding a family".

`TINY_CONFIGS` is the first shape (hidden 32, 4 layers, defaults elsewhere); `TINY_CONFIGS_ALT` the second, which
moves every layout choice the first one leaves fixed (see its comment). Sizes are deliberately small so that every
family builds and runs in well under a second on a CPU; the component maps are asserted by
tests/core/test_components.py (first shape) and tests/core/test_properties.py (second shape), so that a config
that silently grows or loses what it was meant to exercise is caught.
"""

VOCAB = 97

_COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=4, tie_word_embeddings=False)
_ATTN = dict(num_attention_heads=4, num_key_value_heads=2, head_dim=8)

TINY_CONFIGS: dict[str, dict] = {
    "qwen3_5_text": dict(
        _COMMON, **_ATTN, intermediate_size=48,
        layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"],
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=8,
        linear_conv_kernel_dim=4,
    ),
    "qwen3_next": dict(
        _COMMON, **_ATTN, intermediate_size=48,
        layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"],
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=8,
        linear_conv_kernel_dim=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
        shared_expert_intermediate_size=16, decoder_sparse_step=1,
    ),
    "falcon_h1": dict(
        _COMMON, **_ATTN, intermediate_size=48, mamba_d_ssm=32, mamba_n_heads=4, mamba_d_head=8,
        mamba_n_groups=1, mamba_d_state=8, mamba_d_conv=4, mamba_expand=1, mamba_chunk_size=8,
    ),
    "jamba": dict(
        _COMMON, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48, num_experts=4,
        num_experts_per_tok=2, expert_layer_period=2, expert_layer_offset=1, attn_layer_period=2,
        attn_layer_offset=1, mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=4,
    ),
    "recurrent_gemma": dict(
        _COMMON, num_attention_heads=4, num_key_value_heads=4, head_dim=8, intermediate_size=48,
        lru_width=32, attention_window_size=16, conv1d_width=4,
        block_types=["recurrent", "recurrent", "attention"],
    ),
    "zamba2": dict(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=4, tie_word_embeddings=False,
        layers_block_type=["mamba", "hybrid", "mamba", "hybrid"], hybrid_layer_ids=[1, 3],
        mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_ngroups=1, n_mamba_heads=4,
        mamba_headdim=16, chunk_size=8, intermediate_size=48,
        num_attention_heads=4, num_key_value_heads=4, attention_head_dim=16, attention_hidden_size=64,
        num_mem_blocks=1, use_shared_attention_adapter=False, use_shared_mlp_adapter=False,
    ),
    "nemotron_h": dict(
        vocab_size=VOCAB, hidden_size=32, tie_word_embeddings=False,
        layers_block_type=["mamba", "attention", "mlp", "moe"], num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, intermediate_size=48, ssm_state_size=8, mamba_num_heads=4,
        mamba_head_dim=8, n_groups=1, conv_kernel=4, chunk_size=8,
        n_routed_experts=4, n_shared_experts=1, moe_intermediate_size=16,
        moe_shared_expert_intermediate_size=16, num_experts_per_tok=2, n_group=1, topk_group=1,
    ),
    "bamba": dict(
        _COMMON, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
        attn_layer_indices=[1, 3], mamba_n_heads=4, mamba_d_head=16, mamba_n_groups=1, mamba_d_state=8,
        mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=8,
    ),
    "granitemoehybrid": dict(
        _COMMON, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
        layer_types=["mamba", "attention", "mamba", "attention"], num_local_experts=4,
        num_experts_per_tok=2, shared_intermediate_size=32, mamba_n_heads=4, mamba_d_head=16,
        mamba_n_groups=1, mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_chunk_size=8,
    ),
    "lfm2": dict(
        _COMMON, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
        layer_types=["conv", "conv", "full_attention", "conv"], conv_L_cache=3, block_auto_adjust_ff_dim=False,
    ),
    "mamba2": dict(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=4, tie_word_embeddings=False, num_heads=4,
        head_dim=16, expand=2, state_size=8, n_groups=1, conv_kernel=4, chunk_size=8,
    ),
    "qwen2": dict(_COMMON, **_ATTN, intermediate_size=48),
    "llama": dict(_COMMON, **_ATTN, intermediate_size=48),
    "gpt2": dict(vocab_size=VOCAB, n_embd=32, n_layer=4, n_head=4, n_positions=128, tie_word_embeddings=False),
}

# The second shape: everything the first set keeps at its default or at one value moves, so that an exactness
# test that only holds for one layout fails on one of the two. Hidden 48; GQA ratio 3 (6 query heads on 2 key/value
# heads) wherever the family has GQA; attention first or in the middle instead of last; every multiplier the config
# offers away from 1; bias flags on; short convolutions of width 3; Mamba-2 with 2 groups and chunks of 4 (and, in
# mamba2, a dt limit that binds); recurrent_gemma's attention window (4) shorter than every test sequence (>= 5).
_COMMON_ALT = dict(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=4, tie_word_embeddings=False)
_GQA3 = dict(num_attention_heads=6, num_key_value_heads=2)
_MAMBA2_ALT = dict(mamba_n_heads=6, mamba_d_head=16, mamba_n_groups=2, mamba_d_state=8, mamba_d_conv=3,
                   mamba_expand=2, mamba_chunk_size=4, mamba_conv_bias=False, mamba_proj_bias=True)
_GDN_ALT = dict(linear_num_key_heads=2, linear_num_value_heads=6, linear_key_head_dim=8, linear_value_head_dim=4,
                linear_conv_kernel_dim=3)

TINY_CONFIGS_ALT: dict[str, dict] = {
    "qwen3_5_text": dict(
        _COMMON_ALT, **_GQA3, **_GDN_ALT, head_dim=8, intermediate_size=64, attention_bias=True,
        layer_types=["full_attention", "linear_attention", "full_attention", "linear_attention"],
    ),
    "qwen3_next": dict(
        _COMMON_ALT, **_GQA3, **_GDN_ALT, head_dim=8, intermediate_size=64, attention_bias=True,
        layer_types=["linear_attention", "full_attention", "linear_attention", "linear_attention"],
        num_experts=6, num_experts_per_tok=3, moe_intermediate_size=12, shared_expert_intermediate_size=20,
        decoder_sparse_step=1, mlp_only_layers=[2], norm_topk_prob=False,
    ),
    "falcon_h1": dict(
        _COMMON_ALT, **_GQA3, intermediate_size=64, mamba_d_ssm=48, mamba_n_heads=6, mamba_d_head=8,
        mamba_n_groups=2, mamba_d_state=8, mamba_d_conv=3, mamba_expand=1, mamba_chunk_size=4,
        mamba_conv_bias=False, mamba_proj_bias=True, mamba_rms_norm=True, mamba_norm_before_gate=False,
        attention_bias=True, mlp_bias=True, projectors_bias=True,
        embedding_multiplier=2.0, lm_head_multiplier=0.5, key_multiplier=0.8, attention_in_multiplier=1.3,
        attention_out_multiplier=0.6, ssm_in_multiplier=1.2, ssm_out_multiplier=1.7,
        ssm_multipliers=[0.9, 1.1, 1.2, 0.8, 1.05], mlp_multipliers=[0.7, 1.5],
    ),
    "jamba": dict(
        _COMMON_ALT, **_GQA3, intermediate_size=64, num_experts=3, num_experts_per_tok=2, expert_layer_period=2,
        expert_layer_offset=0, attn_layer_period=3, attn_layer_offset=0, mamba_d_state=4, mamba_d_conv=3,
        mamba_expand=2, mamba_dt_rank=6, mamba_conv_bias=False, mamba_proj_bias=True,
    ),
    "recurrent_gemma": dict(
        _COMMON_ALT, **_GQA3, intermediate_size=64, lru_width=24, attention_window_size=4, conv1d_width=3,
        block_types=["attention", "recurrent"], logits_soft_cap=5.0, attention_bias=True,
    ),
    "zamba2": dict(
        vocab_size=VOCAB, hidden_size=48, num_hidden_layers=4, tie_word_embeddings=False,
        layers_block_type=["hybrid", "hybrid", "mamba", "hybrid"], hybrid_layer_ids=[0, 1, 3],
        mamba_d_state=8, mamba_d_conv=3, mamba_expand=2, mamba_ngroups=2, n_mamba_heads=6, mamba_headdim=16,
        chunk_size=4, intermediate_size=64, **_GQA3, attention_head_dim=16, attention_hidden_size=96,
        # transformers' shared attention adapters assume as many key/value heads as query heads, so only the MLP
        # adapters are on (GQA is the case the first set lacks).
        num_mem_blocks=2, use_shared_attention_adapter=False, use_shared_mlp_adapter=True, adapter_rank=4,
        add_bias_linear=True, use_mem_rope=True,
    ),
    "nemotron_h": dict(
        vocab_size=VOCAB, hidden_size=48, tie_word_embeddings=False,
        layers_block_type=["attention", "moe", "mamba", "mlp", "mamba"], **_GQA3, head_dim=8,
        intermediate_size=64, ssm_state_size=8, mamba_num_heads=6, mamba_head_dim=8, n_groups=2, conv_kernel=3,
        chunk_size=4, n_routed_experts=3, n_shared_experts=1, moe_intermediate_size=12,
        moe_shared_expert_intermediate_size=20, num_experts_per_tok=2, n_group=1, topk_group=1,
        routed_scaling_factor=2.5, norm_topk_prob=False, attention_bias=True, mlp_bias=True, use_bias=True,
        use_conv_bias=False,
    ),
    "bamba": dict(
        _COMMON_ALT, **_GQA3, **_MAMBA2_ALT, intermediate_size=64, attn_layer_indices=[0, 2],
        attention_bias=True, mlp_bias=True,
    ),
    "granitemoehybrid": dict(
        _COMMON_ALT, **_GQA3, **_MAMBA2_ALT, intermediate_size=64,
        layer_types=["attention", "mamba", "mamba", "attention"], num_local_experts=3, num_experts_per_tok=2,
        shared_intermediate_size=40, attention_bias=True, position_embedding_type="rope",
        embedding_multiplier=4.0, residual_multiplier=0.5, attention_multiplier=0.2, logits_scaling=2.5,
    ),
    "lfm2": dict(
        _COMMON_ALT, **_GQA3, intermediate_size=72, conv_L_cache=4, conv_bias=True,
        layer_types=["full_attention", "conv", "full_attention", "conv"], block_auto_adjust_ff_dim=True,
        block_multiple_of=16, block_ffn_dim_multiplier=1.5,
    ),
    "mamba2": dict(
        vocab_size=VOCAB, hidden_size=48, num_hidden_layers=4, tie_word_embeddings=False, num_heads=6,
        head_dim=16, expand=2, state_size=8, n_groups=2, conv_kernel=3, chunk_size=4, use_bias=True,
        use_conv_bias=False, time_step_limit=(0.0, 0.1),
    ),
    "qwen2": dict(
        _COMMON_ALT, **_GQA3, intermediate_size=64, use_sliding_window=True, sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
    ),
    "llama": dict(_COMMON_ALT, **_GQA3, head_dim=12, intermediate_size=64, attention_bias=True, mlp_bias=True),
    "gpt2": dict(
        vocab_size=VOCAB, n_embd=48, n_layer=4, n_head=6, n_inner=80, n_positions=64, tie_word_embeddings=False,
        activation_function="gelu", scale_attn_by_inverse_layer_idx=True,
    ),
}
