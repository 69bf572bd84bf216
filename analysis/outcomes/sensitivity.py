"""Sensitivity to unmeasured confounding: E-values.

The E-value is the minimum strength of association, on the risk-ratio scale, that an
unmeasured confounder would need with both treatment and outcome, above the measured
covariates, to fully explain away the observed association.

A hazard ratio approximates a risk ratio only for a rare outcome. Whether an outcome is
rare is decided from the data: its cumulative incidence by the end of follow-up
(Kaplan–Meier 1 - S, :func:`incidence_at_end`) above 15% makes it common, and the hazard
ratio is then converted (VanderWeele 2020). The incidence is the overall one, of both
arms together: the rule of VanderWeele & Ding (2017) and of the EValue package speaks of
the outcome's prevalence by the end of follow-up in the study, and VanderWeele (2020)
derives the conversions from the range of the outcome probabilities, not from one arm.

References
----------
VanderWeele TJ, Ding P (2017). Sensitivity analysis in observational research:
introducing the E-value. Ann Intern Med 167:268-274.
VanderWeele TJ (2020). Optimal approximate conversions of odds ratios and hazard ratios
to risk ratios. Biometrics 76:746-752.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from analysis._checks import binary, durations, weights_array
from analysis.outcomes._product_limit import product_limit as _product_limit
from analysis.results import _clean

__all__ = ["COMMON_OUTCOME_INCIDENCE", "EValue", "e_value", "incidence_at_end"]

#: measures read as risk ratios (rate ratios are treated as risk ratios, as in the paper)
_RISK_RATIO_MEASURES = ("RR", "IRR", "ratio_of_rate_ratios")

#: cumulative incidence by the end of follow-up above which an outcome is common
#: (VanderWeele & Ding 2017; VanderWeele 2020)
COMMON_OUTCOME_INCIDENCE = 0.15


@dataclass(frozen=True, kw_only=True)
class EValue:
    """E-values of one estimate.

    Attributes
    ----------
    measure : str
        Measure of the estimate (``HR``, ``RR``, ``IRR``, ``OR``, ``RR_12m``...).
    estimate, ci_low, ci_high : float
        The estimate and its interval as given.
    rr, rr_ci_low, rr_ci_high : float
        The same on the risk-ratio scale (after conversion, if any).
    point : float
        E-value of the point estimate.
    ci : float or None
        E-value of the confidence limit closer to 1 (1 when the interval includes 1;
        None when no interval was given).
    rare : bool or None
        Whether the outcome was taken as rare (``None`` for risk and rate ratios, which
        need no conversion).
    rare_rule : str
        How ``rare`` was decided: from the cumulative incidence (with its value and the
        threshold), given by the caller, or not needed.
    incidence : float or None
        The cumulative incidence by the end of follow-up the decision used, if any.
    conversion : str
        How the measure was put on the risk-ratio scale.
    """

    measure: str
    estimate: float
    ci_low: float | None
    ci_high: float | None
    rr: float
    rr_ci_low: float | None
    rr_ci_high: float | None
    point: float
    ci: float | None
    rare: bool | None
    rare_rule: str
    incidence: float | None
    conversion: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary (NaN becomes ``null``)."""
        return _clean(asdict(self))


def _e(rr: float) -> float:
    """E-value of a risk ratio: RR + sqrt(RR (RR - 1)), after inverting RR < 1."""
    if not math.isfinite(rr) or rr <= 0:
        return float("nan")
    if rr < 1:
        rr = 1 / rr
    return rr + math.sqrt(rr * (rr - 1))


def _hr_to_rr(hr: float) -> float:
    """VanderWeele (2020) conversion of a hazard ratio for a common outcome."""
    return (1 - 0.5 ** math.sqrt(hr)) / (1 - 0.5 ** math.sqrt(1 / hr))


def incidence_at_end(
    df: pd.DataFrame, *, duration: str, event: str, weights: str | None = None
) -> float:
    """Cumulative incidence of an event by the end of follow-up: Kaplan–Meier 1 - S.

    Parameters
    ----------
    df : DataFrame
        One row per person (for a comparison, both arms: the incidence is the overall
        one, as in the rare-outcome rule of VanderWeele & Ding 2017).
    duration, event : str
        Follow-up time (>= 0) and event indicator (0/1).
    weights : str, optional
        Weights (matching or IPT weights), giving the weighted Kaplan–Meier curve.

    Returns
    -------
    float
        ``1 - S(t_max)`` with ``t_max`` the largest follow-up time among rows with a
        positive weight (NaN when there is none).
    """
    t = durations(df, duration, "duration")
    e = binary(df, event, "event")
    w = weights_array(df, weights)
    keep = w > 0
    if not keep.any():
        return float("nan")
    pl = _product_limit(t[keep], e[keep], w[keep])
    return float(1.0 - pl.survival[-1]) if len(pl.survival) else float("nan")


def _rare_from_incidence(incidence: float, threshold: float) -> tuple[bool, str]:
    if not math.isfinite(incidence):
        return False, (
            "cumulative incidence not estimable: taken as common, whose conversion gives the "
            "smaller (conservative) E-value"
        )
    common = incidence > threshold
    return not common, (
        f"cumulative incidence by the end of follow-up {incidence:.3f} "
        f"{'>' if common else '<='} {threshold:g}: {'common' if common else 'rare'} outcome"
    )


def _rarity(
    kind: str, rare: bool | None, incidence: float | None, threshold: float
) -> tuple[bool | None, str]:
    """Whether the outcome is taken as rare, and the rule that decided it."""
    if kind == "RR":
        return None, "not needed: risk or rate ratio"
    if incidence is not None:
        return _rare_from_incidence(float(incidence), threshold)
    if rare is not None:
        return rare, f"given: {'rare' if rare else 'common'} outcome"
    return True, "assumed rare (no incidence given)"


def _conversion(kind: str, rare: bool | None) -> tuple[Callable[[float], float], str]:
    """The map of a ``kind`` ratio onto the risk-ratio scale, and its description."""
    if kind == "RR" or rare:
        return float, "none" if kind == "RR" else f"rare outcome: {kind} ~ RR"
    if kind == "HR":
        return _hr_to_rr, "common outcome: VanderWeele (2020) HR conversion"
    return math.sqrt, "common outcome: RR ~ sqrt(OR)"


def _ci_e_value(rr: float, lo: float | None, hi: float | None) -> float | None:
    """E-value of the confidence limit closer to 1 (1 when the interval holds 1)."""
    if not math.isfinite(rr):
        return float("nan") if (lo is not None or hi is not None) else None
    if rr > 1:
        return None if lo is None else (1.0 if lo <= 1 else _e(lo))
    if rr < 1:
        return None if hi is None else (1.0 if hi >= 1 else _e(hi))
    return None if lo is None and hi is None else 1.0


# long: the docstring (conversions, rarity rule, an example); the code is ~45 lines
def e_value(
    estimate: float,
    ci_low: float | None = None,
    ci_high: float | None = None,
    *,
    measure: str,
    rare: bool | None = None,
    incidence: float | None = None,
    threshold: float = COMMON_OUTCOME_INCIDENCE,
) -> EValue:
    """E-value for a ratio estimate and its confidence interval.

    Parameters
    ----------
    estimate : float
        Ratio estimate (> 0).
    ci_low, ci_high : float, optional
        Confidence limits.
    measure : str
        ``RR`` (also ``RR_<t>`` such as ``RR_12m``), ``IRR``, ``ratio_of_rate_ratios``,
        ``HR`` or ``OR``.
    rare : bool, optional
        Whether the outcome is rare, when the caller knows. Only matters for ``HR`` and
        ``OR``: a rare-outcome HR or OR approximates the RR; for a common outcome the HR
        is converted with ``RR = (1 - 0.5**sqrt(HR)) / (1 - 0.5**sqrt(1/HR))``
        (VanderWeele 2020) and the OR with ``RR = sqrt(OR)`` (VanderWeele 2017). Risk
        and rate ratios need no conversion.
    incidence : float, optional
        Cumulative incidence of the outcome by the end of follow-up (for instance
        :func:`incidence_at_end` on both arms); the outcome is common when it is above
        ``threshold`` and rare otherwise. Give ``rare`` or ``incidence``, not both; with
        neither an HR or OR is taken as rare (the rule says so).
    threshold : float
        Incidence above which the outcome is common (default 0.15, the rule of
        VanderWeele & Ding 2017 and of the EValue package: rare means under 15% by the
        end of follow-up).

    Returns
    -------
    EValue
        ``point`` = RR + sqrt(RR (RR - 1)) for RR > 1 (RR inverted first when below 1);
        ``ci`` = the same for the limit closer to 1, or 1 when the interval includes 1;
        ``rare_rule`` and ``incidence`` record how rarity was decided.

    Examples
    --------
    VanderWeele & Ding (2017): formula feeding and respiratory death, RR 3.9
    (1.8 to 8.7): E-values 7.26 and 3.00.

    >>> ev = e_value(3.9, 1.8, 8.7, measure="RR")
    >>> round(ev.point, 2), round(ev.ci, 2)
    (7.26, 3.0)

    References
    ----------
    VanderWeele TJ, Ding P (2017). Ann Intern Med 167:268-274.
    VanderWeele TJ (2017). On a square-root transformation of the odds ratio for a common
    outcome. Epidemiology 28:e58-e60.
    VanderWeele TJ (2020). Biometrics 76:746-752.
    """
    kind = measure
    if measure.startswith("RR_") or measure in _RISK_RATIO_MEASURES:
        kind = "RR"
    if kind not in ("RR", "HR", "OR"):
        raise ValueError(
            f"E-values are defined here for risk, rate, hazard and odds ratios, not {measure!r}"
        )
    if rare is not None and incidence is not None:
        raise ValueError("give rare or incidence, not both")
    rare, rule = _rarity(kind, rare, incidence, threshold)
    convert, conversion = _conversion(kind, rare)

    def on_rr(v: float | None) -> float | None:
        if v is None or not math.isfinite(v) or v <= 0:
            return None if v is None else float("nan")
        return float(convert(v))

    rr = on_rr(estimate)
    rr = float("nan") if rr is None else rr
    lo, hi = on_rr(ci_low), on_rr(ci_high)
    point = _e(rr)
    ci = _ci_e_value(rr, lo, hi)
    return EValue(
        measure=measure,
        estimate=float(estimate),
        ci_low=None if ci_low is None else float(ci_low),
        ci_high=None if ci_high is None else float(ci_high),
        rr=rr,
        rr_ci_low=lo,
        rr_ci_high=hi,
        point=point,
        ci=ci,
        rare=rare,
        rare_rule=rule,
        incidence=None if incidence is None else float(incidence),
        conversion=conversion,
    )
