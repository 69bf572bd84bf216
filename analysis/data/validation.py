"""Validation of a registry extract against the data contract.

Each table is checked on its own by the pandera schemas of
:mod:`analysis.data.schemas` (columns, required values, allowed categories,
cells that parse, rules on values), after which the cross-table rules here are
vectorised pandas checks: every ``person_id`` exists in ``persons``
(:func:`check_references`), both groups are present (:func:`check_groups`,
version 1) and at most one assessment per person and date
(:func:`check_unique_assessments`, version 2).

A version-2 (history) extract has its own tables and columns (``version=2``):
``persons`` without groups, index dates or covariates (version-1 columns are
refused by :func:`conform_columns`) and ``birth_year`` in 1900..extract year - 15.

The first broken rule raises :class:`ExtractError`, which names the file, table,
column and the 1-based data rows of the file (row 1 is the first row under the
header, in file order, before any sorting).

The names of the modules this validation is built from (errors, parsing,
schemas) are importable from here too.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa_arrow
import pyarrow.compute as pc

from analysis.data.contract import GROUPS
from analysis.data.errors import MAX_ROWS_SHOWN, ExtractError, one_line, rows_error
from analysis.data.parsing import (
    CATEGORIES,
    as_arrow,
    column_kind,
    encode,
    normalise_table,
    parse_booleans,
    parse_dates,
    parse_numbers,
    table_columns,
)
from analysis.data.schemas import (
    HISTORY_REQUIRED_VALUES,
    REQUIRED_VALUES,
    conform_columns,
    raw_schema,
    typed_schema,
    validate_table,
)

__all__ = [
    "CATEGORIES",
    "HISTORY_REQUIRED_VALUES",
    "MAX_ROWS_SHOWN",
    "REQUIRED_VALUES",
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
