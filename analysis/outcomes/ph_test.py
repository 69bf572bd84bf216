"""Test of proportional hazards of a fitted Cox model: R's ``cox.zph``, model-based or robust.

:func:`cox_zph` gives, for each term and globally, the score test of adding ``x g(t)`` to a
model fitted by :func:`analysis.outcomes.coxph.fit_cox` (Grambsch & Therneau 1994), with R's
model-based information or the sandwich variance of the same score (Lin & Wei 1989).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import linalg, stats

from analysis.outcomes._coxph_core import (
    _efron_means,
    _Eval,
    _evaluate,
    _Layout,
    _layout,
    _weighted_information,
    _weighted_score_residuals,
)
from analysis.outcomes._coxph_solve import _as_codes, _inverse
from analysis.outcomes.coxph import CoxResult

__all__ = ["PHTest", "PHTransform", "cox_zph", "cox_zph_tests"]

PHTransform = Literal["km", "rank", "identity", "log"]


@dataclass(frozen=True, kw_only=True, eq=False)
class PHTest:
    """Score tests of proportional hazards of a fitted Cox model (R's ``cox.zph``).

    Attributes
    ----------
    table : DataFrame
        Indexed by term, then ``"GLOBAL"``; columns ``chisq``, ``df``, ``p``, as R's
        ``cox.zph(fit)$table``.
    transform : str
        Time transform ``g`` (the name, or ``"user"`` for a callable).
    variance : str
        ``"model"`` (R's ``cox.zph``) or ``"robust"`` (sandwich; see :func:`cox_zph`).
    n_clusters : int or None
        Clusters of the robust variance; ``None`` for the model-based one or when each
        observation is its own cluster.
    """

    table: pd.DataFrame
    transform: str
    variance: str
    n_clusters: int | None


def _time_transform(
    transform: PHTransform | Any,
    duration: np.ndarray,
    event: np.ndarray,
    order: np.ndarray | None = None,
) -> tuple[str, np.ndarray]:
    """R's ``cox.zph`` time transforms, one value per observation (censored rows too).

    ``order``, if given, sorts ``duration`` (the fit's layout without strata): the distinct
    times are then read off it instead of sorted again.
    """
    if callable(transform):
        return "user", np.asarray(transform(duration.copy()), dtype=np.float64)
    if transform == "identity":
        return transform, duration.copy()
    if transform == "rank":
        return transform, stats.rankdata(duration)  # ties averaged, as R's rank()
    if transform == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            return transform, np.log(duration)
    if transform == "km":
        # 1 - S(t-) of the unweighted Kaplan-Meier over all rows, ignoring case weights and
        # strata: R's survfitKM(factor(rep(1, n)), y) and findInterval(left.open = TRUE).
        times, index = _distinct(duration, order)
        at_risk = np.cumsum(np.bincount(index, minlength=times.size)[::-1])[::-1]
        deaths = np.bincount(index, weights=event.astype(np.float64), minlength=times.size)
        surv = np.cumprod(1.0 - deaths / at_risk)
        return transform, 1.0 - np.r_[1.0, surv[:-1]][index]
    raise ValueError(
        f"transform must be 'km', 'rank', 'identity', 'log' or a function, got {transform!r}"
    )


def _distinct(values: np.ndarray, order: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, in one pass when ``order`` sorts ``values``."""
    if order is None:
        return np.unique(values, return_inverse=True)
    ordered = values[order]
    new = np.empty(ordered.size, dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    index = np.empty(ordered.size, dtype=np.intp)
    index[order] = np.cumsum(new) - 1
    return ordered[new], index


def cox_zph(
    fit: CoxResult,
    X: Any,
    duration: Any,
    event: Any,
    *,
    weights: Any = None,
    strata: Any = None,
    cluster: Any = None,
    transform: PHTransform | Any = "km",
    terms: dict[str, Sequence[int]] | None = None,
    variance: Literal["model", "robust"] = "model",
) -> PHTest:
    """Test the proportional-hazards assumption of a fitted Cox model, as R's ``cox.zph``.

    For each term, the score test of adding ``x g(t)`` to the model (``g`` a transform of
    time), at the fitted coefficients and a zero coefficient for ``x g(t)``; and the
    global test of adding all of them (Grambsch & Therneau 1994). This is the test of R's
    ``survival::cox.zph`` from version 3.0 on: the score is the case-weighted sum of the
    Schoenfeld residuals times ``g`` at the event times, centred by the mean of ``g`` over
    the events, and its variance comes from the full ``2p x 2p`` information matrix of the
    model with the ``x g(t)`` terms (Efron's or Breslow's ties as in the fit), not from the
    approximation of earlier versions that scaled the residuals by the inverse information.

    Parameters
    ----------
    fit : CoxResult
        The fitted model (from :func:`fit_cox` on the same data).
    X, duration, event, weights, strata : array_like
        The data of the fit, as passed to :func:`fit_cox`.
    cluster : array_like, optional
        Cluster labels of the robust variance (``variance="robust"`` only).
    transform : {"km", "rank", "identity", "log"} or callable, default "km"
        ``g``: ``"km"`` is ``1 - S(t-)``, the left-continuous *unweighted* Kaplan–Meier
        estimate over all rows (R computes it without the case weights and across strata,
        and so does this function); ``"rank"`` the rank of the time among all rows (ties
        averaged); ``"identity"`` the time; ``"log"`` its logarithm. A callable receives
        the array of times.
    terms : dict of str to sequence of int, optional
        Columns of ``X`` that form each term (a term of several columns gets one test with
        as many degrees of freedom, as R's ``terms = TRUE``); default one term per column,
        named as in ``fit.names``.
    variance : {"model", "robust"}, default "model"
        ``"model"``: the model-based information, treating case weights as frequencies,
        exactly as R's ``cox.zph`` (which ignores a fit's robust variance and ``cluster()``).
        ``"robust"``: the sandwich variance of the score, for sampling weights (matching,
        inverse probability weights) and clustered data: the score residuals of the
        ``x g(t)`` terms, corrected for the estimation of the coefficients
        (``U_g - I_gb I_bb^{-1} U_b``), summed within ``cluster`` (or per observation), as
        the robust score tests of Lin & Wei (1989).

    Returns
    -------
    PHTest

    Raises
    ------
    ValueError
        On data that do not match the fit, a transform that is not finite at an event
        time, or a test whose variance is singular (for example, all events at one time).

    Notes
    -----
    The information of the augmented model is assembled from the same risk-set sums as the
    fit's: the blocks for ``(beta, gamma)`` and ``(gamma, gamma)`` are the fit's information
    with each event time's term multiplied by ``g(t)`` and ``g(t)^2``. The score test of a
    term's ``gamma_j`` given all ``beta`` is ``U_j^2 / V_jj`` with ``V`` the Schur complement
    ``I_gg - I_gb I_bb^{-1} I_bg`` (equal to R's ``solve(imat[kk, kk], u)``).

    With case weights, R's test (``variance="model"``) is a valid score test for frequency
    weights only; with matching weights below one it is conservative, and with clusters it
    ignores the within-cluster correlation. The robust variance is then the calibrated one.

    References
    ----------
    .. [1] Grambsch, P. M., & Therneau, T. M. (1994). Proportional hazards tests and
       diagnostics based on weighted residuals. *Biometrika*, 81(3), 515–526.
    .. [2] Therneau, T. M., & Grambsch, P. M. (2000). *Modeling Survival Data: Extending the
       Cox Model*. Springer, chapter 6.
    .. [3] Lin, D. Y., & Wei, L. J. (1989). The robust inference for the Cox proportional
       hazards model. *Journal of the American Statistical Association*, 84(408), 1074–1078.
    """
    return cox_zph_tests(
        fit, X, duration, event, weights=weights, strata=strata, cluster=cluster,
        transform=transform, terms=terms, variances=(variance,),
    )[variance]  # fmt: skip


def cox_zph_tests(
    fit: CoxResult,
    X: Any,
    duration: Any,
    event: Any,
    *,
    weights: Any = None,
    strata: Any = None,
    cluster: Any = None,
    transform: PHTransform | Any = "km",
    terms: dict[str, Sequence[int]] | None = None,
    variances: Sequence[Literal["model", "robust"]] = ("model", "robust"),
) -> dict[str, PHTest]:
    """:func:`cox_zph` with several variances, from one sort of the data and one pass over it.

    Parameters
    ----------
    fit, X, duration, event, weights, strata, cluster, transform, terms
        As :func:`cox_zph`.
    variances : sequence of {"model", "robust"}, default ("model", "robust")
        The variances to test with.

    Returns
    -------
    dict of str to PHTest
        One test per variance, each equal to :func:`cox_zph` with that ``variance``.
    """
    _check_variances(variances)
    X, duration, event_b, w = _zph_data(fit, X, duration, event, weights)
    st_code = None if strata is None else _as_codes(strata, X.shape[0], "strata")
    lay, order = _layout(X, duration, event_b, w, st_code, fit.ties)
    cur = _evaluate(lay, np.asarray(fit.params, dtype=np.float64), np.empty_like(lay.XT))
    sort = order if st_code is None else None  # sorts the times when there are no strata
    g = _event_transform(transform, duration, event_b, sort, order, lay)
    return _tests(
        lay,
        cur,
        order,
        g,
        cluster=cluster,
        terms=_terms(fit) if terms is None else terms,
        variances=variances,
    )


def _cox_zph_tests_of_fit(
    fit: CoxResult,
    engine: tuple[_Layout, np.ndarray, _Eval],
    duration: np.ndarray,
    event: np.ndarray,
    *,
    cluster: Any = None,
    transform: PHTransform | Any = "km",
    terms: dict[str, Sequence[int]] | None = None,
    variances: Sequence[Literal["model", "robust"]] = ("model", "robust"),
) -> dict[str, PHTest]:
    """:func:`cox_zph_tests` from the fit's own sorted data and evaluation at the estimate.

    ``engine`` is what :func:`analysis.outcomes.coxph._fit_cox` returns beside the fit, of a
    fit without strata or delayed entry to ``duration`` and ``event`` (and the fit's
    covariates and weights): the tests are those of :func:`cox_zph_tests` on the same data,
    without sorting and evaluating them again.
    """
    _check_variances(variances)
    lay, order, cur = engine
    if lay.entry is not None or lay.stratum_starts.size > 1 or lay.XT.shape[1] != fit.n:
        raise ValueError("the fit's own data are reused only without strata and delayed entry")
    event_b = np.asarray(event).astype(np.float64) == 1.0
    duration = np.asarray(duration, dtype=np.float64)
    g = _event_transform(transform, duration, event_b, order, order, lay)
    return _tests(
        lay,
        cur,
        order,
        g,
        cluster=cluster,
        terms=_terms(fit) if terms is None else terms,
        variances=variances,
    )


def _check_variances(variances: Sequence[str]) -> None:
    for variance in variances:
        if variance not in ("model", "robust"):
            raise ValueError(f"variance must be 'model' or 'robust', got {variance!r}")


def _terms(fit: CoxResult) -> dict[str, Sequence[int]]:
    """One term per column, named as in the fit."""
    return {name: [j] for j, name in enumerate(fit.names)}


def _event_transform(
    transform: PHTransform | Any,
    duration: np.ndarray,
    event_b: np.ndarray,
    sort: np.ndarray | None,
    order: np.ndarray,
    lay: _Layout,
) -> tuple[str, np.ndarray]:
    """The name of the transform and its centred value ``g`` at each tied-event set."""
    tname, ttimes = _time_transform(transform, duration, event_b, sort)
    if ttimes.shape != duration.shape or not np.isfinite(ttimes[event_b]).all():
        raise ValueError(f"time transform {tname!r} is not finite at every event time")
    gtime = ttimes - ttimes[event_b].mean()
    return tname, gtime[order[lay.ev_rows[lay.eg_starts]]]  # one value per tied-event set


def _tests(
    lay: _Layout,
    cur: _Eval,
    order: np.ndarray,
    transformed: tuple[str, np.ndarray],
    *,
    cluster: Any,
    terms: dict[str, Sequence[int]],
    variances: Sequence[str],
) -> dict[str, PHTest]:
    """The score of the ``x g(t)`` terms, its information blocks and the test per variance."""
    tname, g = transformed
    p, n = lay.XT.shape
    buf = np.empty_like(lay.XT)
    ev = lay.ev_rows
    schoenfeld = lay.XT[:, ev] - _efron_means(lay, cur)[:, lay.eg_of_ev]
    u = schoenfeld @ (lay.w[ev] * g[lay.eg_of_ev])
    i_bg = _weighted_information(lay, cur, g, buf)
    i_bb_inv_bg = _inverse(cur.info) @ i_bg
    i_gg = _weighted_information(lay, cur, g * g, buf)
    out = {}
    for variance in variances:
        n_clusters = None
        if variance == "model":
            v = i_gg - i_bg.T @ i_bb_inv_bg
        else:
            resid_b = _weighted_score_residuals(lay, cur, out=np.empty_like(lay.XT))
            resid_g = _weighted_score_residuals(lay, cur, out=buf, set_weight=g)
            # influence of each observation on U_g - I_gb I_bb^{-1} U_b
            infl = resid_g - i_bb_inv_bg.T @ resid_b
            if cluster is not None:
                codes = _as_codes(cluster, n, "cluster")[order]
                n_clusters = int(codes.max()) + 1
                infl = np.stack(
                    [np.bincount(codes, weights=row, minlength=n_clusters) for row in infl]
                )
            v = infl @ infl.T
        table = _table(0.5 * (v + v.T), u, i_gg, terms, p)
        out[variance] = PHTest(
            table=table, transform=tname, variance=variance, n_clusters=n_clusters
        )
    return out


def _zph_data(
    fit: CoxResult, X: Any, duration: Any, event: Any, weights: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The checked data of a test: they must match the fit's shape."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    n, p = X.shape
    if n != fit.n or p != fit.params.size:
        raise ValueError(
            f"data of shape {X.shape} do not match the fit ({fit.n} x {fit.params.size})"
        )
    duration = np.asarray(duration, dtype=np.float64)
    event_b = np.asarray(event).astype(np.float64) == 1.0
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if duration.shape != (n,) or event_b.shape != (n,) or w.shape != (n,):
        raise ValueError(f"duration, event and weights must have shape ({n},)")
    if not (np.isfinite(X).all() and np.isfinite(duration).all() and (w > 0).all()):
        raise ValueError("covariates, durations and weights must be finite (weights > 0)")
    return X, duration, event_b, w


def _table(
    v: np.ndarray, u: np.ndarray, i_gg: np.ndarray, terms: dict[str, Sequence[int]], p: int
) -> pd.DataFrame:
    """Chi-square of each term and the global test from the score ``u`` and its variance ``v``."""
    # g(t) (nearly) constant over the events, or collinear with the fitted terms: no test
    degenerate = np.diag(v) <= 1e-10 * np.abs(np.diag(i_gg))
    names, chisq, dfs = [], [], []
    for name, cols in [*terms.items(), ("GLOBAL", range(p))]:
        jj = np.asarray(list(cols), dtype=np.intp)
        try:
            if degenerate[jj].any():
                raise linalg.LinAlgError("degenerate")
            factor = linalg.cho_factor(v[np.ix_(jj, jj)])
        except linalg.LinAlgError as exc:
            raise ValueError(
                f"the variance of the proportional-hazards score for {name!r} is singular "
                "(for example, all events at one time)"
            ) from exc
        names.append(name)
        chisq.append(float(u[jj] @ linalg.cho_solve(factor, u[jj])))
        dfs.append(jj.size)
    return pd.DataFrame(
        {"chisq": chisq, "df": dfs, "p": stats.chi2.sf(chisq, dfs)},
        index=pd.Index(names, name="term"),
    )
