"""Simulation study: performance formulas, determinism across workers and Dask, resume.

The fast tests run the ``ci`` scenario with 2 settings x 2 replicates (about a second
each); the reference run is shared by the module. The Monte Carlo coverage check on the
default scenario (200 replicates, several minutes) is marked ``slow``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation import simulate as sim
from evaluation.replicates import replicate_seed
from evaluation.simulation_summary import model_se, performance, summarise, to_scale

SIZES = (60, 100)
REPLICATES = 2
SUMMARY_FILES = ("summary.csv", "summary.json")


def run_ci(out: Path, **kwargs) -> sim.Simulation:
    """The ``ci`` scenario, 2 settings x 2 replicates, seed 11."""
    kwargs.setdefault("jobs", 1)
    return sim.simulate(
        "ci", replicates=REPLICATES, n_hat=SIZES, seed=11, out=out, progress=False, **kwargs
    )


def same_summary(a: Path, b: Path) -> None:
    for name in SUMMARY_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference simulation folder: one process."""
    out = tmp_path_factory.mktemp("sim") / "reference"
    run_ci(out, jobs=1)
    return out


# ----------------------------------------------------------------------------- formulas
def test_performance_on_hand_made_replicates():
    """Morris, White & Crowther (2019), Table 6, worked by hand on four replicates.

    estimates 0.1, -0.2, 0.3, 0.2 (truth 0): mean 0.1, deviations 0, -0.3, 0.2, 0.1, sum of
    squares 0.14; model SEs 0.2, 0.1, 0.2, 0.1 (v = 0.04, 0.01, 0.04, 0.01: mean 0.025,
    sample variance 4 x 0.015^2 / 3 = 0.0003); Wald 95% limits est ± 1.96 se hold 0 in
    replicates 1 and 3; p-values 0.6, 0.04, 0.05, 0.001 (p < 0.05 in 2 and 4).
    """
    est = np.array([0.1, -0.2, 0.3, 0.2])
    se = np.array([0.2, 0.1, 0.2, 0.1])
    z = 1.96
    p = performance(
        est,
        truth=0.0,
        se=se,
        ci_low=est - z * se,
        ci_high=est + z * se,
        p_value=[0.6, 0.04, 0.05, 0.001],
    )
    assert p["n_estimates"] == p["n_se"] == p["n_ci"] == p["n_p"] == 4
    assert p["bias"] == pytest.approx(0.1)
    assert p["bias_mcse"] == pytest.approx(math.sqrt(0.14 / 12))  # 0.10801
    assert p["empse"] == pytest.approx(math.sqrt(0.14 / 3))  # 0.21602
    assert p["empse_mcse"] == pytest.approx(math.sqrt(0.14 / 3) / math.sqrt(6))  # 0.08819
    # (est - truth)^2 = 0.01, 0.04, 0.09, 0.04: mean 0.045; squared deviations sum to 0.0033
    assert p["mse"] == pytest.approx(0.045)
    assert p["mse_mcse"] == pytest.approx(math.sqrt(0.0033 / 12))  # 0.01658
    assert p["modse"] == pytest.approx(math.sqrt(0.025))  # 0.15811
    assert p["modse_mcse"] == pytest.approx(math.sqrt(0.0003 / (4 * 4 * 0.025)))  # 0.02739
    ratio = math.sqrt(0.025) / math.sqrt(0.14 / 3)
    assert p["relerr_modse"] == pytest.approx(100 * (ratio - 1))  # -26.81
    assert p["relerr_modse_mcse"] == pytest.approx(
        100 * ratio * math.sqrt(0.0003 / (4 * 4 * 0.025**2) + 1 / 6)  # 32.46
    )
    assert p["coverage"] == 0.5 and p["coverage_mcse"] == pytest.approx(0.25)
    assert p["power"] == 0.5 and p["power_mcse"] == pytest.approx(0.25)  # p = 0.05 not < 0.05


def test_performance_leaves_out_missing_values():
    p = performance(
        [0.1, np.nan, 0.3], truth=0.2, se=[0.1, 0.1, np.nan], p_value=[0.01, np.nan, 0.5]
    )
    assert (p["n_estimates"], p["n_se"], p["n_p"]) == (2, 2, 2)
    assert p["bias"] == pytest.approx(0.0)
    assert p["power"] == 0.5
    one = performance([0.1], truth=0.0)
    assert one["bias"] == pytest.approx(0.1) and math.isnan(one["empse"])


def test_scales_and_model_se_from_interval():
    assert to_scale([math.e, 0.0], "HR").tolist() == [1.0, -math.inf]
    assert to_scale([-3.0], "RD_12m").tolist() == [-3.0]
    se = model_se([0.5], [2.0], "HR", alpha=0.05)
    assert se[0] == pytest.approx(math.log(4) / (2 * 1.959964), rel=1e-6)
    assert model_se([-10.0], [30.0], "RMST_diff")[0] == pytest.approx(40 / (2 * 1.959964), 1e-6)


def _record(n_hat: int, i: int, estimates: list[dict] | None) -> dict:
    return {
        "setting": {"name": f"n_hat-{n_hat}", "n_hat": n_hat, "n_ost": 1000},
        "replicate": i,
        "status": "failed" if estimates is None else "ok",
        "estimates": estimates or [],
    }


def test_summarise_counts_failures_and_uses_the_log_scale():
    def hr(est, lo, hi, p):
        return {"outcome": "mortality", "measure": "HR", "method": "cox_matched",
                "primary": True, "estimate": est, "ci_low": lo, "ci_high": hi,
                "p_value": p}  # fmt: skip

    records = [
        _record(50, 2, None),  # failed
        _record(50, 0, [hr(0.5, 0.25, 1.0, 0.04)]),
        _record(50, 1, [hr(1.0, 0.55, 2.2, 0.5)]),  # same width, misses 0.5
        _record(50, 3, [hr(None, None, None, None)]),  # not estimable
    ]
    out = summarise(list(reversed(records)), truth={("mortality", "HR"): 0.5})
    (row,) = out.to_dict(orient="records")
    assert (row["n_replicates"], row["n_failed"], row["n_missing"]) == (4, 1, 1)
    assert row["n_estimates"] == 2 and row["scale"] == "log" and row["primary"]
    assert row["truth"] == pytest.approx(math.log(0.5))
    assert row["bias"] == pytest.approx(math.log(2) / 2)  # mean(log 0.5, log 1) - log 0.5
    assert row["coverage"] == 0.5  # only (0.25, 1.0) holds 0.5
    assert row["modse"] == pytest.approx(math.log(4) / (2 * 1.959964), rel=1e-6)
    assert row["power"] == 0.5


# ----------------------------------------------------------------------------- seeds
def test_replicate_seed_is_a_spawned_child():
    child = np.random.SeedSequence(5).spawn(101)[100].spawn(8)[7]
    assert np.array_equal(replicate_seed(5, 100, 7).generate_state(4), child.generate_state(4))
    assert not np.array_equal(
        replicate_seed(5, 100, 7).generate_state(4),
        replicate_seed(5, 60, 7).generate_state(4),
    )


# ----------------------------------------------------------------------------- runs
def test_reference_folder(reference: Path):
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["replicates_run"] == len(SIZES) * REPLICATES
    assert manifest["n_failed"] == 0
    for n in SIZES:
        files = sorted((reference / "replicates" / f"n_hat-{n}").glob("*.json"))
        assert [f.name for f in files] == ["0000.json", "0001.json"]
        rec = json.loads(files[0].read_text())
        assert rec["status"] == "ok" and rec["cohort"]["n_hat"] <= n
        keys = {(e["outcome"], e["measure"], e["method"]) for e in rec["estimates"]}
        assert {("mortality", "HR", "cox_iptw"), ("retention", "RD_12m", "km_matched")} <= keys
        assert all(e["truth"] is not None for e in rec["estimates"])
    summary = pd.read_csv(reference / "summary.csv")
    primary = summary[summary["primary"]]
    assert sorted(set(primary["outcome"])) == ["crime", "mortality", "retention"]
    assert set(summary["n_hat"]) == set(SIZES)
    designs = {"matched", "iptw", "matched_caliper0.1", "matched_1to1", "naive"}
    assert set(summary["design"]) == designs
    document = json.loads((reference / "summary.json").read_text())
    assert [s["n_replicates"] for s in document["settings"]] == [REPLICATES] * len(SIZES)


def test_same_summary_with_two_workers(reference: Path, tmp_path: Path):
    run_ci(tmp_path / "joblib", jobs=2)
    same_summary(reference, tmp_path / "joblib")


def test_same_summary_on_a_dask_cluster(reference: Path, tmp_path: Path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        result = run_ci(tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert result.manifest["execution"]["backend"] == "dask"
    same_summary(reference, tmp_path / "dask")


def test_resume_runs_only_missing_replicates(reference: Path, tmp_path: Path):
    out = tmp_path / "resumed"
    shutil.copytree(reference, out)
    for name in (*SUMMARY_FILES, "manifest.json"):
        (out / name).unlink()
    (out / "replicates" / "n_hat-100" / "0001.json").unlink()  # interrupted here
    (out / "replicates" / "n_hat-100" / ".0001.json.123.tmp").write_text("{partial")
    result = run_ci(out)
    assert (result.manifest["replicates_run"], result.manifest["replicates_reused"]) == (1, 3)
    assert not list(out.glob("replicates/*/.*.tmp"))
    same_summary(reference, out)


def test_folder_of_another_study_is_refused(reference: Path, tmp_path: Path):
    out = tmp_path / "other"
    shutil.copytree(reference / "replicates", out / "replicates")
    with pytest.raises(sim.SimulationError, match="another simulation study"):
        sim.simulate("ci", replicates=1, n_hat=SIZES, seed=12, out=out, progress=False)


def test_out_on_a_file_is_refused_with_exit_2(tmp_path: Path):
    f = tmp_path / "notes.txt"
    f.write_text("keep me", encoding="utf-8")
    code = sim.main(["--scenario", "ci", "--replicates", "1", "--out", str(f), "--quiet"])
    assert code == 2
    assert f.read_text(encoding="utf-8") == "keep me"


def test_failed_replicates_are_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import evaluation.pipeline as pipeline

    real = pipeline.run_study
    calls = []

    def flaky(extract, config, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise pipeline.StudyError("nobody could be matched")
        return real(extract, config, **kwargs)

    monkeypatch.setattr(pipeline, "run_study", flaky)
    result = sim.simulate(
        "ci", replicates=2, n_hat=[80], seed=3, out=tmp_path, jobs=1, progress=False
    )
    rec = json.loads((tmp_path / "replicates" / "n_hat-80" / "0000.json").read_text())
    assert rec["status"] == "failed"
    assert rec["error"]["type"] == "StudyError" and "matched" in rec["error"]["message"]
    assert (result.summary["n_failed"] == 1).all() and (result.summary["n_replicates"] == 2).all()
    assert (result.summary.loc[result.summary["primary"], "n_estimates"] == 1).all()
    document = json.loads((tmp_path / "summary.json").read_text())
    assert document["settings"][0]["failures"][0]["replicate"] == 0
    assert result.manifest["n_failed"] == 1


def test_all_replicates_failing_still_gives_a_summary(tmp_path, monkeypatch):
    import importlib

    module = importlib.import_module("synthetic.generate")  # `synthetic.generate` is the function

    def broken(*args, **kwargs):
        raise RuntimeError("generator broke")

    monkeypatch.setattr(module, "generate", broken)
    result = sim.simulate("ci", replicates=2, n_hat=[50], out=tmp_path, jobs=1, progress=False)
    assert result.summary.empty and result.manifest["n_failed"] == 2
    document = json.loads((tmp_path / "summary.json").read_text())
    assert [f["message"] for f in document["settings"][0]["failures"]] == ["generator broke"] * 2


def test_command_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture):
    code = sim.main(["--scenario", "nope", "--replicates", "1", "--out", str(tmp_path)])
    assert code == 2 and "unknown scenario" in capsys.readouterr().err
    code = sim.main(["--replicates", "0", "--out", str(tmp_path), "--quiet"])
    assert code == 2 and "--replicates" in capsys.readouterr().err
    assert sim.main(["report", str(tmp_path / "missing")]) == 1


def test_report_builds_from_the_folder(reference: Path, tmp_path: Path):
    html = sim.build_report(reference, output_dir=tmp_path / "book")
    text = (html / "summary.html").read_text(encoding="utf-8")
    summary = pd.read_csv(reference / "summary.csv")
    row = summary[summary["primary"] & (summary["outcome"] == "crime")].iloc[-1]
    assert f"{100 * row['power']:.1f}%" in text
    assert "n_hat = 60" in text and "n_hat = 100" in text
    assert (html / "performance.html").is_file() and (html / "methods.html").is_file()


# ----------------------------------------------------------------------------- Monte Carlo
@pytest.mark.slow
def test_primary_coverage_on_the_default_scenario(tmp_path: Path):
    """200 replicates of the default scenario: each primary 95% CI covers 92-98%.

    About 4 minutes on two cores. ``HAT_SIMULATION_COVERAGE_DIR`` may name a folder of the
    same study (``python -m evaluation.simulate --scenario default --replicates 200``, default
    seed and configuration): its replicates are copied and reused, not run again.
    """
    reuse = os.environ.get("HAT_SIMULATION_COVERAGE_DIR")
    if reuse:
        shutil.copytree(Path(reuse) / "replicates", tmp_path / "replicates")
    result = sim.simulate("default", replicates=200, out=tmp_path, jobs=2, progress=False)
    primary = result.summary[result.summary["primary"]]
    assert len(primary) == 3
    assert (primary["n_failed"] == 0).all() and (primary["n_estimates"] == 200).all()
    for row in primary.itertuples():
        assert 0.92 <= row.coverage <= 0.98, (row.outcome, row.coverage, row.coverage_mcse)


# ----------------------------------------------------------------------------- history (contract 2)
HISTORY_REPLICATES = 2
#: the ci history scenario's study with a short per-protocol bootstrap (fast tests)
HISTORY_CONFIG = {"target_trial": {"per_protocol": {"bootstrap": 10}}}


def run_history(out: Path, **kwargs) -> sim.Simulation:
    """The ``ci`` history scenario, 2 replicates, seed 5, 10 per-protocol bootstrap replicates."""
    from evaluation.config import StudyConfig

    kwargs.setdefault("jobs", 1)
    kwargs.setdefault("replicates", HISTORY_REPLICATES)
    return sim.simulate(
        "ci",
        contract=2,
        seed=5,
        out=out,
        progress=False,
        config=StudyConfig.model_validate(HISTORY_CONFIG),
        **kwargs,
    )


@pytest.fixture(scope="module")
def history_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim2") / "reference"
    run_history(out)
    return out


def test_history_replicates_are_target_trials(history_reference: Path):
    manifest = json.loads((history_reference / "manifest.json").read_text())
    assert manifest["contract"] == 2 and manifest["n_failed"] == 0
    assert manifest["seeding"].endswith("spawn_key=(0, i))")
    steps = manifest["timings_seconds"]["mean_per_replicate"]
    assert {"generate", "extract", "step:risk-set matching", "step:per-protocol effects"} <= set(
        steps
    )
    files = sorted((history_reference / "replicates" / "scale-0.25").glob("*.json"))
    assert [f.name for f in files] == ["0000.json", "0001.json"]
    rec = json.loads(files[0].read_text())
    assert rec["status"] == "ok" and rec["setting"]["n_hat"] is None
    assert rec["seed"]["spawn_key"] == [0, 0]
    assert (
        rec["cohort"]["n_risk_sets"] > 0 and rec["cohort"]["n_initiators"] >= rec["cohort"]["n_hat"]
    )
    assert rec["design"]["per_protocol"]["weights"]["mean"] > 0
    assert {e["estimand"] for e in rec["estimates"]} == {"itt", "per_protocol"}
    document = json.loads((history_reference / "summary.json").read_text())
    assert document["contract"] == 2 and document["settings"][0]["scale"] == 0.25
    truth = {(t["estimand"], t["outcome"], t["measure"]): t["value"] for t in document["truth"]}
    summary = pd.read_csv(history_reference / "summary.csv")
    main = summary[summary["estimand_primary"]]
    got = {(r.estimand, r.outcome, r.measure, r.method) for r in main.itertuples()}
    assert got == {
        ("itt", "mortality", "HR", "cox_matched"),
        ("itt", "retention", "HR", "cox_matched"),
        ("itt", "crime", "IRR", "rate_matched"),
        ("per_protocol", "mortality", "HR", "cox_ipcw"),
        ("per_protocol", "retention", "HR", "cox_ipcw"),
        ("per_protocol", "crime", "IRR", "rate_ipcw"),
    }
    for r in main.itertuples():  # each estimand against its own truth
        assert r.truth == pytest.approx(math.log(truth[(r.estimand, r.outcome, r.measure)]))
    assert (main["n_replicates"] == HISTORY_REPLICATES).all()
    assert main.loc[main["estimand"] == "itt", "primary"].all()
    assert not main.loc[main["estimand"] == "per_protocol", "primary"].any()
    with pytest.raises(sim.ReportBuildError, match="history study"):
        sim.build_report(history_reference)


def test_history_resume_and_same_seed_same_bytes(history_reference: Path, tmp_path: Path):
    out = tmp_path / "resumed"
    shutil.copytree(history_reference, out)
    for name in (*SUMMARY_FILES, "manifest.json"):
        (out / name).unlink()
    (out / "replicates" / "scale-0.25" / "0001.json").unlink()  # interrupted here
    result = run_history(out)
    assert (result.manifest["replicates_run"], result.manifest["replicates_reused"]) == (1, 1)
    same_summary(history_reference, out)
    # the replicate run again is the same, but for its timings
    a, b = (
        json.loads((d / "replicates" / "scale-0.25" / "0001.json").read_text())
        for d in (history_reference, out)
    )
    assert {**a, "seconds": None} == {**b, "seconds": None}


def test_history_replicate_takes_the_truth_from_its_task(
    history_reference: Path, monkeypatch: pytest.MonkeyPatch
):
    """Workers never compute the (slow) truth: it travels in the task."""
    import synthetic.history_truth as history_truth
    from evaluation.config import StudyConfig
    from evaluation.replicates import ReplicateTask, Setting, run_replicate
    from synthetic.history_spec import load_history_scenario

    def refuse(*args, **kwargs):
        raise AssertionError("the truth was computed in a replicate")

    monkeypatch.setattr(history_truth, "_compute", refuse)
    monkeypatch.setattr(history_truth, "compute_history_truth", refuse)
    spec = load_history_scenario("ci")
    truth = {"estimands": [{"estimand": "itt", "outcome": "crime", "measure": "IRR",
                            "value": 0.5, "definition": "given"}]}  # fmt: skip
    task = ReplicateTask(
        spec=spec,
        config=StudyConfig.model_validate(HISTORY_CONFIG),
        truth=truth,
        setting=Setting(None, None, scale=spec.scale),
        replicate=0,
        seed=5,
        fingerprint="test",
    )
    rec = run_replicate(task)
    assert rec["status"] == "ok", rec["error"]
    crime = [e for e in rec["estimates"] if (e["outcome"], e["measure"]) == ("crime", "IRR")]
    # the primary design's ITT estimate takes the given truth (the naive and grace-period
    # comparisons estimate other quantities and carry none)
    assert {e["truth"] for e in crime if e["method"] == "rate_matched"} == {0.5}
    assert {e["truth"] for e in crime if e["estimand"] == "per_protocol"} == {None}
    reference = json.loads(
        (history_reference / "replicates" / "scale-0.25" / "0000.json").read_text()
    )
    assert [e["estimate"] for e in rec["estimates"]] == [
        e["estimate"] for e in reference["estimates"]
    ]


def test_history_options_refused(tmp_path: Path, capsys: pytest.CaptureFixture):
    with pytest.raises(sim.SimulationError, match="--n-hat belongs to contract 1"):
        sim.simulate("ci", contract=2, replicates=1, n_hat=[50], out=tmp_path, progress=False)
    code = sim.main(["--contract", "2", "--scenario", "nope", "--replicates", "1",
                     "--out", str(tmp_path)])  # fmt: skip
    assert code == 2 and "unknown history scenario" in capsys.readouterr().err


def test_summarise_by_estimand():
    def est(estimand, method, value, primary):
        return {"estimand": estimand, "outcome": "crime", "measure": "IRR", "method": method,
                "primary": primary, "estimate": value, "ci_low": value / 2,
                "ci_high": value * 2, "p_value": 0.1}  # fmt: skip

    rec = {
        "setting": {"name": "scale-1", "n_hat": None, "n_ost": None, "scale": 1.0},
        "replicate": 0,
        "status": "ok",
        "estimates": [
            est("itt", "rate_matched", 0.6, True),
            est("per_protocol", "rate_ipcw", 0.5, False),
            est("per_protocol", "nb_ipcw", 0.5, False),
            est("itt", "rate_naive", 0.9, False),
        ],
    }
    truth = {("itt", "crime", "IRR"): 0.6, ("per_protocol", "crime", "IRR"): 0.4}
    out = summarise([rec], truth=truth)
    rows = {(r.estimand, r.method): r for r in out.itertuples()}
    assert list(out["estimand"]) == ["itt", "itt", "per_protocol", "per_protocol"]
    assert rows[("itt", "rate_matched")].bias == pytest.approx(0.0)
    assert rows[("per_protocol", "rate_ipcw")].bias == pytest.approx(math.log(0.5 / 0.4))
    flagged = {k for k, r in rows.items() if r.estimand_primary}
    assert flagged == {("itt", "rate_matched"), ("per_protocol", "rate_ipcw")}
