"""The target trial's results with the multiple-imputation estimates added.

:func:`amend_study` pools the intention-to-treat estimates of the ``m`` imputed datasets
(:mod:`evaluation.target_trial_mi`) by Rubin's rules and amends the study as the version-1
imputation stage amends its document: estimates ``<model>_matched_mi`` (estimand ``itt``),
``design.designs.matched_mi``, ``design.max_abs_smd.matched_mi``, ``design.missing``, with
``missing: mi`` the primary flags, ``design.primary`` and the E-values; tables ``missing``,
``balance_mi``, ``imputation_trace`` and the disclosure evidence of the pooled estimates.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.design.imputation import KINDS, potential_scale_reduction
from analysis.outcomes.pooling import pool_estimates
from analysis.results import EffectEstimate
from evaluation.config import StudyConfig
from evaluation.disclosure import EVIDENCE_PREFIX
from evaluation.stages.imputation import (
    _mean_balance,
    _mi_evidence,
    missing_shares,
    pooled_e_values,
)
from evaluation.stages.outcomes import check_primaries
from evaluation.study import Study

__all__ = ["MI_DESIGN", "amend_study", "mi_method", "missing_table"]

#: the design of the pooled estimates
MI_DESIGN = "matched_mi"

_ITT = "itt"


def mi_method(method: str) -> str:
    """The pooled estimate's method: ``cox_matched`` -> ``cox_matched_mi``."""
    model, _, design = method.partition("_")
    return f"{model}_{design}_mi"


def _pooled(runs: list, config: StudyConfig, truth: dict, primary: set) -> list[EffectEstimate]:
    """Rubin's rules per (method, outcome, measure), in the order of the first imputation."""
    by_key: dict[tuple[str, str, str], list[EffectEstimate]] = {}
    for estimates, *_ in runs:
        for e in estimates:
            by_key.setdefault((e.method, e.outcome, e.measure), []).append(e)
    out = []
    for (method, outcome, measure), ests in by_key.items():
        if outcome not in config.target_trial.outcomes:
            continue
        pooled = pool_estimates(ests, method=mi_method(method), alpha=config.alpha)
        definition = ests[0].details.get("definition")
        if definition is not None:
            pooled = replace(pooled, details={**pooled.details, "definition": definition})
        out.append(
            replace(
                pooled,
                truth=truth.get((_ITT, outcome, measure)),
                primary=(method, outcome, measure) in primary,
                estimand=_ITT,
            )
        )
    return out


def _imputation_info(frame: Any, runs: list, config: StudyConfig) -> tuple[dict, pd.DataFrame]:
    """``design.designs.matched_mi.imputation`` and the chains' trace."""
    trace = pd.concat([r[3].assign(chain=i) for i, r in enumerate(runs)], ignore_index=True)[
        ["chain", "iteration", "variable", "mean", "sd"]
    ]
    conv = potential_scale_reduction(trace)
    cfg = config.imputation
    info = {
        "m": cfg.m,
        "iterations": cfg.iterations,
        "k_pmm": cfg.k_pmm,
        "imputed": {c: frame.kinds[c] for c in frame.impute},
        "unit": "person and status form (one record per person for the dates without a form)",
        "n_records": frame.units.n_units,
        "n_rows": len(frame.stacked),
        "max_rhat": float(conv["rhat"].max()) if conv["rhat"].notna().any() else None,
        "rhat": dict(zip(conv["variable"], conv["rhat"].astype(float), strict=True)),
        "not_imputed": "per-protocol and sensitivity estimates (missing-indicator method)",
    }
    return info, trace


def _fmi(pooled: list[EffectEstimate]) -> list[dict]:
    """The fraction of missing information of every pooled estimate."""
    return [
        {"outcome": e.outcome, "measure": e.measure, "method": e.method,
         "fmi": (e.details.get("pooling") or {}).get("fmi")}
        for e in pooled
    ]  # fmt: skip


# long: the document's sections amended one after the other, in one readable piece
def amend_study(
    study: Study,
    frame: Any,
    runs: list,
    config: StudyConfig,
    *,
    truth: dict | None,
    info: dict[str, Any],
) -> Study:
    """The study with the pooled estimates, the ``matched_mi`` design and its tables.

    Parameters
    ----------
    study : Study
        :func:`evaluation.target_trial.run_target_trial`'s study (missing-indicator method).
    frame : evaluation.target_trial_mi.TrialImputation
        The imputation records.
    runs : list
        :func:`evaluation.target_trial_mi.run_imputations`.
    config : StudyConfig
    truth : dict or None
        The extract's ``truth.json``.
    info : dict
        The matched design's numbers averaged over the imputations.

    Returns
    -------
    Study
    """
    doc = copy.deepcopy(study.results)
    primary_mi = config.missing == "mi"
    primary = {
        (e["method"], e["outcome"], e["measure"])
        for e in doc["estimates"]
        if e["primary"] and e.get("estimand") == _ITT
    }
    values = {
        (e.get("estimand", _ITT), e["outcome"], e["measure"]): e["value"]
        for e in (truth or {}).get("estimands", [])
        if e.get("value") is not None
    }
    pooled = _pooled(runs, config, values, primary if primary_mi else set())
    if primary_mi:
        for e in doc["estimates"]:
            e["primary"] = False
    doc["estimates"] += [e.to_dict() for e in pooled]
    imputation, trace = _imputation_info(frame, runs, config)
    balance = _mean_balance(runs)
    design = doc["design"]
    design["designs"][MI_DESIGN] = {**info, "imputation": imputation}
    design["max_abs_smd"][MI_DESIGN] = float(balance["smd_matched_mi"].abs().max())
    design["missing"] = {
        "method": config.missing,
        "primary_design": MI_DESIGN if primary_mi else design["primary"],
        "sensitivity": "missing-indicator designs (matched...; per protocol and the "
        "sensitivity comparisons always)" if primary_mi
        else "multiple imputation (matched_mi, intention to treat)",
        "fmi": _fmi(pooled),
    }  # fmt: skip
    if primary_mi:
        design["primary"] = MI_DESIGN
        doc["diagnostics"]["e_values"] = [
            v for v in doc["diagnostics"]["e_values"] if v.get("estimand") != _ITT
        ] + pooled_e_values(pooled, runs, estimand=True)
        check_primaries(pooled)
    key = f"{EVIDENCE_PREFIX}estimates"
    tables = dict(study.tables)
    tables.update(
        {
            key: pd.concat([tables[key], _mi_evidence(runs)], ignore_index=True),
            "missing": missing_table(frame, config),
            "balance_mi": balance,
            "imputation_trace": trace,
        }
    )
    result = Study(results=doc, tables=tables)
    tables["estimates"] = pd.DataFrame(
        [{k: v for k, v in e.items() if k != "details"} for e in result.results["estimates"]]
    )
    return Study(results=result.results, tables=tables)


def missing_table(frame: Any, config: StudyConfig) -> pd.DataFrame:
    """Missing values per covariate of the propensity model, by stacked row and by record."""
    stacked, units = frame.stacked, frame.units
    hat = stacked["treatment"].to_numpy() == 1
    rows = []
    for c in config.target_trial.analysis.covariates:
        miss = stacked[c].isna().to_numpy()
        unit_miss = units.table[c].isna().to_numpy() if c in frame.impute else None
        rows.append(
            {
                "variable": c,
                **missing_shares(miss, hat),
                "n_records": units.n_units if unit_miss is not None else np.nan,
                "n_records_missing": int(unit_miss.sum()) if unit_miss is not None else np.nan,
                "imputation_model": KINDS[frame.kinds[c]] if c in frame.kinds else "",
            }
        )
    return pd.DataFrame(rows)
