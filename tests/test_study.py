"""Whole-study behaviour: the contract's output, invariance, reproducibility, truth."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.contract import PRIMARY_OUTCOMES
from analysis.extract import read_extract
from evaluation.config import load_config
from evaluation.pipeline import run_study
from evaluation.results_folder import dumps
from tests.study_helpers import estimates, study_on_scenario


@pytest.fixture(scope="module")
def ci_study(tmp_path_factory):
    return study_on_scenario(tmp_path_factory.mktemp("ci"), "ci", seed=11)


def test_results_follow_the_contract(ci_study):
    study, _ = ci_study
    results = json.loads(dumps(study.results))
    assert results["schema_version"] == 1
    assert set(results["cohort"]) >= {"n_hat", "n_ost", "n_hat_matched", "n_ost_matched"}
    primaries = [e for e in results["estimates"] if e["primary"]]
    assert sorted(e["outcome"] for e in primaries) == sorted(PRIMARY_OUTCOMES)
    for e in results["estimates"]:
        assert {"outcome", "measure", "method", "estimate", "ci_low", "ci_high", "p_value"} <= set(
            e
        )
        assert "truth" in e
        if e["estimate"] is not None:
            assert e["ci_low"] <= e["estimate"] <= e["ci_high"]
    assert all(e["truth"] is not None for e in primaries)


def test_csv_parquet_and_shuffled_rows_give_identical_results(ci_study, tmp_path):
    study, data = ci_study
    parquet, _ = study_on_scenario(tmp_path, "ci", seed=11, fmt="parquet")
    assert dumps(parquet.results) == dumps(study.results)

    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    rng = np.random.default_rng(0)
    for path in data.iterdir():
        if path.suffix == ".csv":
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            df = df.iloc[rng.permutation(len(df))]
            df.to_csv(shuffled / path.name, index=False)
        else:
            (shuffled / path.name).write_bytes(path.read_bytes())
    again = run_study(read_extract(shuffled), load_config(seed=11))
    assert dumps(again.results) == dumps(study.results)


def test_same_seed_same_bytes(ci_study):
    study, data = ci_study
    again = run_study(read_extract(data), load_config(seed=11))
    assert dumps(again.results) == dumps(study.results)


def test_no_truth_gives_null(ci_study, tmp_path):
    _, data = ci_study
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in data.iterdir():
        if path.name != "truth.json":
            (bare / path.name).write_bytes(path.read_bytes())
    study = run_study(read_extract(bare), load_config(seed=11))
    assert study.results["truth"] is None
    assert all(e["truth"] is None for e in study.results["estimates"])


@pytest.fixture(scope="module")
def default_studies(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("default")
    return [study_on_scenario(tmp, "default", seed=seed)[0] for seed in (1, 2)]


def test_matching_balances_every_covariate(default_studies):
    for study in default_studies:
        balance = study.tables["balance"]
        assert balance["smd_before"].abs().max() > 0.2  # the scenario is confounded
        worst = balance.loc[balance["smd_matched"].abs().idxmax()]
        assert abs(worst["smd_matched"]) < 0.1, worst.to_dict()


def _se(e: dict) -> float:
    return (math.log(e["ci_high"]) - math.log(e["ci_low"])) / (2 * 1.959963984540054)


def test_primary_estimates_recover_the_truth(default_studies):
    """Every primary estimate within 3 SE of the ATT truth (log scale), on two seeds."""
    for study in default_studies:
        for e in study.results["estimates"]:
            if e["primary"]:
                z = (math.log(e["estimate"]) - math.log(e["truth"])) / _se(e)
                assert abs(z) < 3, (e["outcome"], e["estimate"], e["truth"], z)


def test_matched_design_is_closer_to_truth_than_naive(default_studies):
    """Summed over seeds, the matched estimates are nearer the truth than the naive ones.

    Mortality is left out: with about 130 deaths in the matched cohort the SE of its
    log HR (about 0.25) is as large as the naive bias, so two seeds cannot tell the
    designs apart (the Monte Carlo study does).
    """
    for outcome, model in (("retention", "cox"), ("crime", "nb")):
        err = {"matched": 0.0, "naive": 0.0}
        for study in default_studies:
            est = estimates(study)
            measure = "IRR" if model == "nb" else "HR"
            for design in err:
                e = est[(outcome, measure, f"{model}_{design}")]
                err[design] += abs(math.log(e["estimate"]) - math.log(e["truth"]))
        assert err["matched"] < err["naive"], (outcome, err)
    # the naive crime IRR misses the truth by several standard errors
    e = estimates(default_studies[0])[("crime", "IRR", "nb_naive")]
    assert abs(math.log(e["estimate"]) - math.log(e["truth"])) / _se(e) > 3


def test_matched_arms_carry_equal_weight(ci_study):
    """Control weights sum to the number of matched HAT persons (the ATT's 1:1 comparison)."""
    study, _ = ci_study
    table1 = study.tables["table1"]
    weights = table1[(table1["variable"] == "persons") & (table1["statistic"] == "sum of weights")]
    hat, ost = float(weights["HAT_matched"].iloc[0]), float(weights["OST_matched"].iloc[0])
    assert hat == study.results["cohort"]["n_hat_matched"]
    assert ost == pytest.approx(hat)
    assert study.results["cohort"]["n_ost_matched"] > hat  # 1:k with k > 1


def test_calendar_time_in_the_propensity_model_and_balance_table(ci_study, tmp_path):
    study, data = ci_study
    assert study.results["design"]["covariates"][-1] == "calendar_years"
    balance = study.tables["balance"].set_index("variable")
    assert {"calendar_years", "calendar_years_rcs1", "calendar_years_rcs2"} <= set(balance.index)
    assert balance.loc["calendar_years", "smd_matched"] == pytest.approx(0, abs=0.25)
    table1 = study.tables["table1"]
    assert (table1["variable"] == "calendar_years").any()
    off = run_study(read_extract(data), load_config(seed=11, calendar_time=False))
    assert "calendar_years" not in off.results["design"]["covariates"]
    assert not off.tables["balance"]["variable"].str.startswith("calendar_years").any()
