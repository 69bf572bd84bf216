"""The emulated target trial on a version-2 (history) extract: configuration -> results.

``run_target_trial`` carries out the protocol of ``config.target_trial``
(:mod:`evaluation.target_trial_config`): the risk sets of the HAT initiators
(:func:`analysis.data.risk_sets.derive_risk_sets`), risk-set matching on a propensity model of
the stacked risk sets (:func:`analysis.design.risk_set_matching.risk_set_match`), the
intention-to-treat effects (primary) and the per-protocol effects with inverse probability
of censoring weights (:mod:`analysis.design.ipcw`), and the comparisons that show what the
emulation changes (naive, prevalent users). It reads and writes no files.

Variances of the intention-to-treat estimates are clustered on the **person**, not on the
matched set: a person may be a comparator in several risk sets (and an initiator later),
so the rows of one person are not independent, while different matched sets share
persons. Clustering on the person covers both the within-set correlation that clustering
on the set would (each set has one initiator, whose cluster holds its row) and the reuse
of persons across sets.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import pandas as pd

from analysis.data.contract import PRIMARY_OUTCOMES, REGIONS, SCHEMA_VERSION
from analysis.data.eligibility import ELIGIBILITY_REASONS, eligibility_on
from analysis.data.extract import HistoryExtract
from analysis.data.risk_sets import RiskSets, derive_risk_sets
from analysis.design.risk_set_matching import RiskSetMatch
from analysis.outcomes.sensitivity import e_value
from analysis.results import EffectEstimate
from evaluation.config import StudyConfig
from evaluation.disclosure_trial import trial_evidence
from evaluation.progress import Steps
from evaluation.stages.designs import Design
from evaluation.stages.outcomes import check_primaries, incidence, outcome_estimates
from evaluation.stages.secondary import primary_extras
from evaluation.study import Study, StudyError
from evaluation.trial_frame import match_on_plan, outcome_frame

ITT = "itt"
PER_PROTOCOL = "per_protocol"


def _risk_sets(history: HistoryExtract, config: StudyConfig) -> RiskSets:
    elig = config.target_trial.eligibility
    try:
        return derive_risk_sets(
            history,
            min_age=elig.min_age,
            lookback_days=elig.lookback_days,
            recent_ost_days=elig.recent_ost_days,
            gap_days=config.gap_days,
            regions=elig.regions,
            not_eligible=False,
            grace_days=config.target_trial.grace_period_days,
        )
    except ValueError as exc:
        raise StudyError(f"the risk sets could not be derived: {exc}") from None


def _no_initiator(history: HistoryExtract, rs: RiskSets, config: StudyConfig) -> StudyError:
    """Why no initiator is analysed, each initiator counted under the first rule it fails.

    With the default regions (those of the analysed initiators) none is a HAT region when
    nobody is analysed, so every initiator would fail the region rule; the reasons are
    then counted with every region allowed: the rules that left nobody to analyse.
    """
    if rs.initiators.empty:
        return StudyError(
            "the extract has no HAT initiator (no diacetylmorphine episode starting on or "
            "before the extract date)"
        )
    reason = rs.initiators["reason"]
    if config.target_trial.eligibility.regions is None:
        every_region = replace(rs.protocol, regions=REGIONS)
        reason = eligibility_on(history, rs.initiators, **asdict(every_region))
    counts = reason.value_counts()
    return StudyError(
        f"no HAT initiator is eligible on its own index date ({len(rs.initiators)} "
        "initiators; "
        + "; ".join(f"{r}: {counts[r]}" for r in ELIGIBILITY_REASONS if counts.get(r, 0))
        + ")"
    )


def _match(history: HistoryExtract, rs: RiskSets, config: StudyConfig) -> RiskSetMatch:
    plan = config.target_trial.analysis
    if not rs.initiators["analysed"].any():
        raise _no_initiator(history, rs, config)
    try:
        matched = match_on_plan(rs.table, config)
    except ValueError as exc:
        raise StudyError(f"risk-set matching could not be done: {exc}") from None
    if matched.matched.n_treated_matched == 0:
        raise StudyError(
            "no initiator could be matched to a comparator of its risk set within the caliper "
            f"({plan.caliper} SD) and exact on {list(plan.exact)}"
        )
    return matched


def _itt_estimates(
    design: Design, config: StudyConfig
) -> tuple[list[EffectEstimate], dict[str, pd.DataFrame], dict[str, Any]]:
    """Intention-to-treat estimates on the matched risk sets (the version-1 estimators)."""
    estimates = [
        e.with_primary(e.outcome in PRIMARY_OUTCOMES) for e in outcome_estimates(design, config)
    ]
    extra, tables, extras = primary_extras(design, config)
    return estimates + extra, tables, extras


def _with_estimand(est: EffectEstimate, estimand: str) -> EffectEstimate:
    return replace(est, estimand=estimand)


def truth_lookup(truth: dict | None) -> dict[tuple[str, str, str], float]:
    """True values by (estimand, outcome, measure)."""
    if not truth:
        return {}
    return {
        (e.get("estimand", ITT), e["outcome"], e["measure"]): e["value"]
        for e in truth.get("estimands", [])
        if e.get("value") is not None
    }


def _grace_texts(config: StudyConfig) -> tuple[str, str, str]:
    """The grace period in the eligibility, strategies and time-zero rows."""
    tt = config.target_trial
    g, recent = tt.grace_period_days, tt.eligibility.recent_ost_days
    if g == 0:
        return (
            f"in OST in the {recent} days before",
            "no grace period: HAT initiated on the day of eligibility",
            "grace period 0 days",
        )
    return (
        f"in OST in the {recent} days before a day of the {g} days before time zero",
        f"grace period {g} days: initiating HAT within {g} days of being eligible "
        "follows the treatment strategy",
        f"grace period {g} days: eligibility is met on a day of the {g} days before time "
        f"zero (an OST day in the {recent + g} days before it), for initiators and "
        "comparators alike; time zero stays the first HAT day, so no follow-up precedes "
        "an initiation (no immortal time); per protocol a comparator's HAT start, within "
        "the grace period or later, is a deviation (censored)",
    )


def _sensitivity_text(config: StudyConfig) -> str:
    """The sensitivity analyses of the protocol (all not primary, intention to treat)."""
    tt = config.target_trial
    parts = [
        f"risk-set matching 1:{k}, caliper {c:g} SD ({label})"
        for label, (k, c) in tt.matching_variants().items()
    ]
    grace = tt.sensitivity_grace()
    if grace is not None:
        parts.append(f"grace period of {grace} days (matched_grace{grace})")
    if tt.sensitivity.naive:
        parts.append(f"naive: initiators vs everyone in OST on {tt.sensitivity.naive_date}")
    if tt.sensitivity.prevalent:
        parts.append("prevalent users: version 1's design with a random date per comparator")
    return "; ".join(parts) or "none"


def protocol_table(rs: RiskSets, config: StudyConfig) -> pd.DataFrame:
    """The TARGET protocol table: component, target trial's specification, its emulation."""
    tt = config.target_trial
    elig, plan, pp = tt.eligibility, tt.analysis, tt.per_protocol
    regions = ", ".join(rs.protocol.regions or ()) or "none"
    in_ost, strategy_grace, time_zero_grace = _grace_texts(config)
    per = "per_protocol" in tt.contrasts  # the contrast may be switched off
    rows = [
        (
            "Eligibility criteria",
            f"aged {elig.min_age} or more; alive and resident; never treated with HAT; "
            f"{in_ost}; living in a region with HAT "
            f"({regions}); {elig.lookback_days} days of history",
            "the contract's rules 1-6 checked on every initiator's index date with the "
            "registries' information up to the day before; initiators failing one are "
            "excluded and counted with the first rule failed",
        ),
        (
            "Treatment strategies",
            f"{tt.strategies.treatment}; versus {tt.strategies.comparator}; {strategy_grace}",
            "initiators: first diacetylmorphine episode; comparators: persons eligible on the "
            "date and not starting HAT on it",
        ),
        (
            "Assignment procedure",
            "random assignment at time zero, unaware of the prognosis",
            f"risk-set matching 1:{plan.k} on a propensity score of the covariates on the "
            f"date{' and calendar time' if plan.calendar_time else ''}, caliper "
            f"{plan.caliper} SD of the logit, exact on the risk set and "
            f"{', '.join(plan.exact) or 'nothing else'}; assumes no unmeasured confounding",
        ),
        (
            "Time zero",
            "the day the strategy is assigned",
            f"the initiator's first HAT day, for it and its comparators; {time_zero_grace}",
        ),
        (
            "Follow-up",
            "from time zero to death, emigration or the end of the study",
            "from the index date to death, emigration or the extract date"
            + (
                "; per protocol a comparator is also censored on its first HAT start" if per else ""
            ),
        ),
        (
            "Outcomes",
            ", ".join(tt.outcomes),
            "as in the data contract (version 1's definitions from the index date; retention "
            "from the spell holding the last OST day before it)",
        ),
        (
            "Causal contrasts",
            "intention to treat (primary)" + ("; per protocol" if per else ""),
            "intention to treat: matched comparison, comparators followed whatever they do "
            "later"
            + (
                "; per protocol: comparators censored when they start HAT, inverse "
                "probability of censoring weights"
                if per
                else ""
            ),
        ),
        (
            "Statistical analysis",
            "effect in the treated: hazard ratios, rate ratios, risk and RMST differences",
            "Cox, Kaplan-Meier, Aalen-Johansen, ratio of charge rates on the matched rows, "
            "variances clustered on the person"
            + (
                "; per protocol: weighted by censoring weights from a pooled logistic model "
                f"on {pp.interval_days}-day intervals, truncated at the {pp.truncate:g} "
                f"quantile, bootstrap over persons ({pp.bootstrap} replicates, censoring "
                "model refitted)"
                if per
                else ""
            ),
        ),
        (
            "Sensitivity analyses",
            "not part of the target trial: the emulation's choices varied",
            "intention-to-treat hazard and rate ratios, none primary: " + _sensitivity_text(config),
        ),
    ]
    return pd.DataFrame(rows, columns=["component", "target_trial", "emulation"])


def run_target_trial(
    history: HistoryExtract, config: StudyConfig, *, steps: Steps | None = None
) -> Study:
    """Emulate the target trial on a history extract.

    Parameters
    ----------
    history : HistoryExtract
        A validated version-2 extract.
    config : StudyConfig
        The study's configuration; ``config.target_trial`` is the protocol.
    steps : Steps, optional
        Progress reporter.

    Returns
    -------
    Study
        ``results`` (contents of ``results.json``: every estimate with ``estimand``,
        intention to treat primary; ``cohort.extract_version`` 2) and ``tables``.

    Raises
    ------
    StudyError
        No analysable initiator, nobody matched, or no primary estimate estimable.
    """
    steps = steps or Steps(quiet=True)
    tt = config.target_trial
    with steps.step("derive risk sets"):
        rs = _risk_sets(history, config)
    with steps.step("risk-set matching"):
        matched = _match(history, rs, config)
        info = matched.info()
        balance = matched.balance()
    itt = Design(name="matched", data=outcome_frame(matched.data), weighted=True, info=info)
    estimates: list[EffectEstimate] = []
    with steps.step("intention-to-treat effects"):
        itt_est, tables, extras = _itt_estimates(itt, config)
        estimates += [_with_estimand(e, ITT) for e in itt_est]
    designs: dict[str, Any] = {"matched": info}
    if PER_PROTOCOL in tt.contrasts:
        with steps.step("per-protocol effects"):
            from evaluation.target_trial_pp import per_protocol_estimates

            pp_est, pp_info, pp_tables = per_protocol_estimates(history, matched, config)
            estimates += [_with_estimand(e, PER_PROTOCOL) for e in pp_est]
            designs["per_protocol"] = pp_info
            tables.update(pp_tables)
    with steps.step("sensitivity comparisons"):
        from evaluation.target_trial_sensitivity import sensitivity_estimates, truth_applies

        sens_est, sens_info = sensitivity_estimates(history, rs, matched, config)
        estimates += [_with_estimand(e, ITT) for e in sens_est]
        designs.update(sens_info)
    estimates = [e for e in estimates if e.outcome in tt.outcomes]
    check_primaries(estimates)
    truth = truth_lookup(history.truth)
    estimates = [
        e.with_truth(
            truth.get((e.estimand, e.outcome, e.measure)) if truth_applies(e.method) else None
        )
        for e in estimates
    ]
    e_values = []
    for e in estimates:
        if e.primary:
            ev = e_value(
                e.estimate, e.ci_low, e.ci_high, measure=e.measure,
                incidence=incidence(itt, e.outcome),
            )  # fmt: skip
            e_values.append(
                {"outcome": e.outcome, "measure": e.measure, "estimand": e.estimand, **ev.to_dict()}
            )
    ph_tests = [
        {"outcome": e.outcome, "method": e.method, "estimand": e.estimand,
         **e.details.get("ph_test", {})}
        for e in estimates
        if "ph_test" in e.details
    ]  # fmt: skip
    exclusions = rs.exclusions()
    n_init = len(rs.initiators)
    n_analysed = int(rs.initiators["analysed"].sum())
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "cohort": {
            "extract_version": 2,
            "n_hat": n_analysed,
            "n_ost": info["n_control_matched"],
            "n_hat_matched": info["n_treated_matched"],
            "n_ost_matched": info["n_control_matched"],
            "n_ost_rows_matched": info["n_control_rows_matched"],
            "n_read": len(history.persons),
            "n_initiators": n_init,
            "n_excluded": n_init - n_analysed,
            "exclusions": exclusions.to_dict(orient="records"),
            "n_risk_sets": info["n_risk_sets"],
            "n_candidate_rows": info["n_candidate_rows"],
            "n_candidate_persons": info["n_candidate_persons"],
        },
        "estimates": [e.to_dict() for e in estimates],
        "design": {
            "primary": "matched",
            "primary_estimand": ITT,
            "target_trial": {
                **tt.model_dump(mode="json"),
                "regions_resolved": list(rs.protocol.regions or ()),
                "gap_days": config.gap_days,
            },
            "designs": designs,
            "covariates": list(matched.covariates),
            "max_abs_smd": {
                col.removeprefix("smd_"): float(balance[col].abs().max())
                for col in balance.columns
                if col.startswith("smd_")
            },
        },
        "diagnostics": {"ph_tests": ph_tests, "e_values": e_values, **extras},
        "truth": history.truth,
    }
    flow = pd.concat(
        [
            pd.DataFrame(
                [
                    {"step": "persons in the extract", "n_rows": len(history.persons),
                     "n_persons": len(history.persons)},
                    {"step": "HAT initiators", "n_rows": n_init, "n_persons": n_init},
                ]
            ),
            exclusions.query("n > 0").assign(
                step=lambda d: "excluded: " + d["reason"].astype(str), n_rows=lambda d: d["n"],
                n_persons=lambda d: d["n"],
            )[["step", "n_rows", "n_persons"]],
            matched.flow(),
        ],
        ignore_index=True,
    )  # fmt: skip
    tables.update(
        {
            "protocol": protocol_table(rs, config),
            "flow": flow,
            "exclusions": exclusions,
            "balance": balance,
            "comparator_use": matched.comparator_use(),
            "estimates": pd.DataFrame([e.to_dict() for e in estimates]).drop(columns=["details"]),
        }
    )
    tables.update(trial_evidence(matched, covariates=tt.analysis.covariates))
    study = Study(results=results, tables=tables)
    from evaluation.target_trial_mi import with_imputation

    with steps.step("multiple imputation"):
        return with_imputation(study, history, rs, config)
