"""Count outcomes: negative-binomial rate ratio, exact Poisson rates, before/after ratios.

Crime is counted as police-registered charges per person-year at risk. The primary model
is a negative-binomial (NB2) regression with a log person-years offset, whose dispersion
is estimated (not fixed at 1 as in the GLM family). Weights (matching or IPT weights)
give a weighted pseudo-likelihood; its variance is then the cluster-robust sandwich.

References
----------
Cameron AC, Trivedi PK (2013). Regression Analysis of Count Data, 2nd ed. Cambridge.
Venables WN, Ripley BD (2002). Modern Applied Statistics with S, 4th ed. Springer
(MASS::glm.nb, the reference implementation).
Garwood F (1936). Fiducial limits for the Poisson distribution. Biometrika 28:437-442.
Fay MP, Feuer EJ (1997). Confidence intervals for directly standardized rates: a method
based on the gamma distribution. Stat Med 16:791-801.
Zeger SL, Liang KY (1986). Longitudinal data analysis for discrete and continuous
outcomes. Biometrics 42:121-130.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import special, stats

from analysis._checks import binary as _binary
from analysis._checks import cluster_codes as _cluster_codes
from analysis._checks import numeric as _column
from analysis._checks import weights_array as _weights_array
from analysis._checks import z_value as _z
from analysis.outcomes._common import nan_estimate as _nan_estimate
from analysis.results import EffectEstimate, _clean
from analysis.sandwich import cluster_check, cluster_covariance, cluster_variance, count_clusters

#: dispersion below which the NB2 fit is reported as the Poisson boundary (theta > 1e8)
_THETA_MAX = 1e8

# ----------------------------------------------------------------------------- exact rates


@dataclass(frozen=True, kw_only=True)
class PoissonRate:
    """An event rate with its confidence interval.

    Attributes
    ----------
    events, person_years : float
        Events and person-time (weighted sums when weights were used).
    rate, ci_low, ci_high : float
        Events per person-year and the interval.
    alpha : float
        1 - confidence level.
    method : str
        ``"exact (Garwood)"`` or ``"gamma (Fay-Feuer)"`` for weighted rates.
    """

    events: float
    person_years: float
    rate: float
    ci_low: float
    ci_high: float
    alpha: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary."""
        return _clean(asdict(self))


def poisson_rate(events: float, person_years: float, *, alpha: float = 0.05) -> PoissonRate:
    """Poisson rate with the exact (Garwood) confidence interval.

    Parameters
    ----------
    events : int
        Number of events (a non-negative integer).
    person_years : float
        Person-time at risk (> 0).
    alpha : float
        1 - confidence level.

    Returns
    -------
    PoissonRate
        Rate per person-year; lower limit ``chi2(alpha/2, 2k) / (2 PY)`` (0 when k = 0),
        upper ``chi2(1 - alpha/2, 2k + 2) / (2 PY)``.

    References
    ----------
    Garwood F (1936). Biometrika 28:437-442.
    Ulm K (1990). A simple method to calculate the confidence interval of a standardized
    mortality ratio. Am J Epidemiol 131:373-375.
    """
    _z(alpha)
    if events < 0 or events != int(events):
        raise ValueError(f"events must be a non-negative integer, got {events}")
    if not person_years > 0:
        raise ValueError(f"person_years must be positive, got {person_years}")
    k = int(events)
    lo = 0.0 if k == 0 else stats.chi2.ppf(alpha / 2, 2 * k) / 2
    hi = stats.chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2
    return PoissonRate(
        events=float(k),
        person_years=float(person_years),
        rate=k / person_years,
        ci_low=float(lo / person_years),
        ci_high=float(hi / person_years),
        alpha=alpha,
        method="exact (Garwood)",
    )


def _weighted_rate(counts: np.ndarray, py: np.ndarray, w: np.ndarray, alpha: float) -> PoissonRate:
    """Weighted rate sum(w k) / sum(w PY) with the Fay-Feuer gamma interval."""
    total_py = float(np.sum(w * py))
    if not total_py > 0:
        raise ValueError("weighted person-years must be positive")
    v = w / total_py  # rate = sum(v_i k_i), a weighted sum of Poisson counts
    y = float(np.sum(v * counts))
    var = float(np.sum(v**2 * counts))
    wm = float(np.max(v[w > 0])) if (w > 0).any() else 0.0
    lo = 0.0 if y == 0 else var / (2 * y) * stats.chi2.ppf(alpha / 2, 2 * y**2 / var)
    hi = (
        (var + wm**2)
        / (2 * (y + wm))
        * stats.chi2.ppf(1 - alpha / 2, 2 * (y + wm) ** 2 / (var + wm**2))
    )
    return PoissonRate(
        events=float(np.sum(w * counts)),
        person_years=total_py,
        rate=y,
        ci_low=float(lo),
        ci_high=float(hi),
        alpha=alpha,
        method="gamma (Fay-Feuer)",
    )


def crude_rates(
    df: pd.DataFrame,
    *,
    events: str,
    person_years: str,
    group: str,
    per: float = 1000,
    weights: str | None = None,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Crude event rates by group with exact confidence intervals.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    events : str
        Events per person (0/1 deaths, or counts of charges).
    person_years : str
        Person-years at risk per person.
    group : str
        Grouping column.
    per : float
        Rates per ``per`` person-years (1,000 for mortality, 1 for charges).
    weights : str, optional
        Weights; the rate is then ``sum(w k) / sum(w PY)`` with the Fay & Feuer gamma
        interval (which reduces to Garwood's with equal weights).
    alpha : float
        1 - confidence level.

    Returns
    -------
    DataFrame
        ``group, n, events, person_years, rate, ci_low, ci_high, per, method``.

    References
    ----------
    Garwood F (1936). Biometrika 28:437-442.
    Fay MP, Feuer EJ (1997). Stat Med 16:791-801.
    """
    k = _column(df, events, "events")
    py = _column(df, person_years, "person_years")
    if (k < 0).any() or (py < 0).any():
        raise ValueError("events and person-years must be non-negative")
    w = _weights_array(df, weights)
    if group not in df.columns:
        raise KeyError(f"group column {group!r} is not in the data")
    g = df[group].to_numpy()
    rows = []
    for level in sorted(pd.unique(g)):
        sel = g == level
        if weights is None:
            r = poisson_rate(float(k[sel].sum()), float(py[sel].sum()), alpha=alpha)
        else:
            r = _weighted_rate(k[sel], py[sel], w[sel], alpha)
        rows.append(
            {
                "group": level,
                "n": int(sel.sum()),
                "events": r.events,
                "person_years": r.person_years,
                "rate": r.rate * per,
                "ci_low": r.ci_low * per,
                "ci_high": r.ci_high * per,
                "per": per,
                "method": r.method,
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- NB2 regression


@dataclass(frozen=True)
class _NBFit:
    beta: np.ndarray
    theta: float  # inf at the Poisson boundary
    mu: np.ndarray
    loglik: float
    converged: bool
    iterations: int


def _nb_loglik(y: np.ndarray, mu: np.ndarray, w: np.ndarray, theta: float) -> float:
    if not math.isfinite(theta):
        return float(np.sum(w * (y * np.log(mu) - mu - special.gammaln(y + 1))))
    return float(
        np.sum(
            w
            * (
                special.gammaln(theta + y)
                - special.gammaln(theta)
                - special.gammaln(y + 1)
                + theta * np.log(theta)
                + special.xlogy(y, mu)
                - (theta + y) * np.log(theta + mu)
            )
        )
    )


def _irls(
    y: np.ndarray,
    x: np.ndarray,
    offset: np.ndarray,
    w: np.ndarray,
    theta: float,
    beta: np.ndarray,
    tol: float = 1e-12,
    maxiter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Fisher scoring (IRLS, with step halving) for the log-link NB2 mean at fixed theta.

    ``theta = inf`` gives Poisson regression.
    """
    mu = np.exp(x @ beta + offset)
    ll = _nb_loglik(y, mu, w, theta)
    for _ in range(maxiter):
        ww = w * mu / (1.0 + mu / theta)
        zz = (y - mu) / mu
        xtw = x.T * ww
        step = np.linalg.solve(xtw @ x, xtw @ zz)
        for _ in range(40):
            cand = beta + step
            mu_c = np.exp(x @ cand + offset)
            ll_c = _nb_loglik(y, mu_c, w, theta)
            if ll_c >= ll - 1e-12 * abs(ll):
                break
            step = step / 2
        beta, mu, ll = cand, mu_c, ll_c
        if np.max(np.abs(step)) < tol * (1 + np.max(np.abs(beta))):
            break
    return beta, mu


def _theta_ml(
    y: np.ndarray, mu: np.ndarray, w: np.ndarray, theta: float, tol: float = 1e-12
) -> float:
    """Maximum-likelihood theta at fixed means (Newton on log theta with backtracking)."""

    def loglik(th: float) -> float:
        return _nb_loglik(y, mu, w, th)

    phi = math.log(min(max(theta, 1e-6), _THETA_MAX))
    for _ in range(200):
        th = math.exp(phi)
        score = float(
            np.sum(
                w
                * (
                    special.digamma(th + y)
                    - special.digamma(th)
                    + math.log(th)
                    + 1
                    - np.log(th + mu)
                    - (y + th) / (th + mu)
                )
            )
        )
        hess = float(
            np.sum(
                w
                * (
                    special.polygamma(1, th + y)
                    - special.polygamma(1, th)
                    + 1 / th
                    - 2 / (th + mu)
                    + (y + th) / (th + mu) ** 2
                )
            )
        )
        g_phi = th * score
        h_phi = th * th * hess + th * score
        step = -g_phi / h_phi if h_phi < 0 else math.copysign(1.0, g_phi)
        step = max(min(step, 5.0), -5.0)
        base = loglik(th)
        while abs(step) > 1e-14 and loglik(math.exp(phi + step)) < base - 1e-12 * abs(base):
            step /= 2
        phi = min(phi + step, math.log(_THETA_MAX) + 1)
        if phi > math.log(_THETA_MAX):
            return math.inf
        if abs(step) < tol:
            break
    return math.exp(phi)


def _fit_nb2(
    y: np.ndarray, x: np.ndarray, offset: np.ndarray, w: np.ndarray, tol: float = 1e-10
) -> _NBFit:
    """Weighted NB2 maximum likelihood, alternating the mean and theta (as MASS::glm.nb)."""
    beta = np.zeros(x.shape[1])
    beta[0] = math.log(max(np.sum(w * y), 1e-8) / np.sum(w * np.exp(offset)))
    beta, mu = _irls(y, x, offset, w, math.inf, beta)
    theta = float(np.sum(w) / np.sum(w * (y / mu - 1) ** 2))  # moment start (as theta.ml)
    ll_old = -np.inf
    converged = False
    iterations = 0
    while iterations < 100:
        iterations += 1
        theta = _theta_ml(y, mu, w, theta)
        beta_new, mu = _irls(y, x, offset, w, theta, beta)
        ll = _nb_loglik(y, mu, w, theta)
        done = abs(ll - ll_old) < tol * (abs(ll) + tol) and np.max(np.abs(beta_new - beta)) < 1e-9
        beta, ll_old = beta_new, ll
        if done:
            converged = True
            break
        if not math.isfinite(theta):
            converged = True
            break
    return _NBFit(
        beta=beta, theta=theta, mu=mu, loglik=ll_old, converged=converged, iterations=iterations
    )


def _monotone_counts(y: np.ndarray, x: np.ndarray, names: Sequence[str]) -> str | None:
    """Why a log-linear count model has no finite maximum, or None.

    For a column ``x_j`` (with the intercept in the model): when every row with events has
    the same value ``c`` of ``x_j`` and every row without lies on one side of ``c`` (not all
    at ``c``), the direction ``e_j - c e_0`` raises the log-likelihood without bound (the
    events' means stay put, the others' fall to 0), so ``b_j`` is infinite. For a binary
    treatment this is "no events in one group". The Poisson and NB2 likelihoods share it.
    """
    has = y > 0
    for j in range(1, x.shape[1]):
        xj = x[:, j]
        values = xj[has]
        c = values[0]
        if not np.all(values == c):
            continue
        rest = xj[~has]
        if rest.size == 0 or np.all(rest == c):
            continue
        if np.all(rest <= c) or np.all(rest >= c):
            limit = "+infinity" if np.all(rest <= c) else "-infinity"
            return (
                f"monotone likelihood: every event is at {names[j]} = {c:g} and every row "
                f"without events lies on one side of it, so its coefficient tends to {limit}"
            )
    return None


def negative_binomial_irr(
    df: pd.DataFrame,
    *,
    count: str,
    exposure: str,
    treatment: str,
    covariates: Sequence[str] = (),
    cluster: str | None = None,
    weights: str | None = None,
    alpha: float = 0.05,
    outcome: str = "crime",
    method: str,
) -> EffectEstimate:
    """Incidence rate ratio of treatment from a negative-binomial (NB2) regression.

    ``log E[count] = log(exposure) + b0 + b1 treatment + covariates``, with
    ``Var = mu + mu^2 / theta`` and ``theta`` (= 1/alpha) estimated by maximum
    likelihood: the model of ``MASS::glm.nb``, reproduced to 1e-8 in the tests.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    count : str
        Event count (e.g. charges during follow-up).
    exposure : str
        Person-years at risk (>= 0). Rows with zero exposure carry no information and
        are dropped; how many, and the events they held, are reported in ``details``.
    treatment : str
        1 = HAT, 0 = OST.
    covariates : sequence of str
        Numeric adjustment covariates (e.g. ``baseline_charges``).
    cluster : str, optional
        Cluster (matched set) for the cluster-robust variance.
    weights : str, optional
        Weights (matching or IPT weights). The fit maximises the weighted
        log-likelihood ``sum w_i l_i(beta, theta)`` (a pseudo-likelihood; identical to
        ``glm.nb(weights=)``) and the variance is then robust.
    alpha : float
        1 - confidence level.
    outcome, method : str
        Labels of the result.

    Returns
    -------
    EffectEstimate
        ``measure="IRR"``. ``details``: ``alpha`` (dispersion), ``theta`` = 1/alpha,
        ``theta_se``, ``se_log``, ``se_log_model``, ``robust``, ``n_clusters``,
        ``coefficients``, ``loglik``, ``converged``, ``n_dropped_zero_exposure`` and
        ``events_dropped_zero_exposure``.

    Notes
    -----
    Fitting alternates Fisher scoring for the coefficients at fixed theta and Newton's
    method for theta at fixed means, like ``glm.nb``; at the Poisson boundary (no
    overdispersion, theta > 1e8) the Poisson fit is returned with ``alpha = 0``.

    Variance. Without weights and clusters: the inverse expected information of the
    coefficients at the estimated theta (``vcov(glm.nb(...))``; theta and the
    coefficients are asymptotically orthogonal). With ``weights`` or ``cluster``: the
    sandwich ``c B M B`` with ``B`` that inverse information (weighted), ``M`` the
    sum over clusters (persons when no cluster) of the outer products of the summed
    score contributions ``w_i x_i (y_i - mu_i) / (1 + mu_i / theta)`` and ``c = G / (G - 1)``,
    the package's one small-sample factor (:mod:`analysis.sandwich`; R's
    ``sandwich::vcovCL(fit, cluster =, type = "HC0")``). With fewer than 2 clusters the
    IRR is not estimable; below 30 the estimate carries a note and a
    :class:`analysis.sandwich.FewClustersWarning` is emitted. Cost: a few passes over the
    data per iteration; 50,000 rows fit in well under a second.

    Not estimable (NaN with the reason in ``details["note"]``) also when the likelihood
    has no finite maximum: no events in one treatment group (the IRR is 0 or infinite),
    or more generally when all the events sit at one value of the treatment or of a
    covariate and every other row lies on one side of it (monotone likelihood: the
    coefficient runs off to infinity), or when the fit does not converge.

    References
    ----------
    Lawless JF (1987). Negative binomial and mixed Poisson regression. Can J Stat
    15:209-225.
    Venables WN, Ripley BD (2002). Modern Applied Statistics with S. Springer.
    Cameron AC, Trivedi PK (2013). Regression Analysis of Count Data. Cambridge.
    Liang KY, Zeger SL (1986). Longitudinal data analysis using generalized linear
    models. Biometrika 73:13-22.
    """
    _z(alpha)  # validates alpha
    covariates = list(covariates)
    if treatment in covariates:
        raise ValueError(f"treatment column {treatment!r} is also listed as a covariate")
    y = _column(df, count, "count")
    if (y < 0).any() or (y != np.round(y)).any():
        raise ValueError(f"count column {count!r} must hold non-negative integers")
    expo = _column(df, exposure, "exposure")
    if (expo < 0).any():
        raise ValueError(f"exposure column {exposure!r} has negative values")
    a = _binary(df, treatment, "treatment").astype(float)
    w = _weights_array(df, weights)
    codes, _ = _cluster_codes(df, cluster)
    cov_cols = [_column(df, c, "covariate") for c in covariates]
    x = np.column_stack([np.ones(len(y)), a, *cov_cols])
    keep = (expo > 0) & (w > 0)
    zero_expo = expo == 0
    details: dict[str, Any] = {
        "n_dropped_zero_exposure": int(zero_expo.sum()),
        "events_dropped_zero_exposure": int(y[zero_expo].sum()),
    }
    if ((w == 0) & ~zero_expo).any():
        details["n_dropped_zero_weight"] = int(((w == 0) & ~zero_expo).sum())
    y, expo, a, w, codes, x = y[keep], expo[keep], a[keep], w[keep], codes[keep], x[keep]
    codes = pd.factorize(codes)[0].astype(np.intp)
    n_treated, n_control = int(a.sum()), int(len(a) - a.sum())
    common = {"n_treated": n_treated, "n_control": n_control, "n_events": int(y.sum())}
    if n_treated == 0 or n_control == 0:
        return _nan_estimate(
            outcome, "IRR", method, "IRR not estimable: one treatment group is empty",
            details=details, **common,
        )  # fmt: skip
    if y[a == 1].sum() == 0 or y[a == 0].sum() == 0:
        empty, limit = ("HAT", "0") if y[a == 1].sum() == 0 else ("OST", "infinity")
        return _nan_estimate(
            outcome, "IRR", method,
            f"IRR not estimable: no events in the {empty} group (monotone likelihood: the "
            f"IRR tends to {limit})",
            details=details, **common,
        )  # fmt: skip
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise ValueError("design matrix is rank deficient (constant or collinear covariates)")
    names = ["intercept", treatment, *covariates]
    monotone = _monotone_counts(y, x, names)
    if monotone is not None:
        return _nan_estimate(
            outcome, "IRR", method, f"IRR not estimable: {monotone}", details=details, **common
        )
    robust = weights is not None or cluster is not None
    notes = []
    if robust:
        what = f"values of {cluster}" if cluster else "persons, each its own cluster"
        problem = cluster_check(count_clusters(codes), what=what)
        if problem is not None and problem.startswith("not estimable"):
            return _nan_estimate(
                outcome, "IRR", method, f"IRR {problem}", details=details, **common
            )
        notes += [problem] if problem else []
    offset = np.log(expo)
    fit = _fit_nb2(y, x, offset, w)
    if not fit.converged:
        return _nan_estimate(
            outcome, "IRR", method,
            f"IRR not estimable: the negative-binomial fit did not converge in {fit.iterations} "
            "iterations", details=details, **common,
        )  # fmt: skip
    theta, mu = fit.theta, fit.mu
    working = w * mu / (1.0 + mu / theta)
    bread = np.linalg.inv((x.T * working) @ x)
    if robust:
        u = x * (w * (y - mu) / (1.0 + mu / theta))[:, None]
        cov, _ = cluster_covariance(u, codes, bread=bread)
    else:
        cov = bread
    se_all = np.sqrt(np.diag(cov))
    b, se = float(fit.beta[1]), float(se_all[1])
    if math.isfinite(theta):
        info = float(
            np.sum(
                w
                * (
                    -special.polygamma(1, theta + y)
                    + special.polygamma(1, theta)
                    - 1 / theta
                    + 2 / (theta + mu)
                    - (y + theta) / (theta + mu) ** 2
                )
            )
        )
        theta_se = 1 / math.sqrt(info) if info > 0 else float("nan")
    else:
        theta_se = float("nan")
        notes.insert(0, "no overdispersion: theta at the boundary, the fit is Poisson")
    if notes:
        details["note"] = "; ".join(notes)
    details.update(
        {
            "alpha": 0.0 if not math.isfinite(theta) else 1 / theta,
            "theta": theta,
            "theta_se": theta_se,
            "se_log": se,
            "se_log_model": float(np.sqrt(bread[1, 1])),
            "robust": robust,
            "n_clusters": int(codes.max()) + 1 if cluster is not None else None,
            "coefficients": {
                name: {"coef": float(fit.beta[j]), "se": float(se_all[j])}
                for j, name in enumerate(names)
            },
            "loglik": fit.loglik,
            "converged": fit.converged,
            "model": "NB2, log link, log(exposure) offset",
        }
    )
    return EffectEstimate.from_log(
        log_estimate=b,
        se=se,
        alpha=alpha,
        outcome=outcome,
        measure="IRR",
        method=method,
        details=details,
        **common,
    )


# ----------------------------------------------------------------------------- before/after


def _log_rate(
    y: np.ndarray, e: np.ndarray, w: np.ndarray, sel: np.ndarray
) -> tuple[float, float, float, np.ndarray]:
    """Weighted rate of the rows ``sel`` and each row's influence on its logarithm.

    Returns ``(events, person_years, rate, influence)``: ``rate = sum w y / sum w e`` over
    ``sel`` (NaN without person-time) and ``influence = w (y - rate e) / sum w y`` on the
    rows of ``sel``, 0 elsewhere (0 everywhere without events or person-time, where the
    log-rate is not defined).
    """
    events = float(np.sum(w[sel] * y[sel]))
    person_years = float(np.sum(w[sel] * e[sel]))
    rate = events / person_years if person_years > 0 else float("nan")
    influence = np.zeros(len(y))
    if events > 0 and person_years > 0:
        influence[sel] = w[sel] * (y[sel] - rate * e[sel]) / events
    return events, person_years, rate, influence


class BeforeAfter(NamedTuple):
    """Within-group after/before rate ratios and their ratio.

    Attributes
    ----------
    per_group : tuple of EffectEstimate
        ``rate_ratio_after_vs_before`` for HAT, then OST (``details["group"]``).
    ratio : EffectEstimate
        ``ratio_of_rate_ratios`` (HAT over OST): the difference-in-differences on the
        log-rate scale.
    """

    per_group: tuple[EffectEstimate, EffectEstimate]
    ratio: EffectEstimate


def before_after_ratio(
    df: pd.DataFrame,
    *,
    count_before: str,
    exposure_before: str,
    count_after: str,
    exposure_after: str,
    treatment: str,
    cluster: str | None = None,
    weights: str | None = None,
    alpha: float = 0.05,
    outcome: str = "crime",
    method: str,
) -> BeforeAfter:
    """Change in event rate from before to after index, by group, and its ratio.

    The person-periods (before, after) are stacked and fitted with a Poisson
    generalised estimating equation with independence working correlation,
    ``log rate = b0 + b1 after + b2 HAT + b3 HAT x after`` (weighted when ``weights`` is
    given). This model is saturated, so the estimates are ratios of (weighted) total
    rates: ``exp(b1 + b3)`` and ``exp(b1)`` are the HAT and OST after/before rate
    ratios and ``exp(b3)`` their ratio. The variance is the cluster-robust sandwich
    with persons as clusters (or ``cluster``, e.g. matched sets, which contain the
    persons), so it allows for the correlation of a person's two periods and for
    overdispersion; with the package's small-sample factor ``G / (G - 1)``
    (:mod:`analysis.sandwich`) it equals R's ``sandwich::vcovCL(glm(poisson), cluster =,
    type = "HC0")`` (tests). Fewer than 2 clusters: not estimable; below 30: a note and a
    :class:`analysis.sandwich.FewClustersWarning`.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    count_before, exposure_before : str
        Events and person-years at risk in the period before index (e.g. the 2 years
        before).
    count_after, exposure_after : str
        Events and person-years at risk after index. Both periods must follow the same
        rules of what is at risk (for crime: prison days removed from the person-time and
        charges dated inside a stay not counted, in both), else the ratio mixes a change
        in the rate with a change in the definition.
    treatment : str
        1 = HAT, 0 = OST.
    cluster : str, optional
        Cluster (matched set); default: each person.
    weights : str, optional
        Weights (matching or IPT weights).
    alpha : float
        1 - confidence level.
    outcome, method : str
        Labels of the results.

    Returns
    -------
    BeforeAfter
        ``(per_group, ratio)``; rates per period and group in ``details["rates"]``.
        Persons with zero exposure in a period add nothing to that period's person-time
        (their number and events are in ``details``).

    References
    ----------
    Liang KY, Zeger SL (1986). Biometrika 73:13-22.
    Zeger SL, Liang KY (1986). Biometrics 42:121-130.
    """
    _z(alpha)  # validates alpha
    yb = _column(df, count_before, "count_before")
    eb = _column(df, exposure_before, "exposure_before")
    ya = _column(df, count_after, "count_after")
    ea = _column(df, exposure_after, "exposure_after")
    for arr, name in (
        (yb, count_before),
        (eb, exposure_before),
        (ya, count_after),
        (ea, exposure_after),
    ):
        if (arr < 0).any():
            raise ValueError(f"column {name!r} has negative values")
    a = _binary(df, treatment, "treatment").astype(float)
    w = _weights_array(df, weights)
    codes, n_clusters = _cluster_codes(df, cluster)
    n_treated, n_control = int(a.sum()), int(len(a) - a.sum())
    common = {
        "n_treated": n_treated,
        "n_control": n_control,
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
    rates: dict[str, dict[str, float]] = {}
    log_rr: dict[int, float] = {}
    infl: dict[int, np.ndarray] = {}
    for g, label in ((1, "HAT"), (0, "OST")):
        sel = a == g
        parts = {}
        contrib = np.zeros(len(a))
        for period, y, e, sign in (("before", yb, eb, -1.0), ("after", ya, ea, 1.0)):
            events, py, rate, influence = _log_rate(y, e, w, sel)
            parts[period] = {"events": events, "person_years": py, "rate": rate}
            contrib += sign * influence
        rates[label] = parts
        ok = all(p["events"] > 0 and p["person_years"] > 0 for p in parts.values())
        log_rr[g] = (
            math.log(parts["after"]["rate"] / parts["before"]["rate"]) if ok else float("nan")
        )
        infl[g] = contrib
    base["rates"] = rates

    problem = cluster_check(
        count_clusters(codes), what=f"values of {cluster}" if cluster else "persons"
    )

    def estimate(measure: str, log_est: float, contrib: np.ndarray, extra: dict) -> EffectEstimate:
        details = {**base, **extra}
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
            alpha=alpha,
            outcome=outcome,
            measure=measure,
            method=method,
            details={**details, "se_log": se},
            **common,
        )

    hat = estimate("rate_ratio_after_vs_before", log_rr[1], infl[1], {"group": "HAT"})
    ost = estimate("rate_ratio_after_vs_before", log_rr[0], infl[0], {"group": "OST"})
    ratio = estimate(
        "ratio_of_rate_ratios", log_rr[1] - log_rr[0], infl[1] - infl[0], {"contrast": "HAT / OST"}
    )
    return BeforeAfter(per_group=(hat, ost), ratio=ratio)


def rate_ratio(
    df: pd.DataFrame,
    *,
    count: str,
    exposure: str,
    treatment: str,
    cluster: str | None = None,
    weights: str | None = None,
    alpha: float = 0.05,
    outcome: str = "crime",
    method: str,
) -> EffectEstimate:
    """Ratio of the (weighted) marginal event rates of two groups, with a robust variance.

    ``IRR = (sum_{a=1} w y / sum_{a=1} w t) / (sum_{a=0} w y / sum_{a=0} w t)``: the ratio
    of total events to total person-time, HAT over OST. It is the maximum-likelihood
    estimate of the treatment coefficient of a Poisson regression with treatment only and a
    log person-time offset, used as an estimating equation, so it needs no Poisson (or
    negative-binomial) assumption about the counts: it estimates the ratio of marginal
    rates in the weighted population, which is how the effect among the treated is
    defined for charges (total charges over total person-time at risk under each potential
    outcome). A negative-binomial regression instead weights persons by
    ``1 / (1 + mu_i / theta)``, down-weighting long follow-up, and so targets another
    ratio when the rate ratio varies with follow-up.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    count, exposure : str
        Event count and person-years at risk (>= 0; rows with zero exposure carry no
        information and are dropped, counted in ``details``).
    treatment : str
        1 = HAT, 0 = OST.
    cluster : str, optional
        Cluster (matched set) of the robust variance; default each person its own.
    weights : str, optional
        Matching or IPT weights.
    alpha : float
        1 - confidence level.
    outcome, method : str
        Labels of the result.

    Returns
    -------
    EffectEstimate
        ``measure="IRR"``. ``details``: ``se_log``, ``robust`` (always True),
        ``n_clusters``, ``coefficients`` (``intercept``: log OST rate; the treatment: log
        IRR, as the Poisson regression's), ``rates`` per group (events, person_years,
        rate, weighted), ``n_dropped_zero_exposure``.

    Notes
    -----
    Variance: the cluster-robust (sandwich) variance of the log rate ratio from its
    influence function, ``w_i (y_i - r_a t_i) / sum_{a} w y`` for a person of group
    ``a`` (the difference of the groups' log-rate influences), summed within clusters,
    with the package's small-sample factor ``G / (G - 1)``; the Poisson model-based
    variance is never used, since charges are overdispersed. Not estimable with fewer
    than two clusters or no events in a group (the log ratio is then infinite).

    References
    ----------
    Cameron AC, Trivedi PK (2013). Regression Analysis of Count Data, 2nd ed., ch. 3
    (Poisson quasi-MLE with robust variance). Cambridge.
    Lumley T, Kronmal R, Ma S (2006). Relative risk regression in medical research:
    models, contrasts, estimators and algorithms. UW Biostatistics Working Paper 293.
    """
    _z(alpha)  # validates alpha
    y = _column(df, count, "count")
    if (y < 0).any():
        raise ValueError(f"count column {count!r} has negative values")
    expo = _column(df, exposure, "exposure")
    if (expo < 0).any():
        raise ValueError(f"exposure column {exposure!r} has negative values")
    a = _binary(df, treatment, "treatment")
    w = _weights_array(df, weights)
    codes, _ = _cluster_codes(df, cluster)
    zero_expo = expo == 0
    details: dict[str, Any] = {
        "n_dropped_zero_exposure": int(zero_expo.sum()),
        "events_dropped_zero_exposure": int(y[zero_expo].sum()),
    }
    keep = ~zero_expo & (w > 0)
    y, expo, a, w, codes = y[keep], expo[keep], a[keep], w[keep], codes[keep]
    codes = pd.factorize(codes)[0].astype(np.intp)
    n_treated, n_control = int(a.sum()), int(len(a) - a.sum())
    common = {"n_treated": n_treated, "n_control": n_control, "n_events": int(y.sum())}
    if n_treated == 0 or n_control == 0:
        return _nan_estimate(
            outcome, "IRR", method, "IRR not estimable: one treatment group is empty",
            details=details, **common,
        )  # fmt: skip
    parts = {g: _log_rate(y, expo, w, a == g) for g in (0, 1)}
    events = {g: parts[g][0] for g in (0, 1)}
    years = {g: parts[g][1] for g in (0, 1)}
    if min(events.values()) == 0:
        empty, limit = ("HAT", "0") if events[1] == 0 else ("OST", "infinity")
        return _nan_estimate(
            outcome, "IRR", method,
            f"IRR not estimable: no events in the {empty} group (the IRR would be {limit})",
            details=details, **common,
        )  # fmt: skip
    what = f"values of {cluster}" if cluster else "persons, each its own cluster"
    problem = cluster_check(count_clusters(codes), what=what)
    if problem is not None and problem.startswith("not estimable"):
        return _nan_estimate(outcome, "IRR", method, f"IRR {problem}", details=details, **common)
    rate = {g: parts[g][2] for g in (0, 1)}
    var, n_clusters = cluster_variance(parts[1][3] - parts[0][3], codes, small_sample=True)
    se = float(np.sqrt(var))
    log_irr = math.log(rate[1] / rate[0])
    # SE of the intercept (log OST rate) from the OST influence alone
    se0 = float(np.sqrt(cluster_variance(parts[0][3], codes, small_sample=True)[0]))
    details.update(
        {
            "se_log": se,
            "robust": True,
            "n_clusters": int(n_clusters),
            "coefficients": {
                "intercept": {"coef": math.log(rate[0]), "se": se0},
                treatment: {"coef": log_irr, "se": se},
            },
            "rates": {
                label: {"events": events[g], "person_years": years[g], "rate": rate[g]}
                for g, label in ((1, "HAT"), (0, "OST"))
            },
            "weighted": weights is not None,
        }
    )
    if problem:
        details["note"] = problem
    return EffectEstimate.from_log(
        log_estimate=log_irr,
        se=se,
        alpha=alpha,
        outcome=outcome,
        measure="IRR",
        method=method,
        details=details,
        **common,
    )
