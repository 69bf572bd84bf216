"""Absolute contrasts of Kaplan–Meier curves at a time point, HAT minus OST (treated minus
control): the survival ratio and difference (:func:`survival_at`) and the cumulative risk
difference (:func:`cumulative_risk_difference`).

Variances are the infinitesimal-jackknife (influence-function) ones, summed within clusters
with the ``G / (G - 1)`` factor of :mod:`analysis.sandwich` when weighted or clustered
(Greenwood's formula without either), or a cluster bootstrap.

References
----------
Greenwood M (1926). The natural duration of cancer. Reports on Public Health and Medical
Subjects 33. HMSO.
Therneau TM, Grambsch PM (2000). Modeling Survival Data: Extending the Cox Model. Springer.
Austin PC, Small DS (2014). Stat Med 33:4306-4319.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from analysis._checks import wald_p, z_value
from analysis.data.contract import DAYS_PER_YEAR
from analysis.outcomes._common import (
    TwoArm,
    Variance,
    add_note,
    check_variance,
    horizon_label,
    nan_estimate,
    no_event_notes,
    screen,
    two_arm,
)
from analysis.outcomes._km_bootstrap import bootstrap
from analysis.outcomes._product_limit import (
    log_survival_influence,
    product_limit,
    survival_at_time,
)
from analysis.results import EffectEstimate
from analysis.sandwich import cluster_variance

__all__ = ["SurvivalAt", "cumulative_risk_difference", "survival_at"]


class SurvivalAt(NamedTuple):
    """Retention (survival) at a time point: ratio and difference, HAT vs OST."""

    ratio: EffectEstimate
    difference: EffectEstimate


def survival_at(
    df: pd.DataFrame,
    *,
    duration: str,
    event: str,
    treatment: str,
    time: float = DAYS_PER_YEAR,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
    variance: Variance = "influence",
    n_boot: int = 200,
    rng: np.random.Generator | None = None,
    outcome: str,
    method: str,
    label: str | None = None,
) -> SurvivalAt:
    """Ratio and difference of Kaplan–Meier survival at a time point, HAT vs OST.

    For retention (event = discontinuation) the ratio ``S_HAT(t) / S_OST(t)`` is the
    ratio of the probabilities of still being in treatment at ``t``, the measure of the
    trials' 12-month retention risk ratio (NAOMI: 1.62).

    Parameters
    ----------
    df : DataFrame
        One row per person.
    duration, event, treatment : str
        Follow-up time (>= 0), event indicator (0/1), treatment (1 HAT, 0 OST).
    time : float
        Time point, in the unit of ``duration`` (default 365.25 days).
    weights : str, optional
        Weights (matching or IPT weights), giving weighted Kaplan–Meier curves.
    cluster : str, optional
        Matched set; the variance allows for correlation within sets, including
        between the HAT person and the comparators of one set.
    alpha : float
        1 - confidence level.
    variance : {"influence", "bootstrap"}
        ``"influence"`` (default): infinitesimal-jackknife variance, computed in closed
        form from each person's influence on log S(t), summed within clusters. Without
        weights and clusters this is exactly Greenwood's formula; with them it is the
        robust variance R's ``survfit(..., cluster=)`` reports times ``G / (G - 1)``
        (:mod:`analysis.sandwich`; see tests), not estimable with fewer than 2 clusters
        and noted, with a warning, below 30. A curve at S(t) = 0 contributes no variance to
        the difference (S stays 0 whatever the weights); the ratio is then not defined. It is
        deterministic and O(n log n), so it suits 50,000 rows; like the cluster
        bootstrap it treats the matched sets as given. ``"bootstrap"``: cluster
        bootstrap over ``cluster`` (rows when no cluster) with ``n_boot`` replicates
        drawn with ``rng``; SEs are the replicates' SD and the interval is Wald on the
        log scale (the percentile interval is in ``details``). Vectorised; about
        ``n_boot`` times the cost of one curve.
    n_boot : int
        Bootstrap replicates (only with ``variance="bootstrap"``; default 200, enough for
        a standard error to about 5%).
    rng : numpy.random.Generator, optional
        Random generator for the bootstrap (required for it; unused otherwise).
    outcome, method : str
        Labels of the results.
    label : str, optional
        Measure suffix; default ``"12m"`` when ``time`` is 365.25, else ``"<time>d"``.

    Returns
    -------
    SurvivalAt
        ``ratio``: measure ``RR_<label>`` with a log-scale Wald interval;
        ``difference``: measure ``RD_<label>`` (absolute difference in probability).
        ``details``: ``per_group`` (survival and SE by group), ``time``, ``variance``,
        ``n_clusters``. Both are not estimable (NaN, with the reason in
        ``details["note"]``) when ``time`` is beyond the longest follow-up of either
        arm, i.e. ``time > min(max time of HAT, max time of OST)`` where each maximum is
        the largest duration (event or censoring) among rows with a positive weight;
        ``time`` equal to that maximum is estimable. Beyond it the curve is not observed
        and carrying its last value forward would report a guess.

    References
    ----------
    Greenwood M (1926). Reports on Public Health and Medical Subjects 33. HMSO.
    Therneau TM, Grambsch PM (2000). Modeling Survival Data. Springer (IJ variance).
    Austin PC, Small DS (2014). Stat Med 33:4306-4319 (bootstrap after matching).
    Oviedo-Joekes E et al. (2009). Diacetylmorphine versus methadone for the treatment
    of opioid addiction. NEJM 361:777-786.
    """
    # long: the docstring documents both variances; the body is about 50 lines
    check_variance(variance)
    z = z_value(alpha)
    arm = two_arm(df, duration, event, treatment, weights, cluster)
    label = horizon_label(time, label)
    rr_measure, rd_measure = f"RR_{label}", f"RD_{label}"
    common = {"n_treated": arm.n_treated, "n_control": arm.n_control, "n_events": arm.n_events}
    checked = screen(arm, time, "time", check_clusters=variance == "influence")
    if checked.note is not None:
        return SurvivalAt(
            nan_estimate(outcome, rr_measure, method, checked.note, details=checked.details,
                         **common),
            nan_estimate(outcome, rd_measure, method, checked.note,
                         details=dict(checked.details), **common),
        )  # fmt: skip
    robust = arm.weighted or arm.clustered  # else the IJ variance is Greenwood's, no factor
    surv, se_surv, contrib_log, contrib_lin = _arm_survival(arm, time, robust)
    s0, s1 = surv[0], surv[1]
    log_rr = math.log(s1 / s0) if s0 > 0 and s1 > 0 else float("nan")
    rd = s1 - s0
    longest = checked.longest
    details: dict[str, Any] = {
        "time": float(time),
        "variance": variance,
        "n_clusters": arm.n_clusters if arm.clustered else None,
        "weighted": arm.weighted,
        "per_group": {
            "HAT": {"survival": s1, "se": se_surv[1], "max_followup": longest["HAT"]},
            "OST": {"survival": s0, "se": se_surv[0], "max_followup": longest["OST"]},
        },
    }
    if checked.problem is not None:
        add_note(details, checked.problem)
    if variance == "influence":
        diff_log = contrib_log[1] - contrib_log[0]
        se_log = float(np.sqrt(cluster_variance(diff_log, arm.codes, small_sample=robust)[0]))
        diff_lin = contrib_lin[1] - contrib_lin[0]
        se_rd = float(np.sqrt(cluster_variance(diff_lin, arm.codes, small_sample=robust)[0]))
        if not math.isfinite(log_rr):
            se_log = float("nan")
    else:
        se_log, se_rd = _bootstrap_se(arm, time, n_boot, rng, alpha, details)
    if not math.isfinite(log_rr):
        add_note(details, "survival is 0 in a group at this time: the ratio is not defined")
    ratio = EffectEstimate(
        outcome=outcome,
        measure=rr_measure,
        method=method,
        estimate=math.exp(log_rr) if math.isfinite(log_rr) else float("nan"),
        ci_low=math.exp(log_rr - z * se_log) if math.isfinite(log_rr) else float("nan"),
        ci_high=math.exp(log_rr + z * se_log) if math.isfinite(log_rr) else float("nan"),
        p_value=wald_p(log_rr, se_log),
        se=se_log,
        details={**details, "se_log": se_log},
        **common,
    )
    difference = EffectEstimate(
        outcome=outcome,
        measure=rd_measure,
        method=method,
        estimate=rd,
        ci_low=rd - z * se_rd,
        ci_high=rd + z * se_rd,
        p_value=wald_p(rd, se_rd),
        se=se_rd,
        details=dict(details),
        **common,
    )
    return SurvivalAt(ratio, difference)


def _arm_survival(arm: TwoArm, time: float, robust: bool) -> tuple[dict, dict, dict, dict]:
    """Per arm (0, 1): S(t), its SE, and each person's influence on log S(t) and on S(t)."""
    surv, se_surv, contrib_log, contrib_lin = {}, {}, {}, {}
    for g in (0, 1):
        sel = arm.treat == g
        pl = product_limit(arm.time[sel], arm.event[sel], arm.w[sel])
        surv[g] = survival_at_time(pl.times, pl.survival, time)
        contrib_log[g] = np.zeros(len(arm.time))  # influence on log S_g(t)
        if surv[g] > 0:  # a curve at 0 stays at 0 when weights move: no influence, no variance
            mult = (pl.times <= time).astype(float)
            contrib_log[g][sel] = arm.w[sel] * log_survival_influence(pl, arm.event[sel], mult)
        contrib_lin[g] = surv[g] * contrib_log[g]  # influence on S_g(t)
        var_g, _ = cluster_variance(contrib_lin[g][sel], arm.codes[sel], small_sample=robust)
        se_surv[g] = float(np.sqrt(var_g))
    return surv, se_surv, contrib_log, contrib_lin


def _bootstrap_se(
    arm: TwoArm,
    time: float,
    n_boot: int,
    rng: np.random.Generator | None,
    alpha: float,
    details: dict[str, Any],
) -> tuple[float, float]:
    """Bootstrap SEs of the log ratio and the difference; percentile intervals into details."""
    b0, b1 = bootstrap(arm, t=time, tau=None, n_boot=n_boot, rng=rng)
    ok = (b0 > 0) & (b1 > 0)
    log_reps = np.log(b1[ok] / b0[ok])
    rd_reps = b1 - b0
    se_log = float(np.std(log_reps, ddof=1)) if ok.sum() > 1 else float("nan")
    se_rd = float(np.std(rd_reps, ddof=1))
    q = [alpha / 2, 1 - alpha / 2]
    details["n_boot"] = n_boot
    details["n_boot_dropped"] = int((~ok).sum())
    details["percentile_ci_ratio"] = (
        [float(x) for x in np.exp(np.quantile(log_reps, q))] if ok.any() else None
    )
    details["percentile_ci_difference"] = [float(x) for x in np.quantile(rd_reps, q)]
    return se_log, se_rd


def cumulative_risk_difference(
    df: pd.DataFrame,
    *,
    duration: str,
    event: str,
    treatment: str,
    time: float = DAYS_PER_YEAR,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
    outcome: str,
    method: str,
    label: str | None = None,
) -> EffectEstimate:
    """Difference in the cumulative risk of the event by ``time``, HAT minus OST.

    The cumulative risk is ``1 - S(t)`` of the (weighted) Kaplan–Meier curve, so the
    difference ``(1 - S_HAT(t)) - (1 - S_OST(t))`` is minus the survival difference of
    :func:`survival_at`, with the same influence-function variance (summed within
    ``cluster``, small-sample factor ``G / (G - 1)`` when weighted or clustered). For
    mortality a negative value means fewer deaths with HAT by ``time``.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    duration, event, treatment : str
        Follow-up time (>= 0), event indicator (0/1), treatment (1 HAT, 0 OST).
    time : float
        Time point, in the unit of ``duration`` (default 365.25 days).
    weights, cluster, alpha : see :func:`survival_at`
    outcome, method : str
        Labels of the result.
    label : str, optional
        Measure suffix; default as :func:`survival_at` (``"12m"`` at 365.25).

    Returns
    -------
    EffectEstimate
        ``measure="RD_<label>"`` (difference in probability, Wald interval). ``details``
        as :func:`survival_at`'s, with ``per_group`` giving the cumulative ``risk`` and
        its SE by group, and ``scale: "cumulative risk"``. Not estimable when
        :func:`survival_at` is not (``time`` beyond the longest follow-up of an arm,
        an empty group, fewer than 2 clusters) and when neither arm has an event by
        ``time`` (a difference of 0 without variance), with the reason in
        ``details["note"]``.

    References
    ----------
    Kaplan EL, Meier P (1958). JASA 53:457-481.
    """
    # long: the docstring documents the result; the body is about 35 lines
    diff = survival_at(
        df, duration=duration, event=event, treatment=treatment, time=time, weights=weights,
        cluster=cluster, alpha=alpha, outcome=outcome, method=method, label=label,
    ).difference  # fmt: skip
    per_s = diff.details.get("per_group", {})
    zero = [g for g, v in per_s.items() if v.get("survival") == 1.0]
    reason, arm_notes = no_event_notes(time, zero, events="event", scale="risk", scales="risks")
    if reason is not None and math.isfinite(diff.estimate):
        return nan_estimate(
            outcome, diff.measure, method, reason,
            details={"time": float(time), "per_group": per_s}, n_treated=diff.n_treated,
            n_control=diff.n_control, n_events=diff.n_events,
        )  # fmt: skip
    details = {**diff.details, "scale": "cumulative risk"}
    for note in arm_notes:
        add_note(details, note)
    per = details.get("per_group", {})
    details["per_group"] = {
        g: {
            **({"risk": 1.0 - v["survival"], "se": v["se"]} if "survival" in v else {}),
            "max_followup": v.get("max_followup"),
        }
        for g, v in per.items()
    }
    return replace(
        diff,
        estimate=-diff.estimate,
        ci_low=-diff.ci_high,
        ci_high=-diff.ci_low,
        details=details,
    )
