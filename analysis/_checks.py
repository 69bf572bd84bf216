"""Shared input checks for the estimators of ``analysis`` (private).

Every public estimator takes a DataFrame and the *names* of the columns that play each role
(``duration``, ``event``, ``treatment``, ``weights``, ``cluster``, ``id``...). These helpers turn
a named column into a checked array, and fail with one line that names the role (the argument)
and the column.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "ColumnError",
    "binary",
    "cluster_codes",
    "durations",
    "numeric",
    "require_columns",
    "weights_array",
    "wald_p",
    "z_value",
]


class ColumnError(KeyError):
    """A column named by an argument is not in the data (a ``KeyError`` with a plain message)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def require_columns(df: pd.DataFrame, **roles: str | None) -> None:
    """Check that every named column is in ``df``.

    Parameters
    ----------
    df : DataFrame
    **roles : str or None
        Argument name -> column name; ``None`` (an optional role not used) is skipped.

    Raises
    ------
    ColumnError
        Naming the first argument whose column is missing, and the column.
    """
    for role, name in roles.items():
        if name is not None and name not in df.columns:
            raise ColumnError(f"{role} column {name!r} is not in the data")


def numeric(df: pd.DataFrame, name: str, role: str) -> np.ndarray:
    """A numeric column as float, refusing missing and infinite values."""
    require_columns(df, **{role: name})
    column = df[name]
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf":
        values = column.to_numpy(dtype=float)  # numeric already: what to_numeric gives back
    else:
        try:
            values = pd.to_numeric(column, errors="raise").to_numpy(dtype=float)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{role} column {name!r} is not numeric") from err
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"{role} column {name!r} has {int(bad.sum())} missing or infinite values; "
            "select the analysable rows first"
        )
    return values


def binary(df: pd.DataFrame, name: str, role: str) -> np.ndarray:
    """A 0/1 (or boolean) column as int, refusing missing values and other codes."""
    values = numeric(df, name, role)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"{role} column {name!r} must hold only 0 and 1")
    return values.astype(int)


def durations(df: pd.DataFrame, name: str, role: str = "duration") -> np.ndarray:
    """Non-negative durations as float."""
    values = numeric(df, name, role)
    if (values < 0).any():
        raise ValueError(f"{role} column {name!r} has {int((values < 0).sum())} negative values")
    return values


def weights_array(df: pd.DataFrame, name: str | None) -> np.ndarray:
    """Weights (ones when ``name`` is None); non-negative and not all zero."""
    if name is None:
        return np.ones(len(df))
    values = numeric(df, name, "weights")
    if (values < 0).any():
        raise ValueError(f"weights column {name!r} has negative values")
    if len(values) and not (values > 0).any():
        raise ValueError(f"weights column {name!r} is zero everywhere")
    return values


def cluster_codes(df: pd.DataFrame, name: str | None) -> tuple[np.ndarray, int]:
    """Integer cluster codes 0..G-1 (each row its own cluster when ``name`` is None)."""
    if name is None:
        return np.arange(len(df)), len(df)
    require_columns(df, cluster=name)
    column = df[name]
    integers = isinstance(column.dtype, np.dtype) and column.dtype.kind in "biu"
    if not integers and column.isna().any():  # integer columns hold no missing values
        raise ValueError(f"cluster column {name!r} has missing values")
    codes, uniques = pd.factorize(column, sort=True)
    return codes.astype(np.intp), len(uniques)


def z_value(alpha: float) -> float:
    """Two-sided normal quantile for a ``1 - alpha`` confidence interval."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return _z(float(alpha))


@lru_cache(maxsize=64)
def _z(alpha: float) -> float:
    return float(stats.norm.ppf(1 - alpha / 2))


def wald_p(estimate: float, se: float) -> float:
    """Two-sided Wald p-value (NaN when the standard error is not usable)."""
    if not (math.isfinite(estimate) and math.isfinite(se)) or se <= 0:
        return float("nan")
    return float(2 * stats.norm.sf(abs(estimate / se)))
