"""Multiple imputation of the covariates on the date for the emulated target trial.

On a version-2 (history) extract the covariates on a date that can be missing are the answers
of the latest status form dated in the lookback window (``years_opioid_use``, ``injecting``,
``psychiatric_dx``, ``homeless``, ``benzodiazepine_use``): every answer is missing when no form
is dated in the window, and an answer left empty on a form is missing on every date the form
covers (:mod:`analysis.data.trial_covariates`). ``prior_overdose`` is missing only when the
extract has no ``overdoses`` table, for everyone: nothing to impute from; it keeps the
missing-indicator method. The other covariates on the date are complete.

A missing answer is one unknown value shared by all the stacked (risk set, person) rows on
which the form is the latest: imputing each row on its own would draw different values for
it, and treat the rows of one person as independent. The imputation is therefore clustered by
person: one record per **(person, status form)** and one per person for the dates without a
form in the window (:func:`imputation_units`, :func:`analysis.design.imputation_units.unit_table`).
A record's predictors are the means, over its stacked rows, of the complete covariates on
the date, calendar time and the outcomes from the index date (death and overdose death with
their Nelson–Aalen cumulative hazards over the stacked rows, discontinuation and its
cumulative hazard, charges and log person-time at risk of a charge; White & Royston 2009),
and the treatment: whether the record holds the person's initiator row. ``years_opioid_use``
is imputed as the value on the record's date (the form's date, or the first date of a
person's rows without a form) and carried forward with the years elapsed, as the contract
carries an answered value.

Within each of the ``m`` imputed datasets the trial's intention-to-treat analysis is redone
(:func:`analysis.design.risk_set_matching.risk_set_match`: propensity on the stacked rows,
risk-set matching; the estimators of the version-1 matched design and its absolute
measures), and the estimates are pooled by Rubin's rules
(:func:`analysis.outcomes.pooling.pool_estimates`: ratios on the log scale, risk and RMST
differences on their own scale, Barnard–Rubin degrees of freedom, the fraction of missing
information in ``details.pooling.fmi``). Their method is ``<model>_matched_mi``. The
per-protocol analysis (a bootstrap of the censoring-weighted fits) and the sensitivity
comparisons stay on the missing-indicator method: repeating them ``m`` times would multiply
the run time by ``m``.

:func:`with_imputation` amends the finished :class:`~evaluation.study.Study` of
:func:`evaluation.target_trial.run_target_trial`, as the version-1 imputation stage amends
the results document: with ``missing: mi`` the pooled estimates are the primary ones and the
missing-indicator estimates the sensitivity ones; with ``missing: indicator`` they are
added as sensitivity estimates unless ``imputation.sensitivity`` is ``false`` (its default
``null`` is on in a study run, off in a simulation replicate). When nothing is imputed
(switched off, or no covariate on the date missing where some are observed)
``design.missing`` says why, as in version 1
(:func:`evaluation.stages.imputation.not_imputed`).

References
----------
White IR, Royston P (2009). Imputing missing covariate values for the Cox model.
*Stat Med* 28(15):1982-1998.

Leyrat C, Seaman SR, White IR, et al. (2019). Propensity score analysis with partially
observed covariates: how should multiple imputation be used? *Stat Methods Med Res*
28(1):3-19.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from analysis._parallel import map_tasks
from analysis.data.contract import ASSESSMENT_COVARIATES, DAYS_PER_YEAR, PRIMARY_OUTCOMES
from analysis.data.extract import HistoryExtract
from analysis.data.risk_sets import RiskSets
from analysis.design.imputation import impute_chain, variable_kinds
from analysis.design.imputation_units import UnitTable, unit_table
from analysis.design.risk_set_matching import stack_risk_sets
from analysis.results import EffectEstimate
from evaluation import study_design
from evaluation.config import StudyConfig
from evaluation.disclosure_trial import _estimates_evidence
from evaluation.stages.designs import Design
from evaluation.stages.imputation import (
    MI_STREAM,
    OUTCOME_TRANSFORMS,
    not_imputed,
    outcome_predictors,
    sensitivity_failed,
)
from evaluation.stages.outcomes import incidence, outcome_estimates
from evaluation.stages.secondary import primary_extras
from evaluation.study import Study, StudyError
from evaluation.target_trial_mi_document import amend_study
from evaluation.trial_frame import match_on_plan, outcome_frame

__all__ = ["TrialImputation", "imputation_units", "run_imputations", "with_imputation"]

#: the unit key of a stacked row: ``person code * _SPAN + form day + 1`` (0: no form)
_SPAN = 1_000_000


@dataclass(frozen=True, kw_only=True)
class TrialImputation:
    """What every imputation of the stacked risk sets needs.

    Attributes
    ----------
    stacked : DataFrame
        The analysed (initiator, candidate) rows with the intention-to-treat outcomes.
    units : UnitTable
        One record per (person, status form) and per person without a form on some date.
    impute : tuple of str
        The covariates imputed.
    kinds : dict of str to str
        Their kinds (binary, continuous...).
    elapsed : ndarray
        Years from each row's record date to the row's date (added to an imputed
        ``years_opioid_use``).
    """

    stacked: pd.DataFrame
    units: UnitTable
    impute: tuple[str, ...]
    kinds: dict[str, str]
    elapsed: np.ndarray

    def completed(self, values: pd.DataFrame) -> pd.DataFrame:
        """The stacked rows with the missing values filled from imputed unit values."""
        rows = values.iloc[self.units.codes].reset_index(drop=True)
        out = self.stacked.copy()
        for col in self.impute:
            fill = rows[col].to_numpy() + (self.elapsed if col == "years_opioid_use" else 0.0)
            out[col] = out[col].fillna(pd.Series(fill, index=out.index))
        return out


def _record_dates(history: HistoryExtract, stacked: pd.DataFrame, lookback: int) -> pd.DataFrame:
    """Per stacked row: the date and answers of the latest status form of the window.

    The form dated ``d - lookback`` to ``d - 1`` (the contract's rule, as
    :func:`analysis.data.trial_covariates.covariates`); ``NaT`` and missing answers when
    there is none.
    """
    answers = [c for c in ASSESSMENT_COVARIATES if c in stacked.columns]
    left = pd.DataFrame(
        {"person_id": stacked["person_id"].astype(str).to_numpy(),
         "_day": (stacked["index_date"] - pd.Timedelta(days=1)).to_numpy(),
         "_row": np.arange(len(stacked))}
    ).sort_values("_day", kind="stable")  # fmt: skip
    forms = history.assessments
    if forms is None or forms.empty:
        return pd.DataFrame({"form_date": pd.NaT, **dict.fromkeys(answers, np.nan)},
                            index=stacked.index)  # fmt: skip
    right = forms.assign(person_id=forms["person_id"].astype(str))
    right = right[["person_id", "assessment_date", *[c for c in answers if c in forms]]]
    right = right.assign(_day=right["assessment_date"].astype(left["_day"].dtype))
    merged = pd.merge_asof(
        left, right.sort_values("_day", kind="stable"), on="_day", by="person_id",
        direction="backward", tolerance=pd.Timedelta(days=lookback - 1),
    ).sort_values("_row")  # fmt: skip
    out = pd.DataFrame({"form_date": merged["assessment_date"].to_numpy()}, index=stacked.index)
    for col in answers:
        out[col] = merged[col].to_numpy(np.float64) if col in merged else np.nan
    return out


def _predictor_rows(stacked: pd.DataFrame, covariates: list[str]) -> tuple[pd.DataFrame, list]:
    """The stacked rows' predictors: treatment, complete covariates, outcomes."""
    frame, outcomes = outcome_predictors(outcome_frame(stacked.assign(weight=1.0)))
    frame.index = stacked.index
    for col in covariates:
        frame[col] = stacked[col].to_numpy()
    return frame, ["treatment", *covariates, *outcomes]


def imputation_units(
    history: HistoryExtract, rs: RiskSets, config: StudyConfig
) -> TrialImputation | None:
    """The stacked risk sets and their imputation records (``None``: nothing to impute).

    Raises
    ------
    ValueError
        The covariates on the date and the status forms disagree (a bug).
    """
    plan = config.target_trial.analysis
    stacked = stack_risk_sets(rs.table)
    # the per-protocol outcomes are not analysed here (the censoring date is described)
    stacked = stacked.drop(
        columns=[c for c in stacked.columns if c.startswith("pp_") and c != "pp_censor_date"]
    )
    impute = [
        c for c in plan.covariates
        if c in ASSESSMENT_COVARIATES and stacked[c].isna().any() and stacked[c].notna().any()
    ]  # fmt: skip
    if not impute:
        return None
    forms = _record_dates(history, stacked, rs.protocol.lookback_days)
    for col in impute:
        if not np.array_equal(forms[col].isna().to_numpy(), stacked[col].isna().to_numpy()):
            raise ValueError(f"{col}: the status forms do not match the covariates on the date")
    person = pd.factorize(stacked["person_id"], sort=True)[0].astype(np.int64)
    form_day = (forms["form_date"] - pd.Timestamp("1970-01-01")).dt.days
    key = person * _SPAN + form_day.fillna(-1).to_numpy(np.int64) + 1
    date = stacked["index_date"]
    first = date.groupby(key).transform("min")
    reference = forms["form_date"].where(forms["form_date"].notna(), first)
    elapsed = ((date - reference).dt.days / DAYS_PER_YEAR).to_numpy(np.float64)
    complete = [c for c in plan.covariates if stacked[c].notna().all()]
    if plan.calendar_time:
        complete.append("calendar_years")
    rows, predictors = _predictor_rows(stacked, complete)
    # a record's values are its form's answers (years_opioid_use: on the form's date)
    units = unit_table(
        rows.assign(_unit=key, **{c: forms[c].to_numpy() for c in impute}),
        unit="_unit", impute=impute, predictors=predictors,
        transforms={**study_design.TRANSFORMS, **OUTCOME_TRANSFORMS}, maximum=["treatment"],
    )  # fmt: skip
    kinds = variable_kinds(units.table, impute)
    return TrialImputation(
        stacked=stacked, units=units, impute=tuple(impute), kinds=kinds, elapsed=elapsed
    )


def _analyse(stacked: pd.DataFrame, config: StudyConfig) -> tuple[list, pd.DataFrame, dict]:
    """The intention-to-treat analysis of one completed stacked table."""
    matched = match_on_plan(stacked, config)
    itt = outcome_frame(matched.data)
    design = Design(name="matched", data=itt, weighted=True, info=matched.info())
    estimates = outcome_estimates(design, config) + primary_extras(design, config)[0]
    info = {
        "designs": {"matched": design.info},
        "incidence": {o: incidence(design, o) for o in PRIMARY_OUTCOMES},
        "evidence": _estimates_evidence({"matched": itt}),
    }
    return estimates, matched.balance(), info


def _one_imputation(
    frame: TrialImputation, config: StudyConfig, rng: np.random.Generator
) -> tuple[list[EffectEstimate], pd.DataFrame, dict, pd.DataFrame]:
    """Impute the records once and analyse the completed stacked rows (one task)."""
    from threadpoolctl import threadpool_limits

    cfg = config.imputation
    chain = impute_chain(
        frame.units.table,
        impute=frame.impute,
        predictors=list(frame.units.predictors),
        rng=rng,
        kinds=frame.kinds,
        iterations=cfg.iterations,
        k_pmm=cfg.k_pmm,
    )
    with threadpool_limits(1):
        estimates, balance, info = _analyse(frame.completed(chain.values), config)
    return estimates, balance, info, chain.trace


def run_imputations(frame: TrialImputation, config: StudyConfig) -> list:
    """The ``m`` imputations and analyses; imputation ``i`` draws from child ``i`` of the
    stream ``SeedSequence(seed, spawn_key=(MI_STREAM,))``, whatever ``n_jobs``."""
    cfg = config.imputation
    rngs = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(MI_STREAM,)))
    return map_tasks(partial(_one_imputation, frame, config), rngs.spawn(cfg.m), n_jobs=cfg.n_jobs)


def _mean_info(runs: list) -> dict[str, Any]:
    """The matched design's numbers averaged over the imputations."""
    infos = [info["designs"]["matched"] for _, _, info, _ in runs]
    return {
        k: float(np.mean([i[k] for i in infos]))
        for k, v in infos[0].items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def with_imputation(
    study: Study, history: HistoryExtract, rs: RiskSets, config: StudyConfig
) -> Study:
    """The target trial's study with the multiple-imputation estimates (see the module).

    Imputes when ``missing`` is ``mi`` or ``imputation.sensitivity`` is not ``false``, and
    a covariate of the propensity model is missing on some dates (and observed on others);
    otherwise returns ``study`` with ``design.missing`` saying why it did not. As the
    sensitivity analysis (``missing: indicator``) a failure of the imputations is a warning
    and a note in ``design.missing``; with ``missing: mi`` it is a
    :class:`~evaluation.study.StudyError`.
    """
    if config.missing != "mi" and not config.imputation.reports_other():
        return _skipped(study, config, "configuration")
    try:
        frame = imputation_units(history, rs, config)
        if frame is None:
            never = _never_observed(rs, config)
            if never:
                return _skipped(study, config, "never_observed", ", ".join(never))
            return _skipped(study, config, "no_missing_values")
        runs = run_imputations(frame, config)
    except (ValueError, np.linalg.LinAlgError) as exc:
        error = StudyError(f"multiple imputation failed: {exc}")
        return _skipped(study, config, "failed", sensitivity_failed(error, config))
    return amend_study(study, frame, runs, config, truth=history.truth, info=_mean_info(runs))


def _never_observed(rs: RiskSets, config: StudyConfig) -> list[str]:
    """Covariates of the propensity model missing on every analysed row (initiators and
    candidates), e.g. every status-form answer of an extract without status forms."""
    rows = rs.table[rs.table["reason"].isna()]
    return [c for c in config.target_trial.analysis.covariates if rows[c].isna().all()]


def _skipped(study: Study, config: StudyConfig, reason: str, detail: str | None = None) -> Study:
    """``study`` with ``design.missing`` saying why nothing was imputed."""
    results = dict(study.results)
    design = dict(results["design"])
    design["missing"] = not_imputed(config, design.get("primary"), reason, detail)
    return Study(results={**results, "design": design}, tables=study.tables)
