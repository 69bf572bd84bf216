"""Outcome-model stage: the hazard and rate ratios of every design.

:func:`outcome_stage` fits the four outcome models (:data:`OUTCOME_MODELS`) on each design,
marks the primary estimates and adds the secondary estimates of the primary design
(:mod:`evaluation.stages.secondary`); an IPTW design's variances account for the
estimation of the propensity model (stacked estimating equations).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.data.contract import PRIMARY_OUTCOMES
from analysis.outcomes.cox import cox_hazard_ratio
from analysis.outcomes.rates import rate_ratio
from analysis.outcomes.sensitivity import incidence_at_end
from analysis.outcomes.stacked import (
    cox_estimating_function,
    nb_estimating_function,
    nb_expected_bread,
    stacked_variance,
    with_stacked_variance,
)
from analysis.results import EffectEstimate
from evaluation.config import StudyConfig
from evaluation.stages.designs import Design
from evaluation.stages.secondary import primary_extras, secondary_estimates
from evaluation.study import StudyError, StudyState

__all__ = ["OUTCOME_MODELS", "estimates_stage", "not_estimable", "outcome_stage"]


#: the primary outcome models, each on the matched design
OUTCOME_MODELS = {
    "mortality": ("cox", "followup_days", "died"),
    "overdose_mortality": ("cox", "followup_days", "overdose_death"),
    "retention": ("cox", "retention_days", "discontinued"),
    "crime": ("rate", "followup_charges", "crime_years"),
}


def outcome_estimates(
    design: Design, config: StudyConfig, *, ph_test: bool = True
) -> list[EffectEstimate]:
    """The four HR/IRR estimates of a design (``ph_test``: with the Cox models' PH tests)."""
    df = design.data
    weights = "weight" if design.weighted else None
    cluster = "cluster" if design.clustered else None
    out = []
    in_retention = df["in_retention"].to_numpy(dtype=bool)
    for outcome, (model, a, b) in OUTCOME_MODELS.items():
        # rows of the design each outcome model uses (positions: no lookup of ids later)
        rows = np.flatnonzero(in_retention) if outcome == "retention" else np.arange(len(df))
        data = df.loc[in_retention, _columns(df, a, b)] if outcome == "retention" else df
        if model == "cox":
            est = cox_hazard_ratio(
                data,
                duration=a,
                event=b,
                treatment="treatment",
                weights=weights,
                cluster=cluster,
                alpha=config.alpha,
                outcome=outcome,
                method=f"cox_{design.name}",
                small_sample=config.cox_small_sample
                if design.name.startswith("matched")
                else "factor",
                ph_test=ph_test,
            )
        else:
            # the ratio of marginal rates (Poisson estimating equation, robust variance): the
            # effect among the treated on charges is defined as a ratio of total charges to
            # total person-time; a negative-binomial fit targets another ratio (below)
            est = rate_ratio(
                data,
                events=a,
                exposure=b,
                treatment="treatment",
                weights=weights,
                cluster=cluster,
                alpha=config.alpha,
                outcome=outcome,
                method=f"rate_{design.name}",
                arm_labels=("HAT", "OST"),
            )
        if design.weight_model is not None and np.isfinite(est.estimate):
            est = _with_estimated_weights(
                est, data, design, rows=rows, model=model, a=a, b=b, config=config
            )
        out.append(est)
    return out


def _columns(df: pd.DataFrame, *names: str) -> list[str]:
    """The columns an outcome model of a design reads (a subset is cheaper to select rows of)."""
    return [c for c in (*names, "treatment", "weight", "cluster") if c in df.columns]


def not_estimable(estimates: list[dict[str, Any]] | list[EffectEstimate]) -> list[str]:
    """One line per primary estimate that could not be estimated, with its reason."""
    lines = []
    for e in estimates:
        if isinstance(e, dict):
            primary, missing = e["primary"], e["estimate"] is None
            outcome, measure, details = e["outcome"], e["measure"], e.get("details")
        else:  # to_dict() would give None for a NaN or infinite estimate
            primary, missing = e.primary, not math.isfinite(e.estimate)
            outcome, measure, details = e.outcome, e.measure, e.details
        if primary and missing:
            reason = (details or {}).get("note") or "no reason recorded"
            lines.append(f"{outcome} {measure}: {reason}")
    return lines


def check_primaries(estimates: list[EffectEstimate]) -> None:
    """A study with no estimable primary estimate cannot be done."""
    missing = not_estimable(estimates)
    if missing and len(missing) == sum(e.primary for e in estimates):
        raise StudyError("no primary estimate is estimable: " + "; ".join(missing))


def incidence(design: Design, outcome: str) -> float | None:
    """Cumulative incidence by the end of follow-up of a time-to-event outcome.

    Kaplan–Meier 1 - S at the longest follow-up, both arms of the design together with
    their weights (the overall incidence, which decides whether an E-value treats a hazard
    ratio as for a rare outcome); None for a count outcome.
    """
    model, duration, event = OUTCOME_MODELS[outcome]
    if model != "cox":
        return None
    df = design.data
    data = df[df["in_retention"]] if outcome == "retention" else df
    weights = "weight" if design.weighted else None
    return incidence_at_end(data, duration=duration, event=event, weights=weights)


def _with_estimated_weights(
    est: EffectEstimate,
    data: pd.DataFrame,
    design: Design,
    *,
    rows: np.ndarray,
    model: str,
    a: str,
    b: str,
    config: StudyConfig,
) -> EffectEstimate:
    """Re-estimate the SE of an IPTW estimate by stacking the propensity model's equations.

    ``rows``: the row of ``design.data`` (and of its weight model) of each row of ``data``.
    """
    wm = design.weight_model
    assert wm is not None
    w = wm.weights[rows]
    treated = data["treatment"].to_numpy(float)
    coefs = est.details["coefficients"]
    beta = np.array([v["coef"] for v in coefs.values()], dtype=float)
    if model == "cox":
        keep = w > 0
        ef = cox_estimating_function(
            data[a].to_numpy(float)[keep], data[b].to_numpy(float)[keep], treated[keep, None]
        )
        bread = None  # the observed information: the Cox engine's, from the same pass
        term = 0
    else:
        keep = (w > 0) & (data[b].to_numpy(float) > 0)
        design_x = np.column_stack([np.ones(int(keep.sum())), treated[keep]])
        exposure = data[b].to_numpy(float)[keep]
        theta = float(est.details.get("theta", np.inf))  # rate ratio: Poisson equation
        ef = nb_estimating_function(data[a].to_numpy(float)[keep], exposure, design_x, theta=theta)
        bread = nb_expected_bread(exposure, design_x, beta, w[keep], theta=theta)
        term = 1
    variance = stacked_variance(ef, beta, wm, rows=rows[keep], bread=bread)
    return with_stacked_variance(est, variance, term=term, alpha=config.alpha)


def outcome_stage(state: StudyState, config: StudyConfig) -> StudyState:
    """Every design's outcome models, then the primary design's secondary estimates.

    Returns
    -------
    StudyState
        With ``estimates`` (primary ones marked), ``tables`` (curves and rates of the
        primary design) and ``extras`` (its diagnostics).
    """
    estimates: list[EffectEstimate] = []
    for name, design in state.designs.items():
        for est in outcome_estimates(design, config):
            primary = name == "matched" and est.outcome in PRIMARY_OUTCOMES
            estimates.append(est.with_primary(primary))
    extra_estimates, tables, extras = primary_extras(state.designs["matched"], config)
    estimates += extra_estimates
    return replace(state, estimates=estimates, tables=tables, extras=extras)


def estimates_stage(state: StudyState, config: StudyConfig) -> StudyState:
    """The estimates of :func:`outcome_stage` alone: no curves, rates, diagnostics or PH tests.

    The study's estimates for a simulation replicate (``run_study(..., scope="estimates")``):
    the same estimates, in the same order, without the Cox models' proportional-hazards
    tests (``details["ph_test"]``), the primary design's curves and crude-rate tables and
    its extras (score test, retention by group).
    """
    estimates: list[EffectEstimate] = []
    for name, design in state.designs.items():
        for est in outcome_estimates(design, config, ph_test=False):
            primary = name == "matched" and est.outcome in PRIMARY_OUTCOMES
            estimates.append(est.with_primary(primary))
    estimates += secondary_estimates(state.designs["matched"], config)
    return replace(state, estimates=estimates)
