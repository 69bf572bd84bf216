"""Differences and ratios of (weighted) means for a continuous or binary outcome.

:func:`mean_difference` compares the weighted mean of an outcome between treated and
controls; :func:`risk_difference` and :func:`risk_ratio` do the same for a 0/1 outcome, on
the difference and the log-ratio scale. With matching weights (clustered on the matched
set) or ATT weights these are the usual estimates of the effect in the treated.

Estimator
---------
With weights :math:`w_i` (ones when none are given) and treatment :math:`a_i`, the group
means are :math:`m_a = \\sum_{a_i = a} w_i y_i / W_a`, :math:`W_a = \\sum_{a_i = a} w_i`,
and

.. math::

    \\hat\\Delta = m_1 - m_0, \\qquad \\log \\widehat{RR} = \\log m_1 - \\log m_0 .

The difference is the treatment coefficient of the weighted least-squares regression of
the outcome on an intercept and the treatment (R: ``lm(y ~ a, weights = w)``); the risk
ratio is the exponentiated treatment coefficient of the log-link regression with the
treatment only, whose estimating equations have the same solution.

Variance
--------
Each row's influence on the difference is

.. math::

    \\psi_i = \\frac{a_i}{W_1} w_i (y_i - m_1) - \\frac{1 - a_i}{W_0} w_i (y_i - m_0),

and on the log ratio the same with each term divided by its group's mean (delta method).
The variance is the cluster-robust sandwich of :mod:`analysis.sandwich`: the influences are
summed within ``cluster`` (each row its own cluster when none is given) and
:math:`V = G/(G-1) \\sum_g \\psi_g^2`. For the difference this is exactly R's
``sandwich::vcovCL(lm(y ~ a, weights = w), cluster = ~cl, type = "HC0", cadjust = TRUE)``;
R's defaults (``vcovCL`` with ``type = "HC1"``, ``vcovHC(type = "HC1")``) multiply by a
further ``(n - 1) / (n - 2)`` respectively use ``n / (n - 2)`` instead of ``G/(G-1)``, a
difference of order ``1/n`` (``tests/reference/README_lalonde.md``). The weights are treated
as fixed: the variance does not account for estimating them (for matching, clustering on
the matched set is the usual remedy; Austin 2009, Abadie & Spiess 2022).

Rows with weight 0 do not enter the estimate, the counts or the number of clusters (R's
``lm`` drops them from ``nobs`` as well).

References
----------
Austin PC (2009). Type I error rates, coverage of confidence intervals, and variance
estimation in propensity-score matched analyses. *Int J Biostat* 5(1):13.
Abadie A, Spiess J (2022). Robust post-matching inference. *J Am Stat Assoc*
117:983-995.
Cameron AC, Miller DL (2015). A practitioner's guide to cluster-robust inference.
*J Human Resources* 50:317-372.
Zeileis A, Köll S, Graham N (2020). Various versatile variances: an object-oriented
implementation of clustered covariances in R. *J Stat Softw* 95(1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis._checks import binary, cluster_codes, numeric, wald_p, weights_array, z_value
from analysis.results import EffectEstimate
from analysis.sandwich import cluster_check, cluster_variance, count_clusters

__all__ = ["MEASURES", "mean_difference", "risk_difference", "risk_ratio"]

#: the ``measure`` of each estimator's result
MEASURES: dict[str, str] = {
    "mean_difference": "mean_diff",
    "risk_difference": "RD",
    "risk_ratio": "RR",
}

#: ``method`` of the results: group means compared, no covariates
METHOD = "means"

_GROUPS = ((1, "treated"), (0, "control"))


@dataclass(frozen=True)
class _Groups:
    """Checked inputs (rows with positive weight) and the per-group weighted means."""

    y: np.ndarray
    a: np.ndarray
    w: np.ndarray
    codes: np.ndarray
    mean: dict[int, float]
    total: dict[int, float]
    counts: dict[str, int | None]
    details: dict[str, Any]


def _prepare(
    df: pd.DataFrame,
    outcome: str,
    treatment: str,
    weights: str | None,
    cluster: str | None,
    alpha: float,
    *,
    is_binary: bool,
) -> _Groups:
    """Check the columns, drop zero-weight rows, and compute the weighted group means."""
    z_value(alpha)  # validates alpha
    y = (binary(df, outcome, "outcome") if is_binary else numeric(df, outcome, "outcome")).astype(
        float
    )
    a = binary(df, treatment, "treatment")
    w = weights_array(df, weights)
    codes, _ = cluster_codes(df, cluster)
    keep = w > 0
    y, a, w = y[keep], a[keep], w[keep]
    codes = pd.factorize(codes[keep])[0].astype(np.intp)
    total = {g: float(w[a == g].sum()) for g in (0, 1)}
    mean = {
        g: float(np.dot(w[a == g], y[a == g]) / total[g]) if total[g] > 0 else float("nan")
        for g in (0, 1)
    }
    counts = {
        "n_treated": int(a.sum()),
        "n_control": int(len(a) - a.sum()),
        "n_events": int(y.sum()) if is_binary else None,
    }
    details: dict[str, Any] = {
        "weighted": weights is not None,
        "cluster": cluster,
        "n_zero_weight": int((~keep).sum()),
    }
    return _Groups(y, a, w, codes, mean, total, counts, details)


def _influence(g: _Groups, scale_by_mean: bool) -> np.ndarray:
    """Each row's influence on ``m_1 - m_0`` (or on ``log m_1 - log m_0``)."""
    m = np.where(g.a == 1, g.mean[1], g.mean[0])
    tot = np.where(g.a == 1, g.total[1], g.total[0])
    sign = np.where(g.a == 1, 1.0, -1.0)
    psi = sign * g.w * (g.y - m) / tot
    return psi / m if scale_by_mean else psi


def _group_details(g: _Groups, name: str) -> dict[str, Any]:
    """Per-group mean, its SE (same sandwich) and counts."""
    out: dict[str, Any] = {}
    for code, label in _GROUPS:
        sel = g.a == code
        if not sel.any():
            out[label] = {"n": 0, "sum_weights": 0.0, name: float("nan"), "se": float("nan")}
            continue
        psi = np.where(sel, g.w * (g.y - g.mean[code]) / g.total[code], 0.0)
        var, _ = cluster_variance(psi, g.codes, small_sample=True)
        out[label] = {
            "n": int(sel.sum()),
            "sum_weights": g.total[code],
            name: g.mean[code],
            "se": float(np.sqrt(var)),
        }
    return out


def _not_estimable(measure: str, outcome: str, note: str, g: _Groups) -> EffectEstimate:
    nan = float("nan")
    return EffectEstimate(
        outcome=outcome,
        measure=measure,
        method=METHOD,
        estimate=nan,
        ci_low=nan,
        ci_high=nan,
        p_value=nan,
        details={"note": f"not estimable: {note}", **g.details},
        **g.counts,
    )


def _variance_problem(g: _Groups, cluster: str | None) -> str | None:
    """``not estimable: ...`` for an empty group or too few clusters; a note for few."""
    if g.counts["n_treated"] == 0 or g.counts["n_control"] == 0:
        empty = "treated" if g.counts["n_treated"] == 0 else "control"
        return f"not estimable: no {empty} row with positive weight"
    what = f"values of {cluster}" if cluster else "rows, each its own cluster"
    return cluster_check(count_clusters(g.codes), what=what, stacklevel=5)


def _estimate(
    g: _Groups, *, measure: str, outcome: str, alpha: float, cluster: str | None, log: bool
) -> EffectEstimate:
    """Point estimate, sandwich SE, Wald interval (on the log scale for a ratio)."""
    problem = _variance_problem(g, cluster)
    if problem is not None and problem.startswith("not estimable"):
        return _not_estimable(measure, outcome, problem.removeprefix("not estimable: "), g)
    psi = _influence(g, scale_by_mean=log)
    var, n_clusters = cluster_variance(psi, g.codes, small_sample=True)
    se = float(np.sqrt(var))
    if not se > 0:
        return _not_estimable(
            measure, outcome,
            f"outcome {outcome!r} is constant within each group, so the "
            f"{'ratio' if log else 'difference'} has no sampling variance",
            g,
        )  # fmt: skip
    name = "risk" if measure in ("RD", "RR") else "mean"
    details = {
        **g.details,
        "n_clusters": int(n_clusters),
        "per_group": _group_details(g, name),
        "variance": "cluster-robust sandwich, G/(G-1)",
    }
    if problem:
        details["note"] = problem
    common = {"outcome": outcome, "measure": measure, "method": METHOD, **g.counts}
    if log:
        log_rr = math.log(g.mean[1]) - math.log(g.mean[0])
        details["se_log"] = se
        return EffectEstimate.from_log(
            log_estimate=log_rr, se=se, alpha=alpha, details=details, **common
        )
    diff = g.mean[1] - g.mean[0]
    z = z_value(alpha)
    return EffectEstimate(
        estimate=diff,
        ci_low=diff - z * se,
        ci_high=diff + z * se,
        p_value=wald_p(diff, se),
        se=se,
        details=details,
        **common,
    )


def mean_difference(
    df: pd.DataFrame,
    *,
    outcome: str,
    treatment: str,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
) -> EffectEstimate:
    """Difference in the (weighted) mean of ``outcome``, treated minus controls.

    Parameters
    ----------
    df : DataFrame
        One row per unit (a matched sample, a weighted cohort or a trial).
    outcome : str
        Numeric outcome column, without missing values.
    treatment : str
        0/1 column, 1 = treated.
    weights : str, optional
        Non-negative weights (matching or inverse-probability weights); rows with weight 0
        are left out. Default: every row weight 1.
    cluster : str, optional
        Column whose values are the clusters of the robust variance (the matched set; a
        person with several rows). Default: each row its own cluster.
    alpha : float, default 0.05
        1 - confidence level of the Wald interval.

    Returns
    -------
    EffectEstimate
        ``measure="mean_diff"``, ``method="means"``, ``outcome`` the column name;
        ``estimate`` on the outcome's scale with a Wald interval; ``n_treated`` and
        ``n_control`` count rows with positive weight. ``details``: ``per_group`` (``n``,
        ``sum_weights``, weighted ``mean`` and its ``se`` for ``treated`` and ``control``),
        ``n_clusters``, ``weighted``, ``cluster``, ``n_zero_weight``, and ``note`` when the
        clusters are few. Not estimable (NaN, reason in ``details["note"]``) with an empty
        group, fewer than 2 clusters, or an outcome constant within each group.

    Raises
    ------
    analysis._checks.ColumnError
        A named column is not in ``df`` (the message names the argument and the column).
    ValueError
        ``treatment`` not 0/1, ``outcome`` or ``weights`` missing or not numeric, negative
        weights, missing ``cluster`` values, ``alpha`` outside (0, 1).

    See Also
    --------
    risk_difference, risk_ratio : the same for a 0/1 outcome.

    Notes
    -----
    The estimate equals the treatment coefficient of ``lm(outcome ~ treatment, weights =
    weights)``; its variance the cluster sandwich with the factor ``G/(G-1)`` (module
    notes).

    References
    ----------
    Austin PC (2009). Type I error rates, coverage of confidence intervals, and variance
    estimation in propensity-score matched analyses. *Int J Biostat* 5(1):13.

    Examples
    --------
    >>> df = pd.DataFrame({"y": np.arange(40.0), "a": np.arange(40) % 2})
    >>> est = mean_difference(df, outcome="y", treatment="a")
    >>> est.estimate, round(est.se, 4), est.n_treated
    (1.0, 3.6934, 20)
    """
    g = _prepare(df, outcome, treatment, weights, cluster, alpha, is_binary=False)
    return _estimate(
        g, measure=MEASURES["mean_difference"], outcome=outcome, alpha=alpha, cluster=cluster,
        log=False,
    )  # fmt: skip


def risk_difference(
    df: pd.DataFrame,
    *,
    outcome: str,
    treatment: str,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
) -> EffectEstimate:
    """Difference in the (weighted) risk of a 0/1 ``outcome``, treated minus controls.

    Parameters
    ----------
    df : DataFrame
        One row per unit.
    outcome : str
        0/1 (or boolean) outcome column, without missing values.
    treatment, weights, cluster, alpha
        As in :func:`mean_difference`.

    Returns
    -------
    EffectEstimate
        ``measure="RD"`` (difference in probability, Wald interval), ``method="means"``,
        ``n_events`` the rows with outcome 1 (unweighted, positive weight). ``details`` as
        :func:`mean_difference`'s, with ``risk`` in place of ``mean`` in ``per_group``.
        Not estimable as there, in particular when no row has the outcome (or every row
        has it) in both groups.

    Raises
    ------
    analysis._checks.ColumnError
        A named column is not in ``df``.
    ValueError
        ``outcome`` or ``treatment`` not 0/1, and as :func:`mean_difference`.

    Notes
    -----
    A group whose risk is 0 or 1 contributes no variance; the interval then reflects the
    other group's uncertainty only.

    References
    ----------
    Austin PC (2011). Optimal caliper widths for propensity-score matching when estimating
    differences in means and differences in proportions in observational studies. *Pharm
    Stat* 10:150-161.
    """
    g = _prepare(df, outcome, treatment, weights, cluster, alpha, is_binary=True)
    return _estimate(
        g, measure=MEASURES["risk_difference"], outcome=outcome, alpha=alpha, cluster=cluster,
        log=False,
    )  # fmt: skip


def risk_ratio(
    df: pd.DataFrame,
    *,
    outcome: str,
    treatment: str,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
) -> EffectEstimate:
    """Ratio of the (weighted) risks of a 0/1 ``outcome``, treated over controls.

    Parameters
    ----------
    df : DataFrame
        One row per unit.
    outcome : str
        0/1 (or boolean) outcome column, without missing values.
    treatment, weights, cluster, alpha
        As in :func:`mean_difference`.

    Returns
    -------
    EffectEstimate
        ``measure="RR"``; the interval is built on the log scale (delta method: each row's
        influence on ``log m_1 - log m_0``) and exponentiated; ``se`` and
        ``details["se_log"]`` are the SE of the log ratio. ``details`` otherwise as
        :func:`risk_difference`'s. Not estimable when a group has no event (the log ratio
        is infinite) and as :func:`mean_difference`.

    Raises
    ------
    analysis._checks.ColumnError
        A named column is not in ``df``.
    ValueError
        ``outcome`` or ``treatment`` not 0/1, and as :func:`mean_difference`.

    References
    ----------
    Lumley T, Kronmal R, Ma S (2006). Relative risk regression in medical research: models,
    contrasts, estimators and algorithms. UW Biostatistics Working Paper 293.
    """
    g = _prepare(df, outcome, treatment, weights, cluster, alpha, is_binary=True)
    measure = MEASURES["risk_ratio"]
    for code, label in _GROUPS:
        if g.total[code] > 0 and g.mean[code] == 0:
            return _not_estimable(
                measure, outcome,
                f"no row with {outcome} = 1 in the {label} group (the log ratio is infinite)",
                g,
            )  # fmt: skip
    return _estimate(g, measure=measure, outcome=outcome, alpha=alpha, cluster=cluster, log=True)
