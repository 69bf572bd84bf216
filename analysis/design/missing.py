"""Design matrices: categorical levels, transformations, splines and missing covariates.

:func:`design_matrix` turns covariate columns of any DataFrame into a numeric matrix, the
same one for the propensity model (:mod:`analysis.design.propensity`) and for the balance
diagnostics (:mod:`analysis.design.balance`). What happens to a column depends on its type
and on the caller's arguments, never on its name:

- a categorical covariate (any string or categorical column) becomes one 0/1 column per
  level, the first level dropped by default; levels are ordered as the caller gives them
  in ``levels`` (for example the order of a data contract), other values sorted, so the
  columns never depend on row order. A missing level gets its own column
  ``<name>_missing``;
- a numeric covariate enters as it is, or transformed as the caller asks in
  ``transforms``: ``"log1p"`` enters ``log(1 + x)`` (column ``<name>_log1p``), for
  right-skewed counts; ``"rcs3"``, ``"rcs4"``, ``"rcs5"`` enter a restricted (natural)
  cubic spline with 3-5 knots at Harrell's quantiles (for 4 knots the 5th, 35th, 65th and
  95th percentiles): the value itself followed by the nonlinear columns ``<name>_rcs1``,
  ... (Harrell 2015), linear beyond the outer knots;
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
with exactly the columns and fill values of the full cohort. :func:`design_spec`
finds them once (a :class:`DesignSpec`, fitted as scikit-learn fits a transformer);
``spec.transform(df)``, or ``design_matrix(df, ..., reference=spec)``, expands any
sample with them without expanding the reference again.

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

from collections.abc import Mapping, Sequence

import pandas as pd

from analysis._checks import ColumnError, require_columns
from analysis.design.expansion import (
    LOG1P_SUFFIX,
    MISSING_SUFFIX,
    SPLINE_KNOT_QUANTILES,
    SPLINE_SUFFIX,
    TRANSFORMS,
    DesignSpec,
    DesignTerm,
    design_frame,
    expand_covariates,
    is_categorical,
    restricted_cubic_spline,
    spline_knots,
)

__all__ = [
    "LOG1P_SUFFIX",
    "MISSING_SUFFIX",
    "SPLINE_KNOT_QUANTILES",
    "SPLINE_SUFFIX",
    "TRANSFORMS",
    "DesignSpec",
    "DesignTerm",
    "design_matrix",
    "design_spec",
    "fit_design",
    "is_categorical",
    "restricted_cubic_spline",
    "spline_knots",
]


def _check_arguments(
    df: pd.DataFrame,
    covariates: Sequence[str],
    transforms: Mapping[str, str],
    reference: pd.DataFrame | None,
) -> None:
    if isinstance(covariates, str):
        raise TypeError("covariates must be a sequence of column names, not one string")
    for cov in covariates:
        require_columns(df, covariates=cov)
        if reference is not None and cov not in reference.columns:
            raise ColumnError(f"covariates column {cov!r} is not in the reference data")
    bad = {c: v for c, v in transforms.items() if v not in TRANSFORMS}
    if bad:
        raise ValueError(f"transforms {bad}: each must be one of {list(TRANSFORMS)}")


# over 80 lines only by its numpydoc docstring (the code is under 60)
def design_matrix(
    df: pd.DataFrame,
    covariates: Sequence[str],
    *,
    transforms: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
    drop_first: bool = True,
    reference: pd.DataFrame | DesignSpec | None = None,
) -> pd.DataFrame:
    """Numeric design matrix of covariates, missing values handled.

    Parameters
    ----------
    df : DataFrame
        One row per person (a cohort, or a subsample of it).
    covariates : sequence of str
        Columns of ``df``. Numeric and boolean columns are kept (transformed if asked
        in ``transforms``); string and categorical columns become 0/1 dummies.
    transforms : mapping of str to str, optional
        Covariate -> transformation of a numeric covariate: ``"log1p"`` (column
        ``<name>_log1p``) or ``"rcs3"``, ``"rcs4"``, ``"rcs5"`` (restricted cubic spline
        with that many knots: the value and columns ``<name>_rcs1``...). Entries for
        columns not in ``covariates`` are ignored. Default: no transformation.
    levels : mapping of str to sequence, optional
        Covariate -> order of the levels of a categorical covariate (the first is the
        reference level dropped by ``drop_first``); observed levels not listed follow,
        sorted; listed levels not observed are skipped. Default: sorted levels.
    drop_first : bool, default True
        Drop the first level of each categorical covariate (the reference level of
        a regression). Balance tables keep every level (``drop_first=False``).
    reference : DataFrame or DesignSpec, optional
        Data from which levels, fill values, spline knots, missing indicators and
        constant columns are determined (default: ``df``). Pass the full cohort to
        describe a matched subsample with the same columns; pass its
        :func:`design_spec` (fitted with the same ``covariates``, ``transforms``,
        ``levels`` and ``drop_first``) to expand several samples without expanding the
        reference again each time (the same numbers).

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
    analysis._checks.ColumnError
        A covariate is not a column of ``df`` (or of ``reference``).
    ValueError
        An unknown transformation, a transformation of a categorical covariate,
        ``df`` has a category or a missing value that ``reference`` does not have, or a
        :class:`DesignSpec` fitted with other arguments.

    References
    ----------
    Rosenbaum PR, Rubin DB (1984). Reducing bias in observational studies using
    subclassification on the propensity score. *J Am Stat Assoc* 79:516-524.

    D'Agostino RB Jr, Rubin DB (2000). Estimating and using propensity scores with
    partially missing data. *J Am Stat Assoc* 95:749-759.

    Harrell FE (2015). *Regression Modeling Strategies*, 2nd ed. Springer.

    Examples
    --------
    >>> df = pd.DataFrame({"sex": ["F", "M", "M"], "homeless": [1.0, None, 0.0],
    ...                    "charges": [0, 3, 1]})
    >>> design_matrix(df, ["sex", "homeless", "charges"], transforms={"charges": "log1p"})
       sex_M  homeless  homeless_missing  charges_log1p
    0    0.0       1.0               0.0       0.000000
    1    1.0       0.5               1.0       1.386294
    2    1.0       0.0               0.0       0.693147
    """
    transforms = dict(transforms or {})
    if isinstance(reference, DesignSpec):
        _check_arguments(df, covariates, transforms, None)
        reference.check(covariates, transforms, levels, drop_first)
        return reference.transform(df)
    _check_arguments(df, covariates, transforms, reference)
    ref = df if reference is None else reference
    spec, cols = expand_covariates(df, ref, covariates, transforms, dict(levels or {}), drop_first)
    return design_frame(cols, spec.columns, df.index)


def fit_design(
    reference: pd.DataFrame,
    covariates: Sequence[str],
    *,
    transforms: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
    drop_first: bool = True,
) -> tuple[DesignSpec, pd.DataFrame]:
    """The :class:`DesignSpec` of ``reference`` and its own design matrix, by one expansion.

    Parameters
    ----------
    reference : DataFrame
        The data whose levels, fill values, spline knots, missing indicators and constant
        columns every later expansion uses (normally the full cohort).
    covariates, transforms, levels, drop_first
        As for :func:`design_matrix`.

    Returns
    -------
    spec : DesignSpec
        ``spec.transform(df)`` equals ``design_matrix(df, ..., reference=reference)``.
    design : DataFrame
        ``design_matrix(reference, ...)``.

    Raises
    ------
    analysis._checks.ColumnError, ValueError
        As :func:`design_matrix`.
    """
    transforms = dict(transforms or {})
    _check_arguments(reference, covariates, transforms, None)
    orders = dict(levels or {})
    spec, cols = expand_covariates(reference, reference, covariates, transforms, orders, drop_first)
    return spec, design_frame(cols, spec.columns, reference.index)


def design_spec(
    reference: pd.DataFrame,
    covariates: Sequence[str],
    *,
    transforms: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
    drop_first: bool = True,
) -> DesignSpec:
    """Fit a design matrix's rules on ``reference`` once, to expand other data with them.

    ``design_spec(ref, covs, **kw).transform(df)`` equals ``design_matrix(df, covs,
    reference=ref, **kw)``: the reference's levels, fill values, spline knots, missing
    indicators and constant columns, found once (the reference's columns are expanded one
    covariate at a time and not kept; :func:`fit_design` keeps them).

    Parameters
    ----------
    reference : DataFrame
        The data the rules are taken from (normally the full cohort).
    covariates, transforms, levels, drop_first
        As for :func:`design_matrix`.

    Returns
    -------
    DesignSpec

    Raises
    ------
    analysis._checks.ColumnError, ValueError
        As :func:`design_matrix`.

    Examples
    --------
    >>> ref = pd.DataFrame({"sex": ["F", "M", "M"], "homeless": [1.0, None, 0.0]})
    >>> spec = design_spec(ref, ["sex", "homeless"])
    >>> spec.columns
    ('sex_M', 'homeless', 'homeless_missing')
    >>> spec.transform(ref.iloc[[1]])
       sex_M  homeless  homeless_missing
    1    1.0       0.5               1.0
    """
    transforms = dict(transforms or {})
    _check_arguments(reference, covariates, transforms, None)
    orders = dict(levels or {})
    return expand_covariates(
        reference, reference, covariates, transforms, orders, drop_first, keep=False
    )[0]
