"""The Cox hazard-ratio estimator: a thin layer over the engine that returns an
:class:`analysis.results.EffectEstimate`.

:func:`cox_hazard_ratio` checks the columns (:mod:`analysis._checks`), fits the model with
:func:`analysis.outcomes.coxph.fit_cox` (Efron ties, case weights, the cluster-robust sandwich
of :mod:`analysis.sandwich`) and tests proportional hazards with
:func:`analysis.outcomes.ph_test.cox_zph_tests`; it reports why an HR is not estimable (an empty
group, no events in a group, monotone likelihood, fewer than 2 clusters).

References
----------
Cox DR (1972). Regression models and life-tables. JRSS B 34:187-220.
Lin DY, Wei LJ (1989). The robust inference for the Cox proportional hazards model.
JASA 84:1074-1078.
Grambsch PM, Therneau TM (1994). Proportional hazards tests and diagnostics based on
weighted residuals. Biometrika 81:515-526.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis._checks import binary, cluster_codes, durations, numeric, weights_array, z_value
from analysis.outcomes._common import nan_estimate
from analysis.outcomes.coxph import CoxResult, _fit_cox
from analysis.outcomes.ph_test import _cox_zph_tests_of_fit
from analysis.results import EffectEstimate
from analysis.sandwich import cluster_check, count_clusters

__all__ = ["cox_hazard_ratio"]


def _ph_test(
    fit: CoxResult,
    engine: Any,
    time: np.ndarray,
    event: np.ndarray,
    *,
    cluster: np.ndarray | None,
    terms: list[str],
    transform: str,
    robust: bool,
) -> dict[str, Any]:
    """Proportional-hazards tests of a fitted Cox model for ``details["ph_test"]``.

    The test of the first term (treatment) is reported with the variance of the hazard
    ratio (robust when the fit's is); every term, the global test and R's ``cox.zph``
    (model-based) values are kept beside it. ``engine``: the fit's sorted data and
    evaluation at the estimate (:func:`analysis.outcomes.coxph._fit_cox`), reused.
    """
    variance = "robust" if robust else "model"
    out: dict[str, Any] = {"df": 1, "transform": transform, "term": terms[0], "variance": variance}

    try:
        tests = _cox_zph_tests_of_fit(
            fit, engine, time, event, cluster=cluster, transform=transform,
            terms={name: [j] for j, name in enumerate(terms)},
            variances=("model", "robust") if robust else ("model",),
        )  # fmt: skip
        tables = {var: test.table for var, test in tests.items()}
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
    ph_test: bool = True,
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
    ph_test : bool, default True
        Test proportional hazards (``details["ph_test"]``); ``False`` leaves the test out
        (``details`` has no ``ph_test``), e.g. in a simulation that reports estimates only.

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

    The proportional-hazards test (:func:`analysis.outcomes.ph_test.cox_zph`) is the score test of
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
    # long: the docstring documents every detail key; the body is short
    z_value(alpha)  # validates alpha
    if ph_transform not in ("km", "rank", "identity", "log"):
        raise ValueError(
            f"ph_transform must be 'km', 'rank', 'identity' or 'log', got {ph_transform!r}"
        )
    data = _cox_data(df, duration, event, treatment, covariates, weights, cluster)
    label = {"outcome": outcome, "method": method, **data.common}
    note = _not_estimable_before_fit(data)
    if note is not None:
        return nan_estimate(measure="HR", note=note, details=data.base_details, **label)
    robust = weights is not None or cluster is not None
    fit, engine, fit_warnings = _fit(data, weighted=weights is not None, robust=robust,
                                     small_sample=small_sample)  # fmt: skip
    after = {**data.base_details, "warnings": fit_warnings}
    if isinstance(fit, str):
        return nan_estimate(measure="HR", note=fit, details=data.base_details, **label)
    note = _not_estimable_after_fit(fit, treatment)
    if note is not None:
        return nan_estimate(measure="HR", note=note, details=after, **label)
    notes = [
        f"the coefficient of {name} is infinite ({reason}); the HR is adjusted for its limit"
        for name, reason in fit.diverging.items()
    ]
    if robust:
        problem = cluster_check(
            count_clusters(data.codes), what=f"values of {cluster}" if cluster else "persons"
        )
        if problem is not None and problem.startswith("not estimable"):
            return nan_estimate(measure="HR", note=f"HR {problem}", details=after, **label)
        notes += [problem] if problem else []
    cov, se_factor = _hr_covariance(fit, robust, notes)
    se_all = np.sqrt(np.diag(cov))
    b, se = float(fit.params[0]), float(se_all[0])
    tests = _ph_test(
        fit, engine, data.t, data.e,
        cluster=data.codes if cluster is not None else None, terms=data.terms,
        transform=ph_transform, robust=robust,
    ) if ph_test else None  # fmt: skip
    details = {
        **data.base_details,
        "se_log": se,
        "se_log_model": float(np.sqrt(np.asarray(fit.cov, dtype=float)[0, 0])),
        "robust": robust,
        "small_sample": (fit.small_sample if robust else None),
        "se_log_factor": se_factor,
        "max_leverage": fit.max_leverage,
        "n_clusters": data.n_clusters if cluster is not None else None,
        "ties": "efron",
        "coefficients": {
            term: {"coef": float(fit.params[j]), "se": float(se_all[j])}
            for j, term in enumerate(data.terms)
        },
        **({"ph_test": tests} if tests is not None else {}),
        "warnings": fit_warnings,
    }
    if notes:
        details["note"] = "; ".join(notes)
    return EffectEstimate.from_log(
        log_estimate=b, se=se, alpha=alpha, measure="HR", details=details, **label
    )


@dataclass(frozen=True, eq=False)
class _CoxData:
    """The checked columns of a hazard-ratio fit (zero-weight rows dropped) and its counts."""

    t: np.ndarray
    e: np.ndarray
    a: np.ndarray
    w: np.ndarray
    codes: np.ndarray
    x: np.ndarray  # treatment first, then the covariates
    terms: list[str]
    n_clusters: int
    common: dict[str, int]  # n_treated, n_control, n_events
    events_by_group: dict[str, int]
    base_details: dict[str, Any]


def _cox_data(
    df: pd.DataFrame,
    duration: str,
    event: str,
    treatment: str,
    covariates: Sequence[str],
    weights: str | None,
    cluster: str | None,
) -> _CoxData:
    covariates = list(covariates)
    if treatment in covariates:
        raise ValueError(f"treatment column {treatment!r} is also listed as a covariate")
    t = durations(df, duration)
    e = binary(df, event, "event")
    a = binary(df, treatment, "treatment")
    w = weights_array(df, weights)
    codes, _ = cluster_codes(df, cluster)
    terms = [treatment, *covariates]
    x = np.column_stack([a.astype(float)] + [numeric(df, c, "covariate") for c in covariates])
    keep = w > 0
    n_zero_weight = int((~keep).sum())
    if n_zero_weight:
        t, e, a, w, codes, x = t[keep], e[keep], a[keep], w[keep], codes[keep], x[keep]
        codes = pd.factorize(codes)[0].astype(np.intp)
    n_clusters = int(codes.max()) + 1 if len(codes) else 0
    n_treated = int(a.sum())
    events_by_group = {"treated": int(e[a == 1].sum()), "control": int(e[a == 0].sum())}
    common = {
        "n_treated": n_treated,
        "n_control": int(len(a) - n_treated),
        "n_events": int(e.sum()),
    }
    base_details: dict[str, Any] = {"events_by_group": events_by_group}
    if n_zero_weight:
        base_details["n_dropped_zero_weight"] = n_zero_weight
    return _CoxData(t, e, a, w, codes, x, terms, n_clusters, common, events_by_group, base_details)


def _not_estimable_before_fit(data: _CoxData) -> str | None:
    """Why the HR cannot be estimated from the counts alone (empty group, no events)."""
    if data.common["n_treated"] == 0 or data.common["n_control"] == 0:
        return "HR not estimable: one treatment group is empty"
    if data.common["n_events"] == 0:
        return "HR not estimable: no events"
    if min(data.events_by_group.values()) == 0:
        empty = "HAT" if data.events_by_group["treated"] == 0 else "OST"
        return (
            f"HR not estimable: no events in the {empty} group (the partial likelihood "
            "has no maximum; the HR tends to 0 or infinity)"
        )
    return None


def _fit(
    data: _CoxData, *, weighted: bool, robust: bool, small_sample: str
) -> tuple[CoxResult | str, Any, list[str]]:
    """The Cox fit (or why it failed), its sorted data (for the PH test) and its warnings."""
    engine = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit: CoxResult | str
            fit, engine = _fit_cox(
                pd.DataFrame(data.x, columns=data.terms),
                data.t,
                data.e,
                entry=None,
                weights=data.w if weighted else None,
                cluster=data.codes if robust else None,
                strata=None,
                ties="efron",
                tol=1e-9,
                max_iter=50,
                small_sample=small_sample if robust else "factor",
                diagnostics=False,  # no per-row residuals or score tests: not reported
            )
        except (ValueError, np.linalg.LinAlgError) as err:
            fit = f"Cox model could not be fitted: {err}"
    return fit, engine, sorted({str(wm.message).strip().splitlines()[0][:200] for wm in caught})


def _not_estimable_after_fit(fit: CoxResult, treatment: str) -> str | None:
    """Why a fitted model gives no HR: no convergence, or an infinite treatment coefficient."""
    if treatment not in fit.diverging and not fit.converged:
        reasons = "".join(f"; {name}: {why}" for name, why in fit.diverging.items())
        return f"Cox model did not converge{reasons}"
    if treatment in fit.diverging:
        note = f"HR not estimable: {fit.diverging[treatment]}"
        if note.startswith("HR not estimable: monotone likelihood: at every event time"):
            first, second = ("HAT", "OST") if fit.params[0] > 0 else ("OST", "HAT")
            note += (
                f" (every {first} person's follow-up ends before the first {second} event; "
                f"the HR tends to {'infinity' if first == 'HAT' else '0'})"
            )
        return note
    return None


def _hr_covariance(
    fit: CoxResult, robust: bool, notes: list[str]
) -> tuple[np.ndarray, float | None]:
    """The covariance behind the HR's interval and the ``G / (G - 1)`` SE beside a corrected one.

    Robust (sandwich) with weights or a cluster, else model-based; a bias-corrected sandwich
    that could not be computed falls back to the ``G / (G - 1)`` one, with a note.
    """
    cov = np.asarray(fit.robust_cov if robust else fit.cov, dtype=float)
    if not (robust and fit.small_sample != "factor"):
        return cov, None
    factor_cov = np.asarray(fit.robust_cov_factor, dtype=float)
    se_factor = float(np.sqrt(factor_cov[0, 0]))
    if not np.isfinite(cov).all():
        notes.append(
            f"the bias-corrected ({fit.small_sample}) variance is not computed: one "
            f"cluster holds most of the information (leverage {fit.max_leverage:.2f}); "
            "the G/(G-1) sandwich is used and the interval may be too narrow"
        )
        cov = factor_cov
    return cov, se_factor
