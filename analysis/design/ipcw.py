"""Inverse probability of censoring weights for a per-protocol contrast, and estimators
on follow-up split into intervals (counting-process data with time-varying weights).

The per-protocol comparator strategy is "never initiate HAT": a comparator's follow-up is
censored the day it starts HAT. That censoring depends on the person's course (an
overdose, losing a place to live, leaving treatment), which also predicts the outcomes, so
the comparators still followed are a selected group. Inverse probability of censoring
weights (Robins & Finkelstein 2000; Hernán, Brumback & Robins 2000) re-weight them to stand
for every comparator:

- follow-up is split into intervals of ``interval_days`` (:func:`split_intervals`);
- the hazard of starting HAT in an interval, given the covariates at its start, is
  modelled by pooled logistic regression over the comparators' intervals
  (:func:`fit_logistic`), the *denominator* model; the *numerator* model has time since
  the index date only (stabilised weights);
- a comparator's weight in interval ``j`` is ``prod_{l<j} (1 - p_num,l) / (1 - p_den,l)``,
  truncated at chosen quantiles (:func:`censoring_weights`); initiators are never
  artificially censored (weight 1);
- the outcome estimators take the interval rows with their weights
  (:mod:`analysis.outcomes.counting`: a Cox model on counting-process data, Kaplan-Meier
  and Aalen-Johansen curves, ratios of weighted rates).

Limits: the weights remove the selection by censoring only if the model holds and the
covariates at the intervals' starts capture every common cause of starting HAT and the
outcomes (no unmeasured time-varying confounding); status forms are yearly, so the
covariates on a date may be up to two years old.

References
----------
Robins JM, Finkelstein DM (2000). Correcting for noncompliance and dependent censoring in
an AIDS clinical trial with inverse probability of censoring weighted (IPCW) log-rank
tests. *Biometrics* 56(3):779-788.

Hernán MA, Brumback B, Robins JM (2000). Marginal structural models to estimate the
causal effect of zidovudine on the survival of HIV-positive men. *Epidemiology*
11(5):561-570.

Cole SR, Hernán MA (2008). Constructing inverse probability weights for marginal
structural models. *Am J Epidemiol* 168(6):656-664.

Hernán MA, Robins JM (2017). Per-protocol analyses of pragmatic trials. *N Engl J Med*
377(14):1391-1398.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

__all__ = ["Intervals", "censoring_weights", "fit_logistic", "split_intervals"]

#: largest log weight whose exponential is finite (``log`` of the largest float64)
_LOG_MAX = float(np.log(np.finfo(np.float64).max))

#: start of the first interval: a day before time zero, so events on day 0 are at risk
FIRST_START = -1.0


@dataclass(frozen=True)
class Intervals:
    """Follow-up split into intervals ``(start, stop]``, one row per (person-row, interval).

    Attributes
    ----------
    row : ndarray of int
        The input row of each interval.
    j : ndarray of int
        The interval's number (0 first).
    start, stop : ndarray of float
        Days since time zero; the first interval starts at :data:`FIRST_START`.
    event : ndarray of int
        1 in the last interval of a row with an event.
    """

    row: np.ndarray
    j: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    event: np.ndarray


def split_intervals(duration: np.ndarray, event: np.ndarray, interval_days: int) -> Intervals:
    """Split each row's follow-up ``[0, duration]`` into intervals of ``interval_days``.

    Row ``r`` gets ``max(1, ceil(duration_r / L))`` intervals ``(j L, min((j + 1) L,
    duration_r)]`` (the first from :data:`FIRST_START`); the event, if any, is in its last.

    Parameters
    ----------
    duration : ndarray
        Follow-up in days (>= 0).
    event : ndarray
        0/1.
    interval_days : int
        ``L``.

    Returns
    -------
    Intervals
    """
    d = np.asarray(duration, dtype=np.float64)
    n = np.maximum(1, np.ceil(d / interval_days).astype(np.int64))
    row = np.repeat(np.arange(len(d)), n)
    first = np.concatenate([[0], np.cumsum(n)[:-1]])
    j = np.arange(len(row)) - first[row]
    start = np.where(j == 0, FIRST_START, j * float(interval_days))
    stop = np.minimum((j + 1) * float(interval_days), d[row])
    last = j == n[row] - 1
    ev = (last & (np.asarray(event)[row] == 1)).astype(np.int64)
    return Intervals(row=row, j=j, start=start, stop=stop, event=ev)


def fit_logistic(
    X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, *, ridge: float = 1e-6
) -> np.ndarray:
    """Weighted logistic regression by Newton-Raphson (intercept added): the coefficients.

    A tiny ridge penalty (on the slopes, columns standardised) keeps a separated column
    finite; it changes non-separated fits negligibly.

    Parameters
    ----------
    X : ndarray, shape (n, p)
    y : ndarray of 0/1
    w : ndarray, optional
        Frequency weights (bootstrap counts).
    ridge : float
        Penalty on the standardised slopes.

    Returns
    -------
    ndarray, shape (p + 1,)
        Intercept first.
    """
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=np.float64)
    mu, sd = X.mean(axis=0), X.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    Z = np.column_stack([np.ones(len(y)), (X - mu) / sd])
    pen = np.r_[0.0, np.full(X.shape[1], ridge * max(w.sum(), 1.0))]
    ybar = np.clip(np.average(y, weights=w), 1e-8, 1 - 1e-8)
    beta = np.zeros(Z.shape[1])
    beta[0] = np.log(ybar / (1 - ybar))
    for _ in range(100):
        p = expit(Z @ beta)
        grad = Z.T @ (w * (y - p)) - pen * beta
        hess = (Z * (w * p * (1 - p))[:, None]).T @ Z + np.diag(pen)
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    slopes = beta[1:] / sd
    return np.r_[beta[0] - slopes @ mu, slopes]


def censoring_weights(
    row: np.ndarray,
    p_num: np.ndarray,
    p_den: np.ndarray,
) -> np.ndarray:
    """Stabilised weights ``prod_{l<j} (1 - p_num,l) / (1 - p_den,l)`` within each row.

    Parameters
    ----------
    row : ndarray of int
        The row of each interval; intervals of a row consecutive and in order.
    p_num, p_den : ndarray
        Probabilities of being censored in each interval (numerator and denominator
        models).

    Returns
    -------
    ndarray
        The weight of each interval (1 in a row's first); ``inf`` where the product
        exceeds the floating-point range (see the notes).

    Notes
    -----
    The product is accumulated as a sum of logs and exponentiated once. A censoring model
    that is (quasi-)separated, as in a bootstrap sample where few comparators start HAT,
    gives probabilities near 1 (kept at ``1 - 1e-9``, a factor up to ``1e9`` per interval),
    and over a long follow-up the log weight can pass ``log(max float)`` (about 709): the
    weight is then ``inf``, exactly what the exponential saturates to, without a floating-
    point overflow warning; the caller's truncation bounds it.
    """
    # a separated censoring model can give probabilities of 1: kept below 1 so every
    # weight is finite (the truncation then bounds them)
    p_num = np.clip(p_num, 0.0, 1.0 - 1e-9)
    p_den = np.clip(p_den, 0.0, 1.0 - 1e-9)
    log_term = np.log1p(-p_num) - np.log1p(-p_den)
    total = np.cumsum(log_term)
    first = np.r_[True, row[1:] != row[:-1]]
    start_index = np.maximum.accumulate(np.where(first, np.arange(len(row)), 0))
    before = total - log_term  # up to the previous interval
    base = before[start_index]
    log_weight = before - base
    # saturate to inf beyond the float range (see the notes) instead of overflowing
    return np.where(log_weight > _LOG_MAX, np.inf, np.exp(np.minimum(log_weight, _LOG_MAX)))
