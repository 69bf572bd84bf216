"""Reading a history extract (contract version 2): the version chosen by
``contract_version``, normalised types, canonical order, CSV or Parquet per table,
and one test per new rule (the error names the file, table, column and rows)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.data.contract import HISTORY_COLUMNS, HISTORY_TABLES, VERSION_1_PERSON_COLUMNS
from analysis.data.extract import (
    SORT_KEYS,
    Extract,
    HistoryExtract,
    contract_version,
    read_extract,
    write_extract,
)
from analysis.data.risk_sets import derive_risk_sets
from tests.extract_factory import (
    EXAMPLE as EXAMPLE_V1,
)
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
from tests.test_run_cli import assert_bad_input, run_cli
from tests.test_validation import assert_error, read_error

EXAMPLE = Path(__file__).parent / "data" / "example-history"
ROOT = Path(__file__).parents[1]  # run the command line from here, so it runs this code
FILES = [f"{t}.csv" for t in HISTORY_TABLES] + ["extract.yml"]


@pytest.fixture(scope="module")
def example() -> HistoryExtract:
    history = read_extract(EXAMPLE)
    assert isinstance(history, HistoryExtract)
    return history


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    dest = tmp_path / "history"
    dest.mkdir()
    for name in FILES:
        shutil.copyfile(EXAMPLE / name, dest / name)
    return dest


def read_history(folder: Path) -> HistoryExtract:
    history = read_extract(folder)
    assert isinstance(history, HistoryExtract)
    return history


def assert_same(a: HistoryExtract, b: HistoryExtract) -> None:
    for table in HISTORY_TABLES:
        if a.table(table) is None or b.table(table) is None:
            assert a.table(table) is None and b.table(table) is None, table
            continue
        pd.testing.assert_frame_equal(a.table(table), b.table(table), obj=table)
    assert (a.extract_date, a.history_start) == (b.extract_date, b.history_start)


# ------------------------------------------------------------------ the example
def test_example_reads_nine_persons(example: HistoryExtract) -> None:
    assert example.persons["person_id"].tolist() == [f"Q{i}" for i in range(1, 10)]
    assert [len(example.table(t)) for t in HISTORY_TABLES] == [9, 16, 1, 8, 0, 6, 3]
    assert example.extract_date == pd.Timestamp("2025-12-31")
    assert example.history_start == pd.Timestamp("2020-06-01")
    assert example.contract_version == 2 and Extract.contract_version == 1
    assert example.description.startswith("nine hand-made persons")
    assert example.files == {t: f"{t}.csv" for t in HISTORY_TABLES}


def test_example_types_and_values(example: HistoryExtract) -> None:
    for table in HISTORY_TABLES:
        df = example.table(table)
        assert list(df.columns) == list(HISTORY_COLUMNS[table])
        assert isinstance(df.index, pd.RangeIndex)
        for column in df.columns:
            if column.endswith("_date"):
                assert str(df[column].dtype) == "datetime64[s]", column
        assert all(isinstance(v, str) for v in df["person_id"])
    a = example.assessments
    assert str(a["years_opioid_use"].dtype) == "float64"
    assert a.loc[0, "years_opioid_use"] == 20.0 and a.loc[0, "injecting"] == 1.0
    assert np.isnan(a.loc[2, "benzodiazepine_use"])  # Q2's missing answer
    assert example.persons["birth_year"].dtype == np.int64
    assert example.persons.loc[7, "emigration_date"] == pd.Timestamp("2023-05-01")


def test_tables_are_sorted_canonically(example: HistoryExtract) -> None:
    for table in HISTORY_TABLES:
        df = example.table(table)
        expected = df.sort_values(list(SORT_KEYS[table]), kind="mergesort", ignore_index=True)
        pd.testing.assert_frame_equal(df, expected)


def test_dates_before_history_start_are_kept_and_noted(example: HistoryExtract) -> None:
    assert (example.treatment_episodes["start_date"] < example.history_start).sum() == 5
    notes = [n for n in example.notes if "history_start" in n]
    assert len(notes) == 2
    assert notes[0].startswith("treatment_episodes: 5 rows dated before history_start 2020-06-01")
    assert "prior OST spells" in notes[0]
    assert notes[1].startswith("assessments: 1 row dated before history_start")


def test_version_chooses_the_reader(folder: Path) -> None:
    assert contract_version(EXAMPLE) == 2 and contract_version(EXAMPLE_V1) == 1
    assert isinstance(read_extract(EXAMPLE_V1), Extract)
    v1 = copy_example(folder.parent / "v1")
    set_meta(v1, contract_version=1)
    extract = read_extract(v1)
    assert isinstance(extract, Extract)
    assert not any("contract_version" in n for n in extract.notes)
    set_meta(folder, contract_version="2")
    assert isinstance(read_extract(folder), HistoryExtract)


@pytest.mark.parametrize("value", [3, 0, "two", True, 2.5])
def test_unknown_contract_version(folder: Path, value: object) -> None:
    set_meta(folder, contract_version=value)
    assert_error(
        read_error(folder),
        file="extract.yml",
        table=None,
        column="contract_version",
        rows=[],
        contains=("is not a contract version (1 or 2)",),
    )


@pytest.mark.parametrize("value", [None, "2020-13-01", "June 2020"])
def test_history_start_required_and_iso(folder: Path, value: str | None) -> None:
    set_meta(folder, history_start=value)
    error = read_error(folder)
    assert_error(error, file="extract.yml", table=None, column="history_start", rows=[])


def test_history_start_after_extract_date(folder: Path) -> None:
    set_meta(folder, history_start="2026-01-01")
    assert_error(
        read_error(folder),
        file="extract.yml",
        table=None,
        column="history_start",
        rows=[],
        contains=("after the extract date 2025-12-31",),
    )


def test_history_start_in_a_version_1_extract_is_an_unknown_key(tmp_path: Path) -> None:
    v1 = copy_example(tmp_path / "v1")
    set_meta(v1, history_start="2015-01-01")
    assert "extract.yml: ignored unknown key 'history_start'" in read_extract(v1).notes


# ------------------------------------------------------------------ version-2 rules
@pytest.mark.parametrize("column", VERSION_1_PERSON_COLUMNS)
def test_version_1_person_columns_are_refused(folder: Path, column: str) -> None:
    persons = read_text_table(folder, "persons")
    persons[column] = "1"
    write_text_table(persons, folder, "persons")
    assert_error(
        read_error(folder),
        file="persons.csv",
        table="persons",
        column=column,
        rows=[],
        contains=("belongs to contract version 1", "contract_version 1"),
    )


def test_a_version_1_extract_declared_as_version_2(tmp_path: Path) -> None:
    v1 = copy_example(tmp_path / "v1")
    set_meta(v1, contract_version=2, history_start="2015-01-01")
    assert_error(
        read_error(v1),
        file="persons.csv",
        table="persons",
        column="group",
        rows=[],
        contains=("'group', 'index_date', 'years_opioid_use'",),
    )


def test_one_assessment_per_person_and_date(folder: Path) -> None:
    # Q1 twice on 2022-06-15 (rows 1 and 7, in file order); Q2 on Q1's date is fine
    append_rows(
        folder,
        "assessments",
        [
            {"person_id": "Q1", "assessment_date": "2022-06-15", "injecting": "0"},
            {"person_id": "Q2", "assessment_date": "2022-06-15"},
        ],
    )
    assert_error(
        read_error(folder),
        file="assessments.csv",
        table="assessments",
        column="assessment_date",
        rows=[1, 7],
        contains=("2 rows are assessments of the same person on the same date",),
    )


@pytest.mark.parametrize(
    ("table", "column", "row", "value", "problem"),
    [
        ("assessments", "assessment_date", 2, "2023-02-30", "not an ISO 8601 calendar date"),
        ("assessments", "assessment_date", 3, "", "missing value (required)"),
        ("assessments", "years_opioid_use", 1, "-1", "is negative"),
        ("assessments", "years_opioid_use", 1, "many", "is not a number"),
        ("assessments", "homeless", 4, "yes", "is not a boolean"),
        ("assessments", "person_id", 5, "Q99", "person_id that is not in persons.csv"),
        ("overdoses", "overdose_date", 1, "2021/05/10", "not an ISO 8601 calendar date"),
        ("overdoses", "person_id", 2, "", "missing value (required)"),
        ("overdoses", "person_id", 3, "Q0", "person_id that is not in persons.csv"),
        ("persons", "birth_year", 4, "2011", "outside 1900..2010 (extract year - 15)"),
        ("persons", "birth_year", 4, "1899", "outside 1900..2010"),
        ("persons", "region", 5, "Oslo", "is not one of"),
        ("treatment_episodes", "medication", 2, "heroin", "is not one of"),
        ("treatment_episodes", "end_date", 1, "2019-02-28", "ends before it starts"),
    ],
)
def test_rules_of_the_new_and_changed_tables(
    folder: Path, table: str, column: str, row: int, value: str, problem: str
) -> None:
    set_cells(folder, table, column, {row: value})
    assert_error(
        read_error(folder),
        file=f"{table}.csv",
        table=table,
        column=column,
        rows=[row],
        contains=(problem,),
    )


def test_birth_year_bound_is_allowed(folder: Path) -> None:
    set_cells(folder, "persons", "birth_year", {4: "2010"})
    assert read_history(folder).persons.loc[3, "birth_year"] == 2010


def test_required_columns_of_new_tables(folder: Path) -> None:
    drop_columns(folder, "overdoses", ["overdose_date"])
    assert_error(
        read_error(folder),
        file="overdoses.csv",
        table="overdoses",
        column="overdose_date",
        rows=[],
        contains=("required column 'overdose_date' is absent",),
    )


def test_optional_tables_and_columns(folder: Path, example: HistoryExtract) -> None:
    drop_columns(folder, "assessments", ["homeless", "years_opioid_use"])
    (folder / "overdoses.csv").unlink()
    (folder / "incarcerations.csv").unlink()
    history = read_history(folder)
    assert history.overdoses is None
    assert history.assessments["homeless"].isna().all()
    assert (
        "overdoses: no overdoses.csv or overdoses.parquet; read as prior overdose is missing"
        in (history.notes)
    )
    assert "assessments.csv: optional column 'homeless' absent; filled with missing values" in (
        history.notes
    )
    t = derive_risk_sets(history).table
    eligible = t[t["reason"].isna()]
    assert eligible["prior_overdose"].isna().all() and eligible["homeless"].isna().all()
    (folder / "assessments.csv").unlink()
    history = read_history(folder)
    assert len(history.assessments) == 0
    assert list(history.assessments.columns) == list(HISTORY_COLUMNS["assessments"])


def test_hat_before_any_site_opened_and_far_dates_are_data(folder: Path) -> None:
    # diacetylmorphine in 2001 and an episode ending 9999-12-31 are read as data
    append_rows(
        folder,
        "treatment_episodes",
        [
            {"person_id": "Q6", "start_date": "2001-01-01", "end_date": "2001-02-01",
             "medication": "diacetylmorphine"},
            {"person_id": "Q5", "start_date": "0900-01-01", "end_date": "9999-12-31",
             "medication": "morphine"},
        ],
    )  # fmt: skip
    history = read_history(folder)
    episodes = history.treatment_episodes
    assert (episodes["end_date"] == np.datetime64("9999-12-31")).sum() == 1
    assert (episodes["start_date"] == np.datetime64("0900-01-01")).sum() == 1
    assert "treatment_episodes: 7 rows dated before history_start" in " ".join(history.notes)
    sets = derive_risk_sets(history)
    assert sets.initiators.set_index("person_id").loc["Q6", "index_date"] == pd.Timestamp(
        "2001-01-01"
    )


# ------------------------------------------------------------------ invariance
def test_csv_parquet_and_mixed(folder: Path, example: HistoryExtract) -> None:
    for i, table in enumerate(HISTORY_TABLES):
        if i % 2 == 0:
            to_parquet(folder, table)
    history = read_history(folder)
    assert history.files["persons"] == "persons.parquet"
    assert history.files["charges"] == "charges.csv"
    assert_same(history, example)


@pytest.mark.parametrize("format", ["csv", "parquet"])
def test_write_read_round_trip(example: HistoryExtract, tmp_path: Path, format: str) -> None:
    tables = {t: example.table(t) for t in HISTORY_TABLES}
    out = write_extract(
        tables,
        tmp_path / "copy",
        extract_date=example.extract_date,
        history_start=example.history_start,
        description=example.description,
        format=format,
    )
    back = read_history(out)
    assert_same(back, example)
    assert "contract_version: 2" in (out / "extract.yml").read_text()
    tables["overdoses"] = None  # not written: read back as absent
    out = write_extract(
        tables, tmp_path / "no-overdoses", extract_date="2025-12-31", history_start="2020-06-01"
    )
    assert read_history(out).overdoses is None


@pytest.mark.parametrize("seed", [1, 2])
def test_row_and_column_order_do_not_matter(
    folder: Path, example: HistoryExtract, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    for table in HISTORY_TABLES:
        df = read_text_table(folder, table)
        df = df.iloc[rng.permutation(len(df))][list(rng.permutation(df.columns))]
        write_text_table(df, folder, table)
    history = read_history(folder)
    assert_same(history, example)
    pd.testing.assert_frame_equal(derive_risk_sets(history).table, derive_risk_sets(example).table)


# ------------------------------------------------------------------ command line
def test_run_on_a_history_extract_exits_2(tmp_path: Path) -> None:
    """Nine persons are too few for the target trial: exit 2 with the reason."""
    out = tmp_path / "results"
    proc = run_cli("--data", str(EXAMPLE), "--out", str(out), cwd=ROOT)
    assert_bad_input(proc, out, "no initiator could be matched to a comparator of its risk set")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_run_on_a_bad_history_extract_exits_2(folder: Path, tmp_path: Path) -> None:
    set_cells(folder, "assessments", "assessment_date", {2: "2021-09-31"})
    out = tmp_path / "results"
    proc = run_cli("--data", str(folder), "--out", str(out), cwd=ROOT)
    assert_bad_input(proc, out, "assessments.csv", "'assessment_date'", "row 2")
