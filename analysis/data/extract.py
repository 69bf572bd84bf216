"""A registry extract in the format of the data contract: the :class:`Extract` type
(version 1, designed extract) and the :class:`HistoryExtract` type (version 2,
history extract), reading (:func:`read_extract`) and writing (:func:`write_extract`).

Reading validates every rule of the contract (see ``analysis.data.validation``) and
returns tables with normalised types, sorted canonically so that the order of
rows in the files never changes a result. ``contract_version`` in ``extract.yml``
(absent = 1) chooses the version. The files are read by :mod:`analysis.data.reading`
and written by :mod:`analysis.data.writing`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from analysis.data.contract import (
    HISTORY_DATE_COLUMNS,
    HISTORY_REQUIRED_TABLES,
    HISTORY_TABLES,
    HISTORY_VERSION,
    REQUIRED_TABLES,
    TABLES,
)
from analysis.data.errors import ExtractError
from analysis.data.reading import (
    SORT_KEYS,
    canonical,
    check_truth,
    empty_table,
    find_tables,
    load_meta,
    meta_date,
    meta_version,
    raw_frame,
    read_raw,
    read_truth,
)
from analysis.data.schemas import conform_columns, validate_table
from analysis.data.validation import check_groups, check_references, check_unique_assessments
from analysis.data.writing import write_extract

__all__ = [
    "SORT_KEYS",
    "Extract",
    "ExtractError",
    "HistoryExtract",
    "contract_version",
    "empty_table",
    "extract_from_arrow",
    "read_extract",
    "write_extract",
]

META_KEYS = ("contract_version", "extract_date", "description")
HISTORY_META_KEYS = (*META_KEYS, "history_start")


@dataclass(frozen=True)
class Extract:
    """A validated registry extract.

    Attributes
    ----------
    persons, treatment_episodes, deaths, charges, incarcerations : pandas.DataFrame
        The contract's tables, with exactly the contract's columns in contract
        order and normalised types, whatever the file format:

        - ``person_id`` and categorical columns (``group``, ``sex``, ``region``,
          ``medication``, ``cause``, ``offence``): ``str`` (object dtype);
        - dates: ``datetime64[s]`` holding whole days (any ISO year), ``NaT`` = missing;
        - ``birth_year``: ``int64``;
        - ``years_opioid_use``, ``prior_ost_episodes``: ``float64``, ``NaN`` = missing;
        - boolean covariates: ``float64`` 0.0/1.0, ``NaN`` = missing.

        Optional person columns absent from the file are all missing.
        ``incarcerations`` is an empty frame with the contract's columns when the
        table is absent. Rows are sorted canonically (:data:`SORT_KEYS`: persons
        and deaths by ``person_id``; episodes by ``person_id, start_date,
        end_date, medication``; charges by ``person_id, charge_date, offence``;
        incarcerations by ``person_id, start_date, end_date``; missing dates last)
        with a fresh ``RangeIndex``.
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

    contract_version = 1

    def table(self, name: str) -> pd.DataFrame:
        """Return a table by its contract name."""
        return getattr(self, name)


@dataclass(frozen=True)
class HistoryExtract:
    """A validated history extract (contract version 2).

    Treatment histories instead of groups and index dates: who started HAT,
    when, and who could have been compared with them are derived (see
    ``analysis.data.risk_sets``).

    Attributes
    ----------
    persons : pandas.DataFrame
        ``person_id, sex, birth_year, region, emigration_date``.
    treatment_episodes, deaths, charges, incarcerations : pandas.DataFrame
        As in :class:`Extract` (``medication`` ``diacetylmorphine`` is HAT).
    assessments : pandas.DataFrame
        Status forms: ``person_id, assessment_date, years_opioid_use, injecting,
        psychiatric_dx, homeless, benzodiazepine_use`` (answers ``float64``,
        booleans 0.0/1.0, ``NaN`` = missing), at most one per person and date;
        empty when the table is absent.
    overdoses : pandas.DataFrame or None
        Non-fatal overdoses, ``person_id, overdose_date``; ``None`` when the
        table is absent (prior overdose is then unknown, not "none").
    extract_date : pandas.Timestamp
        Last day covered by the registries.
    history_start : pandas.Timestamp
        First day covered by the registries. Events dated before it are kept
        (they are known events); the notes say which tables have them.
    description, truth, files, notes
        As in :class:`Extract`.

    Notes
    -----
    Types and canonical order as in :class:`Extract`; ``assessments`` sorted by
    ``person_id, assessment_date``, ``overdoses`` by ``person_id, overdose_date``.
    """

    persons: pd.DataFrame
    treatment_episodes: pd.DataFrame
    deaths: pd.DataFrame
    charges: pd.DataFrame
    incarcerations: pd.DataFrame
    assessments: pd.DataFrame
    overdoses: pd.DataFrame | None
    extract_date: pd.Timestamp
    history_start: pd.Timestamp
    description: str | None = None
    truth: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    contract_version = HISTORY_VERSION

    def table(self, name: str) -> pd.DataFrame | None:
        """Return a table by its contract name (``overdoses`` may be ``None``)."""
        return getattr(self, name)


def contract_version(path: str | Path) -> int:
    """The contract version an extract folder declares (``contract_version``, absent = 1).

    Parameters
    ----------
    path : path-like
        The extract folder.

    Returns
    -------
    int
        1 (designed extract) or 2 (history extract).

    Raises
    ------
    ExtractError
        No folder, no readable ``extract.yml``, or an unknown version.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ExtractError(f"{folder}: no such extract folder")
    return meta_version(load_meta(folder))


def read_extract(path: str | Path) -> Extract | HistoryExtract:
    """Read and validate an extract folder.

    The folder holds ``extract.yml`` (``extract_date``, optional ``description``
    and ``contract_version``; version 2 also ``history_start``), one file per
    table, ``<table>.csv`` or ``<table>.parquet`` (each table in either format),
    and optionally ``truth.json``. CSV cells are read as UTF-8 strings, trimmed,
    with empty cells missing; Parquet columns may be typed (dates as strings,
    ``date32`` or timestamps; booleans as bool, 0/1 or strings; ``person_id`` as
    string or integer).

    Parameters
    ----------
    path : path-like
        The extract folder.

    Returns
    -------
    Extract or HistoryExtract
        Normalised, canonically sorted tables: an :class:`Extract` when
        ``contract_version`` is absent or 1, a :class:`HistoryExtract` when it
        is 2.

    Raises
    ------
    ExtractError
        The folder breaks a rule of the data contract; the first broken rule is
        reported with its file, table, column and 1-based data rows.
    """
    folder = Path(path)
    version = contract_version(folder)
    notes: list[str] = []
    meta = load_meta(folder)
    extract_date = meta_date(meta, "extract_date")
    history = version == HISTORY_VERSION
    history_start = _history_start(meta, extract_date) if history else None
    known = HISTORY_META_KEYS if history else META_KEYS
    notes += [f"extract.yml: ignored unknown key '{key}'" for key in meta if key not in known]
    description = meta.get("description")
    description = None if description is None else str(description)
    truth = read_truth(folder)
    paths = find_tables(folder, notes, version)
    files = {table: p.name for table, p in paths.items()}

    def load(table: str) -> pd.DataFrame:
        return read_raw(paths[table], table, version)

    return _validated(
        load,
        files,
        extract_date=extract_date,
        history_start=history_start,
        description=description,
        truth=truth,
        notes=notes,
    )


def extract_from_arrow(
    tables: Mapping[str, pa.Table | None],
    *,
    extract_date: pd.Timestamp | str,
    description: str | None = None,
    truth: dict[str, Any] | None = None,
    history_start: pd.Timestamp | str | None = None,
) -> Extract | HistoryExtract:
    """Validate tables held in memory as Arrow tables: :func:`read_extract` without files.

    The tables go through the second half of :func:`read_extract` unchanged: the same
    cleaning (:func:`analysis.data.reading.raw_frame`), column and type rules, every
    validation of the contract, normalisation and canonical order, so the extract is the
    one :func:`read_extract` gives for a folder holding these tables as Parquet files
    (:func:`analysis.data.writing.arrow_tables` makes them from frames as
    :func:`write_extract` writes them). ``extract_date``, ``history_start`` and
    ``description`` are taken as ``extract.yml`` would give them back, ``truth`` is checked
    as ``truth.json`` is. Errors name the table as ``<table> (in memory)``.

    Parameters
    ----------
    tables : mapping of str to pyarrow.Table
        One table per contract table present (a value of ``None``: absent).
    extract_date : Timestamp or str
        Last day covered by the registries.
    description : str, optional
    truth : dict, optional
        Contents of ``truth.json``.
    history_start : Timestamp or str, optional
        Given: a version-2 (history) extract; absent: version 1.

    Returns
    -------
    Extract or HistoryExtract

    Raises
    ------
    ExtractError
        The tables break a rule of the data contract (a required table absent, a table
        not of the contract...).
    """
    version = 1 if history_start is None else HISTORY_VERSION
    history = version == HISTORY_VERSION
    present = {t: a for t, a in tables.items() if a is not None}
    known = HISTORY_TABLES if history else TABLES
    unknown = sorted(set(present) - set(known))
    if unknown:
        raise ExtractError(f"{unknown[0]}: not a table of contract version {version}")
    required = HISTORY_REQUIRED_TABLES if history else REQUIRED_TABLES
    for table in required:
        if table not in present:
            raise ExtractError(f"{table}: required table missing", table=table)
    meta = {"extract_date": pd.Timestamp(extract_date).date().isoformat()}
    if history:
        meta["history_start"] = pd.Timestamp(history_start).date().isoformat()
    day = meta_date(meta, "extract_date")
    if truth is not None:
        check_truth(truth)
    files = {table: f"{table} (in memory)" for table in known if table in present}

    def load(table: str) -> pd.DataFrame:
        return raw_frame(present[table], table, file=files[table], version=version)

    return _validated(
        load,
        files,
        extract_date=day,
        history_start=_history_start(meta, day) if history else None,
        description=str(description) if description else None,
        truth=truth,
        notes=[],
    )


def _validated(
    load: Callable[[str], pd.DataFrame],
    files: dict[str, str],
    *,
    extract_date: pd.Timestamp,
    history_start: pd.Timestamp | None,
    description: str | None,
    truth: dict[str, Any] | None,
    notes: list[str],
) -> Extract | HistoryExtract:
    """The second half of reading: tables (from files or memory) -> a validated extract."""
    version = 1 if history_start is None else HISTORY_VERSION
    tables = _read_tables(load, files, extract_date, version, notes)
    if history_start is None:
        return Extract(
            **tables,
            extract_date=extract_date,
            description=description,
            truth=truth,
            files=files,
            notes=tuple(notes),
        )
    notes += _before_history_notes(tables, history_start)
    notes += _after_extract_notes(tables, extract_date)
    return HistoryExtract(
        **{t: tables[t] for t in HISTORY_TABLES if t != "overdoses"},
        overdoses=tables["overdoses"] if "overdoses" in files else None,
        extract_date=extract_date,
        history_start=history_start,
        description=description,
        truth=truth,
        files=files,
        notes=tuple(notes),
    )


def _history_start(meta: dict[str, Any], extract_date: pd.Timestamp) -> pd.Timestamp:
    """``history_start`` of a version-2 ``extract.yml`` (not after the extract date)."""
    history_start = meta_date(meta, "history_start")
    if history_start > extract_date:
        raise ExtractError(
            f"extract.yml, key 'history_start': {history_start:%Y-%m-%d} is after the "
            f"extract date {extract_date:%Y-%m-%d}",
            file="extract.yml",
            column="history_start",
        )
    return history_start


def _read_tables(
    load: Callable[[str], pd.DataFrame],
    files: dict[str, str],
    extract_date: pd.Timestamp,
    version: int,
    notes: list[str],
) -> dict[str, pd.DataFrame]:
    """Read, validate and sort every table of the version (absent optional ones empty)."""
    raws: dict[str, pd.DataFrame] = {}
    tables: dict[str, pd.DataFrame] = {}
    for table in HISTORY_TABLES if version == HISTORY_VERSION else TABLES:
        if table not in files:
            tables[table] = empty_table(table, version)
            absent = "prior overdose is missing" if table == "overdoses" else "an empty table"
            notes.append(f"{table}: no {table}.csv or {table}.parquet; read as {absent}")
            continue
        file = files[table]
        raw, column_notes = conform_columns(load(table), table=table, file=file, version=version)
        notes += column_notes
        tables[table] = validate_table(
            raw, table=table, file=file, extract_date=extract_date, version=version
        )
        raws[table] = raw
        if table == "persons" and version != HISTORY_VERSION:
            check_groups(tables[table], file=file)
        if table == "assessments":
            check_unique_assessments(tables[table], raw, file=file)
    positions = check_references(raws, files)
    return canonical(raws, tables, positions)


#: what events dated before ``history_start`` may change, by table (for the notes)
_BEFORE_HISTORY = {
    "treatment_episodes": "they count in previous HAT, prior OST spells and treatment spells, "
    "which the registries may list incompletely before that date",
    "incarcerations": "stays reaching past that date count as prison time",
    "deaths": "these persons are never eligible",
    "charges": "they fall before every eligible date's lookback window",
    "assessments": "they fall before every eligible date's lookback window",
    "overdoses": "they fall before every eligible date's lookback window",
}


def _before_history_notes(
    tables: dict[str, pd.DataFrame], history_start: pd.Timestamp
) -> list[str]:
    """One note per table with events dated before ``history_start``."""
    day = history_start.strftime("%Y-%m-%d")
    notes = []
    for table, effect in _BEFORE_HISTORY.items():
        column = HISTORY_DATE_COLUMNS[table][0]
        n = int((tables[table][column] < history_start).sum())
        if n:
            notes.append(
                f"{table}: {n} row{'s' if n > 1 else ''} dated before history_start {day} "
                f"({column}); kept as known events: {effect}"
            )
    return notes


#: what events dated after ``extract_date`` change, by table (for the notes)
_AFTER_EXTRACT = {
    "persons": "follow-up is censored at the extract date, not ended by emigration",
    "treatment_episodes": "ignored: a HAT start after it makes no initiator",
    "deaths": "follow-up is censored at the extract date, not ended by death",
    "charges": "ignored (after every follow-up)",
    "incarcerations": "ignored (after every follow-up)",
    "assessments": "ignored (after every eligible date)",
    "overdoses": "ignored (after every eligible date)",
}


def _after_extract_notes(tables: dict[str, pd.DataFrame], extract_date: pd.Timestamp) -> list[str]:
    """One note per table with events dated after ``extract_date`` (past the registries'
    last day: read as data, but nothing after that day is analysed)."""
    day = extract_date.strftime("%Y-%m-%d")
    notes = []
    for table, effect in _AFTER_EXTRACT.items():
        column = HISTORY_DATE_COLUMNS[table][0]
        n = int((tables[table][column] > extract_date).sum())
        if n:
            notes.append(
                f"{table}: {n} row{'s' if n > 1 else ''} dated after extract_date {day} "
                f"({column}); {effect}"
            )
    return notes
