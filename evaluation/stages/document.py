"""Results stage: the results document and the tables behind the report.

:func:`document_stage` checks that a primary estimate is estimable, copies the true
values (synthetic data) into the estimates, computes the E-values of the primary
estimates and builds the :class:`~evaluation.results_document.ResultsDocument` and the
tables (flow, exclusions, balance, Table 1, propensity-score overlap, estimates, and the
evidence for disclosure control).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from analysis.data.contract import SCHEMA_VERSION
from analysis.outcomes.sensitivity import e_value
from analysis.results import EffectEstimate
from evaluation.config import StudyConfig
from evaluation.disclosure import disclosure_evidence
from evaluation.results_document import (
    CohortSummary,
    DesignSection,
    Diagnostics,
    Estimate,
    EValueRecord,
    PHTestRecord,
    ResultsDocument,
)
from evaluation.stages.designs import design_tables
from evaluation.stages.outcomes import check_primaries, incidence
from evaluation.stages.secondary import RATE_TABLES
from evaluation.study import StudyState

__all__ = ["document_stage", "estimates_document_stage", "results_document", "study_tables"]


def truth_lookup(truth: dict | None) -> dict[tuple[str, str], float]:
    if not truth:
        return {}
    return {
        (e["outcome"], e["measure"]): e["value"]
        for e in truth.get("estimands", [])
        if e.get("value") is not None
    }


def _checked_with_truth(state: StudyState) -> list[EffectEstimate]:
    """The estimates with their truth, after checking that a primary is estimable."""
    check_primaries(state.estimates)
    truth = truth_lookup(state.extract.truth)
    return [e.with_truth(truth.get((e.outcome, e.measure))) for e in state.estimates]


def document_stage(state: StudyState, config: StudyConfig) -> StudyState:
    """The results document and every table of the report.

    Raises
    ------
    StudyError
        No primary estimate is estimable.
    """
    estimates = _checked_with_truth(state)
    state = replace(state, estimates=estimates)
    tables = {**state.tables, **study_tables(state, config)}
    return replace(state, document=results_document(state, config), tables=tables)


def estimates_document_stage(state: StudyState, config: StudyConfig) -> StudyState:
    """The results document's cohort, estimates and truth alone (no design, no tables).

    The document of ``run_study(..., scope="estimates")``, a simulation replicate: the
    same checks and truth as :func:`document_stage`; no design section, diagnostics or
    tables.

    Raises
    ------
    StudyError
        No primary estimate is estimable.
    """
    estimates = _checked_with_truth(state)
    document = ResultsDocument(
        schema_version=SCHEMA_VERSION,
        cohort=_cohort_summary(state),
        estimates=[Estimate.from_effect(e) for e in estimates],
        truth=state.extract.truth,
    )
    return replace(state, estimates=estimates, document=document)


def _cohort_summary(state: StudyState) -> CohortSummary:
    """``cohort``: persons analysed, matched, read and excluded."""
    cohort, df, matched = state.cohort, state.data, state.designs["matched"]
    n_hat = int(df["treatment"].sum())
    return CohortSummary(
        n_hat=n_hat,
        n_ost=int(len(df) - n_hat),
        n_hat_matched=matched.info["n_treated_matched"],
        n_ost_matched=matched.info["n_control_matched"],
        n_read=cohort.n_read,
        n_excluded=int(
            cohort.exclusions.loc[cohort.exclusions["stage"] == "cohort", ["n_hat", "n_ost"]]
            .sum()
            .sum()
        ),
        exclusions=cohort.exclusions.to_dict(orient="records"),
    )


def _diagnostics(state: StudyState) -> Diagnostics:
    """Proportional-hazards tests, E-values of the primary estimates, the design's extras."""
    e_values = []
    for e in state.estimates:
        if e.primary:
            ev = e_value(
                e.estimate,
                e.ci_low,
                e.ci_high,
                measure=e.measure,
                incidence=incidence(state.designs["matched"], e.outcome),
            )
            e_values.append(
                EValueRecord.model_validate(
                    {"outcome": e.outcome, "measure": e.measure, **ev.to_dict()}
                )
            )
    ph_tests = [
        PHTestRecord.model_validate(
            {"outcome": e.outcome, "method": e.method, **e.details.get("ph_test", {})}
        )
        for e in state.estimates
        if "ph_test" in e.details
    ]
    return Diagnostics(ph_tests=ph_tests, e_values=e_values, **state.extras)


def results_document(state: StudyState, config: StudyConfig) -> ResultsDocument:
    """The contents of ``results.json`` of a version-1 study, typed."""
    df, designs, balance = state.data, state.designs, state.balance
    return ResultsDocument(
        schema_version=SCHEMA_VERSION,
        cohort=_cohort_summary(state),
        estimates=[Estimate.from_effect(e) for e in state.estimates],
        design=DesignSection(
            primary="matched",
            designs={name: d.info for name, d in designs.items()},
            covariates=list(config.propensity_covariates),
            propensity_not_finite={
                "n_hat": int((~np.isfinite(df["ps_logit"]) & (df["treatment"] == 1)).sum()),
                "n_ost": int((~np.isfinite(df["ps_logit"]) & (df["treatment"] == 0)).sum()),
                "note": "persons whose score is 0 or 1 (e.g. OST in regions without HAT); "
                "they cannot be matched and are not in ps_overlap.csv",
            },
            max_abs_smd={
                col.removeprefix("smd_"): float(balance[col].abs().max())
                for col in balance.columns
                if col.startswith("smd_")
            },
        ),
        diagnostics=_diagnostics(state),
        truth=state.extract.truth,
    )


def study_tables(state: StudyState, config: StudyConfig) -> dict[str, pd.DataFrame]:
    """Flow, exclusions, balance, Table 1, overlap, estimates and the disclosure evidence."""
    cohort, matched = state.cohort, state.designs["matched"]
    n_hat, n_ost = matched.info["n_treated_matched"], matched.info["n_control_matched"]
    step = {"step": "matched", "stage": "matched", "n_hat": n_hat, "n_ost": n_ost,
            "n_total": n_hat + n_ost}  # fmt: skip
    tables = {
        "flow": pd.concat([cohort.flow(), pd.DataFrame([step])], ignore_index=True),
        "exclusions": cohort.exclusions,
        "balance": state.balance,
        **design_tables(state, config),
        "estimates": _estimates_table(state.estimates),
    }
    # for disclosure control of the outputs (stays in the analyst's folder, never released)
    tables.update(
        disclosure_evidence(
            state.data,
            state.designs,
            covariates=config.propensity_covariates,
            rate_tables=RATE_TABLES,
        )
    )
    return tables


def _estimates_table(estimates: list[EffectEstimate]) -> pd.DataFrame:
    """One row per estimate, without the details."""
    return pd.DataFrame([e.to_dict() for e in estimates]).drop(columns=["details"])
