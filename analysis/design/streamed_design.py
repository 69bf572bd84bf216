"""Design matrices of data that come in pieces, with the columns of the whole.

:func:`analysis.design.missing.design_matrix` takes its levels, fill values, spline knots
and missing indicators from one DataFrame. When the rows come in pieces too many to hold
at once (the stacked risk sets of a national extract), :class:`DesignAccumulator` reads
every piece once and gathers what those choices need, and :class:`DesignSpec` then builds
the design matrix of any piece with the columns, fill values and knots of the whole:

- a categorical covariate: the levels observed in any piece (the caller's order first,
  the others sorted) and whether any value is missing;
- a numeric covariate (after ``log1p`` when asked): the number and sum of the observed
  values (the mean fill), whether any is missing, the smallest and largest value (a
  constant column is left out); for a spline (``rcs3``-``rcs5``) the distinct values
  with their counts, from which the knots are the exact quantiles of the whole column
  (``numpy.quantile``'s default, linear interpolation).

The columns, their order and names are those of :func:`design_matrix` on the concatenated
pieces; the values equal it up to the rounding of the mean (a sum over pieces instead of
one ``numpy.mean``), which changes neither the fitted scores nor anything else of a model
with the missing indicator in it (the fill is a reparametrisation; see
:mod:`analysis.design.missing`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.design.missing import (
    LOG1P_SUFFIX,
    MISSING_SUFFIX,
    SPLINE_KNOT_QUANTILES,
    SPLINE_SUFFIX,
    is_categorical,
    restricted_cubic_spline,
)

__all__ = ["DesignAccumulator", "DesignSpec", "Moments", "compact_frame", "quantile_of_counts"]


def quantile_of_counts(values: np.ndarray, counts: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``numpy.quantile(x, q)`` of the ``x`` holding each of ``values`` ``counts`` times.

    Parameters
    ----------
    values : ndarray
        Sorted distinct values.
    counts : ndarray of int
        Times each value occurs.
    q : sequence of float
        Probabilities.

    Returns
    -------
    ndarray
        The quantiles with numpy's default method (linear interpolation between the
        order statistics at ``(n - 1) q``), computed as numpy computes them.
    """
    n = int(counts.sum())
    ends = np.cumsum(counts)  # order statistic i (0-based) is values[searchsorted(ends, i + 1)]
    h = (n - 1) * np.asarray(q, dtype=np.float64)
    lo = np.floor(h)
    gamma = h - lo
    lo = lo.astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    a = values[np.searchsorted(ends, lo + 1)]
    b = values[np.searchsorted(ends, hi + 1)]
    # numpy's _lerp: a + (b - a) t, or b - (b - a)(1 - t) when t >= 0.5
    diff = b - a
    out = a + diff * gamma
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), out)


def _dummies(s: pd.Series, levels: Sequence[str]) -> list[np.ndarray]:
    """0/1 columns of the levels (through the codes of a categorical column)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        names = [str(c) for c in s.cat.categories]
        codes = s.cat.codes.to_numpy()
        return [
            (codes == names.index(lv)).astype(np.float64) if lv in names else np.zeros(len(s))
            for lv in levels
        ]
    values = s.astype("string").to_numpy(dtype=object, na_value=None)
    return [(values == lv).astype(np.float64) for lv in levels]


@dataclass
class _Numeric:
    n_obs: int = 0
    total: float = 0.0
    missing: bool = False
    low: float = np.inf
    high: float = -np.inf
    values: np.ndarray | None = None
    counts: np.ndarray | None = None


class DesignAccumulator:
    """Gathers, piece by piece, what the design of the whole needs (module notes).

    Parameters
    ----------
    covariates : sequence of str
    transforms, levels : mapping, optional
        As :func:`analysis.design.missing.design_matrix`.
    """

    def __init__(
        self,
        covariates: Sequence[str],
        *,
        transforms: Mapping[str, str] | None = None,
        levels: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.covariates = tuple(covariates)
        self.transforms = dict(transforms or {})
        self.levels = {c: tuple(v) for c, v in (levels or {}).items()}
        self._cat: dict[str, tuple[set[str], bool]] = {}
        self._num: dict[str, _Numeric] = {}

    def add(self, df: pd.DataFrame) -> None:
        """Take in one piece (the covariates' columns of some rows)."""
        for cov in self.covariates:
            s = df[cov]
            if is_categorical(s):
                seen, missing = self._cat.get(cov, (set(), False))
                if isinstance(s.dtype, pd.CategoricalDtype):
                    used = np.bincount(
                        s.cat.codes.to_numpy() + 1, minlength=len(s.cat.categories) + 1
                    )
                    seen |= {str(c) for c, k in zip(s.cat.categories, used[1:], strict=True) if k}
                    missing |= bool(used[0])
                else:
                    seen |= set(s.dropna().astype(str).unique())
                    missing |= bool(s.isna().any())
                self._cat[cov] = (seen, missing)
                continue
            x = s.to_numpy(dtype=np.float64, na_value=np.nan)
            if self.transforms.get(cov) == "log1p":
                x = np.log1p(x)
            st = self._num.setdefault(cov, _Numeric())
            ok = ~np.isnan(x)
            xo = x[ok]
            st.n_obs += len(xo)
            st.total += float(xo.sum())
            st.missing |= bool((~ok).any())
            if len(xo):
                st.low, st.high = min(st.low, float(xo.min())), max(st.high, float(xo.max()))
            if self.transforms.get(cov, "").startswith("rcs"):
                v, k = np.unique(xo, return_counts=True)
                if st.values is not None:
                    v, inv = np.unique(np.concatenate([st.values, v]), return_inverse=True)
                    k = np.bincount(inv, weights=np.concatenate([st.counts, k])).astype(np.int64)
                st.values, st.counts = v, k

    def spec(self, *, drop_first: bool = True) -> DesignSpec:
        """The design of everything added so far.

        Parameters
        ----------
        drop_first : bool, default True
            As :func:`analysis.design.missing.design_matrix` (``False`` for balance).

        Returns
        -------
        DesignSpec
        """
        parts: list[tuple[str, str, dict]] = []
        for cov in self.covariates:
            if cov in self._cat:
                seen, missing = self._cat[cov]
                order = [str(v) for v in self.levels.get(cov, ())]
                known = [lv for lv in order if lv in seen]
                lv = known + sorted(seen - set(known))
                cols = lv[1:] if drop_first else lv
                # a level seen in every row gives a constant column (left out)
                cols = [c for c in cols if len(lv) > 1 or missing]
                parts.append((cov, "categorical", {"levels": cols, "missing": missing}))
                continue
            st = self._num.get(cov, _Numeric())
            if st.n_obs == 0:
                continue  # nothing observed: left out, as design_matrix does
            transform = self.transforms.get(cov)
            knots = np.empty(0)
            if transform is not None and transform.startswith("rcs"):
                q = SPLINE_KNOT_QUANTILES[int(transform[3:])]
                knots = np.unique(quantile_of_counts(st.values, st.counts, q))
            parts.append(
                (
                    cov,
                    "numeric",
                    {"log1p": transform == "log1p", "fill": st.total / st.n_obs,
                     "missing": st.missing, "constant": st.low == st.high, "knots": knots},
                )
            )  # fmt: skip
        return DesignSpec(parts=tuple(parts))


@dataclass(frozen=True)
class DesignSpec:
    """The design of the whole, applied to one piece at a time (:meth:`matrix`).

    Attributes
    ----------
    parts : tuple
        ``(covariate, kind, parameters)`` in covariate order.
    """

    parts: tuple[tuple[str, str, dict], ...]

    @property
    def names(self) -> list[str]:
        """Column names, as :func:`analysis.design.missing.design_matrix` names them."""
        out: list[str] = []
        for cov, kind, p in self.parts:
            if kind == "categorical":
                out += [f"{cov}_{lv}" for lv in p["levels"]]
                out += [f"{cov}{MISSING_SUFFIX}"] if p["missing"] else []
                continue
            name = f"{cov}{LOG1P_SUFFIX}" if p["log1p"] else cov
            out += [] if p["constant"] else [name]
            out += [f"{name}{SPLINE_SUFFIX}{j}" for j in range(1, max(len(p["knots"]) - 1, 0))]
            out += [f"{cov}{MISSING_SUFFIX}"] if p["missing"] else []
        return out

    @property
    def sources(self) -> list[str]:
        """The covariate of each column."""
        out: list[str] = []
        for cov, kind, p in self.parts:
            if kind == "categorical":
                out += [cov] * (len(p["levels"]) + p["missing"])
            else:
                n_spline = max(len(p["knots"]) - 2, 0)
                out += [cov] * ((not p["constant"]) + n_spline + p["missing"])
        return out

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """The design matrix of the rows of ``df`` (``float64``, columns :attr:`names`)."""
        cols: list[np.ndarray] = []
        for cov, kind, p in self.parts:
            s = df[cov]
            if kind == "categorical":
                cols += _dummies(s, p["levels"])
                if p["missing"]:
                    cols.append(s.isna().to_numpy(np.float64))
                continue
            x = s.to_numpy(dtype=np.float64, na_value=np.nan)
            if p["log1p"]:
                x = np.log1p(x)
            miss = np.isnan(x)
            if p["missing"]:
                x = np.where(miss, p["fill"], x)
            if not p["constant"]:
                cols.append(x)
            if len(p["knots"]) >= 3:
                cols += list(_spline(x, p["knots"]).T)
            if p["missing"]:
                cols.append(miss.astype(np.float64))
        # column by column into a Fortran-ordered matrix (np.column_stack writes across
        # rows, several times slower); the products X'WX take either order
        out = np.empty((len(df), len(cols)), order="F")
        for j, col in enumerate(cols):
            out[:, j] = col
        return out


def _spline(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """:func:`restricted_cubic_spline` of ``x``; when ``x`` is sorted (the calendar time
    of risk sets in date order), computed once per run of equal values and repeated: the
    same numbers (the basis is computed value by value)."""
    if len(x) > 1 and bool((x[1:] >= x[:-1]).all()):
        start = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
        if len(start) < len(x) // 4:
            basis = restricted_cubic_spline(x[start], knots)
            return np.repeat(basis, np.diff(np.r_[start, len(x)]), axis=0)
    return restricted_cubic_spline(x, knots)


def compact_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The columns of ``df`` in the smallest dtype that holds their values exactly.

    Numeric columns whose values (``NaN`` aside) are whole numbers become ``float16``
    (up to 2,048 in absolute value) or ``float32`` (up to 2**24), keeping ``NaN``;
    other numeric columns stay ``float64``; categorical columns are kept (codes).
    Reading a column back with ``to_numpy(float64)`` gives the original values.
    """
    out = {}
    for c in df.columns:
        s = df[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            out[c] = s
            continue
        x = s.to_numpy(dtype=np.float64, na_value=np.nan)
        fin = x[np.isfinite(x)]
        whole = bool(np.array_equal(fin, np.round(fin)))
        top = float(np.abs(fin).max(initial=0.0))
        if whole and top <= 2048:
            out[c] = x.astype(np.float16)
        elif whole and top <= 2**24:
            out[c] = x.astype(np.float32)
        else:
            out[c] = x
    return pd.DataFrame(out, index=df.index, copy=False)


@dataclass
class Moments:
    """Running count, mean and sum of squared deviations per column, piece by piece.

    Pieces are combined by the pairwise update of Chan, Golub & LeVeque (1983), which
    keeps the variance accurate however many pieces there are.
    """

    n: float = 0.0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    @classmethod
    def of(cls, X: np.ndarray) -> Moments:
        """The moments of the rows of ``X`` alone (to :meth:`merge` later, in order)."""
        if len(X) == 0:
            return cls()
        mb = X.mean(axis=0)
        return cls(float(len(X)), mb, ((X - mb) ** 2).sum(axis=0))

    def merge(self, other: Moments) -> None:
        """Take in the rows whose moments are ``other`` (Chan's pairwise update)."""
        if other.mean is None:
            return
        if self.mean is None:
            self.n, self.mean, self.m2 = other.n, other.mean, other.m2
            return
        nb = other.n
        n = self.n + nb
        delta = other.mean - self.mean
        self.mean = self.mean + delta * nb / n
        self.m2 = self.m2 + other.m2 + delta**2 * self.n * nb / n
        self.n = n

    def add(self, X: np.ndarray) -> None:
        """Take in the rows of ``X`` (``merge(Moments.of(X))``)."""
        self.merge(Moments.of(X))

    @property
    def var(self) -> np.ndarray:
        """Variance (``ddof=1``) of each column."""
        return self.m2 / (self.n - 1) if self.n > 1 else np.full_like(self.mean, np.nan)
