"""Statistics with known answers: bootstrap coverage, CKA identities, rank correlation."""

from __future__ import annotations

import numpy as np
import pytest

from analyses.stats import (bootstrap_mean_ci, geometric_mean, linear_cka, median, paired_bootstrap_diff,
                            ppl_ratio_ci, rankdata, spearman, spearman_ci)


def test_bootstrap_ci_covers_the_mean_at_95_percent():
    # 300 seeded experiments of n=60 draws from a skewed distribution with known mean 1.0 (exponential):
    # the percentile bootstrap should cover it in about 95% of them (binomial sd ~1.3 points at 300 runs;
    # percentile intervals at n=60 run slightly narrow on skewed data, hence the lower band).
    rng = np.random.default_rng(12345)
    hits = 0
    runs = 300
    for i in range(runs):
        x = rng.exponential(1.0, size=60)
        _, lo, hi = bootstrap_mean_ci(x, seed=i, n_resamples=1000)
        hits += lo <= 1.0 <= hi
    assert 0.90 <= hits / runs <= 0.98, hits / runs


def test_bootstrap_is_seeded_and_paired():
    x = np.arange(20.0)
    assert bootstrap_mean_ci(x, 3) == bootstrap_mean_ci(x, 3)
    d, lo, hi = paired_bootstrap_diff(x, x, seed=0)
    assert d == lo == hi == 0.0  # identical pairs: every resample differs by exactly 0
    d, lo, hi = paired_bootstrap_diff(x + 1.0, x, seed=0)
    assert d == lo == hi == 1.0  # a constant paired shift has no spread even though x varies a lot


def test_ppl_ratio_of_identical_runs_is_one():
    nll, tok = np.array([10.0, 20.0, 5.0]), np.array([5.0, 8.0, 3.0])
    assert ppl_ratio_ci(nll, tok, nll, tok, seed=0) == (1.0, 1.0, 1.0)


def test_geomean_median():
    assert geometric_mean([1, 100]) == pytest.approx(10.0)
    assert median([1, 3, 1000]) == 3.0
    with pytest.raises(ValueError):
        geometric_mean([1.0, 0.0])


def test_spearman_matches_scipy_with_ties():
    from scipy import stats

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 30), rng.normal(size=30)
    assert rankdata(x) == pytest.approx(stats.rankdata(x))
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    rho, lo, hi = spearman_ci(np.arange(10), np.arange(10) ** 2, seed=0)
    assert rho == 1.0 and lo == hi == 1.0
    assert spearman_ci([1, 2, 3], [3, 2, 1], seed=0)[1:] == (None, None)


def test_cka_identities():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16))
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-10)  # orthogonal transform
    assert linear_cka(x, 7.5 * x) == pytest.approx(1.0, abs=1e-12)  # isotropic scaling
    assert linear_cka(x, x + 3.0) == pytest.approx(1.0, abs=1e-12)  # centred: a shift changes nothing
    y = rng.normal(size=(200, 8))
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x))
    assert 0.0 <= linear_cka(x, y) < 0.2  # independent noise: near 0
