"""Rubin's rules: one estimate from the analyses of ``m`` imputed datasets.

:func:`rubin_pool` combines ``m`` estimates of a scalar and their variances: the mean
estimate, the within- and between-imputation variances, the total variance, the relative
increase in variance due to nonresponse, the fraction of missing information and Barnard
and Rubin's small-sample degrees of freedom. :func:`pool_estimates` pools
:class:`~analysis.results.EffectEstimate` objects of the ``m`` datasets: ratios on the log
scale (the scale of their standard errors), differences on their natural scale, with a
t-based interval and p-value.

References
----------
Rubin DB (1987). *Multiple Imputation for Nonresponse in Surveys*. Wiley (eqs 3.1.2-3.1.8).

Barnard J, Rubin DB (1999). Small-sample degrees of freedom with multiple imputation.
*Biometrika* 86(4):948-955.

van Buuren S (2018). *Flexible Imputation of Missing Data*, 2nd ed. CRC Press, section
2.3 (``riv``, ``lambda``, ``fmi`` as in R's ``mice::pool``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from analysis.data.measures import is_ratio
from analysis.results import EffectEstimate

__all__ = ["PooledEstimate", "pool_estimates", "rubin_pool"]


@dataclass(frozen=True, kw_only=True)
class PooledEstimate:
    """A scalar pooled by Rubin's rules.

    Attributes
    ----------
    estimate : float
        Mean of the ``m`` estimates (``Q-bar``).
    within : float
        Mean of the ``m`` variances (``U-bar``).
    between : float
        Variance of the ``m`` estimates (``B``, divisor ``m - 1``).
    total : float
        ``T = U-bar + (1 + 1/m) B``.
    m : int
        Number of imputed datasets.
    riv : float
        Relative increase in variance due to nonresponse, ``(1 + 1/m) B / U-bar``.
    lambda_ : float
        Proportion of the total variance due to nonresponse, ``(1 + 1/m) B / T``.
    df : float
        Barnard–Rubin degrees of freedom (``inf`` when ``B`` is 0 and the complete-data
        degrees of freedom are infinite).
    fmi : float
        Fraction of missing information, ``(riv + 2 / (df + 3)) / (1 + riv)``.
    """

    estimate: float
    within: float
    between: float
    total: float
    m: int
    riv: float
    lambda_: float
    df: float
    fmi: float

    @property
    def se(self) -> float:
        """Square root of the total variance."""
        return math.sqrt(self.total)

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """The ``1 - alpha`` interval ``estimate +/- t(df) sqrt(T)``."""
        q = (
            float(stats.t.ppf(1 - alpha / 2, self.df))
            if np.isfinite(self.df)
            else float(stats.norm.ppf(1 - alpha / 2))
        )
        return self.estimate - q * self.se, self.estimate + q * self.se

    def p_value(self, null: float = 0.0) -> float:
        """Two-sided p-value of ``(estimate - null) / sqrt(T)`` against ``t(df)``."""
        if not self.total > 0:
            return float("nan")
        z = abs(self.estimate - null) / self.se
        return float(2 * (stats.t.sf(z, self.df) if np.isfinite(self.df) else stats.norm.sf(z)))

    def to_dict(self) -> dict[str, float]:
        """Plain dictionary of the attributes (``lambda_`` written as ``lambda``)."""
        out = asdict(self)
        out["lambda"] = out.pop("lambda_")
        return out


def rubin_pool(
    estimates: Sequence[float] | np.ndarray,
    variances: Sequence[float] | np.ndarray,
    *,
    df_complete: float = math.inf,
) -> PooledEstimate:
    """Pool ``m`` estimates of a scalar and their variances by Rubin's rules.

    Parameters
    ----------
    estimates : sequence of float
        The estimate in each imputed dataset (on the scale where it is about normal,
        e.g. a log hazard ratio).
    variances : sequence of float
        Its variance in each imputed dataset.
    df_complete : float
        Degrees of freedom of the complete-data analysis (``inf`` for a large-sample
        analysis; for a cluster-robust variance, the number of clusters minus one).

    Returns
    -------
    PooledEstimate

    Raises
    ------
    ValueError
        Fewer than two estimates, lengths that differ, or a value that is not finite.

    References
    ----------
    Rubin DB (1987). *Multiple Imputation for Nonresponse in Surveys*. Wiley.

    Barnard J, Rubin DB (1999). Small-sample degrees of freedom with multiple
    imputation. *Biometrika* 86:948-955.

    Examples
    --------
    >>> p = rubin_pool([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])
    >>> p.estimate, p.between, round(p.total, 4)
    (2.0, 1.0, 1.8333)
    """
    q = np.asarray(estimates, dtype=np.float64)
    u = np.asarray(variances, dtype=np.float64)
    if q.ndim != 1 or q.shape != u.shape:
        raise ValueError("estimates and variances must be 1-d and of the same length")
    if len(q) < 2:
        raise ValueError("Rubin's rules need at least two imputed datasets")
    if not (np.isfinite(q).all() and np.isfinite(u).all()):
        raise ValueError("estimates and variances must be finite")
    m = len(q)
    qbar, ubar, b = float(q.mean()), float(u.mean()), float(q.var(ddof=1))
    total = ubar + (1 + 1 / m) * b
    riv = (1 + 1 / m) * b / ubar if ubar > 0 else math.inf
    lam = (1 + 1 / m) * b / total if total > 0 else 0.0
    df = _barnard_rubin_df(m, lam, df_complete)
    fmi = (riv + 2 / (df + 3)) / (1 + riv) if math.isfinite(riv) else 1.0
    return PooledEstimate(estimate=qbar, within=ubar, between=b, total=total, m=m,
                          riv=riv, lambda_=lam, df=df, fmi=fmi)  # fmt: skip


def _barnard_rubin_df(m: int, lam: float, df_complete: float) -> float:
    """Barnard & Rubin (1999) degrees of freedom (Rubin 1987's ``(m-1)/lambda^2`` if infinite)."""
    df_old = (m - 1) / lam**2 if lam > 0 else math.inf
    if not math.isfinite(df_complete):
        return df_old
    df_obs = (df_complete + 1) / (df_complete + 3) * df_complete * (1 - lam)
    if not math.isfinite(df_old):
        return df_obs
    return df_old * df_obs / (df_old + df_obs)


def pool_estimates(
    estimates: Sequence[EffectEstimate],
    *,
    method: str,
    alpha: float = 0.05,
    df_complete: float | None = None,
) -> EffectEstimate:
    """Pool the same estimate of ``m`` imputed datasets (Rubin's rules).

    Ratios (:func:`analysis.data.measures.is_ratio`) are pooled on the log scale with
    the SE of the log (``se``); differences on their own scale with ``se``. The
    interval and p-value use Barnard–Rubin's t distribution; counts are the means over
    the datasets (rounded).

    Parameters
    ----------
    estimates : sequence of EffectEstimate
        One per imputed dataset, same outcome and measure.
    method : str
        The pooled estimate's method (``<model>_<design>``, e.g. ``cox_matched_mi``).
    alpha : float
        1 - confidence level.
    df_complete : float, optional
        Complete-data degrees of freedom (default: the mean number of clusters minus
        one, from ``details["n_clusters"]``, else infinite).

    Returns
    -------
    EffectEstimate
        With ``details``: ``pooling`` (:meth:`PooledEstimate.to_dict`), ``estimates``
        (the ``m`` estimates, on the pooled scale), ``n_not_estimable`` and a ``note``
        when fewer than two datasets gave an estimate.
    """
    first = estimates[0]
    if any((e.outcome, e.measure) != (first.outcome, first.measure) for e in estimates):
        raise ValueError("pool_estimates: every estimate must be of the same outcome and measure")
    ratio = is_ratio(first.measure)
    ok = [e for e in estimates if _finite(e, ratio)]
    q = [math.log(e.estimate) if ratio else e.estimate for e in ok]
    fields = {
        "outcome": first.outcome,
        "measure": first.measure,
        "method": method,
        "n_treated": _mean_count([e.n_treated for e in estimates]),
        "n_control": _mean_count([e.n_control for e in estimates]),
        "n_events": _mean_count([e.n_events for e in estimates]),
    }
    details: dict = {"n_imputations": len(estimates), "n_not_estimable": len(estimates) - len(ok)}
    if len(ok) < 2:
        reasons = [e.details.get("note") for e in estimates if e not in ok]
        reason = next((r for r in reasons if isinstance(r, str) and r), None)
        details["note"] = "fewer than two imputed datasets gave an estimate" + (
            f" ({reason})" if reason else ""
        )
        nan = float("nan")
        return EffectEstimate(estimate=nan, ci_low=nan, ci_high=nan, p_value=nan,
                              details=details, **fields)  # fmt: skip
    if df_complete is None:
        clusters = [e.details.get("n_clusters") for e in ok]
        df_complete = (
            float(np.mean(clusters)) - 1 if all(c is not None for c in clusters) else math.inf
        )
    pooled = rubin_pool(q, [e.se**2 for e in ok], df_complete=df_complete)
    low, high = pooled.interval(alpha)
    transform = math.exp if ratio else float
    details.update(pooling=pooled.to_dict(), estimates=[float(v) for v in q])
    return EffectEstimate(
        estimate=transform(pooled.estimate),
        ci_low=transform(low),
        ci_high=transform(high),
        p_value=pooled.p_value(),
        se=pooled.se,
        details=details,
        **fields,
    )


def _finite(e: EffectEstimate, ratio: bool) -> bool:
    ok = math.isfinite(e.estimate) and math.isfinite(e.se) and e.se > 0
    return ok and (e.estimate > 0 if ratio else True)


def _mean_count(values: Sequence[int | None]) -> int | None:
    if any(v is None for v in values):
        return None
    return int(round(float(np.mean(values))))
