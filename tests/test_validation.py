"""One test per rule of the data contract: break a copy of the example extract and
check that reading it raises :class:`ExtractError` naming the file, table, column
and 1-based data rows (in file order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.data.contract import BOOLEAN_COVARIATES, DATE_COLUMNS
from analysis.data.extract import ExtractError as ReExported
from analysis.data.extract import read_extract
from analysis.data.validation import REQUIRED_VALUES, ExtractError, parse_booleans, parse_dates
from tests.extract_factory import (
    append_rows,
    copy_example,
    drop_columns,
    read_text_table,
    set_cells,
    set_meta,
    to_parquet,
    write_text_table,
)

DATE_CELLS = [(t, c) for t, cols in DATE_COLUMNS.items() for c in cols]
REQUIRED_CELLS = [(t, c) for t, cols in REQUIRED_VALUES.items() for c in cols]
CATEGORICAL_CELLS = [
    ("persons", "group"),
    ("persons", "sex"),
    ("persons", "region"),
    ("treatment_episodes", "medication"),
    ("deaths", "cause"),
    ("charges", "offence"),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "extract")


def read_error(folder: Path) -> ExtractError:
    with pytest.raises(ExtractError) as info:
        read_extract(folder)
    return info.value


def assert_error(
    error: ExtractError,
    *,
    file: str | None,
    table: str | None,
    column: str | None,
    rows: list[int],
    n_rows: int | None = None,
    contains: tuple[str, ...] = (),
) -> None:
    message = str(error)
    assert (error.file, error.table, error.column) == (file, table, column), message
    assert error.rows == rows, message
    assert error.n_rows == (len(rows) if n_rows is None else n_rows), message
    if file is not None:
        assert message.startswith(file), message
    if column is not None:
        assert f"'{column}'" in message, message
    for row in rows:
        assert f"row {row}" in message, message
    for text in contains:
        assert text in message, message
    assert "\n" not in message


def test_extract_error_is_a_value_error_and_re_exported() -> None:
    assert issubclass(ExtractError, ValueError)
    assert ReExported is ExtractError


# ------------------------------------------------------------------ dates
def test_message_names_rows_person_ids_and_values(folder: Path) -> None:
    set_cells(folder, "persons", "index_date", {3: "2023-13-01", 5: "01.02.2023"})
    error = read_error(folder)
    assert str(error) == (
        "persons.csv, column 'index_date': 2 rows are not ISO 8601 calendar dates (YYYY-MM-DD, no time of day): "
        "row 3 (person_id P3): '2023-13-01'; row 5 (person_id P5): '01.02.2023'"
    )
    assert_error(error, file="persons.csv", table="persons", column="index_date", rows=[3, 5])


@pytest.mark.parametrize(
    "bad", ["2023-13-01", "01.02.2023", "2023-1-5", "2023-02-30", "2023-01-05T00:00", "20230105"]
)
def test_date_not_iso_is_rejected(folder: Path, bad: str) -> None:
    set_cells(folder, "treatment_episodes", "start_date", {2: bad})
    assert_error(
        read_error(folder),
        file="treatment_episodes.csv",
        table="treatment_episodes",
        column="start_date",
        rows=[2],
        contains=(f"'{bad}'", "1 row is not an ISO 8601 calendar date", "(person_id P1)"),
    )


@pytest.mark.parametrize(("table", "column"), DATE_CELLS)
def test_every_date_column_is_checked(folder: Path, table: str, column: str) -> None:
    set_cells(folder, table, column, {1: "2023-1-5"})
    assert_error(read_error(folder), file=f"{table}.csv", table=table, column=column, rows=[1])


def test_parse_dates_is_strict() -> None:
    parsed = parse_dates(pd.Series(["2024-02-29", "2023-02-29", "2023-1-5", None, " 2023-01-01"]))
    assert parsed.tolist()[0] == pd.Timestamp("2024-02-29")
    assert parsed.iloc[1:].isna().all()


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_parse_dates_of_timestamps_keeps_whole_days_only(unit: str) -> None:
    """Timestamps of any unit: whole days kept (before 1970 too), a time of day is invalid,
    exactly as converting to days and back finds them."""
    rng = np.random.default_rng(len(unit))
    days = rng.integers(-40_000, 40_000, 2000)
    stamps = (days.astype("datetime64[D]") + np.timedelta64(0, unit)).astype(f"datetime64[{unit}]")
    stamps[::3] += np.timedelta64(1, unit)
    stamps[::7] = np.datetime64("NaT")
    expected = stamps.astype("datetime64[D]")
    expected = np.where(expected.astype(stamps.dtype) == stamps, expected, np.datetime64("NaT"))
    parsed = parse_dates(pd.Series(stamps)).to_numpy()
    assert parsed.dtype == np.dtype("datetime64[s]")
    assert np.array_equal(parsed, expected.astype("datetime64[s]"), equal_nan=True)


# ------------------------------------------------------------------ required values
@pytest.mark.parametrize(("table", "column"), REQUIRED_CELLS)
def test_required_value_missing(folder: Path, table: str, column: str) -> None:
    set_cells(folder, table, column, {2: "  "})  # blank after trimming = missing
    assert_error(
        read_error(folder),
        file=f"{table}.csv",
        table=table,
        column=column,
        rows=[2],
        contains=("1 row has a missing value (required)", ": missing"),
    )


@pytest.mark.parametrize(("table", "column"), REQUIRED_CELLS)
def test_required_column_absent(folder: Path, table: str, column: str) -> None:
    drop_columns(folder, table, [column])
    assert_error(
        read_error(folder),
        file=f"{table}.csv",
        table=table,
        column=column,
        rows=[],
        contains=("is absent",),
    )


def test_end_date_column_is_required_even_if_values_may_be_missing(folder: Path) -> None:
    drop_columns(folder, "incarcerations", ["end_date"])
    assert_error(
        read_error(folder),
        file="incarcerations.csv",
        table="incarcerations",
        column="end_date",
        rows=[],
    )


# ------------------------------------------------------------------ categorical values
@pytest.mark.parametrize(("table", "column"), CATEGORICAL_CELLS)
def test_categorical_value_not_allowed(folder: Path, table: str, column: str) -> None:
    set_cells(folder, table, column, {2: "unknown"})
    assert_error(
        read_error(folder),
        file=f"{table}.csv",
        table=table,
        column=column,
        rows=[2],
        contains=("is not one of", "'unknown'"),
    )


def test_categories_are_case_sensitive(folder: Path) -> None:
    set_cells(folder, "persons", "group", {1: "hat"})
    assert_error(
        read_error(folder),
        file="persons.csv",
        table="persons",
        column="group",
        rows=[1],
        contains=("'HAT', 'OST'",),
    )


# ------------------------------------------------------------------ uniqueness
def test_person_id_unique_in_persons(folder: Path) -> None:
    set_cells(folder, "persons", "person_id", {4: "P1"})
    assert_error(
        read_error(folder),
        file="persons.csv",
        table="persons",
        column="person_id",
        rows=[1, 4],
        contains=("appears more than once", "row 1: 'P1'", "row 4: 'P1'"),
    )


def test_person_id_unique_in_deaths(folder: Path) -> None:
    append_rows(
        folder, "deaths", [{"person_id": "P3", "death_date": "2024-02-01", "cause": "other"}]
    )
    assert_error(
        read_error(folder), file="deaths.csv", table="deaths", column="person_id", rows=[1, 3]
    )


# ------------------------------------------------------------------ numbers
@pytest.mark.parametrize("bad", ["1978.5", "abc", "19 78"])
def test_birth_year_not_integer(folder: Path, bad: str) -> None:
    set_cells(folder, "persons", "birth_year", {2: bad})
    assert_error(
        read_error(folder),
        file="persons.csv",
        table="persons",
        column="birth_year",
        rows=[2],
        contains=("is not an integer",),
    )


@pytest.mark.parametrize("bad", ["1899", "2009"])  # P1's index year is 2023: at most 2008
def test_birth_year_out_of_range(folder: Path, bad: str) -> None:
    set_cells(folder, "persons", "birth_year", {1: bad})
    assert_error(
        read_error(folder),
        file="persons.csv",
        table="persons",
        column="birth_year",
        rows=[1],
        contains=(f"birth_year '{bad}', index_date '2023-01-01'", "1900..index year - 15"),
    )


def test_birth_year_range_bounds_are_allowed(folder: Path) -> None:
    set_cells(folder, "persons", "birth_year", {1: "2008", 2: "1900"})
    assert read_extract(folder).persons["birth_year"].tolist()[:2] == [2008, 1900]


@pytest.mark.parametrize(
    ("column", "bad", "problem"),
    [
        ("years_opioid_use", "abc", "is not a number"),
        ("years_opioid_use", "inf", "is not a number"),
        ("years_opioid_use", "-0.5", "is negative"),
        ("prior_ost_episodes", "1.5", "is not an integer"),
        ("prior_ost_episodes", "-1", "is negative"),
    ],
)
def test_covariate_numbers(folder: Path, column: str, bad: str, problem: str) -> None:
    set_cells(folder, "persons", column, {6: bad})
    assert_error(
        read_error(folder),
        file="persons.csv",
        table="persons",
        column=column,
        rows=[6],
        contains=(problem, "(person_id P6)", f"'{bad}'"),
    )


# ------------------------------------------------------------------ booleans
@pytest.mark.parametrize("column", BOOLEAN_COVARIATES)
@pytest.mark.parametrize("bad", ["yes", "2", "t"])
def test_boolean_not_valid(folder: Path, column: str, bad: str) -> None:
    set_cells(folder, "persons", column, {7: bad})
    assert_error(
        read_error(folder),
        file="persons.csv",
        table="persons",
        column=column,
        rows=[7],
        contains=("is not a boolean (0/1 or true/false)", "(person_id P7)"),
    )


def test_parse_booleans_spellings() -> None:
    values = pd.Series(["0", "1", "true", "FALSE", "True", "1.0", None, "yes", "2"])
    parsed = parse_booleans(values).tolist()
    assert parsed[:6] == [0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    assert all(pd.isna(v) for v in parsed[6:])


# ------------------------------------------------------------------ references
@pytest.mark.parametrize("table", ["treatment_episodes", "deaths", "charges", "incarcerations"])
def test_person_id_must_exist_in_persons(folder: Path, table: str) -> None:
    set_cells(folder, table, "person_id", {2: "P99"})
    assert_error(
        read_error(folder),
        file=f"{table}.csv",
        table=table,
        column="person_id",
        rows=[2],
        contains=("has a person_id that is not in persons.csv", "row 2: 'P99'"),
    )


# ------------------------------------------------------------------ intervals
@pytest.mark.parametrize("table", ["treatment_episodes", "incarcerations"])
def test_end_date_before_start_date(folder: Path, table: str) -> None:
    start = read_text_table(folder, table).loc[1, "start_date"]
    before = (pd.Timestamp(start) - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    set_cells(folder, table, "end_date", {2: before})
    assert_error(
        read_error(folder),
        file=f"{table}.csv",
        table=table,
        column="end_date",
        rows=[2],
        contains=(f"start_date '{start}', end_date '{before}'", "ends before it starts"),
    )


def test_end_date_equal_to_start_date_is_allowed(folder: Path) -> None:
    set_cells(folder, "incarcerations", "end_date", {1: "2024-05-01"})
    assert len(read_extract(folder).incarcerations) == 3


# ------------------------------------------------------------------ persons and extract date
def test_index_date_after_extract_date(folder: Path) -> None:
    set_cells(folder, "persons", "index_date", {5: "2026-01-01"})
    assert_error(
        read_error(folder),
        file="persons.csv",
        table="persons",
        column="index_date",
        rows=[5],
        contains=("after the extract date 2025-12-31", "'2026-01-01'"),
    )


def test_index_date_on_extract_date_is_allowed(folder: Path) -> None:
    set_cells(folder, "persons", "index_date", {5: "2025-12-31"})
    assert read_extract(folder).persons.loc[4, "index_date"] == pd.Timestamp("2025-12-31")


@pytest.mark.parametrize(("absent", "other"), [("HAT", "OST"), ("OST", "HAT")])
def test_both_groups_needed(folder: Path, absent: str, other: str) -> None:
    df = read_text_table(folder, "persons")
    df["group"] = other
    write_text_table(df, folder, "persons")
    assert_error(
        read_error(folder),
        file="persons.csv",
        table="persons",
        column="group",
        rows=[],
        contains=(f"no {absent} persons",),
    )


@pytest.mark.parametrize("value", [None, "", "31.12.2025", "2025-13-01", "2025-1-5"])
def test_extract_date_missing_or_not_iso(folder: Path, value: str | None) -> None:
    if value is None:
        set_meta(folder, extract_date=None)
    else:
        (folder / "extract.yml").write_text(f"extract_date: {value}\n", encoding="utf-8")
    assert_error(read_error(folder), file="extract.yml", table=None, column="extract_date", rows=[])


def test_extract_yml_missing(folder: Path) -> None:
    (folder / "extract.yml").unlink()
    assert_error(read_error(folder), file="extract.yml", table=None, column=None, rows=[])


@pytest.mark.parametrize("text", ["- a list\n", "extract_date: [unclosed\n"])
def test_extract_yml_not_a_mapping(folder: Path, text: str) -> None:
    (folder / "extract.yml").write_text(text, encoding="utf-8")
    assert_error(read_error(folder), file="extract.yml", table=None, column=None, rows=[])


# ------------------------------------------------------------------ files
@pytest.mark.parametrize("table", ["persons", "treatment_episodes", "deaths", "charges"])
def test_required_table_missing(folder: Path, table: str) -> None:
    (folder / f"{table}.csv").unlink()
    assert_error(
        read_error(folder),
        file=None,
        table=table,
        column=None,
        rows=[],
        contains=(f"{table}: required table missing",),
    )


def test_table_in_both_formats(folder: Path) -> None:
    read_text_table(folder, "charges").to_parquet(folder / "charges.parquet")
    assert_error(
        read_error(folder),
        file="charges.csv",
        table="charges",
        column=None,
        rows=[],
        contains=("charges.parquet",),
    )


def test_not_a_folder(tmp_path: Path) -> None:
    error = read_error(tmp_path / "nowhere")
    assert "no such extract folder" in str(error)


def test_ragged_csv_row_is_named(folder: Path) -> None:
    (folder / "deaths.csv").write_bytes(
        b"person_id,death_date,cause\nP3,2024-01-10,overdose,extra\nP6,2022-12-01,other\nP7\n"
    )
    assert_error(
        read_error(folder),
        file="deaths.csv",
        table="deaths",
        column=None,
        rows=[1, 3],
        contains=(
            "2 rows with a different number of fields",
            "line 2 (row 1) has 4",
            "line 4 (row 3) has 1",
        ),
    )


def test_not_utf8(folder: Path) -> None:
    (folder / "deaths.csv").write_bytes(
        "person_id,death_date,cause\nP\xf83,2024-01-10,other\n".encode("latin-1")
    )
    assert_error(read_error(folder), file="deaths.csv", table="deaths", column=None, rows=[])


def test_duplicate_header(folder: Path) -> None:
    (folder / "deaths.csv").write_text("person_id,death_date,cause,cause\n", encoding="utf-8")
    assert_error(read_error(folder), file="deaths.csv", table="deaths", column="cause", rows=[])


# ------------------------------------------------------------------ row numbers and reporting
def test_rows_are_numbered_in_file_order(folder: Path) -> None:
    df = read_text_table(folder, "persons").iloc[::-1]  # P7 first ... P1 last
    write_text_table(df, folder, "persons")
    set_cells(folder, "persons", "sex", {2: "X"})  # second row in the file: P6
    assert_error(
        read_error(folder),
        file="persons.csv",
        table="persons",
        column="sex",
        rows=[2],
        contains=("(person_id P6)",),
    )


def test_at_most_five_rows_listed(folder: Path) -> None:
    set_cells(folder, "charges", "offence", {r: "theft" for r in range(1, 12)})
    assert_error(
        read_error(folder),
        file="charges.csv",
        table="charges",
        column="offence",
        rows=[1, 2, 3, 4, 5],
        n_rows=11,
        contains=("11 rows are not one of", "and 6 more"),
    )


def test_first_broken_rule_is_reported_deterministically(folder: Path) -> None:
    set_cells(folder, "persons", "sex", {1: "X"})
    set_cells(folder, "persons", "index_date", {2: "2023-1-5"})
    append_rows(folder, "charges", [{"person_id": "P99", "charge_date": "x", "offence": "drug"}])
    for _ in range(2):  # contract column order: index_date before sex; persons before charges
        assert_error(
            read_error(folder), file="persons.csv", table="persons", column="index_date", rows=[2]
        )


def test_errors_in_parquet_files_name_rows(folder: Path) -> None:
    set_cells(folder, "treatment_episodes", "medication", {4: "heroin"})
    to_parquet(folder, "treatment_episodes")
    assert_error(
        read_error(folder),
        file="treatment_episodes.parquet",
        table="treatment_episodes",
        column="medication",
        rows=[4],
        contains=("(person_id P2)", "'heroin'"),
    )


def test_typed_parquet_values_are_shown(folder: Path) -> None:
    extract = read_extract(folder)
    persons = extract.persons.copy()
    persons.loc[2, "birth_year"] = 1899
    persons.to_parquet(folder / "persons.parquet", index=False)
    (folder / "persons.csv").unlink()
    assert_error(
        read_error(folder),
        file="persons.parquet",
        table="persons",
        column="birth_year",
        rows=[3],
        contains=("birth_year 1899, index_date '2022-06-01'",),
    )


# ------------------------------------------------------------------ legal data
def test_legal_oddities_are_not_errors(folder: Path) -> None:
    """Deaths and charges after the extract date, overlapping episodes and episodes
    before index are data for the cohort derivation, not contract violations."""
    set_cells(folder, "deaths", "death_date", {1: "2026-03-01"})
    append_rows(
        folder,
        "charges",
        [{"person_id": "P1", "charge_date": "2026-01-05", "offence": "drug"}],
    )
    append_rows(
        folder,
        "treatment_episodes",
        [
            {
                "person_id": "P1",
                "start_date": "2022-06-01",
                "end_date": "2023-03-01",
                "medication": "morphine",
            },
            {
                "person_id": "P4",
                "start_date": "2001-01-01",
                "end_date": "2001-02-01",
                "medication": "methadone",
            },
        ],
    )
    extract = read_extract(folder)
    assert len(extract.treatment_episodes) == 14
    assert extract.deaths.loc[0, "death_date"] == pd.Timestamp("2026-03-01")
