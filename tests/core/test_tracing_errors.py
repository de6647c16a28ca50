"""Bad sweep input gives one MechHybridError line that names the problem, before any patched run."""

from __future__ import annotations

import pytest
import torch

from mechhybrid.errors import MechHybridError
from mechhybrid.interventions import Capture, Patch, Residual
from mechhybrid.tracing import Embeddings, Head, LogitDiff, StateSite, sweep
from tests.conftest import random_ids


def _fails(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(MechHybridError, match=match) as caught:
        fn(*args, **kwargs)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    return message


@pytest.fixture
def gdn(tiny_models):
    return tiny_models("qwen3_5_text")[1]


def test_pairs_of_different_lengths(gdn):
    metric = lambda logits: logits[:, 0].mean()
    _fails("pair 1: clean prompt has 5 tokens, corrupted 4", sweep, gdn, [[1, 2, 3], [4, 5, 6, 7, 8]],
           [[1, 2, 4], [4, 5, 6, 9]], "components", metric)
    ids = random_ids(2, 5, 0)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]])
    _fails("pair 1: clean prompt has 5 tokens, corrupted 4", sweep, gdn, ids, ids, "components", metric,
           corrupted_mask=mask)
    _fails("clean has 2 rows, corrupted 1", sweep, gdn, ids, ids[:1], "components", metric)


def test_answers_that_do_not_differ(gdn):
    clean, corrupted = random_ids(2, 5, 1), random_ids(2, 5, 2)
    _fails(r"pair 1: clean answer \[4, 5\] and corrupted answer \[4, 5\] are the same", sweep, gdn, clean,
           corrupted, "components", LogitDiff([[3, 5], [4, 5]], [[6, 5], [4, 5]]))
    _fails("one a prefix of the other", sweep, gdn, clean, corrupted, "components", LogitDiff([3, [4, 5]], [6, [4]]))
    _fails("answers: 1 rows; the prompts have 2", sweep, gdn, clean, corrupted, "components", LogitDiff([3], [4]))


def test_empty_selections(gdn):
    clean, corrupted = random_ids(2, 5, 1), random_ids(2, 5, 2)
    metric = lambda logits: logits[:, 0].mean()
    _fails("empty site selection", sweep, gdn, clean, corrupted, [], metric)
    _fails("empty site selection", sweep, gdn, clean, corrupted, [()], metric)
    _fails("empty position selection", sweep, gdn, clean, corrupted, "components", metric, positions=[])
    _fails("unknown site set 'comps'", sweep, gdn, clean, corrupted, "comps", metric)


def test_metric_that_is_not_a_scalar(gdn):
    clean, corrupted = random_ids(2, 5, 1), random_ids(2, 5, 2)
    _fails(r"metric rowwise returned shape \(2,\); a metric must return one number", sweep, gdn, clean, corrupted,
           "components", lambda_named("rowwise", lambda logits: logits[:, 0]))
    _fails("metric must be a Metric", sweep, gdn, clean, corrupted, "components", "logit_diff")


def lambda_named(name: str, fn):
    fn.__name__ = name
    return fn


def test_sites_positions_and_options(gdn, tiny_models):
    clean, corrupted = random_ids(2, 5, 1), random_ids(2, 5, 2)
    metric = lambda logits: logits[:, 0].mean()
    mlp = gdn.components.by_kind("mlp")[0]
    _fails("L0.mlp.h0: L0.mlp \\(mlp\\) has no heads", sweep, gdn, clean, corrupted, [Head(mlp, 0)], metric)
    _fails("head out of range", sweep, gdn, clean, corrupted, [Head(gdn.components[0], 9)], metric)
    _fails("layer 3 has no recurrent state", sweep, gdn, clean, corrupted, [StateSite(3)], metric)
    _fails("L7.resid_pre: layer 7 out of range", sweep, gdn, clean, corrupted, [Residual(7)], metric)
    other = tiny_models("llama")[1].components[0]
    _fails("is not a component of this model", sweep, gdn, clean, corrupted, [other], metric)
    _fails("not a site: str", sweep, gdn, clean, corrupted, ["L0.mlp"], metric)
    _fails("position 5 out of range for row 0", sweep, gdn, clean, corrupted, [Embeddings()], metric, positions=[5])
    _fails("unknown direction 'both'", sweep, gdn, clean, corrupted, "components", metric, direction="both")
    _fails("max_rows must be >= 1", sweep, gdn, clean, corrupted, "components", metric, max_rows=0)
    _fails("score the same", sweep, gdn, clean, clean, "components", LogitDiff([3, 4], [5, 6]))


def test_residual_targets_in_interventions(gdn):
    ids = random_ids(1, 4, 0)
    _fails("Residual where='mid'", Residual, 1, "mid")
    _fails("Patch heads applies to components with heads, not to L1.resid_pre", Patch, [Residual(1)], ids, heads=[0])
    _fails("Capture per_head applies to components with heads", Capture, [Residual(1)], per_head=True)
    _fails("L9.resid_post: layer 9 out of range", gdn.run, ids, [Capture([Residual(9, "post")])])
