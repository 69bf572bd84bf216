"""A simulation replicate's two roads to a validated extract, and the study's estimates scope.

The in-memory road (:func:`analysis.data.extract.extract_from_arrow`) must give the extract
that writing Parquet files and reading them back gives, and a replicate's record must not
depend on the road; ``run_study(..., scope="estimates")`` must give the full study's
estimates exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analysis.data.contract import HISTORY_TABLES, TABLES
from analysis.data.extract import ExtractError, extract_from_arrow, read_extract
from analysis.data.writing import _format_table, arrow_tables
from evaluation.config import StudyConfig
from evaluation.pipeline import run_study
from evaluation.replicates import EXTRACT_ROADS, ReplicateTask, Setting, run_replicate
from synthetic.generate import generate, in_memory, write
from synthetic.spec import load_scenario

TRUTH = {"estimands": [{"outcome": "mortality", "measure": "HR", "value": 0.7}]}


@pytest.fixture(scope="module")
def ci_tables():
    spec = load_scenario("ci")
    tables, _ = generate(spec, np.random.default_rng(3), truth=False)
    return spec, tables


def _same_extract(a, b) -> None:
    for table in (*HISTORY_TABLES, *TABLES):
        if not hasattr(a, table):
            continue
        x, y = a.table(table), b.table(table)
        if x is None or y is None:
            assert x is None and y is None, table
            continue
        pd.testing.assert_frame_equal(x, y, check_exact=True, obj=table)
    assert a.extract_date == b.extract_date
    assert a.description == b.description
    assert a.truth == b.truth
    assert type(a) is type(b)


def test_arrow_tables_are_the_parquet_files_tables(ci_tables):
    _, tables = ci_tables
    arrow = arrow_tables(tables)
    assert set(arrow) == {t for t in TABLES if tables.get(t) is not None}
    for table, data in arrow.items():
        assert data.equals(_format_table(tables[table], table, "parquet"), check_metadata=True)


def test_memory_road_gives_the_extract_files_give(ci_tables, tmp_path):
    spec, tables = ci_tables
    from_files = read_extract(write(tables, TRUTH, tmp_path / "x", spec=spec, format="parquet"))
    _same_extract(in_memory(tables, TRUTH, spec=spec), from_files)


def test_history_memory_road_gives_the_extract_files_give(tmp_path):
    from synthetic.history_generate import generate_history, history_in_memory, write_history
    from synthetic.history_spec import load_history_scenario

    spec = load_history_scenario("ci")
    tables, _ = generate_history(spec, np.random.default_rng(1), truth=False)
    path = write_history(tables, TRUTH, tmp_path / "h", spec=spec, format="parquet")
    memory = history_in_memory(tables, TRUTH, spec=spec)
    _same_extract(memory, read_extract(path))
    assert memory.history_start == read_extract(path).history_start


def test_memory_road_keeps_the_contract_rules(ci_tables):
    spec, tables = ci_tables
    arrow = arrow_tables(tables)
    with pytest.raises(ExtractError, match="required table missing"):
        extract_from_arrow({**arrow, "deaths": None}, extract_date=spec.extract_date)
    bad = arrow["persons"].set_column(
        arrow["persons"].column_names.index("sex"),
        "sex",
        pa.array(["X"] * arrow["persons"].num_rows),
    )
    with pytest.raises(ExtractError, match=r"persons \(in memory\).*sex"):
        extract_from_arrow({**arrow, "persons": bad}, extract_date=spec.extract_date)
    with pytest.raises(ExtractError, match="truth.json"):
        extract_from_arrow(arrow, extract_date=spec.extract_date, truth={"estimands": 3})


def _task(replicate: int) -> ReplicateTask:
    spec = load_scenario("ci")
    return ReplicateTask(
        spec=spec,
        config=StudyConfig(),
        truth=TRUTH,
        setting=Setting(n_hat=spec.n_hat, n_ost=spec.n_ost),
        replicate=replicate,
        seed=7,
        fingerprint="test",
    )


def test_a_replicate_does_not_depend_on_its_road():
    """The same record, estimate for estimate (exactly), through files or in memory."""
    records = {road: run_replicate(_task(0), road=road) for road in EXTRACT_ROADS}
    for record in records.values():
        assert record["status"] == "ok", record["error"]
        record.pop("seconds")
    files, memory = records["files"], records["memory"]
    assert json.dumps(files, sort_keys=True) == json.dumps(memory, sort_keys=True)
    assert len(memory["estimates"]) > 20
    with pytest.raises(ValueError, match="road"):
        run_replicate(_task(0), road="csv")


def test_the_estimates_scope_gives_the_full_study_estimates(ci_tables):
    spec, tables = ci_tables
    extract = in_memory(tables, TRUTH, spec=spec)
    # the full study's default adds the multiple-imputation sensitivity estimates, which a
    # replicate leaves out unless its configuration asks for them: compare without them
    config = StudyConfig(imputation={"sensitivity": False})
    full = run_study(extract, config)
    fast = run_study(extract, config, scope="estimates")
    assert fast.tables == {}
    assert set(fast.results) == {"schema_version", "cohort", "estimates", "truth"}
    assert fast.results["cohort"] == full.results["cohort"]
    assert len(fast.results["estimates"]) == len(full.results["estimates"])
    for a, b in zip(full.results["estimates"], fast.results["estimates"], strict=True):
        a = {**a, "details": {k: v for k, v in a["details"].items() if k != "ph_test"}}
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    with pytest.raises(ValueError, match="scope"):
        run_study(extract, config, scope="tables")


def test_the_manifest_names_the_road(tmp_path):
    from evaluation.simulate import simulate

    result = simulate("ci", replicates=1, n_hat=[60], seed=2, out=tmp_path, jobs=1, progress=False)
    road = result.manifest["execution"]["extract_road"]
    assert road.startswith("in memory") and road.endswith("data contract version 1")
    steps = result.manifest["timings_seconds"]["mean_per_replicate"]
    assert "step:balance" not in steps and "step:outcome models" in steps
