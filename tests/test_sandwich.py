"""Tests of analysis.sandwich: the one cluster-robust sandwich and its small-sample factor.

Its use in every estimator is checked against R in ``test_coxph.py``, ``test_survival.py``
and ``test_counts.py`` (``sandwich::vcovCL(type = "HC0", cadjust = TRUE)``, and survival's
factor-free robust variances times G / (G - 1)); here the helper itself, by hand.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from analysis.sandwich import (
    FEW_CLUSTERS,
    FewClustersWarning,
    cluster_check,
    cluster_covariance,
    cluster_variance,
    count_clusters,
    small_sample_factor,
)


def test_factor_and_counts():
    assert small_sample_factor(2) == 2.0
    assert small_sample_factor(400) == pytest.approx(400 / 399)
    assert np.isnan(small_sample_factor(1)) and np.isnan(small_sample_factor(0))
    assert count_clusters(np.array([0, 0, 3, 3, 5])) == 3  # codes with gaps
    assert count_clusters(np.array([], dtype=int)) == 0


def test_variance_by_hand():
    """Totals (1 + 2, -3, 0.5) -> sum of squares 9 + 9 + 0.25, times 3 / 2."""
    contrib = np.array([1.0, 2.0, -3.0, 0.5])
    codes = np.array([0, 0, 4, 7])
    var, g = cluster_variance(contrib, codes)
    assert g == 3
    assert float(var) == pytest.approx(1.5 * 18.25)
    raw, _ = cluster_variance(contrib, codes, small_sample=False)
    assert float(raw) == pytest.approx(18.25)


def test_one_cluster_gives_nan_not_zero():
    """Scores that sum to zero: with one cluster the factor-free sandwich is exactly 0."""
    scores = np.array([[1.0, -2.0], [-1.0, 2.0]])
    cov, g = cluster_covariance(scores, np.array([0, 0]))
    assert g == 1 and np.isnan(cov).all()
    var, _ = cluster_variance(scores[:, 0], np.array([0, 0]))
    assert np.isnan(var)


@pytest.mark.parametrize("k", [3, 100])  # column-by-column and sorted paths
def test_wide_and_narrow_paths_agree(k):
    rng = np.random.default_rng(1)
    contrib = rng.normal(size=(500, k))
    codes = rng.integers(0, 60, 500) * 2  # gaps
    var, g = cluster_variance(contrib, codes)
    totals = np.vstack([contrib[codes == c].sum(axis=0) for c in np.unique(codes)])
    np.testing.assert_allclose(var, g / (g - 1) * (totals**2).sum(axis=0), rtol=1e-12)
    bread = np.eye(k) * 2.0
    cov, _ = cluster_covariance(contrib, codes, bread=bread)
    np.testing.assert_allclose(cov, 4 * g / (g - 1) * totals.T @ totals, rtol=1e-12)
    per_row, n = cluster_variance(contrib, np.arange(500))
    np.testing.assert_allclose(per_row, 500 / 499 * (contrib**2).sum(axis=0), rtol=1e-12)
    assert n == 500


def test_cluster_check():
    assert cluster_check(1).startswith("not estimable")
    assert cluster_check(0).startswith("not estimable")
    with pytest.warns(FewClustersWarning, match="only 5 clusters"):
        note = cluster_check(5, what="matched sets")
    assert "matched sets" in note
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cluster_check(FEW_CLUSTERS) is None


def _poisson_clusters(seed: int = 11, n_clusters: int = 12):
    """Clustered Poisson data and the fitted GLM's pieces (Newton, canonical link)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 6, n_clusters)
    g = np.repeat(np.arange(n_clusters), sizes)
    X = np.column_stack([np.ones(g.size), rng.normal(size=g.size), rng.random(g.size) < 0.4])
    u = np.repeat(rng.normal(scale=0.4, size=n_clusters), sizes)
    y = rng.poisson(np.exp(X @ [0.3, 0.5, -0.4] + u))
    beta = np.zeros(3)
    for _ in range(50):
        mu = np.exp(X @ beta)
        beta = beta + np.linalg.solve((X * mu[:, None]).T @ X, X.T @ (y - mu))
    mu = np.exp(X @ beta)
    return X, y, g, mu


def test_bias_corrected_equals_mancl_derouen_observation_level_formula():
    """Parameter-scale (I - A_g B)^-1 U_g = MD's D'V^-1 (I - H_gg)^-1 e with H_gg n_g x n_g."""
    from analysis.sandwich import bias_corrected_covariance, cluster_totals

    X, y, g, mu = _poisson_clusters()
    bread = np.linalg.inv((X * mu[:, None]).T @ X)
    totals = cluster_totals(X * (y - mu)[:, None], g)
    info = np.stack([(X[g == k] * mu[g == k, None]).T @ X[g == k] for k in range(g.max() + 1)])
    cov, leverage = bias_corrected_covariance(totals, info, bread)
    meat = np.zeros((3, 3))
    for k in range(g.max() + 1):  # Mancl & DeRouen (2001), eq. (5), written out
        s = g == k
        D = X[s] * mu[s, None]
        v_inv = np.diag(1 / mu[s])
        H = D @ bread @ D.T @ v_inv
        a = D.T @ v_inv @ np.linalg.solve(np.eye(s.sum()) - H, (y - mu)[s])
        meat += np.outer(a, a)
    np.testing.assert_allclose(cov, bread @ meat @ bread, rtol=1e-10)
    plain, _ = cluster_covariance(X * (y - mu)[:, None], g, bread=bread)
    assert (np.diag(cov) > np.diag(plain)).all()  # larger than the G/(G-1) sandwich here
    assert 0 < leverage < 1


def test_bias_corrected_refuses_a_dominant_cluster():
    from analysis.sandwich import MAX_LEVERAGE, bias_corrected_covariance

    totals = np.array([[1.0], [-1.0]])
    info = np.array([[[0.95]], [[0.05]]])
    cov, leverage = bias_corrected_covariance(totals, info, np.array([[1.0]]))
    assert leverage == pytest.approx(0.95) and leverage > MAX_LEVERAGE
    assert np.isnan(cov).all()
