"""Validation of a registry extract against the data contract.

Each table passes two pandera schemas, in this order:

1. :func:`raw_schema` checks the frame *as read* (CSV cells are strings; Parquet
   columns may be typed): required values are present, ``person_id`` is unique
   where it must be, categorical values are allowed ones, and every cell parses
   as its type (strict ISO 8601 ``YYYY-MM-DD`` dates, integers, numbers,
   booleans ``0/1``/``true/false``).
2. :func:`normalise_table` converts the frame to the normalised types of
   :class:`analysis.data.extract.Extract`, and :func:`typed_schema` checks the rules on
   values: ``birth_year`` in 1900..index year - 15, non-negative covariates,
   ``end_date >= start_date``, ``index_date`` not after the extract date.

Cross-table rules (every ``person_id`` exists in ``persons``; both groups present)
are vectorised pandas checks (:func:`check_references`, :func:`check_groups`).

A version-2 (history) extract has its own tables and columns (``version=2``):
``persons`` without groups, index dates or covariates (version-1 columns are
refused by :func:`conform_columns`), ``birth_year`` in 1900..extract year - 15,
and at most one assessment per person and date (:func:`check_unique_assessments`).

The first broken rule raises :class:`ExtractError`, which names the file, table,
column and the 1-based data rows of the file (row 1 is the first row under the
header, in file order, before any sorting).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
import pyarrow.compute as pc
from pandera.errors import SchemaError, SchemaErrorReason

from analysis.data.contract import (
    BOOLEAN_COVARIATES,
    CAUSES,
    COLUMNS,
    DATE_COLUMNS,
    GROUPS,
    HISTORY_COLUMNS,
    HISTORY_DATE_COLUMNS,
    HISTORY_OPTIONAL_COLUMNS,
    HISTORY_VERSION,
    MEDICATIONS,
    OFFENCES,
    OPTIONAL_PERSON_COLUMNS,
    REGIONS,
    SEXES,
    VERSION_1_PERSON_COLUMNS,
)

__all__ = [
    "CATEGORIES",
    "REQUIRED_VALUES",
    "HISTORY_REQUIRED_VALUES",
    "ExtractError",
    "as_arrow",
    "check_groups",
    "check_references",
    "check_unique_assessments",
    "column_kind",
    "conform_columns",
    "encode",
    "normalise_table",
    "one_line",
    "parse_booleans",
    "parse_dates",
    "parse_numbers",
    "raw_schema",
    "rows_error",
    "table_columns",
    "typed_schema",
    "validate_table",
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
NON_NEGATIVE_COLUMNS = ("years_opioid_use", "prior_ost_episodes")
MIN_BIRTH_YEAR = 1900
MIN_AGE_AT_INDEX = 15

#: columns whose values may not be missing
REQUIRED_VALUES: dict[str, tuple[str, ...]] = {
    "persons": ("person_id", "group", "index_date", "sex", "birth_year", "region"),
    "treatment_episodes": ("person_id", "start_date", "medication"),
    "deaths": ("person_id", "death_date", "cause"),
    "charges": ("person_id", "charge_date", "offence"),
    "incarcerations": ("person_id", "start_date"),
}
#: columns whose values may not be missing, in a version-2 (history) extract
HISTORY_REQUIRED_VALUES: dict[str, tuple[str, ...]] = {
    "persons": ("person_id", "sex", "birth_year", "region"),
    "treatment_episodes": REQUIRED_VALUES["treatment_episodes"],
    "deaths": REQUIRED_VALUES["deaths"],
    "charges": REQUIRED_VALUES["charges"],
    "incarcerations": REQUIRED_VALUES["incarcerations"],
    "assessments": ("person_id", "assessment_date"),
    "overdoses": ("person_id", "overdose_date"),
}
#: tables with at most one row per person
UNIQUE_PERSON_TABLES = ("persons", "deaths")

MAX_ROWS_SHOWN = 5
_DATE_NAMES = frozenset(
    c for dates in (DATE_COLUMNS, HISTORY_DATE_COLUMNS) for cols in dates.values() for c in cols
)
_ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_BOOLEAN_WORDS = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0, "false": 0.0, "true": 1.0}
#: normalised dtype of every date column: whole days at second resolution, so that every
#: four-digit ISO year (0001-01-01 to 9999-12-31, e.g. 9999-12-31 for an open episode) is
#: representable, which nanosecond timestamps (1677 to 2262) are not
DATE_DTYPE = "datetime64[s]"
_DAYS_BEFORE_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


class ExtractError(ValueError):
    """An extract breaks a rule of the data contract.

    ``str(error)`` is a one-paragraph message naming the file, the column, the
    number of offending rows and the first few of them with their values.

    Parameters
    ----------
    message : str
        The message.
    file : str, optional
        File name within the extract folder (``persons.csv``, ``extract.yml``).
    table : str, optional
        Contract table name.
    column : str, optional
        Column (or ``extract.yml`` key) concerned.
    rows : sequence of int
        The first (at most five) offending 1-based data row numbers, in file order.
    n_rows : int, optional
        Total number of offending rows; defaults to ``len(rows)``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        table: str | None = None,
        column: str | None = None,
        rows: Sequence[int] = (),
        n_rows: int | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.table = table
        self.column = column
        self.rows = [int(r) for r in rows]
        self.n_rows = len(self.rows) if n_rows is None else int(n_rows)


def table_columns(table: str, version: int = 1) -> tuple[str, ...]:
    """Return the columns of a table of the given contract version, in contract order."""
    return (HISTORY_COLUMNS if version == HISTORY_VERSION else COLUMNS)[table]


def _required_values(table: str, version: int) -> tuple[str, ...]:
    return (HISTORY_REQUIRED_VALUES if version == HISTORY_VERSION else REQUIRED_VALUES)[table]


def _optional_columns(version: int) -> tuple[str, ...]:
    return HISTORY_OPTIONAL_COLUMNS if version == HISTORY_VERSION else OPTIONAL_PERSON_COLUMNS


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


def _is_integer(s: pd.Series) -> pd.Series:
    values = parse_numbers(s)
    return (values == np.round(values)) & (values.abs() < 2**53)


# --------------------------------------------------------------------------- schemas
#: singular form of each check's error (the plural form), for "1 row ..." messages
_SINGULAR: dict[str, str] = {}
#: dataframe-level checks: name -> (column reported, columns shown)
_ROW_RULES: dict[str, tuple[str, tuple[str, ...]]] = {}


def _check(check: pa.Check, singular: str) -> pa.Check:
    _SINGULAR[check.error] = singular
    return check


#: kind -> (vectorised test that a cell parses, check name, plural and singular error)
_PARSE_RULES: dict[str, tuple[Callable[[pd.Series], pd.Series], str, str, str]] = {
    "date": (
        lambda s: parse_dates(s).notna(),
        "iso_date",
        "are not ISO 8601 calendar dates (YYYY-MM-DD, no time of day)",
        "is not an ISO 8601 calendar date (YYYY-MM-DD, no time of day)",
    ),
    "integer": (_is_integer, "integer", "are not integers", "is not an integer"),
    "number": (
        lambda s: parse_numbers(s).notna(),
        "number",
        "are not numbers",
        "is not a number",
    ),
    "boolean": (
        lambda s: parse_booleans(s).notna(),
        "boolean",
        "are not booleans (0/1 or true/false)",
        "is not a boolean (0/1 or true/false)",
    ),
}


def _format_checks(column: str) -> list[pa.Check]:
    kind = column_kind(column)
    if kind == "category":
        allowed = ", ".join(repr(v) for v in CATEGORIES[column])
        check = pa.Check.isin(CATEGORIES[column], error=f"are not one of {allowed}")
        return [_check(check, f"is not one of {allowed}")]
    if kind in _PARSE_RULES:
        test, name, plural, singular = _PARSE_RULES[kind]
        return [_check(pa.Check(test, name=name, error=plural), singular)]
    return []


def raw_schema(table: str, *, version: int = 1) -> pa.DataFrameSchema:
    """Return the schema of a table as read from its file.

    Parameters
    ----------
    table : str
        Contract table name.
    version : int, default 1
        Contract version of the extract.

    Returns
    -------
    pandera.pandas.DataFrameSchema
        Checks, column by column in contract order: required values present
        (``nullable``), ``person_id`` unique in ``persons`` and ``deaths``,
        allowed categorical values and parseable cells. Missing values are
        ``None``/``NaN`` (empty CSV cells become missing when read).
    """
    columns = {
        column: pa.Column(
            None,
            nullable=column not in _required_values(table, version),
            unique=column == "person_id" and table in UNIQUE_PERSON_TABLES,
            checks=_format_checks(column),
            required=column not in _optional_columns(version),
        )
        for column in table_columns(table, version)
    }
    return pa.DataFrameSchema(columns, name=f"{table} (as read)")


def _birth_year_in_range(df: pd.DataFrame) -> pd.Series:
    latest = df["index_date"].dt.year - MIN_AGE_AT_INDEX
    return (df["birth_year"] >= MIN_BIRTH_YEAR) & (df["birth_year"] <= latest)


def _birth_year_by_extract_date(df: pd.DataFrame, extract_date: pd.Timestamp) -> pd.Series:
    latest = extract_date.year - MIN_AGE_AT_INDEX
    return (df["birth_year"] >= MIN_BIRTH_YEAR) & (df["birth_year"] <= latest)


def _ends_after_start(df: pd.DataFrame) -> pd.Series:
    return df["end_date"].isna() | (df["end_date"] >= df["start_date"])


_TYPED_DTYPES = {
    "id": object,
    "category": object,
    "date": DATE_DTYPE,
    "integer": "float64",
    "number": "float64",
    "boolean": "float64",
}


def typed_schema(table: str, *, extract_date: pd.Timestamp, version: int = 1) -> pa.DataFrameSchema:
    """Return the schema of a normalised table (see :func:`normalise_table`).

    Parameters
    ----------
    table : str
        Contract table name.
    extract_date : pandas.Timestamp
        ``index_date`` may not be later.
    version : int, default 1
        Contract version of the extract.

    Returns
    -------
    pandera.pandas.DataFrameSchema
        Normalised dtypes plus the rules on values: non-negative
        ``years_opioid_use`` and ``prior_ost_episodes``, ``index_date`` not after
        ``extract_date``, ``birth_year`` in 1900..index year - 15 (version 2,
        without index dates: 1900..extract year - 15) and ``end_date >=
        start_date`` (where both are given).
    """
    extract_date = pd.Timestamp(extract_date)
    required = _required_values(table, version)
    columns = {}
    for column in table_columns(table, version):
        checks = []
        if column in NON_NEGATIVE_COLUMNS:
            checks.append(
                _check(
                    pa.Check.ge(0, error="are negative (must be >= 0)"),
                    "is negative (must be >= 0)",
                )
            )
        if table == "persons" and column == "index_date":
            day = extract_date.strftime("%Y-%m-%d")
            checks.append(
                _check(
                    pa.Check.le(
                        extract_date, error=f"have an index_date after the extract date {day}"
                    ),
                    f"has an index_date after the extract date {day}",
                )
            )
        dtype = "int64" if column == "birth_year" else _TYPED_DTYPES[column_kind(column)]
        columns[column] = pa.Column(dtype, checks=checks, nullable=column not in required)
    checks = []
    if table == "persons" and version == HISTORY_VERSION:
        latest = extract_date.year - MIN_AGE_AT_INDEX
        error = f"have a birth_year outside {MIN_BIRTH_YEAR}..{latest} (extract year - {MIN_AGE_AT_INDEX})"
        _ROW_RULES["birth_year_by_extract_date"] = ("birth_year", ("birth_year",))
        checks.append(
            _check(
                pa.Check(
                    lambda df: _birth_year_by_extract_date(df, extract_date),
                    name="birth_year_by_extract_date",
                    error=error,
                    ignore_na=False,
                ),
                error.replace("have", "has", 1),
            )
        )
    elif table == "persons":
        error = f"have a birth_year outside {MIN_BIRTH_YEAR}..index year - {MIN_AGE_AT_INDEX}"
        _ROW_RULES["birth_year_range"] = ("birth_year", ("birth_year", "index_date"))
        checks.append(
            _check(
                pa.Check(
                    _birth_year_in_range, name="birth_year_range", error=error, ignore_na=False
                ),
                error.replace("have", "has", 1),
            )
        )
    if "end_date" in table_columns(table, version):
        _ROW_RULES["end_after_start"] = ("end_date", ("start_date", "end_date"))
        checks.append(
            _check(
                pa.Check(
                    _ends_after_start,
                    name="end_after_start",
                    error="end before they start (end_date < start_date)",
                    ignore_na=False,
                ),
                "ends before it starts (end_date < start_date)",
            )
        )
    return pa.DataFrameSchema(columns, checks=checks, name=f"{table} (normalised)")


# --------------------------------------------------------------------------- messages
def one_line(exc: BaseException) -> str:
    """The text of an exception on one line, for a one-paragraph message."""
    return re.sub(r"\s*\n\s*", " ", str(exc)).strip()


def _show(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "missing"
    if isinstance(value, pd.Timestamp | np.datetime64 | dt.date):
        stamp = pd.Timestamp(value)
        return repr(stamp.strftime("%Y-%m-%d") if stamp == stamp.normalize() else stamp.isoformat())
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def rows_error(
    *,
    file: str,
    table: str,
    column: str,
    frame: pd.DataFrame,
    index: Iterable[int],
    problem: str,
    singular: str | None = None,
    show: Sequence[str] | None = None,
) -> ExtractError:
    """Build an :class:`ExtractError` for offending rows.

    Parameters
    ----------
    file, table, column : str
        Where the rule broke.
    frame : pandas.DataFrame
        The table in file order with a ``RangeIndex`` (position 0 = row 1), used
        to show values.
    index : iterable of int
        Index labels of the offending rows.
    problem : str
        What the rows are, after "N rows" (plural form, e.g. ``"are not integers"``).
    singular : str, optional
        Form used after "1 row"; defaults to ``problem``.
    show : sequence of str, optional
        Columns whose values are shown; default ``[column]``.

    Returns
    -------
    ExtractError
    """
    labels = np.unique(np.asarray(list(index), dtype=np.int64))
    n = len(labels)
    show = [column] if show is None else list(show)
    parts = []
    for label in labels[:MAX_ROWS_SHOWN]:
        part = f"row {label + 1}"
        if column != "person_id" and "person_id" in frame.columns:
            person = frame.at[label, "person_id"]
            if isinstance(person, str):
                part += f" (person_id {person})"
        if len(show) == 1:
            part += f": {_show(frame.at[label, show[0]])}"
        else:
            part += ": " + ", ".join(f"{c} {_show(frame.at[label, c])}" for c in show)
        parts.append(part)
    more = f"; and {n - MAX_ROWS_SHOWN} more" if n > MAX_ROWS_SHOWN else ""
    what = f"1 row {singular or problem}" if n == 1 else f"{n} rows {problem}"
    return ExtractError(
        f"{file}, column '{column}': {what}: " + "; ".join(parts) + more,
        file=file,
        table=table,
        column=column,
        rows=[label + 1 for label in labels[:MAX_ROWS_SHOWN]],
        n_rows=n,
    )


def _error_from_schema(
    exc: SchemaError, *, file: str, table: str, frame: pd.DataFrame
) -> ExtractError:
    failures = exc.failure_cases
    index = failures["index"] if isinstance(failures, pd.DataFrame) and "index" in failures else []
    column = getattr(exc.schema, "name", None)
    show = None
    if exc.reason_code == SchemaErrorReason.SERIES_CONTAINS_NULLS:
        problem, singular = "have missing values (required)", "has a missing value (required)"
    elif exc.reason_code == SchemaErrorReason.SERIES_CONTAINS_DUPLICATES:
        problem = singular = "have a person_id that appears more than once"
    elif exc.reason_code == SchemaErrorReason.DATAFRAME_CHECK and isinstance(exc.check, pa.Check):
        problem = exc.check.error or str(exc.check.name)
        singular = _SINGULAR.get(problem, problem)
        if isinstance(exc.schema, pa.DataFrameSchema):
            column, show = _ROW_RULES[exc.check.name]
    else:  # not a contract rule: a bug in normalisation
        return ExtractError(f"{file}: {one_line(exc)}", file=file, table=table, column=column)
    return rows_error(
        file=file,
        table=table,
        column=column,
        frame=frame,
        index=index,
        problem=problem,
        singular=singular,
        show=show,
    )


def _validate(
    schema: pa.DataFrameSchema, df: pd.DataFrame, *, file: str, table: str, frame: pd.DataFrame
) -> None:
    try:
        schema.validate(df, lazy=False, inplace=True)
    except SchemaError as exc:
        raise _error_from_schema(exc, file=file, table=table, frame=frame) from None


# --------------------------------------------------------------------------- tables
def conform_columns(
    raw: pd.DataFrame, *, table: str, file: str, version: int = 1
) -> tuple[pd.DataFrame, list[str]]:
    """Check a table's columns; fill absent optional ones and drop unknown ones.

    Parameters
    ----------
    raw : pandas.DataFrame
        The table as read.
    table, file : str
        Contract table name and file name.
    version : int, default 1
        Contract version of the extract.

    Returns
    -------
    frame : pandas.DataFrame
        The contract's columns, in contract order; absent optional columns are
        all missing (``None``).
    notes : list of str
        One note per filled or dropped column.

    Raises
    ------
    ExtractError
        A required column is absent; a version-2 ``persons`` table has a column
        of version 1 (``group``, ``index_date``, a baseline covariate).
    """
    expected = table_columns(table, version)
    if version == HISTORY_VERSION and table == "persons":
        old = [c for c in VERSION_1_PERSON_COLUMNS if c in raw.columns]
        if old:
            raise ExtractError(
                f"{file}: column '{old[0]}' belongs to contract version 1 (designed extract: "
                "groups, index dates and baseline covariates given); a version-2 history "
                "extract derives them from the histories (status forms go in assessments), "
                f"so remove {', '.join(repr(c) for c in old)} or declare contract_version 1",
                file=file,
                table=table,
                column=old[0],
            )
    absent = [c for c in expected if c not in raw.columns]
    required_absent = [c for c in absent if c not in _optional_columns(version)]
    if required_absent:
        column = required_absent[0]
        raise ExtractError(
            f"{file}: required column '{column}' is absent"
            f" (columns found: {', '.join(map(str, raw.columns)) or 'none'})",
            file=file,
            table=table,
            column=column,
        )
    notes = [f"{file}: ignored unknown column '{c}'" for c in raw.columns if c not in expected]
    notes += [f"{file}: optional column '{c}' absent; filled with missing values" for c in absent]
    out = raw.reindex(columns=list(expected))
    for column in absent:
        out[column] = pd.Series(None, index=raw.index, dtype=object)
    return out, notes


def normalise_table(raw: pd.DataFrame, table: str, *, version: int = 1) -> pd.DataFrame:
    """Convert a table that passed :func:`raw_schema` to the normalised types.

    Parameters
    ----------
    raw : pandas.DataFrame
        The table as read, with the contract's columns.
    table : str
        Contract table name.
    version : int, default 1
        Contract version of the extract.

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
        kind = column_kind(column)
        s = raw[column]
        if kind == "category":  # few distinct values: share the string objects
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


def validate_table(
    raw: pd.DataFrame, *, table: str, file: str, extract_date: pd.Timestamp, version: int = 1
) -> pd.DataFrame:
    """Validate one table and return it normalised, in file order.

    Parameters
    ----------
    raw : pandas.DataFrame
        The table as read (after :func:`conform_columns`), index 0..n-1 in file order.
    table, file : str
        Contract table name and file name (for messages).
    extract_date : pandas.Timestamp
        The extract date of ``extract.yml``.
    version : int, default 1
        Contract version of the extract.

    Returns
    -------
    pandas.DataFrame
        The normalised table (see :func:`normalise_table`), same index.

    Raises
    ------
    ExtractError
        The first broken rule.
    """
    _validate(raw_schema(table, version=version), raw, file=file, table=table, frame=raw)
    typed = normalise_table(raw, table, version=version)
    _validate(
        typed_schema(table, extract_date=extract_date, version=version),
        typed,
        file=file,
        table=table,
        frame=raw,
    )
    return typed


def check_unique_assessments(typed: pd.DataFrame, raw: pd.DataFrame, *, file: str) -> None:
    """Raise :class:`ExtractError` if a person has two assessments on the same date.

    Parameters
    ----------
    typed : pandas.DataFrame
        The normalised ``assessments`` table in file order.
    raw : pandas.DataFrame
        The table as read (for showing values), same index.
    file : str
        File name, for the message.
    """
    codes, _ = encode(typed["person_id"])
    days = typed["assessment_date"].to_numpy().astype("datetime64[D]").view(np.int64)
    repeated = pd.DataFrame({"p": codes, "d": days}).duplicated(keep=False).to_numpy()
    if repeated.any():
        raise rows_error(
            file=file,
            table="assessments",
            column="assessment_date",
            frame=raw,
            index=np.flatnonzero(repeated),
            problem="are assessments of the same person on the same date "
            "(at most one per person and date)",
            show=["assessment_date"],
        )


def check_groups(persons: pd.DataFrame, *, file: str) -> None:
    """Raise :class:`ExtractError` unless both groups (HAT and OST) have persons."""
    present = set(pd.unique(persons["group"]))
    for group in GROUPS:
        if group not in present:
            raise ExtractError(
                f"{file}, column 'group': no {group} persons; an extract needs both"
                f" {' and '.join(GROUPS)} persons",
                file=file,
                table="persons",
                column="group",
            )


def check_references(
    tables: Mapping[str, pd.DataFrame], files: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """Check that every ``person_id`` of the event tables is in ``persons``.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Tables in file order (index 0..n-1), ``persons`` included; the tables as
        read (Arrow-backed strings are fastest) or normalised.
    files : mapping of str to str
        Table name -> file name; tables without a file are skipped.

    Returns
    -------
    dict of str to numpy.ndarray
        For each event table, the position (``int64``) of each row's person
        among the rows of ``persons``.

    Raises
    ------
    ExtractError
        Rows whose ``person_id`` is not in ``persons``.
    """
    persons = as_arrow(tables["persons"]["person_id"]).cast(pa_arrow.string())
    positions = {}
    for table, df in tables.items():
        if table == "persons" or table not in files:
            continue
        ids = as_arrow(df["person_id"]).cast(pa_arrow.string())
        found = pc.index_in(ids, value_set=persons)
        if found.null_count:
            raise rows_error(
                file=files[table],
                table=table,
                column="person_id",
                frame=df,
                index=np.flatnonzero(found.is_null().to_numpy(zero_copy_only=False)),
                problem=f"have a person_id that is not in {files['persons']}",
                singular=f"has a person_id that is not in {files['persons']}",
            )
        positions[table] = found.to_numpy().astype(np.int64)
    return positions
