"""Fast vectorised Cox proportional hazards regression for registry-sized data.

The fitter sorts the data once, by stratum, time and event status, and then evaluates the
partial log-likelihood, score and information with whole-array operations: sums over each
block of tied rows (``np.add.reduceat``), reverse cumulative sums over those blocks for the
risk sets, and one weighted Gram matrix ``X' diag(v) X`` per Newton step. Python loops run only
over Newton iterations and covariates, never over rows, event times or tie multiplicities, so
heavy ties (registry times at day resolution) cost nothing extra.

It reproduces R's ``survival::coxph`` for right-censored data: Efron or Breslow ties, case
weights (``weights=``), strata (``strata()``), and the robust sandwich variance built from the
weighted dfbeta residuals, summed within clusters when ``cluster=`` is given.

Notes
-----
For the Efron approximation, the :math:`d` tied events at a time :math:`t` are given ranks
:math:`k = 0, \\dots, d-1`, and event :math:`k` contributes one term with denominator
:math:`S_0(t) - (k/d) E_0(t)`, where :math:`E_0` sums the risk scores of the tied events, and
weight :math:`\\bar w(t)`, the mean case weight of those events (as in R). Each event row
carries its own term, so the loop over :math:`k` that usual implementations run is vectorised
away. The second-moment part of the information,
:math:`\\sum_t \\sum_k h_{tk} \\{S_2(t) - (k/d) E_2(t)\\}` with :math:`h_{tk} = \\bar w/\\text{denom}`,
is rearranged as :math:`X^\\top \\operatorname{diag}(v) X` with
:math:`v_i = r_i \\{H(T_i) - \\delta_i H'(T_i)\\}`, a cumulative hazard at each row's own time,
so the :math:`p \\times p` risk-set sums :math:`S_2(t)` are never formed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import linalg, stats

from analysis.sandwich import (
    bias_corrected_covariance,
    cluster_covariance,
    cluster_totals,
    count_clusters,
)

__all__ = ["CoxResult", "PHTest", "cox_fit", "cox_zph", "fit_cox"]

Ties = Literal["efron", "breslow"]
SmallSample = Literal["factor", "mancl-derouen"]


@dataclass(frozen=True, kw_only=True, eq=False)
class CoxResult:
    """A fitted Cox proportional hazards model.

    Attributes
    ----------
    names : tuple of str
        Covariate names, in the order of ``params``.
    params : ndarray, shape (p,)
        Log hazard ratios.
    se : ndarray, shape (p,)
        Model-based standard errors, from the inverse information matrix.
    robust_se : ndarray, shape (p,)
        Robust (sandwich) standard errors: clustered when a cluster was given, otherwise per
        observation; R's ``coxph(..., cluster=)`` / ``coxph(..., robust=TRUE)`` times
        ``sqrt(G / (G - 1))`` (see :mod:`analysis.sandwich`). NaN with fewer than 2 clusters.
        With ``small_sample="mancl-derouen"``: the bias-corrected sandwich instead.
    cov, robust_cov : ndarray, shape (p, p)
        Model-based and robust covariance matrices of ``params``.
    loglik : float
        Log partial likelihood at ``params``.
    loglik_null : float
        Log partial likelihood at ``params = 0``.
    n : int
        Rows used.
    n_events : int
        Rows with an event (unweighted count, as R's ``nevent``).
    n_clusters : int or None
        Distinct clusters, or ``None`` when no cluster was given.
    n_iter : int
        Newton–Raphson iterations (including step-halving ones).
    converged : bool
        Whether the relative change in log-likelihood fell below ``tol`` (``False`` also when
        the information matrix became singular on the way: see ``diverging``; the
        covariances are then NaN).
    ties : str
        ``"efron"`` or ``"breslow"``.
    diverging : dict of str to str
        Coefficients whose partial likelihood has no finite maximum (monotone likelihood),
        each with the reason; their ``params`` are only where the iterations stopped.
    score_test : float
        Score test statistic of ``params = 0`` with the model-based information (R's
        ``summary(fit)$sctest``; chi-square with ``p`` degrees of freedom).
    robust_score_test : float
        Robust score test of ``params = 0``: the score at zero against the sandwich meat of
        the score residuals at zero, summed within cluster (R's ``summary(fit)$robscore``
        times ``(G - 1) / G``, the small-sample factor of :mod:`analysis.sandwich`).
    small_sample : str
        Small-sample correction of ``robust_cov``: ``"factor"`` (``G / (G - 1)``) or
        ``"mancl-derouen"`` (:func:`analysis.sandwich.bias_corrected_covariance`).
    max_leverage : float or None
        With ``"mancl-derouen"``: the largest leverage of a cluster (above
        :data:`analysis.sandwich.MAX_LEVERAGE` the robust covariance is NaN).
    robust_cov_factor : ndarray or None
        With ``"mancl-derouen"``: the robust covariance with the ``G / (G - 1)`` factor.
    """

    names: tuple[str, ...]
    params: np.ndarray
    se: np.ndarray
    robust_se: np.ndarray
    cov: np.ndarray
    robust_cov: np.ndarray
    loglik: float
    loglik_null: float
    n: int
    n_events: int
    n_clusters: int | None
    n_iter: int
    converged: bool
    ties: str
    diverging: dict[str, str]
    score_test: float
    robust_score_test: float
    small_sample: str = "factor"
    max_leverage: float | None = None
    robust_cov_factor: np.ndarray | None = None

    @property
    def hazard_ratios(self) -> np.ndarray:
        """``exp(params)``."""
        return np.exp(self.params)

    def summary(self, *, alpha: float = 0.05, robust: bool | None = None) -> pd.DataFrame:
        """Coefficient table, one row per covariate.

        Parameters
        ----------
        alpha : float, default 0.05
            Two-sided level of the confidence intervals.
        robust : bool, optional
            Base the z statistics and intervals on the robust standard errors. Defaults to
            ``True`` when a cluster was given, ``False`` otherwise.

        Returns
        -------
        DataFrame
            Indexed by covariate, with columns ``coef``, ``hazard_ratio``, ``se``,
            ``robust_se``, ``z``, ``p_value``, ``ci_low``, ``ci_high`` (the interval is for the
            hazard ratio).
        """
        if robust is None:
            robust = self.n_clusters is not None
        se = self.robust_se if robust else self.se
        z = self.params / se
        q = stats.norm.ppf(1.0 - alpha / 2.0)
        return pd.DataFrame(
            {
                "coef": self.params,
                "hazard_ratio": np.exp(self.params),
                "se": self.se,
                "robust_se": self.robust_se,
                "z": z,
                "p_value": 2.0 * stats.norm.sf(np.abs(z)),
                "ci_low": np.exp(self.params - q * se),
                "ci_high": np.exp(self.params + q * se),
            },
            index=pd.Index(self.names, name="covariate"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (arrays become lists)."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out


# ---------------------------------------------------------------------------------------------
# Segmented cumulative sums (along the last axis)


def _compensated_cumsum(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative sum of a vector and the running sum of its rounding errors.

    ``s + e`` is the cumulative sum to about twice working precision. The rounding error of
    each ``s[i] = fl(s[i-1] + x[i])`` is recovered exactly by Knuth's TwoSum, which is
    vectorised here because every ``s[i]`` is already known.
    """
    s = np.cumsum(values)
    prev = np.empty_like(s)
    prev[0] = 0.0
    prev[1:] = s[:-1]
    bb = s - prev
    err = (prev - (s - bb)) + (values - bb)
    return s, np.cumsum(err)


def _segment_cumsum(values: np.ndarray, seg_first: np.ndarray | None) -> np.ndarray:
    """Forward cumulative sum along the last axis, restarting at each contiguous segment.

    Parameters
    ----------
    values : ndarray, shape (m,) or (p, m)
    seg_first : ndarray of int, shape (m,), or None
        Position of the first element of each element's segment; ``None`` for one segment.

    Notes
    -----
    A restart subtracts the running total of the earlier segments, which would cost precision
    for small sums late in the array; the compensated cumulative sum keeps it. Rows of a 2-D
    input are done one at a time to keep temporaries small.
    """
    if seg_first is None:
        return np.cumsum(values, axis=-1)
    if values.ndim == 2:
        out = np.empty(values.shape)
        for j in range(values.shape[0]):
            out[j] = _segment_cumsum(values[j], seg_first)
        return out
    s, e = _compensated_cumsum(values)
    pad = np.zeros(s.size + 1)
    pad[1:] = s
    s -= pad[seg_first]
    pad[1:] = e
    e -= pad[seg_first]
    s += e
    return s


def _segment_revcumsum(values: np.ndarray, seg_last: np.ndarray | None) -> np.ndarray:
    """Sum from each element to the end of its segment, along the last axis."""
    if seg_last is None:
        return np.cumsum(values[..., ::-1], axis=-1)[..., ::-1]
    m = values.shape[-1]
    rev_first = (m - 1 - seg_last)[::-1]
    return _segment_cumsum(values[..., ::-1], rev_first)[..., ::-1]


# ---------------------------------------------------------------------------------------------
# Sorted problem structure
#
# Rows are sorted by (stratum, time, event), so that within each group of tied times (in a
# stratum) the censored rows come first and the events form one contiguous block. A
# "subgroup" is such a block: sums over subgroups give both the group sums (risk sets) and
# the sums over tied events (Efron) from one pass over the data. The design is stored
# transposed, (p, n), so that every pass runs over contiguous memory.


@dataclass(frozen=True, eq=False)
class _Layout:
    """Everything about the sorted data that does not depend on the coefficients."""

    XT: np.ndarray  # (p, n) sorted, centred covariates
    w: np.ndarray  # (n,) case weights
    w_event: np.ndarray  # (n,) case weight for events, 0 for censored rows
    stratum_starts: np.ndarray  # (n_strata,) first row of each stratum
    stratum_of_row: np.ndarray | None  # (n,); None for one stratum
    sub_starts: np.ndarray | None  # (n_sub,) first row of each subgroup; None if one per row
    sub_seg_last: np.ndarray | None  # (n_sub,) last subgroup of each subgroup's stratum
    n_groups: int  # G, the number of (stratum, time) groups
    grp_of_row: np.ndarray  # (n,)
    grp_seg_first: np.ndarray | None  # (G,) first group of each group's stratum
    ev_rows: np.ndarray  # (n_ev,) sorted row of each event
    ev_sub: np.ndarray  # (n_eg,) subgroup holding each tied-event set
    eg_first_sub: np.ndarray  # (n_eg,) first subgroup of the group of each tied-event set
    eg_grp: np.ndarray  # (n_eg,) group of each tied-event set
    eg_count: np.ndarray  # (n_eg,) events d in each tied set
    eg_starts: np.ndarray  # (n_eg,) first event (index into ev_rows) of each set
    eg_of_ev: np.ndarray  # (n_ev,) tied set of each event
    eg_single: bool  # no tied events: every tied set is one event
    frac: np.ndarray | None  # (n_ev,) Efron down-weight k/d; None for Breslow or no ties
    mean_wt: np.ndarray  # (n_ev,) mean case weight of the event's tied set
    score_const: np.ndarray  # (p,) sum over events of w x


def _layout(X, duration, event, weights, strata_code, ties: str) -> tuple[_Layout, np.ndarray]:
    n = X.shape[0]
    keys = (event, duration) if strata_code is None else (event, duration, strata_code)
    order = np.lexsort(keys)
    XT = X.T.take(order, axis=1)
    XT -= XT.mean(axis=1, keepdims=True)
    t = duration[order]
    ev = event[order]
    w = weights[order]

    new_str = np.zeros(n, dtype=bool)
    new_str[0] = True
    if strata_code is not None:
        s = strata_code[order]
        new_str[1:] = s[1:] != s[:-1]
    new_grp = new_str.copy()
    new_grp[1:] |= t[1:] != t[:-1]
    new_sub = new_grp.copy()
    new_sub[1:] |= ev[1:] != ev[:-1]

    stratum_starts = np.flatnonzero(new_str)
    stratum_of_row = np.cumsum(new_str) - 1
    grp_starts = np.flatnonzero(new_grp)
    grp_of_row = np.cumsum(new_grp) - 1
    sub_starts = np.flatnonzero(new_sub)
    grp_first_sub = np.flatnonzero(new_grp[sub_starts])
    if stratum_starts.size > 1:
        levels = np.arange(stratum_starts.size)
        grp_stratum = stratum_of_row[grp_starts]
        grp_seg_first = np.searchsorted(grp_stratum, levels, "left")[grp_stratum]
        sub_stratum = stratum_of_row[sub_starts]
        sub_seg_last = (np.searchsorted(sub_stratum, levels, "right") - 1)[sub_stratum]
    else:
        grp_seg_first = sub_seg_last = None

    ev_sub = np.flatnonzero(ev[sub_starts])
    sub_size = np.diff(np.append(sub_starts, n))
    eg_count = sub_size[ev_sub]
    eg_grp = grp_of_row[sub_starts[ev_sub]]
    ev_rows = np.flatnonzero(ev)
    n_eg = ev_sub.size
    eg_starts = np.concatenate([[0], np.cumsum(eg_count)[:-1]])
    eg_of_ev = np.repeat(np.arange(n_eg), eg_count)
    if ties == "efron" and eg_count.max() > 1:
        frac = (np.arange(ev_rows.size) - eg_starts[eg_of_ev]) / eg_count[eg_of_ev]
    else:
        frac = None
    w_event = np.where(ev, w, 0.0)
    mean_wt = (np.add.reduceat(w[ev_rows], eg_starts) / eg_count)[eg_of_ev]
    lay = _Layout(
        XT=XT,
        w=w,
        w_event=w_event,
        stratum_starts=stratum_starts,
        stratum_of_row=stratum_of_row if stratum_starts.size > 1 else None,
        sub_starts=None if sub_starts.size == n else sub_starts,
        sub_seg_last=sub_seg_last,
        n_groups=grp_starts.size,
        grp_of_row=grp_of_row,
        grp_seg_first=grp_seg_first,
        ev_rows=ev_rows,
        ev_sub=ev_sub,
        eg_first_sub=grp_first_sub[eg_grp],
        eg_grp=eg_grp,
        eg_count=eg_count,
        eg_starts=eg_starts,
        eg_of_ev=eg_of_ev,
        eg_single=bool(eg_count.max() == 1),
        frac=frac,
        mean_wt=mean_wt,
        score_const=XT @ w_event,
    )
    return lay, order


@dataclass(frozen=True, eq=False)
class _Eval:
    """Partial likelihood, its derivatives and the pieces the residuals reuse."""

    loglik: float
    score: np.ndarray  # (p,)
    info: np.ndarray  # (p, p)
    risk: np.ndarray  # (n,) exp(eta - stratum max), without case weights
    hcum: np.ndarray  # (n,) cumulative hazard at each row (Efron-reduced at its own death)
    s1e: np.ndarray  # (p, n_eg) risk-set sums of r x at each tied-event set
    e1: np.ndarray | None  # (p, n_eg) sums of r x over the tied events (Efron only)
    denom: np.ndarray  # (n_ev,) Efron denominators
    q: tuple[np.ndarray, np.ndarray, np.ndarray]  # sums over k of h/denom * (1, f, f^2)


def _sum_tied(values: np.ndarray, lay: _Layout) -> np.ndarray:
    """Sum a per-event vector over each set of tied events."""
    return values if lay.eg_single else np.add.reduceat(values, lay.eg_starts)


def _evaluate(lay: _Layout, beta: np.ndarray, buf: np.ndarray) -> _Eval:
    XT = lay.XT
    eta = beta @ XT
    # Shift by the stratum's maximum: the partial likelihood is invariant to it.
    if lay.stratum_starts.size > 1:
        eta -= np.maximum.reduceat(eta, lay.stratum_starts)[lay.stratum_of_row]
    else:
        eta -= eta.max()
    risk = np.exp(eta)
    r = risk * lay.w

    # One pass over the rows: sums of r and r x over every subgroup, then risk-set sums
    # (reverse cumulative sums within stratum) read at the first subgroup of each group.
    np.multiply(XT, r, out=buf)
    if lay.sub_starts is None:  # untied data: every row is its own subgroup
        sub0, sub1 = r, buf
    else:
        sub0 = np.add.reduceat(r, lay.sub_starts)
        sub1 = np.add.reduceat(buf, lay.sub_starts, axis=1)
    s0e = _segment_revcumsum(sub0, lay.sub_seg_last)[lay.eg_first_sub]
    s1e = np.empty((XT.shape[0], lay.eg_first_sub.size))
    for j in range(XT.shape[0]):  # one covariate at a time: temporaries of length n_sub
        s1e[j] = _segment_revcumsum(sub1[j], lay.sub_seg_last)[lay.eg_first_sub]

    # Per event (Efron term k of its tied set), scalars only.
    eg, frac, mw = lay.eg_of_ev, lay.frac, lay.mean_wt
    if frac is None:
        e1 = None
        denom = s0e[eg]
    else:
        e1 = sub1[:, lay.ev_sub]
        denom = s0e[eg] - frac * sub0[lay.ev_sub][eg]
    h = mw / denom
    hd = h / denom
    loglik = float(lay.w_event @ eta - mw @ np.log(denom))
    starts = lay.eg_starts
    c0 = _sum_tied(h, lay)
    q0 = _sum_tied(hd, lay)
    if frac is None:
        c1 = q1 = q2 = np.zeros_like(c0)
        score = lay.score_const - s1e @ c0
        outer = (s1e * q0) @ s1e.T
    else:
        c1 = np.add.reduceat(frac * h, starts)
        q1 = np.add.reduceat(frac * hd, starts)
        q2 = np.add.reduceat(frac * frac * hd, starts)
        score = lay.score_const - (s1e @ c0 - e1 @ c1)
        cross = (s1e * q1) @ e1.T
        outer = (s1e * q0) @ s1e.T - cross - cross.T + (e1 * q2) @ e1.T

    # Cumulative hazard at each row's time, within stratum; a tied death is down-weighted in
    # its own risk set (Efron). Then sum_t sum_k h {S2 - (k/d) E2} = X' diag(r hcum) X.
    cg = np.zeros(lay.n_groups)
    cg[lay.eg_grp] = c0
    hcum = _segment_cumsum(cg, lay.grp_seg_first)[lay.grp_of_row]
    if frac is not None:
        hcum[lay.ev_rows] -= c1[eg]
    np.multiply(XT, r * hcum, out=buf)
    info = buf @ XT.T - outer
    info = 0.5 * (info + info.T)
    return _Eval(
        loglik=loglik,
        score=score,
        info=info,
        risk=risk,
        hcum=hcum,
        s1e=s1e,
        e1=e1,
        denom=denom,
        q=(q0, q1, q2),
    )


def _efron_means(lay: _Layout, cur: _Eval) -> np.ndarray:
    """Covariate mean of each tied-event set, shape (p, n_eg), averaged over Efron's terms.

    An event's Schoenfeld residual is its (centred) covariate minus this mean.
    """
    inv = 1.0 / cur.denom
    u0 = _sum_tied(inv, lay)
    if lay.frac is None:
        return cur.s1e * (u0 / lay.eg_count)
    u1 = np.add.reduceat(lay.frac * inv, lay.eg_starts)
    return (cur.s1e * u0 - cur.e1 * u1) / lay.eg_count


def _cumulative_hazard(lay: _Layout, cur: _Eval, set_weight: np.ndarray) -> np.ndarray:
    """As ``cur.hcum``, with the hazard increment of each tied-event set times ``set_weight``."""
    h = (lay.mean_wt / cur.denom) * set_weight[lay.eg_of_ev]
    cg = np.zeros(lay.n_groups)
    cg[lay.eg_grp] = _sum_tied(h, lay)
    hcum = _segment_cumsum(cg, lay.grp_seg_first)[lay.grp_of_row]
    if lay.frac is not None:
        hcum[lay.ev_rows] -= np.add.reduceat(lay.frac * h, lay.eg_starts)[lay.eg_of_ev]
    return hcum


def _weighted_information(
    lay: _Layout, cur: _Eval, set_weight: np.ndarray, buf: np.ndarray
) -> np.ndarray:
    """Information matrix with the term of each tied-event set times ``set_weight``.

    ``sum_t set_weight(t) I(t)``, where ``I(t)`` is the contribution of event time ``t`` to
    ``cur.info`` (which is this with ``set_weight`` = 1), built the same way.
    """
    q0, q1, q2 = (q * set_weight for q in cur.q)
    s1e, e1 = cur.s1e, cur.e1
    outer = (s1e * q0) @ s1e.T
    if e1 is not None:
        cross = (s1e * q1) @ e1.T
        outer += (e1 * q2) @ e1.T - cross - cross.T
    hcum = _cumulative_hazard(lay, cur, set_weight)
    np.multiply(lay.XT, cur.risk * lay.w * hcum, out=buf)
    info = buf @ lay.XT.T - outer
    return 0.5 * (info + info.T)


def _weighted_score_residuals(
    lay: _Layout, cur: _Eval, out: np.ndarray, set_weight: np.ndarray | None = None
) -> np.ndarray:
    """Case-weighted score residuals, shape (p, n), rows in sorted order, written to ``out``.

    Column ``i`` is ``w_i`` times R's ``residuals(fit, type = "score")``: its event term
    ``x_i - mean_k a_k`` minus ``exp(eta_i) * sum_t h(t) {x_i - a(t)}`` over its risk sets.
    They sum to the score, which is zero at the estimate. Built one covariate at a time so
    that no temporary larger than ``n`` is made.

    With ``set_weight`` (one value ``g(t)`` per tied-event set), the residuals are those of
    the time-varying covariate ``x g(t)`` at a zero coefficient for it: the event term and
    every hazard increment are multiplied by ``g`` at their time.
    """
    XT = lay.XT
    ev, eg, frac = lay.ev_rows, lay.eg_of_ev, lay.frac
    q0, q1, q2 = cur.q
    hcum = cur.hcum
    if set_weight is not None:
        q0, q1, q2 = q0 * set_weight, q1 * set_weight, q2 * set_weight
        hcum = _cumulative_hazard(lay, cur, set_weight)
    s1e, e1 = cur.s1e, cur.e1
    ha_eg = s1e * q0 if e1 is None else s1e * q0 - e1 * q1
    ha = np.zeros(lay.n_groups)
    abar = _efron_means(lay, cur)
    ha_own = None if frac is None else s1e * q1 - e1 * q2  # Efron: own-death share removed
    for j in range(XT.shape[0]):
        row = out[j]
        ha[lay.eg_grp] = ha_eg[j]
        np.take(_segment_cumsum(ha, lay.grp_seg_first), lay.grp_of_row, out=row)
        if ha_own is not None:
            row[ev] -= ha_own[j, eg]
        row -= XT[j] * hcum
        row *= cur.risk
        if set_weight is None:
            row[ev] += XT[j, ev] - abar[j, eg]
        else:
            row[ev] += (XT[j, ev] - abar[j, eg]) * set_weight[eg]
        row *= lay.w
    return out


# ---------------------------------------------------------------------------------------------
# Public API


def _as_codes(values: Any, n: int, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{what} must be one-dimensional with {n} entries, got shape {arr.shape}")
    if pd.isna(arr).any():
        raise ValueError(f"{what} has missing values")
    return pd.factorize(arr, sort=True)[0].astype(np.intp)


def fit_cox(
    X: Any,
    duration: Any,
    event: Any,
    *,
    weights: Any = None,
    cluster: Any = None,
    strata: Any = None,
    ties: Ties = "efron",
    tol: float = 1e-9,
    max_iter: int = 50,
    small_sample: SmallSample = "factor",
) -> CoxResult:
    """Fit a Cox proportional hazards model to right-censored data.

    Parameters
    ----------
    X : array_like, shape (n, p)
        Covariates (a DataFrame's column names become ``names``). No intercept.
    duration : array_like, shape (n,)
        Follow-up times. Exactly equal times are tied.
    event : array_like, shape (n,)
        1 (or ``True``) for an event, 0 for censoring.
    weights : array_like, shape (n,), optional
        Positive case weights, as R's ``coxph(weights=)``: integer weights are equivalent to
        replicating rows (for the estimate and model-based variance).
    cluster : array_like, shape (n,), optional
        Cluster labels; the robust variance sums the weighted dfbeta residuals within cluster.
        Without it the robust variance is per observation.
    strata : array_like, shape (n,), optional
        Stratum labels; each stratum has its own baseline hazard and risk sets.
    ties : {"efron", "breslow"}, default "efron"
        Handling of tied event times.
    tol : float, default 1e-9
        Convergence when the relative change in log partial likelihood is at most ``tol``
        (R's ``coxph.control(eps=)``).
    max_iter : int, default 50
        Maximum Newton–Raphson iterations.
    small_sample : {"factor", "mancl-derouen"}, default "factor"
        Small-sample correction of the robust covariance: the factor ``G / (G - 1)``, or
        the bias-corrected sandwich of Mancl & DeRouen (2001), which also corrects the
        downward bias that comes from few events (see Notes).

    Returns
    -------
    CoxResult

    Raises
    ------
    ValueError
        On missing or non-finite values, non-binary events, non-positive weights, no events,
        or a singular information matrix (collinear covariates).

    Notes
    -----
    Newton–Raphson from zero with step halving whenever the log-likelihood decreases, as
    R's ``coxph.fit``. The data are sorted once by stratum and time; every quantity is then a
    sum over tied-time groups and a (segmented) cumulative sum over those groups. Memory is a
    few copies of the ``n x p`` design; the ``n x p x p`` outer products are never formed.

    Times are tied when exactly equal. R's ``coxph`` (``timefix = TRUE``, its default) also
    ties times whose difference is below about 1.5e-8 times their mean (``aeqSurv``), meant
    for rounding error in computed times; round such times before fitting to match it.

    The robust covariance is :math:`c V D^\\top D V`, where :math:`V` is the inverse
    information, the rows of :math:`D` are the weighted score residuals, summed within cluster
    (Lin & Wei 1989; Therneau & Grambsch 2000, section 7.2), and :math:`c = G/(G-1)` with
    :math:`G` the number of clusters (rows when no cluster is given): the package's one
    small-sample convention (:mod:`analysis.sandwich`). R's ``coxph`` applies no factor, so its
    robust variance is :math:`c` times smaller. With fewer than two clusters the robust
    variance is NaN.

    Monotone likelihood (an infinite estimate: for a binary covariate, when every row with
    one value leaves the risk sets before the first event of the other) is detected and
    listed in ``diverging`` with the reason, rather than reported as a huge finite estimate
    (see ``_monotone_likelihood``); a ``RuntimeWarning`` is also raised, as R does.

    References
    ----------
    .. [1] Cox, D. R. (1972). Regression models and life-tables. *Journal of the Royal
       Statistical Society B*, 34(2), 187–220.
    .. [2] Efron, B. (1977). The efficiency of Cox's likelihood function for censored data.
       *Journal of the American Statistical Association*, 72(359), 557–565.
    .. [3] Breslow, N. (1974). Covariance analysis of censored survival data. *Biometrics*,
       30(1), 89–99.
    .. [4] Lin, D. Y., & Wei, L. J. (1989). The robust inference for the Cox proportional
       hazards model. *Journal of the American Statistical Association*, 84(408), 1074–1078.
    .. [5] Therneau, T. M., & Grambsch, P. M. (2000). *Modeling Survival Data: Extending the
       Cox Model*. Springer.
    .. [6] Bryson, M. C., & Johnson, M. E. (1981). The incidence of monotone likelihood in the
       Cox model. *Technometrics*, 23(4), 381–383.
    .. [7] Heinze, G., & Schemper, M. (2001). A solution to the problem of monotone likelihood
       in Cox regression. *Biometrics*, 57(1), 114–119.
    .. [8] Mancl, L. A., & DeRouen, T. A. (2001). A covariance estimator for GEE with improved
       small-sample properties. *Biometrics*, 57(1), 126–134.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 2))
    >>> t = np.ceil(rng.exponential(np.exp(-x @ [0.5, -0.2])) * 30)  # heavily tied
    >>> res = fit_cox(x, t, np.ones(2000))
    >>> res.params.round(2)
    array([ 0.5 , -0.19])
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    if small_sample not in ("factor", "mancl-derouen"):
        raise ValueError(f"small_sample must be 'factor' or 'mancl-derouen', got {small_sample!r}")
    if isinstance(X, pd.DataFrame):
        names = tuple(str(c) for c in X.columns)
    elif isinstance(X, pd.Series):
        names = (str(X.name),)
    else:
        names = None
    X = np.asarray(X, dtype=np.float64)  # not modified: the sorted copy is made in _layout
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(f"X must be two-dimensional with at least one column, got {X.shape}")
    n, p = X.shape
    if names is None:
        names = tuple(f"x{j}" for j in range(p))
    if n == 0:
        raise ValueError("no rows")
    if not np.isfinite(X).all():
        bad = [names[j] for j in np.flatnonzero(~np.isfinite(X).all(axis=0))]
        raise ValueError(f"covariates have missing or non-finite values: {bad}")
    duration = np.asarray(duration, dtype=np.float64)
    if duration.shape != (n,):
        raise ValueError(f"duration must have shape ({n},), got {duration.shape}")
    if not np.isfinite(duration).all():
        raise ValueError("duration has missing or non-finite values")
    event_arr = np.asarray(event)
    if event_arr.shape != (n,):
        raise ValueError(f"event must have shape ({n},), got {event_arr.shape}")
    event_f = event_arr.astype(np.float64)
    if not np.isin(event_f, (0.0, 1.0)).all():
        raise ValueError("event must be 0/1 or boolean")
    event_b = event_f == 1.0
    if not event_b.any():
        raise ValueError("no events")
    if weights is None:
        w = np.ones(n)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {w.shape}")
        if not (np.isfinite(w).all() and (w > 0).all()):
            raise ValueError("weights must be finite and > 0 (drop zero-weight rows)")
    cl_code = None if cluster is None else _as_codes(cluster, n, "cluster")
    st_code = None if strata is None else _as_codes(strata, n, "strata")

    lay, order = _layout(X, duration, event_b, w, st_code, ties)
    buf = np.empty_like(lay.XT)

    beta = np.zeros(p)
    cur = _evaluate(lay, beta, buf)
    null = cur
    loglik_null = cur.loglik
    converged = False
    halving = False
    new_beta = beta + _newton_step(cur)
    last_step = np.zeros(p)
    collapsed = False  # the information became singular away from 0: monotone likelihood
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            new = _evaluate(lay, new_beta, buf)  # a wild step may underflow: halve it below
        ok = np.isfinite(new.loglik)
        if ok and not halving and abs(new.loglik - cur.loglik) <= tol * abs(cur.loglik):
            converged = True
            last_step = new_beta - beta
            beta, cur = new_beta, new
            break
        if not ok or new.loglik < cur.loglik:  # overshoot: halve the step, as coxph.fit
            halving = True
            new_beta = 0.5 * (new_beta + beta)
        else:
            halving = False
            last_step = new_beta - beta
            beta, cur = new_beta, new
            try:
                new_beta = beta + _newton_step(cur)
            except ValueError:
                collapsed = True
                break
    try:
        cov = _inverse(cur.info)
    except ValueError:
        if not (converged or collapsed):
            raise
        collapsed, converged = True, False
        cov = np.full((p, p), np.nan)
    if not converged and not collapsed:
        warnings.warn(
            f"Cox fit did not converge in {max_iter} iterations "
            "(a coefficient may be infinite: monotone likelihood)",
            RuntimeWarning,
            stacklevel=2,
        )
    if converged:  # R's check for monotone likelihood: the next step would still be large
        step = np.abs(cov @ cur.score)
        infinite = (step > tol) & (step > np.sqrt(tol) * np.abs(beta))
        if infinite.any():
            warnings.warn(
                "log-likelihood converged before "
                f"{[names[j] for j in np.flatnonzero(infinite)]}; coefficient may be infinite",
                RuntimeWarning,
                stacklevel=2,
            )
    diverging = _monotone_likelihood(lay, names, last_step if converged or collapsed else None)
    if collapsed and not diverging:
        diverging = {
            name: "monotone likelihood: the information matrix became singular while the "
            "log-likelihood was still increasing (the estimate is infinite)"
            for name, b in zip(names, beta, strict=True)
            if b != 0
        }
    if diverging:
        warnings.warn(
            f"monotone likelihood: the estimates of {sorted(diverging)} are infinite",
            RuntimeWarning,
            stacklevel=2,
        )

    # Robust variance at the estimate, and the robust score test at beta = 0 (R's robscore).
    codes = np.arange(n) if cl_code is None else cl_code[order]
    n_clusters = None if cl_code is None else count_clusters(codes)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        resid = _weighted_score_residuals(lay, cur, out=buf)
        robust_cov, _ = cluster_covariance(resid.T, codes, bread=cov)
        max_leverage = robust_cov_factor = None
        if small_sample == "mancl-derouen":
            robust_cov_factor = robust_cov
            robust_cov, max_leverage = _bias_corrected_cov(lay, cur, beta, cov, codes, buf)
    resid0 = _weighted_score_residuals(lay, null, out=buf)
    meat0, _ = cluster_covariance(resid0.T, codes)
    score_test = _quadratic_form(null.score, null.info)
    robust_score_test = _quadratic_form(null.score, meat0)

    return CoxResult(
        names=names,
        params=beta,
        se=np.sqrt(np.diag(cov)),
        robust_se=np.sqrt(np.diag(robust_cov)),
        cov=cov,
        robust_cov=robust_cov,
        loglik=cur.loglik,
        loglik_null=loglik_null,
        n=n,
        n_events=int(event_b.sum()),
        n_clusters=n_clusters,
        n_iter=n_iter,
        converged=converged,
        ties=ties,
        diverging=diverging,
        score_test=score_test,
        robust_score_test=robust_score_test,
        small_sample=small_sample,
        max_leverage=max_leverage,
        robust_cov_factor=robust_cov_factor,
    )


def _bias_corrected_cov(
    lay: _Layout, cur: _Eval, beta: np.ndarray, cov: np.ndarray, codes: np.ndarray, buf
) -> tuple[np.ndarray, float]:
    """Mancl–DeRouen sandwich of a Cox fit; cluster information by central differences."""
    p = beta.size
    resid = _weighted_score_residuals(lay, cur, out=buf)
    totals = cluster_totals(resid.T, codes)  # (G, p)
    info_g = np.empty((totals.shape[0], p, p))
    steps = 1e-4 * np.sqrt(np.diag(cov))
    work = np.empty_like(buf)
    for j in range(p):
        shifted = []
        for sign in (1.0, -1.0):
            b = beta.copy()
            b[j] += sign * steps[j]
            ev = _evaluate(lay, b, work)
            shifted.append(cluster_totals(_weighted_score_residuals(lay, ev, out=work).T, codes))
        info_g[:, :, j] = -(shifted[0] - shifted[1]) / (2 * steps[j])
    return bias_corrected_covariance(totals, info_g, cov)


def _monotone_likelihood(
    lay: _Layout, names: tuple[str, ...], last_step: np.ndarray | None
) -> dict[str, str]:
    """Coefficients whose partial likelihood has no finite maximum, with the reason.

    Two checks. (1) Exact, for each covariate alone: if at every event the row with the
    event has the largest value of the covariate in its risk set (or the smallest), the
    score of that coefficient is non-negative (non-positive) for every value of all the
    coefficients, so the partial likelihood increases without bound as it grows: the
    estimate is infinite (Bryson & Johnson 1981). (2) For directions that mix covariates:
    the log-likelihood converged while the last Newton step still moved a coefficient by
    more than 0.1 standard deviations of its covariate (or the information became
    singular), which happens only when the information along it collapses towards zero.
    """
    out: dict[str, str] = {}
    XT = lay.XT
    new_grp = np.r_[True, lay.grp_of_row[1:] != lay.grp_of_row[:-1]]
    first = np.flatnonzero(new_grp)[lay.grp_of_row[lay.ev_rows]]  # risk set starts here
    ev = lay.ev_rows
    for j, name in enumerate(names):
        x = XT[j]
        span = float(x.max() - x.min())
        if span == 0:
            continue
        tol = 1e-9 * span
        if lay.stratum_of_row is None:
            # quick exit: the first event's risk set is almost everyone
            tail = x[first[0] :]
            if tail.max() - tol > x[ev[0]] > tail.min() + tol:
                continue
            off = np.zeros_like(x)
        else:  # later strata pushed out of reach of the earlier ones' running max/min
            off = (2.0 * span + 1.0) * lay.stratum_of_row
        top = np.maximum.accumulate((x - off)[::-1])[::-1][first] + off[ev]
        bottom = np.minimum.accumulate((x + off)[::-1])[::-1][first] - off[ev]
        up = bool(np.all(x[ev] >= top - tol))
        down = bool(np.all(x[ev] <= bottom + tol))
        if up != down:
            side = "largest" if up else "smallest"
            limit = "+infinity" if up else "-infinity"
            out[name] = (
                f"monotone likelihood: at every event time the row with the event has the "
                f"{side} value of {name} in its risk set, so the partial likelihood keeps "
                f"increasing as its coefficient tends to {limit}"
            )
    if last_step is not None:
        # the SD is at most half the range: compute it only where the step could matter
        moved = np.abs(last_step) * 0.5 * (XT.max(axis=1) - XT.min(axis=1)) > 0.1
        sd = np.zeros(len(names))
        sd[moved] = XT[moved].std(axis=1)
        for j in np.flatnonzero(np.abs(last_step) * sd > 0.1):
            out.setdefault(
                names[j],
                "monotone likelihood: the log-likelihood stopped increasing while the "
                f"coefficient of {names[j]} still moved by {last_step[j]:.3g} per Newton step "
                "(the information along it collapses towards 0; the estimate is infinite)",
            )
    return out


def _quadratic_form(u: np.ndarray, a: np.ndarray) -> float:
    """``u' A^- u`` (a generalised inverse, as R's ``coxph.wtest``); NaN if A is not finite."""
    if not np.isfinite(a).all():
        return float("nan")
    return float(u @ np.linalg.pinv(a, rcond=1e-10, hermitian=True) @ u)


def _newton_step(ev_: _Eval) -> np.ndarray:
    try:
        factor = linalg.cho_factor(ev_.info, check_finite=True)
    except linalg.LinAlgError as exc:
        raise ValueError(
            "information matrix is singular: covariates are collinear or constant"
        ) from exc
    return linalg.cho_solve(factor, ev_.score)


def _inverse(info: np.ndarray) -> np.ndarray:
    try:
        factor = linalg.cho_factor(info)
    except linalg.LinAlgError as exc:
        raise ValueError(
            "information matrix is singular: covariates are collinear or constant"
        ) from exc
    inv = linalg.cho_solve(factor, np.eye(info.shape[0]))
    return 0.5 * (inv + inv.T)


def cox_fit(
    df: pd.DataFrame,
    *,
    duration: str,
    event: str,
    covariates: Sequence[str],
    weights: str | None = None,
    cluster: str | None = None,
    strata: str | Sequence[str] | None = None,
    ties: Ties = "efron",
) -> CoxResult:
    """Fit a Cox model to columns of a DataFrame.

    Parameters
    ----------
    df : DataFrame
        One row per observation.
    duration, event : str
        Columns with the follow-up time and the 0/1 event indicator.
    covariates : sequence of str
        Covariate columns (numeric; encode categories beforehand).
    weights : str, optional
        Column of positive case weights.
    cluster : str, optional
        Column of cluster labels for the clustered robust variance.
    strata : str or sequence of str, optional
        Column(s) whose combinations define the strata.
    ties : {"efron", "breslow"}, default "efron"

    Returns
    -------
    CoxResult
        With ``names`` equal to ``covariates``; see ``fit_cox``.

    See Also
    --------
    fit_cox : the array interface, with the method's notes and references.

    References
    ----------
    .. [1] Efron, B. (1977). The efficiency of Cox's likelihood function for censored data.
       *Journal of the American Statistical Association*, 72(359), 557–565.
    .. [2] Lin, D. Y., & Wei, L. J. (1989). The robust inference for the Cox proportional
       hazards model. *Journal of the American Statistical Association*, 84(408), 1074–1078.
    .. [3] Therneau, T. M., & Grambsch, P. M. (2000). *Modeling Survival Data: Extending the
       Cox Model*. Springer.
    """
    covariates = list(covariates)
    if not covariates:
        raise ValueError("covariates must name at least one column")
    strata_cols = [strata] if isinstance(strata, str) else list(strata or [])
    needed = [duration, event, *covariates, *([weights] if weights else [])]
    needed += [*([cluster] if cluster else []), *strata_cols]
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        raise KeyError(f"columns not in df: {missing}")
    na = [c for c in dict.fromkeys(needed) if df[c].isna().any()]
    if na:
        raise ValueError(f"columns with missing values: {na}")
    if len(strata_cols) > 1:
        strata_values = df.groupby(strata_cols, sort=True).ngroup().to_numpy()
    elif strata_cols:
        strata_values = df[strata_cols[0]].to_numpy()
    else:
        strata_values = None
    return fit_cox(
        df[covariates],
        df[duration].to_numpy(),
        df[event].to_numpy(),
        weights=None if weights is None else df[weights].to_numpy(),
        cluster=None if cluster is None else df[cluster].to_numpy(),
        strata=strata_values,
        ties=ties,
    )


# ---------------------------------------------------------------------------------------------
# Test of proportional hazards

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
    transform: PHTransform | Any, duration: np.ndarray, event: np.ndarray
) -> tuple[str, np.ndarray]:
    """R's ``cox.zph`` time transforms, one value per observation (censored rows too)."""
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
        times, index = np.unique(duration, return_inverse=True)
        at_risk = np.cumsum(np.bincount(index, minlength=times.size)[::-1])[::-1]
        deaths = np.bincount(index, weights=event.astype(np.float64), minlength=times.size)
        surv = np.cumprod(1.0 - deaths / at_risk)
        return transform, 1.0 - np.r_[1.0, surv[:-1]][index]
    raise ValueError(
        f"transform must be 'km', 'rank', 'identity', 'log' or a function, got {transform!r}"
    )


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
    if variance not in ("model", "robust"):
        raise ValueError(f"variance must be 'model' or 'robust', got {variance!r}")
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
    if terms is None:
        terms = {name: [j] for j, name in enumerate(fit.names)}
    tname, ttimes = _time_transform(transform, duration, event_b)
    if ttimes.shape != (n,) or not np.isfinite(ttimes[event_b]).all():
        raise ValueError(f"time transform {tname!r} is not finite at every event time")
    gtime = ttimes - ttimes[event_b].mean()

    st_code = None if strata is None else _as_codes(strata, n, "strata")
    lay, order = _layout(X, duration, event_b, w, st_code, fit.ties)
    buf = np.empty_like(lay.XT)
    cur = _evaluate(lay, np.asarray(fit.params, dtype=np.float64), buf)
    g = gtime[order][lay.ev_rows[lay.eg_starts]]  # one value per tied-event set

    ev = lay.ev_rows
    schoenfeld = lay.XT[:, ev] - _efron_means(lay, cur)[:, lay.eg_of_ev]
    u = schoenfeld @ (lay.w[ev] * g[lay.eg_of_ev])
    i_bg = _weighted_information(lay, cur, g, buf)
    i_bb_inv_bg = _inverse(cur.info) @ i_bg
    i_gg = _weighted_information(lay, cur, g * g, buf)
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
            infl = np.stack([np.bincount(codes, weights=row, minlength=n_clusters) for row in infl])
        v = infl @ infl.T
    v = 0.5 * (v + v.T)
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
    table = pd.DataFrame(
        {"chisq": chisq, "df": dfs, "p": stats.chi2.sf(chisq, dfs)},
        index=pd.Index(names, name="term"),
    )
    return PHTest(table=table, transform=tname, variance=variance, n_clusters=n_clusters)
