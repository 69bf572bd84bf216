"""Reading an extract folder: normalised types, canonical order, and invariance to
file format (CSV or Parquet, per table) and to the order of rows and columns."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.data.contract import COLUMNS, OPTIONAL_PERSON_COLUMNS, TABLES
from analysis.data.extract import SORT_KEYS, Extract, read_extract, write_extract
from tests.extract_factory import (
    EXAMPLE,
    copy_example,
    drop_columns,
    read_text_table,
    set_cells,
    set_meta,
    to_parquet,
    write_text_table,
)

EXPECTED_DTYPES = {
    "person_id": "object",
    "group": "object",
    "index_date": "datetime64[s]",
    "sex": "object",
    "birth_year": "int64",
    "region": "object",
    "years_opioid_use": "float64",
    "prior_ost_episodes": "float64",
    "injecting": "float64",
    "psychiatric_dx": "float64",
    "homeless": "float64",
    "prior_overdose": "float64",
    "benzodiazepine_use": "float64",
    "emigration_date": "datetime64[s]",
    "start_date": "datetime64[s]",
    "end_date": "datetime64[s]",
    "medication": "object",
    "death_date": "datetime64[s]",
    "cause": "object",
    "charge_date": "datetime64[s]",
    "offence": "object",
}


@pytest.fixture(scope="module")
def example() -> Extract:
    return read_extract(EXAMPLE)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return copy_example(tmp_path / "extract")


def assert_same_tables(a: Extract, b: Extract) -> None:
    for table in TABLES:
        pd.testing.assert_frame_equal(a.table(table), b.table(table))
    assert a.extract_date == b.extract_date


# ------------------------------------------------------------------ the example extract
def test_example_reads_seven_persons(example: Extract) -> None:
    assert len(example.persons) == 7
    assert example.persons["person_id"].tolist() == [f"P{i}" for i in range(1, 8)]
    assert (example.persons["group"] == "HAT").sum() == 2
    assert [len(example.table(t)) for t in TABLES[1:]] == [12, 2, 11, 3]
    assert example.extract_date == pd.Timestamp("2025-12-31")
    assert example.description.startswith("seven hand-made persons")
    assert example.truth is None
    assert example.files == {t: f"{t}.csv" for t in TABLES}


def test_example_types(example: Extract) -> None:
    for table in TABLES:
        df = example.table(table)
        assert list(df.columns) == list(COLUMNS[table])
        assert {c: str(t) for c, t in df.dtypes.items()} == {
            c: EXPECTED_DTYPES[c] for c in COLUMNS[table]
        }
        assert isinstance(df.index, pd.RangeIndex) and df.index.start == 0
    for table in TABLES:  # ids are str objects, never numbers
        assert all(isinstance(v, str) for v in example.table(table)["person_id"])


def test_example_values(example: Extract) -> None:
    p = example.persons.set_index("person_id")
    assert p.loc["P1", "index_date"] == pd.Timestamp("2023-01-01")
    assert p.loc["P1", "birth_year"] == 1978
    assert p.loc["P1", "years_opioid_use"] == 22.5
    assert p.loc["P1", "injecting"] == 1.0 and p.loc["P1", "homeless"] == 0.0
    assert np.isnan(p.loc["P3", "years_opioid_use"]) and np.isnan(p.loc["P3", "psychiatric_dx"])
    assert p.loc["P4", "emigration_date"] == pd.Timestamp("2023-02-28")
    assert p["emigration_date"].isna().sum() == 6
    assert pd.isna(example.incarcerations.loc[2, "end_date"])  # P7, ongoing
    assert pd.isna(example.treatment_episodes.loc[2, "end_date"])  # P1, ongoing


def test_tables_are_sorted_canonically(example: Extract) -> None:
    for table in TABLES:
        df = example.table(table)
        expected = df.sort_values(list(SORT_KEYS[table]), kind="mergesort", ignore_index=True)
        pd.testing.assert_frame_equal(df, expected)


def test_unknown_files_are_noted(example: Extract) -> None:
    assert any("expected_cohort.csv" in n for n in example.notes)


# ------------------------------------------------------------------ invariance
@pytest.mark.parametrize("format", ["csv", "parquet"])
def test_write_read_round_trip(example: Extract, tmp_path: Path, format: str) -> None:
    tables = {t: example.table(t) for t in TABLES}
    write_extract(tables, tmp_path, extract_date=example.extract_date, format=format)
    again = read_extract(tmp_path)
    assert_same_tables(example, again)
    assert again.files["persons"] == f"persons.{format}"


def test_write_extract_writes_integers_and_iso_dates(example: Extract, tmp_path: Path) -> None:
    write_extract({t: example.table(t) for t in TABLES}, tmp_path, extract_date="2025-12-31")
    text = (tmp_path / "persons.csv").read_text(encoding="utf-8").splitlines()
    assert text[1] == "P1,HAT,2023-01-01,M,1978,south-east,22.5,3,1,1,0,1,0,"
    write_extract(
        {t: example.table(t) for t in TABLES}, tmp_path, extract_date="2025-12-31", format="parquet"
    )
    schema = pq.read_schema(tmp_path / "treatment_episodes.parquet")
    assert schema.field("start_date").type == pa.date32()
    assert pa.types.is_integer(pq.read_schema(tmp_path / "persons.parquet").field("injecting").type)


def test_parquet_of_strings_equals_csv(example: Extract, folder: Path) -> None:
    for table in TABLES:
        to_parquet(folder, table)
    assert_same_tables(example, read_extract(folder))


def test_mixed_formats(example: Extract, folder: Path) -> None:
    to_parquet(folder, "persons")
    to_parquet(folder, "charges")
    extract = read_extract(folder)
    assert_same_tables(example, extract)
    assert extract.files["persons"] == "persons.parquet"
    assert extract.files["treatment_episodes"] == "treatment_episodes.csv"


def test_typed_parquet_variants(example: Extract, folder: Path) -> None:
    """Integer ids, bool/int/string booleans, date32/timestamp/string dates."""
    persons = read_text_table(folder, "persons").replace("", None)
    persons["person_id"] = persons["person_id"].str[1:].astype(int)  # 1..7
    persons["birth_year"] = persons["birth_year"].astype(int)
    persons["injecting"] = persons["injecting"].map({"1": True, "0": False})  # no missing: bool
    persons["psychiatric_dx"] = persons["psychiatric_dx"].map({"1": True, "0": False})  # nullable
    persons["homeless"] = persons["homeless"].astype("Int64")
    persons["prior_overdose"] = persons["prior_overdose"].map({"1": "TRUE", "0": "false"})
    persons["years_opioid_use"] = persons["years_opioid_use"].astype(float)
    persons["index_date"] = pd.to_datetime(persons["index_date"]).dt.tz_localize("UTC")
    persons["emigration_date"] = pd.to_datetime(persons["emigration_date"]).astype("datetime64[us]")
    persons.to_parquet(folder / "persons.parquet", index=False)
    for table in TABLES[1:]:
        df = read_text_table(folder, table).replace("", None)
        df["person_id"] = df["person_id"].str[1:].astype(int)
        dates = {c: pa.date32() for c in df.columns if c.endswith("date")}
        fields = [
            pa.field(c, dates.get(c, pa.int64() if c == "person_id" else pa.string())) for c in df
        ]
        arrays = {c: pd.to_datetime(df[c]).dt.date if c in dates else df[c] for c in df.columns}
        pq.write_table(pa.table(arrays, schema=pa.schema(fields)), folder / f"{table}.parquet")
    for table in TABLES:
        (folder / f"{table}.csv").unlink()
    extract = read_extract(folder)
    expected = {t: example.table(t).copy() for t in TABLES}
    for df in expected.values():
        df["person_id"] = df["person_id"].str[1:]
    for table in TABLES:
        pd.testing.assert_frame_equal(extract.table(table), expected[table])


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_row_and_column_order_do_not_matter(example: Extract, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = copy_example(Path(tmp))
        for table in TABLES:
            df = read_text_table(folder, table)
            rows = data.draw(st.permutations(range(len(df))), label=f"{table} rows")
            columns = data.draw(st.permutations(list(df.columns)), label=f"{table} columns")
            write_text_table(df.iloc[list(rows)][list(columns)], folder, table)
            if data.draw(st.booleans(), label=f"{table} as parquet"):
                to_parquet(folder, table)
        assert_same_tables(example, read_extract(folder))


# ------------------------------------------------------------------ optional parts
def test_absent_optional_columns_are_filled(example: Extract, folder: Path) -> None:
    drop_columns(folder, "persons", list(OPTIONAL_PERSON_COLUMNS))
    extract = read_extract(folder)
    persons = extract.persons
    assert list(persons.columns) == list(COLUMNS["persons"])
    assert persons[list(OPTIONAL_PERSON_COLUMNS)].isna().all().all()
    assert persons["homeless"].dtype == "float64"
    assert persons["emigration_date"].dtype == "datetime64[s]"
    for column in OPTIONAL_PERSON_COLUMNS:
        assert any(f"'{column}' absent" in n for n in extract.notes)
    required = [c for c in COLUMNS["persons"] if c not in OPTIONAL_PERSON_COLUMNS]
    pd.testing.assert_frame_equal(persons[required], example.persons[required])


def test_extra_columns_are_dropped_with_a_note(example: Extract, folder: Path) -> None:
    df = read_text_table(folder, "charges")
    df["court"] = "Oslo"
    write_text_table(df, folder, "charges")
    extract = read_extract(folder)
    pd.testing.assert_frame_equal(extract.charges, example.charges)
    assert "charges.csv: ignored unknown column 'court'" in extract.notes


def test_incarcerations_may_be_absent(folder: Path) -> None:
    (folder / "incarcerations.csv").unlink()
    extract = read_extract(folder)
    assert extract.incarcerations.empty
    assert list(extract.incarcerations.columns) == list(COLUMNS["incarcerations"])
    assert extract.incarcerations["start_date"].dtype == "datetime64[s]"
    assert extract.incarcerations["person_id"].dtype == object
    assert "incarcerations" not in extract.files
    assert any(n.startswith("incarcerations:") for n in extract.notes)


def test_empty_tables(folder: Path) -> None:
    for table in ("deaths", "charges"):
        write_text_table(read_text_table(folder, table).iloc[:0], folder, table)
    to_parquet(folder, "charges")
    extract = read_extract(folder)
    assert extract.deaths.empty and extract.charges.empty
    assert extract.charges["charge_date"].dtype == "datetime64[s]"
    assert extract.deaths["cause"].dtype == object


def test_truth_json_is_read(folder: Path) -> None:
    truth = {
        "scenario": "default",
        "seed": 1,
        "estimands": [{"outcome": "mortality", "measure": "HR", "value": 0.7}],
    }
    (folder / "truth.json").write_text(json.dumps(truth), encoding="utf-8")
    assert read_extract(folder).truth == truth


def test_extract_yml_options(folder: Path) -> None:
    (folder / "extract.yml").write_text(
        "extract_date: '2025-12-31'\nschema_version: 1\n", encoding="utf-8"
    )
    extract = read_extract(folder)
    assert extract.extract_date == pd.Timestamp("2025-12-31")
    assert extract.description is None
    assert "extract.yml: ignored unknown key 'schema_version'" in extract.notes
    set_meta(folder, description="a test")
    assert read_extract(folder).description == "a test"


# ------------------------------------------------------------------ CSV details
def test_csv_cells_are_strings_trimmed(folder: Path) -> None:
    set_cells(folder, "persons", "person_id", {1: "007"})
    set_cells(folder, "treatment_episodes", "person_id", {1: " 007 ", 2: "007", 3: "007"})
    set_cells(folder, "charges", "person_id", {1: "007", 2: "007", 3: "007", 4: "007"})
    set_cells(folder, "incarcerations", "person_id", {1: "007"})
    set_cells(folder, "persons", "region", {2: "  west "})
    set_cells(folder, "persons", "injecting", {1: " TRUE", 2: "False"})
    extract = read_extract(folder)
    assert extract.persons["person_id"].tolist()[0] == "007"
    assert extract.persons.loc[1, "region"] == "west"
    assert extract.persons.loc[:1, "injecting"].tolist() == [1.0, 0.0]
    assert (extract.treatment_episodes["person_id"] == "007").sum() == 3


def test_csv_with_byte_order_mark(example: Extract, folder: Path) -> None:
    path = folder / "persons.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    pd.testing.assert_frame_equal(read_extract(folder).persons, example.persons)
