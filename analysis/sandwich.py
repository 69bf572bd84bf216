"""One cluster-robust sandwich for every robust variance of the package.

Every robust variance here (Cox, negative binomial, the before/after Poisson GEE, and the
influence-function variances of Kaplan–Meier, RMST and cumulative incidence) is

.. math::

    V = c \\, B \\Big(\\sum_{g=1}^{G} U_g U_g^\\top\\Big) B, \\qquad c = \\frac{G}{G - 1},

where :math:`U_g` sums the (weighted) score or influence contributions of the rows of cluster
:math:`g`, :math:`B` is the bread (the inverse information; the identity for influence
functions, which are already on the estimate's scale) and :math:`G` is the number of clusters
that contribute (each person is a cluster when no cluster is given).

Small-sample convention
-----------------------
The factor :math:`c = G/(G-1)` is applied to every robust variance, the usual small-sample
correction for cluster-robust variances. It is the default of R's ``sandwich::vcovCL``
(``cadjust = TRUE``; with ``type = "HC0"`` no further factor). R's ``coxph(cluster=)``,
``coxph(robust = TRUE)`` and ``survfit(cluster=)`` apply none, so their variances are
:math:`c` times smaller than the ones here. Model-based variances (the inverse information of
an unweighted, unclustered model, Greenwood's formula) get no factor.

Bias-corrected sandwich
-----------------------
With few events the robust variance is biased downwards even when clusters are many: the
squared score totals :math:`U_g U_g^\\top` of clusters that carry much of the information
(the few matched sets with an event in the smaller arm) are evaluated at an estimate fitted
to them, and so are too small. :func:`bias_corrected_covariance` is the correction of
Mancl & DeRouen (2001),

.. math::

    V_{MD} = B \\Big(\\sum_g (I - H_g)^{-1} U_g U_g^\\top (I - H_g)^{-\\top}\\Big) B,
    \\qquad H_g = A_g B,

with :math:`A_g = -\\partial U_g / \\partial \\beta` the cluster's share of the information
(:math:`\\sum_g H_g = I`). It is written on the parameters' scale; for GLMs and GEE it
equals Mancl and DeRouen's form with the observation-level hat matrix
:math:`D_g B D_g^\\top V_g^{-1}` (push-through identity; checked in the tests). It is not
R's ``sandwich::vcovCL(type = "HC3")``, whose GLM hat matrix is the transposed arrangement
:math:`X_g B X_g^\\top W_g`. It replaces the ``G/(G-1)`` factor (both are small-sample
corrections; they are not stacked).

Few clusters
------------
Scores and influence functions sum to zero over the whole sample, so with one cluster every
cluster total is zero and the "variance" is 0: an estimate with fewer than
:data:`MIN_CLUSTERS` clusters is not estimable. Below :data:`FEW_CLUSTERS` clusters the
sandwich is still biased downwards and its normal reference too optimistic; estimators then
add a note to the estimate and emit a :class:`FewClustersWarning`.

References
----------
Liang KY, Zeger SL (1986). Longitudinal data analysis using generalized linear models.
Biometrika 73:13-22.
Cameron AC, Miller DL (2015). A practitioner's guide to cluster-robust inference. J Human
Resources 50:317-372.
Mancl LA, DeRouen TA (2001). A covariance estimator for GEE with improved small-sample
properties. Biometrics 57:126-134.
Zeileis A, Köll S, Graham N (2020). Various versatile variances: an object-oriented
implementation of clustered covariances in R. J Stat Softw 95(1).
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "FEW_CLUSTERS",
    "MAX_LEVERAGE",
    "MIN_CLUSTERS",
    "FewClustersWarning",
    "bias_corrected_covariance",
    "cluster_check",
    "cluster_covariance",
    "cluster_variance",
    "count_clusters",
    "small_sample_factor",
]

#: fewest clusters with which a cluster-robust variance is computed at all
MIN_CLUSTERS = 2
#: below this many clusters an estimate carries a note and a warning
FEW_CLUSTERS = 30
#: largest leverage (eigenvalue of a cluster's H_g) with which the bias correction is computed
MAX_LEVERAGE = 0.9


class FewClustersWarning(UserWarning):
    """A cluster-robust variance rests on fewer than :data:`FEW_CLUSTERS` clusters."""


def count_clusters(codes: np.ndarray) -> int:
    """Number of distinct non-negative integer cluster codes."""
    codes = np.asarray(codes)
    if codes.size == 0:
        return 0
    return int(np.count_nonzero(np.bincount(codes)))


def small_sample_factor(n_clusters: int) -> float:
    """``G / (G - 1)``; NaN for fewer than two clusters."""
    return n_clusters / (n_clusters - 1) if n_clusters >= MIN_CLUSTERS else float("nan")


def cluster_check(n_clusters: int, *, what: str = "clusters", stacklevel: int = 3) -> str | None:
    """The reason a robust variance is not estimable, or a note when clusters are few.

    Parameters
    ----------
    n_clusters : int
        Clusters that contribute to the variance.
    what : str
        How the clusters are called in the message (``"matched sets"``, ``"persons"``...).
    stacklevel : int
        Passed to :func:`warnings.warn` (the caller of the estimator by default).

    Returns
    -------
    str or None
        ``"not estimable: ..."`` below :data:`MIN_CLUSTERS`; a note (and a
        :class:`FewClustersWarning`) below :data:`FEW_CLUSTERS`; otherwise ``None``.
    """
    if n_clusters < MIN_CLUSTERS:
        return (
            f"not estimable: the cluster-robust variance needs at least {MIN_CLUSTERS} "
            f"clusters and there {'is' if n_clusters == 1 else 'are'} {n_clusters} ({what}); "
            "scores sum to zero within a single cluster, so its variance would be 0"
        )
    if n_clusters < FEW_CLUSTERS:
        note = (
            f"only {n_clusters} clusters ({what}): the cluster-robust variance (with the "
            f"G/(G-1) factor) may be too small and the interval too narrow"
        )
        warnings.warn(note, FewClustersWarning, stacklevel=stacklevel)
        return note
    return None


def _totals(contrib: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Sums of the rows of ``contrib`` (n,) or (n, k) within each cluster present."""
    codes = np.asarray(codes)
    if contrib.ndim == 1:
        totals = np.bincount(codes, weights=contrib)
        return totals[np.bincount(codes) > 0]
    if codes.size and np.array_equal(codes, np.arange(codes.size)):
        return contrib
    if contrib.shape[1] <= 64:  # few columns (scores): one pass over the rows per column
        present = np.bincount(codes) > 0
        return np.column_stack(
            [np.bincount(codes, weights=contrib[:, j])[present] for j in range(contrib.shape[1])]
        )
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    return np.add.reduceat(contrib[order], starts, axis=0)


def cluster_variance(
    contrib: np.ndarray, codes: np.ndarray, *, small_sample: bool = True
) -> tuple[np.ndarray, int]:
    """Variance of a sum of influence contributions, column by column.

    Parameters
    ----------
    contrib : ndarray, shape (n,) or (n, k)
        Each row's (weighted) contribution to the estimate's influence function.
    codes : ndarray of int, shape (n,)
        Non-negative cluster codes (each row its own cluster for a per-person variance).
    small_sample : bool, default True
        Apply ``G / (G - 1)``. ``False`` only for the model-based case (no weights and no
        cluster, where the influence-function variance is Greenwood's).

    Returns
    -------
    (variance, n_clusters)
        ``variance`` is a 0-d array for 1-d ``contrib``, else shape (k,); NaN when fewer than
        two clusters contribute and ``small_sample`` is set.
    """
    n_clusters = count_clusters(codes)
    totals = _totals(np.asarray(contrib, dtype=float), codes)
    var = np.sum(totals**2, axis=0)
    if small_sample:
        var = var * small_sample_factor(n_clusters)
    return np.asarray(var), n_clusters


def cluster_covariance(
    scores: np.ndarray, codes: np.ndarray, bread: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """Cluster-robust sandwich ``c B (sum_g U_g U_g') B`` with ``c = G / (G - 1)``.

    Parameters
    ----------
    scores : ndarray, shape (n, p)
        Each row's (weighted) score contribution at the estimate.
    codes : ndarray of int, shape (n,)
        Non-negative cluster codes.
    bread : ndarray, shape (p, p), optional
        The inverse information; the meat alone is returned when omitted.

    Returns
    -------
    (covariance, n_clusters)
        Symmetric (p, p) matrix; all NaN when fewer than two clusters contribute.
    """
    totals = _totals(np.asarray(scores, dtype=float), codes)
    n_clusters = totals.shape[0]
    meat = small_sample_factor(n_clusters) * (totals.T @ totals)
    cov = meat if bread is None else bread @ meat @ bread
    return 0.5 * (cov + cov.T), n_clusters


def cluster_totals(contrib: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Sums of the rows of ``contrib`` (n, k) within each cluster present, shape (G, k)."""
    return _totals(np.asarray(contrib, dtype=float), codes)


def bias_corrected_covariance(
    totals: np.ndarray, information: np.ndarray, bread: np.ndarray
) -> tuple[np.ndarray, float]:
    """Mancl & DeRouen's bias-corrected cluster sandwich.

    Parameters
    ----------
    totals : ndarray, shape (G, p)
        Each cluster's summed (weighted) score at the estimate, :math:`U_g`.
    information : ndarray, shape (G, p, p)
        Each cluster's share of the information, :math:`A_g = -\\partial U_g/\\partial\\beta`
        (they sum to the information whose inverse is ``bread``).
    bread : ndarray, shape (p, p)
        The inverse information :math:`B`.

    Returns
    -------
    (covariance, max_leverage)
        :math:`B \\sum_g (I - H_g)^{-1} U_g U_g^\\top (I - H_g)^{-\\top} B` with
        :math:`H_g = A_g B`, and the largest leverage (largest real eigenvalue of any
        :math:`H_g`). The covariance is all NaN when a leverage exceeds
        :data:`MAX_LEVERAGE` (a cluster holds nearly all the information: the correction,
        like the jackknife, is then unstable) or when fewer than two clusters contribute.
    """
    totals = np.asarray(totals, dtype=float)
    n_clusters, p = totals.shape
    bread = np.asarray(bread, dtype=float)
    lev = np.asarray(information, dtype=float) @ bread  # (G, p, p)
    max_leverage = float(np.max(np.linalg.eigvals(lev).real)) if n_clusters else float("nan")
    if n_clusters < MIN_CLUSTERS or not max_leverage < MAX_LEVERAGE:
        return np.full((p, p), np.nan), max_leverage
    adjusted = np.linalg.solve(np.eye(p) - lev, totals[:, :, None])[:, :, 0]
    cov = bread @ (adjusted.T @ adjusted) @ bread
    return 0.5 * (cov + cov.T), max_leverage
