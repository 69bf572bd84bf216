"""The pandera schemas of the contract's tables and the validation of one table.

Each table passes two schemas, in this order:

1. :func:`raw_schema` checks the frame *as read* (CSV cells are strings; Parquet
   columns may be typed): required values are present, ``person_id`` is unique
   where it must be, categorical values are allowed ones, and every cell parses
   as its type (strict ISO 8601 ``YYYY-MM-DD`` dates, integers, numbers,
   booleans ``0/1``/``true/false``).
2. :func:`analysis.data.parsing.normalise_table` converts the frame to the
   normalised types, and :func:`typed_schema` checks the rules on values:
   ``birth_year`` in 1900..index year - 15 (version 2: extract year - 15),
   non-negative covariates, ``end_date >= start_date``, ``index_date`` not
   after the extract date.

:func:`conform_columns` checks the columns first; :func:`validate_table` runs
both schemas and turns the first broken rule into an
:class:`analysis.data.errors.ExtractError`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaError, SchemaErrorReason

from analysis.data._quick import cells_pass, quick_category, quick_parse, with_quick_test
from analysis.data._quick import passes as _passes
from analysis.data.contract import (
    HISTORY_OPTIONAL_COLUMNS,
    HISTORY_VERSION,
    OPTIONAL_PERSON_COLUMNS,
    VERSION_1_PERSON_COLUMNS,
)
from analysis.data.errors import ExtractError, one_line, rows_error
from analysis.data.parsing import (
    CATEGORIES,
    DATE_DTYPE,
    column_kind,
    normalise_table,
    parse_booleans,
    parse_dates,
    parse_numbers,
    table_columns,
)

__all__ = [
    "HISTORY_REQUIRED_VALUES",
    "REQUIRED_VALUES",
    "conform_columns",
    "raw_schema",
    "typed_schema",
    "validate_table",
]

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


def _required_values(table: str, version: int) -> tuple[str, ...]:
    return (HISTORY_REQUIRED_VALUES if version == HISTORY_VERSION else REQUIRED_VALUES)[table]


def _optional_columns(version: int) -> tuple[str, ...]:
    return HISTORY_OPTIONAL_COLUMNS if version == HISTORY_VERSION else OPTIONAL_PERSON_COLUMNS


def _is_integer(s: pd.Series) -> pd.Series:
    return _integer_values(parse_numbers(s))


# --------------------------------------------------------------------------- schemas
#: singular form of each check's error (the plural form), for "1 row ..." messages
_SINGULAR: dict[str, str] = {}
#: dataframe-level checks: name -> (column reported, columns shown)
_ROW_RULES: dict[str, tuple[str, tuple[str, ...]]] = {}


def _check(check: pa.Check, singular: str, quick: Callable | None = None) -> pa.Check:
    _SINGULAR[check.error] = singular
    if quick is not None:
        with_quick_test(check, quick)
    return check


def _integer_values(values: pd.Series) -> pd.Series:
    return (values == np.round(values)) & (values.abs() < 2**53)


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


#: kind -> quick test of its parse rule (the same parse as ``_PARSE_RULES``)
_QUICK_PARSE: dict[str, Callable] = {
    "date": quick_parse(parse_dates),
    "integer": quick_parse(parse_numbers, _integer_values),
    "number": quick_parse(parse_numbers),
    "boolean": quick_parse(parse_booleans),
}


def _format_checks(column: str) -> list[pa.Check]:
    kind = column_kind(column)
    if kind == "category":
        allowed = ", ".join(repr(v) for v in CATEGORIES[column])
        check = pa.Check.isin(CATEGORIES[column], error=f"are not one of {allowed}")
        return [_check(check, f"is not one of {allowed}", quick_category(CATEGORIES[column]))]
    if kind in _PARSE_RULES:
        test, name, plural, singular = _PARSE_RULES[kind]
        return [_check(pa.Check(test, name=name, error=plural), singular, _QUICK_PARSE[kind])]
    return []


@functools.lru_cache(maxsize=64)
def raw_schema(table: str, *, version: int = 1) -> pa.DataFrameSchema:
    """Return the schema of a table as read from its file (built once per process).

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
        ``None``/``NaN`` (empty CSV cells become missing when read). The same object
        for the same arguments (cached): use it, do not change it.
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


def _value_checks(table: str, column: str, extract_date: pd.Timestamp) -> list[pa.Check]:
    """Rules on the normalised values of one column."""
    checks = []
    if column in NON_NEGATIVE_COLUMNS:
        checks.append(
            _check(
                pa.Check.ge(0, error="are negative (must be >= 0)"),
                "is negative (must be >= 0)",
                lambda s: (cells_pass(s, s >= 0), None),
            )
        )
    if table == "persons" and column == "index_date":
        day = extract_date.strftime("%Y-%m-%d")
        checks.append(
            _check(
                pa.Check.le(extract_date, error=f"have an index_date after the extract date {day}"),
                f"has an index_date after the extract date {day}",
                lambda s: (cells_pass(s, s <= extract_date), None),
            )
        )
    return checks


def _row_checks(table: str, version: int, extract_date: pd.Timestamp) -> list[pa.Check]:
    """Rules across the columns of a row (birth year, end after start)."""
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
                lambda df: bool(_birth_year_by_extract_date(df, extract_date).all()),
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
                lambda df: bool(_birth_year_in_range(df).all()),
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
                lambda df: bool(_ends_after_start(df).all()),
            )
        )
    return checks


def typed_schema(table: str, *, extract_date: pd.Timestamp, version: int = 1) -> pa.DataFrameSchema:
    """Return the schema of a normalised table (see :func:`normalise_table`), built once.

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
        start_date`` (where both are given). The same object for the same arguments
        (cached): use it, do not change it.
    """
    return _typed_schema(table, pd.Timestamp(extract_date), version)


@functools.lru_cache(maxsize=64)
def _typed_schema(table: str, extract_date: pd.Timestamp, version: int) -> pa.DataFrameSchema:
    required = _required_values(table, version)
    columns = {}
    for column in table_columns(table, version):
        dtype = "int64" if column == "birth_year" else _TYPED_DTYPES[column_kind(column)]
        columns[column] = pa.Column(
            dtype,
            checks=_value_checks(table, column, extract_date),
            nullable=column not in required,
        )
    checks = _row_checks(table, version, extract_date)
    return pa.DataFrameSchema(columns, checks=checks, name=f"{table} (normalised)")


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
    schema: pa.DataFrameSchema,
    df: pd.DataFrame,
    *,
    file: str,
    table: str,
    frame: pd.DataFrame,
    parsed: dict[str, pd.Series] | None = None,
    complete: set[str] | None = None,
) -> None:
    if _passes(schema, df, parsed, complete):
        return
    if parsed is not None:
        parsed.clear()  # pandera validates: nothing is taken from the quick tests
    try:
        schema.validate(df, lazy=False, inplace=True)
    except SchemaError as exc:
        raise _error_from_schema(exc, file=file, table=table, frame=frame) from None


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
        all missing (``None``). ``raw`` itself when it has exactly those columns.
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
        hint = ""
        if version != HISTORY_VERSION and table == "persons" and column in ("group", "index_date"):
            hint = "; a history extract (contract version 2) declares contract_version: 2"
        raise ExtractError(
            f"{file}: required column '{column}' is absent"
            f" (columns found: {', '.join(map(str, raw.columns)) or 'none'}){hint}",
            file=file,
            table=table,
            column=column,
        )
    notes = [f"{file}: ignored unknown column '{c}'" for c in raw.columns if c not in expected]
    notes += [f"{file}: optional column '{c}' absent; filled with missing values" for c in absent]
    if list(raw.columns) == list(expected):
        return raw, notes  # already the contract's columns in order (a frame as read)
    out = raw.reindex(columns=list(expected))
    for column in absent:
        out[column] = pd.Series(None, index=raw.index, dtype=object)
    return out, notes


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
    schema = raw_schema(table, version=version)
    parsed: dict[str, pd.Series] = {}  # the columns the raw schema's checks parsed
    _validate(schema, raw, file=file, table=table, frame=raw, parsed=parsed)
    typed = normalise_table(raw, table, version=version, parsed=parsed)
    # passed: the required columns have no missing value, as read and so once normalised
    complete = {name for name, column in schema.columns.items() if not column.nullable}
    _validate(
        typed_schema(table, extract_date=extract_date, version=version),
        typed,
        file=file,
        table=table,
        frame=raw,
        complete=complete,
    )
    return typed
