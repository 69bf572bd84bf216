"""A registry extract in the format of the data contract: the :class:`Extract` type,
reading (:func:`read_extract`) and writing (:func:`write_extract`).

Reading validates every rule of the contract (see ``analysis.validation``) and
returns tables with normalised types, sorted canonically so that the order of
rows in the files never changes a result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from analysis.contract import COLUMNS, DATE_COLUMNS, TABLES


@dataclass(frozen=True)
class Extract:
    """A validated registry extract.

    Attributes
    ----------
    persons, treatment_episodes, deaths, charges, incarcerations : pandas.DataFrame
        The contract's tables with normalised types: ``person_id`` and categorical
        columns as ``str`` (object), dates as ``datetime64[ns]`` (``NaT`` = missing),
        ``birth_year`` as ``int64``, numeric and boolean covariates as ``float64``
        (booleans 0.0/1.0, ``NaN`` = missing). ``incarcerations`` is an empty frame
        with the contract's columns when the table is absent. Rows are sorted by
        ``person_id`` and then the table's dates.
    extract_date : pandas.Timestamp
        Last day covered by the registries.
    description : str or None
        Free text from ``extract.yml``.
    truth : dict or None
        Contents of ``truth.json`` when the extract was generated with known truth.
    files : dict
        Table name -> file name read (``persons.csv``, ``charges.parquet``...).
    notes : tuple of str
        Non-fatal observations made while reading (ignored extra columns, optional
        columns absent and filled with missing values...).
    """

    persons: pd.DataFrame
    treatment_episodes: pd.DataFrame
    deaths: pd.DataFrame
    charges: pd.DataFrame
    incarcerations: pd.DataFrame
    extract_date: pd.Timestamp
    description: str | None = None
    truth: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def table(self, name: str) -> pd.DataFrame:
        """Return a table by its contract name."""
        return getattr(self, name)


def _format_for_csv(df: pd.DataFrame, table: str) -> pd.DataFrame:
    out = df.loc[:, [c for c in COLUMNS[table] if c in df.columns]].copy()
    for col in DATE_COLUMNS[table]:
        if col in out.columns:
            out[col] = pd.to_datetime(out[col]).dt.strftime("%Y-%m-%d")
    return out


def write_extract(
    tables: dict[str, pd.DataFrame],
    path: str | Path,
    *,
    extract_date: pd.Timestamp | str,
    description: str | None = None,
    truth: dict[str, Any] | None = None,
    format: Literal["csv", "parquet"] = "csv",
) -> Path:
    """Write tables as an extract folder in the contract's format.

    Parameters
    ----------
    tables : dict of str to DataFrame
        At least the required tables; ``incarcerations`` is written when given.
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

    Returns
    -------
    pathlib.Path
        The folder written.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        if table not in tables:
            continue
        df = _format_for_csv(tables[table], table)
        if format == "csv":
            df.to_csv(path / f"{table}.csv", index=False, lineterminator="\n")
        elif format == "parquet":
            df.to_parquet(path / f"{table}.parquet", index=False)
        else:  # pragma: no cover - guarded by the type
            raise ValueError(f"unknown format {format!r}")
    meta: dict[str, Any] = {"extract_date": pd.Timestamp(extract_date).date()}
    if description:
        meta["description"] = description
    (path / "extract.yml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    if truth is not None:
        (path / "truth.json").write_text(
            json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return path
