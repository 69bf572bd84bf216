# long: the expansion rules and their fit on the reference (DesignSpec) belong together
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
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from analysis._checks import ColumnError, require_columns

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

#: knot quantiles of a restricted cubic spline by number of knots (Harrell 2015, table 2.3)
SPLINE_KNOT_QUANTILES: dict[int, tuple[float, ...]] = {
    3: (0.10, 0.50, 0.90),
    4: (0.05, 0.35, 0.65, 0.95),
    5: (0.05, 0.275, 0.50, 0.725, 0.95),
}

#: transformations a numeric covariate may be given: ``log1p`` and ``rcs<knots>``
TRANSFORMS: tuple[str, ...] = ("log1p", *(f"rcs{n}" for n in SPLINE_KNOT_QUANTILES))

#: suffix of the nonlinear columns of a spline (numbered from 1)
SPLINE_SUFFIX = "_rcs"

#: suffix of a missing indicator (and of the level "missing" of a categorical covariate)
MISSING_SUFFIX = "_missing"

#: suffix of a log1p-transformed covariate
LOG1P_SUFFIX = "_log1p"


def spline_knots(x: np.ndarray, n_knots: int) -> np.ndarray:
    """Knots of a restricted cubic spline at Harrell's quantiles of the non-missing ``x``.

    Tied quantiles collapse to one knot, so fewer (or none) may be returned.

    Parameters
    ----------
    x : ndarray
        Values (``NaN`` ignored).
    n_knots : int
        3, 4 or 5 (:data:`SPLINE_KNOT_QUANTILES`).

    Returns
    -------
    ndarray
        Sorted distinct knots.
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

    Parameters
    ----------
    x : ndarray
        Values.
    knots : ndarray
        Sorted knots; fewer than 3 give no column.

    Returns
    -------
    ndarray

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


def is_categorical(s: pd.Series) -> bool:
    """Whether a column is treated as categorical: not numeric nor boolean, or categorical.

    Parameters
    ----------
    s : Series

    Returns
    -------
    bool
    """
    return not (is_numeric_dtype(s) or is_bool_dtype(s)) or isinstance(s.dtype, pd.CategoricalDtype)


def _string_codes(s: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes of ``s`` (-1 = missing) and its distinct values as strings, in order of codes."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return codes, [str(u) for u in uniques]


def _levels(observed: Sequence[str], order: Sequence[str]) -> list[str]:
    """Observed levels of a categorical column, those of ``order`` first, then sorted."""
    seen = set(observed)
    known = [lv for lv in (str(v) for v in order) if lv in seen]
    return known + sorted(seen - set(known))


@dataclass(frozen=True)
class DesignTerm:
    """How one covariate enters a design matrix, as fitted on the reference data.

    Attributes
    ----------
    covariate : str
        The column.
    categorical : bool
        Dummies (:func:`is_categorical` of the reference column) or a numeric column.
    levels : tuple of str
        Categorical: the reference's levels in design order (the first one included).
    missing : bool
        The reference has a missing value: a ``<covariate>_missing`` column (numeric: and
        missing values are filled with ``fill``).
    transform : str or None
        Numeric: the transformation (:data:`TRANSFORMS`), if any.
    fill : float or None
        Numeric with ``missing``: the mean of the observed (transformed) reference values.
    knots : tuple of float
        Numeric with an ``rcs`` transform: the spline knots (:func:`spline_knots`).
    observed : bool
        Numeric: some reference value is observed (if none, the covariate gives no column).
    """

    covariate: str
    categorical: bool
    levels: tuple[str, ...] = ()
    missing: bool = False
    transform: str | None = None
    fill: float | None = None
    knots: tuple[float, ...] = ()
    observed: bool = True


def _numeric_values(s: pd.Series, transform: str | None) -> np.ndarray:
    x = s.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.log1p(x) if transform == "log1p" else x


def _fit_term(
    cov: str, r: pd.Series, transform: str | None, order: Sequence[str]
) -> tuple[DesignTerm, tuple[np.ndarray, list[str]] | None]:
    """The term of covariate ``cov`` from its reference column ``r`` (and, categorical, the
    column's codes and values, to be reused when ``r`` is expanded itself)."""
    if is_categorical(r):
        if transform is not None:
            raise ValueError(
                f"transforms: covariate {cov!r} is categorical; {transform!r} "
                "applies to numeric covariates only"
            )
        codes, values = _string_codes(r)
        levels = tuple(_levels(values, order))
        missing = bool((codes < 0).any())
        return DesignTerm(cov, True, levels=levels, missing=missing), (codes, values)
    xr = _numeric_values(r, transform)
    ref_miss = np.isnan(xr)
    if ref_miss.all():  # nothing observed: no information, the column is left out
        return DesignTerm(cov, False, transform=transform, observed=False), None
    rcs = transform is not None and transform.startswith("rcs")
    term = DesignTerm(
        cov,
        False,
        missing=bool(ref_miss.any()),
        transform=transform,
        fill=float(xr[~ref_miss].mean()) if ref_miss.any() else None,
        knots=tuple(spline_knots(xr, int(transform[3:])).tolist()) if rcs else (),
    )
    return term, None


def _categorical_columns(
    term: DesignTerm,
    s: pd.Series,
    drop_first: bool,
    coded: tuple[np.ndarray, list[str]] | None = None,
) -> dict[str, np.ndarray]:
    """0/1 columns of the levels of ``s`` (levels and the missing column from the term)."""
    cov, levels = term.covariate, term.levels
    codes, values = _string_codes(s) if coded is None else coded
    unknown = set(values) - set(levels)
    if unknown:
        raise ValueError(f"{cov}: levels {sorted(unknown)} not seen in the reference data")
    text = np.array([*values, None], dtype=object)  # code -1 (missing): matches no level
    out = {
        f"{cov}_{lv}": (text == lv)[codes].astype(np.float64)
        for lv in (levels[1:] if drop_first else levels)
    }
    if term.missing:
        out[f"{cov}{MISSING_SUFFIX}"] = (codes < 0).astype(np.float64)
    return out


def _numeric_columns(term: DesignTerm, s: pd.Series) -> dict[str, np.ndarray]:
    """Value column (transformed, mean-filled), spline columns and missing indicator."""
    if not term.observed:
        return {}
    cov = term.covariate
    x = _numeric_values(s, term.transform)
    name = f"{cov}{LOG1P_SUFFIX}" if term.transform == "log1p" else cov
    miss = np.isnan(x)
    if term.fill is not None:
        x = np.where(miss, term.fill, x)
    elif miss.any():
        raise ValueError(f"{cov}: missing values, but none in the reference data")
    out = {name: x}
    if term.transform is not None and term.transform.startswith("rcs"):
        for j, col in enumerate(restricted_cubic_spline(x, np.array(term.knots)).T, start=1):
            out[f"{name}{SPLINE_SUFFIX}{j}"] = col
    if term.missing:
        out[f"{cov}{MISSING_SUFFIX}"] = miss.astype(np.float64)
    return out


def _term_columns(
    term: DesignTerm,
    s: pd.Series,
    drop_first: bool,
    coded: tuple[np.ndarray, list[str]] | None = None,
) -> dict[str, np.ndarray]:
    if term.categorical:
        return _categorical_columns(term, s, drop_first, coded)
    return _numeric_columns(term, s)


def _frame(
    cols: Mapping[str, tuple[str, np.ndarray]], keep: Sequence[str], index: pd.Index
) -> pd.DataFrame:
    """The design matrix of the kept columns, with ``attrs["source"]``."""
    out = pd.DataFrame({name: cols[name][1] for name in keep}, index=index, dtype=np.float64)
    out.attrs["source"] = {name: cols[name][0] for name in keep}
    return out


@dataclass(frozen=True)
class DesignSpec:
    """A design matrix's rules fitted on reference data: :func:`design_matrix` in two steps.

    Made by :func:`design_spec` (or :func:`fit_design`); :meth:`transform` expands any data
    with the reference's levels, fill values, spline knots, missing indicators and columns,
    without the reference (as scikit-learn separates ``fit`` and ``transform``).

    Attributes
    ----------
    covariates : tuple of str
        The covariates, in design order.
    transforms : dict of str to str
        The transformations asked (of the covariates).
    levels : dict of str to tuple
        The level orders asked.
    drop_first : bool
        Whether the first level of each categorical covariate is dropped.
    terms : tuple of DesignTerm
        One per covariate.
    columns : tuple of str
        The design's columns: those not constant in the reference, in design order.
    """

    covariates: tuple[str, ...]
    transforms: dict[str, str]
    levels: dict[str, tuple[str, ...]]
    drop_first: bool
    terms: tuple[DesignTerm, ...]
    columns: tuple[str, ...]

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """The design matrix of ``df``: ``design_matrix(df, ..., reference=<the reference>)``.

        Parameters
        ----------
        df : DataFrame
            Has every covariate.

        Returns
        -------
        DataFrame
            As :func:`design_matrix` returns, the same numbers.

        Raises
        ------
        analysis._checks.ColumnError
            A covariate is not a column of ``df``.
        ValueError
            ``df`` has a category or a missing value that the reference does not have.
        """
        for cov in self.covariates:
            require_columns(df, covariates=cov)
        cols = {
            name: (term.covariate, x)
            for term in self.terms
            for name, x in _term_columns(term, df[term.covariate], self.drop_first).items()
        }
        return _frame(cols, self.columns, df.index)

    def check(
        self,
        covariates: Sequence[str],
        transforms: Mapping[str, str] | None,
        levels: Mapping[str, Sequence[str]] | None,
        drop_first: bool,
    ) -> None:
        """Check that the spec was fitted with these arguments of :func:`design_matrix`.

        Parameters
        ----------
        covariates, transforms, levels, drop_first
            As given to :func:`design_matrix` (``transforms`` entries of other columns
            ignored).

        Raises
        ------
        ValueError
            The spec was fitted with other arguments.
        """
        given = (tuple(covariates), _transforms(covariates, transforms), _orders(levels))
        if (
            given != (self.covariates, self.transforms, self.levels)
            or drop_first != self.drop_first
        ):
            raise ValueError(
                "reference: a DesignSpec fitted with other covariates, transforms, levels "
                "or drop_first"
            )


def _transforms(covariates: Sequence[str], transforms: Mapping[str, str] | None) -> dict[str, str]:
    """The transformations of the covariates (entries for other columns are ignored)."""
    return {c: v for c, v in (transforms or {}).items() if c in set(covariates)}


def _orders(levels: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    return {c: tuple(str(v) for v in order) for c, order in (levels or {}).items()}


def _fit(
    df: pd.DataFrame,
    ref: pd.DataFrame,
    covariates: Sequence[str],
    transforms: Mapping[str, str],
    levels: Mapping[str, Sequence[str]],
    drop_first: bool,
    *,
    keep: bool = True,
) -> tuple[DesignSpec, dict[str, tuple[str, np.ndarray]]]:
    """The spec fitted on ``ref`` and the columns of ``df`` (``name -> (covariate, array)``;
    none unless ``keep``).

    Covariate by covariate: its term from ``ref``, its columns over ``df``, and (unless
    ``df`` is ``ref``) over ``ref`` to find the constant ones, dropped at once.
    """
    terms, cols, kept = [], {}, []
    for cov in covariates:
        term, coded = _fit_term(cov, ref[cov], transforms.get(cov), levels.get(cov, ()))
        terms.append(term)
        own = _term_columns(term, df[cov], drop_first, coded if ref is df else None)
        ref_own = own if ref is df else _term_columns(term, ref[cov], drop_first)
        if keep:
            cols.update({name: (cov, x) for name, x in own.items()})
        kept += [name for name, x in ref_own.items() if len(x) and np.ptp(x) > 0]
    spec = DesignSpec(
        covariates=tuple(covariates),
        transforms=_transforms(covariates, transforms),
        levels=_orders(levels),
        drop_first=drop_first,
        terms=tuple(terms),
        columns=tuple(kept),
    )
    return spec, cols


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
    spec, cols = _fit(df, ref, covariates, transforms, dict(levels or {}), drop_first)
    return _frame(cols, spec.columns, df.index)


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
    spec, cols = _fit(reference, reference, covariates, transforms, orders, drop_first)
    return spec, _frame(cols, spec.columns, reference.index)


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
    return _fit(reference, reference, covariates, transforms, orders, drop_first, keep=False)[0]
