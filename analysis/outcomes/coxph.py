"""The Cox engine: one fitter for proportional hazards regression on registry-sized data.

:func:`fit_cox` returns the coefficients, their model-based and robust covariances, the
information matrix, the score and Schoenfeld residuals and the score tests
(:class:`CoxResult`); :class:`CoxScore` gives the weighted score contributions at any
coefficients and weights (the Cox estimating function of :mod:`analysis.outcomes.stacked`).
The hazard-ratio estimator on a DataFrame is :func:`analysis.outcomes.cox.cox_hazard_ratio`;
the proportional-hazards test is :func:`analysis.outcomes.ph_test.cox_zph`. The array work is
in the private :mod:`analysis.outcomes._coxph_core`.

The fitter sorts the data once, by stratum, time and event status, and then evaluates the
partial log-likelihood, score and information with whole-array operations: sums over each
block of tied rows (``np.add.reduceat``), reverse cumulative sums over those blocks for the
risk sets, and one weighted Gram matrix ``X' diag(v) X`` per Newton step. Python loops run only
over Newton iterations and covariates, never over rows, event times or tie multiplicities, so
heavy ties (registry times at day resolution) cost nothing extra.

It reproduces R's ``survival::coxph`` for right-censored data, ``Surv(duration, event)``, and
for counting-process data with delayed entry or time-varying covariates and weights,
``Surv(entry, duration, event)`` (``entry=``): Efron or Breslow ties, case weights
(``weights=``, which may differ between the intervals of one person), strata (``strata()``),
and the robust sandwich variance built from the weighted dfbeta residuals, summed within
clusters when ``cluster=`` is given (``cluster(id)`` for persons with several intervals).

With ``entry``, a row is at risk at the event times ``t`` with ``entry < t <= duration``. A
risk-set sum is then the sum over the rows with ``duration >= t`` minus the sum over the rows
with ``entry >= t`` (both tail sums of sorted cumulative sums, per stratum), and a row's
cumulative hazard is the one at its ``duration`` minus the one at its ``entry``; everything
else (ties, residuals, variances) is as for right-censored data.

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

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from analysis.outcomes._coxph_core import (
    _efron_means,
    _Eval,
    _Layout,
    _layout,
    _weighted_score_residuals,
)
from analysis.outcomes._coxph_score import CoxScore
from analysis.outcomes._coxph_solve import (
    _as_codes,
    _bias_corrected_cov,
    _check_data,
    _check_entry,
    _check_solution,
    _newton_raphson,
    _quadratic_form,
)
from analysis.outcomes._coxph_solve import (
    _fit_coefficients as _fit_coefficients,  # re-exported: analysis.outcomes.counting
)
from analysis.sandwich import cluster_covariance, count_clusters

__all__ = ["CoxResult", "CoxScore", "fit_cox"]

Ties = Literal["efron", "breslow"]
SmallSample = Literal["factor", "mancl-derouen"]


#: fields of :class:`CoxResult` with one row per observation or event (left out of ``to_dict``)
_PER_ROW = ("score_residuals", "schoenfeld_residuals")


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
    information : ndarray, shape (p, p)
        Observed information (minus the Hessian of the log partial likelihood) at ``params``;
        ``cov`` is its inverse.
    score_residuals : ndarray, shape (n, p)
        Weighted score residuals at ``params``, rows in the order of the input: case weight
        times R's ``residuals(fit, type = "score")`` (R's ``weighted = TRUE``). They sum to
        the score (zero at the estimate); ``score_residuals @ cov`` are the dfbeta residuals
        behind the robust variance.
    schoenfeld_residuals : DataFrame, shape (events, p)
        Schoenfeld residuals, one row per event, ordered by stratum and time as R's
        ``residuals(fit, type = "schoenfeld")``: the event's covariates minus their risk-set
        mean at its time (with Efron's ties, the mean over the tied events' fractional risk
        sets). Indexed by the event's row position in the input (``row``).
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
    information: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    score_residuals: np.ndarray = field(default_factory=lambda: np.empty((0, 0)), repr=False)
    schoenfeld_residuals: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

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
        """JSON-safe dictionary (arrays become lists), without the per-row residuals."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            if key in _PER_ROW:
                continue
            value = getattr(self, key)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out


def fit_cox(
    X: Any,
    duration: Any,
    event: Any,
    *,
    entry: Any = None,
    weights: Any = None,
    cluster: Any = None,
    strata: Any = None,
    ties: Ties = "efron",
    tol: float = 1e-9,
    max_iter: int = 50,
    small_sample: SmallSample = "factor",
) -> CoxResult:
    """Fit a Cox proportional hazards model to right-censored or counting-process data.

    Parameters
    ----------
    X : array_like, shape (n, p)
        Covariates (a DataFrame's column names become ``names``). No intercept.
    duration : array_like, shape (n,)
        Follow-up times: the end (stop) of each row's interval. Exactly equal times are tied.
    event : array_like, shape (n,)
        1 (or ``True``) for an event at ``duration``, 0 for censoring.
    entry : array_like, shape (n,), optional
        Entry times: the row is at risk on ``(entry, duration]`` (delayed entry, or one of
        several intervals of a person in counting-process form, as R's
        ``Surv(entry, duration, event)``); ``entry < duration``. ``None`` (the default):
        at risk from the origin (right-censored data). Split a person's follow-up into
        intervals to give covariates or weights that change over time.
    weights : array_like, shape (n,), optional
        Positive case weights, as R's ``coxph(weights=)``: integer weights are equivalent to
        replicating rows (for the estimate and model-based variance). With ``entry``, the
        intervals of one person may have different weights (time-varying inverse
        probability weights).
    cluster : array_like, shape (n,), optional
        Cluster labels; the robust variance sums the weighted dfbeta residuals within cluster.
        Without it the robust variance is per observation (per row: with ``entry``, give the
        person as the cluster for a variance per person).
    strata : array_like, shape (n,) or (n, k), optional
        Stratum labels; each stratum has its own baseline hazard and risk sets. Several
        columns (an (n, k) array or a DataFrame) define the strata by their combinations.
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
        With the information matrix and the score and Schoenfeld residuals at the estimate.

    Raises
    ------
    ValueError
        On missing or non-finite values, non-binary events, non-positive weights, no events,
        ``entry`` not before ``duration``, or a singular information matrix (collinear
        covariates).

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
    # long: the docstring documents the method
    return _fit_cox(
        X, duration, event, entry=entry, weights=weights, cluster=cluster, strata=strata,
        ties=ties, tol=tol, max_iter=max_iter, small_sample=small_sample,
    )[0]  # fmt: skip


def _fit_cox(
    X: Any,
    duration: Any,
    event: Any,
    *,
    entry: Any,
    weights: Any,
    cluster: Any,
    strata: Any,
    ties: Ties,
    tol: float,
    max_iter: int,
    small_sample: SmallSample,
    diagnostics: bool = True,
) -> tuple[CoxResult, tuple[_Layout, np.ndarray, _Eval]]:
    """:func:`fit_cox`, with the sorted data, their order and the evaluation at the estimate.

    ``diagnostics=False`` leaves out what an estimator that reads only the coefficients and
    their covariances does not need: the per-row score and Schoenfeld residuals (empty) and
    the score tests at zero (NaN).
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    if small_sample not in ("factor", "mancl-derouen"):
        raise ValueError(f"small_sample must be 'factor' or 'mancl-derouen', got {small_sample!r}")
    names, X, duration, event_b, w = _check_data(X, duration, event, weights)
    entry = _check_entry(entry, duration)
    n, p = X.shape
    cl_code = None if cluster is None else _as_codes(cluster, n, "cluster")
    st_code = None if strata is None else _as_codes(strata, n, "strata")

    lay, order = _layout(X, duration, event_b, w, st_code, ties, entry)
    buf = np.empty_like(lay.XT)
    newton = _newton_raphson(lay, buf, tol=tol, max_iter=max_iter)
    beta, cur = newton.beta, newton.cur
    cov, diverging, converged = _check_solution(
        lay, newton, names, tol=tol, max_iter=max_iter, stacklevel=4
    )  # the warnings point at the caller of fit_cox

    # Robust variance at the estimate, and the robust score test at beta = 0 (R's robscore).
    codes = np.arange(n) if cl_code is None else cl_code[order]
    n_clusters = None if cl_code is None else count_clusters(codes)
    score_residuals = np.empty((n, p) if diagnostics else (0, 0))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        resid = _weighted_score_residuals(lay, cur, out=buf)
        if diagnostics:
            score_residuals[order] = resid.T
        robust_cov, _ = cluster_covariance(resid.T, codes, bread=cov)
        max_leverage = robust_cov_factor = None
        if small_sample == "mancl-derouen":
            robust_cov_factor = robust_cov
            robust_cov, max_leverage = _bias_corrected_cov(lay, cur, beta, cov, codes, buf)
    schoenfeld, score_test, robust_score_test = pd.DataFrame(), float("nan"), float("nan")
    if diagnostics:
        schoenfeld = _schoenfeld(lay, cur, order, names)
        resid0 = _weighted_score_residuals(lay, newton.null, out=buf)
        meat0, _ = cluster_covariance(resid0.T, codes)
        score_test = _quadratic_form(newton.null.score, newton.null.info)
        robust_score_test = _quadratic_form(newton.null.score, meat0)

    return CoxResult(
        names=names,
        params=beta,
        se=np.sqrt(np.diag(cov)),
        robust_se=np.sqrt(np.diag(robust_cov)),
        cov=cov,
        robust_cov=robust_cov,
        loglik=cur.loglik,
        loglik_null=newton.null.loglik,
        n=n,
        n_events=int(event_b.sum()),
        n_clusters=n_clusters,
        n_iter=newton.n_iter,
        converged=converged,
        ties=ties,
        diverging=diverging,
        score_test=score_test,
        robust_score_test=robust_score_test,
        small_sample=small_sample,
        max_leverage=max_leverage,
        robust_cov_factor=robust_cov_factor,
        information=cur.info,
        score_residuals=score_residuals,
        schoenfeld_residuals=schoenfeld,
    ), (lay, order, cur)


def _schoenfeld(
    lay: _Layout, cur: _Eval, order: np.ndarray, names: tuple[str, ...]
) -> pd.DataFrame:
    """Schoenfeld residuals, one row per event in sorted (stratum, time) order."""
    ev = lay.ev_rows
    resid = lay.XT[:, ev] - _efron_means(lay, cur)[:, lay.eg_of_ev]
    return pd.DataFrame(resid.T, index=pd.Index(order[ev], name="row"), columns=list(names))
