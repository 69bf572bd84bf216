"""Column kinds of the data contract and strict parsing of cells to normalised types.

:func:`column_kind` tells what a contract column holds; :func:`parse_dates`,
:func:`parse_numbers` and :func:`parse_booleans` parse cells as read (CSV
strings or typed Parquet columns) vectorised over the distinct values;
:func:`normalise_table` converts a whole table to the normalised types of
:class:`analysis.data.extract.Extract`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa_arrow
import pyarrow.compute as pc

from analysis.data.contract import (
    BOOLEAN_COVARIATES,
    CAUSES,
    COLUMNS,
    DATE_COLUMNS,
    GROUPS,
    HISTORY_COLUMNS,
    HISTORY_DATE_COLUMNS,
    HISTORY_VERSION,
    MEDICATIONS,
    OFFENCES,
    REGIONS,
    SEXES,
)

__all__ = [
    "CATEGORIES",
    "DATE_DTYPE",
    "as_arrow",
    "column_kind",
    "encode",
    "normalise_table",
    "parse_booleans",
    "parse_dates",
    "parse_numbers",
    "table_columns",
]

#: allowed values of the categorical columns
CATEGORIES: dict[str, tuple[str, ...]] = {
    "group": GROUPS,
    "sex": SEXES,
    "region": REGIONS,
    "medication": MEDICATIONS,
    "cause": CAUSES,
    "offence": OFFENCES,
}
INTEGER_COLUMNS = ("birth_year", "prior_ost_episodes")
NUMBER_COLUMNS = ("years_opioid_use",)
_DATE_NAMES = frozenset(
    c for dates in (DATE_COLUMNS, HISTORY_DATE_COLUMNS) for cols in dates.values() for c in cols
)
_ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_BOOLEAN_WORDS = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "false": 0.0, "true": 1.0}
#: normalised dtype of every date column: whole days at second resolution, so that every
#: four-digit ISO year (0001-01-01 to 9999-12-31, e.g. 9999-12-31 for an open episode) is
#: representable, which nanosecond timestamps (1677 to 2262) are not
DATE_DTYPE = "datetime64[s]"
#: units of a day, by datetime64 unit
_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}
_DAYS_BEFORE_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def table_columns(table: str, version: int = 1) -> tuple[str, ...]:
    """Return the columns of a table of the given contract version, in contract order."""
    return (HISTORY_COLUMNS if version == HISTORY_VERSION else COLUMNS)[table]


def column_kind(column: str) -> str:
    """Return the kind of a contract column.

    Parameters
    ----------
    column : str
        Column name.

    Returns
    -------
    str
        One of ``"id"``, ``"category"``, ``"date"``, ``"integer"``, ``"number"``,
        ``"boolean"``.
    """
    if column == "person_id":
        return "id"
    if column in CATEGORIES:
        return "category"
    if column in _DATE_NAMES:
        return "date"
    if column in INTEGER_COLUMNS:
        return "integer"
    if column in NUMBER_COLUMNS:
        return "number"
    if column in BOOLEAN_COVARIATES:
        return "boolean"
    raise KeyError(f"not a contract column: {column!r}")


# --------------------------------------------------------------------------- parsing
def as_arrow(s: pd.Series) -> pa_arrow.Array:
    """Return the values of a series as one Arrow array (zero-copy when Arrow-backed)."""
    values = pa_arrow.array(s.array, from_pandas=True)
    return values.combine_chunks() if isinstance(values, pa_arrow.ChunkedArray) else values


def encode(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Encode a series as integer codes into its distinct values.

    Parameters
    ----------
    s : pandas.Series
        Any values; Arrow-backed strings are encoded by Arrow (fast).

    Returns
    -------
    codes : numpy.ndarray
        ``int64`` position of each value in ``uniques``; -1 where missing.
    uniques : numpy.ndarray
        The distinct non-missing values (object), in order of appearance.
    """
    if isinstance(s.dtype, pd.StringDtype | pd.ArrowDtype):
        encoded = pc.dictionary_encode(as_arrow(s))
        codes = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)
        return codes, encoded.dictionary.to_numpy(zero_copy_only=False).astype(object)
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=object)


def _is_text(s: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)


def _map_unique(s: pd.Series, fn: Callable[[np.ndarray], np.ndarray], na: Any) -> np.ndarray:
    """Apply ``fn`` to the distinct non-missing values of ``s`` only, then spread back."""
    codes, uniques = encode(s)
    mapped = np.asarray(fn(uniques))
    # code -1 (missing) picks the appended missing value
    mapped = np.concatenate([mapped, np.array([na], dtype=mapped.dtype)])
    return mapped[codes]


def _days_from_iso(strings: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD`` strings to ``datetime64[D]``; ``NaT`` where not a real calendar date."""
    out = np.full(len(strings), np.datetime64("NaT"), dtype="datetime64[D]")
    text = pd.Series(strings, dtype=object)
    iso = text.str.fullmatch(_ISO_DATE).fillna(False).to_numpy(dtype=bool)
    if not iso.any():
        return out
    parts = text[iso].str.split("-", expand=True).astype(np.int64).to_numpy()
    year, month, day = parts[:, 0], parts[:, 1], parts[:, 2]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    valid_month = (month >= 1) & (month <= 12)
    month_days = _DAYS_BEFORE_MONTH[np.where(valid_month, month, 0)] + (leap & (month == 2))
    valid = (year >= 1) & valid_month & (day >= 1) & (day <= month_days)
    months = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    days = months.astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")
    out[np.flatnonzero(iso)[valid]] = days[valid]
    return out


def _dates_from_objects(values: np.ndarray) -> np.ndarray:
    out = _days_from_iso(values)
    for i in np.flatnonzero(np.isnat(out)):  # date objects, e.g. from Parquet read elsewhere
        value = values[i]
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            out[i] = np.datetime64(value, "D")
    return out.astype(DATE_DTYPE)


def parse_dates(s: pd.Series) -> pd.Series:
    """Parse dates strictly.

    Parameters
    ----------
    s : pandas.Series
        Strings (only ``YYYY-MM-DD`` with a real calendar date is accepted),
        ``datetime64`` of any unit or time zone, or ``datetime.date`` objects.
        A timestamp is a date only at midnight: a time of day (``13:45``) makes
        it invalid, as the same value written in a CSV file would be.

    Returns
    -------
    pandas.Series
        ``datetime64[s]`` (:data:`DATE_DTYPE`) holding whole days, ``NaT`` where
        ``s`` is missing or not a valid date.
    """
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(s.dtype):
        stamps = s.to_numpy()
        unit = np.datetime_data(stamps.dtype)[0]
        if unit in _PER_DAY:  # whole days: the count of units is a multiple of a day's
            whole_day = (stamps.view(np.int64) % _PER_DAY[unit] == 0) & ~np.isnat(stamps)
            values = np.where(whole_day, stamps, np.datetime64("NaT")).astype(DATE_DTYPE)
        else:
            days = stamps.astype("datetime64[D]")
            whole_day = days.astype(stamps.dtype) == stamps
            values = np.where(whole_day, days, np.datetime64("NaT")).astype(DATE_DTYPE)
    elif _is_text(s):
        values = _map_unique(s, _dates_from_objects, np.datetime64("NaT", "s"))
    else:
        values = np.full(len(s), np.datetime64("NaT"), dtype=DATE_DTYPE)
    return pd.Series(values, index=s.index, name=s.name)


def parse_numbers(s: pd.Series) -> pd.Series:
    """Parse finite numbers.

    Parameters
    ----------
    s : pandas.Series
        Strings or numeric values.

    Returns
    -------
    pandas.Series
        ``float64``, ``NaN`` where ``s`` is missing, not a number or not finite.
    """
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        values = s.to_numpy(dtype=float, na_value=np.nan)
    elif _is_text(s):
        values = _map_unique(
            s,
            lambda u: pd.to_numeric(pd.Series(u, dtype=object), errors="coerce").to_numpy(
                dtype=float, na_value=np.nan
            ),
            np.nan,
        )
    else:
        values = np.full(len(s), np.nan)
    values = np.where(np.isfinite(values), values, np.nan)
    return pd.Series(values, index=s.index, name=s.name)


def _booleans_from_objects(values: np.ndarray) -> np.ndarray:
    def one(value: Any) -> float:
        if isinstance(value, str):
            return _BOOLEAN_WORDS.get(value.strip().lower(), np.nan)
        if isinstance(value, bool | int | float | np.number) and value in (0, 1):
            return float(value)
        return np.nan

    return np.array([one(v) for v in values], dtype=float)


def parse_booleans(s: pd.Series) -> pd.Series:
    """Parse booleans.

    Parameters
    ----------
    s : pandas.Series
        ``0``/``1`` (also ``0.0``/``1.0``) or ``true``/``false`` in any case, as
        strings, numbers or booleans.

    Returns
    -------
    pandas.Series
        ``float64`` 0.0/1.0, ``NaN`` where ``s`` is missing or not a boolean.
    """
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        values = s.to_numpy(dtype=float, na_value=np.nan)
        values = np.where((values == 0) | (values == 1), values, np.nan)
    elif _is_text(s):
        values = _map_unique(s, _booleans_from_objects, np.nan)
    else:
        values = np.full(len(s), np.nan)
    return pd.Series(values, index=s.index, name=s.name)


def normalise_table(
    raw: pd.DataFrame,
    table: str,
    *,
    version: int = 1,
    parsed: Mapping[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """Convert a table that passed :func:`raw_schema` to the normalised types.

    Parameters
    ----------
    raw : pandas.DataFrame
        The table as read, with the contract's columns.
    table : str
        Contract table name.
    version : int, default 1
        Contract version of the extract.
    parsed : mapping of str to pandas.Series, optional
        Columns already converted from ``raw`` as this function converts them (the raw
        schema's checks parse them: :func:`analysis.data.schemas.validate_table`), used as
        they are.

    Returns
    -------
    pandas.DataFrame
        Same index; ``person_id`` and categorical columns as ``str`` (object),
        dates ``datetime64[s]`` (``NaT`` = missing), ``birth_year`` ``int64``,
        numeric and boolean covariates ``float64`` (booleans 0.0/1.0, ``NaN`` =
        missing).
    """
    out = {}
    for column in table_columns(table, version):
        if parsed is not None and column in parsed:
            out[column] = parsed[column]
            continue
        kind = column_kind(column)
        s = raw[column]
        if kind == "category" or (kind == "id" and table != "persons" and not s.hasnans):
            # repeated values: one string object per distinct value, shared by its rows
            codes, uniques = encode(s)
            out[column] = pd.Series(np.append(uniques, None)[codes], index=raw.index)
        elif kind == "id":
            out[column] = s.astype(object)
        elif kind == "date":
            out[column] = parse_dates(s)
        elif kind == "boolean":
            out[column] = parse_booleans(s)
        else:
            out[column] = parse_numbers(s)
    if table == "persons":
        out["birth_year"] = out["birth_year"].astype("int64")
    return pd.DataFrame(out, index=raw.index)
