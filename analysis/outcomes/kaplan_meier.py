"""Kaplan–Meier survival curves by group, with pointwise bands and numbers at risk.

Without weights and clusters the standard error is Greenwood's; with either, the
infinitesimal-jackknife (influence-function) variance summed within clusters, which R's
``survfit(..., cluster=)`` reports (times ``G / (G - 1)``, :mod:`analysis.sandwich`).

References
----------
Kaplan EL, Meier P (1958). Nonparametric estimation from incomplete observations.
JASA 53:457-481.
Therneau TM, Grambsch PM (2000). Modeling Survival Data: Extending the Cox Model. Springer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis._checks import binary, cluster_codes, durations, weights_array, z_value
from analysis.outcomes._common import curve_cluster_check
from analysis.outcomes._product_limit import km_log_variance, loglog_ci, product_limit
from analysis.sandwich import count_clusters, small_sample_factor

__all__ = ["KaplanMeier", "kaplan_meier", "numbers_at_risk"]


@dataclass(frozen=True)
class KaplanMeier:
    """Kaplan–Meier curves by group.

    Attributes
    ----------
    curve : DataFrame
        ``group, time, n_at_risk, events, censored, survival, se, ci_low, ci_high``: one
        row per group at time 0 and at every observed time (weighted counts when weighted).
    at_risk : DataFrame
        ``group, time, n_at_risk``: persons (unweighted) still under observation at the
        chosen times, for the table under a KM plot.
    """

    curve: pd.DataFrame
    at_risk: pd.DataFrame


def kaplan_meier(
    df: pd.DataFrame,
    *,
    duration: str,
    event: str,
    group: str,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
    at_risk_times: Sequence[float] | None = None,
) -> KaplanMeier:
    """Kaplan–Meier survival curves by group, with numbers at risk.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    duration, event : str
        Follow-up time (>= 0) and event indicator (0/1).
    group : str
        Grouping column (e.g. ``"group"`` with HAT/OST).
    weights : str, optional
        Weights (matching or IPT weights). The curve and the counts are weighted.
    cluster : str, optional
        Cluster (matched set) for the standard error.
    alpha : float
        1 - confidence level of the pointwise band (log(-log S) scale, which keeps the
        limits inside [0, 1]; Kalbfleisch & Prentice 1980).
    at_risk_times : sequence of float, optional
        Times for the numbers-at-risk table; default every 180 days up to the longest
        follow-up.

    Returns
    -------
    KaplanMeier
        ``curve`` and ``at_risk`` tables.

    Notes
    -----
    Standard error of S(t). Without weights and clusters: Greenwood's formula (R's
    ``survfit``). With either: the design-based infinitesimal-jackknife (influence-function)
    variance, summed within ``cluster`` (each person its own cluster without one), with the
    small-sample factor ``G / (G - 1)`` of :mod:`analysis.sandwich` (``G`` clusters in the
    group): R's robust ``survfit(..., weights =, cluster =)`` standard error times
    ``sqrt(G / (G - 1))``, and the variance :func:`survival_at` uses at one time point.
    Greenwood's formula on weighted counts would treat the weights as frequencies (four
    comparators of weight 1/4 as one person) and give bands of the wrong width. The
    influence-function variance at every time costs O(n log n) (running sums over the
    persons in time order). Where S(t) = 0 the standard error is 0 (the curve stays at 0
    whatever the weights). With fewer than 2 clusters in a group its SEs and band are NaN
    (and a :class:`analysis.sandwich.FewClustersWarning` is emitted, as below 30).

    References
    ----------
    Kaplan EL, Meier P (1958). Nonparametric estimation from incomplete observations.
    JASA 53:457-481.
    Greenwood M (1926). The natural duration of cancer. Reports on Public Health and
    Medical Subjects 33. HMSO.
    Kalbfleisch JD, Prentice RL (1980). The Statistical Analysis of Failure Time Data. Wiley.
    Therneau TM, Grambsch PM (2000). Modeling Survival Data. Springer (IJ variance).
    """
    # long: the docstring documents the variance; the body is about 70 lines
    z = z_value(alpha)
    t = durations(df, duration)
    e = binary(df, event, "event")
    w = weights_array(df, weights)
    codes_all, _ = cluster_codes(df, cluster)
    robust = weights is not None or cluster is not None
    if group not in df.columns:
        raise KeyError(f"group column {group!r} is not in the data")
    g = df[group].to_numpy()
    if pd.isna(g).any():
        raise ValueError(f"group column {group!r} has missing values")
    if at_risk_times is None:
        top = float(t.max()) if len(t) else 0.0
        at_risk_times = np.arange(0.0, top + 1.0, 180.0)
    at_risk_times = np.asarray(at_risk_times, dtype=float)
    curves, risks = [], []
    for level in sorted(pd.unique(g)):
        sel = g == level
        pl = product_limit(t[sel], e[sel], w[sel])
        if robust:
            codes = pd.factorize(codes_all[sel])[0].astype(np.intp)
            curve_cluster_check(codes, cluster, level)
            var_log = km_log_variance(pl, e[sel], w[sel], codes)
            var_log = var_log * small_sample_factor(count_clusters(codes))
        else:  # Greenwood
            remaining = pl.at_risk - pl.events
            with np.errstate(divide="ignore", invalid="ignore"):
                var_log = np.cumsum(
                    np.where(pl.events > 0, pl.events / (pl.at_risk * remaining), 0.0)
                )
        with np.errstate(invalid="ignore"):
            se = np.where(pl.survival > 0, pl.survival * np.sqrt(var_log), 0.0)
        lo, hi = loglog_ci(pl.survival, se, z)
        part = pd.DataFrame(
            {
                "group": level,
                "time": pl.times,
                "n_at_risk": pl.at_risk,
                "events": pl.events,
                "censored": pl.total - pl.events,
                "survival": pl.survival,
                "se": se,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
        if pl.times[0] > 0:
            start = {
                "group": level, "time": 0.0, "n_at_risk": pl.at_risk[0], "events": 0.0,
                "censored": 0.0, "survival": 1.0, "se": 0.0, "ci_low": 1.0, "ci_high": 1.0,
            }  # fmt: skip
            part = pd.concat([pd.DataFrame([start]), part], ignore_index=True)
        curves.append(part)
        ts = np.sort(t[sel])
        n_risk = len(ts) - np.searchsorted(ts, at_risk_times, side="left")
        risks.append(pd.DataFrame({"group": level, "time": at_risk_times, "n_at_risk": n_risk}))
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    at_risk = pd.concat(risks, ignore_index=True) if risks else pd.DataFrame()
    return KaplanMeier(curve=curve, at_risk=at_risk)


def numbers_at_risk(
    df: pd.DataFrame, *, duration: str, group: str, times: Sequence[float]
) -> pd.DataFrame:
    """Persons still under observation (duration >= t) at each time, by group.

    Returns
    -------
    DataFrame
        ``group, time, n_at_risk`` (unweighted counts).
    """
    t = durations(df, duration)
    g = df[group].to_numpy()
    times = np.asarray(times, dtype=float)
    rows = []
    for level in sorted(pd.unique(g)):
        ts = np.sort(t[g == level])
        n_risk = len(ts) - np.searchsorted(ts, times, side="left")
        rows.append(pd.DataFrame({"group": level, "time": times, "n_at_risk": n_risk}))
    return pd.concat(rows, ignore_index=True)
