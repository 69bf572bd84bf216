"""``python -m evaluation.run`` on bad input: exit status 2, a clear message, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.extract_factory import copy_example, set_cells


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "evaluation.run", "--no-book", "--quiet", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_bad_input(proc: subprocess.CompletedProcess, out: Path, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))


@pytest.mark.parametrize(
    ("table", "column", "row", "value", "fragments"),
    [
        ("persons", "index_date", 3, "2022-13-01", ("persons.csv", "'index_date'", "row 3")),
        ("persons", "group", 2, "HATT", ("persons.csv", "'group'", "row 2")),
        ("charges", "person_id", 1, "P99", ("charges.csv", "'person_id'", "row 1")),
        ("treatment_episodes", "end_date", 4, "2019-01-01", ("treatment_episodes.csv", "row 4")),
    ],
)
def test_bad_extract_exits_2_and_writes_nothing(tmp_path, table, column, row, value, fragments):
    data = copy_example(tmp_path / "extract")
    set_cells(data, table, column, {row: value})
    out = tmp_path / "results"
    proc = run_cli("--data", str(data), "--out", str(out), cwd=tmp_path)
    assert_bad_input(proc, out, *fragments)


def test_bad_extract_keeps_previous_results(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "results.json").write_text("{}")
    data = copy_example(tmp_path / "extract")
    set_cells(data, "persons", "sex", {1: "X"})
    proc = run_cli("--data", str(data), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2
    assert (out / "results.json").read_text() == "{}"


def test_missing_folder_and_bad_config_exit_2(tmp_path):
    out = tmp_path / "results"
    proc = run_cli("--data", str(tmp_path / "nowhere"), "--out", str(out), cwd=tmp_path)
    assert_bad_input(proc, out, "no such folder")
    config = tmp_path / "study.yml"
    config.write_text("matching:\n  calliper: 0.3\n")
    proc = run_cli("--config", str(config), "--out", str(out), cwd=tmp_path)
    assert_bad_input(proc, out, "unknown key 'matching.calliper'")
