"""Tests of no treatment effect on a time to event: the log-rank test (unweighted data) and
the Cox score test, robust to weights and clusters (Lin & Wei 1989), for matched or weighted
samples.

References
----------
Mantel N (1966). Evaluation of survival data and two new rank order statistics arising in
its consideration. Cancer Chemother Rep 50:163-170.
Lin DY, Wei LJ (1989). The robust inference for the Cox proportional hazards model.
JASA 84:1074-1078.
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd
from scipy import stats

from analysis._checks import binary, cluster_codes, durations, weights_array
from analysis.outcomes.coxph import fit_cox
from analysis.sandwich import cluster_check, count_clusters

__all__ = ["cox_score_test", "logrank"]


def logrank(
    df: pd.DataFrame,
    *,
    duration: str,
    event: str,
    treatment: str,
) -> dict[str, Any]:
    """Log-rank test of equal hazards in the two treatment groups (unweighted data).

    For weighted or matched data use :func:`cox_score_test`: a log-rank test on weighted
    counts treats the weights as frequencies and ignores the matched sets.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    duration, event, treatment : str
        Follow-up time, event indicator (0/1), treatment (1 HAT, 0 OST).

    Returns
    -------
    dict
        ``statistic`` (chi-square, 1 df; R's ``survdiff``), ``p_value``, ``df``,
        ``weighted`` (False), ``test``.

    References
    ----------
    Mantel N (1966). Evaluation of survival data and two new rank order statistics
    arising in its consideration. Cancer Chemother Rep 50:163-170.
    Peto R, Peto J (1972). Asymptotically efficient rank invariant test procedures. JRSS A
    135:185-207.
    """
    from lifelines.statistics import logrank_test

    t = durations(df, duration)
    e = binary(df, event, "event")
    a = binary(df, treatment, "treatment")
    if a.sum() == 0 or a.sum() == len(a) or e.sum() == 0:
        return {
            "statistic": float("nan"), "p_value": float("nan"), "df": 1, "weighted": False,
            "test": "logrank", "note": "not testable: a group is empty or there are no events",
        }  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = logrank_test(t[a == 1], t[a == 0], e[a == 1], e[a == 0])
    return {
        "statistic": float(res.test_statistic),
        "p_value": float(res.p_value),
        "df": 1,
        "weighted": False,
        "test": "logrank",
    }


def cox_score_test(
    df: pd.DataFrame,
    *,
    duration: str,
    event: str,
    treatment: str,
    weights: str | None = None,
    cluster: str | None = None,
) -> dict[str, Any]:
    """Score test of no treatment effect in a Cox model with treatment alone.

    The score test of a Cox model whose only covariate is the treatment is the log-rank
    test's design-aware generalisation: with ``weights`` and/or ``cluster`` it is the
    robust score test (Lin & Wei 1989), the score at ``beta = 0`` against the sandwich meat
    of the weighted score residuals at ``beta = 0`` summed within cluster, so it respects
    matching and weighting as the robust Cox interval does. Without either it is the
    ordinary score test (R's ``summary(coxph(...))$sctest``; Efron ties).

    Parameters
    ----------
    df : DataFrame
        One row per person.
    duration, event, treatment : str
        Follow-up time (>= 0), event indicator (0/1), treatment (1 HAT, 0 OST).
    weights : str, optional
        Non-negative weights (matching or IPT weights); zero-weight rows are dropped.
    cluster : str, optional
        Cluster (matched set).

    Returns
    -------
    dict
        ``statistic`` (chi-square, 1 df), ``p_value``, ``df``, ``test``, ``weighted``,
        ``robust``, ``n_clusters`` (clusters, or persons, behind a robust test) and, when
        not testable or with few clusters, ``note``.

    Notes
    -----
    With a robust variance the statistic is R's ``summary(coxph(Surv(t, d) ~ treatment,
    weights =, cluster =))$robscore`` times ``(G - 1) / G``: the meat carries the package's
    small-sample factor ``G / (G - 1)`` (:mod:`analysis.sandwich`). Not testable (NaN with a
    note) with an empty group, no events, or fewer than 2 clusters.

    References
    ----------
    Lin DY, Wei LJ (1989). The robust inference for the Cox proportional hazards model.
    JASA 84:1074-1078.
    Therneau TM, Grambsch PM (2000). Modeling Survival Data. Springer, sec. 7.2.
    """
    # long: the docstring relates the statistic to R's; the body is about 50 lines
    t = durations(df, duration)
    e = binary(df, event, "event")
    a = binary(df, treatment, "treatment")
    w = weights_array(df, weights)
    codes, _ = cluster_codes(df, cluster)
    keep = w > 0
    t, e, a, w, codes = t[keep], e[keep], a[keep], w[keep], codes[keep]
    robust = weights is not None or cluster is not None
    out: dict[str, Any] = {
        "statistic": float("nan"),
        "p_value": float("nan"),
        "df": 1,
        "test": "robust Cox score test" if robust else "Cox score test",
        "weighted": weights is not None,
        "robust": robust,
        "n_clusters": count_clusters(codes) if robust else None,
    }
    if a.sum() == 0 or a.sum() == len(a) or e.sum() == 0:
        out["note"] = "not testable: a group is empty or there are no events"
        return out
    if robust:
        what = f"values of {cluster}" if cluster else "persons, each its own cluster"
        problem = cluster_check(out["n_clusters"], what=what)
        if problem is not None:
            out["note"] = problem.replace("not estimable", "not testable")
            if problem.startswith("not estimable"):
                return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # diverging fits: the test is at 0
        try:
            fit = fit_cox(
                a.astype(float),
                t,
                e,
                weights=w if weights is not None else None,
                cluster=codes if robust else None,
                ties="efron",
            )
        except ValueError as err:  # no event with both groups at risk: no information
            out["note"] = f"not testable: {err}"
            return out
    statistic = fit.robust_score_test if robust else fit.score_test
    out["statistic"] = statistic
    out["p_value"] = float(stats.chi2.sf(statistic, 1))
    return out
