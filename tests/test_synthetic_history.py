"""Self-tests of the history-extract generator (data contract version 2).

The outcome definitions reproduce the hand-made example (``tests/data/example-history``);
the extract follows the contract; same seed, same bytes; the truth's 'HAT now' arm is the
initiators' recorded course and its replay repeats it outside the index week; realised figures match ``shared/calibration.md`` within
sampling noise (default scenario, slow); and HAT uptake is confounded in time: crude
comparisons of initiators with OST patients miss the truth by several standard errors.
"""

from __future__ import annotations

import filecmp

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import BaseModel

from analysis.data.contract import DAYS_PER_YEAR
from synthetic import ScenarioError, generate_extract
from synthetic.__main__ import main as cli
from synthetic.history_derive import history_outcomes, initiator_reason
from synthetic.history_generate import COLUMNS_V2, generate_history, write_history
from synthetic.history_realised import history_figures
from synthetic.history_sim import Simulation
from synthetic.history_spec import HistoryScenario, history_scenario_names, load_history_scenario
from synthetic.history_state import (
    IN_HAT,
    IN_OST,
    NONE,
    WEEK,
    Rates,
    linear_predictor,
    new_persons,
)
from synthetic.history_truth import _initiator_arms, compute_history_truth

EXAMPLE = "tests/data/example-history"
DAY = np.timedelta64(1, "D")


def _days(s: pd.Series) -> np.ndarray:
    d = pd.to_datetime(s).to_numpy(dtype="datetime64[D]")
    return np.where(np.isnat(d), 0, d.astype(np.int64))


@pytest.fixture(scope="module")
def ci():
    spec = load_history_scenario("ci")
    tables, truth = generate_history(spec, np.random.default_rng(spec.seed))
    return spec, tables, truth


# --------------------------------------------------------------------------- scenarios
def test_history_scenarios_load_and_fail_loudly(tmp_path):
    assert {"default", "ci"} <= set(history_scenario_names())
    assert load_history_scenario("ci", seed=3).seed == 3
    bad = tmp_path / "bad.yml"
    bad.write_text("treatment:\n  exit_late_per_yeer: 0.5\n")
    with pytest.raises(ScenarioError, match="exit_late_per_yeer"):
        load_history_scenario(bad)
    with pytest.raises(ScenarioError, match="unknown history scenario"):
        load_history_scenario("no-such-scenario")


def test_every_parameter_is_documented():
    """Every number of a history scenario has a description (its source or reason), or is
    named in its model's docstring; sub-models are documented by their own docstrings."""
    undocumented = []

    def walk(model: type[BaseModel], path: str) -> None:
        for name, field in model.model_fields.items():
            kind = field.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                assert (kind.__doc__ or "").strip(), f"{path}.{name}"
                walk(kind, f"{path}.{name}")
            elif name not in ("name", "description") and not (
                field.description or name in (model.__doc__ or "")
            ):
                undocumented.append(f"{path}.{name}")

    walk(HistoryScenario, "scenario")
    assert undocumented == []


def test_leaving_hat_hazard_is_the_documented_one():
    """In HAT an episode ends at exp(lp) x (hr_discontinuation x the OST baseline on the
    spell's clock + the HAT-specific early hazard on the HAT episode's clock)."""
    spec = load_history_scenario("ci")
    rates = Rates.of(spec)
    state = new_persons(
        4, rates=rates, rng=np.random.default_rng(0), first_pid=0, regions=(0,), entry_day=None
    )
    c = state.cols
    a = rates.t0 + 7 * 100
    c["tx"][:] = [IN_OST, IN_HAT, IN_HAT, IN_HAT]
    c["regime_start"][:] = a - 3000
    c["ep_start"][:] = [a - 3000, a, a - 365, a - 3000]
    c["alive"][:] = True
    sim = Simulation(rates, state, scale=1.0)
    i = np.arange(4)
    feats = sim._features(i, a)
    tx = c["tx"].copy()
    leave = sim._hazards(i, 100, a, tx, np.full(4, NONE), feats)["leave"]
    tr, lh, ef = spec.treatment, spec.leaving_hat, spec.effects
    risk = np.exp(sim.static["treatment"] + linear_predictor(sim.dynamic["treatment"], feats))
    since = 3000 / DAYS_PER_YEAR
    base = tr.exit_late_per_year + tr.exit_early_excess_per_year * np.exp(
        -since / tr.exit_early_years
    )
    in_hat = np.array([0.0, 0.0, 365 / DAYS_PER_YEAR, 3000 / DAYS_PER_YEAR])
    extra = lh.late_per_year + lh.early_per_year * np.exp(-in_hat / lh.early_years)
    expected = (
        risk / DAYS_PER_YEAR * np.where(tx == IN_HAT, ef.hr_discontinuation * base + extra, base)
    )
    np.testing.assert_allclose(leave, expected, rtol=1e-12)
    # at the start of HAT the HAT-specific hazard is several times the discontinuation one
    assert lh.early_per_year > 3 * ef.hr_discontinuation * base


# --------------------------------------------------------------------------- definitions
def test_outcomes_and_initiator_rules_match_hand_made_example():
    t = {
        name: pd.read_csv(f"{EXAMPLE}/{name}.csv", dtype={"person_id": str})
        for name in ("persons", "treatment_episodes", "deaths", "incarcerations", "charges")
    }
    meta = yaml.safe_load(open(f"{EXAMPLE}/extract.yml"))
    extract = int(np.datetime64(str(meta["extract_date"]), "D").astype(np.int64))
    h0 = int(np.datetime64(str(meta["history_start"]), "D").astype(np.int64))
    exp = pd.read_csv(f"{EXAMPLE}/expected_risk_sets.csv", dtype={"person_id": str})
    rows = exp[exp["role"] != "not eligible"].reset_index(drop=True)
    n = len(rows)
    d = _days(rows["index_date"])
    ep = t["treatment_episodes"]
    hat = ep["medication"] == "diacetylmorphine"
    first_hat = ep[hat].groupby("person_id")["start_date"].min()
    m = rows[["person_id"]].reset_index().merge(ep.reset_index(names="e"), on="person_id")
    e = ep.loc[m["e"]]
    dt = t["deaths"].set_index("person_id")["death_date"]
    em = t["persons"].set_index("person_id")["emigration_date"]
    has_death = rows["person_id"].isin(dt.index).to_numpy()
    death = _days(rows["person_id"].map(dt))
    emig_s = rows["person_id"].map(em)
    fh = _days(rows["person_id"].map(first_hat))
    later_hat = (rows["person_id"].isin(first_hat.index) & (fh > d)).to_numpy()
    common = dict(
        n=n,
        index=d,
        extract=extract,
        death=death,
        has_death=has_death,
        overdose=np.zeros(n, bool),
        emigration=_days(emig_s),
        has_emigration=emig_s.notna().to_numpy(),
        ep_row=m["index"].to_numpy(),
        ep_start=_days(e["start_date"]),
        ep_end=_days(e["end_date"]),
        ep_open=e["end_date"].isna().to_numpy(),
        ep_hat=(e["medication"] == "diacetylmorphine").to_numpy(),
    )
    itt = history_outcomes(**common)
    pp = history_outcomes(**common, pp_censor=np.where(later_hat, fh, np.iinfo(np.int64).max // 4))
    ok = rows["role"] != "excluded initiator"
    for ours, col in (
        (itt.followup_days, "followup_days"),
        (itt.died, "died"),
        (itt.retention_days, "retention_days"),
        (itt.discontinued, "discontinued"),
        (pp.followup_days, "pp_followup_days"),
        (pp.died, "pp_died"),
        (pp.retention_days, "pp_retention_days"),
        (pp.discontinued, "pp_discontinued"),
    ):
        np.testing.assert_array_equal(
            np.asarray(ours, float)[ok], rows.loc[ok, col].astype(float), err_msg=col
        )
    init = rows["role"] != "candidate"
    birth = rows["person_id"].map(t["persons"].set_index("person_id")["birth_year"])
    reason = initiator_reason(
        index=d,
        birth_year=birth.to_numpy(),
        history_start=h0,
        ep_row=common["ep_row"],
        ep_start=common["ep_start"],
        ep_end=common["ep_end"],
        ep_open=common["ep_open"],
        ep_hat=common["ep_hat"],
    )
    assert list(reason[init]) == list(rows.loc[init, "reason"].fillna(""))


# --------------------------------------------------------------------------- the extract
def test_history_extract_follows_the_contract(ci, tmp_path):
    spec, tables, truth = ci
    assert set(tables) == set(COLUMNS_V2)
    for name, cols in COLUMNS_V2.items():
        assert tuple(tables[name].columns) == cols, name
    p = tables["persons"]
    assert p["person_id"].is_unique and set(p["region"]) <= {
        "south-east",
        "west",
        "central",
        "north",
    }
    ids = set(p["person_id"])
    for name in COLUMNS_V2:
        assert set(tables[name]["person_id"]) <= ids, name
    ep = tables["treatment_episodes"]
    assert (ep["end_date"].isna() | (ep["end_date"] >= ep["start_date"])).all()
    assert set(ep["medication"]) == {"diacetylmorphine", "methadone", "buprenorphine", "morphine"}
    # episodes of a person do not overlap
    s, e = _days(ep["start_date"]), _days(ep["end_date"].fillna(pd.Timestamp(spec.extract_date)))
    same = ep["person_id"].to_numpy()[1:] == ep["person_id"].to_numpy()[:-1]
    assert (s[1:][same] > e[:-1][same]).all()
    a = tables["assessments"]
    assert not a.duplicated(["person_id", "assessment_date"]).any()
    assert a["years_opioid_use"].isna().mean() > 0.03  # some answers missing
    h0, x = pd.Timestamp(spec.history_start), pd.Timestamp(spec.extract_date)
    for name, col in (
        ("charges", "charge_date"),
        ("assessments", "assessment_date"),
        ("overdoses", "overdose_date"),
        ("deaths", "death_date"),
    ):
        assert tables[name][col].between(h0, x).all(), name
    # nothing after death or emigration
    stop = tables["deaths"].set_index("person_id")["death_date"]
    for name, col in (
        ("charges", "charge_date"),
        ("overdoses", "overdose_date"),
        ("treatment_episodes", "start_date"),
    ):
        df = tables[name]
        dd = df["person_id"].map(stop)
        assert not (df[col] > dd).any(), name
    out = write_history(tables, truth, tmp_path / "x", spec=spec)
    meta = yaml.safe_load((out / "extract.yml").read_text())
    assert meta["contract_version"] == 2
    assert str(meta["history_start"]) == "2015-01-01" and str(meta["extract_date"]) == "2026-12-31"
    head = (out / "persons.csv").read_text().splitlines()[0]
    assert head == "person_id,sex,birth_year,region,emigration_date"
    assert "group" not in head and "index_date" not in head


def test_same_seed_same_bytes(tmp_path):
    a = generate_extract("ci", out=tmp_path / "a", contract=2)
    assert (
        cli(["--scenario", "ci", "--contract", "2", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    )
    files = sorted(p.name for p in a.iterdir())
    assert "truth.json" in files and "assessments.csv" in files
    match, mismatch, errors = filecmp.cmpfiles(a, tmp_path / "b", files, shallow=False)
    assert mismatch == [] and errors == []
    c = generate_extract("ci", out=tmp_path / "c", contract=2, seed=8)
    assert not filecmp.cmp(a / "charges.csv", c / "charges.csv", shallow=False)
    assert (
        cli(["--scenario", "ci", "--contract", "2", "--n-hat", "3", "--out", str(tmp_path / "d")])
        == 2
    )


def test_truth_fields_and_replays(ci):
    spec, _, truth = ci
    entries = truth["estimands"]
    keys = {(e["estimand"], e["outcome"], e["measure"]) for e in entries}
    for est in ("itt", "per_protocol"):
        for om in (
            ("mortality", "HR"),
            ("overdose_mortality", "HR"),
            ("retention", "HR"),
            ("retention", "RR_12m"),
            ("retention", "RD_12m"),
            ("retention", "RMST_diff"),
            ("crime", "IRR"),
        ):
            assert (est, *om) in keys
    assert all(set(e) >= {"estimand", "outcome", "measure", "value", "definition"} for e in entries)
    res = compute_history_truth(spec)
    # the check of the replay machinery: replaying 'HAT now' repeats the recorded course
    # (up to the rest of the index week)
    assert res.replay_agreement > 0.95
    # those from outside treatment are excluded, with the reason
    assert res.excluded.get("not in OST in the week before", 0) > 0
    assert res.n_initiators > 100
    # the natural course starts HAT later for some comparators; never for per protocol
    assert 0 < res.later_hat_share < 0.5
    v = res.values
    # HAT lowers the crime rate and mortality in both truths (effects as version 1)
    for est in ("itt", "per_protocol"):
        assert v[est][("crime", "IRR")] < 0.85
        assert v[est][("retention", "RD_12m")] > 0


def test_truth_hat_arm_is_the_recorded_course():
    """The truth's 'HAT now' arm is what the initiators did (consistency), not a replay.

    In the recorded index week the HAT start is the person's one competing event, so no
    initiator dies or discontinues in the rest of that week; a replay with fresh numbers
    for that week can (it did for one of the ci truth's 446 initiators).
    """
    spec = HistoryScenario.model_validate_json(load_history_scenario("ci").truth_key())
    ini = _initiator_arms(spec)
    rates = Rates.of(spec)
    left = rates.t0 + WEEK * (ini.week + 1) - ini.day  # days from d to the next week

    def early(a):
        died = a.died & (a.followup_days < left)
        left_tx = a.in_retention & (a.discontinued == 1) & (a.retention_days < left)
        return died | left_tx

    assert not early(ini.arms["hat"]).any()
    assert early(ini.hat_replay).any()
    # the comparators' arms are replays and may leave in the rest of the index week
    assert {"natural", "never"} <= set(ini.arms)
    assert ini.replay_agreement > 0.95


def test_ci_figures_are_plausible(ci):
    spec, tables, _ = ci
    f = history_figures(tables, spec.history_start, spec.extract_date)
    # a quarter of Norway: about 2,000 in OST, 60 HAT starts
    assert 1700 < f["in_ost_2020"] < 2300
    assert 35 < f["hat_starts_total"] < 90
    assert f["hat_starts_from_ost_share"] > 0.7
    assert 0.2 < f["forms_injecting_share"] < 0.45


# --------------------------------------------------------------------------- default (slow)
@pytest.fixture(scope="module")
def default():
    spec = load_history_scenario("default")
    tables, _ = generate_history(spec, np.random.default_rng(spec.seed), truth=False)
    return spec, tables, history_figures(tables, spec.history_start, spec.extract_date)


@pytest.mark.slow
def test_default_calibration(default):
    """Realised figures of the default scenario against shared/calibration.md; bounds
    allow sampling noise (about 2 SE) around the targets."""
    _, _, f = default
    assert 7250 < f["in_ost_2016"] < 7850  # 7,554 received OST in 2016
    for y in range(2017, 2024):
        assert 7350 < f[f"in_ost_{y}"] < 8500, y  # about 7,600-8,300
    assert 780 < f["intakes_per_year"] < 990  # 800-990
    assert 605 < f["exits_per_year"] < 695  # 620-680 (seed to seed SD about 12)
    assert 0.27 < f["women_share_ost_2017"] < 0.33  # about 30%
    assert 44 < f["mean_age_ost_2017"] < 46.5  # 44.9
    assert 46 < f["mean_age_ost_2021"] < 48.5  # 47
    assert 0.52 < f["share_buprenorphine_2020"] < 0.62
    assert 0.54 < f["retention_12m_new_spells"] < 0.63  # 57-61%
    assert 11 < f["mortality_in_treatment_per_1000py"] < 17  # about 14
    assert 28 < f["mortality_out_of_treatment_per_1000py"] < 43  # about 35
    assert 0.5 < f["charges_in_treatment_per_py"] < 0.72  # 0.63
    assert 1.3 < f["charges_out_of_treatment_per_py"] < 1.85  # 1.57
    assert 0.33 < f["charges_3y_share_none"] < 0.46  # 39%
    assert 0.32 < f["charges_3y_top10_share"] < 0.46  # 38%
    assert 75 < f["hat_starts_first_2_years"] < 125  # about 100
    assert 215 < f["hat_starts_total"] < 285  # about 250
    assert f["hat_starts_from_ost_share"] > 0.8  # most switch from OST
    # about 30 of 100 starters left HAT within 2 years, half of them to ordinary OST
    # (SERAF midway report 2024); about 140 starters followed 2 years, 40 leavers
    assert 0.2 < f["hat_left_2y_share"] < 0.4
    assert 0.3 < f["hat_leavers_to_ost_share"] < 0.75


def _crude(tables, index: pd.DataFrame, extract) -> tuple[float, float]:
    """Crude charge rate from each row's date to the end of follow-up, with a person-level
    (robust) variance of the log rate: (log rate, SE)."""
    x = pd.Timestamp(extract)
    stop = pd.Series(x, index=tables["persons"]["person_id"])
    em = tables["persons"].dropna(subset=["emigration_date"])
    stop.loc[em["person_id"]] = em["emigration_date"].to_numpy()
    stop.loc[tables["deaths"]["person_id"]] = tables["deaths"]["death_date"].to_numpy()
    idx = index.assign(stop=index["person_id"].map(stop).clip(upper=x))
    idx = idx[idx["stop"] > idx["date"]].reset_index(drop=True)
    years = (idx["stop"] - idx["date"]).dt.days / 365.25
    ch = tables["charges"].merge(idx.reset_index(names="row"), on="person_id")
    ch = ch[(ch["charge_date"] >= ch["date"]) & (ch["charge_date"] <= ch["stop"])]
    y = ch.groupby("row").size().reindex(idx.index, fill_value=0).to_numpy()
    rate = y.sum() / years.sum()
    se = np.sqrt(np.sum((y - rate * years) ** 2)) / y.sum()
    return np.log(rate), se


@pytest.mark.slow
def test_uptake_is_confounded_in_time(default):
    """Initiators against everyone in OST, and against prevalent OST patients on random
    dates: crude crime rate ratios miss the true effect (ITT and per protocol) by several
    standard errors."""
    spec, tables, _ = default
    ep = tables["treatment_episodes"]
    hat = ep[ep["medication"] == "diacetylmorphine"]
    first = hat.groupby("person_id")["start_date"].min().rename("date").reset_index()
    log_hat, se_hat = _crude(tables, first, spec.extract_date)
    ost = ep[ep["medication"] != "diacetylmorphine"]
    ever_hat = set(first["person_id"])
    # (a) everyone in OST when HAT opened, followed from that day
    d0 = pd.Timestamp("2022-01-01")
    on = ost[(ost["start_date"] <= d0) & (ost["end_date"].isna() | (ost["end_date"] >= d0))]
    a = pd.DataFrame({"person_id": on["person_id"].unique(), "date": d0})
    # (b) prevalent OST patients on random dates 2022-2025 (never HAT before the date)
    rng = np.random.default_rng(5)
    dates = pd.to_datetime("2022-01-01") + pd.to_timedelta(rng.integers(0, 4 * 365, 4000), "D")
    pick = ost.sample(4000, replace=True, random_state=6).assign(date=dates.to_numpy())
    pick = pick[
        (pick["start_date"] <= pick["date"])
        & (pick["end_date"].isna() | (pick["end_date"] >= pick["date"]))
    ]
    pick = pick[~pick["person_id"].isin(ever_hat)].drop_duplicates("person_id")
    b = pick[["person_id", "date"]]
    truth = compute_history_truth(spec).values
    for name, comparison in (("everyone in OST", a), ("prevalent on random dates", b)):
        log_c, se_c = _crude(tables, comparison, spec.extract_date)
        crude = log_hat - log_c
        se = np.hypot(se_hat, se_c)
        for est in ("itt", "per_protocol"):
            miss = abs(crude - np.log(truth[est][("crime", "IRR")])) / se
            assert miss > 3, (name, est, np.exp(crude), miss)
