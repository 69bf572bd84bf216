"""Multiple-imputation stage: the designs and outcome models within ``m`` imputed datasets.

:func:`imputation_stage` imputes the incomplete covariates of the propensity model by
chained equations (:func:`analysis.design.imputation.impute_chain`), with the treatment, the
complete covariates and the outcomes in the imputation model (each time-to-event outcome
by its event indicator and Nelson–Aalen cumulative hazard, White & Royston 2009; crime by
its count and log person-time). Within each imputed dataset it fits the propensity score,
matches (the primary design's settings) and weights (IPTW), and fits the four outcome
models ("MIte": Leyrat et al. 2019); the estimates are pooled by Rubin's rules on the log
scale with Barnard–Rubin degrees of freedom (:func:`analysis.outcomes.pooling.pool_estimates`)
and reported as ``cox_matched_mi``, ``rate_matched_mi``, ``cox_iptw_mi``, ``rate_iptw_mi``.
Balance is averaged over the imputations.

With ``missing: mi`` the pooled matched estimates are the primary ones and the
missing-indicator designs (``matched``, ``iptw``...) the sensitivity estimates; with
``missing: indicator`` the pooled estimates are added as sensitivity estimates, in every
study run unless ``imputation.sensitivity`` is ``false`` (its default ``null`` is on in a
study run, off in a simulation replicate). The stage runs after the document stage and
amends the results document (estimates, ``design.designs``, ``design.max_abs_smd``,
``design.missing``, the E-values of the primary estimates) and adds the tables
``missing``, ``balance_mi`` and ``imputation_trace``. When it does not impute,
``design.missing`` says why (:func:`not_imputed`): switched off by the configuration, or
no missing value in the covariates of the propensity model (multiple imputation would
repeat the missing-indicator analysis). Each imputation draws from its own child of the stage's generator
(``SeedSequence(seed, spawn_key=(MI_STREAM,))``), so results do not depend on ``n_jobs``.

References
----------
Leyrat C, Seaman SR, White IR, et al. (2019). Propensity score analysis with partially
observed covariates: how should multiple imputation be used? *Stat Methods Med Res*
28(1):3-19.

Granger E, Sergeant JC, Lunt M (2019). Avoiding pitfalls when combining multiple
imputation and propensity scores. *Stat Med* 38(26):5120-5132.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from analysis._parallel import map_tasks
from analysis.data.contract import PRIMARY_OUTCOMES
from analysis.design.imputation import (
    KINDS,
    complete,
    impute_chain,
    nelson_aalen,
    potential_scale_reduction,
    variable_kinds,
)
from analysis.design.propensity import fit_propensity
from analysis.outcomes.pooling import pool_estimates
from analysis.outcomes.sensitivity import e_value
from analysis.results import EffectEstimate
from evaluation import study_design
from evaluation.config import StudyConfig
from evaluation.disclosure import EVIDENCE_PREFIX, disclosure_evidence
from evaluation.results_document import ResultsDocument
from evaluation.stages.designs import balance_stage, build_designs
from evaluation.stages.document import truth_lookup
from evaluation.stages.outcomes import incidence, outcome_estimates
from evaluation.stages.secondary import RATE_TABLES, primary_extras
from evaluation.study import StudyError, StudyState

__all__ = [
    "MI_DESIGNS",
    "MI_STREAM",
    "OUTCOME_TRANSFORMS",
    "imputation_frame",
    "imputation_stage",
    "incomplete",
    "missing_shares",
    "not_imputed",
    "outcome_predictors",
    "sensitivity_failed",
    "pooled_e_values",
]

#: spawn key of the imputations' random stream (``SeedSequence(seed, spawn_key=(17,))``)
MI_STREAM = 17

#: the designs analysed within each imputed dataset -> their name in the results
MI_DESIGNS = {"matched": "matched_mi", "iptw": "iptw_mi"}

#: transformations of the outcome predictors of the imputation model
OUTCOME_TRANSFORMS = {"followup_charges": "log1p"}


def incomplete(df: pd.DataFrame, config: StudyConfig) -> list[str]:
    """The propensity covariates with missing values that can be imputed.

    Numeric or boolean, missing for some persons and observed for others (the rule of
    version 2's :func:`evaluation.target_trial_mi.imputation_units` too).
    """
    return [
        c
        for c in config.propensity_covariates
        if (is_numeric_dtype(df[c]) or is_bool_dtype(df[c]))
        and df[c].isna().any()
        and df[c].notna().any()
    ]


def imputation_frame(df: pd.DataFrame, config: StudyConfig) -> tuple[pd.DataFrame, list[str]]:
    """The cohort with the outcome predictors of the imputation model, and the predictors.

    The outcomes enter as: death and overdose death with their Nelson–Aalen cumulative
    hazards at the end of follow-up; discontinuation with its hazard at the retention
    time (0 for persons outside the retention analysis, with ``in_retention``); crime
    as ``log(1 + followup_charges)`` and ``log(crime_years)``. The treatment and every
    complete covariate (categorical ones as 0/1 columns; a missing level of a
    categorical covariate stays its own level) are predictors too.
    """
    out, outcomes = outcome_predictors(df)
    missing = set(incomplete(df, config))
    covariates = [c for c in config.propensity_covariates if c not in missing]
    return out, ["treatment", *covariates, *outcomes]


def outcome_predictors(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``df`` with the outcome predictors of an imputation model, and their names.

    Death and overdose death with their Nelson–Aalen cumulative hazards at the end of
    follow-up (over the rows of ``df``); discontinuation with its hazard at the
    retention time (0 outside the retention analysis, with ``_in_retention``); crime as
    ``followup_charges`` (``log1p`` in :data:`OUTCOME_TRANSFORMS`) and
    ``log(crime_years)``. ``df`` has version 1's cohort outcome columns
    (:func:`evaluation.trial_frame.outcome_frame` gives them to risk-set rows).
    """
    out = df.copy()
    ret = out["in_retention"].to_numpy(bool)
    out["_in_retention"] = ret.astype(float)
    out["_H_death"] = nelson_aalen(out["followup_days"], out["died"])
    out["_H_overdose"] = nelson_aalen(out["followup_days"], out["overdose_death"])
    out["_discontinued"] = np.where(ret, out["discontinued"].fillna(0), 0.0)
    h_ret = np.zeros(len(out))
    h_ret[ret] = nelson_aalen(out.loc[ret, "retention_days"], out.loc[ret, "discontinued"])
    out["_H_retention"] = h_ret
    out["_log_crime_years"] = np.log(out["crime_years"].clip(lower=1 / 365.25))
    outcomes = ["died", "_H_death", "overdose_death", "_H_overdose", "_in_retention",
                "_discontinued", "_H_retention", "followup_charges", "_log_crime_years"]  # fmt: skip
    return out, outcomes


def _analyse(df: pd.DataFrame, config: StudyConfig) -> tuple[list[EffectEstimate], Any, dict]:
    """Propensity score, matched and IPTW designs and outcome models of one complete dataset."""
    ps = fit_propensity(
        df,
        treatment="treatment",
        covariates=config.propensity_covariates,
        transforms=study_design.TRANSFORMS,
        levels=study_design.LEVELS,
    )
    df = df.assign(ps=ps.score, ps_logit=ps.logit)
    sens = config.sensitivity.model_copy(
        update={"one_to_one": False, "naive": False, "caliper": config.matching.caliper}
    )
    designs = build_designs(df, config.model_copy(update={"sensitivity": sens}), propensity=ps)
    estimates = [e for d in designs.values() for e in outcome_estimates(d, config)]
    # the absolute measures of the matched design (risk, RMST differences...), pooled on
    # their own scale
    estimates += primary_extras(designs["matched"], config)[0]
    balance = balance_stage(StudyState(extract=None, data=df, designs=designs), config).balance
    info = {name: d.info for name, d in designs.items()}
    incid = {o: incidence(designs["matched"], o) for o in PRIMARY_OUTCOMES}
    evidence = disclosure_evidence(
        df, designs, covariates=config.propensity_covariates, rate_tables=RATE_TABLES
    )[f"{EVIDENCE_PREFIX}estimates"]
    return estimates, balance, {"designs": info, "incidence": incid, "evidence": evidence}


def _one_imputation(
    frame: pd.DataFrame,
    cohort: pd.DataFrame,
    config: StudyConfig,
    rng: np.random.Generator,
    *,
    impute: list[str],
    predictors: list[str],
    kinds: dict[str, str],
) -> tuple[list[EffectEstimate], pd.DataFrame, dict, pd.DataFrame]:
    """Impute one dataset and analyse it (one task of :func:`analysis._parallel.map_tasks`)."""
    from threadpoolctl import threadpool_limits

    cfg = config.imputation
    chain = impute_chain(
        frame,
        impute=impute,
        predictors=predictors,
        rng=rng,
        kinds=kinds,
        transforms={**study_design.TRANSFORMS, **OUTCOME_TRANSFORMS},
        iterations=cfg.iterations,
        k_pmm=cfg.k_pmm,
    )
    with threadpool_limits(1):
        estimates, balance, info = _analyse(complete(cohort, chain), config)
    return estimates, balance, info, chain.trace


def _run_imputations(state: StudyState, config: StudyConfig) -> tuple[list, list[str], dict]:
    """The ``m`` imputations and their analyses (``n_jobs`` processes at once)."""
    cohort = state.data.drop(columns=["ps", "ps_logit"], errors="ignore")
    impute = incomplete(cohort, config)
    frame, predictors = imputation_frame(cohort, config)
    kinds = variable_kinds(cohort, impute)
    cfg = config.imputation
    rngs = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(MI_STREAM,)))
    args = {"impute": impute, "predictors": predictors, "kinds": kinds}
    task = partial(_one_imputation, frame, cohort, config, **args)
    try:
        runs = map_tasks(task, rngs.spawn(cfg.m), n_jobs=cfg.n_jobs)
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise StudyError(f"multiple imputation failed: {exc}") from None
    return runs, impute, kinds


def _pooled(runs: list, config: StudyConfig, primary: set) -> list[EffectEstimate]:
    """Rubin's rules per design, outcome and measure, in the order of the first imputation.

    A pooled estimate is primary when its missing-indicator counterpart (same method
    without ``_mi``, outcome, measure) is in ``primary``.
    """
    by_key: dict[tuple[str, str, str], list[EffectEstimate]] = {}
    for estimates, *_ in runs:
        for e in estimates:
            by_key.setdefault((e.method, e.outcome, e.measure), []).append(e)
    out = []
    for key, ests in by_key.items():
        model, _, design = key[0].partition("_")
        pooled = pool_estimates(ests, method=f"{model}_{MI_DESIGNS[design]}", alpha=config.alpha)
        definition = ests[0].details.get("definition")
        if definition is not None:
            pooled = replace(pooled, details={**pooled.details, "definition": definition})
        out.append(pooled.with_primary(key in primary))
    return out


def _mean_balance(runs: list) -> pd.DataFrame:
    """SMDs and variance ratios averaged over the imputations (rows of the first)."""
    stacked = pd.concat([b for _, b, _, _ in runs], ignore_index=True)
    order = runs[0][1]["variable"]
    mean = stacked.groupby("variable", sort=False).mean(numeric_only=True).reindex(order)
    mean = mean.reset_index()
    mean.columns = [
        c.replace("_matched", "_matched_mi")
        .replace("_iptw", "_iptw_mi")
        .replace("_before", "_before_mi")
        for c in mean.columns
    ]
    return mean


def _mi_evidence(runs: list) -> pd.DataFrame:
    """Disclosure evidence of the pooled estimates: the worst case over the imputations.

    Per design, outcome and group: the fewest persons, events and total, the largest
    contributions (``top1``...) and negative values, so that the release's rules
    (:mod:`evaluation.release`) withhold a pooled estimate whenever one imputation would
    have been withheld.
    """
    rows = pd.concat([info["evidence"] for _, _, info, _ in runs], ignore_index=True)
    rows = rows[rows["design"].isin(list(MI_DESIGNS))]
    rows = rows.assign(design=rows["design"].map(MI_DESIGNS))
    worst = {c: ("min" if c in ("n", "n_events", "sum") else "max")
             for c in rows.columns if c not in ("design", "outcome", "group")}  # fmt: skip
    return rows.groupby(["design", "outcome", "group"], sort=False).agg(worst).reset_index()


def _missing_table(df: pd.DataFrame, config: StudyConfig, kinds: dict[str, str]) -> pd.DataFrame:
    """Missing values per propensity covariate, overall and by group."""
    rows = []
    hat = df["treatment"].to_numpy() == 1
    for c in config.propensity_covariates:
        miss = df[c].isna().to_numpy()
        rows.append(
            {
                "variable": c,
                **missing_shares(miss, hat),
                "imputation_model": KINDS[kinds[c]] if c in kinds else "",
            }
        )
    return pd.DataFrame(rows)


def _design_info(runs: list, config: StudyConfig, impute: list[str], kinds: dict, trace) -> dict:
    """``design.designs`` entries of the MI designs: means over the imputations."""
    cfg = config.imputation
    conv = potential_scale_reduction(trace)
    imputation = {
        "m": cfg.m,
        "iterations": cfg.iterations,
        "k_pmm": cfg.k_pmm,
        "imputed": {c: kinds[c] for c in impute},
        "max_rhat": float(conv["rhat"].max()) if conv["rhat"].notna().any() else None,
        "rhat": dict(zip(conv["variable"], conv["rhat"].astype(float), strict=True)),
    }
    out = {}
    for design, name in MI_DESIGNS.items():
        infos = [info["designs"][design] for _, _, info, _ in runs if design in info["designs"]]
        numeric = {
            k: float(np.mean([i[k] for i in infos]))
            for k, v in infos[0].items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        out[name] = {**numeric, "imputation": imputation}
    return out


def _amend_document(
    document: ResultsDocument,
    pooled: list[EffectEstimate],
    *,
    designs: dict[str, dict],
    balance: pd.DataFrame,
    runs: list,
    config: StudyConfig,
) -> ResultsDocument:
    """The results document with the pooled estimates and the MI designs added.

    With ``missing: mi`` the pooled matched estimates of the primary outcomes become the
    primary ones (the missing-indicator ones sensitivity estimates), ``design.primary``
    is ``matched_mi`` and the E-values are those of the pooled estimates.
    """
    doc = document.to_json_dict()
    primary_mi = config.missing == "mi"
    if primary_mi:
        for e in doc["estimates"]:
            e["primary"] = False
    doc["estimates"] += [e.to_dict() for e in pooled]
    design = doc["design"]
    design["designs"].update(designs)
    design["max_abs_smd"].update(
        {
            col.removeprefix("smd_"): float(balance[col].abs().max())
            for col in balance.columns
            if col.startswith("smd_") and col != "smd_before_mi"
        }
    )
    design["missing"] = {
        "method": config.missing,
        "primary_design": "matched_mi" if primary_mi else design["primary"],
        "sensitivity": "missing-indicator designs (matched, iptw...)" if primary_mi
        else "multiple imputation (matched_mi, iptw_mi)",
    }  # fmt: skip
    if primary_mi:
        design["primary"] = "matched_mi"
        doc["diagnostics"]["e_values"] = pooled_e_values(pooled, runs)
    return ResultsDocument.model_validate(doc)


def missing_shares(miss: np.ndarray, hat: np.ndarray) -> dict[str, Any]:
    """Count and shares of missing values, overall and in each group (NaN for an empty group)."""
    return {
        "n_missing": int(miss.sum()),
        "share_missing": float(miss.mean()),
        "share_missing_hat": float(miss[hat].mean()) if hat.any() else np.nan,
        "share_missing_ost": float(miss[~hat].mean()) if (~hat).any() else np.nan,
    }


#: why the other missing-data method was not run -> the text of ``design.missing``
NOT_IMPUTED = {
    "configuration": "switched off by the study configuration (imputation.sensitivity: false)",
    "no_missing_values": "no covariate of the propensity model has a missing value: multiple "
    "imputation would repeat the missing-indicator analysis, so it was not run",
    "failed": "the multiple-imputation sensitivity analysis failed and is left out",
    "never_observed": "no covariate of the propensity model is missing on some rows only: "
    "multiple imputation has nothing to fill in and was not run; covariates missing on "
    "every row carry no information and are left out of the propensity model",
}


def not_imputed(
    config: StudyConfig, primary_design: str | None, reason: str, detail: str | None = None
) -> dict[str, Any]:
    """``design.missing`` of a study that did not impute: the method and why (``reason``).

    ``reason`` is a key of :data:`NOT_IMPUTED` (``configuration``: ``missing: indicator``
    with ``imputation.sensitivity: false``; ``no_missing_values``: nothing to impute;
    ``never_observed``: nothing to impute, ``detail`` names the covariates missing everywhere;
    ``failed``: the sensitivity analysis failed, ``detail`` says how).
    """
    note = NOT_IMPUTED[reason] + (f": {detail}" if detail else "")
    return {
        "method": config.missing,
        "primary_design": primary_design,
        "sensitivity": None,
        "not_imputed": reason,
        "note": note,
    }


def sensitivity_failed(exc: Exception, config: StudyConfig) -> str:
    """The failure of the imputations as text, warned about; re-raised when MI is primary.

    Multiple imputation as the sensitivity analysis (``missing: indicator``) must not
    stop the study: its failure is a warning and a note in ``design.missing``.
    """
    if config.missing == "mi":
        raise exc from None
    text = str(exc).removeprefix("multiple imputation failed: ")
    warnings.warn(f"{NOT_IMPUTED['failed']}: {text}", RuntimeWarning, stacklevel=2)
    return text


def _imputation_skipped(
    state: StudyState, config: StudyConfig, reason: str, detail: str | None = None
) -> StudyState:
    """``state`` with ``design.missing`` saying why nothing was imputed."""
    if state.document is None or state.document.design is None:
        return state
    doc = state.document.to_json_dict()
    primary = doc["design"].get("primary")
    doc["design"]["missing"] = not_imputed(config, primary, reason, detail)
    return replace(state, document=ResultsDocument.model_validate(doc))


def pooled_e_values(
    pooled: list[EffectEstimate], runs: list, *, estimand: bool = False
) -> list[dict]:
    """E-values of the pooled primary estimates (incidence averaged over imputations).

    ``estimand``: also name each estimate's estimand (version 2's target trial).
    """
    out = []
    for e in pooled:
        if not e.primary:
            continue
        inc = [info["incidence"].get(e.outcome) for _, _, info, _ in runs]
        incidence = None if any(v is None for v in inc) else float(np.mean(inc))
        ev = e_value(e.estimate, e.ci_low, e.ci_high, measure=e.measure, incidence=incidence)
        named = {"estimand": e.estimand} if estimand else {}
        out.append({"outcome": e.outcome, "measure": e.measure, **named, **ev.to_dict()})
    return out


def imputation_stage(state: StudyState, config: StudyConfig) -> StudyState:
    """Multiple imputation, the designs within each imputed dataset, Rubin's rules.

    Runs when ``missing`` is ``mi`` or ``imputation.sensitivity`` is not ``false``, and
    the propensity covariates have missing values; otherwise returns ``state`` with
    ``design.missing`` saying why it did not (:func:`not_imputed`).

    Returns
    -------
    StudyState
        With the pooled estimates in ``estimates`` and in ``document`` (amended), and
        the tables ``missing``, ``balance_mi`` and ``imputation_trace``.

    Raises
    ------
    StudyError
        With ``missing: mi``, an imputation model or an analysis of an imputed dataset
        failed (as the sensitivity analysis, a failure is a warning and a note in
        ``design.missing``: :func:`sensitivity_failed`).
    """
    if config.missing != "mi" and not config.imputation.reports_other():
        return _imputation_skipped(state, config, "configuration")
    if not incomplete(state.data, config):
        return _imputation_skipped(state, config, "no_missing_values")
    try:
        runs, impute, kinds = _run_imputations(state, config)
    except StudyError as exc:
        return _imputation_skipped(state, config, "failed", sensitivity_failed(exc, config))
    truth = truth_lookup(state.extract.truth)
    primary_mi = config.missing == "mi"
    primary = {(e.method, e.outcome, e.measure) for e in state.estimates if e.primary}
    pooled = [
        e.with_truth(truth.get((e.outcome, e.measure)))
        for e in _pooled(runs, config, primary if primary_mi else set())
    ]
    trace = pd.concat([r[3].assign(chain=i) for i, r in enumerate(runs)], ignore_index=True)[
        ["chain", "iteration", "variable", "mean", "sd"]
    ]
    balance = _mean_balance(runs)
    designs = _design_info(runs, config, impute, kinds, trace)
    document = _amend_document(
        state.document, pooled, designs=designs, balance=balance, runs=runs, config=config
    )
    key = f"{EVIDENCE_PREFIX}estimates"
    tables = {
        **state.tables,
        key: pd.concat([state.tables[key], _mi_evidence(runs)], ignore_index=True),
        "missing": _missing_table(state.data, config, kinds),
        "balance_mi": balance,
        "imputation_trace": trace,
    }
    earlier = [e.with_primary(False) if primary_mi else e for e in state.estimates]
    estimates = [*earlier, *pooled]
    tables["estimates"] = pd.DataFrame([e.to_dict() for e in estimates]).drop(columns=["details"])
    return replace(state, estimates=estimates, document=document, tables=tables)
