"""Frozen, typed results shared by every estimator."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["EffectEstimate"]


def _clean(value: Any) -> Any:
    """Make a value JSON-safe: NaN and infinities become ``None``, numpy scalars plain."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class EffectEstimate:
    """One comparison of a treated group with its controls: the result of every estimator.

    Attributes
    ----------
    outcome : str
        The outcome's name (the study's, e.g. ``mortality``; a generic estimator uses its
        outcome column's name).
    measure : str
        ``HR``, ``IRR``, ``RR_12m``, ``RD_12m``, ``RMST_diff``, ``mean_diff``... (the registry is
        :mod:`analysis.data.measures`).
    method : str
        ``<model>_<design>`` as the caller labels it, e.g. ``cox_matched``, ``cox_iptw``.
    estimate, ci_low, ci_high : float
        Point estimate and confidence interval on the natural scale of the measure.
    p_value : float
        Two-sided p-value for no effect.
    se : float
        Standard error on the scale the interval was built on (log scale for ratios).
    n_treated, n_control : int
        Persons in each group that entered the model.
    n_events : int or None
        Events (deaths, discontinuations, charges) that entered the model.
    primary : bool
        Whether this is the pre-specified primary estimate for its outcome.
    truth : float or None
        The true value of the same estimand, when known (synthetic data).
    details : dict
        Method-specific extras (e.g. proportional-hazards test, dispersion).
    estimand : str or None
        From a version-2 (history) extract: ``itt`` (intention to treat) or
        ``per_protocol``; ``None`` (and left out of :meth:`to_dict`) for version 1.
    """

    outcome: str
    measure: str
    method: str
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float = float("nan")
    n_treated: int = 0
    n_control: int = 0
    n_events: int | None = None
    primary: bool = False
    truth: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    estimand: str | None = None

    @classmethod
    def from_log(
        cls, *, log_estimate: float, se: float, alpha: float = 0.05, **fields: Any
    ) -> EffectEstimate:
        """A ratio estimate from its log and the SE of the log: Wald CI and p-value.

        Parameters
        ----------
        log_estimate, se : float
            The log of the ratio and its standard error.
        alpha : float
            1 - confidence level.
        **fields
            The other attributes (``outcome``, ``measure``, ``method``, counts, ``details``).
        """
        from scipy import stats

        z = float(stats.norm.ppf(1 - alpha / 2))
        ok = math.isfinite(log_estimate) and math.isfinite(se) and se > 0
        p = float(2 * stats.norm.sf(abs(log_estimate / se))) if ok else float("nan")
        return cls(
            estimate=math.exp(log_estimate),
            ci_low=math.exp(log_estimate - z * se),
            ci_high=math.exp(log_estimate + z * se),
            p_value=p,
            se=se,
            **fields,
        )

    def with_truth(self, truth: float | None) -> EffectEstimate:
        """Return a copy with ``truth`` set."""
        return replace(self, truth=truth)

    def with_primary(self, primary: bool = True) -> EffectEstimate:
        """Return a copy with ``primary`` set."""
        return replace(self, primary=primary)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (NaN becomes ``null``; no ``estimand`` key when it is ``None``)."""
        out = asdict(self)
        if out["estimand"] is None:
            del out["estimand"]
        return _clean(out)
