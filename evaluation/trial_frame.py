"""Matched risk-set rows as an outcome table: the bridge from the target trial to the estimators.

The estimators of :mod:`evaluation.stages` read version 1's cohort columns; a risk-set row has
its outcomes under intention to treat and per protocol (``pp_*``). Used by the target trial,
its per-protocol analysis and its sensitivity analyses; :func:`match_on_plan` matches them
with the protocol's analysis plan.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.data.contract import DAYS_PER_YEAR
from analysis.design.risk_set_matching import RiskSetMatch, risk_set_match
from evaluation import study_design
from evaluation.config import StudyConfig

__all__ = ["match_on_plan", "outcome_frame"]


def match_on_plan(table: pd.DataFrame, config: StudyConfig) -> RiskSetMatch:
    """Risk-set matching of stacked risk-set rows with the protocol's analysis plan.

    The propensity model on the stacked rows and 1:k matching within each risk set
    (:func:`analysis.design.risk_set_matching.risk_set_match`) with the plan's covariates,
    ``k``, caliper, exact variables and calendar time, and the study's transforms and
    levels. Used by the primary analysis and by each imputed dataset.
    """
    plan = config.target_trial.analysis
    return risk_set_match(
        table,
        covariates=plan.covariates,
        k=plan.k,
        caliper=plan.caliper,
        exact=plan.exact,
        calendar_time=plan.calendar_time,
        transforms=study_design.TRANSFORMS,
        levels=study_design.LEVELS,
    )


def outcome_frame(data: pd.DataFrame, *, per_protocol: bool = False) -> pd.DataFrame:
    """Risk-set rows with the outcome columns under the names of version 1's cohort table.

    Parameters
    ----------
    data : pandas.DataFrame
        Matched (or stacked) risk-set rows with ``treatment``, ``group``, ``weight``.
    per_protocol : bool, default False
        Take the ``pp_*`` outcome columns (a comparator's follow-up ends, censored, on
        its first HAT start).

    Returns
    -------
    pandas.DataFrame
        ``person_id, index_date, treatment, group, weight, cluster`` (the person),
        ``followup_days, followup_years, died, overdose_death, retention_days``
        (``NaN`` when not in retention), ``discontinued, in_retention,
        followup_charges, crime_days, crime_years, baseline_charges_at_risk,
        baseline_crime_years`` as floats or ints, ready for the estimators of
        :mod:`evaluation.pipeline`.
    """
    p = "pp_" if per_protocol else ""

    def num(name: str, dtype: Any = np.int64) -> np.ndarray:
        return data[name].to_numpy(dtype=dtype, na_value=np.nan if dtype is float else 0)

    retention = num(f"{p}retention_days", float)
    out = pd.DataFrame(
        {
            "person_id": data["person_id"].astype(str).to_numpy(),
            "index_date": data["index_date"].to_numpy(),
            "treatment": data["treatment"].to_numpy(np.int64),
            "group": data["group"].to_numpy(),
            "weight": data["weight"].to_numpy(float),
            "cluster": data["person_id"].astype(str).to_numpy(),
            "followup_days": num(f"{p}followup_days"),
            "died": num(f"{p}died"),
            "overdose_death": num(f"{p}overdose_death"),
            "retention_days": retention,
            "discontinued": num(f"{p}discontinued", float),
            "in_retention": ~np.isnan(retention),
            "followup_charges": num(f"{p}followup_charges"),
            "crime_days": num(f"{p}crime_days"),
            "baseline_charges_at_risk": num("baseline_charges_at_risk"),
            "baseline_crime_days": num("baseline_crime_days"),
        }
    )
    out["followup_years"] = out["followup_days"] / DAYS_PER_YEAR
    out["crime_years"] = out["crime_days"] / DAYS_PER_YEAR
    out["baseline_crime_years"] = out["baseline_crime_days"] / DAYS_PER_YEAR
    return out
