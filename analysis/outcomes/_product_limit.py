"""The product-limit (Kaplan–Meier) kernel shared by the survival estimators.

Weighted product-limit steps on the unique times of one group, the step-function look-up,
each person's influence on ``log S(t)`` (and on areas under ``S``) in closed form, the
influence-function variance of ``log S`` at every time in O(n log n), and log(-log)
confidence limits for a probability. Used by :mod:`analysis.outcomes.kaplan_meier`,
:mod:`analysis.outcomes.absolute`, :mod:`analysis.outcomes.rmst`,
:mod:`analysis.outcomes.competing_risks` and the counting-process estimators
(:mod:`analysis.outcomes.counting`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.outcomes._coxph_core import _segment_cumsum

__all__ = [
    "ProductLimit",
    "hazard_steps",
    "km_log_variance",
    "log_survival_influence",
    "loglog_ci",
    "product_limit",
    "step_index",
    "survival_at_time",
]


@dataclass(frozen=True)
class ProductLimit:
    """Weighted product-limit estimate on the unique observed times of one group."""

    times: np.ndarray  # unique observed times (events and censorings), ascending
    at_risk: np.ndarray  # weighted number at risk Y_j
    events: np.ndarray  # weighted events d_j
    total: np.ndarray  # weighted observations (events + censorings) at t_j
    survival: np.ndarray  # S(t_j), right-continuous (after the jump at t_j)
    index: np.ndarray  # position of each observation's time in ``times``


def hazard_steps(at_risk: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Discrete hazards ``d_j / Y_j`` (0 where nobody is at risk): the product-limit steps."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(at_risk > 0, events / at_risk, 0.0)


def product_limit(time: np.ndarray, event: np.ndarray, w: np.ndarray) -> ProductLimit:
    """Weighted Kaplan–Meier estimate of one group (right-censored data)."""
    times, index = np.unique(time, return_inverse=True)
    m = len(times)
    total = np.bincount(index, weights=w, minlength=m)
    events = np.bincount(index, weights=w * event, minlength=m)
    at_risk = np.cumsum(total[::-1])[::-1]
    survival = np.cumprod(1.0 - hazard_steps(at_risk, events))
    return ProductLimit(times, at_risk, events, total, survival, index)


def step_index(times: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Index of the last time <= t (-1 when none)."""
    return np.searchsorted(times, t, side="right") - 1


def survival_at_time(times: np.ndarray, surv: np.ndarray, t: float) -> float:
    """The right-continuous step function ``surv`` (its value after each of ``times``) at ``t``.

    1 before the first time.
    """
    j = int(step_index(times, t))
    return 1.0 if j < 0 else float(surv[j])


def log_survival_influence(pl: ProductLimit, event: np.ndarray, mult: np.ndarray) -> np.ndarray:
    """Derivative of ``sum_j mult_j * log(1 - h_j)`` with respect to each person's weight.

    ``h_j = d_j / Y_j``. With ``mult_j = 1{t_j <= t}`` this is the influence of a person
    on ``log S(t)``; with ``mult_j`` = area under S from ``t_j`` to tau, on the RMST.
    Per person ``i`` with time index ``j(i)``::

        -event_i * mult_j(i) / (Y - d)_j(i)  +  sum_{j <= j(i)} mult_j d_j / (Y_j (Y_j - d_j))
    """
    remaining = pl.at_risk - pl.events
    active = mult != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(active, mult / remaining, 0.0)
        b = np.where(active, mult * pl.events / (pl.at_risk * remaining), 0.0)
    return -event * a[pl.index] + np.cumsum(b)[pl.index]


def km_log_variance(
    pl: ProductLimit, event: np.ndarray, w: np.ndarray, codes: np.ndarray
) -> np.ndarray:
    """Sum over clusters of the squared cluster totals of the influence on log S(t_k), every k.

    Person ``i`` (time index ``j_i``, weight ``w_i``) has influence ``w_i c_i`` on
    ``log S(t_k)`` once ``j_i <= k`` and ``w_i B_k`` before, where
    ``c_i = -event_i / (Y - d)_{j_i} + B_{j_i}`` and ``B_k = sum_{j <= k} d_j / (Y_j (Y_j - d_j))``
    (:func:`log_survival_influence` with ``mult = 1{t_j <= t_k}``). A cluster's total is
    ``P_c(k) + B_k R_c(k)``, with ``P_c`` the sum of ``w c`` over its persons whose time has
    passed and ``R_c`` the weight of the others, so the sum of squares is
    ``sum P_c^2 + 2 B_k sum P_c R_c + B_k^2 sum R_c^2``. The three sums change only when a
    person's time passes: running sums over the persons in time order give them at every
    time in O(n log n), instead of O(n m) for the n x m matrix of influences.
    Entries from the time where S reaches 0 on are not finite (S is 0 there: no variance).
    """
    m = len(pl.times)
    j = pl.index
    with np.errstate(divide="ignore", invalid="ignore"):
        remaining = pl.at_risk - pl.events
        big_b = np.cumsum(np.where(pl.events > 0, pl.events / (pl.at_risk * remaining), 0.0))
        wc = w * (big_b[j] - np.where(event == 1, 1.0 / remaining[j], 0.0))
    # persons at the time where S reaches 0 have infinite influence on log S: they matter
    # only from that time on, where S = 0, and must not spill into the running sums
    wc = np.where(np.isfinite(wc), wc, 0.0)
    # prior sums within each cluster, persons of a cluster in time order
    order = np.lexsort((j, codes))
    sorted_codes = codes[order]
    new = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]
    seg_first = np.flatnonzero(new)[np.cumsum(new) - 1]
    prior_p, prior_q = np.empty(len(j)), np.empty(len(j))
    prior_p[order] = _segment_cumsum(wc[order], seg_first) - wc[order]
    prior_q[order] = _segment_cumsum(w[order], seg_first) - w[order]
    cluster_w = np.bincount(codes, weights=w)
    prior_r = cluster_w[codes] - prior_q
    with np.errstate(invalid="ignore", over="ignore"):
        d_pp = wc * (2.0 * prior_p + wc)
        d_pr = wc * prior_r - w * prior_p - w * wc
        d_rr = -w * (2.0 * prior_r - w)
    by_time = np.argsort(j, kind="stable")
    last = np.searchsorted(j[by_time], np.arange(m), side="right") - 1
    with np.errstate(invalid="ignore", over="ignore"):
        s_pp = np.cumsum(d_pp[by_time])[last]
        s_pr = np.cumsum(d_pr[by_time])[last]
        s_rr = np.sum(cluster_w**2) + np.cumsum(d_rr[by_time])[last]
        return s_pp + 2.0 * big_b * s_pr + big_b**2 * s_rr


def loglog_ci(est: np.ndarray, se: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Confidence limits for a probability on the log(-log p) scale.

    Returns (lower, upper) for p; limits stay inside [0, 1].
    """
    est = np.asarray(est, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_est = np.log(est)
        half = z * se / np.abs(est * log_est)
        lo = est ** np.exp(half)
        hi = est ** np.exp(-half)
    degenerate = (est <= 0) | (est >= 1) | ~np.isfinite(half)
    lo = np.where(degenerate, est, lo)
    hi = np.where(degenerate, est, hi)
    return lo, hi
