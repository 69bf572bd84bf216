"""A registry extract in the format of the data contract: the :class:`Extract` type,
reading (:func:`read_extract`) and writing (:func:`write_extract`).

Reading validates every rule of the contract (see ``analysis.validation``) and
returns tables with normalised types, sorted canonically so that the order of
rows in the files never changes a result.
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

from analysis.contract import (
    BOOLEAN_COVARIATES,
    COLUMNS,
    DATE_COLUMNS,
    REQUIRED_TABLES,
    TABLES,
)
from analysis.validation import (
    MAX_ROWS_SHOWN,
    ExtractError,
    as_arrow,
    check_groups,
    check_references,
    column_kind,
    conform_columns,
    encode,
    normalise_table,
    one_line,
    parse_dates,
    validate_table,
)

__all__ = ["SORT_KEYS", "Extract", "ExtractError", "empty_table", "read_extract", "write_extract"]

#: canonical row order of each table (all columns of the event tables, so ties are equal rows)
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "persons": ("person_id",),
    "treatment_episodes": ("person_id", "start_date", "end_date", "medication"),
    "deaths": ("person_id",),
    "charges": ("person_id", "charge_date", "offence"),
    "incarcerations": ("person_id", "start_date", "end_date"),
}
META_KEYS = ("extract_date", "description")
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

    def table(self, name: str) -> pd.DataFrame:
        """Return a table by its contract name."""
        return getattr(self, name)


# --------------------------------------------------------------------------- reading
class _DatesAsStrings(yaml.SafeLoader):
    """YAML loader that leaves dates as strings, so they are parsed strictly here."""


_DatesAsStrings.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _read_meta(folder: Path, notes: list[str]) -> tuple[pd.Timestamp, str | None]:
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
    value = meta.get("extract_date")
    if value is None:
        raise ExtractError(
            f"{file}: required key 'extract_date' is missing or empty",
            file=file,
            column="extract_date",
        )
    extract_date = parse_dates(pd.Series([str(value)], dtype=object)).iloc[0]
    if pd.isna(extract_date):
        raise ExtractError(
            f"{file}, key 'extract_date': {str(value)!r} is not an ISO 8601 date (YYYY-MM-DD)",
            file=file,
            column="extract_date",
        )
    notes += [f"{file}: ignored unknown key '{key}'" for key in meta if key not in META_KEYS]
    description = meta.get("description")
    return pd.Timestamp(extract_date), None if description is None else str(description)


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


def _find_tables(folder: Path, notes: list[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for table in TABLES:
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
        elif table in REQUIRED_TABLES:
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


def _read_raw(path: Path, table: str) -> pd.DataFrame:
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
        kind = column_kind(name) if name in COLUMNS[table] else None
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


def empty_table(table: str) -> pd.DataFrame:
    """Return an empty table with the contract's columns and normalised types."""
    raw = pd.DataFrame({c: pd.Series([], dtype=object) for c in COLUMNS[table]})
    return normalise_table(raw, table)


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
    :func:`analysis.validation.check_references`).
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


def read_extract(path: str | Path) -> Extract:
    """Read and validate an extract folder.

    The folder holds ``extract.yml`` (``extract_date``, optional ``description``),
    one file per table, ``<table>.csv`` or ``<table>.parquet`` (each table in
    either format), and optionally ``truth.json``. CSV cells are read as UTF-8
    strings, trimmed, with empty cells missing; Parquet columns may be typed
    (dates as strings, ``date32`` or timestamps; booleans as bool, 0/1 or
    strings; ``person_id`` as string or integer).

    Parameters
    ----------
    path : path-like
        The extract folder.

    Returns
    -------
    Extract
        Normalised, canonically sorted tables (see :class:`Extract`).

    Raises
    ------
    ExtractError
        The folder breaks a rule of the data contract; the first broken rule is
        reported with its file, table, column and 1-based data rows.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ExtractError(f"{folder}: no such extract folder")
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


# --------------------------------------------------------------------------- writing
_INTEGER_LIKE = ("birth_year", "prior_ost_episodes", *BOOLEAN_COVARIATES)


def _as_days(s: pd.Series) -> np.ndarray:
    if not pd.api.types.is_datetime64_any_dtype(s.dtype):
        s = pd.to_datetime(s)
    return s.to_numpy().astype("datetime64[D]")


def _format_table(df: pd.DataFrame, table: str, format: str) -> pa.Table | pd.DataFrame:
    out = df.loc[:, [c for c in COLUMNS[table] if c in df.columns]].copy()
    for column in _INTEGER_LIKE:
        if column in out.columns and (
            pd.api.types.is_bool_dtype(out[column]) or pd.api.types.is_float_dtype(out[column])
        ):
            values = out[column].to_numpy(dtype=float, na_value=np.nan)
            finite = values[~np.isnan(values)]
            if np.array_equal(finite, np.round(finite)):  # keep non-integers as they are
                out[column] = out[column].astype(float).astype("Int64")
    dates = [c for c in DATE_COLUMNS[table] if c in out.columns]
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
) -> Path:
    """Write tables as an extract folder in the contract's format.

    Dates are written as ``YYYY-MM-DD`` (CSV) or ``date32`` (Parquet); integer
    and boolean covariates held as floats with missing values are written as
    integers (``1``, not ``1.0``). Reading the folder back with
    :func:`read_extract` gives the same tables as an :class:`Extract` holds.

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
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        if table not in tables:
            continue
        data = _format_table(tables[table], table, format)
        if format == "csv":
            data.to_csv(path / f"{table}.csv", index=False, lineterminator="\n")
        else:
            pq.write_table(data, path / f"{table}.parquet")
    meta: dict[str, Any] = {"extract_date": pd.Timestamp(extract_date).date()}
    if description:
        meta["description"] = description
    (path / "extract.yml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    if truth is not None:
        (path / "truth.json").write_text(
            json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    return path
