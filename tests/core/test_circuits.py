"""Edge circuits against independent references, on tiny random models of six families (and the path-patching
identities on every family but zamba2, which is refused).

The reference shares no code with mechhybrid.circuits: a test-side table names the norm each component reads
(and falcon_h1's multipliers, set away from 1 here); sender values are read with plain torch hooks (a head: its
slice of the output projection's input times its columns of the projection); an edge u -> v is injected with a
plain pre-hook that gives v alone `in_scale * norm(residual + eps * (source_u - base_u))`, and its score is
d metric / d eps at 0 by autograd (one edge ablated is the same forward at eps = 1). The metric is the logit
difference of the full transformers model's logits at the last token.
"""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

import mechhybrid
from mechhybrid.circuits import (EdgeScores, circuit_graph, discover, edge_scores, faithfulness, graph_counts,
                                 prune, random_keeps, state_nodes)
from mechhybrid.errors import MechHybridError, UnsupportedFamilyError
from mechhybrid.tracing import LogitDiff, StateSite, attribute
from tests.conftest import build_tiny, random_ids
from tests.core.reference import first, resolve
from tests.tiny_configs import TINY_CONFIGS

FAMILIES = ("llama", "qwen3_5_text", "mamba2", "falcon_h1", "jamba", "recurrent_gemma")
NORMS = {  # family -> component kind -> the norm (inside the decoder layer) whose output it reads
    "llama": {"attention": "input_layernorm", "mlp": "post_attention_layernorm"},
    "qwen3_5_text": {"attention": "input_layernorm", "linear_attention": "input_layernorm",
                     "mlp": "post_attention_layernorm"},
    "mamba2": {"ssm": "norm"},
    "falcon_h1": {"ssm": "input_layernorm", "attention": "input_layernorm", "mlp": "pre_ff_layernorm"},
    "jamba": {"ssm": "input_layernorm", "attention": "input_layernorm", "mlp": "pre_ff_layernorm"},
    "recurrent_gemma": {"recurrent": "temporal_pre_norm", "attention": "temporal_pre_norm",
                        "mlp": "channel_pre_norm"},
}
FALCON = dict(attention_in_multiplier=0.5, ssm_out_multiplier=0.7, attention_out_multiplier=1.3)
"""falcon_h1's multipliers away from 1, so that a wrong scale shows."""
ANSWERS, WRONG = [[3], [4]], [[5], [6]]


def _model(family: str):
    if family != "falcon_h1":
        return build_tiny(family)
    torch.manual_seed(0)
    config = AutoConfig.for_model("falcon_h1", **{**TINY_CONFIGS["falcon_h1"], **FALCON})
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(family):
        if family not in cache:
            hf = _model(family)
            cache[family] = (hf, mechhybrid.load(hf))
        return cache[family]

    return get


def written_and_read_back(hm, graph, tmp_path):
    """`graph` attached to a Result, written, and read back: (the graph read back, the GraphML file's path)."""
    from analyses.common import library_versions, model_info
    from analyses.schema import Result, Row
    from mechhybrid.results import read_side, write_result

    result = Result("circuits", model_info(hm), {}, "patch", [], 0, library_versions(),
                    [Row("circuit", "patch", "faithfulness", 1.0)])
    result.attach("circuit", graph)
    write_result(result, tmp_path)
    return read_side(result, "circuit", tmp_path), next(tmp_path.rglob("*.graphml"))


def _pairs():
    clean = random_ids(2, 7, 1)
    corrupted = clean.clone()
    corrupted[:, 2] = (corrupted[:, 2] + 5) % 97
    return clean, corrupted


def _raw(logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows of logit(answer) - logit(wrong) at the last token."""
    last = logits[:, -1].float()
    return (last[0, 3] - last[0, 5] + last[1, 4] - last[1, 6]) / 2


def _layers(hf, family):
    return resolve(hf, "backbone.layers" if family == "mamba2" else "model.layers")


def _scale_in(family, c) -> float:
    return FALCON["attention_in_multiplier"] if family == "falcon_h1" and c.kind == "attention" else 1.0


def _scale_out(family, c) -> float:
    if family != "falcon_h1" or c.kind == "mlp":
        return 1.0
    return FALCON["ssm_out_multiplier"] if c.kind == "ssm" else FALCON["attention_out_multiplier"]


def _sender_value(hf, hm, family, sender, ids) -> torch.Tensor:
    """`[batch, seq, d_model]` the sender's residual contribution, read with a plain hook."""
    seen = {}
    keep = seen.__setitem__  # returns None: the hooks change nothing
    if sender.component is None:
        module = _layers(hf, family)[0]
        handle = module.register_forward_pre_hook(lambda m, a, k: keep("x", a[0] if a else next(iter(k.values()))),
                                                  with_kwargs=True)
    elif sender.head is None:
        module = resolve(hf, sender.component.path)
        handle = module.register_forward_hook(lambda m, a, o: keep("x", first(o)))
    else:
        module = resolve(hf, sender.component.out_proj)
        handle = module.register_forward_pre_hook(lambda m, a: keep("x", a[0]))
    try:
        with torch.no_grad():
            hf(ids)
    finally:
        handle.remove()
    x = seen["x"]
    if sender.component is None:
        return x
    scale = _scale_out(family, sender.component)
    if sender.head is None:
        return x * scale
    weight = module.weight  # [d_model, heads * head_dim]
    width = weight.shape[1] // sender.component.n_heads
    part = slice(sender.head * width, (sender.head + 1) * width)
    return x[..., part] @ weight[:, part].T * scale


def _injected(hf, family, receiver, direction, ids, eps):
    """Logits with receiver alone reading its residual + eps * direction."""
    if receiver.component is None:
        norm = resolve(hf, "backbone.norm_f" if family == "mamba2" else (
            "model.final_norm" if family == "recurrent_gemma" else (
                "model.norm" if family in ("llama", "qwen3_5_text") else "model.final_layernorm")))
        handle = norm.register_forward_pre_hook(lambda m, a: (a[0] + eps * direction,))
        try:
            return hf(ids).logits
        finally:
            handle.remove()
    c = receiver.component
    norm = getattr(_layers(hf, family)[c.layer], NORMS[family][c.kind])
    seen = {}
    h1 = norm.register_forward_pre_hook(lambda m, a: seen.__setitem__("r", a[0]))

    def replace(m, args, kwargs):
        new = norm.forward(seen["r"] + eps * direction) * _scale_in(family, c)
        if args:
            return (new, *args[1:]), kwargs
        key = next(iter(kwargs))
        return args, {**kwargs, key: new}

    h2 = resolve(hf, c.path).register_forward_pre_hook(replace, with_kwargs=True)
    try:
        return hf(ids).logits
    finally:
        h1.remove()
        h2.remove()


def _picked_edges(wiring) -> list[tuple[int, int]]:
    """The embedding into the first receiver, a head (or the first mixer) into a later mixer and into the logits,
    the last MLP into the logits."""
    edges = wiring.edges()
    names = [(wiring.senders[i].name, wiring.receivers[j].name) for i, j in edges]
    heads = [k for k, (i, j) in enumerate(edges) if wiring.senders[i].head is not None]
    mixers = [k for k, (i, j) in enumerate(edges) if wiring.senders[i].component is not None]
    chosen = {0, len(edges) - 1}
    pool = heads or mixers
    chosen |= {pool[0], pool[len(pool) // 2], pool[-1]}
    assert len(names) == len(set(names))
    return [edges[k] for k in sorted(chosen)]


@pytest.mark.parametrize("family", FAMILIES)
def test_edge_scores_equal_first_order_term(models, family):
    hf, hm = models(family)
    clean, corrupted = _pairs()
    scores = edge_scores(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG))
    assert scores.work == 3
    for i, j in _picked_edges(scores.wiring):
        sender, receiver = scores.wiring.senders[i], scores.wiring.receivers[j]
        direction = (_sender_value(hf, hm, family, sender, corrupted)
                     - _sender_value(hf, hm, family, sender, clean)).detach()
        eps = torch.zeros((), requires_grad=True)
        with torch.enable_grad():
            value = _raw(_injected(hf, family, receiver, direction, clean, eps))
            (grad,) = torch.autograd.grad(value, eps)
        assert abs(float(scores.raw[i, j]) - float(grad)) < 1e-5, (sender.name, receiver.name)
    gap = scores.clean_metric - scores.corrupted_metric
    assert torch.allclose(scores.values, scores.raw / gap)


@pytest.mark.parametrize("family", FAMILIES)
def test_path_patching_identities(models, family):
    hf, hm = models(family)
    clean, corrupted = _pairs()
    metric = LogitDiff(ANSWERS, WRONG)
    wiring = discover(hm)
    one = wiring.edges()[len(wiring.edges()) // 2]
    minus_one = wiring.valid.clone()
    minus_one[one] = False
    keeps = torch.stack([wiring.valid, torch.zeros_like(wiring.valid), minus_one])
    measured = faithfulness(hm, clean, corrupted, metric, keeps, wiring=wiring)
    with torch.no_grad():
        clean_raw, corrupted_raw = float(_raw(hf(clean).logits)), float(_raw(hf(corrupted).logits))
        sender, receiver = wiring.senders[one[0]], wiring.receivers[one[1]]
        direction = (_sender_value(hf, hm, family, sender, corrupted)
                     - _sender_value(hf, hm, family, sender, clean))
        one_raw = float(_raw(_injected(hf, family, receiver, direction, clean, 1.0)))
    assert abs(measured.raw[0] - clean_raw) < 1e-4
    assert abs(measured.raw[1] - corrupted_raw) < 1e-4
    assert abs(measured.raw[2] - one_raw) < 1e-4
    assert measured.forwards == 2 + 3  # the clean and corrupted runs (the latter also gives the patched values)


@pytest.mark.parametrize("tokens", [2048, 28, 1])
def test_eap_ig_equals_averaged_gradient(models, monkeypatch, tokens):
    """EAP-IG with 3 steps against the same reference, the token embeddings moved by hand: the midpoints stacked
    in one forward (2048 tokens), split over forwards of at most 28 tokens (2 rows of 7 tokens: 2 midpoints, then
    1), and one midpoint a forward (a budget below one midpoint's rows)."""
    import mechhybrid.circuits.scores as scores_module

    monkeypatch.setattr(scores_module, "IG_TOKENS", tokens)
    hf, hm = models("falcon_h1")
    clean, corrupted = _pairs()
    steps = 3
    scores = edge_scores(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG), method="eap-ig", ig_steps=steps)
    assert scores.work == 2 + 2 * steps
    embed = hf.get_input_embeddings()
    with torch.no_grad():
        base, source = embed(clean), embed(corrupted)
    largest = divmod(int(scores.raw.abs().argmax()), scores.raw.shape[1])  # where the midpoints' gradients differ most
    for i, j in _picked_edges(scores.wiring)[:3] + [largest]:
        sender, receiver = scores.wiring.senders[i], scores.wiring.receivers[j]
        direction = (_sender_value(hf, hm, "falcon_h1", sender, corrupted)
                     - _sender_value(hf, hm, "falcon_h1", sender, clean)).detach()
        total = 0.0
        for alpha in (1 / 6, 1 / 2, 5 / 6):
            handle = embed.register_forward_hook(lambda m, a, o, alpha=alpha: base + alpha * (source - base))
            eps = torch.zeros((), requires_grad=True)
            try:
                with torch.enable_grad():
                    value = _raw(_injected(hf, "falcon_h1", receiver, direction, clean, eps))
                    total += float(torch.autograd.grad(value, eps)[0]) / steps
            finally:
                handle.remove()
        assert abs(float(scores.raw[i, j]) - total) < 1e-5


def test_parallel_branches_are_separate_receivers(models):
    """falcon_h1: attention and Mamba of a layer read one normed residual but are two receivers, neither
    feeding the other; per-head senders of both; the attention's input scale found."""
    hf, hm = models("falcon_h1")
    wiring = discover(hm)
    names = [r.name for r in wiring.receivers]
    assert names[:3] == ["L0.ssm", "L0.attention", "L0.mlp"]
    assert [r.in_scale for r in wiring.receivers[:3]] == [1.0, pytest.approx(0.5), 1.0]
    senders = [s.name for s in wiring.senders]
    assert len(senders) == 1 + 4 * (4 + 4 + 1)  # embed + per layer 4 Mamba heads, 4 attention heads, the MLP
    for i, s in enumerate(wiring.senders):
        for j, r in enumerate(wiring.receivers):
            if s.layer == r.layer and s.kind in ("ssm", "attention") and r.kind in ("ssm", "attention"):
                assert not wiring.valid[i, j]
            if s.layer == r.layer and s.kind != "mlp" and r.kind == "mlp":
                assert wiring.valid[i, j]


def test_state_nodes_equal_tracing_state_attribution(models):
    hf, hm = models("qwen3_5_text")
    clean, corrupted = _pairs()
    metric = LogitDiff(ANSWERS, WRONG)
    nodes = state_nodes(hm, clean, corrupted, metric)
    assert sorted({n.position for n in nodes}) == [2, 5]  # the swapped token, the token before the last
    for node in nodes:
        ref = attribute(hm, clean, corrupted, [StateSite(node.layer)], metric, positions=[node.position],
                        direction="noise")
        gap = ref.clean_metric - ref.corrupted_metric  # compared in the metric's units: the gap is small here
        assert abs(node.raw - (float(ref.values[0, 0]) - 1.0) * gap) < 1e-6


def test_graph_round_trips_through_json_and_graphml(models, tmp_path):

    hf, hm = models("mamba2")
    clean, corrupted = _pairs()
    metric = LogitDiff(ANSWERS, WRONG)
    scores = edge_scores(hm, clean, corrupted, metric)
    graph = circuit_graph(scores, prune(scores, top_n=8), state_nodes(hm, clean, corrupted, metric))
    counts = graph_counts(graph)
    assert counts["edges"] == 8 and counts["heads"] >= 1
    back, graphml = written_and_read_back(hm, graph, tmp_path)
    for other in (back, nx.read_graphml(graphml)):
        assert dict(other.nodes(data=True)) == dict(graph.nodes(data=True))
        assert {(u, v): d for u, v, d in other.edges(data=True)} == {(u, v): d for u, v, d in
                                                                     graph.edges(data=True)}


def test_prune_targets(models):
    hf, hm = models("llama")
    clean, corrupted = _pairs()
    scores = edge_scores(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG))
    magnitude = scores.values.abs()
    keep = prune(scores, fraction=0.5)
    kept = magnitude[keep].sum() / magnitude.sum()
    assert kept >= 0.5
    smallest = magnitude[keep].min()
    assert magnitude[keep].sum() - smallest < 0.5 * magnitude.sum()  # one edge fewer would not reach it
    assert int(prune(scores, top_n=5).sum()) == 5
    assert bool((prune(scores, fraction=1.0) == (magnitude > 0)).all())
    top = prune(scores, top_n=3)
    assert float(magnitude[top].min()) >= float(magnitude[~top].max())


@pytest.mark.parametrize("kwargs", [dict(fraction=0.0), dict(fraction=1.5), dict(fraction=-0.2),
                                    dict(fraction=math.nan), dict(top_n=0), dict(), dict(top_n=2, fraction=0.5)])
def test_bad_targets_are_one_line(models, kwargs):
    hf, hm = models("llama")
    clean, corrupted = _pairs()
    scores = edge_scores(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG))
    with pytest.raises(MechHybridError) as info:
        prune(scores, **kwargs)
    assert "\n" not in str(info.value)


def test_empty_graph_and_bad_inputs_are_one_line(models):
    hf, hm = models("llama")
    clean, corrupted = _pairs()
    scores = edge_scores(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG))
    zero = EdgeScores(**{**scores.__dict__, "values": torch.zeros_like(scores.values)})
    checks = [lambda: prune(zero, top_n=5), lambda: prune(zero, fraction=0.5),
              lambda: edge_scores(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG), method="acdc"),
              lambda: edge_scores(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG), method="eap-ig", ig_steps=0),
              lambda: faithfulness(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG), scores.wiring.valid[None],
                                   ablation="zero"),
              lambda: random_keeps(scores.wiring.valid, 10_000, 1, 0),
              lambda: state_nodes(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG), positions=[99])]
    for check in checks:
        with pytest.raises(MechHybridError) as info:
            check()
        assert "\n" not in str(info.value)
    assert "empty" in str(pytest.raises(MechHybridError, prune, zero, top_n=5).value)


def test_parameters_keep_their_requires_grad(models):
    """Scoring freezes the weights while it runs (autograd then records only the receivers' paths) and gives every
    parameter back its own flag, also when the metric fails midway."""
    hf, hm = models("llama")
    clean, corrupted = _pairs()
    params = list(hf.parameters())
    params[0].requires_grad_(False)  # a parameter frozen by the caller stays frozen
    before = [p.requires_grad for p in params]

    def broken(logits):
        raise MechHybridError("broken metric")

    try:
        edge_scores(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG), method="eap-ig", ig_steps=2)
        assert [p.requires_grad for p in params] == before
        with pytest.raises(MechHybridError):
            edge_scores(hm, clean, corrupted, broken)
        assert [p.requires_grad for p in params] == before
    finally:
        params[0].requires_grad_(True)


def test_zamba2_refused_in_one_line():
    hm = mechhybrid.load(build_tiny("zamba2"))
    with pytest.raises(UnsupportedFamilyError) as info:
        discover(hm)
    assert "\n" not in str(info.value) and "residual stream" in str(info.value)


def test_mean_ablation_and_random_circuits(models):
    hf, hm = models("mamba2")
    clean, corrupted = _pairs()
    wiring = discover(hm)
    keeps = random_keeps(wiring.valid, 5, 3, seed=1)
    assert keeps.sum((1, 2)).tolist() == [5, 5, 5] and not bool((keeps & ~wiring.valid).any())
    assert torch.equal(keeps, random_keeps(wiring.valid, 5, 3, seed=1))
    measured = faithfulness(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG), torch.cat([wiring.valid[None], keeps]),
                            ablation="mean", wiring=wiring, max_rows=4)
    assert abs(float(measured.values[0]) - 1.0) < 1e-4  # nothing ablated is the clean run, whatever the values
    assert measured.values.shape == (4,)


OTHER_FAMILIES = tuple(f for f in TINY_CONFIGS if f not in FAMILIES and f != "zamba2")
"""The families without a test-side norm table: the path-patching identities need none (zamba2 is refused)."""


@pytest.mark.parametrize("family", OTHER_FAMILIES)
def test_keeping_or_ablating_every_edge_in_every_other_family(models, family):
    """Every edge kept is the clean run, every edge ablated the corrupted run, measured against the plain model."""
    hf, hm = models(family)
    clean, corrupted = _pairs()
    wiring = discover(hm)
    keeps = torch.stack([wiring.valid, torch.zeros_like(wiring.valid)])
    measured = faithfulness(hm, clean, corrupted, LogitDiff(ANSWERS, WRONG), keeps, wiring=wiring)
    with torch.no_grad():
        clean_raw, corrupted_raw = float(_raw(hf(clean).logits)), float(_raw(hf(corrupted).logits))
    assert abs(measured.raw[0] - clean_raw) < 1e-4 and abs(measured.raw[1] - corrupted_raw) < 1e-4
