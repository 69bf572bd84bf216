"""True marginal effects in the treated (ATT) from coupled potential outcomes.

A large population is drawn from the HAT patients' distribution (site regions and start
dates, covariates tilted by the selection probability; :func:`synthetic.selection.draw_treated`).
Each person's course is simulated twice from the index date, once starting HAT and once
staying in OST, with the *same* random numbers (common random numbers), the same
emigration time and the same candidate prison entries. Both potential outcomes are then
turned into the contract's outcomes by :func:`synthetic.derive.derive` (follow-up censored
at emigration and the extract date exactly as in the data, retention with the 30-day gap
rule and its censoring of spells ending within the gap before emigration or the extract
date, crime person-time from the index date to the end of follow-up with both days included
and without prison days), and each estimand is computed the way the
analysis defines it, on the stacked potential outcomes with treatment as the only
covariate:

- ``HR``: Cox partial likelihood (Efron ties), exact, one binary covariate;
- ``RR_12m``, ``RD_12m``, ``RD_24m``, ``RMST_diff``: Kaplan-Meier of retention in each arm
  (probability of still being in treatment, HAT - OST);
- ``mortality/RD_12m``, ``RD_24m``, ``RMST_diff``: Kaplan-Meier of death in each arm (the
  cumulative risk 1 - S, HAT - OST; days alive within 730 days);
- ``overdose_mortality/RD_12m``, ``RD_24m``: Aalen-Johansen cumulative incidence of overdose
  death with other deaths competing, HAT - OST;
- ``crime/IRR``: total expected follow-up charges / total crime person-years per arm
  (expected counts given each simulated path, which removes Poisson noise).

The population is drawn in ``n_batches`` independent batches; the estimate on all
batches is the truth and the spread between batches its Monte Carlo error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from analysis.data.contract import DAYS_PER_YEAR
from analysis.data.measures import is_ratio, scale_of
from synthetic.derive import Derived, derive
from synthetic.outcomes import (
    expected_followup_charges,
    prison_candidates,
    prison_stays,
    simulate_course,
)
from synthetic.population import HAT_MED, People, day_number, multipliers
from synthetic.selection import draw_treated
from synthetic.spec import Scenario

__all__ = [
    "PotentialOutcomes",
    "TruthResult",
    "aj_cif_at",
    "compute_truth",
    "conditional_parameters",
    "cox_hr_binary",
    "estimands",
    "km_at",
    "km_rmst",
    "potential_outcomes",
    "scaled",
    "truth_json",
]

RETENTION_T = 365.25
RMST_TAU = 730.0
#: horizons of the risk differences (12 and 24 months)
RISK_TIMES = {"12m": 365.25, "24m": 730.5}

DEFINITIONS = {
    ("mortality", "HR"): "marginal hazard ratio of all-cause death, HAT vs OST, in the treated "
    "(ATT): Cox model with treatment only on stacked potential outcomes; follow-up from "
    "index to death, emigration or extract date",
    ("overdose_mortality", "HR"): "marginal cause-specific hazard ratio of overdose death "
    "(other deaths censored), HAT vs OST, ATT, Cox on stacked potential outcomes",
    ("retention", "HR"): "marginal hazard ratio of discontinuation (end of the spell holding "
    "the index date; gaps <= 30 days bridged; death, emigration, extract date censor, and a "
    "spell ending fewer than 30 days before emigration or the extract date is censored at its "
    "end), HAT vs OST, ATT, Cox on stacked potential outcomes",
    ("retention", "RR_12m"): "Kaplan-Meier retention at 365.25 days, HAT / OST, ATT",
    ("retention", "RD_12m"): "Kaplan-Meier retention at 365.25 days, HAT - OST, ATT",
    ("retention", "RD_24m"): "Kaplan-Meier retention at 730.5 days, HAT - OST, ATT",
    ("retention", "RMST_diff"): "difference in restricted mean retention time up to 730 days "
    "(days), HAT - OST, Kaplan-Meier, ATT",
    ("mortality", "RD_12m"): "difference in the cumulative risk of death (1 - Kaplan-Meier) by "
    "365.25 days, HAT - OST, ATT (negative: fewer deaths with HAT)",
    ("mortality", "RD_24m"): "difference in the cumulative risk of death (1 - Kaplan-Meier) by "
    "730.5 days, HAT - OST, ATT (negative: fewer deaths with HAT)",
    ("mortality", "RMST_diff"): "difference in restricted mean survival time up to 730 days "
    "(days alive within the first 730 days), HAT - OST, Kaplan-Meier, ATT",
    ("overdose_mortality", "RD_12m"): "difference in the cumulative incidence of overdose death "
    "by 365.25 days (Aalen-Johansen, other deaths competing), HAT - OST, ATT",
    ("overdose_mortality", "RD_24m"): "difference in the cumulative incidence of overdose death "
    "by 730.5 days (Aalen-Johansen, other deaths competing), HAT - OST, ATT",
    ("crime", "IRR"): "ratio of marginal charge rates, HAT vs OST, ATT: total follow-up "
    "charges / total crime person-years (index date to end of follow-up, both days included, "
    "prison days removed) under each potential outcome",
    ("crime", "ratio_of_rate_ratios"): "(HAT follow-up / baseline rate) / (OST follow-up / "
    "baseline rate) in the treated: the baseline (730 days before index) is the same for "
    "both potential outcomes, so this equals crime/IRR",
}


# --------------------------------------------------------------------------- estimators
def cox_hr_binary(time: np.ndarray, event: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Cox hazard ratio for one binary covariate, Efron's method for ties; exact Newton.

    Returns ``(log_hr, se)`` with the model-based standard error.
    """
    event = np.asarray(event, dtype=bool)
    x = np.asarray(x, dtype=bool)
    times, inv = _distinct(time)
    k = times.size
    n1 = np.bincount(inv[x], minlength=k)[::-1].cumsum()[::-1].astype(float)
    n0 = np.bincount(inv[~x], minlength=k)[::-1].cumsum()[::-1].astype(float)
    d1 = np.bincount(inv[x & event], minlength=k).astype(float)
    d0 = np.bincount(inv[~x & event], minlength=k).astype(float)
    d = d1 + d0
    has = d > 0
    n1, n0, d1, d0, d = n1[has], n0[has], d1[has], d0[has], d[has]
    # Efron: for tied deaths, l = 0..d-1 remove l/d of the tied risk
    rep = np.repeat(np.arange(d.size), d.astype(np.int64))
    first = np.r_[0, np.cumsum(d.astype(np.int64))[:-1]]
    frac = (np.arange(rep.size) - first[rep]) / d[rep]
    a = n1[rep] - frac * d1[rep]
    b = n0[rep] - frac * d0[rep]
    total_d1 = d1.sum()
    beta = 0.0
    for _ in range(50):
        e = math.exp(beta)
        den = a * e + b
        score = total_d1 - np.sum(a * e / den)
        info = np.sum(a * e * b / den**2)
        step = score / info
        beta += step
        if abs(step) < 1e-12:
            break
    return beta, 1 / math.sqrt(info)


def _distinct(time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct times and each time's position (fast path for whole days)."""
    time = np.asarray(time, dtype=float)
    if time.size and time.min() >= 0 and time.max() < 1e6 and np.all(time == np.floor(time)):
        days = time.astype(np.int64)
        present = np.bincount(days) > 0
        pos = np.cumsum(present) - 1
        return np.flatnonzero(present).astype(float), pos[days]
    return np.unique(time, return_inverse=True)


def km_at(time: np.ndarray, event: np.ndarray, t: float) -> float:
    """Kaplan-Meier survival at ``t`` (events at times <= t count)."""
    times, inv = _distinct(time)
    at_risk = np.bincount(inv, minlength=times.size)[::-1].cumsum()[::-1]
    d = np.bincount(inv, weights=event.astype(float), minlength=times.size)
    s = np.cumprod(1 - d / at_risk)
    i = np.searchsorted(times, t, side="right") - 1
    return 1.0 if i < 0 else float(s[i])


def km_rmst(time: np.ndarray, event: np.ndarray, tau: float) -> float:
    """Restricted mean survival time up to ``tau`` from the Kaplan-Meier curve."""
    times, inv = _distinct(time)
    at_risk = np.bincount(inv, minlength=times.size)[::-1].cumsum()[::-1]
    d = np.bincount(inv, weights=event.astype(float), minlength=times.size)
    s = np.cumprod(1 - d / at_risk)
    keep = times < tau
    steps_t = np.r_[0.0, times[keep], tau]
    steps_s = np.r_[1.0, s[keep]]
    return float(np.sum(steps_s * np.diff(steps_t)))


def aj_cif_at(time: np.ndarray, cause: np.ndarray, t: float) -> float:
    """Aalen-Johansen cumulative incidence of cause 1 at ``t`` (0 censored, 2 competing)."""
    times, inv = _distinct(time)
    at_risk = np.bincount(inv, minlength=times.size)[::-1].cumsum()[::-1]
    d1 = np.bincount(inv, weights=(cause == 1).astype(float), minlength=times.size)
    d = np.bincount(inv, weights=(cause > 0).astype(float), minlength=times.size)
    s_minus = np.r_[1.0, np.cumprod(1 - d / at_risk)[:-1]]
    i = np.searchsorted(times, t, side="right") - 1
    return 0.0 if i < 0 else float(np.sum((s_minus * d1 / at_risk)[: i + 1]))


# --------------------------------------------------------------------------- potential outcomes
@dataclass(frozen=True)
class PotentialOutcomes:
    """Derived outcomes under HAT (``hat``) and OST (``ost``) for the same persons."""

    hat: Derived
    ost: Derived
    charges_hat: np.ndarray  # expected follow-up charges
    charges_ost: np.ndarray


def potential_outcomes(
    people: People, spec: Scenario, rng: np.random.Generator
) -> PotentialOutcomes:
    """Simulate both potential outcomes from the index date with common random numbers."""
    n = len(people)
    mult = multipliers(people, spec)
    extract_rel = (day_number(spec.extract_date) - people.index_day).astype(np.int64)
    admin_end = extract_rel + 1.0
    em_rate = spec.emigration.per_1000py / 1000 / DAYS_PER_YEAR
    emig = rng.exponential(1 / em_rate, n) if em_rate > 0 else np.full(n, np.inf)
    cands = prison_candidates(mult["crime"], admin_end, spec, rng)
    course_seed = rng.integers(2**63)
    out = {}
    for arm in ("hat", "ost"):
        if arm == "hat":
            first_med = np.full(n, HAT_MED, dtype=np.int8)
            first_start = np.zeros(n)
        else:
            first_med = people.current_med
            first_start = people.current_start.astype(float)
        course = simulate_course(
            first_med=first_med,
            first_start=first_start,
            treatment_mult=mult["treatment"],
            mortality_mult=mult["mortality"],
            admin_end=admin_end,
            emigration_time=emig,
            spec=spec,
            rng=np.random.default_rng(course_seed),
        )
        stays = prison_stays(cands, course, spec, admin_end)
        open_ep = np.isnan(course.ep_end)
        open_pr = np.isnan(stays.recorded_end)
        derived = derive(
            n=n,
            index=np.zeros(n, dtype=np.int64),
            extract=extract_rel,
            death=np.floor(np.nan_to_num(course.death_time)).astype(np.int64),
            has_death=course.died,
            overdose=course.overdose,
            emigration=np.floor(np.minimum(emig, 1e9)).astype(np.int64),
            has_emigration=course.emigrated,
            ep_person=course.ep_person,
            ep_start=np.floor(course.ep_start).astype(np.int64),
            ep_end=np.floor(np.nan_to_num(course.ep_end)).astype(np.int64),
            ep_open=open_ep,
            pr_person=stays.person,
            pr_start=stays.start,
            pr_end=np.nan_to_num(stays.recorded_end).astype(np.int64),
            pr_open=open_pr,
            gap_days=spec.treatment.bridged_gap_days,
        )
        charges = expected_followup_charges(course, mult["crime"], stays, spec)
        out[arm] = (derived, charges)
    return PotentialOutcomes(out["hat"][0], out["ost"][0], out["hat"][1], out["ost"][1])


def estimands(po: PotentialOutcomes) -> dict[tuple[str, str], float]:
    """Every estimand from stacked potential outcomes (ratios on their natural scale)."""
    h, o = po.hat, po.ost
    n = h.followup_days.size
    x = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    res: dict[tuple[str, str], float] = {}
    t = np.r_[h.followup_days, o.followup_days]
    res[("mortality", "HR")] = math.exp(cox_hr_binary(t, np.r_[h.died, o.died], x)[0])
    died = np.r_[h.died, o.died].astype(bool)
    for label, when in RISK_TIMES.items():  # (1 - S_HAT) - (1 - S_OST)
        res[("mortality", f"RD_{label}")] = km_at(t[~x], died[~x], when) - km_at(
            t[x], died[x], when
        )
    res[("mortality", "RMST_diff")] = km_rmst(t[x], died[x], RMST_TAU) - km_rmst(
        t[~x], died[~x], RMST_TAU
    )
    res[("overdose_mortality", "HR")] = math.exp(
        cox_hr_binary(t, np.r_[h.overdose_death, o.overdose_death], x)[0]
    )
    cause = np.where(np.r_[h.overdose_death, o.overdose_death] > 0, 1, np.where(died, 2, 0))
    for label, when in RISK_TIMES.items():
        res[("overdose_mortality", f"RD_{label}")] = aj_cif_at(t[x], cause[x], when) - aj_cif_at(
            t[~x], cause[~x], when
        )
    rh, ro = h.in_retention, o.in_retention
    rt = np.r_[h.retention_days[rh], o.retention_days[ro]]
    re = np.r_[h.discontinued[rh], o.discontinued[ro]].astype(bool)
    rx = np.r_[np.ones(rh.sum(), bool), np.zeros(ro.sum(), bool)]
    res[("retention", "HR")] = math.exp(cox_hr_binary(rt, re, rx)[0])
    s1, s0 = km_at(rt[rx], re[rx], RETENTION_T), km_at(rt[~rx], re[~rx], RETENTION_T)
    res[("retention", "RR_12m")] = s1 / s0
    res[("retention", "RD_12m")] = s1 - s0
    res[("retention", "RD_24m")] = km_at(rt[rx], re[rx], RISK_TIMES["24m"]) - km_at(
        rt[~rx], re[~rx], RISK_TIMES["24m"]
    )
    res[("retention", "RMST_diff")] = km_rmst(rt[rx], re[rx], RMST_TAU) - km_rmst(
        rt[~rx], re[~rx], RMST_TAU
    )
    rate1 = po.charges_hat.sum() / h.crime_years.sum()
    rate0 = po.charges_ost.sum() / o.crime_years.sum()
    res[("crime", "IRR")] = rate1 / rate0
    res[("crime", "ratio_of_rate_ratios")] = rate1 / rate0
    return res


def _study_se(po: PotentialOutcomes, n_hat: int, k: int) -> dict[tuple[str, str], float]:
    """Rough standard error of each estimate in a matched study with ``n_hat`` HAT patients
    and ``k`` comparators each, from the potential-outcome distributions (log scale for
    ratios). Used only to judge the Monte Carlo error of the truth."""
    h, o = po.hat, po.ost
    n1, n0 = n_hat, k * n_hat
    out = {}
    for name, a, b in (
        ("mortality", h.died, o.died),
        ("overdose_mortality", h.overdose_death, o.overdose_death),
    ):
        out[(name, "HR")] = math.sqrt(1 / max(n1 * a.mean(), 1e-9) + 1 / max(n0 * b.mean(), 1e-9))
    for label, when in RISK_TIMES.items():
        p1 = 1 - km_at(h.followup_days, h.died.astype(bool), when)
        p0 = 1 - km_at(o.followup_days, o.died.astype(bool), when)
        out[("mortality", f"RD_{label}")] = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
        c1 = aj_cif_at(h.followup_days, np.where(h.overdose_death > 0, 1, 2 * h.died), when)
        c0 = aj_cif_at(o.followup_days, np.where(o.overdose_death > 0, 1, 2 * o.died), when)
        out[("overdose_mortality", f"RD_{label}")] = math.sqrt(
            c1 * (1 - c1) / n1 + c0 * (1 - c0) / n0
        )
    out[("mortality", "RMST_diff")] = math.sqrt(
        np.var(np.minimum(h.followup_days, RMST_TAU)) / n1
        + np.var(np.minimum(o.followup_days, RMST_TAU)) / n0
    )
    rh, ro = h.in_retention, o.in_retention
    out[("retention", "HR")] = math.sqrt(
        1 / (n1 * np.nanmean(h.discontinued[rh])) + 1 / (n0 * np.nanmean(o.discontinued[ro]))
    )
    s1 = km_at(h.retention_days[rh], h.discontinued[rh].astype(bool), RETENTION_T)
    s0 = km_at(o.retention_days[ro], o.discontinued[ro].astype(bool), RETENTION_T)
    out[("retention", "RR_12m")] = math.sqrt((1 - s1) / (n1 * s1) + (1 - s0) / (n0 * s0))
    out[("retention", "RD_12m")] = math.sqrt(s1 * (1 - s1) / n1 + s0 * (1 - s0) / n0)
    s1 = km_at(h.retention_days[rh], h.discontinued[rh].astype(bool), RISK_TIMES["24m"])
    s0 = km_at(o.retention_days[ro], o.discontinued[ro].astype(bool), RISK_TIMES["24m"])
    out[("retention", "RD_24m")] = math.sqrt(s1 * (1 - s1) / n1 + s0 * (1 - s0) / n0)
    v1 = np.var(np.minimum(h.retention_days[rh], RMST_TAU))
    v0 = np.var(np.minimum(o.retention_days[ro], RMST_TAU))
    out[("retention", "RMST_diff")] = math.sqrt(v1 / n1 + v0 / n0)
    for name in ("IRR", "ratio_of_rate_ratios"):
        parts = []
        for c, d, m in ((po.charges_hat, h, n1), (po.charges_ost, o, n0)):
            rate = c.sum() / d.crime_years.sum()
            # Poisson noise plus between-person variation, delta method on the log rate
            resid_var = np.mean(c) + np.var(c - rate * d.crime_years)
            parts.append(resid_var / (m * np.mean(c) ** 2))
        out[("crime", name)] = math.sqrt(sum(parts))
    return out


@dataclass(frozen=True)
class TruthResult:
    values: dict[tuple[str, str], float]
    mc_se: dict[tuple[str, str], float]  # log scale for ratio measures
    study_se_per_sqrt_n: dict[tuple[str, str], float]  # study SE x sqrt(n_hat)
    n_treated: int
    n_batches: int


def scaled(measure: str, value: float) -> float:
    """A value on the scale of its Monte Carlo error: log for ratio measures."""
    return math.log(value) if is_ratio(measure) else value


@lru_cache(maxsize=8)
def _compute(key: str) -> TruthResult:
    spec = Scenario.model_validate_json(key)
    ts = spec.truth
    rng = np.random.default_rng(ts.seed)
    m = ts.n_treated // ts.n_batches
    parts: list[PotentialOutcomes] = []
    batch_values = []
    for child in rng.spawn(ts.n_batches):
        people = draw_treated(m, spec, child)
        po = potential_outcomes(people, spec, child)
        parts.append(po)
        batch_values.append(estimands(po))
    allpo = PotentialOutcomes(
        hat=Derived.concat([p.hat for p in parts]),
        ost=Derived.concat([p.ost for p in parts]),
        charges_hat=np.concatenate([p.charges_hat for p in parts]),
        charges_ost=np.concatenate([p.charges_ost for p in parts]),
    )
    values = estimands(allpo)
    mc = {}
    for key_ in values:
        b = np.array([scaled(key_[1], v[key_]) for v in batch_values])
        mc[key_] = float(np.std(b, ddof=1) / math.sqrt(len(b)))
    study = {k: v * 1.0 for k, v in _study_se(allpo, 1, spec.truth.matched_k).items()}
    return TruthResult(values, mc, study, m * ts.n_batches, ts.n_batches)


def compute_truth(spec: Scenario) -> TruthResult:
    """True ATT of every estimand (cached per parameter set; independent of sizes and seed)."""
    return _compute(Scenario.model_validate_json(spec.truth_key()).model_dump_json())


def conditional_parameters(spec: Scenario) -> dict:
    """The data-generating (conditional) parameters recorded beside the truth."""
    ef, tr, mo, cr = spec.effects, spec.treatment, spec.mortality, spec.crime
    return {
        "hr_discontinuation_hat_vs_ost": ef.hr_discontinuation,
        "hr_mortality_in_hat_vs_in_ost": ef.hr_mortality,
        "overdose_share_ratio_hat": ef.overdose_share_ratio,
        "irr_crime_in_hat_vs_in_ost": ef.irr_crime,
        "ost_exit_per_year": tr.ost_exit_per_year,
        "hat_switch_share": tr.hat_switch_share,
        "short_interruption_share": tr.short_interruption_share,
        "mortality_in_treatment_per_1000py": mo.in_treatment_per_1000py,
        "mortality_out_of_treatment_per_1000py": mo.out_of_treatment_per_1000py,
        "leaving_spike_multiplier": mo.leaving_spike_multiplier,
        "crime_in_treatment_per_year": cr.in_treatment_per_year,
        "crime_out_of_treatment_per_year": cr.out_of_treatment_per_year,
        "crime_frailty_shape": spec.population.crime_frailty_shape,
        "note": "effects are conditional on covariates and frailty and act on time-varying "
        "treatment status; the estimands are marginal ATT effects of starting HAT vs "
        "staying in OST (treatment policy, switches and re-entries included)",
    }


def truth_json(spec: Scenario) -> dict:
    """The contents of ``truth.json`` for a scenario (see ARCHITECTURE.md)."""
    res = compute_truth(spec)
    n_hat = spec.n_hat
    estimands_ = []
    mc = {}
    for (outcome, measure), value in res.values.items():
        estimands_.append(
            {
                "outcome": outcome,
                "measure": measure,
                "value": round(float(value), 6),
                "definition": DEFINITIONS[(outcome, measure)],
            }
        )
        study = res.study_se_per_sqrt_n[(outcome, measure)] / math.sqrt(n_hat)
        mc[f"{outcome}/{measure}"] = {
            "scale": scale_of(measure),
            "mc_se": round(res.mc_se[(outcome, measure)], 6),
            "study_se_approx": round(study, 6),
            "mc_se_over_study_se": round(res.mc_se[(outcome, measure)] / study, 4),
        }
    return {
        "scenario": spec.name,
        "seed": spec.seed,
        "estimands": estimands_,
        "conditional": conditional_parameters(spec),
        "monte_carlo": {
            "n_treated": res.n_treated,
            "n_batches": res.n_batches,
            "study": f"matched 1:{spec.truth.matched_k}, {n_hat} HAT patients",
            "errors": mc,
        },
    }
