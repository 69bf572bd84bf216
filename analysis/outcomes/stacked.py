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

Parameters of the ATT weights
-----------------------------
Control ``i`` gets ``w_i = c m_i``, ``m_i = min(exp(x_i' alpha), cap)`` (its propensity odds,
capped when trimming), and ``c`` normalises the control weights to sum to the number of treated
persons; treated persons get 1. Both ``alpha`` and the normalisation are estimated:
``theta = (alpha, log c)`` with the equations ``sum_i x_i (a_i - e_i) = 0`` (logistic score) and
``sum_i {a_i - c (1 - a_i) m_i} = 0`` (normalisation). Their influence functions are closed form
(:func:`att_weight_model`). ``J`` is computed by the chain rule, ``J = (dU/dw) (dw/dtheta)``:
``dw/dtheta`` is closed form and each column's directional derivative of the outcome score is a
central difference in the weights (each weight moved by at most a relative ``1e-5``), so any
outcome estimating function can be plugged in, and the Cox score, which depends on the weights
also through its risk-set averages, costs two extra evaluations per parameter.

Trimming
--------
Quantile trimming caps the odds at ``cap``, the ``q`` quantile of the control odds. The cap is
treated as a fixed constant: a capped weight does not move with ``alpha`` (its derivative is 0),
an uncapped one does. The sampling variability of the estimated quantile itself (a non-smooth
function of the data) is not propagated; it concerns only the ``1 - q`` share of capped
controls. Persons whose score was fixed at 0 or 1 by separation (see
:mod:`analysis.design.propensity`) are outside the logistic fit and their weights do not move.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from analysis.design.missing import design_matrix
from analysis.design.propensity import PropensityScore
from analysis.outcomes.coxph import CoxScore
from analysis.results import EffectEstimate
from analysis.sandwich import (
    cluster_covariance,
    cluster_totals,
    count_clusters,
    small_sample_factor,
)

__all__ = [
    "EstimatedWeights",
    "StackedVariance",
    "att_weight_model",
    "att_weight_model_from_propensity",
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
class EstimatedWeights:
    """Weights that are a smooth function of estimated parameters ``theta``.

    Attributes
    ----------
    weights : ndarray, shape (n,)
        The weights at the estimate.
    jacobian : ndarray, shape (n, r)
        ``d weights / d theta`` at the estimate.
    influence : ndarray, shape (n, r)
        Influence function of ``theta`` per row, in sum form: ``theta_hat - theta`` is
        approximately ``influence.sum(axis=0)``.
    theta : ndarray, shape (r,)
        The estimated parameters.
    names : tuple of str
        Their names.
    """

    weights: np.ndarray
    jacobian: np.ndarray
    influence: np.ndarray
    theta: np.ndarray
    names: tuple[str, ...]


def att_weight_model(
    X: np.ndarray,
    treatment: np.ndarray,
    coefficients: np.ndarray,
    *,
    active: np.ndarray | None = None,
    cap: float = math.inf,
    penalty: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> EstimatedWeights:
    """ATT odds weights as a function of the logistic propensity model and their influence.

    Parameters
    ----------
    X : ndarray, shape (n, p)
        Design of the logistic propensity model, with the constant column.
    treatment : ndarray, shape (n,)
        1 = treated, 0 = control.
    coefficients : ndarray, shape (p,)
        Fitted log-odds coefficients.
    active : ndarray of bool, shape (n,), optional
        Rows in the logistic fit (default all). Other rows had their score fixed at 0
        or 1 (separation): their weights are fixed (controls 0) and carry no influence.
    cap : float, default inf
        Cap on the unnormalised control odds (trimming); held fixed (see the module notes).
    penalty : ndarray, shape (p, p), optional
        Hessian of a ridge penalty subtracted from the log-likelihood, for a penalised fit.
    names : sequence of str, optional
        Names of the coefficients.

    Returns
    -------
    EstimatedWeights
        ``theta = (coefficients, log c)``: weight 1 for the treated, ``c min(odds, cap)``
        for controls, ``c`` making the control weights sum to the number of treated.

    Raises
    ------
    ValueError
        Shapes do not agree, no treated person, or every control has weight 0.
    """
    # long: the docstring documents the weights; the body is about 40 lines
    X = np.asarray(X, dtype=np.float64)
    a = np.asarray(treatment, dtype=np.float64)
    alpha = np.asarray(coefficients, dtype=np.float64)
    n, p = X.shape
    if a.shape != (n,) or alpha.shape != (p,):
        raise ValueError("X, treatment and coefficients do not agree in shape")
    act = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    control = a == 0
    n_t = float(np.sum(a == 1))
    if n_t == 0:
        raise ValueError("no treated person")

    eta = np.where(act, X @ np.where(np.isfinite(alpha), alpha, 0.0), -np.inf)
    e = np.where(act, expit(eta), 0.0)
    odds = np.where(act, np.exp(np.minimum(eta, 700.0)), 0.0)
    # logistic regression: score x (a - e), information X' diag(e (1 - e)) X
    psi = np.where(act[:, None], X * (a - e)[:, None], 0.0)
    info = (X[act] * (e * (1 - e))[act, None]).T @ X[act]
    if penalty is not None:
        info = info + penalty
    if_alpha = np.linalg.solve(info, psi.T).T

    m = np.where(control & act, np.minimum(odds, cap), 0.0)
    moving = control & act & (odds < cap)
    dm = np.where(moving[:, None], X * odds[:, None], 0.0)  # d m / d alpha
    total = m.sum()
    if total <= 0:
        raise ValueError("every control has weight 0")
    c = n_t / total
    weights = np.where(control, c * m, 1.0)
    # normalisation: phi_i = a_i - c (1 - a_i) m_i; d/d log c = -n_t; d/d alpha = -c sum dm
    phi = a - c * m
    g = c * dm.sum(axis=0)
    if_logc = (phi - if_alpha @ g) / n_t
    jacobian = np.column_stack([c * dm, np.where(control, c * m, 0.0)])
    influence = np.column_stack([if_alpha, if_logc])
    coef_names = tuple(names) if names is not None else tuple(f"alpha{j}" for j in range(p))
    return EstimatedWeights(
        weights=weights,
        jacobian=jacobian,
        influence=influence,
        theta=np.r_[alpha, math.log(c)],
        names=(*coef_names, "log_normalisation"),
    )


def att_weight_model_from_propensity(
    df: pd.DataFrame,
    ps: PropensityScore,
    *,
    treatment: str,
    covariates: Sequence[str],
    cap: float = math.inf,
) -> EstimatedWeights:
    """:func:`att_weight_model` for a fit of :func:`analysis.design.propensity.fit_propensity`.

    Parameters
    ----------
    df : DataFrame
        The data the propensity model was fitted to, in the same row order.
    ps : PropensityScore
        The fit.
    treatment : str
        0/1 treatment column.
    covariates : sequence of str
        The covariates of the fit (expanded again by
        :func:`analysis.design.missing.design_matrix`).
    cap : float, default inf
        The cap on the unnormalised control odds (:attr:`analysis.design.weighting.
        WeightedSample.cap`).

    Returns
    -------
    EstimatedWeights
        Rows in the order of ``df``. Columns dropped from the fit (separation,
        collinearity) are not parameters; for the ridge fallback the penalty of its fit
        enters the information.
    """
    design = design_matrix(df, covariates, transforms=ps.transforms, levels=ps.levels)
    coef = ps.coefficients
    kept = [c for c in design.columns if np.isfinite(coef[c])]
    X = np.column_stack([np.ones(len(df)), design[kept].to_numpy(dtype=np.float64)])
    alpha = coef[["const", *kept]].to_numpy(dtype=np.float64)
    active = np.isfinite(ps.logit)
    penalty = None
    if ps.method == "ridge_fallback":  # L2 on standardised slopes, C = 1 (as fitted)
        sd = X[active, 1:].std(axis=0)
        penalty = np.diag(np.r_[0.0, np.where(sd > 0, sd, 1.0) ** 2])
    return att_weight_model(
        X,
        df[treatment].to_numpy(dtype=np.float64),
        alpha,
        active=active,
        cap=cap,
        penalty=penalty,
        names=("const", *kept),
    )


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


def stacked_variance(
    estimating_function: EstimatingFunction,
    beta: np.ndarray,
    weights: EstimatedWeights,
    *,
    rows: np.ndarray | None = None,
    cluster: np.ndarray | None = None,
    bread: np.ndarray | None = None,
) -> StackedVariance:
    """Sandwich variance of an outcome model fitted with estimated weights.

    Parameters
    ----------
    estimating_function : callable
        ``(beta, w) -> (m, q)`` array: each outcome row's contribution to the total
        weighted score (which the estimate sets to zero), given the weights ``w`` of
        those ``m`` rows.
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
        model-based covariance of a likelihood fit); computed by central differences
        when not given.

    Returns
    -------
    StackedVariance

    Notes
    -----
    ``J = dU/dtheta`` is built column by column as the directional derivative of the
    total score along ``d w / d theta_k`` (central differences, each weight moved by at
    most a relative 1e-5), so the cost is ``2 r`` evaluations of the score.

    References
    ----------
    Stefanski LA, Boos DD (2002). The calculus of M-estimation. *Am Stat* 56:29-38.

    Reifeis SA, Hudgens MG (2022). On variance of the treatment effect in the treated
    when estimated by inverse probability weighting. *Am J Epidemiol* 191:1092-1097.
    """
    # long: the docstring documents the variance; the body is about 50 lines
    beta = np.asarray(beta, dtype=np.float64)
    n, r = weights.influence.shape
    idx = np.arange(n) if rows is None else np.asarray(rows, dtype=np.intp)
    w = weights.weights[idx]
    if (w <= 0).any():
        raise ValueError("outcome rows must have positive weights")
    D = weights.jacobian[idx]
    U = np.asarray(estimating_function(beta, w), dtype=np.float64)
    if U.ndim != 2 or U.shape != (len(idx), beta.size):
        raise ValueError(
            f"estimating function returned shape {U.shape}; expected ({len(idx)}, {beta.size})"
        )
    q = beta.size
    if bread is None:
        A = np.empty((q, q))
        for j in range(q):
            h = 1e-6 * max(1.0, abs(beta[j]))
            step = np.zeros(q)
            step[j] = h
            A[:, j] = -(_total(estimating_function, beta + step, w)
                        - _total(estimating_function, beta - step, w)) / (2 * h)  # fmt: skip
        bread = np.linalg.inv(A)
    bread = np.asarray(bread, dtype=np.float64)
    J = np.zeros((q, r))
    for k in range(r):
        d = D[:, k]
        rel = np.max(np.abs(d) / w) if len(d) else 0.0
        if rel == 0:
            continue
        s = _REL_STEP / rel
        J[:, k] = (_total(estimating_function, beta, w + s * d)
                   - _total(estimating_function, beta, w - s * d)) / (2 * s)  # fmt: skip
    contrib = np.zeros((n, q))
    if len(np.unique(idx)) != len(idx):
        raise ValueError("rows must not repeat a row of the weight model")
    contrib[idx] = U
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
        ``(beta, w) -> (m, q)``, with a ``total(beta, w)`` method for the summed score.
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
        ``(beta, w) -> (m, q)``.
    """
    y = np.asarray(count, dtype=np.float64)
    offset = np.log(np.asarray(exposure, dtype=np.float64))
    x = np.asarray(X, dtype=np.float64).reshape(len(y), -1)

    def ef(beta: np.ndarray, w: np.ndarray) -> np.ndarray:
        mu = np.exp(x @ beta + offset)
        return x * (w * (y - mu) / (1.0 + mu / theta))[:, None]

    return ef


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
