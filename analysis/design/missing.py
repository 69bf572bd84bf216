"""Missing baseline covariates: the design matrix of the propensity model.

:func:`design_matrix` turns the covariate columns of the cohort table into a
numeric matrix, the same one for the propensity model (:mod:`analysis.design.propensity`)
and for the balance diagnostics (:mod:`analysis.design.balance`):

- a categorical covariate (``sex``, ``region``, any string or categorical column)
  becomes one 0/1 column per level, the first level dropped by default; levels are
  ordered as in the data contract (``F, M``; ``south-east, west, central, north``),
  other values sorted, so the columns never depend on row order. A missing level
  gets its own column ``<name>_missing``;
- ``baseline_charges`` enters as ``log1p(baseline_charges)`` (column
  ``baseline_charges_log1p``): counts of charges are very right-skewed;
- ``calendar_years`` (calendar time of the index date) enters as a restricted
  (natural) cubic spline with 4 knots at its 5th, 35th, 65th and 95th percentiles
  (Harrell 2015): the value itself followed by two nonlinear columns
  ``calendar_years_rcs1``, ``calendar_years_rcs2``, linear beyond the outer knots;
- a numeric or boolean covariate with any missing value gets a missing indicator
  ``<name>_missing`` (1 = missing) and its missing values are filled with the mean
  of its observed values (the missing-indicator method).

Why the missing-indicator method with mean fill
-----------------------------------------------
The propensity score is a balancing score for whatever it is a function of.
Modelling treatment on the filled values *and* the indicators makes it a function
of the observed values and of the pattern of missingness, so matching on it tends
to balance both: the distribution of the observed covariate values and the
proportion missing (Rosenbaum & Rubin 1984, appendix; D'Agostino & Rubin 2000).
Complete-case analysis would throw away every person with one missing item, and
registries miss items in bulk. The estimand is conditional on the observed data:
the method does not recover balance on the *unobserved* values, which must be
assumed ignorable given what is observed.

With the indicator in the model, the fill value does not change the fitted
propensity score (changing the fill from ``c`` to ``c'`` adds ``(c' - c)`` times the
indicator, a reparametrisation). It does matter for balance tables; filling with
the mean among the observed makes the filled column's mean equal to the observed
mean, so its SMD is the difference among the observed, shrunk towards 0 by the
share missing. The same rule is used for booleans (the fill is then the observed
proportion), so every covariate is treated alike.

Fill values, levels and the set of columns are taken from ``reference``
(default: the data themselves), so a matched or weighted subsample is described
with exactly the columns and fill values of the full cohort.

References
----------
Rosenbaum PR, Rubin DB (1984). Reducing bias in observational studies using
subclassification on the propensity score. *J Am Stat Assoc* 79(387):516-524
(appendix B: propensity scores with missing covariates).

D'Agostino RB Jr, Rubin DB (2000). Estimating and using propensity scores with
partially missing data. *J Am Stat Assoc* 95(451):749-759.

Stuart EA (2010). Matching methods for causal inference: a review and a look
forward. *Stat Sci* 25(1):1-21.

Harrell FE (2015). *Regression Modeling Strategies*, 2nd ed. Springer (section 2.4.5,
restricted cubic splines).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from analysis.data.contract import (
    BOOLEAN_COVARIATES,
    CALENDAR_COVARIATE,
    NUMERIC_COVARIATES,
    REGIONS,
    SEXES,
)

#: baseline covariates of the propensity model, in the order of the cohort table
DEFAULT_COVARIATES: tuple[str, ...] = (
    "age",
    "sex",
    "region",
    *NUMERIC_COVARIATES,
    *BOOLEAN_COVARIATES,
    "baseline_charges",
)

#: covariates entered as log(1 + x)
LOG1P_COVARIATES: tuple[str, ...] = ("baseline_charges",)

#: covariates entered as a restricted cubic spline: name -> number of knots
SPLINE_COVARIATES: dict[str, int] = {CALENDAR_COVARIATE: 4}

#: knot quantiles of a restricted cubic spline by number of knots (Harrell 2015, table 2.3)
SPLINE_KNOT_QUANTILES: dict[int, tuple[float, ...]] = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.50, 0.725, 0.95),
}

#: suffix of the nonlinear columns of a spline (numbered from 1)
SPLINE_SUFFIX = "_rcs"

#: level order of the contract's categorical covariates (the first is the reference)
LEVEL_ORDER: dict[str, tuple[str, ...]] = {"sex": SEXES, "region": REGIONS}

#: suffix of a missing indicator (and of the level "missing" of a categorical covariate)
MISSING_SUFFIX = "_missing"

#: suffix of a log1p-transformed covariate
LOG1P_SUFFIX = "_log1p"


def spline_knots(x: np.ndarray, n_knots: int) -> np.ndarray:
    """Knots of a restricted cubic spline at Harrell's quantiles of the non-missing ``x``.

    Tied quantiles collapse to one knot, so fewer (or none) may be returned.
    """
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return np.empty(0)
    return np.unique(np.quantile(x, SPLINE_KNOT_QUANTILES[n_knots]))


def restricted_cubic_spline(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Nonlinear columns of a restricted cubic spline, shape ``(len(x), len(knots) - 2)``.

    Harrell's truncated-power basis, scaled by the squared knot range: cubic between
    the knots and linear beyond the outer ones (so, with ``x`` itself, a natural
    spline with ``len(knots) - 1`` degrees of freedom).

    References
    ----------
    Harrell FE (2015). *Regression Modeling Strategies*, 2nd ed. Springer, eq. 2.25.
    """
    k = len(knots)
    if k < 3:
        return np.empty((len(x), 0))
    t = np.asarray(knots, dtype=np.float64)
    scale = (t[-1] - t[0]) ** 2

    def cube(v: np.ndarray) -> np.ndarray:
        return np.maximum(v, 0.0) ** 3

    last, before = t[-1], t[-2]
    cols = [
        (
            cube(x - t[j])
            - cube(x - before) * (last - t[j]) / (last - before)
            + cube(x - last) * (before - t[j]) / (last - before)
        )
        / scale
        for j in range(k - 2)
    ]
    return np.column_stack(cols)


def _is_categorical(s: pd.Series) -> bool:
    return not (is_numeric_dtype(s) or is_bool_dtype(s)) or isinstance(s.dtype, pd.CategoricalDtype)


def _levels(name: str, s: pd.Series) -> list[str]:
    """Observed levels of a categorical column, contract order first, then sorted."""
    observed = set(s.dropna().astype(str).unique())
    known = [lv for lv in LEVEL_ORDER.get(name, ()) if lv in observed]
    return known + sorted(observed - set(known))


def _expand(
    df: pd.DataFrame, covariates: Sequence[str], *, drop_first: bool, ref: pd.DataFrame
) -> dict[str, tuple[str, np.ndarray]]:
    """Columns of the design as ``name -> (source covariate, float array over df)``."""
    out: dict[str, tuple[str, np.ndarray]] = {}
    for cov in covariates:
        if cov not in df.columns or cov not in ref.columns:
            raise KeyError(f"covariate {cov!r} is not a column of the data")
        s, r = df[cov], ref[cov]
        if _is_categorical(r):
            levels = _levels(cov, r)
            values = s.astype("string").to_numpy(dtype=object, na_value=None)
            unknown = set(s.dropna().astype(str)) - set(levels)
            if unknown:
                raise ValueError(f"{cov}: levels {sorted(unknown)} not seen in the reference data")
            for lv in levels[1:] if drop_first else levels:
                out[f"{cov}_{lv}"] = (cov, (values == lv).astype(np.float64))
            if r.isna().any():
                out[f"{cov}{MISSING_SUFFIX}"] = (cov, s.isna().to_numpy(np.float64))
            continue
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
        xr = r.to_numpy(dtype=np.float64, na_value=np.nan)
        name = cov
        if cov in LOG1P_COVARIATES:
            x, xr, name = np.log1p(x), np.log1p(xr), f"{cov}{LOG1P_SUFFIX}"
        miss = np.isnan(x)
        ref_miss = np.isnan(xr)
        if ref_miss.all():
            continue  # nothing observed: no information, the column is left out
        if ref_miss.any():
            x = np.where(miss, xr[~ref_miss].mean(), x)
        elif miss.any():
            raise ValueError(f"{cov}: missing values, but none in the reference data")
        out[name] = (cov, x)
        if cov in SPLINE_COVARIATES:
            knots = spline_knots(xr, SPLINE_COVARIATES[cov])
            for j, col in enumerate(restricted_cubic_spline(x, knots).T, start=1):
                out[f"{name}{SPLINE_SUFFIX}{j}"] = (cov, col)
        if ref_miss.any():
            out[f"{cov}{MISSING_SUFFIX}"] = (cov, miss.astype(np.float64))
    return out


def design_matrix(
    df: pd.DataFrame,
    covariates: Sequence[str] = DEFAULT_COVARIATES,
    *,
    drop_first: bool = True,
    reference: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Numeric design matrix of baseline covariates, missing values handled.

    Parameters
    ----------
    df : DataFrame
        One row per person (the cohort table or a subsample of it).
    covariates : sequence of str, default :data:`DEFAULT_COVARIATES`
        Columns of ``df``. Numeric and boolean columns are kept (``baseline_charges``
        as ``log1p``); string and categorical columns become 0/1 dummies.
    drop_first : bool, default True
        Drop the first level of each categorical covariate (the reference level of
        a regression). Balance tables keep every level (``drop_first=False``).
    reference : DataFrame, optional
        Data from which levels, fill values, missing indicators and constant
        columns are determined (default: ``df``). Pass the full cohort to describe
        a matched subsample with the same columns.

    Returns
    -------
    DataFrame
        ``float64``, same index as ``df``, no missing values. Columns in the order
        of ``covariates``; each covariate's value column(s) followed by its missing
        indicator ``<name>_missing``. Columns constant in ``reference`` are
        dropped. ``df.attrs`` is not used; the source covariate of each column is
        in ``result.attrs["source"]`` (``column -> covariate``).

    Raises
    ------
    KeyError
        A covariate is not a column.
    ValueError
        ``df`` has a category or a missing value that ``reference`` does not have.

    References
    ----------
    Rosenbaum PR, Rubin DB (1984). Reducing bias in observational studies using
    subclassification on the propensity score. *J Am Stat Assoc* 79:516-524.

    D'Agostino RB Jr, Rubin DB (2000). Estimating and using propensity scores with
    partially missing data. *J Am Stat Assoc* 95:749-759.

    Examples
    --------
    >>> df = pd.DataFrame({"sex": ["F", "M", "M"], "homeless": [1.0, None, 0.0]})
    >>> design_matrix(df, ["sex", "homeless"])
       sex_M  homeless  homeless_missing
    0    0.0       1.0               0.0
    1    1.0       0.5               1.0
    2    1.0       0.0               0.0
    """
    ref = df if reference is None else reference
    cols = _expand(df, covariates, drop_first=drop_first, ref=ref)
    if reference is None:
        ref_cols = cols
    else:
        ref_cols = _expand(ref, covariates, drop_first=drop_first, ref=ref)
    keep = [name for name, (_, x) in ref_cols.items() if len(x) and np.ptp(x) > 0]
    out = pd.DataFrame({name: cols[name][1] for name in keep}, index=df.index, dtype=np.float64)
    out.attrs["source"] = {name: cols[name][0] for name in keep}
    return out
