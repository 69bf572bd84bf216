"""``python -m evaluation.run`` under misuse: never lose a file, never show a traceback.

Each guarantee of the command line is tested here:

- ``--out`` may only name a new path, an empty folder or a results folder written
  earlier; anything else is refused with exit 2 before any work, and no file
  outside the new results folder is created, changed or deleted (a hash of the
  whole tree is compared before and after);
- every failure is one line on stderr with exit 2 (bad input), 130 / 143
  (Ctrl-C / SIGTERM) or 1 (a bug, with the traceback in a log file);
- no hidden sibling is left behind, the previous results folder stays intact
  after a failed or interrupted run, and two runs into one folder do not mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from evaluation.output_path import MARKER_KEY, PRODUCER, is_results_folder
from evaluation.run import main
from tests.extract_factory import copy_example

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- helpers
def tree_hash(root: Path, *, skip: Path | None = None) -> dict[str, str]:
    """Path -> content hash (``<dir>`` for folders) of everything under ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = f"<link {os.readlink(path)}>"
        elif path.is_dir():
            out[rel] = "<dir>"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


#: ``--config`` of the runs here, set by :func:`_without_imputation` (a test's own ``--config``
#: comes after it and wins)
STUDY_CONFIG: list[str] = []


@pytest.fixture(autouse=True)
def _without_imputation(no_mi_config, monkeypatch):
    """The command is tested here, not the multiple-imputation sensitivity analysis (on by
    default, m = 20 imputations per study): the runs switch it off."""
    monkeypatch.setattr(sys.modules[__name__], "STUDY_CONFIG", ["--config", str(no_mi_config)])


def run_main(capsys, *args: str) -> tuple[int, list[str]]:
    """Run the command in-process; return the exit status and the lines on stderr."""
    status = main(["--no-book", "--quiet", *STUDY_CONFIG, *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err.splitlines()


def assert_refused(status: int, lines: list[str], *fragments: str) -> None:
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_no_siblings(out: Path) -> None:
    assert not list(out.parent.glob(f".{out.name}.*")), list(out.parent.iterdir())


@pytest.fixture
def project(tmp_path, small_extract) -> Path:
    """``project/extract`` (a copy of the small extract) and a user's file beside it."""
    root = tmp_path / "project"
    shutil.copytree(small_extract, root / "extract")
    (root / "notes.txt").write_text("the user's own file\n")
    return root


# ------------------------------------------------------------- 1. where --out may go
def test_out_folder_that_is_not_a_results_folder_is_refused(capsys, project):
    documents = project / "documents"
    documents.mkdir()
    (documents / "thesis.docx").write_bytes(b"years of work")
    before = tree_hash(project)
    status, lines = run_main(capsys, "--data", str(project / "extract"), "--out", str(documents))
    assert_refused(status, lines, "not a results folder", "thesis.docx")
    assert tree_hash(project) == before


@pytest.mark.parametrize(
    ("out", "fragment"),
    [
        ("extract", "is the extract folder"),
        (".", "contains the extract folder"),
        ("..", "contains the extract folder"),
        ("extract/results", "inside the extract folder"),
    ],
)
def test_out_may_not_be_the_extract_contain_it_or_be_inside_it(capsys, project, out, fragment):
    before = tree_hash(project.parent)
    status, lines = run_main(
        capsys, "--data", str(project / "extract"), "--out", str(project / out)
    )
    assert_refused(status, lines, fragment)
    assert tree_hash(project.parent) == before


def test_out_naming_a_file_is_refused_and_leaves_nothing(capsys, project):
    target = project / "notes.txt"
    before = tree_hash(project)
    status, lines = run_main(capsys, "--data", str(project / "extract"), "--out", str(target))
    assert_refused(status, lines, "is a file")
    assert tree_hash(project) == before
    assert_no_siblings(target)


def test_out_below_a_file_is_refused(capsys, project):
    before = tree_hash(project)
    status, lines = run_main(
        capsys, "--data", str(project / "extract"), "--out", str(project / "notes.txt" / "r")
    )
    assert_refused(status, lines, "is a file, not a folder")
    assert tree_hash(project) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
def test_out_in_a_folder_that_cannot_be_written_is_refused(capsys, project):
    locked = project / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        status, lines = run_main(
            capsys, "--data", str(project / "extract"), "--out", str(locked / "results")
        )
    finally:
        locked.chmod(0o755)
    assert_refused(status, lines, "cannot write")


def test_out_in_a_folder_without_write_permission_is_refused_even_as_root(
    capsys, project, monkeypatch
):
    """The permission check, with ``os.access`` answering as for an ordinary user."""
    import evaluation.output_path

    locked = project / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(
        evaluation.output_path.os,
        "access",
        lambda path, mode: False if Path(path) == locked else real(path, mode),
    )
    before = tree_hash(project)
    status, lines = run_main(
        capsys, "--data", str(project / "extract"), "--out", str(locked / "a" / "results")
    )
    assert_refused(status, lines, "cannot write in", "locked")
    assert tree_hash(project) == before


def test_out_that_is_a_symbolic_link_is_refused(capsys, project, previous_results):
    link = project / "link"
    link.symlink_to(previous_results)
    before = tree_hash(previous_results)
    status, lines = run_main(capsys, "--data", str(project / "extract"), "--out", str(link))
    assert_refused(status, lines, "symbolic link")
    assert tree_hash(previous_results) == before


def test_out_containing_the_configuration_or_the_working_directory_is_refused(
    capsys, project, monkeypatch
):
    config = project / "study.yml"
    config.write_text("seed: 3\n")
    status, lines = run_main(
        capsys, "--data", str(project / "extract"), "--config", str(config), "--out", str(project)
    )
    assert_refused(status, lines)  # contains the extract, the configuration and notes.txt
    work = project / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    status, lines = run_main(capsys, "--data", str(project / "extract"), "--out", str(work))
    assert_refused(status, lines, "contains", "work")


def test_previous_results_folder_is_replaced_and_new_paths_and_empty_folders_work(
    capsys, project, previous_results
):
    out = project / "results"
    shutil.copytree(previous_results, out)
    status, lines = run_main(capsys, "--data", str(project / "extract"), "--out", str(out))
    assert status == 0, lines
    assert is_results_folder(out)
    assert_no_siblings(out)
    # a new path below folders that do not exist yet, and an empty folder
    nested = project / "a" / "b" / "results"
    assert run_main(capsys, "--data", str(project / "extract"), "--out", str(nested))[0] == 0
    empty = project / "empty"
    empty.mkdir()
    assert run_main(capsys, "--data", str(project / "extract"), "--out", str(empty))[0] == 0
    manifest = json.loads((empty / "manifest.json").read_text())
    assert manifest[MARKER_KEY]["producer"] == PRODUCER
    assert set(manifest[MARKER_KEY]["files"]) == {
        p.relative_to(empty).as_posix()
        for p in empty.glob("*/*")
        if p.parent.name not in ("book", "release")
    }


def test_results_folder_holding_a_users_file_is_refused(capsys, project, previous_results):
    out = project / "results"
    shutil.copytree(previous_results, out)
    (out / "my-notes.md").write_text("mine\n")
    (out / "tables" / "my-table.csv").write_text("a\n1\n")
    before = tree_hash(project)
    status, lines = run_main(capsys, "--data", str(project / "extract"), "--out", str(out))
    assert_refused(status, lines, "did not write", "my-notes.md", "tables/my-table.csv")
    assert tree_hash(project) == before


def test_parent_folders_created_for_a_failed_run_are_removed(capsys, project):
    bad = project / "extract"
    (bad / "persons.csv").write_text("person_id\n")  # required columns missing
    out = project / "new" / "deeper" / "results"
    before = tree_hash(project)
    status, lines = run_main(capsys, "--data", str(bad), "--out", str(out))
    assert_refused(status, lines, "persons.csv")
    assert tree_hash(project) == before


# --------------------------------------------------- 3. every failure is one line, exit 2
def test_empty_episode_table_runs_and_says_retention_is_not_estimable(capsys, project):
    episodes = project / "extract" / "treatment_episodes.csv"
    episodes.write_text("person_id,start_date,end_date,medication\n")
    out = project / "results"
    status, lines = run_main(capsys, "--data", str(project / "extract"), "--out", str(out))
    assert status == 0, lines
    assert any(line.startswith("not estimable: retention HR") for line in lines), lines
    results = json.loads((out / "results.json").read_text())
    primary = {e["outcome"]: e for e in results["estimates"] if e["primary"]}
    assert primary["retention"]["estimate"] is None
    assert primary["retention"]["details"]["note"]
    assert primary["mortality"]["estimate"] is not None


def test_episodes_all_ending_before_index_dates(capsys, project):
    path = project / "extract" / "treatment_episodes.csv"
    episodes = pd.read_csv(path, dtype=str)
    episodes["start_date"], episodes["end_date"] = "1990-01-01", "1990-06-30"
    episodes.to_csv(path, index=False)
    status, lines = run_main(
        capsys, "--data", str(project / "extract"), "--out", str(project / "results")
    )
    assert status == 0, lines
    assert any("retention" in line for line in lines), lines


def test_no_primary_estimable_exits_2_with_the_reason(capsys, project):
    data = project / "extract"
    persons = pd.read_csv(data / "persons.csv", dtype=str, keep_default_na=False)
    first_hat = persons.index[persons["group"] == "HAT"][0]
    persons = persons[(persons["group"] == "OST") | (persons.index == first_hat)]
    persons.to_csv(data / "persons.csv", index=False)
    for table in ("treatment_episodes", "deaths", "charges", "incarcerations"):
        df = pd.read_csv(data / f"{table}.csv", dtype=str, keep_default_na=False)
        df[df["person_id"].isin(persons["person_id"])].to_csv(data / f"{table}.csv", index=False)
    out = project / "results"
    status, lines = run_main(capsys, "--data", str(data), "--out", str(out))
    assert_refused(status, lines, "the study cannot be done")
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"estimands": 5}', "'estimands' must be a list"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"estimands": [{"outcome": "mortality", "measure": "HR", "value": "x"}]}', "number"),
        ("not json", "not valid JSON"),
    ],
)
def test_truth_file_not_written_by_the_generator_is_refused(capsys, project, content, fragment):
    (project / "extract" / "truth.json").write_text(content)
    status, lines = run_main(
        capsys, "--data", str(project / "extract"), "--out", str(project / "results")
    )
    assert_refused(status, lines, "truth.json", fragment)


def test_exact_matching_on_an_unknown_column_is_refused(capsys, project):
    config = project / "study.yml"
    config.write_text("matching:\n  exact: [region, postcode]\n")
    status, lines = run_main(
        capsys,
        "--data",
        str(project / "extract"),
        "--config",
        str(config),
        "--out",
        str(project / "results"),
    )
    assert_refused(status, lines, "matching.exact", "postcode")


def test_configuration_that_is_not_yaml_gives_file_line_and_column(capsys, project):
    config = project / "study.yml"
    config.write_text("seed: 1\nmatching: [k\n  caliper: 0.1\n")
    status, lines = run_main(capsys, "--config", str(config), "--out", str(project / "r"))
    assert_refused(status, lines, "study.yml", "line 3, column", "not valid YAML")


def test_unknown_scenario_and_scenario_with_data_are_refused(capsys, project):
    status, lines = run_main(capsys, "--scenario", "nowhere", "--out", str(project / "r"))
    assert_refused(status, lines, "unknown scenario 'nowhere'", "default")
    status, lines = run_main(
        capsys, "--scenario", "ci", "--data", str(project / "extract"), "--out", str(project / "r")
    )
    assert_refused(status, lines, "--scenario", "--data")


def test_unknown_option_is_one_line(capsys, project):
    with pytest.raises(SystemExit) as stop:
        main(["--outt", str(project / "r")])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_no_region_with_both_groups_is_explained(capsys, project):
    path = project / "extract" / "persons.csv"
    persons = pd.read_csv(path, dtype=str, keep_default_na=False)
    persons["region"] = persons["group"].map({"HAT": "south-east", "OST": "west"})
    persons.to_csv(path, index=False)
    status, lines = run_main(
        capsys, "--data", str(project / "extract"), "--out", str(project / "results")
    )
    assert_refused(status, lines, "both HAT and OST", "south-east", "west")


def test_ragged_csv_row_is_named_by_its_line(capsys, project):
    path = project / "extract" / "charges.csv"
    lines_ = path.read_text().splitlines()
    lines_[4] += ",surplus"
    path.write_text("\n".join(lines_) + "\n")
    status, lines = run_main(
        capsys, "--data", str(project / "extract"), "--out", str(project / "results")
    )
    assert_refused(status, lines, "charges.csv", "line 5", "different number of fields")


def test_internal_error_is_one_line_with_a_log_and_exit_1(capsys, project, monkeypatch):
    import evaluation.pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("deliberately broken for the test")

    monkeypatch.setattr(evaluation.pipeline, "run_study", broken)
    out = project / "results"
    status = main(["--no-book", "--quiet", "--data", str(project / "extract"), "--out", str(out)])
    lines = capsys.readouterr().err.splitlines()
    assert status == 1
    assert len(lines) == 1 and "this is a bug" in lines[0] and "deliberately broken" in lines[0]
    log = Path(lines[0].split("the log ")[1].split(";")[0])
    assert "Traceback" in log.read_text() and "RuntimeError" in log.read_text()
    log.unlink()
    assert not out.exists()
    assert_no_siblings(out)


# ------------------------------------------------------------------------- dates
@pytest.mark.parametrize("end", ["9999-12-31", "2262-04-12", "3000-01-01"])
def test_far_future_end_dates_are_valid_and_mean_ongoing(capsys, project, end):
    path = project / "extract" / "treatment_episodes.csv"
    episodes = pd.read_csv(path, dtype=str, keep_default_na=False)
    reference = project / "ref"
    open_episodes = episodes.copy()
    open_episodes.loc[open_episodes["end_date"] == "", "end_date"] = ""
    status, lines = run_main(capsys, "--data", str(project / "extract"), "--out", str(reference))
    assert status == 0, lines
    # an episode ending after the extract date is followed to the extract date, like an
    # open one: writing 9999-12-31 for every open episode changes no estimate
    episodes.loc[episodes["end_date"] == "", "end_date"] = end
    episodes.to_csv(path, index=False)
    out = project / "results"
    status, lines = run_main(capsys, "--data", str(project / "extract"), "--out", str(out))
    assert status == 0, lines

    def estimates(folder: Path) -> list:
        return json.loads((folder / "results.json").read_text())["estimates"]

    assert estimates(out) == estimates(reference)


def test_early_dates_and_a_late_extract_date_are_read(tmp_path):
    from analysis.data.extract import read_extract

    data = copy_example(tmp_path / "extract")
    (data / "extract.yml").write_text("extract_date: 2300-12-31\n")
    path = data / "treatment_episodes.csv"
    episodes = pd.read_csv(path, dtype=str, keep_default_na=False)
    episodes.loc[0, "start_date"] = "1600-01-01"
    episodes.to_csv(path, index=False)
    extract = read_extract(data)
    assert extract.extract_date == pd.Timestamp("2300-12-31")
    assert pd.Timestamp("1600-01-01") in set(extract.treatment_episodes["start_date"])


@pytest.mark.parametrize("time_of_day", ["13:45", "00:00"])
def test_parquet_timestamp_with_a_time_of_day_is_treated_as_in_csv(capsys, tmp_path, time_of_day):
    from analysis.data.extract import read_extract
    from analysis.data.validation import ExtractError

    data = copy_example(tmp_path / "extract")
    charges = pd.read_csv(data / "charges.csv", dtype=str, keep_default_na=False)
    as_csv = charges.copy()
    as_csv.loc[1, "charge_date"] = f"{charges.loc[1, 'charge_date']} {time_of_day}"
    as_csv.to_csv(data / "charges.csv", index=False)
    with pytest.raises(ExtractError) as csv_error:
        read_extract(data)
    (data / "charges.csv").unlink()
    stamps = pd.to_datetime(charges["charge_date"])
    stamps[1] = pd.Timestamp(f"{charges.loc[1, 'charge_date']} {time_of_day}")
    charges.assign(charge_date=stamps).to_parquet(data / "charges.parquet")
    if time_of_day == "00:00":  # a Parquet timestamp at midnight is a date
        assert len(read_extract(data).charges) == len(charges)
        return
    with pytest.raises(ExtractError) as parquet_error:
        read_extract(data)
    for error in (csv_error.value, parquet_error.value):
        assert error.column == "charge_date" and error.rows == [2]
        assert "13:45" in str(error) and "no time of day" in str(error)


# ------------------------------------------------------ 2. atomic, locked, interrupted
def test_stale_siblings_of_a_killed_run_are_cleaned_and_a_previous_folder_restored(
    capsys, project, previous_results
):
    out = project / "results"
    # a run killed between its two renames: the previous folder is aside, no folder in place
    shutil.copytree(previous_results, project / ".results.previous-999999")
    (project / ".results.partial-999998").mkdir()
    (project / ".results.lock").write_text("999998\n")
    bad = project / "extract"
    (bad / "extract.yml").write_text("description: no date\n")
    status, lines = run_main(capsys, "--data", str(bad), "--out", str(out))
    assert_refused(status, lines, "extract_date")
    assert is_results_folder(out)
    assert tree_hash(out) == tree_hash(previous_results)
    assert_no_siblings(out)


SLOW_RUN = """
import pathlib, sys, time
import evaluation.pipeline as pipeline
real = pipeline.run_study
started = pathlib.Path(sys.argv.pop(1))
def slow(*args, **kwargs):
    started.write_text("started")
    time.sleep(60)
    return real(*args, **kwargs)
pipeline.run_study = slow
from evaluation.run import main
sys.exit(main(sys.argv[1:]))
"""


def _start_slow_run(out: Path, data: Path, *, wait_for_study: bool = True) -> subprocess.Popen:
    """Start a run that sleeps before its study; return once it holds ``out`` (and, with
    ``wait_for_study``, once it reached the study, every module imported)."""
    started = out.parent.parent / f"{out.parent.name}-{out.name}.started"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SLOW_RUN,
            str(started),
            "--no-book",
            "--quiet",
            "--data",
            str(data),
            "--out",
            str(out),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(f".{out.name}.partial-*")) or (
        wait_for_study and not started.exists()
    ):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run did not start"
        time.sleep(0.1)
    return proc


@pytest.mark.parametrize("in_study", [True, False], ids=["in-study", "early"])
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_run_leaves_previous_folder_intact_and_nothing_else(
    project, previous_results, signum, status, in_study
):
    """Interrupted in the study, or early (while modules are still being imported)."""
    out = project / "results"
    shutil.copytree(previous_results, out)
    before = tree_hash(project)
    proc = _start_slow_run(out, project / "extract", wait_for_study=in_study)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert tree_hash(project) == before
    assert_no_siblings(out)


def test_second_run_into_the_same_folder_is_refused_while_the_first_runs(capsys, project):
    out = project / "results"
    first = _start_slow_run(out, project / "extract")
    try:
        status, lines = run_main(capsys, "--data", str(project / "extract"), "--out", str(out))
        assert_refused(status, lines, "another run", str(first.pid))
    finally:
        first.terminate()
        first.communicate(timeout=60)
    assert not out.exists()
    assert_no_siblings(out)
