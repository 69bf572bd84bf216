"""True effects of initiating HAT now, for the target trial of a history extract.

A large population of the HAT sites' regions (``truth.population_scale`` x Norway's, HAT
capacity scaled alike) is simulated with a fixed seed (:mod:`synthetic.history_sim`),
keeping each HAT starter's state at the start of its index week. The initiators the
contract analyses are kept (in OST in the 7 days before, aged 18 or more, the 730-day
lookback covered; :func:`synthetic.history_derive.initiator_reason`). Each has three
potential courses from its index date d:

- ``hat``: initiate HAT on d. For an actual initiator this is what happened (consistency),
  so the arm is the *recorded* course of the population run, not a replay;
- ``natural``: do not initiate on d; afterwards the natural course, which may start HAT
  later at the person's own hazard (the population's capacity and weights are kept);
- ``never``: never initiate HAT.

The last two are *replayed* from the index date with the same random numbers (common
random numbers: every uniform is a hash of person, week and slot; the rest of the index
week uses one fresh set, shared by both arms, since the recorded numbers of that week
drew the HAT start). The recorded course cannot be replayed exactly: in the recorded index
week the HAT start is the person's one competing event of the week (no death, exit or
prison in the rest of it), while a replay with fresh numbers could have one. ``hat`` is
nevertheless replayed as well, only as a check of the replay machinery: the share of
initiators whose replay repeats the recorded course (``hat_replay_agreement``; below 1
only through the rest of the index week).

The intention-to-treat truth contrasts ``hat`` with ``natural`` (the comparator is followed
whatever it does later); the per-protocol truth contrasts ``hat`` with ``never`` (the
strategy "never initiate", which the per-protocol analysis emulates by censoring a
comparator's later HAT start and weighting). Both are marginal effects in the treated
(the analysed initiators), computed on stacked potential outcomes derived by the
contract's version-2 definitions (:func:`synthetic.history_derive.history_outcomes`) with
the version-1 estimators of :mod:`synthetic.truth` (Cox HR with treatment only, Kaplan-Meier
retention at 12 months and RMST to 730 days, ratio of charge rates). The initiators are
split into ``n_batches`` batches; the spread of the batch estimates gives the Monte Carlo
error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from analysis.data.contract import REGIONS
from analysis.data.measures import scale_of
from synthetic.derive import Derived
from synthetic.history_derive import history_outcomes, initiator_reason
from synthetic.history_sim import (
    HAT_MED,
    NEVER,
    WEEK,
    Rates,
    Simulation,
    State,
    simulate_population,
    week_base,
)
from synthetic.history_spec import HistoryScenario
from synthetic.population import day_number
from synthetic.truth import (
    PotentialOutcomes,
    _study_se,
    cox_hr_binary,
    estimands,
    scaled,
)

__all__ = ["HistoryTruth", "compute_history_truth", "history_truth_json"]

ARMS = ("hat", "natural", "never")  # replayed ('hat' only as a check of the replay)
ESTIMANDS = {"itt": "natural", "per_protocol": "never"}

DEFINITIONS = {
    ("mortality", "HR"): "marginal hazard ratio of all-cause death, initiate HAT now vs {c}, "
    "in the analysed initiators (ATT): Cox model with treatment only on stacked potential "
    "outcomes; follow-up from the index date to death, emigration or the extract date",
    ("overdose_mortality", "HR"): "marginal cause-specific hazard ratio of overdose death "
    "(other deaths censored), initiate HAT now vs {c}, ATT",
    ("retention", "HR"): "marginal hazard ratio of discontinuation of the spell (gaps <= 30 "
    "days bridged, HAT included) holding the last OST day before the index date, initiate "
    "HAT now vs {c}, ATT; version 1's censoring rules",
    ("retention", "RR_12m"): "Kaplan-Meier retention at 365.25 days, HAT now / {c}, ATT",
    ("retention", "RD_12m"): "Kaplan-Meier retention at 365.25 days, HAT now - {c}, ATT",
    ("retention", "RD_24m"): "Kaplan-Meier retention at 730.5 days, HAT now - {c}, ATT",
    ("retention", "RMST_diff"): "difference in restricted mean retention time up to 730 days "
    "(days), HAT now - {c}, Kaplan-Meier, ATT",
    ("mortality", "RD_12m"): "difference in the cumulative risk of death (1 - Kaplan-Meier) by "
    "365.25 days, HAT now - {c}, ATT (negative: fewer deaths with HAT)",
    ("mortality", "RD_24m"): "difference in the cumulative risk of death (1 - Kaplan-Meier) by "
    "730.5 days, HAT now - {c}, ATT (negative: fewer deaths with HAT)",
    ("mortality", "RMST_diff"): "difference in restricted mean survival time up to 730 days "
    "(days alive within the first 730 days), HAT now - {c}, Kaplan-Meier, ATT",
    ("overdose_mortality", "RD_12m"): "difference in the cumulative incidence of overdose death "
    "by 365.25 days (Aalen-Johansen, other deaths competing), HAT now - {c}, ATT",
    ("overdose_mortality", "RD_24m"): "difference in the cumulative incidence of overdose death "
    "by 730.5 days (Aalen-Johansen, other deaths competing), HAT now - {c}, ATT",
    ("crime", "IRR"): "ratio of marginal charge rates, HAT now vs {c}, ATT: follow-up charges "
    "/ crime person-years (index date to end of follow-up, both days included, prison days "
    "removed) under each potential outcome",
    ("crime", "ratio_of_rate_ratios"): "(HAT now follow-up / baseline rate) / ({c} follow-up "
    "/ baseline rate) in the treated: the baseline is shared, so this equals crime/IRR",
}
COMPARATOR = {
    "itt": "do not initiate now (natural course afterwards, which may start HAT later)",
    "per_protocol": "never initiate HAT",
}


@dataclass(frozen=True)
class HistoryTruth:
    """True ATT effects by estimand, with Monte Carlo errors and the population's sizes."""

    values: dict[str, dict[tuple[str, str], float]]  # estimand -> (outcome, measure) -> value
    mc_se: dict[str, dict[tuple[str, str], float]]  # log scale for ratio measures
    mc_method: dict[str, dict[tuple[str, str], str]]  # "batches" or "cox_model_se"
    study_se: dict[str, dict[tuple[str, str], float]]  # approx. SE of a study at scale 1
    n_starters: int
    n_initiators: int  # analysed (eligible) initiators
    excluded: dict[str, int]
    later_hat_share: float  # natural course: share of comparators starting HAT later
    replay_agreement: float  # share of 'hat' replays repeating the recorded course (a check)
    n_batches: int
    population_scale: float


def _replay_state(snap_state: State, week: np.ndarray, day: np.ndarray, rates: Rates, arm: str):
    s = snap_state.take(np.arange(len(snap_state)))
    c = s.cols
    c["enter_week"][:] = week
    c["gone"][:] = False
    c["alive"][:] = False
    c["t_from"][:] = (day - (rates.t0 + WEEK * week)).astype(float)
    if arm == "natural":
        c["no_hat_week"][:] = week
    elif arm == "never":
        c["hat_policy"][:] = 1
    return s


def _arm_outcomes(
    sim: Simulation | None,
    replay: Simulation,
    rows: np.ndarray,
    orig_pid: np.ndarray,
    k: np.ndarray,
    d: np.ndarray,
    extract: int,
) -> tuple[Derived, np.ndarray]:
    """Outcomes of replay rows ``rows`` (pids in the replay): records written before the
    index week in the population run ``sim``, then the replay's own (``sim`` None: the
    replay's records only, for the recorded course itself)."""
    n = rows.size
    # factual records before week k, by original person
    pos = pd.Series(np.arange(n), index=orig_pid)

    def before(table: str, cols: tuple[str, ...]):
        if sim is None:
            return {c: np.zeros(0, dtype=np.int64) for c in cols}, np.zeros(0, dtype=np.int64)
        a = sim.log.arrays(table, cols)
        m = np.isin(a["pid"], orig_pid)
        r = pos.loc[a["pid"][m]].to_numpy()
        keep = a["week"][m] < k[r]
        return {c: a[c][m][keep] for c in cols}, r[keep]

    def mine(table: str, cols: tuple[str, ...]):
        a = replay.log.arrays(table, cols)
        rpos = pd.Series(np.arange(n), index=rows)
        m = np.isin(a["pid"], rows)
        return {c: a[c][m] for c in cols}, rpos.loc[a["pid"][m]].to_numpy()

    e0, r0 = before("episodes", ("pid", "start", "end", "med"))
    e1, r1 = mine("episodes", ("pid", "start", "end", "med"))
    p0, q0 = before("prison", ("pid", "start", "end"))
    p1, q1 = mine("prison", ("pid", "start", "end"))
    dt, dr = mine("deaths", ("pid", "day", "overdose"))
    em, er = mine("emigrations", ("pid", "day"))
    ch, cr = mine("charges", ("pid", "day", "offence"))
    hs, hr_ = mine("hat_starts", ("pid", "day", "from_tx"))
    death = np.zeros(n, dtype=np.int64)
    has_death = np.zeros(n, dtype=bool)
    overdose = np.zeros(n, dtype=bool)
    death[dr], has_death[dr], overdose[dr] = dt["day"], True, dt["overdose"]
    emig = np.zeros(n, dtype=np.int64)
    has_emig = np.zeros(n, dtype=bool)
    emig[er], has_emig[er] = em["day"], True
    stop = np.where(has_death, death, np.where(has_emig, emig, NEVER))
    ep_row = np.r_[r0, r1]
    ep_start = np.r_[e0["start"], e1["start"]]
    ep_end = np.r_[e0["end"], e1["end"]]
    ep_med = np.r_[e0["med"], e1["med"]]
    pr_row = np.r_[q0, q1]
    pr_end = np.minimum(np.r_[p0["end"], p1["end"]], stop[pr_row])
    derived = history_outcomes(
        n=n,
        index=d,
        extract=extract,
        death=death,
        has_death=has_death,
        overdose=overdose,
        emigration=emig,
        has_emigration=has_emig,
        ep_row=ep_row,
        ep_start=ep_start,
        ep_end=np.minimum(ep_end, extract),
        ep_open=ep_end > extract,
        ep_hat=ep_med == HAT_MED,
        pr_row=pr_row,
        pr_start=np.r_[p0["start"], p1["start"]],
        pr_end=np.minimum(pr_end, extract),
        pr_open=pr_end > extract,
        ch_row=cr,
        ch_day=ch["day"],
    )
    later = np.zeros(n, dtype=bool)
    later[hr_[hs["day"] > d[hr_]]] = True
    return derived, later


def _model_se(po: PotentialOutcomes) -> dict[tuple[str, str], float]:
    """Model-based SEs of the pooled Cox log hazard ratios."""
    h, o = po.hat, po.ost
    n = h.followup_days.size
    x = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    t = np.r_[h.followup_days, o.followup_days]
    out = {
        ("mortality", "HR"): cox_hr_binary(t, np.r_[h.died, o.died], x)[1],
        ("overdose_mortality", "HR"): cox_hr_binary(
            t, np.r_[h.overdose_death, o.overdose_death], x
        )[1],
    }
    rh, ro = h.in_retention, o.in_retention
    rt = np.r_[h.retention_days[rh], o.retention_days[ro]]
    re = np.r_[h.discontinued[rh], o.discontinued[ro]].astype(bool)
    rx = np.r_[np.ones(rh.sum(), bool), np.zeros(ro.sum(), bool)]
    out[("retention", "HR")] = cox_hr_binary(rt, re, rx)[1]
    return out


def _batch_estimands(po: PotentialOutcomes, idx: np.ndarray) -> dict | None:
    """Estimands of one batch, ``None`` when a batch has no event of some outcome."""
    try:
        with np.errstate(all="ignore"):
            return estimands(
                PotentialOutcomes(
                    hat=po.hat.take(idx),
                    ost=po.ost.take(idx),
                    charges_hat=po.charges_hat[idx],
                    charges_ost=po.charges_ost[idx],
                )
            )
    except (ZeroDivisionError, ValueError, FloatingPointError):
        return None


def _analysed_starters(
    spec: HistoryScenario, sim: Simulation, snap
) -> tuple[np.ndarray, dict[str, int]]:
    """The HAT starters the contract analyses (eligible initiators), and the others' reasons."""
    c = snap.state.cols
    # eligibility of the starters by the contract (records of the population run)
    ep = sim.log.arrays("episodes", ("pid", "start", "end", "med"))
    pos = pd.Series(np.arange(len(snap.day)), index=c["pid"])
    m = np.isin(ep["pid"], c["pid"])
    er = pos.loc[ep["pid"][m]].to_numpy()
    birth_year = (
        c["birth_day"].astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    )
    reason = initiator_reason(
        index=snap.day,
        birth_year=birth_year,
        history_start=day_number(spec.history_start),
        ep_row=er,
        ep_start=ep["start"][m],
        ep_end=np.minimum(ep["end"][m], NEVER - 1),
        ep_open=ep["end"][m] >= NEVER,
        ep_hat=ep["med"][m] == HAT_MED,
    )
    excluded = {str(k): int(v) for k, v in pd.Series(reason[reason != ""]).value_counts().items()}
    return np.flatnonzero(reason == ""), excluded


def _replay(
    spec: HistoryScenario, sim: Simulation, rates: Rates, state: State, week, day
) -> tuple[dict[str, Derived], dict[str, np.ndarray]]:
    """Replay the initiators three times from the index date (common random numbers).

    Returns each replayed arm's outcomes and whether each person starts HAT later in it.
    """
    ts = spec.truth
    n = len(state)
    orig = state.cols["pid"].copy()
    parts = []
    for a, arm in enumerate(ARMS):
        s = _replay_state(state, week, day, rates, arm)
        s.cols["pid"][:] = a * n + np.arange(n)
        parts.append(s)
    all_rows = State.concat(parts)
    order = np.argsort(all_rows.cols["enter_week"], kind="stable")
    all_rows = all_rows.take(order)
    replay = Simulation(rates, all_rows, scale=ts.population_scale, weights=sim.weights)
    # the 'hat' rows start HAT on d, with the numbers of the recorded start
    cols = replay.s.cols
    hat_rows = np.flatnonzero(cols["pid"] < n)
    k0 = int(week.min())
    for k in np.unique(week):
        j = hat_rows[cols["enter_week"][hat_rows] == k]
        replay.apply_hat_start(j, int(k), day[cols["pid"][j]], week_base(cols["key"][j], int(k)))
    replay.run(first_week=k0)

    extract = day_number(spec.extract_date)
    arms = {}
    later = {}
    for a, arm in enumerate(ARMS):
        arms[arm], later[arm] = _arm_outcomes(
            sim, replay, a * n + np.arange(n), orig, week, day, extract
        )
    return arms, later


@dataclass(frozen=True)
class _Initiators:
    """The analysed initiators' potential outcomes by arm, and the population's counts."""

    arms: dict[str, Derived]  # 'hat': the recorded course; 'natural', 'never': replays
    later: dict[str, np.ndarray]  # starts HAT after the index date, by arm
    hat_replay: Derived  # the 'hat' arm replayed: the check of the replay machinery
    replay_agreement: float  # share of initiators whose 'hat' replay repeats the record
    week: np.ndarray  # index week
    day: np.ndarray  # index date
    n_starters: int
    excluded: dict[str, int]


def _initiator_arms(spec: HistoryScenario) -> _Initiators:
    """Simulate the truth's population and the analysed initiators' three arms."""
    ts = spec.truth
    rng = np.random.default_rng(ts.seed)
    rates = Rates.of(spec)
    regions = tuple(sorted({REGIONS.index(s.region) for s in spec.sites}))
    sim = simulate_population(spec, rng, scale=ts.population_scale, regions=regions, snapshots=True)
    snap = sim.snapshots()
    ok, excluded = _analysed_starters(spec, sim, snap)
    state, week, day = snap.state.take(ok), snap.week[ok], snap.day[ok]
    replayed, later = _replay(spec, sim, rates, state, week, day)
    # 'hat' is what the initiators did (consistency): their recorded course
    orig = state.cols["pid"]
    rec, rec_later = _arm_outcomes(None, sim, orig, orig, week, day, day_number(spec.extract_date))
    rep = replayed["hat"]
    agree = float(
        np.mean(
            (rec.died == rep.died)
            & (rec.followup_days == rep.followup_days)
            & (rec.retention_days == rep.retention_days)
        )
    )
    return _Initiators(
        arms={"hat": rec, "natural": replayed["natural"], "never": replayed["never"]},
        later={"hat": rec_later, "natural": later["natural"], "never": later["never"]},
        hat_replay=rep,
        replay_agreement=agree,
        week=week,
        day=day,
        n_starters=len(snap.day),
        excluded=excluded,
    )


def _errors(
    po: PotentialOutcomes, values: dict, batch: np.ndarray, n_batches: int
) -> tuple[dict, dict]:
    """Monte Carlo error of each estimate and how it was found ("batches" or "cox_model_se")."""
    per_batch = [_batch_estimands(po, np.flatnonzero(batch == b)) for b in range(n_batches)]
    mc, method = {}, {}
    model_se = _model_se(po)
    for key_ in values:
        v = np.array([scaled(key_[1], b[key_]) if b else np.nan for b in per_batch])
        usable = bool(np.all(np.isfinite(v)) and np.all(np.abs(v) < 3))
        if usable or key_ not in model_se:
            # (a batch without an estimate leaves the error unknown: NaN)
            mc[key_] = float(np.std(v, ddof=1) / math.sqrt(v.size))
            method[key_] = "batches"
        else:
            # rare events (a batch with no or very few events): the pooled Cox
            # model's SE, which ignores the common random numbers' positive
            # correlation between arms and so overstates the error
            mc[key_] = model_se[key_]
            method[key_] = "cox_model_se"
    return mc, method


@lru_cache(maxsize=4)
def _compute(key: str) -> HistoryTruth:
    spec = HistoryScenario.model_validate_json(key)
    ts = spec.truth
    ini = _initiator_arms(spec)
    arms = ini.arms
    n = ini.day.size
    batch = np.random.default_rng(ts.seed + 1).permutation(n) % ts.n_batches
    values, mc, study, method = {}, {}, {}, {}
    n_study = max(n / ts.population_scale, 1.0)
    for est, comparator in ESTIMANDS.items():
        po = PotentialOutcomes(
            hat=arms["hat"],
            ost=arms[comparator],
            charges_hat=arms["hat"].followup_charges.astype(float),
            charges_ost=arms[comparator].followup_charges.astype(float),
        )
        values[est] = estimands(po)
        mc[est], method[est] = _errors(po, values[est], batch, ts.n_batches)
        study[est] = {key_: v / math.sqrt(n_study) for key_, v in _study_se(po, 1, 4).items()}
    return HistoryTruth(
        values=values,
        mc_se=mc,
        mc_method=method,
        study_se=study,
        n_starters=ini.n_starters,
        n_initiators=n,
        excluded=ini.excluded,
        later_hat_share=float(ini.later["natural"].mean()),
        replay_agreement=ini.replay_agreement,
        n_batches=ts.n_batches,
        population_scale=ts.population_scale,
    )


def compute_history_truth(spec: HistoryScenario) -> HistoryTruth:
    """True ITT and per-protocol ATT effects (cached per parameter set; not seed or scale)."""
    return _compute(HistoryScenario.model_validate_json(spec.truth_key()).model_dump_json())


def history_truth_json(spec: HistoryScenario) -> dict:
    """The contents of ``truth.json`` for a history scenario."""
    res = compute_history_truth(spec)
    entries, errors = [], {}
    for est in ESTIMANDS:
        for (outcome, measure), value in res.values[est].items():
            entries.append(
                {
                    "estimand": est,
                    "outcome": outcome,
                    "measure": measure,
                    "value": round(float(value), 6),
                    "definition": DEFINITIONS[(outcome, measure)].format(c=COMPARATOR[est]),
                }
            )
            mc = res.mc_se[est][(outcome, measure)]
            st = res.study_se[est][(outcome, measure)]
            errors[f"{est}/{outcome}/{measure}"] = {
                "scale": scale_of(measure),
                "method": res.mc_method[est][(outcome, measure)],
                "mc_se": round(mc, 6) if math.isfinite(mc) else None,
                "study_se_approx": round(st, 6),
                "mc_se_over_study_se": round(mc / st, 4) if st > 0 and math.isfinite(mc) else None,
            }
    ef = spec.effects
    return {
        "contract_version": 2,
        "scenario": spec.name,
        "seed": spec.seed,
        "estimands": entries,
        "conditional": {
            "hr_discontinuation_hat_vs_ost": ef.hr_discontinuation,
            "hr_mortality_in_hat_vs_in_ost": ef.hr_mortality,
            "overdose_share_ratio_hat": ef.overdose_share_ratio,
            "irr_crime_in_hat_vs_in_ost": ef.irr_crime,
            "note": "effects are conditional on the person's state and act while in HAT; "
            "the estimands are marginal effects in the analysed initiators of initiating "
            "HAT on the index date vs not initiating then (itt: natural course afterwards, "
            "which may start HAT later) or never initiating (per_protocol)",
        },
        "monte_carlo": {
            "population_scale": res.population_scale,
            "n_hat_starters": res.n_starters,
            "n_initiators": res.n_initiators,
            "excluded_initiators": res.excluded,
            "comparators_starting_hat_later_share": round(res.later_hat_share, 4),
            "hat_replay_agreement": round(res.replay_agreement, 4),
            "n_batches": res.n_batches,
            "study": "a study of the scenario at national scale, matched 1:4",
            "errors": errors,
        },
    }
