"""History extracts (contract version 2) as registries deliver them, and broken ones, through
``python -m evaluation.run`` (in-process, as ``tests/test_misuse.py`` does).

Valid but unusual extracts must run, every initiator left out counted with its reason, or
stop with exit 2 and one line saying why the study cannot be done. Broken extracts must stop
with exit 2 and one line naming the file (table), the column and the row, without a
traceback, leaving nothing behind (no results folder, no hidden sibling, a previous results
folder untouched).

The unusual persons (ids ``Z..``) are added to a small synthetic history extract (the ``ci``
scenario at a twentieth of its size, about 560 persons and 15 initiators) and run through the
command line once; their derived rows are checked against the contract by hand
(``derive_risk_sets``). The broken extracts are edits of the hand-worked example history.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.data.contract import HISTORY_TABLES
from analysis.data.extract import read_extract
from analysis.data.risk_sets import derive_risk_sets
from evaluation.run import main
from tests.extract_factory import (
    append_rows,
    drop_columns,
    read_text_table,
    set_cells,
    set_meta,
    write_text_table,
)
from tests.test_misuse import tree_hash

EXAMPLE = Path(__file__).parent / "data" / "example-history"
TABLES = HISTORY_TABLES
EXTRACT_DATE = "2026-12-31"  # of the small synthetic extract; history_start 2015-01-01


# ----------------------------------------------------------------------------- helpers
def cli(config: Path, data: Path, out: Path, *more: str) -> tuple[int, list[str]]:
    """Run the command in-process; the exit status and the lines on stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(["--no-book", "--quiet", "--config", str(config), *more,
                       "--data", str(data), "--out", str(out)])  # fmt: skip
    text = err.getvalue()
    assert "Traceback" not in text
    return status, text.splitlines()


def assert_stopped(status: int, lines: list[str], out: Path, *fragments: str) -> None:
    """Exit 2, one line naming what is wrong, nothing written."""
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*")), list(out.parent.iterdir())


def copy_extract(src: Path, dest: Path) -> Path:
    """The tables and ``extract.yml`` of ``src`` (no truth, no README) in ``dest``."""
    dest.mkdir(parents=True)
    for path in src.iterdir():
        if (path.suffix == ".csv" and path.stem in TABLES) or path.name == "extract.yml":
            shutil.copyfile(path, dest / path.name)
    return dest


def header_only(folder: Path, *tables: str) -> None:
    for table in tables:
        path = folder / f"{table}.csv"
        path.write_text(path.read_text().splitlines()[0] + "\n")


def add_person(folder: Path, pid: str, *, birth: str = "1980", region: str = "south-east",
               emigration: str = "", episodes: tuple = (), death: tuple | None = None,
               charges: tuple = (), overdoses: tuple = ()) -> None:  # fmt: skip
    """A person with episodes ``(start, end, medication)`` and events (dates)."""
    append_rows(folder, "persons", [{"person_id": pid, "sex": "M", "birth_year": birth,
                                     "region": region, "emigration_date": emigration}])  # fmt: skip
    rows = {
        "treatment_episodes": [
            {"person_id": pid, "start_date": s, "end_date": e, "medication": m}
            for s, e, m in episodes
        ],
        "deaths": [{"person_id": pid, "death_date": death[0], "cause": death[1]}] if death else [],
        "charges": [{"person_id": pid, "charge_date": c, "offence": "drug"} for c in charges],
        "overdoses": [{"person_id": pid, "overdose_date": d} for d in overdoses],
    }
    for table, new in rows.items():
        if new:
            append_rows(folder, table, new)


MD, HAT = "methadone", "diacetylmorphine"

#: the unusual persons: id -> keyword arguments of :func:`add_person`
UNUSUAL = {
    # two initiators on the same day, neither a candidate of the other's risk set
    "Z01": {"episodes": (("2019-01-01", "2024-02-15", MD), ("2024-02-16", "", HAT))},
    "Z02": {"episodes": (("2019-01-01", "2024-02-15", MD), ("2024-02-16", "", HAT))},
    # HAT from the extract date: zero follow-up
    "Z03": {"episodes": (("2018-01-01", "2026-12-30", MD), ("2026-12-31", "", HAT))},
    # HAT from history_start: the lookback is not covered
    "Z04": {"episodes": (("2014-01-01", "2014-12-31", MD), ("2015-01-01", "", HAT))},
    # several HAT episodes: only the first start is an initiation
    "Z05": {"episodes": (("2018-01-01", "2023-05-31", MD), ("2023-06-01", "2023-09-01", HAT),
                         ("2023-09-02", "2024-01-01", MD), ("2024-06-01", "", HAT))},
    # HAT in 2019, before the pilot: data like any other
    "Z06": {"episodes": (("2016-01-01", "2019-02-28", MD), ("2019-03-01", "", HAT))},
    # dies in an open episode; a charge, an overdose and an episode after death
    "Z07": {"episodes": (("2018-01-01", "2024-01-09", MD), ("2024-01-10", "", HAT),
                         ("2025-03-01", "2025-04-01", MD)),
            "death": ("2025-01-01", "overdose"), "charges": ("2024-06-01", "2025-06-01"),
            "overdoses": ("2025-02-01",)},
    # emigrates in an open episode; charges on and after the emigration date
    "Z08": {"emigration": "2024-06-01", "charges": ("2024-06-01", "2024-06-02"),
            "episodes": (("2018-01-01", "2024-01-09", MD), ("2024-01-10", "", HAT))},
    # in no episode at all
    "Z09": {},
    # 18 in the year of the HAT start (year of date - birth year), and 17
    "Z10": {"birth": "2006", "episodes": (("2022-01-01", "2024-01-04", MD),
                                          ("2024-01-05", "", HAT))},
    "Z11": {"birth": "2007", "episodes": (("2022-01-01", "2024-01-04", MD),
                                          ("2024-01-05", "", HAT))},
    # HAT start after death
    "Z12": {"episodes": (("2018-01-01", "", MD), ("2024-03-01", "", HAT)),
            "death": ("2024-02-01", "other")},
    # HAT start after the extract date
    "Z13": {"episodes": (("2018-01-01", "", MD), ("2027-01-05", "", HAT))},
    # overlapping OST episodes and overlapping HAT episodes
    "Z14": {"episodes": (("2018-01-01", "", MD), ("2019-01-01", "2020-12-31", "buprenorphine"),
                         ("2024-03-01", "2024-12-31", HAT), ("2024-06-01", "2024-09-01", HAT))},
    # death and a charge on the extract date; emigration on the extract date
    "Z15": {"episodes": (("2018-01-01", "", MD),), "death": (EXTRACT_DATE, "other"),
            "charges": (EXTRACT_DATE,)},
    "Z16": {"emigration": EXTRACT_DATE, "episodes": (("2018-01-01", EXTRACT_DATE, MD),)},
    # death after the extract date (registries with different lags)
    "Z17": {"episodes": (("2018-01-01", "", MD), ("2024-03-01", "", HAT)),
            "death": ("2027-02-01", "other")},
    # dies, or emigrates, on the day HAT starts (rule 2: not dead or emigrated *before* it)
    "Z18": {"episodes": (("2019-01-01", "2024-02-15", MD), ("2024-02-16", "", HAT)),
            "death": ("2024-02-16", "overdose")},
    "Z19": {"emigration": "2024-02-16",
            "episodes": (("2019-01-01", "2024-02-15", MD), ("2024-02-16", "", HAT))},
    # last OST day 7 days before the HAT start (in the window), and 8 days before
    "Z20": {"episodes": (("2019-01-01", "2024-03-08", MD), ("2024-03-15", "", HAT))},
    "Z21": {"episodes": (("2019-01-01", "2024-03-07", MD), ("2024-03-15", "", HAT))},
    # HAT in a region where no other initiator lives: by default it becomes a HAT region
    "Z22": {"region": "north",
            "episodes": (("2018-01-01", "2024-02-29", MD), ("2024-03-01", "", HAT))},
}  # fmt: skip


@pytest.fixture(scope="module")
def small_history(tmp_path_factory) -> Path:
    """The ``ci`` history scenario at scale 0.05 (about 560 persons), without truth."""
    from synthetic.history_generate import generate_history, write_history
    from synthetic.history_spec import load_history_scenario

    spec = load_history_scenario("ci").model_copy(update={"scale": 0.05})
    tables, _ = generate_history(spec, np.random.default_rng(spec.seed), truth=False)
    return write_history(tables, None, tmp_path_factory.mktemp("small") / "extract", spec=spec)


@pytest.fixture(scope="module")
def unusual(small_history, no_mi_config, tmp_path_factory) -> dict:
    """The small extract with the unusual persons, its results folder and its risk sets."""
    root = tmp_path_factory.mktemp("unusual")
    data = copy_extract(small_history, root / "extract")
    for pid, person in UNUSUAL.items():
        add_person(data, pid, **person)
    out = root / "results"
    status, lines = cli(no_mi_config, data, out)
    sets = derive_risk_sets(read_extract(data))
    return {"data": data, "out": out, "status": status, "lines": lines, "sets": sets}


def rows_of(sets, pid: str) -> pd.DataFrame:
    return sets.table[sets.table["person_id"] == pid].set_index("index_date")


def initiator_row(sets, pid: str) -> pd.Series:
    rows = sets.table[(sets.table["person_id"] == pid)
                      & sets.table["role"].isin(["initiator", "excluded initiator"])]  # fmt: skip
    assert len(rows) == 1, rows
    return rows.iloc[0]


# ------------------------------------------------- valid but unusual: one run of the command
def test_unusual_extract_runs_and_counts_every_excluded_initiator(unusual):
    assert unusual["status"] == 0, unusual["lines"]
    assert not [line for line in unusual["lines"] if "encountered in" in line]
    out, sets = unusual["out"], unusual["sets"]
    results = json.loads((out / "results.json").read_text())
    cohort = results["cohort"]
    reasons = sets.initiators.set_index("person_id")["reason"]
    assert reasons["Z04"] == "registry history shorter than the lookback"
    assert reasons["Z11"] == "age below minimum"
    assert reasons["Z12"] == "died or emigrated before the date"
    assert reasons["Z21"] == "not in OST in the week before"
    assert "Z13" not in reasons.index  # HAT after the extract date: no initiation
    for pid in ("Z01", "Z02", "Z03", "Z05", "Z06", "Z07", "Z08", "Z10", "Z14", "Z17", "Z18",
                "Z19", "Z20", "Z22"):  # fmt: skip
        assert pd.isna(reasons[pid]), pid
    # the command's counts are the derivation's: nobody lost between them
    table = pd.read_csv(out / "tables" / "exclusions.csv")
    pd.testing.assert_frame_equal(table, sets.exclusions())
    assert cohort["exclusions"] == sets.exclusions().to_dict(orient="records")
    assert cohort["n_initiators"] == len(sets.initiators)
    assert cohort["n_hat"] + cohort["n_excluded"] == cohort["n_initiators"]
    assert cohort["n_excluded"] == int(sets.exclusions()["n"].sum()) >= 3
    # initiators analysed but not matched are counted with their reason too
    matched = results["design"]["designs"]["matched"]
    unmatched = matched["unmatched_treated_by_reason"]
    assert sum(unmatched.values()) == cohort["n_hat"] - cohort["n_hat_matched"]
    flow = pd.read_csv(out / "tables" / "flow.csv").set_index("step")
    assert flow.loc["HAT initiators", "n_persons"] == cohort["n_initiators"]
    assert flow.loc["persons in the extract", "n_persons"] == cohort["n_read"]


def test_events_after_the_extract_date_are_noted(unusual):
    notes = json.loads((unusual["out"] / "manifest.json").read_text())["extract_notes"]
    assert "treatment_episodes: 1 row dated after extract_date 2026-12-31 (start_date); " \
        "ignored: a HAT start after it makes no initiator" in notes  # fmt: skip
    assert any(n.startswith("deaths: 1 row dated after extract_date 2026-12-31") for n in notes)
    # episodes before history_start (Z04's, the generator's) are kept as known events, noted
    assert any(n.startswith("treatment_episodes: ") and "before history_start" in n for n in notes)


def test_same_day_initiators_are_not_candidates_of_each_other(unusual):
    sets = unusual["sets"]
    day = sets.table[sets.table["index_date"] == pd.Timestamp("2024-02-16")]
    for pid in ("Z01", "Z02"):
        rows = day[day["person_id"] == pid]
        assert list(rows["role"]) == ["initiator"]
    assert (rows_of(sets, "Z01").loc[pd.Timestamp("2024-01-10"), "role"]) == "candidate"


def test_zero_follow_up_and_events_on_the_extract_date(unusual):
    sets = unusual["sets"]
    z03 = initiator_row(sets, "Z03")
    assert (z03["role"], z03["followup_days"], z03["crime_days"]) == ("initiator", 0, 1)
    for pid, event in (("Z15", "died"), ("Z16", "emigrated")):
        rows = rows_of(sets, pid)
        rows = rows[rows["role"] == "candidate"]
        assert len(rows) > 0
        assert (rows["followup_end"] == pd.Timestamp(EXTRACT_DATE)).all()
        assert (rows[event] == 1).all()
    assert (rows_of(sets, "Z15").query("role == 'candidate'")["followup_charges"] == 1).all()


def test_only_the_first_hat_start_is_an_initiation(unusual):
    sets = unusual["sets"]
    z05 = initiator_row(sets, "Z05")
    assert z05["index_date"] == pd.Timestamp("2023-06-01")
    later = rows_of(sets, "Z05").loc[pd.Timestamp("2023-06-02") :]
    assert (later["reason"] == "previous or same-day HAT").all()
    before = rows_of(sets, "Z05").query("role == 'candidate'")
    assert (before["pp_censor_date"] == pd.Timestamp("2023-06-01")).all()
    z14 = initiator_row(sets, "Z14")  # two overlapping HAT episodes: one initiation
    assert z14["index_date"] == pd.Timestamp("2024-03-01")
    # overlapping OST episodes are not counted twice
    assert (z14["days_in_ost_last_year"], z14["prior_ost_spells"]) == (365, 1)


def test_death_and_emigration_end_follow_up_and_later_events_are_not_counted(unusual):
    sets = unusual["sets"]
    z07 = initiator_row(sets, "Z07")  # HAT 2024-01-10, died 2025-01-01 in the open episode
    assert (z07["followup_days"], z07["died"], z07["overdose_death"]) == (357, 1, 1)
    assert (z07["followup_charges"], z07["retention_days"], z07["discontinued"]) == (1, 357, 0)
    after = rows_of(sets, "Z07").loc[pd.Timestamp("2025-01-02") :]
    assert len(after) and (after["role"] == "not eligible").all()
    z08 = initiator_row(sets, "Z08")  # emigrated 2024-06-01: its charge that day counts
    assert (z08["followup_days"], z08["emigrated"], z08["followup_charges"]) == (143, 1, 1)
    assert z08["crime_days"] == 144
    z17 = initiator_row(sets, "Z17")  # death after the extract date: censored there
    assert (z17["died"], z17["followup_end"]) == (0, pd.Timestamp(EXTRACT_DATE))
    z18, z19 = initiator_row(sets, "Z18"), initiator_row(sets, "Z19")  # on the HAT start day
    assert (z18["followup_days"], z18["died"], z18["overdose_death"]) == (0, 1, 1)
    assert (z19["followup_days"], z19["emigrated"], z19["died"]) == (0, 1, 0)


def test_hat_before_the_pilot_and_persons_without_episodes(unusual):
    sets = unusual["sets"]
    assert "north" in sets.protocol.regions  # Z22's region: an analysed initiator lives there
    z06 = initiator_row(sets, "Z06")
    assert (z06["role"], z06["index_date"]) == ("initiator", pd.Timestamp("2019-03-01"))
    z09 = rows_of(sets, "Z09")
    assert (z09["reason"] == "not in OST in the week before").all()
    z10 = rows_of(sets, "Z10")  # born 2006: not eligible in 2023, an initiator in 2024
    assert (z10.loc[: pd.Timestamp("2023-12-31"), "reason"] == "age below minimum").all()
    assert initiator_row(sets, "Z10")["role"] == "initiator"


# ------------------------------------------------ valid but unusual: more runs of the command
@pytest.mark.parametrize(
    "edit",
    [
        "empty optional tables and charges",
        "optional tables absent",
        "every status-form answer missing",
    ],
)
def test_empty_tables_and_missing_answers_run(small_history, tmp_path, edit):
    """With the multiple-imputation sensitivity analysis on (the default): without a status
    form, or without an answer, nothing is missing on some rows only, so it is not run, and
    ``design.missing`` says so and names the covariates missing everywhere."""
    data = copy_extract(small_history, tmp_path / "extract")
    if edit == "empty optional tables and charges":
        header_only(data, "assessments", "overdoses", "incarcerations", "charges")
    elif edit == "optional tables absent":
        for table in ("assessments", "overdoses", "incarcerations"):
            (data / f"{table}.csv").unlink()
    else:
        forms = read_text_table(data, "assessments")
        for column in forms.columns[2:]:
            forms[column] = ""
        write_text_table(forms, data, "assessments")
    config = tmp_path / "study.yml"
    config.write_text("imputation: {sensitivity: true}\n")
    status, lines = cli(config, data, tmp_path / "results")
    assert status == 0, lines
    assert all(line.startswith(("warning: ", "not estimable: ")) for line in lines), lines
    # the package's own sentences, not numpy's: a per-protocol bootstrap replicate without
    # events in a group gave "RuntimeWarning: divide by zero encountered in log"
    assert not [line for line in lines if "encountered in" in line], lines
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert results["cohort"]["n_hat"] == results["cohort"]["n_initiators"] > 0
    missing = results["design"]["missing"]
    assert missing["not_imputed"] == "never_observed"  # was "no_missing_values": untrue
    never = "years_opioid_use, injecting, psychiatric_dx, homeless, benzodiazepine_use"
    never += ", prior_overdose" if edit == "optional tables absent" else ""
    assert missing["note"].endswith(f"left out of the propensity model: {never}")
    if edit == "empty optional tables and charges":
        crime = [e for e in results["estimates"] if e["primary"] and e["outcome"] == "crime"]
        assert crime[0]["estimate"] is None  # no charges: said, not hidden
        assert any(line.startswith("not estimable: crime") for line in lines)


def test_hat_in_a_region_outside_the_configured_ones_is_counted(small_history, tmp_path):
    data = copy_extract(small_history, tmp_path / "extract")
    add_person(data, "Z20", region="north", **UNUSUAL["Z06"])
    config = tmp_path / "study.yml"
    config.write_text(
        "imputation: {sensitivity: false}\n"
        "target_trial: {eligibility: {regions: [south-east, west]}}\n"
    )
    status, lines = cli(config, data, tmp_path / "results")
    assert status == 0, lines
    table = pd.read_csv(tmp_path / "results" / "tables" / "exclusions.csv").set_index("reason")
    assert table.loc["region without HAT", "n"] == 1


# --------------------------------------------- valid, but no analysis possible: exit 2, why
def _only_hat_of(data: Path, keep: tuple[str, ...]) -> None:
    episodes = read_text_table(data, "treatment_episodes")
    episodes.loc[(episodes["medication"] == HAT) & ~episodes["person_id"].isin(keep),
                 "medication"] = MD  # fmt: skip
    write_text_table(episodes, data, "treatment_episodes")


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("no HAT episode", ("the extract has no HAT initiator",)),
        ("nobody at all", ("the extract has no HAT initiator",)),
        ("every initiator without lookback",
         ("no HAT initiator is eligible on its own index date",
          "registry history shorter than the lookback: ")),
        ("no OST episode", ("no HAT initiator is eligible", "not in OST in the week before: ")),
        ("exactly one initiator", ("no initiator could be matched", "caliper")),
    ],
)  # fmt: skip
def test_no_analysable_initiator_stops_with_the_reason(
    small_history, no_mi_config, tmp_path, case, fragments
):
    data = copy_extract(small_history, tmp_path / "extract")
    if case == "no HAT episode":
        _only_hat_of(data, ())
    elif case == "nobody at all":
        header_only(data, *TABLES)
    elif case == "every initiator without lookback":
        set_meta(data, history_start="2025-06-01")
    elif case == "no OST episode":
        episodes = read_text_table(data, "treatment_episodes")
        write_text_table(episodes[episodes["medication"] == HAT], data, "treatment_episodes")
    else:
        _only_hat_of(data, ())
        add_person(data, "Z01", **UNUSUAL["Z01"])
    out = tmp_path / "results"
    status, lines = cli(no_mi_config, data, out)
    assert_stopped(status, lines, out, "the study cannot be done", *fragments)
    if case == "every initiator without lookback":  # not the region rule, which follows it
        assert "region without HAT" not in lines[0]


# ----------------------------------------------------------- broken extracts: exit 2, one line
def _drop(table: str):
    return lambda d: (d / f"{table}.csv").unlink()


def _bytes(table: str, content: bytes):
    return lambda d: (d / f"{table}.csv").write_bytes(content)


EPISODE = {"person_id": "Q3", "start_date": "2020-01-01", "end_date": "2020-12-31",
           "medication": "methadone"}  # fmt: skip

BROKEN = [
    # (case, edit of the example history, fragments of the one line)
    ("episode ends before it starts",
     lambda d: set_cells(d, "treatment_episodes", "end_date", {3: "2019-12-31"}),
     ("treatment_episodes.csv", "'end_date'", "row 3", "ends before it starts")),
    ("duplicate person id",
     lambda d: append_rows(d, "persons", [{"person_id": "Q3", "sex": "M", "birth_year": "1960",
                                           "region": "south-east"}]),
     ("persons.csv", "'person_id'", "row 3", "row 10", "more than once")),
    ("two deaths of one person",
     lambda d: append_rows(d, "deaths", [{"person_id": "Q3", "death_date": "2024-03-01",
                                          "cause": "other"}]),
     ("deaths.csv", "'person_id'", "row 1", "row 2")),
    ("episode of an unknown person",
     lambda d: append_rows(d, "treatment_episodes", [{**EPISODE, "person_id": "Q10"}]),
     ("treatment_episodes.csv", "'person_id'", "row 17", "not in persons.csv")),
    ("status form of an unknown person",
     lambda d: set_cells(d, "assessments", "person_id", {3: "q2"}),
     ("assessments.csv", "'person_id'", "row 3", "not in persons.csv")),
    ("overdose of an unknown person",
     lambda d: set_cells(d, "overdoses", "person_id", {2: "Q0"}),
     ("overdoses.csv", "'person_id'", "row 2", "not in persons.csv")),
    ("unknown medication",
     lambda d: set_cells(d, "treatment_episodes", "medication", {4: "Methadone"}),
     ("treatment_episodes.csv", "'medication'", "row 4", "is not one of")),
    ("unknown region",
     lambda d: set_cells(d, "persons", "region", {2: "Oslo"}),
     ("persons.csv", "'region'", "row 2", "is not one of")),
    ("date in the wrong format",
     lambda d: set_cells(d, "treatment_episodes", "start_date", {5: "01.01.2016"}),
     ("treatment_episodes.csv", "'start_date'", "row 5", "not an ISO 8601 calendar date")),
    ("date with a time of day",
     lambda d: set_cells(d, "charges", "charge_date", {2: "2021-01-02 00:00:00"}),
     ("charges.csv", "'charge_date'", "row 2", "not an ISO 8601 calendar date")),
    ("impossible death date",
     lambda d: set_cells(d, "deaths", "death_date", {1: "2024-02-30"}),
     ("deaths.csv", "'death_date'", "row 1", "not an ISO 8601 calendar date")),
    ("missing start date",
     lambda d: set_cells(d, "treatment_episodes", "start_date", {2: ""}),
     ("treatment_episodes.csv", "'start_date'", "row 2", "missing value")),
    ("stay ending before it starts",
     lambda d: append_rows(d, "incarcerations", [{"person_id": "Q1", "start_date": "2024-06-01",
                                                  "end_date": "2024-05-31"}]),
     ("incarcerations.csv", "'end_date'", "row 1", "ends before it starts")),
    ("two status forms on one date",
     lambda d: append_rows(d, "assessments", [{"person_id": "Q1",
                                               "assessment_date": "2022-06-15"}]),
     ("assessments.csv", "'assessment_date'", "row 1", "row 7")),
    ("extract_date before history_start",
     lambda d: set_meta(d, extract_date="2020-05-31"),
     ("extract.yml", "'history_start'", "after the extract date 2020-05-31")),
    ("contract_version 3",
     lambda d: set_meta(d, contract_version=3),
     ("extract.yml", "'contract_version'", "3 is not a contract version")),
    ("contract_version forgotten",
     lambda d: set_meta(d, contract_version=None),
     ("persons.csv", "'group' is absent", "contract_version: 2")),
    ("version-1 column in persons",
     lambda d: write_text_table(read_text_table(d, "persons").assign(group="OST"), d, "persons"),
     ("persons.csv", "'group' belongs to contract version 1")),
    ("missing episode table", _drop("treatment_episodes"),
     ("treatment_episodes: required table missing",)),
    ("missing death table", _drop("deaths"), ("deaths: required table missing",)),
    ("missing charge table", _drop("charges"), ("charges: required table missing",)),
    ("missing column of persons",
     lambda d: drop_columns(d, "persons", ["region"]),
     ("persons.csv", "required column 'region' is absent")),
    ("missing column of an optional table",
     lambda d: drop_columns(d, "assessments", ["assessment_date"]),
     ("assessments.csv", "required column 'assessment_date' is absent")),
    ("empty file", _bytes("deaths", b""), ("deaths.csv", "empty file")),
    ("not UTF-8",
     _bytes("charges", "person_id,charge_date,offence\nQ1,2021-02-02,r\xf8veri\n".encode("latin-1")),
     ("charges.csv", "not UTF-8")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "edit", "fragments"), BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_extract_exits_2_with_one_line_and_writes_nothing(
    no_mi_config, tmp_path, case, edit, fragments
):
    data = copy_extract(EXAMPLE, tmp_path / "extract")
    edit(data)
    out = tmp_path / "results"
    status, lines = cli(no_mi_config, data, out)
    assert_stopped(status, lines, out, *fragments)


def test_broken_extract_leaves_a_previous_results_folder_untouched(unusual, no_mi_config, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(unusual["out"], out)
    before = tree_hash(out)
    data = copy_extract(unusual["data"], tmp_path / "extract")
    set_cells(data, "treatment_episodes", "medication", {7: "heroin"})
    status, lines = cli(no_mi_config, data, out)
    assert status == 2 and len(lines) == 1, lines
    assert "treatment_episodes.csv, column 'medication'" in lines[0] and "row 7" in lines[0]
    assert tree_hash(out) == before
    assert not list(tmp_path.glob(".results*"))
    # a valid extract on which the study cannot be done leaves it untouched too
    data = copy_extract(unusual["data"], tmp_path / "valid")
    set_meta(data, history_start="2025-06-01")
    status, lines = cli(no_mi_config, data, out)
    assert status == 2 and lines[0].startswith("error: the study cannot be done"), lines
    assert tree_hash(out) == before
    assert not list(tmp_path.glob(".results*"))


# ------------------------------------------------- valid readings the contract leaves open
def test_overlapping_episodes_and_late_deaths_are_valid(tmp_path):
    """The contract forbids neither overlapping episodes nor a death after the extract
    date (registries with different lags): both are read; the overlap is merged and the
    late death censors at the extract date (and is noted)."""
    data = copy_extract(EXAMPLE, tmp_path / "extract")
    append_rows(data, "treatment_episodes", [{**EPISODE, "medication": "buprenorphine"}])
    set_cells(data, "deaths", "death_date", {1: "2026-01-05"})  # Q3, extract date 2025-12-31
    history = read_extract(data)
    assert any(n.startswith("deaths: 1 row dated after extract_date") for n in history.notes)
    table = derive_risk_sets(history).table.set_index(["index_date", "person_id"])
    q3 = table.loc[(pd.Timestamp("2023-01-02"), "Q3")]
    assert (q3["prior_ost_spells"], q3["days_in_ost_last_year"]) == (1, 365)
    assert (q3["died"], q3["followup_end"]) == (0, pd.Timestamp("2025-12-31"))
    assert table.loc[(pd.Timestamp("2024-03-01"), "Q3"), "role"] == "candidate"


def test_an_extract_without_ost_episodes_gives_risk_sets(tmp_path):
    """No OST episode anywhere (the merged OST intervals are empty): every initiator is
    excluded as not in OST in the week before, in whole and in pieces."""
    from analysis.data.risk_sets import iter_risk_sets

    data = copy_extract(EXAMPLE, tmp_path / "extract")
    episodes = read_text_table(data, "treatment_episodes")
    write_text_table(episodes[episodes["medication"] == HAT], data, "treatment_episodes")
    history = read_extract(data)
    sets = derive_risk_sets(history, not_eligible=False)
    assert set(sets.initiators["reason"]) == {"not in OST in the week before"}
    assert (sets.table["role"] == "excluded initiator").all()
    pieces = list(iter_risk_sets(history, not_eligible=False, max_rows=1))
    assert sum(len(p.table) for p in pieces) == len(sets.table)
