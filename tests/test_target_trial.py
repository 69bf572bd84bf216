"""The emulated target trial on history extracts: risk-set matching, intention-to-treat and
per-protocol effects against the generator's truth, naive comparison off."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.data.extract import read_extract
from analysis.data.risk_sets import derive_risk_sets, eligibility_on, outcomes_from
from analysis.design.ipcw import censoring_weights, split_intervals
from analysis.design.risk_set_matching import risk_set_match
from analysis.outcomes.counting import cox_counting, km_counting
from evaluation.config import ConfigError, load_config
from evaluation.pipeline import run_study
from tests.study_helpers import NO_MI

EXAMPLE = Path(__file__).parent / "data" / "example-history"


@pytest.fixture(scope="module")
def example_sets():
    return derive_risk_sets(read_extract(EXAMPLE), not_eligible=False)


def _sets(matched) -> dict[str, list[str]]:
    d = matched.data
    out = {}
    for _, g in d.groupby("match_set"):
        t = g[g["treatment"] == 1].iloc[0]
        key = f"{t['index_date']:%Y-%m-%d} {t['person_id']}"
        out[key] = sorted(g.loc[g["treatment"] == 0, "person_id"])
    return out


def test_example_matched_structure(example_sets):
    """Q1 (2023-01-02) takes the candidates of its own risk set, nearest in age first;
    Q9 compares in Q1's set and is itself the initiator of 2024-03-01 (with Q4 alone)."""
    m = risk_set_match(
        example_sets.table, covariates=("age",), k=2, caliper=None, exact=("region",),
        calendar_time=False,
    )  # fmt: skip
    # ages on 2023-01-02: Q1 45; candidates Q2 33, Q3 63, Q8 35, Q9 39 (score linear in age)
    assert _sets(m) == {"2023-01-02 Q1": ["Q8", "Q9"], "2024-03-01 Q9": ["Q4"]}
    d = m.data
    assert d.loc[d["treatment"] == 0, "weight"].tolist() == [0.5, 0.5, 1.0]
    # the comparators' rows are those of the initiator's date
    assert (d.groupby("match_set")["index_date"].nunique() == 1).all()
    # a person in both arms: Q9 comparator on 2023-01-02, initiator on 2024-03-01
    q9 = d[d["person_id"] == "Q9"].sort_values("index_date")
    assert q9["treatment"].tolist() == [0, 1]
    flow = m.flow().set_index("step")
    assert flow.loc["eligible candidates in their risk sets", "n_rows"] == 5
    assert flow.loc["matched comparators who later started HAT", "n_persons"] == 1  # Q9
    k4 = risk_set_match(example_sets.table, covariates=("age",), k=4, caliper=None,
                        exact=("region",), calendar_time=False)  # fmt: skip
    assert _sets(k4) == {"2023-01-02 Q1": ["Q2", "Q3", "Q8", "Q9"], "2024-03-01 Q9": ["Q4"]}
    assert k4.comparator_use().to_dict("list") == {"n_risk_sets": [1], "n_persons": [5]}


def test_without_replacement_within_a_risk_set_only():
    """Two initiators of one date never share a comparator; a person may compare on
    several dates."""
    rng = np.random.default_rng(3)
    ages = rng.integers(20, 60, 200).astype(float)
    ages[:3] = 40.0
    person = np.r_[np.arange(200), np.arange(2, 200)]  # P000, P001 start HAT on date 1
    dates = pd.to_datetime(["2023-01-02"] * 200 + ["2023-02-01"] * 198).to_numpy()
    role = np.full(len(person), "candidate", dtype=object)
    role[[0, 1, 200]] = "initiator"  # P000, P001 on date 1; P002 on date 2
    table = pd.DataFrame(
        {
            "index_date": dates,
            "person_id": [f"P{i:03d}" for i in person],
            "role": pd.Categorical(role, categories=["initiator", "excluded initiator",
                                                     "candidate", "not eligible"]),
            "age": ages[person],
            "region": "south-east",
            "pp_censor_date": pd.NaT,
        }
    )  # fmt: skip
    m = risk_set_match(
        table, covariates=("age",), k=5, caliper=None, exact=("region",), calendar_time=False
    )
    comp = m.data[m.data["treatment"] == 0]
    assert not comp.duplicated(["index_date", "person_id"]).any()
    assert comp.groupby("match_set").size().tolist() == [5, 5, 5]
    date1 = comp[comp["index_date"] == pd.Timestamp("2023-01-02")]
    date2 = comp[comp["index_date"] == pd.Timestamp("2023-02-01")]
    assert len(date1) == 10 and len(date2) == 5
    # the nearest in age on date 2 were also used on date 1: reused across risk sets
    assert set(date2["person_id"]) & set(date1["person_id"])
    assert "P002" in set(date1["person_id"])  # a comparator on date 1, initiator on date 2


def test_config_target_trial_validated(tmp_path):
    for text, message in [
        ("target_trial:\n  grace_period_days: -1\n", "target_trial.grace_period_days"),
        ("target_trial:\n  grace_period_days: 400\n", "target_trial.grace_period_days"),
        (
            "target_trial:\n  sensitivity:\n    grace_period_days: -30\n",
            "target_trial.sensitivity.grace_period_days",
        ),
        ("target_trial:\n  sensitivity:\n    matching: [{}]\n", "changes k, caliper or both"),
        (
            "target_trial:\n  sensitivity:\n    matching: [{k: 0}]\n",
            "target_trial.sensitivity.matching.0.k",
        ),
        (
            "target_trial:\n  sensitivity:\n    matching: [{caliper: 0}]\n",
            "target_trial.sensitivity.matching.0.caliper",
        ),
        (
            "target_trial:\n  sensitivity:\n    matching: [{ratio: 2}]\n",
            "target_trial.sensitivity.matching.0.ratio",
        ),
        (
            "target_trial:\n  sensitivity:\n    matching: [{k: 2}, {k: 2, caliper: 0.2}]\n",
            "the same .k, caliper. more than once: k=2, caliper=0.2",
        ),
        ("target_trial:\n  contrasts: [per_protocol]\n", "itt"),
        ("target_trial:\n  analysis:\n    calliper: 0.1\n", "target_trial.analysis.calliper"),
        ("target_trial:\n  eligibility:\n    regions: [east]\n", "east"),
        ("target_trial:\n  outcomes: [mortality]\n", "cannot be left out"),
    ]:
        path = tmp_path / "c.yml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(path)
    tt = load_config().target_trial
    assert tt.analysis.k == 4 and tt.grace_period_days == 0
    assert tt.matching_variants() == {"matched_1to1": (1, 0.2), "matched_caliper0.1": (4, 0.1)}
    assert tt.sensitivity_grace() == 30
    # a variant equal to the primary plan is not run; nor a grace period equal to the primary's
    path = tmp_path / "c.yml"
    path.write_text(
        "target_trial:\n  grace_period_days: 30\n  analysis:\n    k: 1\n"
        "  sensitivity:\n    matching: [{k: 1}, {k: 2, caliper: 0.05}]\n"
    )
    tt = load_config(path).target_trial
    assert tt.matching_variants() == {"matched_1to2_caliper0.05": (2, 0.05)}
    assert tt.sensitivity_grace() is None


def test_grace_period_on_example(example_sets):
    """Q2 last had OST on 2023-05-31 and starts HAT on 2023-07-01: excluded without a grace
    period, an analysed initiator from G = 24 (an OST day in the 7 + 24 days before), with
    its own risk set; time zero stays its first HAT day, for it and its comparators."""
    history = read_extract(EXAMPLE)
    q2 = pd.DataFrame({"person_id": ["Q2"], "index_date": pd.to_datetime(["2023-07-01"])})
    for grace, reason in [(0, "not in OST in the week before"), (23, "not in OST in the week "
                          "before"), (24, None), (30, None)]:  # fmt: skip
        got = eligibility_on(history, q2, grace_days=grace).iloc[0]
        assert (None if pd.isna(got) else got) == reason, grace
    g30 = derive_risk_sets(history, not_eligible=False, grace_days=30)
    init = g30.initiators.set_index("person_id")
    assert bool(init.loc["Q2", "analysed"]) and not bool(example_sets.initiators.set_index(
        "person_id").loc["Q2", "analysed"])  # fmt: skip
    assert init["analysed"].sum() == example_sets.initiators["analysed"].sum() + 1
    t = g30.table
    new = t[t["index_date"] == pd.Timestamp("2023-07-01")]
    assert new[["person_id", "role"]].astype(str).values.tolist() == [
        ["Q2", "initiator"],
        ["Q3", "candidate"],
        ["Q9", "candidate"],
    ]
    # without a grace period the date holds Q2 alone, an excluded initiator; the other
    # dates' risk sets are unchanged (nobody there left OST 8 to 37 days before)
    t0 = example_sets.table
    assert t0.loc[t0["index_date"] == pd.Timestamp("2023-07-01"), "role"].tolist() == [
        "excluded initiator"
    ]
    pd.testing.assert_frame_equal(
        t[t["index_date"] != pd.Timestamp("2023-07-01")].reset_index(drop=True),
        t0[t0["index_date"] != pd.Timestamp("2023-07-01")].reset_index(drop=True),
    )
    # no immortal time: every row's follow-up starts on the trial date (the initiator's
    # first HAT day), the outcomes are those from that date
    out = outcomes_from(history, new[["person_id", "index_date"]].reset_index(drop=True))
    cols = ["followup_days", "died", "pp_censor_date", "pp_followup_days", "followup_charges"]
    pd.testing.assert_frame_equal(new[cols].reset_index(drop=True), out[cols])
    assert new["followup_days"].tolist() == [914, 215, 914]  # to 2025-12-31; Q3 dies
    # per protocol Q9 (comparator on 2023-07-01) is censored on its own HAT start, as
    # without a grace period
    assert new.set_index("person_id").loc["Q9", "pp_censor_date"] == pd.Timestamp("2024-03-01")
    m = risk_set_match(g30.table, covariates=("age",), k=2, caliper=None, exact=("region",),
                       calendar_time=False)  # fmt: skip
    assert _sets(m)["2023-07-01 Q2"] == ["Q3", "Q9"]


def test_rematch_keeps_risk_sets_and_scores(example_sets):
    m2 = risk_set_match(example_sets.table, covariates=("age",), k=2, caliper=None,
                        exact=("region",), calendar_time=False)  # fmt: skip
    m4 = m2.rematch(k=4, caliper=None)
    assert _sets(m4) == {"2023-01-02 Q1": ["Q2", "Q3", "Q8", "Q9"], "2024-03-01 Q9": ["Q4"]}
    assert m4.stacked is m2.stacked and m4.propensity is m2.propensity
    assert m4.info()["exact"] == ["region"] and m4.info()["k"] == 4
    # a caliper that no candidate meets leaves every initiator unmatched
    assert m2.rematch(k=1, caliper=1e-9).matched.n_treated_matched == 0


def test_counting_process_weights_and_cox():
    iv = split_intervals(np.array([0.0, 45.0, 60.0]), np.array([1, 0, 1]), 30)
    assert iv.row.tolist() == [0, 1, 1, 2, 2]
    assert iv.start.tolist() == [-1.0, -1.0, 30.0, -1.0, 30.0]
    assert iv.stop.tolist() == [0.0, 30.0, 45.0, 30.0, 60.0]
    assert iv.event.tolist() == [1, 0, 0, 0, 1]
    w = censoring_weights(iv.row, np.full(5, 0.1), np.array([0.2, 0.2, 0.5, 0.3, 0.1]))
    np.testing.assert_allclose(w, [1, 1, 0.9 / 0.8, 1, 0.9 / 0.7])
    # split follow-up with unit weights gives the unsplit Cox and Kaplan-Meier
    rng = np.random.default_rng(1)
    t = rng.integers(1, 400, 300).astype(float)
    e = rng.integers(0, 2, 300)
    x = rng.integers(0, 2, 300)
    s = split_intervals(t, e, 30)
    whole = cox_counting(np.full(300, -1.0), t, e, x, np.ones(300))
    split = cox_counting(s.start, s.stop, s.event, x[s.row], np.ones(len(s.row)))
    np.testing.assert_allclose(split, whole, rtol=1e-10)
    _, a = km_counting(np.full(300, -1.0), t, e, np.ones(300))
    _, b = km_counting(s.start, s.stop, s.event, np.ones(len(s.row)))
    np.testing.assert_allclose(a, b)
    from lifelines import KaplanMeierFitter

    km = KaplanMeierFitter().fit(t, e)
    times, surv = km_counting(np.full(300, -1.0), t, e, np.ones(300))
    np.testing.assert_allclose(surv, km.survival_function_.loc[times].to_numpy().ravel())


def test_study_on_example_history_stops_with_the_reason():
    """Nine persons: no initiator has a comparator within the caliper; a study error."""
    from evaluation.pipeline import StudyError

    with (
        pytest.warns(RuntimeWarning, match="ridge"),
        pytest.raises(StudyError, match="no initiator could be matched .* within the caliper"),
    ):
        run_study(read_extract(EXAMPLE), load_config())


# ------------------------------------------------------------------ against the truth
PRIMARIES = (("mortality", "HR"), ("retention", "HR"), ("crime", "IRR"))


def _z(e: dict, truth: dict, value: float | None = None) -> float:
    """(estimate - truth) / sqrt(SE^2 + Monte Carlo SE of the truth^2), log scale.

    ``value``: the true value to compare with when the estimate carries none (the naive
    comparison, whose contrast is not the estimand, is compared with the ITT truth).
    """
    key = f"{e['estimand']}/{e['outcome']}/{e['measure']}"
    mc = (truth.get("monte_carlo", {}).get("errors", {}).get(key) or {}).get("mc_se") or 0.0
    value = e["truth"] if value is None else value
    return (math.log(e["estimate"]) - math.log(value)) / math.hypot(e["se"], mc)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "seed"), [("ci", 1), ("ci", 2), ("default", 1), ("default", 2)]
)
def test_itt_and_per_protocol_recover_the_truth(tmp_path, scenario, seed):
    from synthetic import generate_extract

    folder = generate_extract(scenario, out=tmp_path / "x", seed=seed, contract=2)
    history = read_extract(folder)
    config = load_config(None, seed=seed, **NO_MI).model_copy(deep=True)
    config = config.model_validate(
        {**config.to_dict(), "target_trial": {"per_protocol": {"bootstrap": 50}}}
    )
    study = run_study(history, config)
    res = study.results
    assert res["cohort"]["extract_version"] == 2
    est = res["estimates"]
    assert all("estimand" in e for e in est)
    prim = [e for e in est if e["primary"]]
    assert {(e["outcome"], e["estimand"]) for e in prim} == {
        ("mortality", "itt"),
        ("retention", "itt"),
        ("crime", "itt"),
    }
    for estimand, method in (("itt", "_matched"), ("per_protocol", "_ipcw")):
        for outcome, measure in PRIMARIES:
            (itt,) = [x for x in prim if x["outcome"] == outcome]
            model = itt["method"].partition("_")[0]  # the primary's model (cox, rate)
            (e,) = [
                x for x in est
                if x["estimand"] == estimand and x["outcome"] == outcome
                and x["measure"] == measure and x["method"] == model + method
            ]  # fmt: skip
            assert e["truth"] is not None
            if e["estimate"] is None:
                # the small scenario can have no event in an arm: a state, with its reason
                # (or so few that the bootstrap draws none of them in many replicates)
                note = e["details"]["note"]
                assert scenario == "ci" and ("no events in the" in note or "bootstrap" in note), e
                continue
            assert abs(_z(e, history.truth)) < 3, (estimand, outcome, e)
    if scenario == "default":
        (naive,) = [x for x in est if x["method"] == "rate_naive"]
        assert naive["truth"] is None  # not an effect in the initiators
        (itt,) = [x for x in est if x["method"] == "rate_matched" and x["measure"] == "IRR"]
        assert abs(_z(naive, history.truth, itt["truth"])) > 3, naive


# ------------------------------------------------------------------ sensitivity analyses
@pytest.fixture(scope="module")
def ci_study(tmp_path_factory):
    """The ci history scenario, intention to treat only (the sensitivity analyses are)."""
    from synthetic import generate_extract

    folder = generate_extract("ci", out=tmp_path_factory.mktemp("ci") / "x", seed=1, contract=2)
    history = read_extract(folder)
    config = load_config(None, seed=1, **NO_MI)
    config = config.model_validate({**config.to_dict(), "target_trial": {"contrasts": ["itt"]}})
    return history, run_study(history, config)


def test_sensitivity_estimates_on_ci_history(ci_study):
    history, study = ci_study
    est = study.results["estimates"]
    designs = study.results["design"]["designs"]
    truth = {(e["outcome"], e["measure"]): e["value"] for e in history.truth["estimands"]
             if e["estimand"] == "itt"}  # fmt: skip
    wanted = {("mortality", "HR"), ("overdose_mortality", "HR"), ("retention", "HR"),
              ("crime", "IRR")}  # fmt: skip
    for design, has_truth in [("matched_1to1", True), ("matched_caliper0.1", True),
                              ("matched_grace30", False), ("naive", False),
                              ("prevalent", True)]:  # fmt: skip
        mine = [e for e in est if e["method"].partition("_")[2] == design]
        assert {(e["outcome"], e["measure"]) for e in mine} == wanted, design
        assert all(not e["primary"] and e["estimand"] == "itt" for e in mine), design
        for e in mine:
            expected = truth[(e["outcome"], e["measure"])] if has_truth else None
            assert e["truth"] == expected, (design, e)
        assert designs[design]["truth"] is has_truth
    assert (designs["matched_1to1"]["k"], designs["matched_1to1"]["caliper_sd"]) == (1, 0.2)
    assert designs["matched_caliper0.1"]["caliper_sd"] == 0.1
    assert designs["matched_caliper0.1"]["k"] == 4
    # the variants re-match the primary's risk sets: the same initiators and candidates
    for d in ("matched_1to1", "matched_caliper0.1"):
        for key in ("n_risk_sets", "n_candidate_rows", "propensity_rows"):
            assert designs[d][key] == designs["matched"][key], (d, key)
    assert designs["matched_1to1"]["n_control_rows_matched"] <= designs["matched"]["n_treated"]
    g = designs["matched_grace30"]
    assert g["grace_period_days"] == 30
    # a longer OST window: at least the primary's initiators and candidates
    assert g["n_analysed"] >= study.results["cohort"]["n_hat"]
    assert g["n_candidate_rows"] >= designs["matched"]["n_candidate_rows"]
    # the primaries are the primary design's, intention to treat
    assert {e["method"] for e in est if e["primary"]} == {"cox_matched", "rate_matched"}
    protocol = study.tables["protocol"].set_index("component")
    text = protocol.loc["Sensitivity analyses", "emulation"]
    assert "matched_1to1" in text and "matched_caliper0.1" in text and "matched_grace30" in text
    assert "grace period 0 days" in protocol.loc["Time zero", "emulation"]
