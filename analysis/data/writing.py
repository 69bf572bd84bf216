"""Writing tables as an extract folder in the data contract's format (versions 1 and 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from analysis.data.contract import (
    BOOLEAN_COVARIATES,
    DATE_COLUMNS,
    HISTORY_DATE_COLUMNS,
    HISTORY_TABLES,
    HISTORY_VERSION,
    TABLES,
)
from analysis.data.parsing import table_columns
from analysis.data.reading import FORMATS

__all__ = ["arrow_tables", "write_extract"]

_INTEGER_LIKE = ("birth_year", "prior_ost_episodes", *BOOLEAN_COVARIATES)


def _as_days(s: pd.Series) -> np.ndarray:
    if not pd.api.types.is_datetime64_any_dtype(s.dtype):
        s = pd.to_datetime(s)
    return s.to_numpy().astype("datetime64[D]")


def _format_table(
    df: pd.DataFrame, table: str, format: str, version: int = 1
) -> pa.Table | pd.DataFrame:
    out = df.loc[:, [c for c in table_columns(table, version) if c in df.columns]].copy()
    for column in _INTEGER_LIKE:
        if column in out.columns and (
            pd.api.types.is_bool_dtype(out[column]) or pd.api.types.is_float_dtype(out[column])
        ):
            values = out[column].to_numpy(dtype=float, na_value=np.nan)
            finite = values[~np.isnan(values)]
            if np.array_equal(finite, np.round(finite)):  # keep non-integers as they are
                out[column] = out[column].astype(float).astype("Int64")
    date_columns = HISTORY_DATE_COLUMNS if version == HISTORY_VERSION else DATE_COLUMNS
    dates = [c for c in date_columns[table] if c in out.columns]
    if format == "csv":
        for column in dates:
            days = _as_days(out[column])
            text = np.datetime_as_string(days, unit="D").astype(object)
            text[np.isnat(days)] = None
            out[column] = text
        return out
    arrays = {
        column: pa.array(_as_days(out[column]))
        if column in dates
        else pa.Array.from_pandas(out[column])
        for column in out.columns
    }
    return pa.table(arrays)


def _arrow_table(df: pd.DataFrame, table: str, version: int = 1) -> pa.Table:
    """The Arrow table of ``_format_table(df, table, "parquet", version)``, column by column.

    The same arrays (dates as ``date32``; integer-like floats and booleans as ``int64`` with
    nulls where missing; other columns as Arrow makes them from pandas), without copying
    the frame or converting through pandas' nullable integers.
    """
    date_columns = HISTORY_DATE_COLUMNS if version == HISTORY_VERSION else DATE_COLUMNS
    arrays = {}
    for column in (c for c in table_columns(table, version) if c in df.columns):
        s = df[column]
        array = None
        if column in date_columns[table]:
            array = pa.array(_as_days(s))
        elif column in _INTEGER_LIKE and (
            pd.api.types.is_bool_dtype(s) or pd.api.types.is_float_dtype(s)
        ):
            values = s.to_numpy(dtype=float, na_value=np.nan)
            missing = np.isnan(values)
            finite = values[~missing]
            if np.array_equal(finite, np.round(finite)):  # keep non-integers as they are
                array = pa.array(np.where(missing, 0.0, values).astype(np.int64), mask=missing)
        arrays[column] = pa.Array.from_pandas(s) if array is None else array
    return pa.table(arrays)


def arrow_tables(
    tables: dict[str, pd.DataFrame | None], *, history: bool = False
) -> dict[str, pa.Table]:
    """The Arrow tables :func:`write_extract` writes as Parquet files, kept in memory.

    Parameters
    ----------
    tables : dict of str to DataFrame
        As :func:`write_extract` takes them (a value of ``None`` is left out).
    history : bool
        The version-2 tables and columns (as ``write_extract`` with ``history_start``).

    Returns
    -------
    dict of str to pyarrow.Table
        For :func:`analysis.data.extract.extract_from_arrow`, which validates them as
        :func:`analysis.data.extract.read_extract` validates the files.
    """
    version = HISTORY_VERSION if history else 1
    return {
        table: _arrow_table(tables[table], table, version)
        for table in (HISTORY_TABLES if history else TABLES)
        if tables.get(table) is not None
    }


def write_extract(
    tables: dict[str, pd.DataFrame],
    path: str | Path,
    *,
    extract_date: pd.Timestamp | str,
    description: str | None = None,
    truth: dict[str, Any] | None = None,
    format: Literal["csv", "parquet"] = "csv",
    history_start: pd.Timestamp | str | None = None,
) -> Path:
    """Write tables as an extract folder in the contract's format.

    Dates are written as ``YYYY-MM-DD`` (CSV) or ``date32`` (Parquet); integer
    and boolean covariates held as floats with missing values are written as
    integers (``1``, not ``1.0``). Reading the folder back with
    :func:`read_extract` gives the same tables as an :class:`Extract` (or, with
    ``history_start``, a :class:`HistoryExtract`) holds.

    Parameters
    ----------
    tables : dict of str to DataFrame
        At least the required tables; ``incarcerations`` (and, for version 2,
        ``assessments`` and ``overdoses``) are written when given (a value of
        ``None`` is not written).
    path : path-like
        Folder to write (created if needed).
    extract_date : Timestamp or str
        Written to ``extract.yml``.
    description : str, optional
        Written to ``extract.yml``.
    truth : dict, optional
        Written to ``truth.json`` (sorted keys) when given.
    format : {"csv", "parquet"}
        File format of every table.
    history_start : Timestamp or str, optional
        Given: write a version-2 history extract (``contract_version: 2`` and
        this ``history_start`` in ``extract.yml``, the version-2 tables and
        columns). Absent: a version-1 extract, as before.

    Returns
    -------
    pathlib.Path
        The folder written.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    version = 1 if history_start is None else HISTORY_VERSION
    if format == "parquet":
        for table, data in arrow_tables(tables, history=version == HISTORY_VERSION).items():
            pq.write_table(data, path / f"{table}.parquet")
    else:
        for table in HISTORY_TABLES if version == HISTORY_VERSION else TABLES:
            if tables.get(table) is not None:
                data = _format_table(tables[table], table, format, version)
                data.to_csv(path / f"{table}.csv", index=False, lineterminator="\n")
    meta: dict[str, Any] = {"extract_date": pd.Timestamp(extract_date).date()}
    if history_start is not None:
        meta = {
            "contract_version": HISTORY_VERSION,
            **meta,
            "history_start": pd.Timestamp(history_start).date(),
        }
    if description:
        meta["description"] = description
    (path / "extract.yml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    if truth is not None:
        (path / "truth.json").write_text(
            json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return path
