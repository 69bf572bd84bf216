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
- the outcome estimators take the interval rows with their weights: a Cox model on
  counting-process data (:func:`cox_counting`, Breslow ties), Kaplan-Meier and
  Aalen-Johansen curves (:func:`km_counting`, :func:`aj_counting`) and ratios of weighted
  rates (:func:`weighted_rates`).

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

__all__ = [
    "Intervals",
    "aj_counting",
    "censoring_weights",
    "cox_counting",
    "fit_logistic",
    "km_counting",
    "split_intervals",
    "weighted_rates",
]

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
        The weight of each interval (1 in a row's first).
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
    return np.exp(before - base)


def _at_risk(times: np.ndarray, start: np.ndarray, stop: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted number at risk at each of ``times``: rows with ``start < t <= stop``."""
    o_stop, o_start = np.argsort(stop), np.argsort(start)
    cum_stop = np.r_[0.0, np.cumsum(w[o_stop])]
    cum_start = np.r_[0.0, np.cumsum(w[o_start])]
    total = cum_stop[-1]
    # sum of w with stop >= t minus sum of w with start >= t
    stop_ge = total - cum_stop[np.searchsorted(stop[o_stop], times, side="left")]
    start_ge = total - cum_start[np.searchsorted(start[o_start], times, side="left")]
    return stop_ge - start_ge


def _events(times: np.ndarray, stop: np.ndarray, event: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted events at each of ``times`` (``times`` sorted and unique)."""
    e = event == 1
    pos = np.searchsorted(times, stop[e])
    hit = pos < len(times)
    hit[hit] = times[pos[hit]] == stop[e][hit]
    return np.bincount(pos[hit], weights=w[e][hit], minlength=len(times))


def cox_counting(
    start: np.ndarray,
    stop: np.ndarray,
    event: np.ndarray,
    x: np.ndarray,
    w: np.ndarray,
) -> tuple[float, float]:
    """Weighted Cox model with one binary covariate on counting-process data.

    Breslow's handling of ties; the risk set at an event time ``t`` holds the rows with
    ``start < t <= stop``, each with its own (time-varying) weight.

    Parameters
    ----------
    start, stop, event : ndarray
        Interval rows.
    x : ndarray of 0/1
        Treatment.
    w : ndarray
        Weights.

    Returns
    -------
    (float, float)
        log hazard ratio and the model-based information (``nan`` log HR when no
        event, or when an arm has no event and the likelihood is monotone).
    """
    e = (event == 1) & (w > 0)
    times = np.unique(stop[e])
    if not len(times):
        return float("nan"), float("nan")
    y1 = _at_risk(times, start[x == 1], stop[x == 1], w[x == 1])
    y0 = _at_risk(times, start[x == 0], stop[x == 0], w[x == 0])
    d1 = _events(times, stop[x == 1], event[x == 1], w[x == 1])
    d0 = _events(times, stop[x == 0], event[x == 0], w[x == 0])
    d = d0 + d1
    if d1.sum() <= 0 or d0.sum() <= 0:
        return float("nan"), float("nan")
    b = 0.0
    info = float("nan")
    for _ in range(100):
        r = np.exp(b)
        p = r * y1 / (y0 + r * y1)
        score = float(np.sum(d1 - d * p))
        info = float(np.sum(d * p * (1 - p)))
        if not info > 0:
            return float("nan"), float("nan")
        step = float(np.clip(score / info, -2.0, 2.0))
        b += step
        if abs(step) < 1e-10:
            break
    return b, info


def km_counting(
    start: np.ndarray, stop: np.ndarray, event: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Kaplan-Meier curve on counting-process data.

    Returns
    -------
    (ndarray, ndarray)
        Event times and the survival just after each.
    """
    e = (event == 1) & (w > 0)
    times = np.unique(stop[e])
    if not len(times):
        return times, np.ones(0)
    y = _at_risk(times, start, stop, w)
    d = _events(times, stop, event, w)
    surv = np.cumprod(1.0 - np.where(y > 0, d / np.where(y > 0, y, 1.0), 0.0))
    return times, surv


def survival_at_time(times: np.ndarray, surv: np.ndarray, t: float) -> float:
    """The step function ``surv`` (after each of ``times``) at ``t``."""
    k = np.searchsorted(times, t, side="right")
    return float(surv[k - 1]) if k > 0 else 1.0


def rmst(times: np.ndarray, surv: np.ndarray, tau: float) -> float:
    """Area under the step function ``surv`` from 0 to ``tau`` (days)."""
    keep = times < tau
    t = np.r_[0.0, np.maximum(times[keep], 0.0), tau]
    s = np.r_[1.0, surv[keep]]
    return float(np.sum(s * np.diff(t)))


def aj_counting(
    start: np.ndarray,
    stop: np.ndarray,
    event_type: np.ndarray,
    w: np.ndarray,
    time: float,
    cause: int = 1,
) -> float:
    """Weighted Aalen-Johansen cumulative incidence of ``cause`` by ``time``.

    ``event_type`` 0 censored, ``cause`` the event of interest, any other value a
    competing event; every event ends the all-cause survival.
    """
    anyev = (event_type > 0).astype(np.int64)
    e = (anyev == 1) & (w > 0)
    times = np.unique(stop[e])
    times = times[times <= time]
    if not len(times):
        return 0.0
    y = _at_risk(times, start, stop, w)
    d = _events(times, stop, anyev, w)
    d1 = _events(times, stop, (event_type == cause).astype(np.int64), w)
    haz = np.where(y > 0, d / np.where(y > 0, y, 1.0), 0.0)
    surv_before = np.r_[1.0, np.cumprod(1.0 - haz)[:-1]]
    return float(np.sum(surv_before * np.where(y > 0, d1 / np.where(y > 0, y, 1.0), 0.0)))


def weighted_rates(
    count: np.ndarray, years: np.ndarray, x: np.ndarray, w: np.ndarray
) -> tuple[float, float]:
    """Weighted event rates ``sum w y / sum w T`` of the arms ``x == 1`` and ``x == 0``."""
    out = []
    for arm in (1, 0):
        a = x == arm
        py = float(np.sum(w[a] * years[a]))
        out.append(float(np.sum(w[a] * count[a])) / py if py > 0 else float("nan"))
    return out[0], out[1]
