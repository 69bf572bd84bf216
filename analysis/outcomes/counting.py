"""Estimators on counting-process data: follow-up split into intervals ``(start, stop]``, each
row with its own (time-varying) weight, as the per-protocol analysis with inverse probability
of censoring weights produces (:mod:`analysis.design.ipcw`).

- :func:`cox_counting`: the hazard ratio of a binary covariate, weighted partial likelihood
  with Breslow ties on the risk sets ``start < t <= stop``;
- :func:`km_counting`, :func:`aj_counting`: weighted Kaplan-Meier and Aalen-Johansen curves,
  with the product-limit steps of :mod:`analysis.outcomes._product_limit` (the kernel of
  :mod:`analysis.outcomes.kaplan_meier`);
- :func:`survival_at_time`, :func:`rmst`: a step function at a time and the area under it;
- :func:`weighted_rates`: weighted event rates of two arms.

They return bare numbers, for the bootstrap that gives their variance.

Notes
-----
:func:`cox_counting` solves the one-covariate partial likelihood on the arms' weighted
numbers at risk and events (Newton-Raphson on a scalar), not with the Cox engine
(:func:`analysis.outcomes.coxph.fit_cox`), which handles right-censored rows without delayed
entry; for one binary covariate with Breslow ties the two are the same likelihood.
"""

from __future__ import annotations

import numpy as np

from analysis.outcomes._product_limit import hazard_steps, survival_at_time

__all__ = [
    "aj_counting",
    "cox_counting",
    "km_counting",
    "rmst",
    "survival_at_time",
    "weighted_rates",
]


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
