"""Self-tests of the synthetic generator (``synthetic/``).

Realised data match the scenario (shares, rates, retention, overdispersion) within
sampling noise; the extract follows the contract; same seed, same bytes; the truth is
exact where it must be (null scenario) and stable; the naive comparison misses it.
"""

from __future__ import annotations

import filecmp
import math

import numpy as np
import pandas as pd
import pytest

from analysis.data.contract import COLUMNS, DAYS_PER_YEAR
from analysis.data.extract import read_extract
from synthetic import ScenarioError, generate, generate_extract, load_scenario, scenario_names
from synthetic.__main__ import main as cli
from synthetic.derive import derive_frame
from synthetic.population import HAT_MED, day_number, multipliers, ost_candidates
from synthetic.realised import realised_figures
from synthetic.selection import draw_treated
from synthetic.spec import Scenario
from synthetic.truth import aj_cif_at, compute_truth, cox_hr_binary, km_at, km_rmst, truth_json

EXAMPLE = "tests/data/example-extract"
TABLES = ("persons", "treatment_episodes", "deaths", "charges", "incarcerations")


def _spec(name: str = "ci", **updates) -> Scenario:
    """A bundled scenario with nested updates given as 'group.field' keys."""
    data = load_scenario(name).to_dict()
    for key, value in updates.items():
        *path, last = key.split(".")
        node = data
        for part in path:
            node = node[part]
        node[last] = value
    return Scenario.model_validate(data)


@pytest.fixture(scope="module")
def big():
    """A larger ci-like sample for tight checks of realised rates (generation is fast)."""
    spec = load_scenario("ci", n_hat=2000, n_ost=20000, seed=11)
    tables, truth = generate(spec, np.random.default_rng(spec.seed))
    return spec, tables, truth, realised_figures(tables, spec.extract_date)


@pytest.fixture(scope="module")
def ci_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("ci") / "extract"
    return generate_extract("ci", out=out)


@pytest.fixture(scope="module")
def default():
    spec = load_scenario("default")
    tables, truth = generate(spec, np.random.default_rng(spec.seed))
    return spec, tables, truth


# --------------------------------------------------------------------------- scenarios
def test_bundled_scenarios_load_and_overrides_apply():
    assert {"default", "pilot", "null", "large", "ci"} <= set(scenario_names())
    sizes = {name: (s.n_hat, s.n_ost) for name in scenario_names() for s in [load_scenario(name)]}
    assert sizes["default"] == (400, 8000)
    assert sizes["ci"] == (100, 1500)
    assert sum(sizes["large"]) == 1_000_000
    assert sizes["pilot"][0] == 150
    s = load_scenario("ci", seed=3, n_hat=10, n_ost=20)
    assert (s.seed, s.n_hat, s.n_ost) == (3, 10, 20)
    null = load_scenario("null").effects
    assert (null.hr_discontinuation, null.hr_mortality, null.irr_crime) == (1, 1, 1)


def test_unknown_key_and_scenario_fail_loudly(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("n_hat: 10\ntreatment:\n  ost_exit_per_yeer: 0.5\n")
    with pytest.raises(ScenarioError, match="ost_exit_per_yeer"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="unknown scenario"):
        load_scenario("no-such-scenario")


# --------------------------------------------------------------------------- definitions
def test_derivation_matches_hand_made_example_extract():
    tables = {t: pd.read_csv(f"{EXAMPLE}/{t}.csv", dtype={"person_id": str}) for t in TABLES}
    derived = derive_frame(tables, "2025-12-31").set_index("person_id")
    expected = pd.read_csv(f"{EXAMPLE}/expected_cohort.csv").set_index("person_id")
    # the contract's crime window includes the last day of follow-up, a day the file's
    # crime_days (followup_days - prison_days) leaves out (see tests/test_cohort.py)
    expected["crime_days"] += 1
    assert derived.loc["P6", "excluded"]
    for col in expected.columns.drop("group"):
        np.testing.assert_array_equal(
            derived.loc[expected.index, col].astype(float), expected[col].astype(float), col
        )


def test_derivation_of_baseline_prison_and_end_of_followup_rules():
    """Hand-worked (as tests/test_cohort.py): prison stays before and across the index
    date, and spells ending within the 30-day gap before emigration, the extract date or
    a death."""
    d = pd.to_datetime
    persons = pd.DataFrame(
        {
            "person_id": ["A", "B", "C", "D", "E"],
            "group": ["HAT", "OST", "HAT", "HAT", "HAT"],
            "index_date": d(["2022-01-01"] * 5),
            "emigration_date": d([None, None, "2023-01-31", None, None]),
        }
    )
    tables = {
        "persons": persons,
        "treatment_episodes": pd.DataFrame(
            {
                "person_id": ["A", "B", "C", "D", "E"],
                "start_date": d(["2021-06-01"] * 5),
                # E: 29 days before the extract date; D: 29 days before its death
                "end_date": d([None, "2025-12-01", "2023-01-02", "2023-01-02", "2025-12-02"]),
                "medication": ["methadone"] * 5,
            }
        ),
        "deaths": pd.DataFrame(
            {"person_id": ["D"], "death_date": d(["2023-01-31"]), "cause": ["other"]}
        ),
        "charges": pd.DataFrame(
            {
                "person_id": ["A"] * 6 + ["B"] * 2,
                "charge_date": d(
                    ["2020-01-05", "2020-01-11", "2021-03-15", "2021-12-31"]
                    + ["2022-01-01", "2022-01-11", "2021-06-30", "2022-06-01"]
                ),
            }
        ),
        "incarcerations": pd.DataFrame(
            {
                "person_id": ["A", "A", "A", "B"],
                "start_date": d(["2020-01-01", "2021-03-01", "2021-12-22", "2021-07-01"]),
                "end_date": d(["2020-01-11", "2021-03-31", "2022-01-11", None]),
            }
        ),
    }
    out = derive_frame(tables, "2025-12-31").set_index("person_id")
    assert out["baseline_charges"].tolist()[:2] == [4, 1]
    assert out["baseline_charges_at_risk"].tolist()[:2] == [1, 1]
    assert out["baseline_prison_days"].tolist()[:2] == [49, 184]
    assert out["baseline_crime_days"].tolist()[:2] == [681, 546]
    assert out["prison_days"].tolist()[:2] == [10, 1460]
    assert out["crime_days"].tolist()[:2] == [1451, 1]
    assert out["followup_charges"].tolist()[:2] == [1, 0]
    # B: spell ends 30 days before the extract date: a discontinuation
    # C: 29 days before emigration, E: 29 days before the extract date: censored at the end
    # D: 29 days before death: a discontinuation
    assert out["retention_days"].tolist() == [1460.0, 1430.0, 366.0, 366.0, 1431.0]
    assert out["discontinued"].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]


def test_derivation_agrees_with_analysis_cohort(ci_folder):
    cohort = pytest.importorskip("analysis.data.cohort")
    extract = read_extract(ci_folder)
    ours = derive_frame({t: extract.table(t) for t in TABLES}, extract.extract_date)
    theirs = cohort.derive_cohort(extract).table
    m = theirs.merge(ours, on="person_id", suffixes=("_a", "_s"))
    assert len(m) == len(ours)
    for col in (
        "followup_days",
        "died",
        "overdose_death",
        "retention_days",
        "discontinued",
        "prison_days",
        "crime_days",
        "baseline_charges",
        "followup_charges",
        "baseline_prison_days",
        "baseline_crime_days",
        "baseline_charges_at_risk",
    ):
        np.testing.assert_array_equal(m[f"{col}_a"].astype(float), m[f"{col}_s"].astype(float), col)
    # the data reach the rule for spells ending within the gap before the end of follow-up
    censored_early = (m["discontinued_a"] == 0) & (m["retention_days_a"] < m["followup_days_a"])
    assert censored_early.sum() > 0


def test_fast_cox_and_km_agree_with_lifelines():
    """Efron Cox with one binary covariate, KM and RMST against lifelines."""
    lifelines = pytest.importorskip("lifelines")
    rng = np.random.default_rng(0)
    x = rng.random(2000) < 0.4
    t = np.floor(rng.exponential(300 / np.where(x, 0.6, 1.0)))
    c = np.floor(rng.uniform(0, 500, 2000))
    time, event = np.minimum(t, c), t <= c
    df = pd.DataFrame({"T": time, "E": event, "x": x.astype(float)})
    fit = lifelines.CoxPHFitter().fit(df, "T", "E")
    beta, se = cox_hr_binary(time, event, x)
    assert beta == pytest.approx(fit.params_["x"], abs=1e-5)
    assert se == pytest.approx(fit.standard_errors_["x"], rel=1e-4)
    km = lifelines.KaplanMeierFitter().fit(time[x], event[x])
    assert km_at(time[x], event[x], 365.25) == pytest.approx(
        km.survival_function_at_times(365.25).iloc[0], rel=1e-10
    )
    rmst = lifelines.utils.restricted_mean_survival_time(km, t=730)
    assert km_rmst(time[x], event[x], 730) == pytest.approx(rmst, rel=1e-10)


# --------------------------------------------------------------------------- the extract
def test_extract_passes_the_contract(ci_folder):
    extract = read_extract(ci_folder)  # validates every rule of the contract
    assert extract.truth["scenario"] == "ci"
    for table in TABLES:
        assert tuple(extract.table(table).columns) == COLUMNS[table]
    assert extract.extract_date == pd.Timestamp("2026-12-31")


def test_internal_consistency(big):
    spec, t, _, _ = big
    persons = t["persons"].set_index("person_id")
    ep = t["treatment_episodes"]
    assert (ep["end_date"].isna() | (ep["end_date"] >= ep["start_date"])).all()
    # episodes of a person do not overlap
    nxt = ep.groupby("person_id")["start_date"].shift(-1)
    assert not (nxt <= ep["end_date"]).any()
    # everyone is in treatment on the index date
    idx = ep["person_id"].map(persons["index_date"])
    holds = (ep["start_date"] <= idx) & (ep["end_date"].isna() | (ep["end_date"] >= idx))
    assert holds.groupby(ep["person_id"]).any().all()
    # HAT patients start diacetylmorphine on the index date
    hat_ids = persons.index[persons["group"] == "HAT"]
    first_hat = ep[(ep["medication"] == "diacetylmorphine") & (ep["start_date"] == idx)]
    assert set(hat_ids) == set(first_hat["person_id"])
    assert (
        not ep[ep["person_id"].isin(persons.index[persons["group"] == "OST"])]["medication"]
        .eq("diacetylmorphine")
        .any()
    )
    # nothing after death or emigration; episodes open at death end on the death date
    end = (
        pd.concat(
            [t["deaths"].set_index("person_id")["death_date"], persons["emigration_date"].dropna()]
        )
        .groupby(level=0)
        .min()
    )
    for table, col in (
        ("charges", "charge_date"),
        ("treatment_episodes", "start_date"),
        ("incarcerations", "start_date"),
    ):
        stop = t[table]["person_id"].map(end)
        assert not (t[table][col] > stop).any(), table
    stop = ep["person_id"].map(end)
    assert not (ep["end_date"].isna() & stop.notna()).any()
    # every dead or emigrated person has a record on or before their end date
    assert (t["deaths"]["death_date"] >= t["deaths"]["person_id"].map(persons["index_date"])).all()
    # the gap rule has work to do: short interruptions, switches and long gaps all occur
    gaps = (nxt - ep["end_date"]).dt.days.dropna()
    assert ((gaps >= 1) & (gaps <= 30)).sum() > 50
    assert (gaps > 30).sum() > 50
    switched = ep["medication"].eq("diacetylmorphine") & ep.groupby("person_id")[
        "medication"
    ].shift(-1).eq("methadone")
    assert switched.sum() > 20
    # charges inside prison stays: none after index
    derived = derive_frame(t, spec.extract_date)
    assert (derived["prison_days"] > 0).any()
    assert t["incarcerations"]["end_date"].isna().any()


# --------------------------------------------------------------------------- calibration
def _within(value: float, target: float, rel: float) -> bool:
    return abs(value - target) <= rel * target


def test_groups_regions_sites_and_sexes(big):
    spec, t, _, f = big
    p = t["persons"]
    hat = p["group"] == "HAT"
    assert hat.sum() == 2000 and (~hat).sum() == 20000
    assert set(p.loc[hat, "region"]) == {"south-east", "west"}
    assert {"central", "north"} <= set(p.loc[~hat, "region"])
    oslo = hat & (p["region"] == "south-east")
    assert p.loc[oslo, "index_date"].min() >= pd.Timestamp("2022-01-01")
    assert p.loc[hat & ~oslo, "index_date"].min() >= pd.Timestamp("2022-03-01")
    assert p.loc[hat, "index_date"].max() <= pd.Timestamp("2025-12-31")
    assert oslo.sum() / hat.sum() == pytest.approx(0.6, abs=4 * math.sqrt(0.24 / 2000))
    # women: OST about 30%, HAT about 20% (binomial noise: 4 SE)
    assert f["women_share_ost"] == pytest.approx(0.30, abs=4 * math.sqrt(0.21 / 20000))
    assert f["women_share_hat"] == pytest.approx(0.20, abs=4 * math.sqrt(0.16 / 2000) + 0.02)
    assert f["mean_age_ost"] == pytest.approx(45, abs=0.8)
    assert f["mean_age_hat"] == pytest.approx(45.9, abs=1.0)


def test_missingness_is_a_few_to_fifteen_percent(big):
    _, t, _, _ = big
    p = t["persons"]
    for col, miss in load_scenario("ci").population.missing.items():
        share = p[col].isna().mean()
        assert share == pytest.approx(miss.share, abs=0.02), col
        assert 0.01 <= share <= 0.18, col


def test_mortality_in_and_out_of_treatment(big):
    *_, f = big
    # OST: about 14 per 1000 PY in treatment, 35 out (Clausen 2008); a few hundred deaths
    assert _within(f["mortality_in_treatment_per_1000py_ost"], 14.0, 0.2)
    assert _within(f["mortality_out_of_treatment_per_1000py_ost"], 35.0, 0.25)
    assert (
        f["mortality_out_of_treatment_per_1000py_ost"]
        > 2 * f["mortality_in_treatment_per_1000py_ost"]
    )
    assert f["overdose_share_in_treatment_ost"] == pytest.approx(0.23, abs=0.06)
    assert f["overdose_share_out_of_treatment_ost"] == pytest.approx(0.35, abs=0.07)


def test_retention_at_12_months(big):
    *_, truth, f = big
    assert 0.80 <= f["retention_12m_hat"] <= 0.93
    assert 0.58 <= f["retention_12m_ost"] <= 0.75  # all OST; the matched ones lower
    v = {(e["outcome"], e["measure"]): e["value"] for e in truth["estimands"]}
    rr, rd = v[("retention", "RR_12m")], v[("retention", "RD_12m")]
    s_hat = rd * rr / (rr - 1)
    assert 0.80 <= s_hat <= 0.90  # HAT potential outcome (NAOMI 87.8%)
    assert 0.53 <= s_hat / rr <= 0.65  # OST potential outcome of HAT patients (NAOMI 54.1%)
    # the realised HAT group and the truth's treated population agree (same mechanism)
    se = math.sqrt(s_hat * (1 - s_hat) / f["n_hat"])
    assert abs(f["retention_12m_hat"] - s_hat) < 4 * se
    # about 30 of 100 left HAT within 2 years, half of them to ordinary OST (SERAF)
    assert 0.2 <= f["hat_left_first_episode_2y_share"] <= 0.45
    assert 0.3 <= f["hat_leavers_switch_share"] <= 0.6


def test_charges_rates_and_overdispersion(big):
    *_, f = big
    # Bukten 2012: 1.57 per PY out of OST, 0.63 during
    assert _within(f["charges_in_treatment_per_py_ost"], 0.6, 0.15)
    assert _within(f["charges_out_of_treatment_per_py_ost"], 1.57, 0.15)
    assert f["charges_baseline_per_py_hat"] > 1.3 * f["charges_baseline_per_py_ost"]
    # HAT lowers crime: during follow-up HAT patients are charged no more than OST although
    # they were charged much more before
    assert f["charges_followup_per_py_hat"] < 1.1 * f["charges_followup_per_py_ost"]
    # overdispersed counts: Bukten 2011, 39% no charge in 3 years
    assert f["charges_3y_variance_to_mean_ost"] > 3
    assert f["charges_3y_share_none_ost"] == pytest.approx(0.39, abs=0.05)
    assert 0.3 <= f["charges_3y_top10_share_ost"] <= 0.5


def test_selection_is_confounded():
    """HAT patients are sicker, inject more and are charged more (the tilt, large n)."""
    spec = load_scenario("ci")
    rng = np.random.default_rng(5)
    hat, ost = draw_treated(50_000, spec, rng), ost_candidates(50_000, spec, rng)
    for name in (
        "injecting",
        "homeless",
        "prior_overdose",
        "psychiatric_dx",
        "baseline_charges",
        "frailty",
    ):
        assert getattr(hat, name).mean() > 1.1 * getattr(ost, name).mean(), name
    mh, mo = multipliers(hat, spec), multipliers(ost, spec)
    assert mh["mortality"].mean() > 1.15 * mo["mortality"].mean()
    assert mh["treatment"].mean() > 1.1 * mo["treatment"].mean()


# --------------------------------------------------------------------------- reproducibility
def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    kw = dict(n_hat=40, n_ost=300)
    a = generate_extract("ci", out=tmp_path / "a", seed=5, **kw)
    b = generate_extract("ci", out=tmp_path / "b", seed=5, **kw)
    c = generate_extract("ci", out=tmp_path / "c", seed=6, **kw)
    names = sorted(p.name for p in a.iterdir())
    assert {f"{t}.csv" for t in TABLES} | {"extract.yml", "truth.json"} <= set(names)
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == []
    differ = filecmp.cmpfiles(a, c, [f"{t}.csv" for t in TABLES], shallow=False)[1]
    assert set(differ) == {f"{t}.csv" for t in TABLES}
    pa = generate_extract("ci", out=tmp_path / "pa", seed=5, format="parquet", **kw)
    pb = generate_extract("ci", out=tmp_path / "pb", seed=5, format="parquet", **kw)
    pnames = [f"{t}.parquet" for t in TABLES]
    assert filecmp.cmpfiles(pa, pb, pnames, shallow=False)[1] == []
    # CSV and Parquet hold the same data
    ra, rp = read_extract(a), read_extract(pa)
    for t in TABLES:
        pd.testing.assert_frame_equal(ra.table(t), rp.table(t), check_dtype=False)


def test_cli_writes_an_extract(tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        cli(
            [
                "--scenario",
                "ci",
                "--out",
                str(out),
                "--n-hat",
                "30",
                "--n-ost",
                "200",
                "--seed",
                "2",
                "--format",
                "parquet",
            ]
        )
        == 0
    )
    assert (out / "persons.parquet").is_file() and (out / "truth.json").is_file()
    extract = read_extract(out)
    assert (extract.persons["group"] == "HAT").sum() == 30
    assert "truth mortality/HR" in capsys.readouterr().out
    assert cli(["--scenario", "nope", "--out", str(out)]) == 2


# --------------------------------------------------------------------------- truth
def test_null_scenario_truth_is_exactly_one():
    spec = _spec("null", **{"truth.n_treated": 4000, "truth.n_batches": 2})
    truth = truth_json(spec)
    for e in truth["estimands"]:
        expected = 0.0 if e["measure"].startswith("RD_") or e["measure"] == "RMST_diff" else 1.0
        assert e["value"] == pytest.approx(expected, abs=1e-12), (e["outcome"], e["measure"])


def test_truth_has_every_estimand_and_small_monte_carlo_error(default):
    spec, _, truth = default
    assert truth["scenario"] == "default" and truth["seed"] == spec.seed
    keys = {(e["outcome"], e["measure"]) for e in truth["estimands"]}
    assert keys == {
        ("mortality", "HR"),
        ("mortality", "RD_12m"),
        ("mortality", "RD_24m"),
        ("mortality", "RMST_diff"),
        ("overdose_mortality", "HR"),
        ("overdose_mortality", "RD_12m"),
        ("overdose_mortality", "RD_24m"),
        ("retention", "HR"),
        ("retention", "RR_12m"),
        ("retention", "RD_12m"),
        ("retention", "RD_24m"),
        ("retention", "RMST_diff"),
        ("crime", "IRR"),
        ("crime", "ratio_of_rate_ratios"),
    }
    assert all(e["definition"] for e in truth["estimands"])
    assert truth["conditional"]["hr_mortality_in_hat_vs_in_ost"] == 0.7
    for name, err in truth["monte_carlo"]["errors"].items():
        assert err["mc_se_over_study_se"] < 0.1, name
    v = {(e["outcome"], e["measure"]): e["value"] for e in truth["estimands"]}
    assert 0.55 < v[("mortality", "HR")] < 0.8  # conditional 0.7
    assert v[("retention", "HR")] < 0.5 and v[("retention", "RR_12m")] > 1.3
    assert 0.5 < v[("crime", "IRR")] < 0.75  # conditional 0.55 while in HAT
    # absolute measures: HAT lowers the risk of death (HR < 1), more so by 24 months
    assert v[("mortality", "RD_24m")] < v[("mortality", "RD_12m")] < 0
    assert v[("overdose_mortality", "RD_24m")] < v[("overdose_mortality", "RD_12m")] < 0
    assert v[("mortality", "RD_12m")] < v[("overdose_mortality", "RD_12m")]  # a part of it
    assert v[("mortality", "RMST_diff")] > 0 and v[("retention", "RD_24m")] > 0
    # the truth does not depend on the data's seed or size
    assert (
        truth_json(load_scenario("default", seed=99, n_hat=50))["estimands"] == truth["estimands"]
    )


def test_truth_aalen_johansen_agrees_with_the_analysis():
    """The truth's Aalen-Johansen CIF (unweighted, own code) gives the analysis package's
    value on the same data (ties, censoring, competing events); its Kaplan-Meier and RMST
    are checked against lifelines above."""
    from analysis.outcomes.competing_risks import cumulative_incidence

    rng = np.random.default_rng(8)
    n = 3000
    time = np.ceil(rng.exponential(500, n))
    cause = rng.choice([0, 1, 2], n, p=[0.5, 0.2, 0.3])
    df = pd.DataFrame({"time": time, "cause": cause, "g": 1})
    for t in (100.0, 365.25, 730.5):
        cif = cumulative_incidence(df, duration="time", event_type="cause", group="g", times=[t])
        value = cif["cumulative_incidence"].item()
        assert 0 < value < 1
        assert aj_cif_at(time, cause, t) == pytest.approx(value, rel=1e-12)
    assert aj_cif_at(time, cause, 0.5) == 0.0


def test_potential_outcomes_are_coupled():
    """Same random numbers: OST potential outcome simulated twice is identical, and under
    HAT only the treatment differs (same emigration, same deaths when effects are 1)."""
    from synthetic.outcomes import simulate_course

    spec = load_scenario("null")
    people = draw_treated(2000, spec, np.random.default_rng(1))
    mult = multipliers(people, spec)
    admin = (day_number(spec.extract_date) - people.index_day) + 1.0
    kw = dict(
        first_start=np.zeros(len(people)),
        treatment_mult=mult["treatment"],
        mortality_mult=mult["mortality"],
        admin_end=admin,
        emigration_time=np.full(len(people), np.inf),
        spec=spec,
    )
    ost = simulate_course(first_med=people.current_med, rng=np.random.default_rng(3), **kw)
    hat = simulate_course(
        first_med=np.full(len(people), HAT_MED, np.int8), rng=np.random.default_rng(3), **kw
    )
    np.testing.assert_array_equal(ost.died, hat.died)
    np.testing.assert_array_equal(ost.ep_end, hat.ep_end)


def test_naive_comparison_misses_the_truth(default):
    """Unmatched, unadjusted HAT vs OST in the default scenario is biased by several SE."""
    spec, tables, truth = default
    v = {(e["outcome"], e["measure"]): e["value"] for e in truth["estimands"]}
    d = derive_frame(tables, spec.extract_date)
    hat = (d["group"] == "HAT").to_numpy()

    # 12-month retention (Kaplan-Meier, Greenwood SE of log S)
    def km_log_se(g):
        r = d["in_retention"].to_numpy() & g
        time, event = d["retention_days"].to_numpy()[r], d["discontinued"].to_numpy()[r] > 0
        s = km_at(time, event, 365.25)
        times, inv = np.unique(time, return_inverse=True)
        n = np.bincount(inv)[::-1].cumsum()[::-1]
        e = np.bincount(inv, weights=event.astype(float))
        keep = (times <= 365.25) & (e > 0)
        return s, math.sqrt(np.sum(e[keep] / (n[keep] * (n[keep] - e[keep]))))

    (s1, se1), (s0, se0) = km_log_se(hat), km_log_se(~hat)
    z_retention = abs(math.log(s1 / s0) - math.log(v[("retention", "RR_12m")])) / math.hypot(
        se1, se0
    )
    # crime: ratio of rates with person-level (sandwich) SE
    y, t = d["followup_charges"].to_numpy(float), d["crime_days"].to_numpy(float) / DAYS_PER_YEAR
    parts = []
    for g in (hat, ~hat):
        rate = y[g].sum() / t[g].sum()
        parts.append((rate, np.sum((y[g] - rate * t[g]) ** 2) / y[g].sum() ** 2))
    naive_irr = parts[0][0] / parts[1][0]
    z_crime = abs(math.log(naive_irr / v[("crime", "IRR")])) / math.sqrt(parts[0][1] + parts[1][1])
    assert z_retention > 3, (s1 / s0, v[("retention", "RR_12m")], z_retention)
    assert z_crime > 3, (naive_irr, v[("crime", "IRR")], z_crime)
    # the naive comparison understates the benefit of HAT (HAT patients are sicker)
    assert s1 / s0 < v[("retention", "RR_12m")] and naive_irr > v[("crime", "IRR")]


@pytest.mark.slow
def test_large_scenario_is_fast(tmp_path):
    import time

    spec = load_scenario("large")
    t0 = time.perf_counter()
    tables, _ = generate(spec, np.random.default_rng(1))
    assert time.perf_counter() - t0 < 60
    assert len(tables["persons"]) == 1_000_000


@pytest.mark.slow
def test_compute_truth_default_takes_seconds():
    import time

    spec = _spec("default", **{"truth.seed": 12345})  # not cached
    t0 = time.perf_counter()
    compute_truth(spec)
    assert time.perf_counter() - t0 < 10


def test_switchable_mortality_spike_after_leaving():
    """With the spike on, deaths cluster in the first 4 weeks after leaving treatment."""
    from synthetic.outcomes import simulate_course

    def early_deaths(multiplier: float) -> int:
        spec = _spec("ci", **{"mortality.leaving_spike_multiplier": multiplier})
        people = ost_candidates(20_000, spec, np.random.default_rng(1))
        mult = multipliers(people, spec)
        c = simulate_course(
            first_med=people.current_med,
            first_start=people.current_start.astype(float),
            treatment_mult=mult["treatment"],
            mortality_mult=mult["mortality"],
            admin_end=(day_number(spec.extract_date) - people.index_day) + 1.0,
            emigration_time=np.full(len(people), np.inf),
            spec=spec,
            rng=np.random.default_rng(2),
        )
        ended = ~np.isnan(c.ep_end)
        last_end = np.full(len(people), -np.inf)
        np.maximum.at(last_end, c.ep_person[ended], c.ep_end[ended])
        since = c.death_time - last_end
        return int(np.sum(c.died & (since > 0) & (since < 28)))

    off, on = early_deaths(1.0), early_deaths(4.0)
    assert on > 2.5 * off > 0


@pytest.mark.parametrize("seed", range(6))
def test_row_orders_are_the_stable_sorts(seed: int) -> None:
    """``order_rows`` (a packed key when the keys are whole numbers) is the stable lexsort,
    ``stable_order`` the stable argsort, ties and fractional or missing keys included."""
    from synthetic.tables import order_rows, stable_order

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 3000))
    number = rng.integers(1, 60, n)
    day = rng.integers(-30, 40, n).astype(float if seed % 2 else np.int64)
    code = rng.integers(0, 4, n)
    if seed == 3 and n:
        day = day + 0.5 * (np.arange(n) % 2)  # not whole days: lexsort
    for c in (None, code):
        keys = (day,) if c is None else (c, day)
        assert np.array_equal(order_rows(number, day, c), np.lexsort((*keys, number)))
    key = rng.integers(0, 20, n).astype(float) if seed % 2 else rng.random(n)
    if seed == 4 and n:
        key[0] = np.nan
    assert np.array_equal(stable_order(key), np.argsort(key, kind="stable"))
