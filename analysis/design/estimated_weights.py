"""Estimated ATT weights as M-estimators: the weights, their derivative and influence functions.

The variance of an inverse-probability-weighted estimate must account for the estimation of its
weights (:mod:`analysis.outcomes.stacked`); this module gives what that needs from the design:
the weights as a function of their parameters, the derivative of the weights in the
parameters and the parameters' influence functions.

Parameters of the ATT weights
-----------------------------
Control ``i`` gets ``w_i = c m_i``, ``m_i = min(exp(x_i' alpha), cap)`` (its propensity odds,
capped when trimming), and ``c`` normalises the control weights to sum to the number of treated
persons; treated persons get 1. Both ``alpha`` and the normalisation are estimated:
``theta = (alpha, log c)`` with the equations ``sum_i x_i (a_i - e_i) = 0`` (logistic score) and
``sum_i {a_i - c (1 - a_i) m_i} = 0`` (normalisation). Their influence functions are closed form
(:func:`att_weight_model`). ``J`` is computed by the chain rule, ``J = (dU/dw) (dw/dtheta)``:
``dw/dtheta`` is closed form; ``dU/dw`` is exact for the Cox and NB scores (per row, the score
residual; the Cox score depends on the weights also through its risk-set averages) and for any
other outcome estimating function a central difference in the weights per column (each weight
moved by at most a relative ``1e-5``), so any estimating function can be plugged in.

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from analysis.design.missing import design_matrix
from analysis.design.propensity import PropensityScore

__all__ = ["EstimatedWeights", "att_weight_model", "att_weight_model_from_propensity"]


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
    Xa = X[act]
    info = (Xa * (e * (1 - e))[act, None]).T @ Xa
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
    if ps.design is not None and len(ps.design) == len(df) and tuple(covariates) == ps.covariates:
        design = ps.design  # the fit's own design matrix: the same rows, covariates, options
    else:
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
