"""How covariates expand into the columns of a design matrix, and the rules fitted once.

The mechanics behind :func:`analysis.design.missing.design_matrix` (whose docstring gives
the method and its references): a :class:`DesignTerm` per covariate holds what the
reference data decide (a categorical covariate's levels, a numeric one's fill value and
spline knots, whether a missing indicator is needed), and a :class:`DesignSpec` holds the
terms and the columns kept (those not constant in the reference), so any sample is
expanded with the reference's rules without the reference (:meth:`DesignSpec.transform`).
The constants, the spline basis and :func:`is_categorical` are importable from
:mod:`analysis.design.missing` too.

References
----------
Harrell FE (2015). *Regression Modeling Strategies*, 2nd ed. Springer (section 2.4.5,
restricted cubic splines).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from analysis._checks import require_columns

__all__ = [
    "LOG1P_SUFFIX",
    "MISSING_SUFFIX",
    "SPLINE_KNOT_QUANTILES",
    "SPLINE_SUFFIX",
    "TRANSFORMS",
    "DesignSpec",
    "DesignTerm",
    "design_frame",
    "expand_covariates",
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


def design_frame(
    cols: Mapping[str, tuple[str, np.ndarray]], keep: Sequence[str], index: pd.Index
) -> pd.DataFrame:
    """The design matrix of the columns ``keep`` of ``cols``, with ``attrs["source"]``.

    Parameters
    ----------
    cols : mapping of str to (str, ndarray)
        Column name -> (source covariate, values), as :func:`expand_covariates` gives.
    keep : sequence of str
        The columns, in order (:attr:`DesignSpec.columns`).
    index : Index
        The rows' index.

    Returns
    -------
    DataFrame
        ``float64``; ``attrs["source"]`` maps each column to its covariate.
    """
    out = pd.DataFrame({name: cols[name][1] for name in keep}, index=index, dtype=np.float64)
    out.attrs["source"] = {name: cols[name][0] for name in keep}
    return out


@dataclass(frozen=True)
class DesignSpec:
    """A design matrix's rules fitted on reference data: ``design_matrix`` in two steps.

    Made by :func:`analysis.design.missing.design_spec` (or :func:`analysis.design.missing.fit_design`);
    :meth:`transform` expands any data
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
            As :func:`analysis.design.missing.design_matrix` returns, the same numbers.

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
        return design_frame(cols, self.columns, df.index)

    def check(
        self,
        covariates: Sequence[str],
        transforms: Mapping[str, str] | None,
        levels: Mapping[str, Sequence[str]] | None,
        drop_first: bool,
    ) -> None:
        """Check that the spec was fitted with these arguments of ``design_matrix``.

        Parameters
        ----------
        covariates, transforms, levels, drop_first
            As given to :func:`analysis.design.missing.design_matrix` (``transforms`` entries of other columns
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


def expand_covariates(
    df: pd.DataFrame,
    ref: pd.DataFrame,
    covariates: Sequence[str],
    transforms: Mapping[str, str],
    levels: Mapping[str, Sequence[str]],
    drop_first: bool,
    *,
    keep: bool = True,
) -> tuple[DesignSpec, dict[str, tuple[str, np.ndarray]]]:
    """Fit the terms on ``ref`` and expand ``df`` with them, covariate by covariate.

    Each covariate's term is fitted on ``ref``, its columns computed over ``df`` and
    (unless ``df`` is ``ref``) over ``ref`` to find the constant ones, whose arrays are
    dropped at once; errors come in the order of the covariates. Arguments are not checked
    (:func:`analysis.design.missing.design_matrix` checks them).

    Parameters
    ----------
    df, ref : DataFrame
        The data to expand and the reference (may be the same object).
    covariates : sequence of str
    transforms : mapping of str to str
    levels : mapping of str to sequence
    drop_first : bool
        As for :func:`analysis.design.missing.design_matrix`.
    keep : bool, default True
        Return the columns of ``df`` (``False``: the spec only).

    Returns
    -------
    spec : DesignSpec
    cols : dict of str to (str, ndarray)
        Every column of ``df``'s expansion (constant ones included; :attr:`DesignSpec.columns`
        says which to keep), empty unless ``keep``.
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
