"""A registry extract in the format of the data contract: the :class:`Extract` type
(version 1, designed extract) and the :class:`HistoryExtract` type (version 2,
history extract), reading (:func:`read_extract`) and writing (:func:`write_extract`).

Reading validates every rule of the contract (see ``analysis.data.validation``) and
returns tables with normalised types, sorted canonically so that the order of
rows in the files never changes a result. ``contract_version`` in ``extract.yml``
(absent = 1) chooses the version.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml

from analysis.data.contract import (
    BOOLEAN_COVARIATES,
    CONTRACT_VERSIONS,
    DATE_COLUMNS,
    HISTORY_DATE_COLUMNS,
    HISTORY_REQUIRED_TABLES,
    HISTORY_TABLES,
    HISTORY_VERSION,
    REQUIRED_TABLES,
    TABLES,
)
from analysis.data.validation import (
    MAX_ROWS_SHOWN,
    ExtractError,
    as_arrow,
    check_groups,
    check_references,
    check_unique_assessments,
    column_kind,
    conform_columns,
    encode,
    normalise_table,
    one_line,
    parse_dates,
    table_columns,
    validate_table,
)

__all__ = [
    "SORT_KEYS",
    "Extract",
    "ExtractError",
    "HistoryExtract",
    "contract_version",
    "empty_table",
    "read_extract",
    "write_extract",
]

#: canonical row order of each table (all columns of the event tables, so ties are equal rows)
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "persons": ("person_id",),
    "treatment_episodes": ("person_id", "start_date", "end_date", "medication"),
    "deaths": ("person_id",),
    "charges": ("person_id", "charge_date", "offence"),
    "incarcerations": ("person_id", "start_date", "end_date"),
    "assessments": ("person_id", "assessment_date"),  # at most one per person and date
    "overdoses": ("person_id", "overdose_date"),
}
META_KEYS = ("contract_version", "extract_date", "description")
HISTORY_META_KEYS = (*META_KEYS, "history_start")
FORMATS = ("csv", "parquet")


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


# --------------------------------------------------------------------------- reading
class _DatesAsStrings(yaml.SafeLoader):
    """YAML loader that leaves dates as strings, so they are parsed strictly here."""


_DatesAsStrings.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load_meta(folder: Path) -> dict[str, Any]:
    file = "extract.yml"
    path = folder / file
    if not path.is_file():
        raise ExtractError(f"{file}: missing from {folder}", file=file)
    try:
        meta = yaml.load(path.read_text(encoding="utf-8"), Loader=_DatesAsStrings)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ExtractError(f"{file}: not valid YAML: {one_line(exc)}", file=file) from None
    if not isinstance(meta, dict):
        raise ExtractError(f"{file}: must be a mapping of keys to values", file=file)
    return meta


def _meta_version(meta: dict[str, Any]) -> int:
    """``contract_version`` of ``extract.yml`` (absent = 1)."""
    value = meta.get("contract_version")
    if value is None:
        return 1
    text = str(value).strip()
    if not isinstance(value, bool) and text in {str(v) for v in CONTRACT_VERSIONS}:
        return int(text)
    known = " or ".join(str(v) for v in CONTRACT_VERSIONS)
    raise ExtractError(
        f"extract.yml, key 'contract_version': {value!r} is not a contract version ({known})",
        file="extract.yml",
        column="contract_version",
    )


def _meta_date(meta: dict[str, Any], key: str) -> pd.Timestamp:
    file = "extract.yml"
    value = meta.get(key)
    if value is None:
        raise ExtractError(
            f"{file}: required key '{key}' is missing or empty", file=file, column=key
        )
    day = parse_dates(pd.Series([str(value)], dtype=object)).iloc[0]
    if pd.isna(day):
        raise ExtractError(
            f"{file}, key '{key}': {str(value)!r} is not an ISO 8601 date (YYYY-MM-DD)",
            file=file,
            column=key,
        )
    return pd.Timestamp(day)


def _read_meta(folder: Path, notes: list[str]) -> tuple[pd.Timestamp, str | None]:
    meta = _load_meta(folder)
    extract_date = _meta_date(meta, "extract_date")
    notes += [f"extract.yml: ignored unknown key '{key}'" for key in meta if key not in META_KEYS]
    description = meta.get("description")
    return extract_date, None if description is None else str(description)


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
    return _meta_version(_load_meta(folder))


def _truth_problem(truth: Any) -> str | None:
    """What keeps ``truth`` from being a truth file as the generator writes it, if anything."""
    if not isinstance(truth, dict):
        return "it must hold a JSON object"
    estimands = truth.get("estimands")
    if not isinstance(estimands, list):
        return "key 'estimands' must be a list of {outcome, measure, value} objects"
    for i, item in enumerate(estimands, start=1):
        if not isinstance(item, dict):
            return f"estimand {i} is not an object"
        for key in ("outcome", "measure"):
            if not isinstance(item.get(key), str):
                return f"estimand {i}: '{key}' must be a string"
        value = item.get("value")
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value)
        ):
            return f"estimand {i} ({item['outcome']} {item['measure']}): 'value' must be a number or null"
    return None


def _read_truth(folder: Path) -> dict[str, Any] | None:
    """``truth.json`` (written by the synthetic generator beside an extract), if present."""
    path = folder / "truth.json"
    if not path.is_file():
        return None
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExtractError(
            f"truth.json: not valid JSON: {one_line(exc)}; remove the file or fix it "
            "(it only adds known true values to results from synthetic data)",
            file="truth.json",
        ) from None
    problem = _truth_problem(truth)
    if problem is not None:
        raise ExtractError(
            f"truth.json: not a truth file as the synthetic generator writes it ({problem}); "
            "remove the file or fix it (it only adds known true values to results from "
            "synthetic data)",
            file="truth.json",
        )
    return truth


def _find_tables(folder: Path, notes: list[str], version: int = 1) -> dict[str, Path]:
    history = version == HISTORY_VERSION
    required = HISTORY_REQUIRED_TABLES if history else REQUIRED_TABLES
    found: dict[str, Path] = {}
    for table in HISTORY_TABLES if history else TABLES:
        paths = [
            folder / f"{table}.{fmt}" for fmt in FORMATS if (folder / f"{table}.{fmt}").is_file()
        ]
        if len(paths) > 1:
            raise ExtractError(
                f"{paths[0].name}: both {paths[0].name} and {paths[1].name} exist; keep one",
                file=paths[0].name,
                table=table,
            )
        if paths:
            found[table] = paths[0]
        elif table in required:
            raise ExtractError(
                f"{table}: required table missing: neither {table}.csv nor {table}.parquet in {folder}",
                table=table,
            )
    known = {p.name for p in found.values()}
    notes += [
        f"ignored file '{p.name}' (not a table of the contract)"
        for p in sorted(folder.iterdir())
        if p.suffix in (".csv", ".parquet") and p.name not in known
    ]
    return found


def _read_arrow(path: Path, table: str) -> pa.Table:
    file = path.name
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), None)
        if not header:
            raise ExtractError(f"{file}: empty file, no header row", file=file, table=table)
        convert = pa_csv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        ragged: list[Any] = []

        def keep_ragged(row: Any) -> str:
            ragged.append(row)
            return "skip"

        arrow = pa_csv.read_csv(
            path,
            parse_options=pa_csv.ParseOptions(invalid_row_handler=keep_ragged),
            convert_options=convert,
        )
        if ragged:  # read again in one thread, which numbers the lines, to name them
            ragged.clear()
            pa_csv.read_csv(
                path,
                read_options=pa_csv.ReadOptions(use_threads=False),
                parse_options=pa_csv.ParseOptions(invalid_row_handler=keep_ragged),
                convert_options=convert,
            )
            first = ragged[0]
            shown = "; ".join(
                f"line {r.number} (row {r.number - 1}) has {r.actual_columns}"
                for r in ragged[:MAX_ROWS_SHOWN]
            )
            raise ExtractError(
                f"{file}: {len(ragged)} row{'s' if len(ragged) > 1 else ''} with a different "
                f"number of fields than the header ({first.expected_columns}): {shown}",
                file=file,
                table=table,
                rows=[r.number - 1 for r in ragged[:MAX_ROWS_SHOWN] if r.number is not None],
                n_rows=len(ragged),
            )
        return arrow
    except UnicodeDecodeError as exc:
        raise ExtractError(
            f"{file}: not UTF-8 text: {one_line(exc)}", file=file, table=table
        ) from None
    except (pa.ArrowException, OSError) as exc:
        raise ExtractError(
            f"{file}: cannot be read: {one_line(exc)}", file=file, table=table
        ) from None


def _clean_column(values: pa.ChunkedArray, kind: str | None) -> pa.ChunkedArray:
    """Strings trimmed with empty = missing; ids and categories as strings; bools as 0/1."""
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if kind in ("id", "category") and not (
        pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
    ):
        values = values.cast(pa.string())
    if pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    if pa.types.is_string(values.type):
        values = pc.utf8_trim_whitespace(values)
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)
    elif pa.types.is_boolean(values.type):
        values = values.cast(pa.float64())
    return values


#: strings stay in Arrow (``string[pyarrow]``) until normalised: fast to check and sort
_STRINGS = {pa.string(): pd.StringDtype("pyarrow")}


def _read_raw(path: Path, table: str, version: int = 1) -> pd.DataFrame:
    """Read a table file into a frame in file order, before validation."""
    file = path.name
    arrow = _read_arrow(path, table)
    names = [str(name).strip() for name in arrow.column_names]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ExtractError(
            f"{file}: column '{duplicated[0]}' appears more than once in the header",
            file=file,
            table=table,
            column=duplicated[0],
        )
    columns = {}
    for name, values in zip(names, arrow.columns, strict=True):
        kind = column_kind(name) if name in table_columns(table, version) else None
        try:
            columns[name] = _clean_column(values, kind)
        except pa.ArrowException as exc:
            raise ExtractError(
                f"{file}, column '{name}': unsupported type {values.type}: {one_line(exc)}",
                file=file,
                table=table,
                column=name,
            ) from None
    frame = pa.table(columns).to_pandas(date_as_object=False, types_mapper=_STRINGS.get)
    return frame.reset_index(drop=True)


def empty_table(table: str, version: int = 1) -> pd.DataFrame:
    """Return an empty table with the contract's columns and normalised types."""
    columns = table_columns(table, version)
    raw = pd.DataFrame({c: pd.Series([], dtype=object) for c in columns})
    return normalise_table(raw, table, version=version)


def _sort_keys(raw: pd.DataFrame, typed: pd.DataFrame, table: str) -> list[np.ndarray]:
    """Non-negative integer keys for the canonical order (persons' ranks come separately)."""
    keys = []
    for column in SORT_KEYS[table][1:]:
        if column_kind(column) == "date":
            days = typed[column].to_numpy().astype("datetime64[D]")
            missing = np.isnat(days)
            values = days.view(np.int64)
            low = values[~missing].min() if (~missing).any() else 0
            key = np.where(missing, 0, values - low)
            keys.append(np.where(missing, key.max(initial=0) + 1, key))  # missing last
        else:
            codes, uniques = encode(raw[column])
            rank = np.empty(len(uniques) + 1, dtype=np.int64)
            rank[np.argsort(uniques.astype(str), kind="stable")] = np.arange(len(uniques))
            rank[-1] = len(uniques)  # missing last
            keys.append(rank[codes])
    return keys


def _order(keys: list[np.ndarray]) -> np.ndarray:
    """Row order sorting by ``keys`` (first key most significant)."""
    bits = [int(k.max(initial=0)).bit_length() for k in keys]
    if sum(bits) <= 62:  # pack into one int64 key: one fast sort
        packed = np.zeros(len(keys[0]), dtype=np.int64)
        for key, width in zip(keys, bits, strict=True):
            packed = (packed << width) | key
        return np.argsort(packed)  # ties are identical rows: stability not needed
    return np.lexsort(keys[::-1])


def _take(df: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    in_order = bool(np.all(order[1:] > order[:-1]))  # files written sorted: no copy
    return (df if in_order else df.take(order)).reset_index(drop=True)


def _canonical(
    raws: dict[str, pd.DataFrame], typed: dict[str, pd.DataFrame], positions: dict[str, np.ndarray]
) -> dict[str, pd.DataFrame]:
    """Sort every table canonically (see :data:`SORT_KEYS`), with a fresh index.

    ``positions`` gives, for each event table read from a file, the row of
    ``persons`` (in file order) of each of its rows (see
    :func:`analysis.data.validation.check_references`).
    """
    person_order = pc.sort_indices(as_arrow(raws["persons"]["person_id"])).to_numpy()
    person_rank = np.empty(len(person_order), dtype=np.int64)
    person_rank[person_order] = np.arange(len(person_order))
    out = {"persons": _take(typed["persons"], person_order)}
    for table, df in typed.items():
        if table == "persons":
            continue
        if table not in positions:  # absent table: already empty
            out[table] = df
            continue
        keys = [person_rank[positions[table]], *_sort_keys(raws[table], df, table)]
        out[table] = _take(df, _order(keys))
    return out


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
    if contract_version(path) == HISTORY_VERSION:
        return _read_history(Path(path))
    folder = Path(path)
    notes: list[str] = []
    extract_date, description = _read_meta(folder, notes)
    truth = _read_truth(folder)
    paths = _find_tables(folder, notes)
    files = {table: p.name for table, p in paths.items()}
    raws: dict[str, pd.DataFrame] = {}
    tables: dict[str, pd.DataFrame] = {}
    for table in TABLES:
        if table not in paths:
            tables[table] = empty_table(table)
            notes.append(f"{table}: no {table}.csv or {table}.parquet; read as an empty table")
            continue
        raw, column_notes = conform_columns(
            _read_raw(paths[table], table), table=table, file=files[table]
        )
        notes += column_notes
        tables[table] = validate_table(
            raw, table=table, file=files[table], extract_date=extract_date
        )
        raws[table] = raw
        if table == "persons":
            check_groups(tables[table], file=files[table])
    positions = check_references(raws, files)
    return Extract(
        **_canonical(raws, tables, positions),
        extract_date=extract_date,
        description=description,
        truth=truth,
        files=files,
        notes=tuple(notes),
    )


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


def _read_history(folder: Path) -> HistoryExtract:
    """Read and validate a version-2 extract folder (see :func:`read_extract`)."""
    notes: list[str] = []
    meta = _load_meta(folder)
    extract_date = _meta_date(meta, "extract_date")
    history_start = _meta_date(meta, "history_start")
    if history_start > extract_date:
        raise ExtractError(
            f"extract.yml, key 'history_start': {history_start:%Y-%m-%d} is after the "
            f"extract date {extract_date:%Y-%m-%d}",
            file="extract.yml",
            column="history_start",
        )
    notes += [
        f"extract.yml: ignored unknown key '{key}'" for key in meta if key not in HISTORY_META_KEYS
    ]
    description = meta.get("description")
    truth = _read_truth(folder)
    paths = _find_tables(folder, notes, HISTORY_VERSION)
    files = {table: p.name for table, p in paths.items()}
    raws: dict[str, pd.DataFrame] = {}
    tables: dict[str, pd.DataFrame] = {}
    for table in HISTORY_TABLES:
        if table not in paths:
            tables[table] = empty_table(table, HISTORY_VERSION)
            absent = "prior overdose is missing" if table == "overdoses" else "an empty table"
            notes.append(f"{table}: no {table}.csv or {table}.parquet; read as {absent}")
            continue
        raw, column_notes = conform_columns(
            _read_raw(paths[table], table, HISTORY_VERSION),
            table=table,
            file=files[table],
            version=HISTORY_VERSION,
        )
        notes += column_notes
        tables[table] = validate_table(
            raw,
            table=table,
            file=files[table],
            extract_date=extract_date,
            version=HISTORY_VERSION,
        )
        raws[table] = raw
        if table == "assessments":
            check_unique_assessments(tables[table], raw, file=files[table])
    positions = check_references(raws, files)
    out = _canonical(raws, tables, positions)
    notes += _before_history_notes(out, history_start)
    return HistoryExtract(
        **{t: out[t] for t in HISTORY_TABLES if t != "overdoses"},
        overdoses=out["overdoses"] if "overdoses" in paths else None,
        extract_date=extract_date,
        history_start=history_start,
        description=None if description is None else str(description),
        truth=truth,
        files=files,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- writing
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
    for table in HISTORY_TABLES if version == HISTORY_VERSION else TABLES:
        if tables.get(table) is None:
            continue
        data = _format_table(tables[table], table, format, version)
        if format == "csv":
            data.to_csv(path / f"{table}.csv", index=False, lineterminator="\n")
        else:
            pq.write_table(data, path / f"{table}.parquet")
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
