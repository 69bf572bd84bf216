"""Comparisons that show what the target-trial emulation changes (``primary: false``).

- **naive**: the analysed initiators from their index dates against everyone eligible
  (in OST, the contract's rules) on one fixed date (``sensitivity.naive_date``, by default
  the day HAT opened), unmatched and unadjusted: methods ``<model>_naive``;
- **prevalent users**: version 1's design applied to the history extract: every person
  eligible on a date drawn at random (uniformly between the first and last analysed index
  date, one date per person, from the study's seed) and never an initiator is a prevalent
  OST comparator; a propensity model on the persons (initiators on their index dates,
  comparators on their random dates, the same covariates and calendar time) and greedy 1:k
  matching with the caliper, exact on region, without replacement; variances clustered on
  the matched set as in version 1: methods ``<model>_prevalent``.

Both are labelled ``estimand: itt``: they try to estimate the intention-to-treat effect
and show how far from it they land (time zero misaligned with eligibility, immortal and
selected follow-up of prevalent users, confounding in time).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.data.cohort import calendar_years
from analysis.data.contract import CALENDAR_COVARIATE
from analysis.data.extract import HistoryExtract
from analysis.data.risk_sets import RiskSets, covariates_on, eligibility_on, outcomes_from
from analysis.design.matching import match
from analysis.design.propensity import fit_propensity
from analysis.design.risk_set_matching import RiskSetMatch
from analysis.results import EffectEstimate
from evaluation import study_design
from evaluation.config import StudyConfig
from evaluation.stages.designs import Design
from evaluation.stages.outcomes import outcome_estimates
from evaluation.trial_frame import outcome_frame


def _rows_on(
    history: HistoryExtract, pairs: pd.DataFrame, rs: RiskSets, config: StudyConfig
) -> pd.DataFrame:
    """Eligible (person, date) pairs with their covariates and outcomes."""
    p = rs.protocol
    reason = eligibility_on(
        history, pairs, min_age=p.min_age, lookback_days=p.lookback_days,
        recent_ost_days=p.recent_ost_days, gap_days=p.gap_days, regions=p.regions,
    )  # fmt: skip
    pairs = pairs[reason.isna().to_numpy()].reset_index(drop=True)
    cov = covariates_on(history, pairs, lookback_days=p.lookback_days, gap_days=p.gap_days)
    out = outcomes_from(history, pairs, lookback_days=p.lookback_days, gap_days=p.gap_days)
    return pd.concat([pairs, cov, out], axis=1)


def _frame(rows: pd.DataFrame, weight: np.ndarray, cluster: np.ndarray) -> pd.DataFrame:
    data = rows.assign(group=np.where(rows["treatment"] == 1, "HAT", "OST"), weight=weight)
    return outcome_frame(data).assign(cluster=cluster)


def sensitivity_estimates(
    history: HistoryExtract, rs: RiskSets, matched: RiskSetMatch, config: StudyConfig
) -> tuple[list[EffectEstimate], dict[str, Any]]:
    """Naive and prevalent-user comparisons (see the module notes).

    Returns
    -------
    (estimates, info)
        The HR/IRR estimates of each comparison and their designs' descriptions.
    """
    sens = config.target_trial.sensitivity
    plan = config.target_trial.analysis
    init = matched.stacked[matched.stacked["treatment"] == 1].reset_index(drop=True)
    persons = history.persons["person_id"].astype(str).to_numpy()
    estimates: list[EffectEstimate] = []
    info: dict[str, Any] = {}
    if sens.naive:
        d0 = np.datetime64(sens.naive_date, "s")
        pairs = pd.DataFrame({"person_id": persons, "index_date": np.repeat(d0, len(persons))})
        comp = _rows_on(history, pairs, rs, config).assign(treatment=0)
        rows = pd.concat([init[comp.columns.intersection(init.columns)], comp], ignore_index=True)
        rows["treatment"] = np.r_[np.ones(len(init), np.int64), np.zeros(len(comp), np.int64)]
        data = _frame(rows, np.ones(len(rows)), rows["person_id"].astype(str).to_numpy())
        design = Design(name="naive", data=data, weighted=False)
        estimates += outcome_estimates(design, config)
        info["naive"] = {
            "date": sens.naive_date,
            "n_treated": len(init),
            "n_control": len(comp),
            "note": "initiators from their index dates vs everyone eligible on the date, "
            "unadjusted",
        }
    if sens.prevalent:
        rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(3,)))
        dates = init["index_date"].to_numpy("datetime64[D]")
        lo, hi = dates.min().astype(np.int64), dates.max().astype(np.int64)
        others = persons[~np.isin(persons, rs.initiators["person_id"].astype(str))]
        day = rng.integers(lo, hi + 1, len(others)).astype("datetime64[D]").astype("datetime64[s]")
        comp = _rows_on(history, pd.DataFrame({"person_id": others, "index_date": day}), rs, config)
        rows = pd.concat([init[comp.columns.intersection(init.columns)], comp], ignore_index=True)
        rows["treatment"] = np.r_[np.ones(len(init), np.int64), np.zeros(len(comp), np.int64)]
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
            info["prevalent"] = {"note": f"propensity model could not be fitted: {exc}"}
            return estimates, info
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
        design = Design(name="prevalent", data=data, weighted=True)
        estimates += outcome_estimates(design, config)
        info["prevalent"] = {
            "n_treated": int(m.n_treated),
            "n_treated_matched": int(m.n_treated_matched),
            "n_control_candidates": len(comp),
            "n_control_matched": int(m.n_control_matched),
            "note": "version 1's design: one random date per non-initiator in "
            "the initiation period, matched 1:k on a person-level propensity score",
        }
    return estimates, info
