"""Covariates of persons on dates for the target trial (contract version 2).

Only information up to the day before the date is used: the latest status form
in the lookback window, overdoses, OST spells and days in OST, and charges.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.data.contract import ASSESSMENT_COVARIATES, DAYS_PER_YEAR
from analysis.data.eligibility import TrialProtocol, on_pairs
from analysis.data.extract import HistoryExtract
from analysis.data.histories import Histories
from analysis.data.intervals import at
from analysis.data.trial_columns import spread, years_of

__all__ = ["COVARIATE_COLUMNS", "covariates", "covariates_on"]

#: covariates on a date (:func:`covariates_on`), in order
COVARIATE_COLUMNS = (
    "age",
    "sex",
    "region",
    *ASSESSMENT_COVARIATES,
    "prior_overdose",
    "prior_ost_spells",
    "days_in_ost_last_year",
    "baseline_charges",
)


def covariates(
    h: Histories, code: np.ndarray, day: np.ndarray, protocol: TrialProtocol
) -> dict[str, np.ndarray]:
    """Covariate values of the rows ``(code, day)`` (see :func:`covariates_on`)."""
    lookback = protocol.lookback_days
    out: dict[str, np.ndarray] = {
        "age": years_of(day) - h.birth_year[code],
        "sex": h.sex[code],
        "region": h.region[code],
    }
    pos, found = h.assessments.last_on_or_before(code, day - 1)
    form_day = at(h.assessment_day, pos)
    found &= form_day >= day - lookback
    for column in ASSESSMENT_COVARIATES:
        out[column] = np.where(found, at(h.answers[column], pos), np.nan)
    elapsed = (day - form_day) / DAYS_PER_YEAR
    out["years_opioid_use"] = np.where(found, out["years_opioid_use"] + elapsed, np.nan)
    if h.overdoses is None:
        out["prior_overdose"] = np.full(len(code), np.nan)
    else:
        recent = h.overdoses.count_between(code, day - lookback, day - 1)
        out["prior_overdose"] = (recent > 0).astype(np.float64)
    out["prior_ost_spells"] = h.ost_spells.count_on_or_before(code, day - 1)
    cover = h.ost_cover
    out["days_in_ost_last_year"] = cover.days_before_day(code, day) - cover.days_before_day(
        code, day - 365
    )
    out["baseline_charges"] = h.charges.count_between(code, day - lookback, day - 1)
    return out


def covariates_on(
    history: HistoryExtract,
    pairs: pd.DataFrame,
    *,
    lookback_days: int = 730,
    gap_days: int = 30,
) -> pd.DataFrame:
    """Covariates of persons on dates (only information up to the day before is used).

    Parameters
    ----------
    history : HistoryExtract
        A validated history extract.
    pairs : pandas.DataFrame
        ``person_id`` and ``index_date`` (the date ``d``).
    lookback_days : int, default 730
        Length of the window ``d - lookback_days`` to ``d - 1``.
    gap_days : int, default 30
        Gap rule for the OST spells.

    Returns
    -------
    pandas.DataFrame
        Same index as ``pairs``, columns:

        - ``age`` (year of ``d`` minus ``birth_year``), ``sex``, ``region``;
        - from the latest status form dated in the window (none: all missing; a
          missing answer stays missing): ``years_opioid_use`` plus the years
          elapsed since the form (days / 365.25), ``injecting``,
          ``psychiatric_dx``, ``homeless``, ``benzodiazepine_use``;
        - ``prior_overdose``: an overdose dated in the window (1.0/0.0;
          missing when the extract has no ``overdoses`` table);
        - ``prior_ost_spells``: OST spells (gap rule over OST episodes only)
          that started before ``d``;
        - ``days_in_ost_last_year``: days from ``d - 365`` to ``d - 1`` covered
          by an OST episode;
        - ``baseline_charges``: charges dated in the window, in prison or not.
    """
    h, protocol, code, day = on_pairs(
        history, pairs, lookback_days=lookback_days, gap_days=gap_days
    )
    columns = spread(covariates(h, code, day, protocol), np.ones(len(code), dtype=bool))
    return pd.DataFrame(columns, index=pairs.index)
