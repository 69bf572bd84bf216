"""The results folder is written atomically and deterministically."""

import json

import pandas as pd
import pytest

from evaluation.results_folder import dumps, hash_files, write_results_folder


def test_write_and_replace(tmp_path):
    out = tmp_path / "results"
    write_results_folder(
        out,
        results={"schema_version": 1, "x": float("nan")},
        manifest={"seed": 1},
        tables={"t": pd.DataFrame({"a": [1, 2]})},
    )
    assert json.loads((out / "results.json").read_text()) == {"schema_version": 1, "x": None}
    assert (out / "tables" / "t.csv").read_text() == "a\n1\n2\n"
    write_results_folder(out, results={"schema_version": 1, "x": 2}, manifest={})
    assert json.loads((out / "results.json").read_text())["x"] == 2
    assert not (out / "tables" / "t.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


class _Boom:
    def savefig(self, *args, **kwargs):
        raise RuntimeError("disk full")


def test_failure_leaves_previous_results_untouched(tmp_path):
    out = tmp_path / "results"
    write_results_folder(out, results={"schema_version": 1, "run": 1}, manifest={})
    with pytest.raises(RuntimeError, match="disk full"):
        write_results_folder(
            out, results={"schema_version": 1, "run": 2}, manifest={}, figures={"f": _Boom()}
        )
    assert json.loads((out / "results.json").read_text())["run"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_failure_on_first_run_leaves_nothing(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(RuntimeError):
        write_results_folder(out, results={}, manifest={}, figures={"f": _Boom()})
    assert list(tmp_path.iterdir()) == []


def test_dumps_is_deterministic_and_strict():
    assert dumps({"b": 1, "a": [1.5, float("inf")]}) == dumps({"b": 1, "a": [1.5, float("inf")]})
    assert '"a": [\n    1.5,\n    null\n  ]' in dumps({"b": 1, "a": [1.5, float("inf")]})


def test_hash_files_changes_with_content(tmp_path):
    (tmp_path / "a.csv").write_text("x\n1\n")
    h1 = hash_files(tmp_path)["sha256"]
    (tmp_path / "a.csv").write_text("x\n2\n")
    assert hash_files(tmp_path)["sha256"] != h1
