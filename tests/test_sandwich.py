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
