"""Variance of weighted estimators whose weights are estimated: stacked estimating equations.

An IPTW estimate solves two sets of estimating equations: the propensity model's (logistic
regression, coefficients ``alpha``) and the weighted outcome model's (Cox partial-likelihood
score, negative-binomial score; coefficients ``b``), whose weights are a function of
``alpha``. The usual robust sandwich of the outcome model treats the weights as known. For the
effect in the treated (ATT) this can be too small or too large (Reifeis & Hudgens 2022); the
M-estimation sandwich of the stacked equations accounts for the estimation of ``alpha``
(Lunceford & Davidian 2004; Stefanski & Boos 2002). Person ``i``'s influence on ``b`` is

.. math::

    \\mathrm{IF}_{b,i} = A^{-1} \\{U_i(b) + J\\, \\mathrm{IF}_{\\theta,i}\\},
    \\qquad J = \\partial \\textstyle\\sum_j U_j(b; w(\\theta)) / \\partial \\theta,

where ``U_i`` is its contribution to the weighted outcome score (zero for a person not in the
outcome model), ``A`` minus the derivative of the total score with respect to ``b`` (the
information), ``theta`` the parameters of the weights and ``IF_theta`` their influence
functions. The variance is the sum over clusters (persons) of the outer products of the
cluster totals of ``IF_b``. With ``J = 0`` it is the weights-known sandwich.

The weights and their influence functions are :mod:`analysis.design.estimated_weights`.

References
----------
Reifeis SA, Hudgens MG (2022). On variance of the treatment effect in the treated when estimated
by inverse probability weighting. *Am J Epidemiol* 191(6):1092-1097.

Lunceford JK, Davidian M (2004). Stratification and weighting via the propensity score in
estimation of causal treatment effects: a comparative study. *Stat Med* 23:2937-2960.

Stefanski LA, Boos DD (2002). The calculus of M-estimation. *Am Stat* 56(1):29-38.

Austin PC (2016). Variance estimation when using inverse probability of treatment weighting
(IPTW) with survival analysis. *Stat Med* 35:5642-5655.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.design.estimated_weights import (
    EstimatedWeights,
)
from analysis.outcomes.coxph import CoxScore
from analysis.results import EffectEstimate
from analysis.sandwich import (
    cluster_covariance,
    cluster_totals,
    count_clusters,
    small_sample_factor,
)

__all__ = [
    "StackedVariance",
    "cox_estimating_function",
    "nb_estimating_function",
    "nb_expected_bread",
    "stacked_variance",
    "with_stacked_variance",
]

#: an outcome estimating function: (coefficients, weights of its rows) -> (rows, q) contributions
EstimatingFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: largest relative change of any weight in the numerical directional derivatives
_REL_STEP = 1e-5


@dataclass(frozen=True, kw_only=True, eq=False)
class StackedVariance:
    """Covariance of outcome coefficients with and without the weights' estimation.

    Attributes
    ----------
    cov : ndarray, shape (q, q)
        Stacked (M-estimation) covariance: the weights' estimation accounted for.
    cov_weights_known : ndarray, shape (q, q)
        Robust sandwich treating the weights as known.
    influence : ndarray, shape (n, q)
        Influence functions of the coefficients, one row per row of the weight model.
    bread : ndarray, shape (q, q)
        Inverse of minus the derivative of the total score in the coefficients.
    jacobian : ndarray, shape (q, r)
        Derivative of the total outcome score in the weights' parameters.
    """

    cov: np.ndarray
    cov_weights_known: np.ndarray
    influence: np.ndarray
    bread: np.ndarray
    jacobian: np.ndarray

    @property
    def se(self) -> np.ndarray:
        """Standard errors from ``cov``."""
        return np.sqrt(np.diag(self.cov))

    @property
    def se_weights_known(self) -> np.ndarray:
        """Standard errors from ``cov_weights_known``."""
        return np.sqrt(np.diag(self.cov_weights_known))


def _total(ef: EstimatingFunction, beta: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Total score; an estimating function may offer a faster ``total(beta, w)``."""
    fast = getattr(ef, "total", None)
    if fast is not None:
        return np.asarray(fast(beta, w), dtype=np.float64)
    return np.asarray(ef(beta, w), dtype=np.float64).sum(axis=0)


def _numerical_bread(ef: EstimatingFunction, beta: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Inverse of minus the derivative of the total score in ``beta``, by central differences."""
    q = beta.size
    A = np.empty((q, q))
    for j in range(q):
        h = 1e-6 * max(1.0, abs(beta[j]))
        step = np.zeros(q)
        step[j] = h
        A[:, j] = -(_total(ef, beta + step, w) - _total(ef, beta - step, w)) / (2 * h)
    return np.linalg.inv(A)


def _numerical_jacobian(
    ef: EstimatingFunction, beta: np.ndarray, w: np.ndarray, D: np.ndarray
) -> np.ndarray:
    """``J = dU/dtheta``: each column the central difference of the total score along ``D[:, k]``.

    ``D`` is ``d w / d theta`` of the outcome rows; each weight moves by at most a relative
    :data:`_REL_STEP`, so the cost is ``2 r`` evaluations of the score.
    """
    J = np.zeros((beta.size, D.shape[1]))
    for k in range(D.shape[1]):
        d = D[:, k]
        rel = np.max(np.abs(d) / w) if len(d) else 0.0
        if rel == 0:
            continue
        s = _REL_STEP / rel
        J[:, k] = (_total(ef, beta, w + s * d) - _total(ef, beta, w - s * d)) / (2 * s)
    return J


def stacked_variance(
    estimating_function: EstimatingFunction,
    beta: np.ndarray,
    weights: EstimatedWeights,
    *,
    rows: np.ndarray | None = None,
    cluster: np.ndarray | None = None,
    bread: np.ndarray | None = None,
    derivatives: Literal["analytic", "numerical"] = "analytic",
) -> StackedVariance:
    """Sandwich variance of an outcome model fitted with estimated weights.

    Parameters
    ----------
    estimating_function : callable
        ``(beta, w) -> (m, q)`` array: each outcome row's contribution to the total
        weighted score (which the estimate sets to zero), given the weights ``w`` of
        those ``m`` rows. It may offer the exact derivatives (see Notes).
    beta : ndarray, shape (q,)
        The fitted outcome coefficients.
    weights : EstimatedWeights
        The weight model (e.g. :func:`att_weight_model`), over ``n`` persons.
    rows : ndarray of int, shape (m,), optional
        Row of the weight model of each outcome row (default: all ``n``, in order).
        Persons of the weight model outside the outcome model still carry the
        propensity model's influence.
    cluster : ndarray, shape (n,), optional
        Cluster of each weight-model row (default: each row its own cluster).
    bread : ndarray, shape (q, q), optional
        Inverse of minus the derivative of the total score in ``beta`` (e.g. the
        model-based covariance of a likelihood fit); by default the estimating
        function's exact information when it offers one, else central differences.
    derivatives : {"analytic", "numerical"}, default "analytic"
        ``"numerical"`` ignores the exact derivatives an estimating function offers and
        uses central differences for both (a check of the exact ones).

    Returns
    -------
    StackedVariance

    Notes
    -----
    ``J = dU/dtheta`` is the chain rule ``sum_i (dU/dw_i) (dw_i/dtheta)``. An estimating
    function with a method ``weight_derivative(beta, w, contributions)`` gives ``dU/dw_i``
    per row exactly (:class:`analysis.outcomes.coxph.CoxScore`: the score residuals; the
    NB score: the contribution over the weight), so ``J`` is one matrix product. Otherwise
    ``J`` is built column by column as the directional derivative of the total score along
    ``d w / d theta_k`` (central differences, each weight moved by at most a relative
    1e-5), ``2 r`` evaluations of the score. Likewise a method
    ``score_and_information(beta, w)`` gives the bread from the pass that gives the
    contributions.

    References
    ----------
    Stefanski LA, Boos DD (2002). The calculus of M-estimation. *Am Stat* 56:29-38.

    Reifeis SA, Hudgens MG (2022). On variance of the treatment effect in the treated
    when estimated by inverse probability weighting. *Am J Epidemiol* 191:1092-1097.
    """
    # long: the docstring documents the variance; the body is about 45 lines
    if derivatives not in ("analytic", "numerical"):
        raise ValueError(f"derivatives must be 'analytic' or 'numerical', got {derivatives!r}")
    beta = np.asarray(beta, dtype=np.float64)
    n, _ = weights.influence.shape
    idx = np.arange(n) if rows is None else np.asarray(rows, dtype=np.intp)
    w = weights.weights[idx]
    if (w <= 0).any():
        raise ValueError("outcome rows must have positive weights")
    exact = derivatives == "analytic"
    joint = getattr(estimating_function, "score_and_information", None) if exact else None
    if joint is not None and bread is None:
        U, info = joint(beta, w)
        bread = np.linalg.inv(np.asarray(info, dtype=np.float64))
    else:
        U = estimating_function(beta, w)
    U = np.asarray(U, dtype=np.float64)
    if U.ndim != 2 or U.shape != (len(idx), beta.size):
        raise ValueError(
            f"estimating function returned shape {U.shape}; expected ({len(idx)}, {beta.size})"
        )
    if len(idx) and np.bincount(idx, minlength=n).max() > 1:
        raise ValueError("rows must not repeat a row of the weight model")
    if bread is None:
        bread = _numerical_bread(estimating_function, beta, w)
    bread = np.asarray(bread, dtype=np.float64)
    contrib = np.zeros((n, beta.size))
    contrib[idx] = U
    derivative = getattr(estimating_function, "weight_derivative", None) if exact else None
    if derivative is not None:
        per_weight = np.zeros((n, beta.size))  # dU/dw of each row of the weight model
        per_weight[idx] = derivative(beta, w, U)
        J = per_weight.T @ weights.jacobian
    else:
        J = _numerical_jacobian(estimating_function, beta, w, weights.jacobian[idx])
    codes = np.arange(n) if cluster is None else pd.factorize(np.asarray(cluster), sort=True)[0]
    influence = (contrib + weights.influence @ J.T) @ bread.T
    # the one cluster sandwich (analysis.sandwich), with its small-sample factor G / (G - 1)
    # over the clusters contributing: all of them when the propensity model's influence is
    # stacked, those of the outcome model's rows when the weights are taken as known
    cov, _ = cluster_covariance(influence, codes)
    known = cluster_totals(contrib @ bread.T, codes)
    cov_known = known.T @ known * small_sample_factor(count_clusters(codes[idx]))
    return StackedVariance(
        cov=cov,
        cov_weights_known=0.5 * (cov_known + cov_known.T),
        influence=influence,
        bread=bread,
        jacobian=J,
    )


def cox_estimating_function(
    duration: np.ndarray, event: np.ndarray, X: np.ndarray
) -> EstimatingFunction:
    """Weighted Cox score contributions (Efron ties): ``w_i`` times the score residuals.

    The contributions sum to the score of the weighted partial likelihood at any
    coefficients, and they are the rows the Lin–Wei sandwich is built from. The risk-set
    averages depend on the weights, so the total score is not linear in them. They are the
    Cox engine's (:class:`analysis.outcomes.coxph.CoxScore`), which sorts the data once.

    Parameters
    ----------
    duration, event : ndarray, shape (m,)
        Follow-up times and 0/1 events.
    X : ndarray, shape (m, q)
        Covariates (the treatment first in this study).

    Returns
    -------
    callable
        ``(beta, w) -> (m, q)``, with a ``total(beta, w)`` method for the summed score and
        the exact derivatives of :func:`stacked_variance` (``weight_derivative``,
        ``score_and_information``).
    """
    x = np.asarray(X, dtype=np.float64).reshape(len(duration), -1)
    return CoxScore(x, duration, event, ties="efron")


def nb_estimating_function(
    count: np.ndarray, exposure: np.ndarray, X: np.ndarray, *, theta: float
) -> EstimatingFunction:
    """Weighted negative-binomial (NB2, log link, log exposure offset) score contributions.

    ``w_i x_i (y_i - mu_i) / (1 + mu_i / theta)`` at fixed dispersion ``theta``
    (``inf``: Poisson). Theta is held at its estimate, as in the weights-known sandwich of
    :func:`analysis.outcomes.negative_binomial.negative_binomial_irr`.

    Parameters
    ----------
    count, exposure : ndarray, shape (m,)
        Counts and person-time (> 0).
    X : ndarray, shape (m, q)
        Design with the intercept column.
    theta : float
        Dispersion (``Var = mu + mu^2 / theta``).

    Returns
    -------
    callable
        ``(beta, w) -> (m, q)``, with the exact ``weight_derivative`` of
        :func:`stacked_variance`.
    """
    y = np.asarray(count, dtype=np.float64)
    offset = np.log(np.asarray(exposure, dtype=np.float64))
    x = np.asarray(X, dtype=np.float64).reshape(len(y), -1)
    return _NBScore(y, offset, x, theta)


class _NBScore:
    """The weighted NB2 score of :func:`nb_estimating_function` (linear in each weight)."""

    def __init__(self, y: np.ndarray, offset: np.ndarray, x: np.ndarray, theta: float) -> None:
        self._y, self._offset, self._x, self._theta = y, offset, x, theta

    def __call__(self, beta: np.ndarray, w: np.ndarray) -> np.ndarray:
        mu = np.exp(self._x @ beta + self._offset)
        return self._x * (w * (self._y - mu) / (1.0 + mu / self._theta))[:, None]

    @staticmethod
    def weight_derivative(beta: np.ndarray, w: np.ndarray, contributions: np.ndarray) -> np.ndarray:
        """``d total / d w_i``: row ``i``'s contribution over ``w_i`` (the score is linear in it)."""
        return contributions / np.asarray(w, dtype=np.float64)[:, None]


def nb_expected_bread(
    exposure: np.ndarray, X: np.ndarray, beta: np.ndarray, w: np.ndarray, *, theta: float
) -> np.ndarray:
    """Inverse expected information of a weighted NB2 fit, ``(X' diag(w mu / (1 + mu/theta)) X)^-1``.

    The bread of :func:`analysis.outcomes.negative_binomial.negative_binomial_irr`'s sandwich (as R's
    ``vcov(glm.nb(...))`` and ``sandwich``). Passed to :func:`stacked_variance`, it makes the
    weights-known part equal that estimator's SE; the default numerical bread is the
    observed derivative of the score, which differs from it in finite samples (log is not
    the canonical link of the NB2) but has the same limit when the mean model holds.
    """
    x = np.asarray(X, dtype=np.float64)
    mu = np.exp(x @ np.asarray(beta, dtype=np.float64)) * np.asarray(exposure, dtype=np.float64)
    working = np.asarray(w, dtype=np.float64) * mu / (1.0 + mu / theta)
    return np.linalg.inv((x.T * working) @ x)


def with_stacked_variance(
    estimate: EffectEstimate, variance: StackedVariance, *, term: int, alpha: float = 0.05
) -> EffectEstimate:
    """The same ratio estimate with the stacked SE, interval and p-value.

    Parameters
    ----------
    estimate : EffectEstimate
        A ratio estimate (HR, IRR) whose ``se`` treats the weights as known.
    variance : StackedVariance
        From :func:`stacked_variance`.
    term : int
        Index of the treatment coefficient.
    alpha : float
        1 - confidence level.

    Returns
    -------
    EffectEstimate
        ``se``, ``ci_low``, ``ci_high``, ``p_value`` from the stacked variance;
        ``details`` gains ``se_log_weights_known`` (the previous SE) and ``variance``.
    """
    se = float(variance.se[term])
    fresh = EffectEstimate.from_log(
        log_estimate=math.log(estimate.estimate), se=se, alpha=alpha,
        outcome=estimate.outcome, measure=estimate.measure, method=estimate.method,
    )  # fmt: skip
    se_all = variance.se
    details: dict[str, Any] = {
        **estimate.details,
        "se_log": se,
        "se_log_weights_known": float(variance.se_weights_known[term]),
        "variance": "stacked estimating equations: propensity model and weight "
        "normalisation estimated (trimming cap held fixed)",
    }
    coefficients = estimate.details.get("coefficients")
    if isinstance(coefficients, dict) and len(coefficients) == len(se_all):
        details["coefficients"] = {
            name: {**value, "se": float(se_all[j])}
            for j, (name, value) in enumerate(coefficients.items())
        }
    return replace(
        estimate,
        ci_low=fresh.ci_low,
        ci_high=fresh.ci_high,
        p_value=fresh.p_value,
        se=se,
        details=details,
    )
