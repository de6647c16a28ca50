"""One tiny, explicit config per supported family: the test-side half of "adding a family".

Sizes are deliberately small (hidden 32, 4 layers) so that every family builds and runs in well under a
second on a CPU; `EXPECTED_LAYERS` is asserted by the tests so that a config that silently grows is caught.
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
