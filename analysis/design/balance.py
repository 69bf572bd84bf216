"""Covariate balance between treated and controls: SMD, variance ratio, ESS.

Balance is judged on the same expanded covariates the propensity model sees
(:func:`analysis.design.missing.design_matrix`: every level of a categorical covariate,
missing indicators, the same transformations), before and after matching or weighting.

The standardised mean difference (SMD) divides the difference in (weighted) means
by the pooled SD of the *unweighted* treated and control groups of a reference
sample, normally the full cohort before matching (Austin 2009; Stuart 2010): the
yardstick is held fixed, so a change in SMD reflects a change in the mean
difference, not in the spread. A common rule of thumb calls ``|SMD| < 0.1``
balanced (Austin 2009) and a variance ratio between 0.5 and 2 acceptable (Rubin
2001).

References
----------
Austin PC (2009). Balance diagnostics for comparing the distribution of baseline
covariates between treatment groups in propensity-score matched samples. *Stat
Med* 28(25):3083-3107.

Austin PC, Stuart EA (2015). Moving towards best practice when using inverse
probability of treatment weighting (IPTW) using the propensity score to estimate
causal treatment effects in observational studies. *Stat Med* 34(28):3661-3679.

Rubin DB (2001). Using propensity scores to help design observational studies:
application to the tobacco litigation. *Health Serv Outcomes Res Methodol*
2:169-188.

Stuart EA (2010). Matching methods for causal inference: a review and a look
forward. *Stat Sci* 25(1):1-21.

Kish L (1965). *Survey Sampling*. New York: Wiley.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis._checks import binary, require_columns
from analysis.design.missing import DesignSpec, fit_design

__all__ = [
    "SMD_THRESHOLD",
    "BalanceReference",
    "BalanceSummary",
    "balance_reference",
    "balance_summary",
    "balance_table",
    "compare_balance",
    "effective_sample_size",
]

#: |SMD| below which a covariate is called balanced (Austin 2009)
SMD_THRESHOLD = 0.1


def effective_sample_size(weights: np.ndarray | pd.Series | Sequence[float]) -> float:
    """Kish effective sample size, ``(sum w)^2 / sum w^2``.

    Parameters
    ----------
    weights : array-like
        Non-negative weights.

    Returns
    -------
    float
        ``nan`` if there are no weights or all are 0.

    References
    ----------
    Kish L (1965). *Survey Sampling*. New York: Wiley.

    Examples
    --------
    >>> effective_sample_size([1, 1, 1, 1])
    4.0
    >>> effective_sample_size([2, 0, 0, 0])
    1.0
    """
    w = np.asarray(weights, dtype=np.float64)
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else float("nan")


def _weighted_mean_var(X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and unbiased (reliability-weight) variances; unit weights give ddof=1."""
    sw = w.sum()
    if sw <= 0:
        nan = np.full(X.shape[1], np.nan)
        return nan, nan
    mean = w @ X / sw
    dev = X - mean
    ss = w @ np.square(dev, out=dev)  # squared in place: one temporary of X's size, not two
    denom = sw - (w @ w) / sw
    var = ss / denom if denom > 0 else np.full(X.shape[1], np.nan)
    return mean, var


def _weights(df: pd.DataFrame, weights: str | np.ndarray | pd.Series | None) -> np.ndarray:
    """Weights as an array (ones without ``weights``): non-negative, one per row."""
    if weights is None:
        return np.ones(len(df))
    if isinstance(weights, str):
        require_columns(df, weights=weights)
    w = np.asarray(df[weights] if isinstance(weights, str) else weights, dtype=np.float64)
    if w.shape != (len(df),) or np.isnan(w).any() or (w < 0).any():
        raise ValueError("weights must be non-negative, one per row, without missing values")
    return w


@dataclass(frozen=True, eq=False)
class BalanceReference:
    """The reference sample of :func:`balance_table`, expanded once.

    Built by :func:`balance_reference`; pass it as ``reference`` to describe several samples
    (before matching, after matching, after weighting) against one yardstick without
    expanding the reference and computing its SDs again for each.

    Attributes
    ----------
    data : DataFrame
        The reference sample.
    design : DataFrame
        Its design matrix (every level kept).
    treated : ndarray of bool
        Treated rows of ``data``.
    sd_pooled : ndarray
        The SMD denominator of each design column (unweighted groups of ``data``).
    binary : ndarray of bool
        Design columns holding only 0 and 1 in ``data``.
    covariates : tuple of str
        The covariates, with the ``transforms`` and ``levels`` of the expansion.
    transforms, levels : mapping or None
    spec : DesignSpec
        The expansion's levels, fill values, knots and columns, fitted on ``data``: other
        samples are expanded with it (:meth:`analysis.design.missing.DesignSpec.transform`).
    """

    data: pd.DataFrame
    design: pd.DataFrame
    treated: np.ndarray
    sd_pooled: np.ndarray
    binary: np.ndarray
    covariates: tuple[str, ...]
    transforms: Mapping[str, str] | None
    levels: Mapping[str, Sequence[str]] | None
    spec: DesignSpec


def balance_reference(
    reference: pd.DataFrame,
    *,
    treatment: str,
    covariates: Sequence[str],
    transforms: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
) -> BalanceReference:
    """Expand the reference sample of :func:`balance_table` once.

    Parameters
    ----------
    reference : DataFrame
        Sample whose *unweighted* groups give the SMD denominator, the levels, fill values
        and columns (normally the full cohort).
    treatment, covariates, transforms, levels
        As for :func:`balance_table`.

    Returns
    -------
    BalanceReference
    """
    tr = binary(reference, treatment, "treatment") == 1
    options = {"transforms": transforms, "levels": levels, "drop_first": False}
    spec, design = fit_design(reference, covariates, **options)
    R = design.to_numpy()
    _, rv_t = _weighted_mean_var(R[tr], np.ones(int(tr.sum())))
    _, rv_c = _weighted_mean_var(R[~tr], np.ones(int((~tr).sum())))
    return BalanceReference(
        data=reference,
        design=design,
        treated=tr,
        sd_pooled=np.sqrt((np.nan_to_num(rv_t) + np.nan_to_num(rv_c)) / 2),
        binary=np.array([bool(np.isin(R[:, j], (0.0, 1.0)).all()) for j in range(R.shape[1])]),
        covariates=tuple(covariates),
        transforms=transforms,
        levels=levels,
        spec=spec,
    )


def _reference(
    df: pd.DataFrame,
    reference: pd.DataFrame | BalanceReference | None,
    treatment: str,
    covariates: Sequence[str],
    transforms: Mapping[str, str] | None,
    levels: Mapping[str, Sequence[str]] | None,
) -> BalanceReference:
    """``reference`` as a :class:`BalanceReference` (checked against the arguments)."""
    if not isinstance(reference, BalanceReference):
        return balance_reference(
            df if reference is None else reference,
            treatment=treatment,
            covariates=covariates,
            transforms=transforms,
            levels=levels,
        )
    given = (tuple(covariates), dict(transforms or {}), dict(levels or {}))
    built = (reference.covariates, dict(reference.transforms or {}), dict(reference.levels or {}))
    if given != built:
        raise ValueError(
            "reference: a BalanceReference built with other covariates, transforms or levels"
        )
    return reference


# over 80 lines only by its numpydoc docstring (the code is under 60)
def balance_table(
    df: pd.DataFrame,
    *,
    treatment: str,
    covariates: Sequence[str],
    weights: str | np.ndarray | pd.Series | None = None,
    reference: pd.DataFrame | None = None,
    transforms: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Balance of each expanded covariate between treated and controls.

    Parameters
    ----------
    df : DataFrame
        The sample to describe (full cohort, matched sample or weighted cohort).
    treatment : str
        0/1 column, 1 = treated.
    covariates : sequence of str
        Covariates, expanded by :func:`analysis.design.missing.design_matrix` with every
        level of a categorical covariate kept and missing indicators added.
    weights : str or array-like, optional
        Column name or values (row order of ``df``): matching or IPT weights.
    reference : DataFrame or BalanceReference, optional
        Sample whose *unweighted* groups give the SMD denominator, the levels, fill
        values and columns (default: ``df``). Pass the full cohort when describing a
        matched or weighted sample, so SMDs before and after share one yardstick; pass
        its :func:`balance_reference` (built with the same ``covariates``,
        ``transforms`` and ``levels``) to describe several samples against it without
        expanding it again each time (``df`` may then be the reference's own data).
    transforms, levels : mapping, optional
        Transformations and level orders of the covariates, as in
        :func:`analysis.design.missing.design_matrix` (pass those of the propensity
        model, so balance is judged on the columns the model sees).

    Returns
    -------
    DataFrame
        One row per expanded covariate, in design order: ``variable``,
        ``covariate`` (its source), ``binary`` (0/1 column), ``mean_treated``,
        ``mean_control`` (weighted), ``sd_pooled`` (the SMD denominator),
        ``smd`` = (mean_treated - mean_control) / sd_pooled, ``variance_ratio``
        (weighted variance treated / control; less informative for binary
        columns).

    Raises
    ------
    analysis._checks.ColumnError
        A column named by ``treatment``, ``covariates`` or ``weights`` is not in the
        data (or in ``reference``).
    ValueError
        The treatment column is not 0/1 or has missing values; negative or missing
        weights; a :class:`BalanceReference` built with other covariates, transforms or
        levels.

    Notes
    -----
    ``sd_pooled = sqrt((s_t^2 + s_c^2) / 2)`` from the reference sample (unweighted,
    ``ddof=1``). Weighted variances use reliability weights,
    ``sum w (x - m)^2 / (sum w - sum w^2 / sum w)``, which reduce to ``ddof=1``
    with unit weights. A covariate with ``sd_pooled`` 0 (each group constant) has
    SMD ``+-inf`` if the means differ, else 0.

    References
    ----------
    Austin PC (2009). Balance diagnostics for comparing the distribution of baseline
    covariates between treatment groups in propensity-score matched samples. *Stat
    Med* 28:3083-3107.

    Austin PC, Stuart EA (2015). Moving towards best practice when using inverse
    probability of treatment weighting (IPTW) using the propensity score to
    estimate causal treatment effects in observational studies. *Stat Med*
    34:3661-3679.
    """
    t = binary(df, treatment, "treatment") == 1
    w = _weights(df, weights)
    ref = _reference(df, reference, treatment, covariates, transforms, levels)
    X = ref.design if df is ref.data else ref.spec.transform(df)
    if list(ref.design.columns) != list(X.columns):  # pragma: no cover - by design_matrix
        raise ValueError("reference and data expand to different columns")
    A = X.to_numpy()
    m_t, v_t = _weighted_mean_var(A[t], w[t])
    m_c, v_c = _weighted_mean_var(A[~t], w[~t])
    sd = ref.sd_pooled
    diff = m_t - m_c
    with np.errstate(divide="ignore", invalid="ignore"):
        smd = np.where(sd > 0, diff / sd, np.where(diff == 0, 0.0, np.sign(diff) * np.inf))
        vr = v_t / v_c
    source = X.attrs.get("source", {})
    return pd.DataFrame(
        {
            "variable": X.columns,
            "covariate": [source.get(c, c) for c in X.columns],
            "binary": [bool(b) for b in ref.binary],
            "mean_treated": m_t,
            "mean_control": m_c,
            "sd_pooled": sd,
            "smd": smd,
            "variance_ratio": vr,
        }
    )


def compare_balance(
    before: pd.DataFrame,
    after: pd.DataFrame,
    *,
    treatment: str,
    covariates: Sequence[str],
    weights: str | np.ndarray | pd.Series | None = None,
    transforms: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
) -> pd.DataFrame:
    """Balance before and after matching or weighting, side by side.

    Parameters
    ----------
    before : DataFrame
        The unadjusted sample (the full cohort); also the reference for the SMD
        denominator and the expanded columns.
    after : DataFrame
        The matched sample (or the weighted cohort).
    treatment : str
        0/1 column.
    covariates : sequence of str
        Covariates as for :func:`balance_table`.
    weights : str or array-like, optional
        Weights of ``after`` (matching or IPT weights).
    transforms, levels : mapping, optional
        As for :func:`balance_table`.

    Returns
    -------
    DataFrame
        One row per expanded covariate: ``variable``, ``covariate``, ``binary``,
        ``sd_pooled``, then ``mean_treated``, ``mean_control``, ``smd``,
        ``variance_ratio`` each with suffix ``_before`` and ``_after``.

    References
    ----------
    Austin PC (2009). Balance diagnostics for comparing the distribution of baseline
    covariates between treatment groups in propensity-score matched samples. *Stat
    Med* 28:3083-3107.
    """
    keys = ["variable", "covariate", "binary", "sd_pooled"]
    stats = ["mean_treated", "mean_control", "smd", "variance_ratio"]
    spec: dict[str, Any] = {
        "treatment": treatment,
        "covariates": covariates,
        "transforms": transforms,
        "levels": levels,
    }
    ref = balance_reference(before, **spec)
    b = balance_table(before, **spec, reference=ref)
    a = balance_table(after, **spec, weights=weights, reference=ref)
    out = b[keys].copy()
    for name, tab in (("before", b), ("after", a)):
        for s in stats:
            out[f"{s}_{name}"] = tab[s].to_numpy()
    return out


@dataclass(frozen=True, kw_only=True)
class BalanceSummary:
    """Headline balance numbers of a design.

    Attributes
    ----------
    max_abs_smd_before, max_abs_smd_after : float
        Largest ``|SMD|`` over the expanded covariates.
    worst_variable : str
        The covariate with the largest ``|SMD|`` after.
    n_imbalanced : int
        Covariates with ``|SMD| >= threshold`` after.
    n_variance_ratio_outside : int
        Non-binary covariates with variance ratio outside [0.5, 2] after.
    threshold : float
        The ``|SMD|`` threshold.
    share_treated_matched : float
        Share of treated persons in the matched sample (``nan`` if not given).
    """

    max_abs_smd_before: float
    max_abs_smd_after: float
    worst_variable: str
    n_imbalanced: int
    n_variance_ratio_outside: int
    threshold: float
    share_treated_matched: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary."""
        return dict(self.__dict__)


def balance_summary(
    comparison: pd.DataFrame,
    *,
    threshold: float = SMD_THRESHOLD,
    share_treated_matched: float = float("nan"),
) -> BalanceSummary:
    """Summarise a :func:`compare_balance` table.

    Parameters
    ----------
    comparison : DataFrame
        Output of :func:`compare_balance`.
    threshold : float, default 0.1
        ``|SMD|`` at or above which a covariate counts as imbalanced.
    share_treated_matched : float, optional
        ``MatchedSample.share_treated_matched``, carried into the summary.

    Returns
    -------
    BalanceSummary

    References
    ----------
    Austin PC (2009). Balance diagnostics for comparing the distribution of baseline
    covariates between treatment groups in propensity-score matched samples. *Stat
    Med* 28:3083-3107.

    Rubin DB (2001). Using propensity scores to help design observational studies.
    *Health Serv Outcomes Res Methodol* 2:169-188.
    """
    after = comparison["smd_after"].abs()
    vr = comparison.loc[~comparison["binary"], "variance_ratio_after"]
    return BalanceSummary(
        max_abs_smd_before=float(comparison["smd_before"].abs().max()),
        max_abs_smd_after=float(after.max()),
        worst_variable=str(comparison.loc[after.idxmax(), "variable"]) if len(after) else "",
        n_imbalanced=int((after >= threshold).sum()),
        n_variance_ratio_outside=int(((vr < 0.5) | (vr > 2)).sum()),
        threshold=threshold,
        share_treated_matched=float(share_treated_matched),
    )
