"""Analyses that show what the target-trial emulation and its choices change.

Every estimate here has ``primary: false`` and ``estimand: itt``: the hazard and rate
ratios of the four outcomes (:func:`evaluation.stages.outcomes.outcome_estimates`), with
the methods ``<model>_<design>``:

- ``naive``: the analysed initiators from their index dates against everyone eligible
  (in OST, the contract's rules) on one fixed date (``sensitivity.naive_date``, by default
  the day HAT opened), unmatched and unadjusted;
- ``prevalent``: version 1's design applied to the history extract: every person
  eligible on a date drawn at random (uniformly between the first and last analysed index
  date, one date per person, from the study's seed) and never an initiator is a prevalent
  OST comparator; a propensity model on the persons (initiators on their index dates,
  comparators on their random dates, the same covariates and calendar time) and greedy 1:k
  matching with the caliper, exact on region, without replacement; variances clustered on
  the matched set as in version 1. Its comparator rule (never an initiator) looks into
  the future: who dies or leaves OST before a place in HAT comes free cannot start, so the
  comparators are enriched with early deaths and discontinuations (immortal-time bias;
  Suissa 2008); and where those who start later are those whose treatment was failing, the
  never-initiators are the ones who do well. The bias grows with the share of comparators
  who would start HAT later: small where uptake is rare, large where it is frequent
  (``tests/test_prevalent_user.py``, ``benchmarks/coverage_v2.md``);
- ``matched_1to<k>``, ``matched_caliper<c>`` (and both): the risk-set matching of the
  primary analysis done again with another ``k`` or caliper (``sensitivity.matching``):
  the same risk sets, propensity model and exact strata
  (:meth:`analysis.design.risk_set_matching.RiskSetMatch.rematch`);
- ``matched_grace<G>``: the risk sets derived again under a grace period of G days
  (``sensitivity.grace_period_days``; see :mod:`evaluation.target_trial_config`), with
  the primary analysis' resolved regions, propensity model and matching plan.

Truth (synthetic data) is the true value of the same estimand. The matching variants and
the prevalent-user comparison aim at the intention-to-treat effect in the analysed
initiators, the primary's estimand: they carry its truth (how far they land from it is
the point). Two do not (:func:`truth_applies`): the naive comparison, a crude contrast of
the initiators with the OST population of one date, is no effect in the initiators; the
grace-period analysis has another population (the initiators eligible under the longer
OST window), for which the generator gives no truth.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.data.cohort import calendar_years
from analysis.data.contract import CALENDAR_COVARIATE
from analysis.data.extract import HistoryExtract
from analysis.data.risk_sets import (
    RiskSets,
    covariates_on,
    derive_risk_sets,
    eligibility_on,
    outcomes_from,
)
from analysis.design.matching import match
from analysis.design.propensity import fit_propensity
from analysis.design.risk_set_matching import RiskSetMatch, risk_set_match
from analysis.results import EffectEstimate
from evaluation import study_design
from evaluation.config import StudyConfig
from evaluation.results_document import split_method
from evaluation.stages.designs import Design
from evaluation.stages.outcomes import outcome_estimates
from evaluation.trial_frame import outcome_frame

#: designs whose estimand is not the primary's (no truth attached)
NAIVE = "naive"
GRACE_PREFIX = "matched_grace"


def truth_applies(method: str) -> bool:
    """Whether the truth of the estimand ``(estimand, outcome, measure)`` applies.

    Not for the naive comparison nor the grace-period analysis (see the module notes).
    """
    design = split_method(method)[1]
    return design != NAIVE and not design.startswith(GRACE_PREFIX)


def _rows_on(history: HistoryExtract, pairs: pd.DataFrame, rs: RiskSets) -> pd.DataFrame:
    """Eligible (person, date) pairs with their covariates and outcomes."""
    p = rs.protocol
    reason = eligibility_on(history, pairs, **asdict(p))
    pairs = pairs[reason.isna().to_numpy()].reset_index(drop=True)
    cov = covariates_on(history, pairs, lookback_days=p.lookback_days, gap_days=p.gap_days)
    out = outcomes_from(history, pairs, lookback_days=p.lookback_days, gap_days=p.gap_days)
    return pd.concat([pairs, cov, out], axis=1)


def _frame(rows: pd.DataFrame, weight: np.ndarray, cluster: np.ndarray) -> pd.DataFrame:
    data = rows.assign(group=np.where(rows["treatment"] == 1, "HAT", "OST"), weight=weight)
    return outcome_frame(data).assign(cluster=cluster)


def _estimates(design: Design, config: StudyConfig) -> list[EffectEstimate]:
    return [e.with_primary(False) for e in outcome_estimates(design, config)]


def _with_comparators(init: pd.DataFrame, comp: pd.DataFrame) -> pd.DataFrame:
    rows = pd.concat([init[comp.columns.intersection(init.columns)], comp], ignore_index=True)
    rows["treatment"] = np.r_[np.ones(len(init), np.int64), np.zeros(len(comp), np.int64)]
    return rows


def _naive(
    history: HistoryExtract, rs: RiskSets, init: pd.DataFrame, config: StudyConfig
) -> tuple[list[EffectEstimate], dict[str, Any]]:
    sens = config.target_trial.sensitivity
    persons = history.persons["person_id"].astype(str).to_numpy()
    d0 = np.datetime64(sens.naive_date, "s")
    pairs = pd.DataFrame({"person_id": persons, "index_date": np.repeat(d0, len(persons))})
    comp = _rows_on(history, pairs, rs).assign(treatment=0)
    rows = _with_comparators(init, comp)
    data = _frame(rows, np.ones(len(rows)), rows["person_id"].astype(str).to_numpy())
    info = {
        "date": sens.naive_date,
        "n_treated": len(init),
        "n_control": len(comp),
        "truth": False,
        "note": "initiators from their index dates vs everyone eligible on the date, "
        "unadjusted; a crude contrast, not an effect in the initiators (no truth)",
    }
    return _estimates(Design(name=NAIVE, data=data, weighted=False), config), info


def _prevalent(
    history: HistoryExtract, rs: RiskSets, init: pd.DataFrame, config: StudyConfig
) -> tuple[list[EffectEstimate], dict[str, Any]]:
    plan = config.target_trial.analysis
    persons = history.persons["person_id"].astype(str).to_numpy()
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(3,)))
    dates = init["index_date"].to_numpy("datetime64[D]")
    lo, hi = dates.min().astype(np.int64), dates.max().astype(np.int64)
    others = persons[~np.isin(persons, rs.initiators["person_id"].astype(str))]
    day = rng.integers(lo, hi + 1, len(others)).astype("datetime64[D]").astype("datetime64[s]")
    comp = _rows_on(history, pd.DataFrame({"person_id": others, "index_date": day}), rs)
    rows = _with_comparators(init, comp)
    rows[CALENDAR_COVARIATE] = calendar_years(rows["index_date"])
    covs = tuple(plan.covariates) + ((CALENDAR_COVARIATE,) if plan.calendar_time else ())
    try:
        ps = fit_propensity(
            rows,
            treatment="treatment",
            covariates=covs,
            transforms=study_design.TRANSFORMS,
            levels=study_design.LEVELS,
        )
    except ValueError as exc:
        return [], {"note": f"propensity model could not be fitted: {exc}"}
    rows["ps_logit"] = ps.logit
    m = match(
        rows, treatment="treatment", score="ps_logit", id="person_id", k=plan.k,
        caliper=plan.caliper, exact=plan.exact, replace=False,
    )  # fmt: skip
    sample = rows.merge(m.data[["person_id", "match_set", "weight"]], on="person_id")
    is_c = sample["treatment"].to_numpy() == 0
    total = sample.loc[is_c, "weight"].sum()
    if total > 0:
        sample.loc[is_c, "weight"] *= m.n_treated_matched / total
    data = _frame(sample, sample["weight"].to_numpy(float), sample["match_set"].to_numpy())
    info = {
        "n_treated": int(m.n_treated),
        "n_treated_matched": int(m.n_treated_matched),
        "n_control_candidates": len(comp),
        "n_control_matched": int(m.n_control_matched),
        "truth": True,
        "note": "version 1's design: one random date per non-initiator in "
        "the initiation period, matched 1:k on a person-level propensity score",
    }
    return _estimates(Design(name="prevalent", data=data, weighted=True), config), info


def _variants(
    matched: RiskSetMatch, config: StudyConfig
) -> tuple[list[EffectEstimate], dict[str, Any]]:
    """The matching variants: the same risk sets and scores, another k or caliper."""
    estimates: list[EffectEstimate] = []
    info: dict[str, Any] = {}
    for label, (k, caliper) in config.target_trial.matching_variants().items():
        mv = matched.rematch(k=k, caliper=caliper)
        about = {**mv.info(), "truth": True, "note": f"risk-set matching 1:{k}, caliper "
                 f"{caliper:g} SD; the primary's risk sets and propensity model"}  # fmt: skip
        info[label] = about
        if mv.matched.n_treated_matched == 0:
            about["note"] += "; no initiator matched: no estimates"
            continue
        design = Design(name=label, data=outcome_frame(mv.data), weighted=True, info=about)
        estimates += _estimates(design, config)
    return estimates, info


def _grace(
    history: HistoryExtract, rs: RiskSets, grace: int, config: StudyConfig
) -> tuple[list[EffectEstimate], dict[str, Any]]:
    """Risk sets derived again under a grace period, matched with the primary plan."""
    p, plan = rs.protocol, config.target_trial.analysis
    label = f"{GRACE_PREFIX}{grace}"
    try:
        rs_g = derive_risk_sets(history, **asdict(replace(p, grace_days=grace)), not_eligible=False)
        m = risk_set_match(
            rs_g.table, covariates=plan.covariates, k=plan.k, caliper=plan.caliper,
            exact=plan.exact, calendar_time=plan.calendar_time,
            transforms=study_design.TRANSFORMS, levels=study_design.LEVELS,
        )  # fmt: skip
    except ValueError as exc:
        return [], {label: {"grace_period_days": grace, "note": f"not done: {exc}"}}
    n_init = len(rs_g.initiators)
    about = {
        **m.info(),
        "grace_period_days": grace,
        "n_initiators": n_init,
        "n_analysed": int(rs_g.initiators["analysed"].sum()),
        "exclusions": rs_g.exclusions().to_dict(orient="records"),
        "truth": False,
        "note": f"risk sets under a grace period of {grace} days (in OST in the "
        f"{p.recent_ost_days + grace} days before time zero), the primary's regions and "
        "matching plan; another population than the primary's (no truth)",
    }
    if m.matched.n_treated_matched == 0:
        return [], {label: {**about, "note": about["note"] + "; no initiator matched"}}
    design = Design(name=label, data=outcome_frame(m.data), weighted=True, info=about)
    return _estimates(design, config), {label: about}


def sensitivity_estimates(
    history: HistoryExtract, rs: RiskSets, matched: RiskSetMatch, config: StudyConfig
) -> tuple[list[EffectEstimate], dict[str, Any]]:
    """Every sensitivity analysis the protocol asks for (see the module notes).

    Returns
    -------
    (estimates, info)
        The HR/IRR estimates of each analysis (``primary: false``) and their designs'
        descriptions, by design label.
    """
    tt = config.target_trial
    init = matched.stacked[matched.stacked["treatment"] == 1].reset_index(drop=True)
    estimates: list[EffectEstimate] = []
    info: dict[str, Any] = {}
    if tt.sensitivity.naive:
        est, info[NAIVE] = _naive(history, rs, init, config)
        estimates += est
    if tt.sensitivity.prevalent:
        est, info["prevalent"] = _prevalent(history, rs, init, config)
        estimates += est
    est, about = _variants(matched, config)
    estimates += est
    info.update(about)
    grace = tt.sensitivity_grace()
    if grace is not None:
        est, about = _grace(history, rs, grace, config)
        estimates += est
        info.update(about)
    return estimates, info
