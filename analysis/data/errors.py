"""The error of an extract that breaks the data contract, and its messages.

:class:`ExtractError` names the file, table, column and the 1-based data rows of
the file (row 1 is the first row under the header, in file order, before any
sorting); :func:`rows_error` builds one for offending rows, showing their values.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MAX_ROWS_SHOWN", "ExtractError", "one_line", "rows_error"]

#: offending rows named in a message (the others are counted)
MAX_ROWS_SHOWN = 5


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
