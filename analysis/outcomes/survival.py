"""Time-to-event estimators: Kaplan–Meier, Cox hazard ratio, retention at a time point,
restricted mean survival time, Aalen–Johansen cumulative incidence, and the log-rank and
robust Cox score tests.

Every estimator takes a person-level DataFrame first and the column roles as
keyword-only arguments (``duration``, ``event``, ``treatment``, ``weights``,
``cluster``...). Effects are returned as :class:`analysis.results.EffectEstimate`.

Variance in weighted or matched samples
---------------------------------------
Cox models use the robust (sandwich) variance of Lin & Wei (1989), summed over
``cluster`` (the matched set) when given. The Kaplan–Meier curves and contrasts
(:func:`kaplan_meier`, :func:`survival_at`, :func:`rmst_difference`) and the cumulative
incidence use the infinitesimal-jackknife (influence-function) variance: each person's
influence on the estimate is computed in closed form, summed within clusters, and the
variance is the sum of the squared cluster totals. This is the variance R's ``survfit``
reports with ``cluster=`` (checked against it in ``tests/test_survival.py``); without
weights and clusters it equals Greenwood's formula exactly. A cluster bootstrap over
matched sets is available as a check (``variance="bootstrap"``).

Every robust variance (with weights or a cluster) is multiplied by ``G / (G - 1)``, ``G``
the number of clusters (persons when no cluster is given): the one small-sample convention
of :mod:`analysis.sandwich`, so the variances are R's times that factor. With fewer than 2
clusters an estimate is not estimable; below 30 it carries a note and a
:class:`analysis.sandwich.FewClustersWarning` is emitted.

References
----------
Lin DY, Wei LJ (1989). The robust inference for the Cox proportional hazards model.
JASA 84:1074-1078.
Therneau TM, Grambsch PM (2000). Modeling Survival Data: Extending the Cox Model. Springer.
Grambsch PM, Therneau TM (1994). Proportional hazards tests and diagnostics based on
weighted residuals. Biometrika 81:515-526.
Royston P, Parmar MKB (2013). Restricted mean survival time: an alternative to the hazard
ratio. BMC Med Res Methodol 13:152.
Aalen OO, Johansen S (1978). An empirical transition matrix for non-homogeneous Markov
chains based on censored observations. Scand J Stat 5:141-150.
Austin PC, Small DS (2014). The use of bootstrapping when using propensity-score matching
without replacement. Stat Med 33:4306-4319.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

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
from analysis.outcomes.coxph import CoxResult, _segment_cumsum, cox_zph, fit_cox
from analysis.results import EffectEstimate
from analysis.sandwich import (
    FewClustersWarning,
    cluster_check,
    cluster_variance,
    count_clusters,
    small_sample_factor,
)

Variance = Literal["influence", "bootstrap"]


#: largest number of matrix cells (rows x replicates or rows x times) held at once
_CHUNK_CELLS = 2_000_000


# ----------------------------------------------------------------------------- input checks


_column = numeric
_binary = binary
_durations = durations
_weights_array = weights_array
_cluster_codes = cluster_codes
_z = z_value
_wald_p = wald_p


def _nan_estimate(outcome: str, measure: str, method: str, note: str, **kw: Any) -> EffectEstimate:
    nan = float("nan")
    details = {"note": note, **kw.pop("details", {})}
    return EffectEstimate(
        outcome=outcome,
        measure=measure,
        method=method,
        estimate=nan,
        ci_low=nan,
        ci_high=nan,
        p_value=nan,
        details=details,
        **kw,
    )


def _add_note(details: dict[str, Any], note: str) -> None:
    """Append ``note`` to ``details["note"]`` (notes joined by "; ")."""
    details["note"] = f"{details['note']}; {note}" if details.get("note") else note


def _curve_cluster_check(codes: np.ndarray, cluster: str | None, level: Any) -> None:
    """Warn when a curve's robust SE rests on few clusters (NaN below 2)."""
    what = f"values of {cluster} in group {level}" if cluster else f"persons in group {level}"
    problem = cluster_check(count_clusters(codes), what=what, stacklevel=4)
    if problem is not None and problem.startswith("not estimable"):
        warnings.warn(f"standard errors {problem}", FewClustersWarning, stacklevel=3)


def _robust_problem(arm: _TwoArm) -> str | None:
    """:func:`analysis.sandwich.cluster_check` for a two-arm contrast's robust variance."""
    what = "clusters" if arm.clustered else "persons, each its own cluster"
    return cluster_check(count_clusters(arm.codes), what=what, stacklevel=4)


# ----------------------------------------------------------------------------- product limit


@dataclass(frozen=True)
class _ProductLimit:
    """Weighted product-limit estimate on the unique observed times of one group."""

    times: np.ndarray  # unique observed times (events and censorings), ascending
    at_risk: np.ndarray  # weighted number at risk Y_j
    events: np.ndarray  # weighted events d_j
    total: np.ndarray  # weighted observations (events + censorings) at t_j
    survival: np.ndarray  # S(t_j), right-continuous (after the jump at t_j)
    index: np.ndarray  # position of each observation's time in ``times``


def _product_limit(time: np.ndarray, event: np.ndarray, w: np.ndarray) -> _ProductLimit:
    times, index = np.unique(time, return_inverse=True)
    m = len(times)
    total = np.bincount(index, weights=w, minlength=m)
    events = np.bincount(index, weights=w * event, minlength=m)
    at_risk = np.cumsum(total[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, events / at_risk, 0.0)
    survival = np.cumprod(1.0 - hazard)
    return _ProductLimit(times, at_risk, events, total, survival, index)


def _step_index(times: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Index of the last time <= t (-1 when none)."""
    return np.searchsorted(times, t, side="right") - 1


def _survival_at_time(pl: _ProductLimit, t: float) -> float:
    j = int(_step_index(pl.times, t))
    return 1.0 if j < 0 else float(pl.survival[j])


def _log_survival_influence(pl: _ProductLimit, event: np.ndarray, mult: np.ndarray) -> np.ndarray:
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


def _km_log_variance(
    pl: _ProductLimit, event: np.ndarray, w: np.ndarray, codes: np.ndarray
) -> np.ndarray:
    """Sum over clusters of the squared cluster totals of the influence on log S(t_k), every k.

    Person ``i`` (time index ``j_i``, weight ``w_i``) has influence ``w_i c_i`` on
    ``log S(t_k)`` once ``j_i <= k`` and ``w_i B_k`` before, where
    ``c_i = -event_i / (Y - d)_{j_i} + B_{j_i}`` and ``B_k = sum_{j <= k} d_j / (Y_j (Y_j - d_j))``
    (:func:`_log_survival_influence` with ``mult = 1{t_j <= t_k}``). A cluster's total is
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


def _rmst_parts(pl: _ProductLimit, tau: float) -> tuple[float, np.ndarray]:
    """RMST up to ``tau`` and, per time, the area under S from ``t_j`` to ``tau``."""
    inside = pl.times < tau
    tj = pl.times[inside]
    if len(tj) == 0:
        return float(tau), np.zeros(len(pl.times))
    right = np.append(tj[1:], tau)
    area = pl.survival[inside] * (right - tj)
    tail = np.cumsum(area[::-1])[::-1]  # area from t_j to tau
    rmst = float(tj[0] + tail[0])  # S = 1 on [0, t_1)
    mult = np.zeros(len(pl.times))
    mult[inside] = tail
    return rmst, mult


# ----------------------------------------------------------------------------- Cox


def _ph_test(
    fit: CoxResult,
    x: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    *,
    weights: np.ndarray | None,
    cluster: np.ndarray | None,
    terms: list[str],
    transform: str,
    robust: bool,
) -> dict[str, Any]:
    """Proportional-hazards tests of a fitted Cox model for ``details["ph_test"]``.

    The test of the first term (treatment) is reported with the variance of the hazard
    ratio (robust when the fit's is); every term, the global test and R's ``cox.zph``
    (model-based) values are kept beside it.
    """
    variance = "robust" if robust else "model"
    out: dict[str, Any] = {"df": 1, "transform": transform, "term": terms[0], "variance": variance}

    def table(var: str) -> pd.DataFrame:
        return cox_zph(
            fit, x, time, event, weights=weights, cluster=cluster, transform=transform,
            terms={name: [j] for j, name in enumerate(terms)}, variance=var,
        ).table  # fmt: skip

    try:
        tables = {"model": table("model")}
        if robust:
            tables["robust"] = table("robust")
    except ValueError as err:
        nan = float("nan")
        return {"statistic": nan, "p_value": nan, **out, "note": f"not testable: {err}"}

    def row(tab: pd.DataFrame, name: str) -> dict[str, Any]:
        r = tab.loc[name]
        return {"statistic": float(r["chisq"]), "df": int(r["df"]), "p_value": float(r["p"])}

    main = tables[variance]
    first = row(main, terms[0])
    return {
        "statistic": first["statistic"],
        "p_value": first["p_value"],
        **out,
        "terms": {name: row(main, name) for name in terms},
        "global": row(main, "GLOBAL"),
        "model_based": {
            "statistic": row(tables["model"], terms[0])["statistic"],
            "p_value": row(tables["model"], terms[0])["p_value"],
            "global": row(tables["model"], "GLOBAL"),
        },
    }


def cox_hazard_ratio(
    df: pd.DataFrame,
    *,
    duration: str,
    event: str,
    treatment: str,
    covariates: Sequence[str] = (),
    cluster: str | None = None,
    weights: str | None = None,
    alpha: float = 0.05,
    outcome: str,
    method: str,
    ph_transform: str = "km",
    small_sample: str = "factor",
) -> EffectEstimate:
    """Hazard ratio of treatment (HAT vs OST) from a Cox proportional-hazards model.

    The partial likelihood (Efron's method for ties, weighted when ``weights`` is given)
    is maximised with :func:`analysis.outcomes.coxph.fit_cox` (vectorised Newton-Raphson,
    checked against R's ``coxph``). With ``cluster`` the variance is
    the robust sandwich of Lin & Wei summed over clusters (matched sets); with
    ``weights`` and no cluster it is the robust sandwich per person (weights treated as
    sampling weights, not frequencies); without either it is the inverse information.
    Robust variances carry the small-sample factor ``G / (G - 1)`` (``G`` clusters, or
    persons without a cluster), the package's one convention (:mod:`analysis.sandwich`), so
    they are R's ``coxph(..., cluster=)`` variance times that factor. With fewer than 2
    clusters the HR is not estimable; below 30 the estimate carries a note and a
    :class:`analysis.sandwich.FewClustersWarning` is emitted.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    duration, event : str
        Follow-up time (>= 0; zeros allowed) and event indicator (0/1).
    treatment : str
        1 = HAT, 0 = OST.
    covariates : sequence of str
        Numeric adjustment covariates (already dummy coded, without missing values).
    cluster : str, optional
        Cluster identifier (matched set) for the robust variance.
    weights : str, optional
        Non-negative weights (matching or IPT weights); rows with weight 0 are dropped
        and counted in ``details``.
    alpha : float
        1 - confidence level.
    outcome, method : str
        Labels of the result (e.g. ``"mortality"``, ``"cox_matched"``).
    ph_transform : {"km", "rank", "identity", "log"}
        Time transform ``g`` of the proportional-hazards test, as R's ``cox.zph``:
        ``"km"`` (default, as in R) is ``1 - S(t-)`` of the unweighted Kaplan–Meier
        estimate over all rows; ``"rank"`` the rank of the time among all rows (ties
        averaged); ``"identity"`` the time; ``"log"`` its logarithm.
    small_sample : {"factor", "mancl-derouen"}
        Small-sample correction of the robust variance: the factor ``G / (G - 1)``, or the
        bias-corrected sandwich of Mancl & DeRouen (2001) (see Notes). Ignored without
        weights and cluster (model-based variance).

    Returns
    -------
    EffectEstimate
        ``measure="HR"``. ``details``: ``se_log`` (SE of the log HR), ``se_log_model``
        (model-based), ``robust``, ``small_sample`` (the correction used), ``se_log_factor``
        (the ``G / (G - 1)`` sandwich's SE, beside a bias-corrected one), ``max_leverage``,
        ``n_clusters``, ``coefficients`` (every term: coef,
        SE), ``ph_test``, ``events_by_group`` and ``warnings`` raised while fitting.
        ``ph_test`` holds the test of the treatment term (``statistic``, ``p_value``,
        ``df``, ``term``), ``transform``, ``variance`` (``"robust"`` or ``"model"``, as
        the HR's), ``terms`` (every term: statistic, df, p_value), ``global`` (all terms
        jointly) and ``model_based`` (R's ``cox.zph``: the treatment term and the global
        test with the model-based information); when the test cannot be computed
        (e.g. every event at one time) its statistic and p-value are NaN and its
        ``note`` says why. When the HR is not estimable (no events, or none in one
        group; monotone likelihood, e.g. every HAT person's follow-up ends before the
        first OST event, where the partial likelihood has no maximum; fewer than 2
        clusters) the estimate is NaN and ``details["note"]`` says why.

    Notes
    -----
    The robust variance is the one of :func:`analysis.outcomes.coxph.fit_cox`, built from score
    residuals with Efron's fractional risk sets (lifelines' are not, so its SEs differ
    from R's by up to 0.1% on day-level data); it reproduces R's
    ``coxph(..., cluster=)`` times ``G / (G - 1)`` to 1e-9 (tests) in O(n p).

    With few events the sandwich is biased downwards even with many clusters: the few
    clusters (matched sets) that hold an event of the smaller arm carry most of the
    information, and their squared score totals, evaluated at an estimate fitted to them,
    are too small (about 20 HAT deaths among 400 matched sets: SE 3% too small; 6 overdose
    deaths: 7%; see ``benchmarks/coverage.md``). ``small_sample="mancl-derouen"`` divides each
    cluster's score total by ``1 - h_g``, ``h_g`` its share of the information (leverage),
    which matches the cluster jackknife to first order. When a cluster's leverage exceeds
    :data:`analysis.sandwich.MAX_LEVERAGE` (e.g. one event in an arm) the correction is not
    computed: the ``G / (G - 1)`` sandwich is used and a note says so.

    The proportional-hazards test (:func:`analysis.outcomes.coxph.cox_zph`) is the score test of
    R's ``cox.zph`` (survival >= 3.0) for adding ``treatment x g(t)`` to the model: the
    case-weighted Schoenfeld residuals times ``g`` at the event times, against the full
    information of the model with the added terms (Efron's ties as in the fit). R's
    ``cox.zph`` always uses that model-based information, whatever the fit's variance:
    it ignores ``cluster()`` and treats the weights as frequencies, and so with matching
    weights (controls 1/k) it rejects too rarely (about 2% at the 5% level under
    proportional hazards, 1:4 matching) and it ignores the correlation within matched
    sets. When the hazard ratio's variance is robust (weights or clusters), the test here
    uses the robust (sandwich) variance of the same score, summed over ``cluster``
    (Lin & Wei 1989), which holds its level (``variance: "robust"``; about 5% in the same
    simulation); R's model-based values are kept in ``ph_test["model_based"]``. Without
    weights and clusters the test is R's ``cox.zph`` exactly.

    References
    ----------
    Cox DR (1972). Regression models and life-tables. JRSS B 34:187-220.
    Efron B (1977). The efficiency of Cox's likelihood function for censored data.
    JASA 72:557-565.
    Lin DY, Wei LJ (1989). The robust inference for the Cox proportional hazards model.
    JASA 84:1074-1078.
    Grambsch PM, Therneau TM (1994). Proportional hazards tests and diagnostics based on
    weighted residuals. Biometrika 81:515-526.
    """
    _z(alpha)  # validates alpha
    if ph_transform not in ("km", "rank", "identity", "log"):
        raise ValueError(
            f"ph_transform must be 'km', 'rank', 'identity' or 'log', got {ph_transform!r}"
        )
    covariates = list(covariates)
    if treatment in covariates:
        raise ValueError(f"treatment column {treatment!r} is also listed as a covariate")
    t = _durations(df, duration)
    e = _binary(df, event, "event")
    a = _binary(df, treatment, "treatment")
    w = _weights_array(df, weights)
    codes, _ = _cluster_codes(df, cluster)
    terms = [treatment, *covariates]
    x = np.column_stack([a.astype(float)] + [_column(df, c, "covariate") for c in covariates])
    keep = w > 0
    n_zero_weight = int((~keep).sum())
    if n_zero_weight:
        t, e, a, w, codes, x = t[keep], e[keep], a[keep], w[keep], codes[keep], x[keep]
        codes = pd.factorize(codes)[0].astype(np.intp)
    n_clusters = int(codes.max()) + 1 if len(codes) else 0
    n_treated = int(a.sum())
    n_control = int(len(a) - n_treated)
    n_events = int(e.sum())
    events_by_group = {"treated": int(e[a == 1].sum()), "control": int(e[a == 0].sum())}
    common = {"n_treated": n_treated, "n_control": n_control, "n_events": n_events}
    base_details: dict[str, Any] = {"events_by_group": events_by_group}
    if n_zero_weight:
        base_details["n_dropped_zero_weight"] = n_zero_weight
    if n_treated == 0 or n_control == 0:
        return _nan_estimate(
            outcome, "HR", method, "HR not estimable: one treatment group is empty",
            details=base_details, **common,
        )  # fmt: skip
    if n_events == 0:
        return _nan_estimate(
            outcome, "HR", method, "HR not estimable: no events", details=base_details, **common
        )
    if min(events_by_group.values()) == 0:
        empty = "HAT" if events_by_group["treated"] == 0 else "OST"
        return _nan_estimate(
            outcome, "HR", method,
            f"HR not estimable: no events in the {empty} group (the partial likelihood "
            "has no maximum; the HR tends to 0 or infinity)",
            details=base_details, **common,
        )  # fmt: skip

    robust = weights is not None or cluster is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = fit_cox(
                pd.DataFrame(x, columns=terms),
                t,
                e,
                weights=w if weights is not None else None,
                cluster=codes if robust else None,
                ties="efron",
                small_sample=small_sample if robust else "factor",
            )
        except (ValueError, np.linalg.LinAlgError) as err:
            return _nan_estimate(
                outcome, "HR", method, f"Cox model could not be fitted: {err}",
                details=base_details, **common,
            )  # fmt: skip
    fit_warnings = sorted({str(wm.message).strip().splitlines()[0][:200] for wm in caught})
    if treatment not in fit.diverging and not fit.converged:
        reasons = "".join(f"; {name}: {why}" for name, why in fit.diverging.items())
        return _nan_estimate(
            outcome, "HR", method, f"Cox model did not converge{reasons}",
            details={**base_details, "warnings": fit_warnings}, **common,
        )  # fmt: skip
    if treatment in fit.diverging:
        note = f"HR not estimable: {fit.diverging[treatment]}"
        if note.startswith("HR not estimable: monotone likelihood: at every event time"):
            first, second = ("HAT", "OST") if fit.params[0] > 0 else ("OST", "HAT")
            note += (
                f" (every {first} person's follow-up ends before the first {second} event; "
                f"the HR tends to {'infinity' if first == 'HAT' else '0'})"
            )
        return _nan_estimate(
            outcome, "HR", method, note,
            details={**base_details, "warnings": fit_warnings}, **common,
        )  # fmt: skip
    notes = [
        f"the coefficient of {name} is infinite ({reason}); the HR is adjusted for its limit"
        for name, reason in fit.diverging.items()
    ]
    if robust:
        problem = cluster_check(
            count_clusters(codes), what=f"values of {cluster}" if cluster else "persons"
        )
        if problem is not None and problem.startswith("not estimable"):
            return _nan_estimate(
                outcome, "HR", method, f"HR {problem}",
                details={**base_details, "warnings": fit_warnings}, **common,
            )  # fmt: skip
        notes += [problem] if problem else []
    beta = np.asarray(fit.params, dtype=float)
    v_model = np.asarray(fit.cov, dtype=float)
    robust = weights is not None or cluster is not None
    cov = np.asarray(fit.robust_cov if robust else fit.cov, dtype=float)
    corrected = robust and fit.small_sample != "factor"
    se_factor = None
    if corrected:
        factor_cov = np.asarray(fit.robust_cov_factor, dtype=float)
        se_factor = float(np.sqrt(factor_cov[0, 0]))
        if not np.isfinite(cov).all():
            notes.append(
                f"the bias-corrected ({fit.small_sample}) variance is not computed: one "
                f"cluster holds most of the information (leverage {fit.max_leverage:.2f}); "
                "the G/(G-1) sandwich is used and the interval may be too narrow"
            )
            cov = factor_cov
    se_all = np.sqrt(np.diag(cov))
    b, se = float(beta[0]), float(se_all[0])
    ph_test = _ph_test(
        fit, x, t, e, weights=w if weights is not None else None,
        cluster=codes if cluster is not None else None, terms=terms,
        transform=ph_transform, robust=robust,
    )  # fmt: skip
    details = {
        **base_details,
        "se_log": se,
        "se_log_model": float(np.sqrt(v_model[0, 0])),
        "robust": robust,
        "small_sample": (fit.small_sample if robust else None),
        "se_log_factor": se_factor,
        "max_leverage": fit.max_leverage,
        "n_clusters": n_clusters if cluster is not None else None,
        "ties": "efron",
        "coefficients": {
            term: {"coef": float(beta[j]), "se": float(se_all[j])} for j, term in enumerate(terms)
        },
        "ph_test": ph_test,
        "warnings": fit_warnings,
    }
    if notes:
        details["note"] = "; ".join(notes)
    return EffectEstimate.from_log(
        log_estimate=b,
        se=se,
        alpha=alpha,
        outcome=outcome,
        measure="HR",
        method=method,
        details=details,
        **common,
    )


# ----------------------------------------------------------------------------- Kaplan–Meier


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


def _loglog_ci(est: np.ndarray, se: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
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
    z = _z(alpha)
    t = _durations(df, duration)
    e = _binary(df, event, "event")
    w = _weights_array(df, weights)
    codes_all, _ = _cluster_codes(df, cluster)
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
        pl = _product_limit(t[sel], e[sel], w[sel])
        if robust:
            codes = pd.factorize(codes_all[sel])[0].astype(np.intp)
            _curve_cluster_check(codes, cluster, level)
            var_log = _km_log_variance(pl, e[sel], w[sel], codes)
            var_log = var_log * small_sample_factor(count_clusters(codes))
        else:  # Greenwood
            remaining = pl.at_risk - pl.events
            with np.errstate(divide="ignore", invalid="ignore"):
                var_log = np.cumsum(
                    np.where(pl.events > 0, pl.events / (pl.at_risk * remaining), 0.0)
                )
        with np.errstate(invalid="ignore"):
            se = np.where(pl.survival > 0, pl.survival * np.sqrt(var_log), 0.0)
        lo, hi = _loglog_ci(pl.survival, se, z)
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
    t = _durations(df, duration)
    g = df[group].to_numpy()
    times = np.asarray(times, dtype=float)
    rows = []
    for level in sorted(pd.unique(g)):
        ts = np.sort(t[g == level])
        n_risk = len(ts) - np.searchsorted(ts, times, side="left")
        rows.append(pd.DataFrame({"group": level, "time": times, "n_at_risk": n_risk}))
    return pd.concat(rows, ignore_index=True)


# ----------------------------------------------------------------------------- two-arm contrasts


@dataclass(frozen=True)
class _TwoArm:
    time: np.ndarray
    event: np.ndarray
    treat: np.ndarray
    w: np.ndarray
    codes: np.ndarray
    n_clusters: int
    n_treated: int
    n_control: int
    n_events: int
    weighted: bool
    clustered: bool


def _two_arm(
    df: pd.DataFrame,
    duration: str,
    event: str,
    treatment: str,
    weights: str | None,
    cluster: str | None,
) -> _TwoArm:
    t = _durations(df, duration)
    e = _binary(df, event, "event")
    a = _binary(df, treatment, "treatment")
    w = _weights_array(df, weights)
    codes, n_clusters = _cluster_codes(df, cluster)
    return _TwoArm(
        time=t, event=e, treat=a, w=w, codes=codes, n_clusters=n_clusters,
        n_treated=int(a.sum()), n_control=int(len(a) - a.sum()), n_events=int(e.sum()),
        weighted=weights is not None, clustered=cluster is not None,
    )  # fmt: skip


def _bootstrap_weight_blocks(
    arm: _TwoArm, n_boot: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Blocks of (replicates x persons) weights of a cluster bootstrap.

    Clusters are drawn with replacement (multinomial counts); each person's bootstrap
    weight is its weight times the number of times its cluster was drawn.
    """
    n = len(arm.time)
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    p = np.full(arm.n_clusters, 1.0 / arm.n_clusters)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        counts = rng.multinomial(arm.n_clusters, p, size=b)
        yield counts[:, arm.codes] * arm.w
        done += b


def _product_limit_replicates(
    time: np.ndarray, event: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Survival at the unique times for each row of a (replicates x persons) weight matrix."""
    times, index = np.unique(time, return_inverse=True)
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    starts = np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1]])
    wt = weights[:, order]
    total = np.add.reduceat(wt, starts, axis=1)
    events = np.add.reduceat(wt * event[order], starts, axis=1)
    at_risk = np.cumsum(total[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, events / at_risk, 0.0)
    return times, np.cumprod(1.0 - hazard, axis=1)


def _replicate_functionals(
    times: np.ndarray, surv: np.ndarray, t: float | None, tau: float | None
) -> np.ndarray:
    """S(t) or RMST(tau) for each replicate row of ``surv``."""
    if t is not None:
        j = int(_step_index(times, t))
        return np.ones(surv.shape[0]) if j < 0 else surv[:, j]
    assert tau is not None
    inside = times < tau
    tj = times[inside]
    if len(tj) == 0:
        return np.full(surv.shape[0], float(tau))
    widths = np.append(tj[1:], tau) - tj
    return tj[0] + surv[:, inside] @ widths


def _bootstrap(
    arm: _TwoArm,
    *,
    t: float | None,
    tau: float | None,
    n_boot: int,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap replicates of the per-arm functional: arrays (control, treated)."""
    if rng is None:
        raise ValueError("variance='bootstrap' needs rng (a numpy Generator) for reproducibility")
    if n_boot < 2:
        raise ValueError("n_boot must be at least 2")
    out0, out1 = [], []
    for block in _bootstrap_weight_blocks(arm, n_boot, rng):
        for arm_value, out in ((0, out0), (1, out1)):
            sel = arm.treat == arm_value
            times, surv = _product_limit_replicates(arm.time[sel], arm.event[sel], block[:, sel])
            out.append(_replicate_functionals(times, surv, t, tau))
    return np.concatenate(out0), np.concatenate(out1)


def _check_variance(variance: str) -> None:
    if variance not in ("influence", "bootstrap"):
        raise ValueError(f"variance must be 'influence' or 'bootstrap', got {variance!r}")


def _beyond_followup(arm: _TwoArm, horizon: float, name: str) -> tuple[str | None, dict]:
    """Whether ``horizon`` lies beyond the longest follow-up of an arm.

    The longest follow-up of an arm is its largest time (event or censoring) among rows
    with a positive weight; the Kaplan–Meier curve is observed up to and including it,
    and beyond it when it has reached 0 there (the last person left with an event).

    Returns
    -------
    note : str or None
        Why the functional at ``horizon`` is not estimable, or None when it is.
    longest : dict
        ``{"HAT": ..., "OST": ...}``, the longest follow-up of each arm.
    """
    longest, known = {}, {}
    for g, label in ((1, "HAT"), (0, "OST")):
        sel = (arm.treat == g) & (arm.w > 0)
        longest[label] = float(arm.time[sel].max()) if sel.any() else float("nan")
        # a curve that has reached 0 (everyone left with an event) stays 0: known for all t
        pl = _product_limit(arm.time[sel], arm.event[sel], arm.w[sel]) if sel.any() else None
        known[label] = pl is not None and len(pl.survival) > 0 and pl.survival[-1] == 0.0
    short = [
        f"{label} {v:g}"
        for label, v in longest.items()
        if not (known[label] or (math.isfinite(v) and v >= horizon))
    ]
    if not short:
        return None, longest
    note = (
        f"not estimable: {name} = {horizon:g} is beyond the longest follow-up "
        f"({', '.join(short)}); the Kaplan-Meier curve is unknown there"
    )
    return note, longest


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
    outcome: str = "retention",
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
    _check_variance(variance)
    z = _z(alpha)
    arm = _two_arm(df, duration, event, treatment, weights, cluster)
    if label is None:
        label = "12m" if time == DAYS_PER_YEAR else f"{time:g}d"
    rr_measure, rd_measure = f"RR_{label}", f"RD_{label}"
    common = {"n_treated": arm.n_treated, "n_control": arm.n_control, "n_events": arm.n_events}
    if arm.n_treated == 0 or arm.n_control == 0:
        note = "not estimable: one treatment group is empty"
        return SurvivalAt(
            _nan_estimate(outcome, rr_measure, method, note, **common),
            _nan_estimate(outcome, rd_measure, method, note, **common),
        )
    beyond, longest = _beyond_followup(arm, time, "time")
    if beyond is not None:
        info = {
            "time": float(time),
            "per_group": {g: {"max_followup": v} for g, v in longest.items()},
        }
        return SurvivalAt(
            _nan_estimate(outcome, rr_measure, method, beyond, details=info, **common),
            _nan_estimate(outcome, rd_measure, method, beyond, details=dict(info), **common),
        )
    robust = arm.weighted or arm.clustered  # else the IJ variance is Greenwood's, no factor
    problem = _robust_problem(arm) if robust and variance == "influence" else None
    if problem is not None and problem.startswith("not estimable"):
        return SurvivalAt(
            _nan_estimate(outcome, rr_measure, method, problem, **common),
            _nan_estimate(outcome, rd_measure, method, problem, **common),
        )
    surv, se_surv, contrib_log, contrib_lin = {}, {}, {}, {}
    for g in (0, 1):
        sel = arm.treat == g
        pl = _product_limit(arm.time[sel], arm.event[sel], arm.w[sel])
        surv[g] = _survival_at_time(pl, time)
        contrib_log[g] = np.zeros(len(arm.time))  # influence on log S_g(t)
        if surv[g] > 0:  # a curve at 0 stays at 0 when weights move: no influence, no variance
            mult = (pl.times <= time).astype(float)
            contrib_log[g][sel] = arm.w[sel] * _log_survival_influence(pl, arm.event[sel], mult)
        contrib_lin[g] = surv[g] * contrib_log[g]  # influence on S_g(t)
        var_g, _ = cluster_variance(contrib_lin[g][sel], arm.codes[sel], small_sample=robust)
        se_surv[g] = float(np.sqrt(var_g))
    s0, s1 = surv[0], surv[1]
    log_rr = math.log(s1 / s0) if s0 > 0 and s1 > 0 else float("nan")
    rd = s1 - s0
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
    if problem is not None:
        _add_note(details, problem)
    if variance == "influence":
        diff_log = contrib_log[1] - contrib_log[0]
        se_log = float(np.sqrt(cluster_variance(diff_log, arm.codes, small_sample=robust)[0]))
        diff_lin = contrib_lin[1] - contrib_lin[0]
        se_rd = float(np.sqrt(cluster_variance(diff_lin, arm.codes, small_sample=robust)[0]))
        if not math.isfinite(log_rr):
            se_log = float("nan")
    else:
        b0, b1 = _bootstrap(arm, t=time, tau=None, n_boot=n_boot, rng=rng)
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
    if not math.isfinite(log_rr):
        _add_note(details, "survival is 0 in a group at this time: the ratio is not defined")
    ratio = EffectEstimate(
        outcome=outcome,
        measure=rr_measure,
        method=method,
        estimate=math.exp(log_rr) if math.isfinite(log_rr) else float("nan"),
        ci_low=math.exp(log_rr - z * se_log) if math.isfinite(log_rr) else float("nan"),
        ci_high=math.exp(log_rr + z * se_log) if math.isfinite(log_rr) else float("nan"),
        p_value=_wald_p(log_rr, se_log),
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
        p_value=_wald_p(rd, se_rd),
        se=se_rd,
        details=dict(details),
        **common,
    )
    return SurvivalAt(ratio, difference)


def rmst_difference(
    df: pd.DataFrame,
    *,
    duration: str,
    event: str,
    treatment: str,
    tau: float = 730.0,
    weights: str | None = None,
    cluster: str | None = None,
    alpha: float = 0.05,
    variance: Variance = "influence",
    n_boot: int = 200,
    rng: np.random.Generator | None = None,
    outcome: str = "retention",
    method: str,
) -> EffectEstimate:
    """Difference in restricted mean survival time up to ``tau``, HAT minus OST.

    RMST(tau) is the area under the (weighted) Kaplan–Meier curve from 0 to ``tau``:
    for retention, the expected days in treatment within the first ``tau`` days.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    duration, event, treatment : str
        Follow-up time (>= 0), event indicator (0/1), treatment (1 HAT, 0 OST).
    tau : float
        Horizon, in the unit of ``duration`` (default 730 days).
    weights, cluster, alpha, variance, n_boot, rng : see :func:`survival_at`
        The influence-function variance of the RMST is, without weights and clusters,
        the classical ``sum_j A_j^2 d_j / (Y_j (Y_j - d_j))`` (A_j the area under the
        curve from t_j to tau), the ``se(rmean)`` of R's ``survfit``.
    outcome, method : str
        Labels of the result.

    Returns
    -------
    EffectEstimate
        ``measure="RMST_diff"`` in the unit of ``duration``; ``details``: ``per_group``
        RMST and SE, ``tau``, ``variance``. Not estimable (NaN, with the reason in
        ``details["note"]``) when ``tau`` is beyond the longest follow-up of either arm,
        i.e. ``tau > min(max time of HAT, max time of OST)`` where each maximum is the
        largest duration (event or censoring) among rows with a positive weight; ``tau``
        equal to that maximum is estimable. Beyond it the area under the curve is not
        observed (Royston & Parmar 2013 restrict tau to the follow-up of both arms).

    References
    ----------
    Royston P, Parmar MKB (2013). BMC Med Res Methodol 13:152.
    Klein JP, Moeschberger ML (2003). Survival Analysis, 2nd ed. Springer, sec. 4.5.
    """
    _check_variance(variance)
    z = _z(alpha)
    if not tau > 0:
        raise ValueError("tau must be positive")
    arm = _two_arm(df, duration, event, treatment, weights, cluster)
    common = {"n_treated": arm.n_treated, "n_control": arm.n_control, "n_events": arm.n_events}
    if arm.n_treated == 0 or arm.n_control == 0:
        return _nan_estimate(
            outcome, "RMST_diff", method, "not estimable: one treatment group is empty", **common
        )
    beyond, longest = _beyond_followup(arm, tau, "tau")
    if beyond is not None:
        info = {
            "tau": float(tau),
            "per_group": {g: {"max_followup": v} for g, v in longest.items()},
        }
        return _nan_estimate(outcome, "RMST_diff", method, beyond, details=info, **common)
    robust = arm.weighted or arm.clustered  # else the IJ variance is the classical one
    problem = _robust_problem(arm) if robust and variance == "influence" else None
    if problem is not None and problem.startswith("not estimable"):
        return _nan_estimate(outcome, "RMST_diff", method, problem, **common)
    rmst, contrib, se_g = {}, {}, {}
    for g in (0, 1):
        sel = arm.treat == g
        pl = _product_limit(arm.time[sel], arm.event[sel], arm.w[sel])
        rmst[g], mult = _rmst_parts(pl, tau)
        infl = np.zeros(len(arm.time))
        infl[sel] = arm.w[sel] * _log_survival_influence(pl, arm.event[sel], mult)
        contrib[g] = infl
        se_g[g] = float(
            np.sqrt(cluster_variance(infl[sel], arm.codes[sel], small_sample=robust)[0])
        )
    diff = rmst[1] - rmst[0]
    details: dict[str, Any] = {
        "tau": float(tau),
        "variance": variance,
        "n_clusters": arm.n_clusters if arm.clustered else None,
        "weighted": arm.weighted,
        "per_group": {
            "HAT": {"rmst": rmst[1], "se": se_g[1], "max_followup": longest["HAT"]},
            "OST": {"rmst": rmst[0], "se": se_g[0], "max_followup": longest["OST"]},
        },
    }
    if problem is not None:
        _add_note(details, problem)
    if variance == "influence":
        se = float(
            np.sqrt(cluster_variance(contrib[1] - contrib[0], arm.codes, small_sample=robust)[0])
        )
    else:
        b0, b1 = _bootstrap(arm, t=None, tau=tau, n_boot=n_boot, rng=rng)
        reps = b1 - b0
        se = float(np.std(reps, ddof=1))
        details["n_boot"] = n_boot
        details["percentile_ci"] = [float(x) for x in np.quantile(reps, [alpha / 2, 1 - alpha / 2])]
    return EffectEstimate(
        outcome=outcome,
        measure="RMST_diff",
        method=method,
        estimate=diff,
        ci_low=diff - z * se,
        ci_high=diff + z * se,
        p_value=_wald_p(diff, se),
        se=se,
        details=details,
        **common,
    )


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
    diff = survival_at(
        df, duration=duration, event=event, treatment=treatment, time=time, weights=weights,
        cluster=cluster, alpha=alpha, outcome=outcome, method=method, label=label,
    ).difference  # fmt: skip
    per_s = diff.details.get("per_group", {})
    if math.isfinite(diff.estimate) and all(v.get("survival") == 1.0 for v in per_s.values()):
        return _nan_estimate(
            outcome, diff.measure, method,
            f"not estimable: no event by time = {time:g} in either arm (both risks are 0, "
            "without sampling variance)",
            details={"time": float(time), "per_group": per_s}, n_treated=diff.n_treated,
            n_control=diff.n_control, n_events=diff.n_events,
        )  # fmt: skip
    details = {**diff.details, "scale": "cumulative risk"}
    for g, v in per_s.items():
        if v.get("survival") == 1.0:
            _add_note(
                details,
                f"no event by time = {time:g} in the {g} arm: its risk is 0 without variance, "
                "so the interval reflects the other arm's uncertainty only and may be too narrow",
            )
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


# ----------------------------------------------------------------------------- competing risks


def _aj_parts(time: np.ndarray, event_type: np.ndarray, w: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted Aalen–Johansen CIFs of causes 1 and 2 and the running sums of their influence."""
    times, index = np.unique(time, return_inverse=True)
    m = len(times)
    total = np.bincount(index, weights=w, minlength=m)
    d1 = np.bincount(index, weights=w * (event_type == 1), minlength=m)
    d2 = np.bincount(index, weights=w * (event_type == 2), minlength=m)
    d = d1 + d2
    at_risk = np.cumsum(total[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(at_risk > 0, d / at_risk, 0.0)
        h1 = np.where(at_risk > 0, d1 / at_risk, 0.0)
        h2 = np.where(at_risk > 0, d2 / at_risk, 0.0)
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
    """
    parts = _aj_parts(time, event_type, w)
    m = len(parts["times"])
    if eval_index is None:
        eval_index = np.arange(m)
    n = len(time)
    var = np.empty(len(eval_index))
    chunk = max(1, _CHUNK_CELLS // max(n, 1))
    for start in range(0, len(eval_index), chunk):
        ks = eval_index[start : start + chunk]
        infl = _aj_influence(parts, ks)
        var[start : start + len(ks)] = cluster_variance(
            w[:, None] * infl, codes, small_sample=small_sample
        )[0]
    return {
        "times": parts["times"],
        "at_risk": parts["at_risk"],
        "d1": parts["d1"],
        "d2": parts["d2"],
        "cif1": parts["cif1"],
        "cif2": parts["cif2"],
        "se1": np.sqrt(var),
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
    :class:`analysis.sandwich.FewClustersWarning`, when a group has fewer than 2. The SE costs
    O(rows x evaluation times), in chunks; pass ``times`` for large data when only a
    few time points are needed (50,000 rows and 1,500 distinct days take a few seconds).

    References
    ----------
    Aalen OO, Johansen S (1978). Scand J Stat 5:141-150.
    Gray RJ (1988). A class of K-sample tests for comparing the cumulative incidence of a
    competing risk. Ann Stat 16:1141-1154.
    Putter H, Fiocco M, Geskus RB (2007). Tutorial in biostatistics: competing risks and
    multi-state models. Stat Med 26:2389-2430.
    """
    z = _z(alpha)
    t = _durations(df, duration)
    et = _column(df, event_type, "event_type")
    if not np.isin(et, (0.0, 1.0, 2.0)).all():
        raise ValueError(f"event_type column {event_type!r} must hold only 0, 1 and 2")
    et = et.astype(int)
    w = _weights_array(df, weights)
    codes_all, _ = _cluster_codes(df, cluster)
    robust = weights is not None or cluster is not None
    if group not in df.columns:
        raise KeyError(f"group column {group!r} is not in the data")
    g = df[group].to_numpy()
    out = []
    for level in sorted(pd.unique(g)):
        sel = g == level
        codes = pd.factorize(codes_all[sel])[0].astype(np.intp)
        if robust:
            _curve_cluster_check(codes, cluster, level)
        uniq = np.unique(t[sel])
        if times is None:
            eval_index = None
        else:
            eval_index = _step_index(uniq, np.asarray(times, dtype=float))
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
        lo, hi = _loglog_ci(part["cumulative_incidence"].to_numpy(), part["se"].to_numpy(), z)
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
    z = _z(alpha)
    t = _durations(df, duration)
    et = _column(df, event_type, "event_type")
    if not np.isin(et, (0.0, 1.0, 2.0)).all():
        raise ValueError(f"event_type column {event_type!r} must hold only 0, 1 and 2")
    et = et.astype(int)
    a = _binary(df, treatment, "treatment")
    w = _weights_array(df, weights)
    codes, n_clusters = _cluster_codes(df, cluster)
    arm = _TwoArm(
        time=t, event=(et > 0).astype(int), treat=a, w=w, codes=codes, n_clusters=n_clusters,
        n_treated=int(a.sum()), n_control=int(len(a) - a.sum()), n_events=int((et == 1).sum()),
        weighted=weights is not None, clustered=cluster is not None,
    )  # fmt: skip
    if label is None:
        label = "12m" if time == DAYS_PER_YEAR else f"{time:g}d"
    measure = f"RD_{label}"
    common = {"n_treated": arm.n_treated, "n_control": arm.n_control, "n_events": arm.n_events}
    events_by_group = {
        "HAT": int(((et == 1) & (a == 1)).sum()),
        "OST": int(((et == 1) & (a == 0)).sum()),
    }
    if arm.n_treated == 0 or arm.n_control == 0:
        return _nan_estimate(
            outcome, measure, method, "not estimable: one treatment group is empty", **common
        )
    beyond, longest = _beyond_followup(arm, time, "time")
    if beyond is not None:
        info = {
            "time": float(time),
            "per_group": {g: {"max_followup": v} for g, v in longest.items()},
        }
        note = beyond.replace("the Kaplan-Meier curve is", "the cumulative incidence is")
        return _nan_estimate(outcome, measure, method, note, details=info, **common)
    robust = arm.weighted or arm.clustered
    problem = _robust_problem(arm) if robust else None
    if problem is not None and problem.startswith("not estimable"):
        return _nan_estimate(outcome, measure, method, problem, **common)
    cif, cif2, se_g, contrib = {}, {}, {}, {}
    for g in (0, 1):
        sel = arm.treat == g
        parts = _aj_parts(t[sel], et[sel], w[sel])
        k = int(_step_index(parts["times"], time))
        infl = np.zeros(len(t))
        if k < 0:  # before the first time: CIF 0, no influence
            cif[g], cif2[g] = 0.0, 0.0
        else:
            cif[g], cif2[g] = float(parts["cif1"][k]), float(parts["cif2"][k])
            infl[sel] = w[sel] * _aj_influence(parts, np.array([k]))[:, 0]
        contrib[g] = infl
        se_g[g] = float(np.sqrt(cluster_variance(infl[sel], codes[sel], small_sample=robust)[0]))
    if cif[0] == 0.0 and cif[1] == 0.0:
        return _nan_estimate(
            outcome, measure, method,
            f"not estimable: no event of the cause by time = {time:g} in either arm (both "
            "cumulative incidences are 0, without sampling variance)",
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
                "max_followup": longest[label_],
            }
            for g, label_ in ((1, "HAT"), (0, "OST"))
        },
    }
    if problem is not None:
        _add_note(details, problem)
    for g, label_ in ((1, "HAT"), (0, "OST")):
        if cif[g] == 0.0:
            _add_note(
                details,
                f"no event of the cause by time = {time:g} in the {label_} arm: its "
                "cumulative incidence is 0 without variance, so the interval reflects the "
                "other arm's uncertainty only and may be too narrow",
            )
    return EffectEstimate(
        outcome=outcome,
        measure=measure,
        method=method,
        estimate=diff,
        ci_low=diff - z * se,
        ci_high=diff + z * se,
        p_value=_wald_p(diff, se),
        se=se,
        details=details,
        **common,
    )


# ----------------------------------------------------------------------------- log-rank


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

    t = _durations(df, duration)
    e = _binary(df, event, "event")
    a = _binary(df, treatment, "treatment")
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
    t = _durations(df, duration)
    e = _binary(df, event, "event")
    a = _binary(df, treatment, "treatment")
    w = _weights_array(df, weights)
    codes, _ = _cluster_codes(df, cluster)
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
