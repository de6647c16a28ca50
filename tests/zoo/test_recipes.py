"""Zoo recipes: one tiny config per family, parameter counts matched within 25%."""

import pytest

from mechhybrid.zoo.recipes import RECIPE, ZOO_SPECS, build_model, zoo_spec
from mechhybrid.errors import MechHybridError

SHIPPED_FAMILIES = {"qwen3_5", "falcon_h1", "recurrent_gemma", "jamba", "qwen2", "mamba2"}


@pytest.fixture(scope="module")
def models():
    return {s.name: build_model(s, seed=0) for s in ZOO_SPECS}


def test_every_required_family_has_a_recipe():
    assert SHIPPED_FAMILIES <= {s.family for s in ZOO_SPECS}
    assert len({s.name for s in ZOO_SPECS}) == len(ZOO_SPECS)


def test_parameter_counts_are_matched_within_25_percent(models):
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    assert all(600_000 <= c <= 900_000 for c in counts.values()), counts
    assert max(counts.values()) / min(counts.values()) <= 1.25, counts


def test_tiny_sizes_and_tied_embeddings(models):
    for name, m in models.items():
        cfg = m.config
        assert (cfg.vocab_size, cfg.hidden_size) == (256, 128), name
        assert cfg.num_hidden_layers == (6 if name == "ssm-mamba2" else 4), name
        assert m.get_output_embeddings().weight is m.get_input_embeddings().weight, name


def test_sequential_gdn_hybrid_is_three_to_one(models):
    types = models["hybrid-gdn"].config.layer_types
    assert types.count("linear_attention") == 3 and types.count("full_attention") == 1


def test_jamba_hybrid_is_mamba_one_and_attention_three_to_one_with_experts(models):
    from transformers.models.jamba.modeling_jamba import JambaMambaMixer, JambaSparseMoeBlock

    model = models["hybrid-jamba"]
    assert model.config.layers_block_type == ["mamba"] * 3 + ["attention"]
    assert sum(isinstance(m, JambaMambaMixer) for m in model.modules()) == 3
    assert sum(isinstance(m, JambaSparseMoeBlock) for m in model.modules()) == 2
    assert model.config.num_experts_per_tok < model.config.num_experts


def test_seeded_init_is_reproducible():
    spec = zoo_spec("transformer")
    a, b = build_model(spec, 3), build_model(spec, 3)
    assert all((p == q).all() for p, q in zip(a.parameters(), b.parameters()))


def test_unknown_recipe_lists_names():
    with pytest.raises(MechHybridError, match="hybrid-gdn"):
        zoo_spec("nope")


def test_recipe_is_one_for_all():
    assert RECIPE.lr == 3e-3 and RECIPE.batch_size == 16 and RECIPE.micro_batch == 4
