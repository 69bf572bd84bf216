"""Estimators on counting-process data: follow-up split into intervals ``(start, stop]``, each
row with its own (time-varying) weight, as the per-protocol analysis with inverse probability
of censoring weights produces (:mod:`analysis.design.ipcw`).

- :func:`cox_counting`: the hazard ratio of one covariate, the weighted Cox model with
  Breslow ties on the risk sets ``start < t <= stop``: the Cox engine
  (:func:`analysis.outcomes.coxph.fit_cox` with ``entry=start``);
- :func:`km_counting`, :func:`aj_counting`: weighted Kaplan-Meier and Aalen-Johansen curves,
  with the product-limit steps of :mod:`analysis.outcomes._product_limit` (the kernel of
  :mod:`analysis.outcomes.kaplan_meier`) on the same risk sets;
- :func:`survival_at_time`, :func:`rmst`: a step function at a time and the area under it;
- :func:`weighted_rates`: weighted event rates of two arms.

They return bare numbers, for the bootstrap that gives their variance. Rows with weight 0
(persons not drawn in a bootstrap replicate) are left out. All three agree with R's
``survival`` on ``Surv(start, stop, event)`` (``tests/reference/make_reference_counting.R``).
"""

from __future__ import annotations

import warnings

import numpy as np

from analysis.outcomes._coxph_core import _tail_sums
from analysis.outcomes._product_limit import hazard_steps, survival_at_time
from analysis.outcomes.coxph import _fit_coefficients

__all__ = [
    "aj_counting",
    "cox_counting",
    "km_counting",
    "rmst",
    "survival_at_time",
    "weighted_rates",
]


def _at_risk(times: np.ndarray, start: np.ndarray, stop: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted number at risk at each of ``times``: rows with ``start < t <= stop``.

    The weight of the rows with ``stop >= t`` minus that of the rows with ``start >= t``, as
    the Cox engine's risk sets (compensated sums: a person's later intervals, in both terms,
    cost no precision).
    """
    o_stop, o_start = np.argsort(stop), np.argsort(start)
    s_stop, e_stop = _tail_sums(w[o_stop], np.searchsorted(stop[o_stop], times, side="left"))
    s_start, e_start = _tail_sums(w[o_start], np.searchsorted(start[o_start], times, side="left"))
    return (s_stop - s_start) + (e_stop - e_start)


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
    """Weighted Cox model with one covariate on counting-process data.

    R's ``coxph(Surv(start, stop, event) ~ x, weights = w, ties = "breslow")``: the risk set
    at an event time ``t`` holds the rows with ``start < t <= stop``, each with its own
    (time-varying) weight. Fitted by the Cox engine (the estimate of
    :func:`analysis.outcomes.coxph.fit_cox` with ``entry=start``, without its variances and
    residuals, which the bootstrap does not need), converged to a relative change in log
    partial likelihood of 1e-12.

    Parameters
    ----------
    start, stop, event : ndarray
        Interval rows.
    x : ndarray
        The covariate (0/1 treatment).
    w : ndarray
        Weights, >= 0; rows with weight 0 are left out.

    Returns
    -------
    (float, float)
        log hazard ratio and the model-based information, both ``nan`` when there is no
        event, when an arm (a level of ``x``) has no event, or when the estimate is
        otherwise infinite (monotone likelihood).
    """
    keep = np.asarray(w) > 0
    event = np.asarray(event)[keep]
    x = np.asarray(x, dtype=np.float64)[keep]
    has_event = event == 1
    if not has_event.any() or np.ptp(x[has_event]) == 0 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # infinite estimates: nan below
        try:
            beta, info, diverging, converged = _fit_coefficients(
                x,
                np.asarray(stop)[keep],
                event,
                entry=np.asarray(start)[keep],
                weights=np.asarray(w)[keep],
                ties="breslow",
                tol=1e-12,
                max_iter=100,
            )
        except ValueError:  # singular information
            return float("nan"), float("nan")
    if diverging or not converged:
        return float("nan"), float("nan")
    return float(beta[0]), float(info[0, 0])


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
    return times, np.cumprod(1.0 - hazard_steps(y, d))


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
    surv_before = np.r_[1.0, np.cumprod(1.0 - hazard_steps(y, d))[:-1]]
    return float(np.sum(surv_before * hazard_steps(y, d1)))


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
