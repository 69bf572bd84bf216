"""Reading the files of an extract folder: ``extract.yml``, ``truth.json`` and the tables.

Tables are read in file order, before validation: CSV cells as UTF-8 strings,
trimmed, with empty cells missing; Parquet columns as typed (dates as strings,
``date32`` or timestamps; booleans as bool, 0/1 or strings; ``person_id`` as
string or integer). :func:`canonical` then sorts validated tables into the
canonical order of :data:`SORT_KEYS`, so that the order of rows in the files
never changes a result.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml

from analysis.data.contract import (
    CONTRACT_VERSIONS,
    HISTORY_REQUIRED_TABLES,
    HISTORY_TABLES,
    HISTORY_VERSION,
    REQUIRED_TABLES,
    TABLES,
)
from analysis.data.errors import MAX_ROWS_SHOWN, ExtractError, one_line
from analysis.data.parsing import (
    as_arrow,
    column_kind,
    encode,
    normalise_table,
    parse_dates,
    table_columns,
)

__all__ = [
    "FORMATS",
    "SORT_KEYS",
    "canonical",
    "check_truth",
    "empty_table",
    "find_tables",
    "load_meta",
    "meta_date",
    "meta_version",
    "raw_frame",
    "read_raw",
    "read_truth",
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
FORMATS = ("csv", "parquet")


class _DatesAsStrings(yaml.SafeLoader):
    """YAML loader that leaves dates as strings, so they are parsed strictly here."""


_DatesAsStrings.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_meta(folder: Path) -> dict[str, Any]:
    """``extract.yml`` of ``folder`` as a mapping (dates left as strings)."""
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


def meta_version(meta: dict[str, Any]) -> int:
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


def meta_date(meta: dict[str, Any], key: str) -> pd.Timestamp:
    """A required ISO 8601 date of ``extract.yml``."""
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


def read_truth(folder: Path) -> dict[str, Any] | None:
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
    check_truth(truth)
    return truth


def check_truth(truth: Any) -> None:
    """Refuse a truth that is not a truth file's contents as the generator writes it."""
    problem = _truth_problem(truth)
    if problem is not None:
        raise ExtractError(
            f"truth.json: not a truth file as the synthetic generator writes it ({problem}); "
            "remove the file or fix it (it only adds known true values to results from "
            "synthetic data)",
            file="truth.json",
        )


def find_tables(folder: Path, notes: list[str], version: int = 1) -> dict[str, Path]:
    """The file of each table present (CSV or Parquet); notes on files that are not tables."""
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


def read_raw(path: Path, table: str, version: int = 1) -> pd.DataFrame:
    """Read a table file into a frame in file order, before validation."""
    return raw_frame(_read_arrow(path, table), table, file=path.name, version=version)


def raw_frame(arrow: pa.Table, table: str, *, file: str, version: int = 1) -> pd.DataFrame:
    """An Arrow table of a contract table as a frame in row order, before validation.

    Header names trimmed (a name twice is an error), strings trimmed with empty =
    missing, ids and categories as strings, booleans as 0/1: what :func:`read_raw` does
    to a file's table, for a table read from a file or handed over in memory
    (:func:`analysis.data.extract.extract_from_arrow`). ``file`` names the source in errors.
    """
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
    frame.index = pd.RangeIndex(len(frame))  # in place: no copy of the columns
    return frame


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
    out = df.copy(deep=False) if in_order else df.take(order)
    out.index = pd.RangeIndex(len(out))  # in place on the new frame: no second copy
    return out


def canonical(
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
