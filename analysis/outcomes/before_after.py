"""Before/after comparison of event rates: within-arm rate ratios and their ratio.

Each person contributes events and person-time before and after the index date; the
change in rate from before to after is compared between the arms on the log-rate scale
(a difference-in-differences of log rates), with the cluster-robust variance of
:mod:`analysis.sandwich` allowing for the correlation of a person's two periods.

References
----------
Liang KY, Zeger SL (1986). Longitudinal data analysis using generalized linear models.
Biometrika 73:13-22.
Zeger SL, Liang KY (1986). Longitudinal data analysis for discrete and continuous
outcomes. Biometrics 42:121-130.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from analysis._checks import binary, cluster_codes, numeric, weights_array, z_value
from analysis.outcomes._common import nan_estimate as _nan_estimate
from analysis.outcomes._count_data import log_rate
from analysis.results import EffectEstimate
from analysis.sandwich import cluster_check, cluster_variance, count_clusters

__all__ = ["BeforeAfter", "before_after_ratio"]


class BeforeAfter(NamedTuple):
    """Within-arm after/before rate ratios and their ratio.

    Attributes
    ----------
    per_group : tuple of EffectEstimate
        ``rate_ratio_after_vs_before`` for the treated arm, then the control arm
        (``details["group"]``: the arm's label).
    ratio : EffectEstimate
        ``ratio_of_rate_ratios`` (treated over control): the difference-in-differences on
        the log-rate scale.
    """

    per_group: tuple[EffectEstimate, EffectEstimate]
    ratio: EffectEstimate


def _periods(
    df: pd.DataFrame, columns: dict[str, str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Events and exposure before and after, checked non-negative (argument name -> column)."""
    arrays = [numeric(df, name, role) for role, name in columns.items()]
    for arr, name in zip(arrays, columns.values(), strict=True):
        if (arr < 0).any():
            raise ValueError(f"column {name!r} has negative values")
    yb, eb, ya, ea = arrays
    return yb, eb, ya, ea


def _arm_rates(
    periods: tuple[np.ndarray, ...], w: np.ndarray, sel: np.ndarray
) -> tuple[dict[str, dict[str, float]], float, np.ndarray]:
    """An arm's rates per period, its log after/before rate ratio and the ratio's influence."""
    yb, eb, ya, ea = periods
    parts = {}
    contrib = np.zeros(len(w))
    for period, y, e, sign in (("before", yb, eb, -1.0), ("after", ya, ea, 1.0)):
        events, py, rate, influence = log_rate(y, e, w, sel)
        parts[period] = {"events": events, "person_years": py, "rate": rate}
        contrib += sign * influence
    ok = all(p["events"] > 0 and p["person_years"] > 0 for p in parts.values())
    log_rr = math.log(parts["after"]["rate"] / parts["before"]["rate"]) if ok else float("nan")
    return parts, log_rr, contrib


def _ratio_estimate(
    measure: str,
    log_est: float,
    contrib: np.ndarray,
    codes: np.ndarray,
    *,
    problem: str | None,
    details: dict[str, Any],
    labels: dict[str, Any],
) -> EffectEstimate:
    """One ratio with its cluster-robust SE, or NaN with the reason it is not estimable.

    ``labels`` holds ``outcome``, ``method``, ``alpha`` and the counts of the result.
    """
    common = {k: v for k, v in labels.items() if k not in ("outcome", "method", "alpha")}
    outcome, method = labels["outcome"], labels["method"]
    if not math.isfinite(log_est):
        return _nan_estimate(
            outcome, measure, method, "not estimable: no events or no person-time in a period",
            details=details, **common,
        )  # fmt: skip
    if problem is not None and problem.startswith("not estimable"):
        return _nan_estimate(outcome, measure, method, problem, details=details, **common)
    if problem is not None:
        details["note"] = problem
    se = float(np.sqrt(cluster_variance(contrib, codes)[0]))
    return EffectEstimate.from_log(
        log_estimate=log_est,
        se=se,
        alpha=labels["alpha"],
        outcome=outcome,
        measure=measure,
        method=method,
        details={**details, "se_log": se},
        **common,
    )


# long: the docstring (the model, its variance and the arguments); the code is ~65 lines
def before_after_ratio(
    df: pd.DataFrame,
    *,
    events_before: str,
    exposure_before: str,
    events_after: str,
    exposure_after: str,
    treatment: str,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
    outcome: str,
    method: str,
    arm_labels: tuple[str, str] = ("treated", "control"),
) -> BeforeAfter:
    """Change in event rate from before to after index, by arm, and its ratio.

    The person-periods (before, after) are stacked and fitted with a Poisson
    generalised estimating equation with independence working correlation,
    ``log rate = b0 + b1 after + b2 treated + b3 treated x after`` (weighted when
    ``weights`` is given). This model is saturated, so the estimates are ratios of
    (weighted) total rates: ``exp(b1 + b3)`` and ``exp(b1)`` are the treated and control
    after/before rate ratios and ``exp(b3)`` their ratio. The variance is the
    cluster-robust sandwich with persons as clusters (or ``cluster``, e.g. matched sets,
    which contain the persons), so it allows for the correlation of a person's two periods
    and for overdispersion; with the package's small-sample factor ``G / (G - 1)``
    (:mod:`analysis.sandwich`) it equals R's ``sandwich::vcovCL(glm(poisson), cluster =,
    type = "HC0")`` (tests). Fewer than 2 clusters: not estimable; below 30: a note and a
    :class:`analysis.sandwich.FewClustersWarning`.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    events_before, exposure_before : str
        Events and person-years at risk in the period before index.
    events_after, exposure_after : str
        Events and person-years at risk after index. Both periods must follow the same
        rules of what is at risk, else the ratio mixes a change in the rate with a change
        in the definition.
    treatment : str
        The 0/1 treatment (1 = treated).
    weights : str, optional
        Weights (matching or IPT weights).
    cluster : str, optional
        Cluster (matched set); default: each person.
    alpha : float
        1 - confidence level.
    outcome, method : str
        Labels of the results.
    arm_labels : (str, str)
        Names of the treated and control arms (``details["group"]``, ``details["rates"]``
        and ``details["contrast"]``).

    Returns
    -------
    BeforeAfter
        ``(per_group, ratio)``; rates per period and arm in ``details["rates"]``.
        Persons with zero exposure in a period add nothing to that period's person-time
        (their number and events are in ``details``).

    References
    ----------
    Liang KY, Zeger SL (1986). Biometrika 73:13-22.
    Zeger SL, Liang KY (1986). Biometrics 42:121-130.
    """
    z_value(alpha)  # validates alpha
    periods = _periods(
        df,
        {
            "events_before": events_before,
            "exposure_before": exposure_before,
            "events_after": events_after,
            "exposure_after": exposure_after,
        },
    )
    yb, eb, ya, ea = periods
    a = binary(df, treatment, "treatment").astype(float)
    w = weights_array(df, weights)
    codes, n_clusters = cluster_codes(df, cluster)
    labels = {
        "outcome": outcome,
        "method": method,
        "alpha": alpha,
        "n_treated": int(a.sum()),
        "n_control": int(len(a) - a.sum()),
        "n_events": int(round(float(yb.sum() + ya.sum()))),
    }
    base: dict[str, Any] = {
        "n_zero_exposure_before": int((eb == 0).sum()),
        "n_zero_exposure_after": int((ea == 0).sum()),
        "events_zero_exposure_after": int(round(float(ya[ea == 0].sum()))),
        "n_clusters": n_clusters if cluster is not None else None,
        "cluster": cluster or "person",
        "model": "Poisson GEE (independence), saturated group x period, robust variance",
    }
    arms = {g: _arm_rates(periods, w, a == g) for g in (1, 0)}
    base["rates"] = {label: arms[g][0] for g, label in zip((1, 0), arm_labels, strict=True)}
    problem = cluster_check(
        count_clusters(codes), what=f"values of {cluster}" if cluster else "persons"
    )
    kw: dict[str, Any] = {"codes": codes, "problem": problem, "labels": labels}
    treated, control = [
        _ratio_estimate(
            "rate_ratio_after_vs_before",
            arms[g][1],
            arms[g][2],
            details={**base, "group": label},
            **kw,
        )
        for g, label in zip((1, 0), arm_labels, strict=True)
    ]
    ratio = _ratio_estimate(
        "ratio_of_rate_ratios", arms[1][1] - arms[0][1], arms[1][2] - arms[0][2],
        details={**base, "contrast": f"{arm_labels[0]} / {arm_labels[1]}"}, **kw,
    )  # fmt: skip
    return BeforeAfter(per_group=(treated, control), ratio=ratio)
