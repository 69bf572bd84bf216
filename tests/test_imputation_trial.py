"""Multiple imputation for history extracts: records per (person, form), the trial's MI path."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.data.extract import read_extract
from analysis.design.imputation import ImputationChain
from analysis.design.imputation_units import unit_table
from evaluation.config import StudyConfig
from evaluation.pipeline import run_study

# --------------------------------------------------------------------------- unit_table


def test_unit_table_one_record_per_unit_and_spread():
    df = pd.DataFrame(
        {"unit": [3, 1, 3, 2], "x": [np.nan, 1.0, np.nan, 0.0], "y": [1.0, 2.0, 5.0, 4.0],
         "t": [0, 0, 1, 0], "g": ["a", "b", "a", "a"]}
    )  # fmt: skip
    u = unit_table(df, unit="unit", impute=["x"], predictors=["y", "t", "g"], maximum=["t"])
    assert u.n_units == 3 and list(u.codes) == [2, 0, 2, 1]
    assert u.table["x"].tolist()[:2] == [1.0, 0.0] and np.isnan(u.table["x"].iloc[2])
    # predictors: means over the unit's rows; t by its maximum; g as a 0/1 column
    assert u.table[list(u.predictors)].to_numpy().tolist() == [
        [2.0, 0.0, 1.0], [4.0, 0.0, 0.0], [3.0, 1.0, 0.0]
    ]  # fmt: skip
    chain = ImputationChain(values=pd.DataFrame({"x": [1.0, 0.0, 7.0]}), trace=pd.DataFrame())
    spread = u.spread(chain, df.index)
    assert spread.values["x"].tolist() == [7.0, 1.0, 7.0, 0.0]


def test_unit_table_refuses_values_that_differ_within_a_unit():
    df = pd.DataFrame({"unit": [1, 1], "x": [np.nan, 1.0], "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="differ within a unit"):
        unit_table(df, unit="unit", impute=["x"], predictors=["y"])
    df = pd.DataFrame({"unit": [1, 1], "x": [0.0, 1.0], "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match="differ within a unit"):
        unit_table(df, unit="unit", impute=["x"], predictors=["y"])
    with pytest.raises(ValueError, match="complete"):
        unit_table(df.assign(x=0.0, y=np.nan), unit="unit", impute=["x"], predictors=["y"])


# --------------------------------------------------------------------------- the trial


def _config(seed: int = 1, **imputation) -> StudyConfig:
    return StudyConfig.model_validate(
        {"seed": seed, "missing": "mi", "target_trial": {"contrasts": ["itt"]},
         "imputation": {"m": 2, "iterations": 2, "n_jobs": 1, **imputation}}
    )  # fmt: skip


@pytest.fixture(scope="module")
def ci_history(tmp_path_factory):
    from synthetic import generate_extract

    out = tmp_path_factory.mktemp("ci_mi") / "x"
    return read_extract(generate_extract("ci", out=out, seed=1, contract=2))


@pytest.fixture(scope="module")
def ci_mi(ci_history):
    return run_study(ci_history, _config())


def test_records_are_person_and_form(ci_history):
    from evaluation.target_trial import _risk_sets
    from evaluation.target_trial_mi import imputation_units

    config = _config()
    rs = _risk_sets(ci_history, config)
    frame = imputation_units(ci_history, rs, config)
    stacked, units = frame.stacked, frame.units
    assert "years_opioid_use" in frame.impute and "injecting" in frame.impute
    # far fewer records than stacked rows; each record one person
    assert units.n_units < len(stacked) / 3
    persons = stacked.groupby(units.codes)["person_id"].nunique()
    assert (persons == 1).all()
    # a completed table keeps every observed value and fills every missing one
    values = units.table[list(frame.impute)].fillna(0.5)
    done = frame.completed(values)
    for col in frame.impute:
        seen = stacked[col].notna()
        assert done[col].notna().all()
        assert done.loc[seen, col].equals(stacked.loc[seen, col])
    # years of opioid use: the record's value plus the years since the record's date
    miss = stacked["years_opioid_use"].isna().to_numpy()
    np.testing.assert_allclose(done["years_opioid_use"].to_numpy()[miss],
                               0.5 + frame.elapsed[miss])  # fmt: skip
    assert (frame.elapsed >= 0).all()


def test_trial_mi_document(ci_mi):
    res = ci_mi.results
    design = res["design"]
    assert design["primary"] == "matched_mi" and design["missing"]["method"] == "mi"
    prim = [e for e in res["estimates"] if e["primary"]]
    assert {(e["outcome"], e["method"], e["estimand"]) for e in prim} == {
        ("mortality", "cox_matched_mi", "itt"),
        ("retention", "cox_matched_mi", "itt"),
        ("crime", "rate_matched_mi", "itt"),
    }
    mi = [e for e in res["estimates"] if e["method"].endswith("_mi")]
    # the absolute measures are pooled too, on their own scale
    measures = {(e["outcome"], e["measure"]) for e in mi}
    assert {("mortality", "RD_12m"), ("retention", "RMST_diff"), ("crime", "IRR")} <= measures
    for e in mi:
        assert e["estimand"] == "itt" and e["truth"] is not None
        if e["estimate"] is not None:
            assert e["details"]["pooling"]["m"] == 2 and 0 <= e["details"]["pooling"]["fmi"] <= 1
    assert {f["method"] for f in design["missing"]["fmi"]} == {e["method"] for e in mi}
    info = design["designs"]["matched_mi"]["imputation"]
    assert info["n_records"] < info["n_rows"] and "injecting" in info["imputed"]
    assert {"missing", "balance_mi", "imputation_trace"} <= set(ci_mi.tables)
    ev = ci_mi.tables["disclosure_estimates"]
    assert (ev["design"] == "matched_mi").any()
    # the missing-indicator estimates stay, as the sensitivity estimates
    assert any(e["method"] == "cox_matched" and not e["primary"] for e in res["estimates"])
    assert {v["estimand"] for v in res["diagnostics"]["e_values"]} == {"itt"}


def test_trial_mi_same_seed_same_bytes_whatever_jobs(ci_history, ci_mi):
    again = run_study(ci_history, _config(n_jobs=2))
    assert json.dumps(again.results, sort_keys=True) == json.dumps(ci_mi.results, sort_keys=True)


def test_trial_mi_as_sensitivity(ci_history):
    config = _config().model_copy(
        update={"missing": "indicator", "imputation": _config().imputation.model_copy(
            update={"sensitivity": True})}
    )  # fmt: skip
    res = run_study(ci_history, config).results
    assert res["design"]["primary"] == "matched"
    prim = {e["method"] for e in res["estimates"] if e["primary"]}
    assert prim == {"cox_matched", "rate_matched"}
    assert any(e["method"] == "cox_matched_mi" for e in res["estimates"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 8])
def test_trial_mi_recovers_the_truth_with_many_missing_answers(tmp_path, seed):
    from synthetic import generate_extract

    folder = generate_extract("missing_forms", out=tmp_path / "x", seed=seed, contract=2)
    history = read_extract(folder)
    res = run_study(history, _config(seed, m=10, iterations=5, n_jobs=2)).results
    errors = history.truth.get("monte_carlo", {}).get("errors", {})
    frame = res["design"]["designs"]["matched_mi"]["imputation"]
    assert frame["n_records"] < frame["n_rows"]
    prim = [e for e in res["estimates"] if e["primary"]]
    assert {e["outcome"] for e in prim} == {"mortality", "retention", "crime"}
    for e in prim:
        assert e["method"].endswith("_matched_mi")
        if e["estimate"] is None:
            # the small scenario can have an arm without events in some imputations: fewer
            # than two estimable imputations leave the pooled estimate not estimable
            assert e["details"]["n_not_estimable"] > 0, e
            continue
        mc = (errors.get(f"itt/{e['outcome']}/{e['measure']}") or {}).get("mc_se") or 0.0
        z = (math.log(e["estimate"]) - math.log(e["truth"])) / math.hypot(e["se"], mc)
        assert abs(z) < 3, (e["outcome"], z)
