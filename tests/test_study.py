"""Whole-study behaviour: the contract's output, invariance, reproducibility, truth."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.data.cohort import calendar_years, derive_cohort
from analysis.data.contract import CALENDAR_COVARIATE, PRIMARY_OUTCOMES
from analysis.data.extract import read_extract
from analysis.design.propensity import fit_propensity
from analysis.outcomes.sensitivity import incidence_at_end
from evaluation import study_design
from evaluation.config import load_config
from evaluation.pipeline import build_designs, run_study
from evaluation.results_folder import dumps
from tests.study_helpers import NO_MI, estimates, study_on_scenario


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
    again = run_study(read_extract(shuffled), load_config(seed=11, **NO_MI))
    assert dumps(again.results) == dumps(study.results)


def test_same_seed_same_bytes(ci_study):
    study, data = ci_study
    again = run_study(read_extract(data), load_config(seed=11, **NO_MI))
    assert dumps(again.results) == dumps(study.results)


def test_no_truth_gives_null(ci_study, tmp_path):
    _, data = ci_study
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in data.iterdir():
        if path.name != "truth.json":
            (bare / path.name).write_bytes(path.read_bytes())
    study = run_study(read_extract(bare), load_config(seed=11, **NO_MI))
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


ABSOLUTE = {
    ("mortality", "RD_12m", "km_matched"),
    ("mortality", "RD_24m", "km_matched"),
    ("mortality", "RMST_diff", "rmst_matched"),
    ("overdose_mortality", "RD_12m", "aj_matched"),
    ("overdose_mortality", "RD_24m", "aj_matched"),
    ("retention", "RD_12m", "km_matched"),
    ("retention", "RD_24m", "km_matched"),
    ("retention", "RMST_diff", "rmst_matched"),
}


def test_absolute_measures_recover_the_truth(default_studies):
    """Risk differences at 12 and 24 months and RMST differences of every time-to-event
    outcome (secondary, on the matched design) within 3 SE of the ATT truth, on two seeds."""
    for study in default_studies:
        est = estimates(study)
        assert ABSOLUTE <= set(est)
        for key in ABSOLUTE:
            e = est[key]
            assert not e["primary"] and e["truth"] is not None, key
            assert e["details"]["definition"].count("HAT - OST") == 1, key
            assert e["ci_low"] < e["estimate"] < e["ci_high"], key
            z = (e["estimate"] - e["truth"]) / e["se"]
            assert abs(z) < 3, (key, e["estimate"], e["truth"], e["se"], z)
        # signs: HAT lowers mortality (risk differences below 0 in the truth) and keeps
        # patients in treatment
        assert est[("mortality", "RD_24m", "km_matched")]["truth"] < 0
        assert est[("retention", "RD_24m", "km_matched")]["truth"] > 0


def test_risk_time_beyond_followup_is_not_estimable(ci_study):
    """A horizon past the longest follow-up gives not-estimable absolute measures (with the
    reason), no truth for an estimand the generator does not define, and the study runs."""
    _, data = ci_study
    study = run_study(
        read_extract(data), load_config(seed=11, **NO_MI, risk_times_days=(730.5, 5000))
    )
    est = estimates(study)
    for outcome, method in (
        ("mortality", "km_matched"),
        ("overdose_mortality", "aj_matched"),
        ("retention", "km_matched"),
    ):
        late = est[(outcome, "RD_5000d", method)]
        assert late["estimate"] is None and late["se"] is None, outcome
        assert late["details"]["note"].startswith("not estimable: time = 5000"), outcome
        assert late["truth"] is None
        assert est[(outcome, "RD_24m", method)]["estimate"] is not None
    assert ("mortality", "RD_12m", "km_matched") not in est
    assert ("retention", "RD_12m", "km_matched") in est  # from retention_time_days


def test_matched_design_is_closer_to_truth_than_naive(default_studies):
    """Summed over seeds, the matched estimates are nearer the truth than the naive ones.

    Mortality is left out: with about 130 deaths in the matched cohort the SE of its
    log HR (about 0.25) is as large as the naive bias, so two seeds cannot tell the
    designs apart (the Monte Carlo study does).
    """
    for outcome, model in (("retention", "cox"), ("crime", "rate")):
        err = {"matched": 0.0, "naive": 0.0}
        for study in default_studies:
            est = estimates(study)
            measure = "IRR" if model == "rate" else "HR"
            for design in err:
                e = est[(outcome, measure, f"{model}_{design}")]
                err[design] += abs(math.log(e["estimate"]) - math.log(e["truth"]))
        assert err["matched"] < err["naive"], (outcome, err)
    # the naive crime IRR misses the truth by several standard errors
    e = estimates(default_studies[0])[("crime", "IRR", "rate_naive")]
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


def _matched_sample(extract, config) -> pd.DataFrame:
    """The pipeline's primary (matched) design, rebuilt from its parts."""
    df = derive_cohort(extract, gap_days=config.gap_days).table
    df[CALENDAR_COVARIATE] = calendar_years(df["index_date"])
    ps = fit_propensity(
        df,
        treatment="treatment",
        covariates=config.propensity_covariates,
        transforms=study_design.TRANSFORMS,
        levels=study_design.LEVELS,
    )
    df = df.assign(ps=ps.score, ps_logit=ps.logit)
    return build_designs(df, config, propensity=ps)["matched"].data


def test_e_values_decide_rarity_from_the_cumulative_incidence(ci_study):
    """Hazard ratios: overall Kaplan-Meier incidence of the matched sample by the end of
    follow-up above 15% = common (converted); the rule and the incidence are recorded."""
    study, data = ci_study
    matched = _matched_sample(read_extract(data), load_config(seed=11))
    ev = {x["outcome"]: x for x in study.results["diagnostics"]["e_values"]}
    assert set(ev) == set(PRIMARY_OUTCOMES)
    retained = matched[matched["in_retention"]]
    for outcome, df, duration, event in (
        ("mortality", matched, "followup_days", "died"),
        ("retention", retained, "retention_days", "discontinued"),
    ):
        incidence = incidence_at_end(df, duration=duration, event=event, weights="weight")
        assert ev[outcome]["incidence"] == pytest.approx(incidence, rel=1e-12)
        assert ev[outcome]["rare"] is (incidence <= 0.15)
        assert f"{incidence:.3f}" in ev[outcome]["rare_rule"]
        conversion = "rare outcome" if incidence <= 0.15 else "common outcome"
        assert ev[outcome]["conversion"].startswith(conversion)
    assert ev["retention"]["rare"] is False  # most leave treatment within the follow-up
    assert ev["crime"]["rare"] is None and ev["crime"]["incidence"] is None
    assert ev["crime"]["rare_rule"] == "not needed: risk or rate ratio"


def test_before_after_crime_uses_the_same_at_risk_rules(ci_study, tmp_path):
    """Prison stays before index remove baseline person-time and the charges inside them
    from the before/after comparison, as after index; the propensity covariate
    ``baseline_charges`` still counts them, so the matched design is unchanged."""
    study, data = ci_study
    folder = tmp_path / "prison-before-index"
    folder.mkdir()
    for path in data.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    persons = pd.read_csv(data / "persons.csv", dtype=str, keep_default_na=False)
    index = pd.to_datetime(persons["index_date"])
    # every person in prison for the 364 days before the day before index
    before = pd.DataFrame(
        {
            "person_id": persons["person_id"],
            "start_date": (index - pd.Timedelta(days=365)).dt.strftime("%Y-%m-%d"),
            "end_date": (index - pd.Timedelta(days=1)).dt.strftime("%Y-%m-%d"),
        }
    )
    stays = pd.read_csv(data / "incarcerations.csv", dtype=str, keep_default_na=False)
    pd.concat([stays, before]).to_csv(folder / "incarcerations.csv", index=False)
    (folder / "truth.json").unlink(missing_ok=True)
    extract = read_extract(folder)
    config = load_config(seed=11, **NO_MI)
    again = run_study(extract, config)
    # the design (and so every follow-up estimate) is the same
    assert again.results["cohort"] == study.results["cohort"]
    ours = {(e["outcome"], e["measure"], e["method"]): e for e in again.results["estimates"]}
    theirs = estimates(study)
    assert (
        ours[("crime", "IRR", "rate_matched")]["estimate"]
        == theirs[("crime", "IRR", "rate_matched")]["estimate"]
    )
    # the pipeline's matched sample, rebuilt: weighted at-risk sums per group
    matched = _matched_sample(extract, config)
    assert (matched["baseline_prison_days"] == 364).all()
    w = matched["weight"]
    rates = again.tables["crime_rates"]
    base = rates[rates["period"].str.startswith("2 years before index")].set_index("group")
    did = ours[("crime", "ratio_of_rate_ratios", "poisson_matched")]["details"]["rates"]
    n_hat = study.results["cohort"]["n_hat_matched"]
    for group in ("HAT", "OST"):
        g = matched["group"] == group
        charges = float((w * matched["baseline_charges_at_risk"])[g].sum())
        years = float((w * matched["baseline_crime_years"])[g].sum())
        assert years == pytest.approx(n_hat * 366 / 365.25)  # 730 - 364 days, equal weights
        assert base.loc[group, "person_years"] == pytest.approx(years)
        assert base.loc[group, "events"] == pytest.approx(charges)
        assert did[group]["before"]["person_years"] == pytest.approx(years)
        assert did[group]["before"]["events"] == pytest.approx(charges)
        # charges in the new stays left the comparison but stay in the covariate
        assert charges < float((w * matched["baseline_charges"])[g].sum())


def test_calendar_time_in_the_propensity_model_and_balance_table(ci_study, tmp_path):
    study, data = ci_study
    assert study.results["design"]["covariates"][-1] == "calendar_years"
    balance = study.tables["balance"].set_index("variable")
    assert {"calendar_years", "calendar_years_rcs1", "calendar_years_rcs2"} <= set(balance.index)
    assert balance.loc["calendar_years", "smd_matched"] == pytest.approx(0, abs=0.25)
    table1 = study.tables["table1"]
    assert (table1["variable"] == "calendar_years").any()
    off = run_study(read_extract(data), load_config(seed=11, **NO_MI, calendar_time=False))
    assert "calendar_years" not in off.results["design"]["covariates"]
    assert not off.tables["balance"]["variable"].str.startswith("calendar_years").any()
