"""Event rates: exact and weighted Poisson rates, and the ratio of two arms' marginal rates.

:func:`poisson_rate` and :func:`crude_rates` give event rates per person-time with exact
(Garwood) intervals, or the gamma intervals of Fay & Feuer for weighted counts.
:func:`rate_ratio` is the ratio of the (weighted) marginal event rates of two arms, total
events over total person-time, with the cluster-robust variance of
:mod:`analysis.sandwich`: the Poisson estimating equation without the Poisson assumption.

References
----------
Garwood F (1936). Fiducial limits for the Poisson distribution. Biometrika 28:437-442.
Fay MP, Feuer EJ (1997). Confidence intervals for directly standardized rates: a method
based on the gamma distribution. Stat Med 16:791-801.
Cameron AC, Trivedi PK (2013). Regression Analysis of Count Data, 2nd ed. Cambridge.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis._checks import numeric, require_columns, weights_array, z_value
from analysis.outcomes._common import nan_estimate as _nan_estimate
from analysis.outcomes._count_data import count_columns, log_rate, no_events_arm, refactor
from analysis.results import EffectEstimate, _clean
from analysis.sandwich import cluster_check, cluster_variance, count_clusters

__all__ = ["PoissonRate", "crude_rates", "poisson_rate", "rate_ratio"]


@dataclass(frozen=True, kw_only=True)
class PoissonRate:
    """An event rate with its confidence interval.

    Attributes
    ----------
    events, person_years : float
        Events and person-time (weighted sums when weights were used).
    rate, ci_low, ci_high : float
        Events per person-year and the interval.
    alpha : float
        1 - confidence level.
    method : str
        ``"exact (Garwood)"`` or ``"gamma (Fay-Feuer)"`` for weighted rates.
    """

    events: float
    person_years: float
    rate: float
    ci_low: float
    ci_high: float
    alpha: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary."""
        return _clean(asdict(self))


def poisson_rate(events: float, person_years: float, *, alpha: float = 0.05) -> PoissonRate:
    """Poisson rate with the exact (Garwood) confidence interval.

    Parameters
    ----------
    events : int
        Number of events (a non-negative integer).
    person_years : float
        Person-time at risk (> 0).
    alpha : float
        1 - confidence level.

    Returns
    -------
    PoissonRate
        Rate per person-year; lower limit ``chi2(alpha/2, 2k) / (2 PY)`` (0 when k = 0),
        upper ``chi2(1 - alpha/2, 2k + 2) / (2 PY)``.

    References
    ----------
    Garwood F (1936). Biometrika 28:437-442.
    Ulm K (1990). A simple method to calculate the confidence interval of a standardized
    mortality ratio. Am J Epidemiol 131:373-375.
    """
    z_value(alpha)
    if events < 0 or events != int(events):
        raise ValueError(f"events must be a non-negative integer, got {events}")
    if not person_years > 0:
        raise ValueError(f"person_years must be positive, got {person_years}")
    k = int(events)
    lo = 0.0 if k == 0 else stats.chi2.ppf(alpha / 2, 2 * k) / 2
    hi = stats.chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2
    return PoissonRate(
        events=float(k),
        person_years=float(person_years),
        rate=k / person_years,
        ci_low=float(lo / person_years),
        ci_high=float(hi / person_years),
        alpha=alpha,
        method="exact (Garwood)",
    )


def _weighted_rate(counts: np.ndarray, py: np.ndarray, w: np.ndarray, alpha: float) -> PoissonRate:
    """Weighted rate sum(w k) / sum(w PY) with the Fay-Feuer gamma interval."""
    total_py = float(np.sum(w * py))
    if not total_py > 0:
        raise ValueError("weighted person-years must be positive")
    v = w / total_py  # rate = sum(v_i k_i), a weighted sum of Poisson counts
    y = float(np.sum(v * counts))
    var = float(np.sum(v**2 * counts))
    wm = float(np.max(v[w > 0])) if (w > 0).any() else 0.0
    lo = 0.0 if y == 0 else var / (2 * y) * stats.chi2.ppf(alpha / 2, 2 * y**2 / var)
    hi = (
        (var + wm**2)
        / (2 * (y + wm))
        * stats.chi2.ppf(1 - alpha / 2, 2 * (y + wm) ** 2 / (var + wm**2))
    )
    return PoissonRate(
        events=float(np.sum(w * counts)),
        person_years=total_py,
        rate=y,
        ci_low=float(lo),
        ci_high=float(hi),
        alpha=alpha,
        method="gamma (Fay-Feuer)",
    )


def crude_rates(
    df: pd.DataFrame,
    *,
    events: str,
    exposure: str,
    group: str,
    per: float = 1000,
    weights: str | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Crude event rates by group with exact confidence intervals.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    events : str
        Events per person (0/1 deaths, or counts).
    exposure : str
        Person-years at risk per person.
    group : str
        Grouping column; one row of the result per value, in sorted order.
    per : float
        Rates per ``per`` person-years (e.g. 1,000 for deaths, 1 for frequent events).
    weights : str, optional
        Weights; the rate is then ``sum(w k) / sum(w PY)`` with the Fay & Feuer gamma
        interval (which reduces to Garwood's with equal weights).
    alpha : float
        1 - confidence level.

    Returns
    -------
    DataFrame
        ``group, n, events, person_years, rate, ci_low, ci_high, per, method``.

    References
    ----------
    Garwood F (1936). Biometrika 28:437-442.
    Fay MP, Feuer EJ (1997). Stat Med 16:791-801.
    """
    k = numeric(df, events, "events")
    py = numeric(df, exposure, "exposure")
    if (k < 0).any() or (py < 0).any():
        raise ValueError("events and exposure must be non-negative")
    w = weights_array(df, weights)
    require_columns(df, group=group)
    g = df[group].to_numpy()
    rows = []
    for level in sorted(pd.unique(g)):
        sel = g == level
        if weights is None:
            r = poisson_rate(float(k[sel].sum()), float(py[sel].sum()), alpha=alpha)
        else:
            r = _weighted_rate(k[sel], py[sel], w[sel], alpha)
        rows.append(
            {
                "group": level,
                "n": int(sel.sum()),
                "events": r.events,
                "person_years": r.person_years,
                "rate": r.rate * per,
                "ci_low": r.ci_low * per,
                "ci_high": r.ci_high * per,
                "per": per,
                "method": r.method,
            }
        )
    return pd.DataFrame(rows)


# long: the docstring (estimand, variance, arguments); the code is ~55 lines
def rate_ratio(
    df: pd.DataFrame,
    *,
    events: str,
    exposure: str,
    treatment: str,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
    outcome: str,
    method: str,
    arm_labels: tuple[str, str] = ("treated", "control"),
) -> EffectEstimate:
    """Ratio of the (weighted) marginal event rates of two arms, with a robust variance.

    ``IRR = (sum_{a=1} w y / sum_{a=1} w t) / (sum_{a=0} w y / sum_{a=0} w t)``: the ratio
    of total events to total person-time, treated over control. It is the maximum-likelihood
    estimate of the treatment coefficient of a Poisson regression with treatment only and a
    log person-time offset, used as an estimating equation, so it needs no Poisson (or
    negative-binomial) assumption about the counts: it estimates the ratio of marginal
    rates in the weighted population (total events over total person-time at risk under
    each potential outcome). A negative-binomial regression instead weights persons by
    ``1 / (1 + mu_i / theta)``, down-weighting long follow-up, and so targets another
    ratio when the rate ratio varies with follow-up.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    events, exposure : str
        Event count and person-years at risk (>= 0; rows with zero exposure carry no
        information and are dropped, counted in ``details``).
    treatment : str
        The 0/1 treatment (1 = treated).
    weights : str, optional
        Matching or IPT weights.
    cluster : str, optional
        Cluster (matched set) of the robust variance; default each person its own.
    alpha : float
        1 - confidence level.
    outcome, method : str
        Labels of the result.
    arm_labels : (str, str)
        Names of the treated and control arms in ``details["rates"]`` and in notes.

    Returns
    -------
    EffectEstimate
        ``measure="IRR"``. ``details``: ``se_log``, ``robust`` (always True),
        ``n_clusters``, ``coefficients`` (``intercept``: log control rate; the treatment:
        log IRR, as the Poisson regression's), ``rates`` per arm (events, person_years,
        rate), ``weighted``, ``n_dropped_zero_exposure``.

    Notes
    -----
    Variance: the cluster-robust (sandwich) variance of the log rate ratio from its
    influence function, ``w_i (y_i - r_a t_i) / sum_{a} w y`` for a person of arm
    ``a`` (the difference of the arms' log-rate influences), summed within clusters,
    with the package's small-sample factor ``G / (G - 1)``; the Poisson model-based
    variance is never used, since counts are often overdispersed. Not estimable with fewer
    than two clusters or no events in an arm (the log ratio is then infinite).

    References
    ----------
    Cameron AC, Trivedi PK (2013). Regression Analysis of Count Data, 2nd ed., ch. 3
    (Poisson quasi-MLE with robust variance). Cambridge.
    Lumley T, Kronmal R, Ma S (2006). Relative risk regression in medical research:
    models, contrasts, estimators and algorithms. UW Biostatistics Working Paper 293.
    """
    z_value(alpha)  # validates alpha
    y, expo, a, w, codes = count_columns(
        df, events=events, exposure=exposure, treatment=treatment, weights=weights,
        cluster=cluster, integer=False,
    )  # fmt: skip
    zero_expo = expo == 0
    details: dict[str, Any] = {
        "n_dropped_zero_exposure": int(zero_expo.sum()),
        "events_dropped_zero_exposure": int(y[zero_expo].sum()),
    }
    keep = ~zero_expo & (w > 0)
    y, expo, a, w, codes = y[keep], expo[keep], a[keep], w[keep], refactor(codes[keep])
    n_treated, n_control = int(a.sum()), int(len(a) - a.sum())
    common = {"n_treated": n_treated, "n_control": n_control, "n_events": int(y.sum())}

    def not_estimable(note: str) -> EffectEstimate:
        return _nan_estimate(outcome, "IRR", method, note, details=details, **common)

    if n_treated == 0 or n_control == 0:
        return not_estimable("IRR not estimable: one treatment group is empty")
    empty = no_events_arm(y, a, arm_labels)
    if empty is not None:
        return not_estimable(
            f"IRR not estimable: no events in the {empty[0]} group (the IRR would be {empty[1]})"
        )
    what = f"values of {cluster}" if cluster else "persons, each its own cluster"
    problem = cluster_check(count_clusters(codes), what=what)
    if problem is not None and problem.startswith("not estimable"):
        return not_estimable(f"IRR {problem}")
    details.update(_rate_ratio_fit(y, expo, a, w, codes, treatment, arm_labels))
    details["weighted"] = weights is not None
    if problem:
        details["note"] = problem
    return EffectEstimate.from_log(
        log_estimate=details["coefficients"][treatment]["coef"],
        se=details["se_log"],
        alpha=alpha,
        outcome=outcome,
        measure="IRR",
        method=method,
        details=details,
        **common,
    )


def _rate_ratio_fit(
    y: np.ndarray,
    expo: np.ndarray,
    a: np.ndarray,
    w: np.ndarray,
    codes: np.ndarray,
    treatment: str,
    arm_labels: tuple[str, str],
) -> dict[str, Any]:
    """The log rate ratio, its robust SE, the coefficients and the rates of both arms."""
    parts = {g: log_rate(y, expo, w, a == g) for g in (0, 1)}
    rate = {g: parts[g][2] for g in (0, 1)}
    var, n_clusters = cluster_variance(parts[1][3] - parts[0][3], codes, small_sample=True)
    se = float(np.sqrt(var))
    log_irr = math.log(rate[1] / rate[0])
    # SE of the intercept (log control rate) from the control influence alone
    se0 = float(np.sqrt(cluster_variance(parts[0][3], codes, small_sample=True)[0]))
    return {
        "se_log": se,
        "robust": True,
        "n_clusters": int(n_clusters),
        "coefficients": {
            "intercept": {"coef": math.log(rate[0]), "se": se0},
            treatment: {"coef": log_irr, "se": se},
        },
        "rates": {
            label: {"events": parts[g][0], "person_years": parts[g][1], "rate": rate[g]}
            for g, label in zip((1, 0), arm_labels, strict=True)
        },
    }
