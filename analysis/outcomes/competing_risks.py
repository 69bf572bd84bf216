"""Competing risks: the Aalen–Johansen cumulative incidence of a cause with another cause
competing, by group (:func:`cumulative_incidence`), and its difference at a time point, HAT
minus OST (:func:`cumulative_incidence_difference`), with infinitesimal-jackknife variances
summed within clusters (:mod:`analysis.sandwich`).

References
----------
Aalen OO, Johansen S (1978). An empirical transition matrix for non-homogeneous Markov
chains based on censored observations. Scand J Stat 5:141-150.
Putter H, Fiocco M, Geskus RB (2007). Tutorial in biostatistics: competing risks and
multi-state models. Stat Med 26:2389-2430.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis._checks import (
    binary,
    cluster_codes,
    durations,
    numeric,
    wald_p,
    weights_array,
    z_value,
)
from analysis.data.contract import DAYS_PER_YEAR
from analysis.outcomes._common import (
    TwoArm,
    add_note,
    curve_cluster_check,
    horizon_label,
    nan_estimate,
    no_event_notes,
    screen,
)
from analysis.outcomes._coxph_core import _segment_cumsum
from analysis.outcomes._product_limit import hazard_steps, loglog_ci, step_index
from analysis.results import EffectEstimate
from analysis.sandwich import cluster_variance, count_clusters, small_sample_factor

__all__ = ["cumulative_incidence", "cumulative_incidence_difference"]


def _aj_parts(time: np.ndarray, event_type: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted Aalen–Johansen CIFs of causes 1 and 2 and the running sums of their influence."""
    times, index = np.unique(time, return_inverse=True)
    m = len(times)
    total = np.bincount(index, weights=w, minlength=m)
    d1 = np.bincount(index, weights=w * (event_type == 1), minlength=m)
    d2 = np.bincount(index, weights=w * (event_type == 2), minlength=m)
    d = d1 + d2
    at_risk = np.cumsum(total[::-1])[::-1]
    h, h1, h2 = hazard_steps(at_risk, d), hazard_steps(at_risk, d1), hazard_steps(at_risk, d2)
    surv = np.cumprod(1.0 - h)
    s_minus = np.r_[1.0, surv[:-1]]
    cif1 = np.cumsum(s_minus * h1)
    cif2 = np.cumsum(s_minus * h2)
    remaining = at_risk - d
    ok = remaining > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        c1 = np.cumsum(np.where(at_risk > 0, s_minus * h1 / at_risk, 0.0))
        inv_rem = np.where(ok, 1.0 / remaining, 0.0)
        s_over_y = np.where(at_risk > 0, s_minus / at_risk, 0.0)
    return {
        "times": times, "index": index, "at_risk": at_risk, "d1": d1, "d2": d2,
        "cif1": cif1, "cif2": cif2, "c1": c1, "inv_rem": inv_rem, "s_over_y": s_over_y,
        "cum_a": np.cumsum(h * inv_rem), "cum_b": np.cumsum(h * cif1 * inv_rem),
        "cause1": (event_type == 1).astype(float), "anyev": (event_type > 0).astype(float),
    }  # fmt: skip


def _aj_influence(parts: dict[str, np.ndarray], ks: np.ndarray) -> np.ndarray:
    """Influence of each person (per unit weight) on CIF1 at the unique times ``ks``.

    For person i with time index j(i) and every k (derivation in the module tests)::

        d1_i 1{j(i)<=k} S(t_j(i)-)/Y_j(i) - C1[min(j(i),k)]
        - any_i 1{j(i)<=k} (F_k - F_j(i)) / (Y-d)_j(i) + F_k A[min(j(i),k)] - B[min(j(i),k)]

    Returns an array of shape (persons, len(ks)); multiply by the weights for the
    contributions a cluster variance sums.
    """
    index, cif1 = parts["index"], parts["cif1"]
    upto = np.minimum(index[:, None], ks[None, :])
    reached = index[:, None] <= ks[None, :]
    fk = cif1[ks][None, :]
    return (
        (parts["cause1"] * parts["s_over_y"][index])[:, None] * reached
        - parts["c1"][upto]
        - (parts["anyev"] * parts["inv_rem"][index])[:, None]
        * reached
        * (fk - cif1[index][:, None])
        + fk * parts["cum_a"][upto]
        - parts["cum_b"][upto]
    )


def _aj_variance(parts: dict[str, np.ndarray], w: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Sum over clusters of the squared cluster totals of the influence on CIF1, every time.

    By :func:`_aj_influence`, person ``i`` (time index ``j_i``, weight ``w_i``) contributes
    ``w_i (p_i + F_k q_i)`` to CIF1 at ``t_k`` once ``j_i <= k`` and ``w_i r_k`` before, with
    ``p_i = a_i - C1[j_i] + b_i F[j_i] - B[j_i]``, ``q_i = A[j_i] - b_i`` and
    ``r_k = -C1[k] + F_k A[k] - B[k]`` (``a_i``: cause-1 event times ``S(t-)/Y``, ``b_i``:
    any event times ``1/(Y-d)``, at ``j_i``). A cluster's total is
    ``P_c(k) + F_k Q_c(k) + r_k R_c(k)``: ``P_c``, ``Q_c`` the sums of ``w p`` and ``w q`` over
    its persons whose time has passed, ``R_c`` the weight of the others. The sum of squares
    is a combination of the six sums of products of ``P_c``, ``Q_c``, ``R_c`` over clusters,
    which change only when a person's time passes: running sums over the persons in time
    order give them at every time in O(n log n) instead of O(n m) (as
    :func:`analysis.outcomes._product_limit.km_log_variance` does for log S).
    """
    m = len(parts["times"])
    j = parts["index"]
    cif1, cum_a, cum_b, c1 = parts["cif1"], parts["cum_a"], parts["cum_b"], parts["c1"]
    a = parts["cause1"] * parts["s_over_y"][j]
    b = parts["anyev"] * parts["inv_rem"][j]
    wp = w * (a - c1[j] + b * cif1[j] - cum_b[j])
    wq = w * (cum_a[j] - b)
    # prior sums within each cluster, persons of a cluster in time order
    order = np.lexsort((j, codes))
    sorted_codes = codes[order]
    new = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]
    seg_first = np.flatnonzero(new)[np.cumsum(new) - 1]
    prior = {}
    for name, x in (("p", wp), ("q", wq), ("w", w)):
        prior[name] = np.empty(len(j))
        prior[name][order] = _segment_cumsum(x[order], seg_first) - x[order]
    cluster_w = np.bincount(codes, weights=w)
    pp, pq, pr = prior["p"], prior["q"], cluster_w[codes] - prior["w"]
    deltas = (
        wp * (2.0 * pp + wp),  # P^2
        wq * (2.0 * pq + wq),  # Q^2
        -w * (2.0 * pr - w),  # R^2
        wp * pq + pp * wq + wp * wq,  # P Q
        wp * pr - w * pp - w * wp,  # P R
        wq * pr - w * pq - w * wq,  # Q R
    )
    by_time = np.argsort(j, kind="stable")
    last = np.searchsorted(j[by_time], np.arange(m), side="right") - 1
    s_pp, s_qq, s_rr, s_pq, s_pr, s_qr = (np.cumsum(d[by_time])[last] for d in deltas)
    s_rr = s_rr + np.sum(cluster_w**2)
    r = -c1 + cif1 * cum_a - cum_b
    return (
        s_pp + cif1**2 * s_qq + r**2 * s_rr
        + 2.0 * (cif1 * s_pq + r * s_pr + cif1 * r * s_qr)
    )  # fmt: skip


def _aalen_johansen(
    time: np.ndarray,
    event_type: np.ndarray,
    w: np.ndarray,
    codes: np.ndarray,
    eval_index: np.ndarray | None,
    small_sample: bool,
) -> dict[str, np.ndarray]:
    """Weighted Aalen–Johansen CIF of cause 1 (and 2) with its influence-function SE.

    ``eval_index``: indices into the unique times at which the SE is computed
    (all unique times when None). ``small_sample``: apply ``G / (G - 1)`` (robust variance).
    The variance is that of :func:`_aj_influence` summed within clusters
    (:func:`analysis.sandwich.cluster_variance`), computed at every time at once by
    :func:`_aj_variance`.
    """
    parts = _aj_parts(time, event_type, w)
    m = len(parts["times"])
    if eval_index is None:
        eval_index = np.arange(m)
    var = _aj_variance(parts, w, codes)[eval_index]
    if small_sample:
        var = var * small_sample_factor(count_clusters(codes))
    return {
        "times": parts["times"],
        "at_risk": parts["at_risk"],
        "d1": parts["d1"],
        "d2": parts["d2"],
        "cif1": parts["cif1"],
        "cif2": parts["cif2"],
        "se1": np.sqrt(np.maximum(var, 0.0)),
        "eval_index": eval_index,
    }


def cumulative_incidence(
    df: pd.DataFrame,
    *,
    duration: str,
    event_type: str,
    group: str,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
    times: Sequence[float] | None = None,
) -> pd.DataFrame:
    """Aalen–Johansen cumulative incidence of cause 1 with cause 2 competing, by group.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    duration : str
        Follow-up time (>= 0).
    event_type : str
        0 = censored, 1 = cause of interest (e.g. overdose death), 2 = competing cause.
    group : str
        Grouping column.
    weights : str, optional
        Weights; the estimator uses weighted numbers at risk and events.
    cluster : str, optional
        Cluster for the variance (matched set).
    alpha : float
        1 - confidence level of the pointwise interval (log(-log F) scale, limits in
        [0, 1]).
    times : sequence of float, optional
        Evaluate at these times (step function) instead of at every observed time.

    Returns
    -------
    DataFrame
        ``group, time, n_at_risk, events, competing_events, cumulative_incidence, se,
        ci_low, ci_high, cumulative_incidence_competing``. With ``times`` given,
        ``n_at_risk``/``events`` refer to the last observed time <= t.

    Notes
    -----
    Own vectorised estimator (lifelines' ``AalenJohansenFitter`` has no weights and
    jitters tied times). Estimates agree with R's ``cmprsk::cuminc``; the standard
    error is the infinitesimal-jackknife one of R's ``survfit`` multi-state fit
    (summed within ``cluster``), checked in the tests; with weights or a cluster it
    carries the small-sample factor ``G / (G - 1)`` of :mod:`analysis.sandwich` (``G``
    clusters, or persons, in the group), and it is NaN, with a
    :class:`analysis.sandwich.FewClustersWarning`, when a group has fewer than 2. The SE is
    computed at every observed time at once from running sums over the persons in time
    order, in O(rows log rows) whatever the number of times.

    References
    ----------
    Aalen OO, Johansen S (1978). Scand J Stat 5:141-150.
    Gray RJ (1988). A class of K-sample tests for comparing the cumulative incidence of a
    competing risk. Ann Stat 16:1141-1154.
    Putter H, Fiocco M, Geskus RB (2007). Tutorial in biostatistics: competing risks and
    multi-state models. Stat Med 26:2389-2430.
    """
    # long: the docstring documents the variance; the body is about 70 lines
    z = z_value(alpha)
    t = durations(df, duration)
    et = _event_types(df, event_type)
    w = weights_array(df, weights)
    codes_all, _ = cluster_codes(df, cluster)
    robust = weights is not None or cluster is not None
    if group not in df.columns:
        raise KeyError(f"group column {group!r} is not in the data")
    g = df[group].to_numpy()
    out = []
    for level in sorted(pd.unique(g)):
        sel = g == level
        codes = pd.factorize(codes_all[sel])[0].astype(np.intp)
        if robust:
            curve_cluster_check(codes, cluster, level)
        uniq = np.unique(t[sel])
        if times is None:
            eval_index = None
        else:
            eval_index = step_index(uniq, np.asarray(times, dtype=float))
        idx_for_se = None if eval_index is None else np.clip(eval_index, 0, None)
        aj = _aalen_johansen(t[sel], et[sel], w[sel], codes, idx_for_se, robust)
        if times is None:
            k = np.arange(len(aj["times"]))
            part = pd.DataFrame(
                {
                    "group": level,
                    "time": aj["times"],
                    "n_at_risk": aj["at_risk"],
                    "events": aj["d1"],
                    "competing_events": aj["d2"],
                    "cumulative_incidence": aj["cif1"][k],
                    "se": aj["se1"],
                    "cumulative_incidence_competing": aj["cif2"][k],
                }
            )
            if aj["times"][0] > 0:
                start = {
                    "group": level, "time": 0.0, "n_at_risk": aj["at_risk"][0], "events": 0.0,
                    "competing_events": 0.0, "cumulative_incidence": 0.0, "se": 0.0,
                    "cumulative_incidence_competing": 0.0,
                }  # fmt: skip
                part = pd.concat([pd.DataFrame([start]), part], ignore_index=True)
        else:
            before = eval_index < 0
            k = np.clip(eval_index, 0, None)
            part = pd.DataFrame(
                {
                    "group": level,
                    "time": np.asarray(times, dtype=float),
                    "n_at_risk": np.where(before, aj["at_risk"][0], aj["at_risk"][k]),
                    "events": np.where(before, 0.0, aj["d1"][k]),
                    "competing_events": np.where(before, 0.0, aj["d2"][k]),
                    "cumulative_incidence": np.where(before, 0.0, aj["cif1"][k]),
                    "se": np.where(before, 0.0, aj["se1"]),
                    "cumulative_incidence_competing": np.where(before, 0.0, aj["cif2"][k]),
                }
            )
        lo, hi = loglog_ci(part["cumulative_incidence"].to_numpy(), part["se"].to_numpy(), z)
        part["ci_low"], part["ci_high"] = lo, hi
        out.append(part)
    cols = [
        "group", "time", "n_at_risk", "events", "competing_events", "cumulative_incidence",
        "se", "ci_low", "ci_high", "cumulative_incidence_competing",
    ]  # fmt: skip
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def cumulative_incidence_difference(
    df: pd.DataFrame,
    *,
    duration: str,
    event_type: str,
    treatment: str,
    time: float = DAYS_PER_YEAR,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
    outcome: str,
    method: str,
    label: str | None = None,
) -> EffectEstimate:
    """Difference in the cumulative incidence of cause 1 by ``time``, HAT minus OST.

    Each arm's cumulative incidence is the (weighted) Aalen–Johansen estimate of
    :func:`cumulative_incidence`, with cause 2 competing (e.g. overdose death with other
    deaths competing: a person who dies of another cause can no longer die of an
    overdose, which censoring the other deaths would ignore).

    Parameters
    ----------
    df : DataFrame
        One row per person.
    duration : str
        Follow-up time (>= 0).
    event_type : str
        0 = censored, 1 = cause of interest, 2 = competing cause.
    treatment : str
        1 = HAT, 0 = OST.
    time : float
        Time point, in the unit of ``duration`` (default 365.25 days).
    weights : str, optional
        Weights (matching or IPT weights).
    cluster : str, optional
        Matched set; the variance allows for correlation within sets, between the arms
        included.
    alpha : float
        1 - confidence level (Wald interval on the difference).
    outcome, method : str
        Labels of the result.
    label : str, optional
        Measure suffix; default ``"12m"`` when ``time`` is 365.25, else ``"<time>d"``.

    Returns
    -------
    EffectEstimate
        ``measure="RD_<label>"``; ``n_events`` counts cause-1 events. ``details``:
        ``per_group`` (cumulative incidence of cause 1 and its SE, of cause 2, longest
        follow-up), ``time``, ``variance``, ``n_clusters``, ``weighted``,
        ``events_by_group``. Not estimable (NaN, with the reason in ``details["note"]``)
        with an empty group, fewer than 2 clusters, no cause-1 event by ``time`` in
        either arm (a difference of 0 without variance), or ``time`` beyond the longest
        follow-up of an arm (as :func:`survival_at`; known beyond it only when every
        person of the arm has had an event of either cause).

    Notes
    -----
    The variance is the infinitesimal-jackknife one: each person's influence on their
    arm's CIF (the closed form of :func:`cumulative_incidence`) times their weight, the
    difference of the arms' influences summed within ``cluster`` (persons without one),
    squared and summed, times ``G / (G - 1)`` when weighted or clustered
    (:mod:`analysis.sandwich`). Without weights and clusters it is the sum of the two
    arms' variances, each the IJ variance of R's ``survfit`` multi-state fit. The point
    estimate agrees with R's ``cmprsk::cuminc`` and the clustered SE with the one built
    from ``survfit``'s influence values (``tests/reference/make_reference_cif.R``).

    References
    ----------
    Aalen OO, Johansen S (1978). Scand J Stat 5:141-150.
    Putter H, Fiocco M, Geskus RB (2007). Stat Med 26:2389-2430.
    """
    # long: the docstring documents the variance; the body is about 60 lines
    z = z_value(alpha)
    arm, et = _competing_arms(df, duration, event_type, treatment, weights, cluster)
    t, a, w, codes = arm.time, arm.treat, arm.w, arm.codes
    measure = f"RD_{horizon_label(time, label)}"
    common = {"n_treated": arm.n_treated, "n_control": arm.n_control, "n_events": arm.n_events}
    events_by_group = {
        "HAT": int(((et == 1) & (a == 1)).sum()),
        "OST": int(((et == 1) & (a == 0)).sum()),
    }
    checked = screen(arm, time, "time", check_clusters=True, curve="cumulative incidence")
    if checked.note is not None:
        return nan_estimate(outcome, measure, method, checked.note, details=checked.details,
                            **common)  # fmt: skip
    robust = arm.weighted or arm.clustered
    cif, cif2, se_g, contrib = {}, {}, {}, {}
    for g in (0, 1):
        sel = arm.treat == g
        parts = _aj_parts(t[sel], et[sel], w[sel])
        k = int(step_index(parts["times"], time))
        infl = np.zeros(len(t))
        if k < 0:  # before the first time: CIF 0, no influence
            cif[g], cif2[g] = 0.0, 0.0
        else:
            cif[g], cif2[g] = float(parts["cif1"][k]), float(parts["cif2"][k])
            infl[sel] = w[sel] * _aj_influence(parts, np.array([k]))[:, 0]
        contrib[g] = infl
        se_g[g] = float(np.sqrt(cluster_variance(infl[sel], codes[sel], small_sample=robust)[0]))
    zero = [label_ for g, label_ in ((1, "HAT"), (0, "OST")) if cif[g] == 0.0]
    reason, arm_notes = no_event_notes(
        time, zero, events="event of the cause", scale="cumulative incidence",
        scales="cumulative incidences",
    )  # fmt: skip
    if reason is not None:
        return nan_estimate(
            outcome, measure, method, reason,
            details={"time": float(time), "events_by_group": events_by_group}, **common,
        )  # fmt: skip
    diff = cif[1] - cif[0]
    se = float(np.sqrt(cluster_variance(contrib[1] - contrib[0], codes, small_sample=robust)[0]))
    details: dict[str, Any] = {
        "time": float(time),
        "variance": "influence",
        "n_clusters": arm.n_clusters if arm.clustered else None,
        "weighted": arm.weighted,
        "events_by_group": events_by_group,
        "per_group": {
            label_: {
                "cumulative_incidence": cif[g],
                "se": se_g[g],
                "cumulative_incidence_competing": cif2[g],
                "max_followup": checked.longest[label_],
            }
            for g, label_ in ((1, "HAT"), (0, "OST"))
        },
    }
    if checked.problem is not None:
        add_note(details, checked.problem)
    for note in arm_notes:
        add_note(details, note)
    return EffectEstimate(
        outcome=outcome,
        measure=measure,
        method=method,
        estimate=diff,
        ci_low=diff - z * se,
        ci_high=diff + z * se,
        p_value=wald_p(diff, se),
        se=se,
        details=details,
        **common,
    )


def _competing_arms(
    df: pd.DataFrame,
    duration: str,
    event_type: str,
    treatment: str,
    weights: str | None,
    cluster: str | None,
) -> tuple[TwoArm, np.ndarray]:
    """The checked columns of a two-arm competing-risks contrast and the event types (int).

    The arms' ``event`` is any event (either cause); ``n_events`` counts cause-1 events.
    """
    t = durations(df, duration)
    et = _event_types(df, event_type)
    a = binary(df, treatment, "treatment")
    w = weights_array(df, weights)
    codes, n_clusters = cluster_codes(df, cluster)
    arm = TwoArm(
        time=t, event=(et > 0).astype(int), treat=a, w=w, codes=codes, n_clusters=n_clusters,
        n_treated=int(a.sum()), n_control=int(len(a) - a.sum()), n_events=int((et == 1).sum()),
        weighted=weights is not None, clustered=cluster is not None,
    )  # fmt: skip
    return arm, et


def _event_types(df: pd.DataFrame, event_type: str) -> np.ndarray:
    """The event-type column as int: 0 censored, 1 the cause of interest, 2 competing."""
    et = numeric(df, event_type, "event_type")
    if not np.isin(et, (0.0, 1.0, 2.0)).all():
        raise ValueError(f"event_type column {event_type!r} must hold only 0, 1 and 2")
    return et.astype(int)
