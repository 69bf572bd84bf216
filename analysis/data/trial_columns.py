"""Columns of the target trial's tables: dates, categories and nullable integers.

Values are computed compactly for the rows where they are given (``valid``) and
spread here into full columns with missing values elsewhere: dates as
``datetime64[s]`` (``NaT`` missing), ``sex`` and ``region`` categorical, floats
with ``NaN``, every count and day number as a nullable ``Int64`` array.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.data.contract import REGIONS, SEXES
from analysis.data.histories import NO_DATE
from analysis.data.intervals import year_of

__all__ = ["DATE_VALUED", "as_dates", "categorical", "spread", "years_of"]

#: columns holding day numbers that are dates (``NO_DATE`` missing)
DATE_VALUED = ("pp_censor_date", "followup_end", "pp_followup_end")


def as_dates(days: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Day numbers as ``datetime64[s]``; ``NaT`` where ``NO_DATE`` or not ``valid``."""
    out = np.where(days == NO_DATE, 0, days).astype("datetime64[D]").astype("datetime64[s]")
    missing = days == NO_DATE if valid is None else ~valid | (days == NO_DATE)
    out[missing] = np.datetime64("NaT")
    return out


def categorical(values: np.ndarray, categories: Sequence[str]) -> pd.Categorical:
    """Values as a categorical with the given categories (others missing)."""
    return pd.Categorical(values, categories=list(categories))


def _column(name: str, values: np.ndarray, valid: np.ndarray, n: int) -> object:
    """A column of ``n`` rows holding ``values`` where ``valid`` (others missing)."""
    if len(values) == n:  # every row valid
        if name in ("sex", "region"):
            return categorical(values, SEXES if name == "sex" else REGIONS)
        if name in DATE_VALUED:
            return as_dates(values)
        if values.dtype == np.float64:
            return values
        return pd.arrays.IntegerArray(values.astype(np.int64, copy=False), np.zeros(n, dtype=bool))
    if name in ("sex", "region"):
        full = np.full(n, None, dtype=object)
        full[valid] = values
        return categorical(full, SEXES if name == "sex" else REGIONS)
    if name in DATE_VALUED:
        full = np.full(n, NO_DATE, dtype=np.int64)
        full[valid] = values
        return as_dates(full)
    if values.dtype == np.float64:
        full = np.full(n, np.nan)
        full[valid] = values
        return full
    data = np.zeros(n, dtype=np.int64)
    data[valid] = values
    return pd.arrays.IntegerArray(data, ~valid)


def spread(values: dict[str, np.ndarray], valid: np.ndarray) -> dict[str, object]:
    """Full columns of ``len(valid)`` rows from values given where ``valid``.

    Each compact column is taken out of ``values`` (and freed) once spread out.
    """
    n = len(valid)
    out = {}
    for name in list(values):
        v = np.asarray(values.pop(name))
        if v.dtype == bool:
            v = v.astype(np.int64)
        out[name] = _column(name, v, valid, n)
    return out


def years_of(day: np.ndarray) -> np.ndarray:
    """Calendar year of each day number (:func:`analysis.data.intervals.year_of`), through
    a table of the days spanned: many rows share few days, and the calendar conversion is
    the slow part."""
    day = np.asarray(day, dtype=np.int64)
    if len(day) < 4096:
        return year_of(day)
    lo, hi = int(day.min()), int(day.max())
    if hi - lo > len(day):
        return year_of(day)
    return year_of(np.arange(lo, hi + 1, dtype=np.int64))[day - lo]
