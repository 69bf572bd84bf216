"""Outcomes from dates for the target trial, under intention to treat and per protocol.

Version 1's definitions (follow-up, mortality, prison days and charges) with
``index_date`` = the row's date, version 2's retention (the spell holding the
last OST day before the date), and the per-protocol strategy "never initiate
HAT" (a later HAT start censors).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.data.eligibility import TrialProtocol, on_pairs
from analysis.data.extract import HistoryExtract
from analysis.data.histories import NO_DATE, Histories, last_ost_day
from analysis.data.intervals import at
from analysis.data.trial_columns import spread

__all__ = ["OUTCOME_COLUMNS", "outcomes", "outcomes_from"]

#: outcomes from a date (:func:`outcomes_from`), in order
OUTCOME_COLUMNS = (
    "pp_censor_date",
    "followup_end",
    "followup_days",
    "died",
    "overdose_death",
    "emigrated",
    "retention_days",
    "discontinued",
    "prison_days",
    "crime_days",
    "followup_charges",
    "baseline_prison_days",
    "baseline_crime_days",
    "baseline_charges_at_risk",
    "pp_followup_end",
    "pp_followup_days",
    "pp_died",
    "pp_overdose_death",
    "pp_emigrated",
    "pp_retention_days",
    "pp_discontinued",
    "pp_prison_days",
    "pp_crime_days",
    "pp_followup_charges",
)


def outcomes(
    h: Histories, code: np.ndarray, day: np.ndarray, protocol: TrialProtocol
) -> dict[str, np.ndarray]:
    """Outcome values of the rows ``(code, day)`` (see :func:`outcomes_from`)."""
    gap, lookback = protocol.gap_days, protocol.lookback_days
    end = h.end[code]
    died = h.died[code]
    emigrated = h.emigrated[code]
    overdose_death = died & h.overdose_death[code]
    # retention: the treatment spell holding the last OST day before the date
    last, has_ost = last_ost_day(h, code, day)
    pos, in_spell = h.spells.last_on_or_before(code, np.where(has_ost, last, day - 1))
    has_spell = has_ost & in_spell
    spell_end = np.where(has_spell, at(h.spell_end, pos), day - 1)
    # per protocol: a later HAT start ends follow-up, censored (it wins a tie with death)
    hat = h.first_hat[code]
    later_hat = (hat > day) & (hat != NO_DATE)
    censored = later_hat & (hat <= end)
    pp_end = np.where(censored, hat, end)
    pp_died = died & ~censored
    pp_emigrated = emigrated & ~censored

    def retention(stop: np.ndarray, by_death: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        days = np.maximum(np.minimum(spell_end, stop) - day, 0)
        # a return within the gap after the spell's end could not be seen when follow-up
        # ended by emigration or the extract date: censored at the spell's end
        unseen = ~by_death & (stop - spell_end < gap)
        return days, (spell_end < stop) & ~unseen

    retention_days, discontinued = retention(end, died)
    # ended by the HAT start: a return within the gap would have joined the spell
    pp_retention_days, pp_discontinued = retention(pp_end, pp_died | censored)

    prison = h.prison
    before_day = prison.days_before_day(code, day)
    prison_days = prison.days_before_day(code, end + 1) - before_day
    # per protocol, charges from the HAT start on are not counted
    pp_last = np.where(censored, hat - 1, end)
    pp_prison_days = prison.days_before_day(code, pp_last + 1) - before_day
    baseline_prison = before_day - prison.days_before_day(code, day - lookback)
    at_risk = h.charges_at_risk
    return {
        "pp_censor_date": np.where(later_hat, hat, NO_DATE),
        "followup_end": end,
        "followup_days": end - day,
        "died": died,
        "overdose_death": overdose_death,
        "emigrated": emigrated,
        "retention_days": retention_days,
        "discontinued": discontinued,
        "prison_days": prison_days,
        "crime_days": end - day + 1 - prison_days,
        "followup_charges": at_risk.count_between(code, day, end),
        "baseline_prison_days": baseline_prison,
        "baseline_crime_days": lookback - baseline_prison,
        "baseline_charges_at_risk": at_risk.count_between(code, day - lookback, day - 1),
        "pp_followup_end": pp_end,
        "pp_followup_days": pp_end - day,
        "pp_died": pp_died,
        "pp_overdose_death": overdose_death & ~censored,
        "pp_emigrated": pp_emigrated,
        "pp_retention_days": pp_retention_days,
        "pp_discontinued": pp_discontinued,
        "pp_prison_days": pp_prison_days,
        "pp_crime_days": pp_last - day + 1 - pp_prison_days,
        "pp_followup_charges": at_risk.count_between(code, day, pp_last),
    }


def outcomes_from(
    history: HistoryExtract,
    pairs: pd.DataFrame,
    *,
    lookback_days: int = 730,
    gap_days: int = 30,
) -> pd.DataFrame:
    """Outcomes from dates, under intention to treat and per protocol.

    Version 1's definitions with ``index_date`` = the row's date ``d``, and
    version 2's retention. Meant for persons eligible on ``d`` (in OST in the
    days before it); the per-protocol columns apply to a comparator ("never
    initiate HAT"): for a person whose first HAT start is on or before ``d``
    they equal the intention-to-treat ones.

    Parameters
    ----------
    history : HistoryExtract
        A validated history extract.
    pairs : pandas.DataFrame
        ``person_id`` and ``index_date`` (the date ``d``).
    lookback_days : int, default 730
        Baseline window for the before/after crime columns.
    gap_days : int, default 30
        Gap rule for treatment spells.

    Returns
    -------
    pandas.DataFrame
        Same index as ``pairs``, columns:

        - ``pp_censor_date``: the person's first HAT start after ``d`` (on or
          before the extract date), ``NaT`` if none;
        - ``followup_end``: the first of death, emigration and the extract date;
          ``followup_days`` = ``followup_end - d``; ``died``,
          ``overdose_death``, ``emigrated`` (0/1; a death on the same day as an
          emigration is a death);
        - ``retention_days``: from ``d`` to the end of the treatment spell (gap
          rule over all episodes, HAT included) holding the last OST day before
          ``d``, at most to ``followup_end`` and at least 0;
          ``discontinued``: the spell ended before follow-up ended, except a
          spell ending fewer than ``gap_days`` before a follow-up ended by
          emigration or the extract date (censored); missing when no OST day
          precedes ``d``;
        - crime, with version 1's prison rules: ``prison_days`` (days of merged
          stays from ``d`` to ``followup_end``, both included), ``crime_days``
          (``followup_days + 1 - prison_days``), ``followup_charges`` (charges
          from ``d`` to ``followup_end`` not dated inside a stay);
          ``baseline_prison_days``, ``baseline_crime_days``
          (``lookback_days - baseline_prison_days``) and
          ``baseline_charges_at_risk`` over ``d - lookback_days`` to ``d - 1``;
        - ``pp_*``: the same under the per-protocol strategy: follow-up also
          ends, censored, on ``pp_censor_date`` (``pp_died`` and
          ``pp_emigrated`` 0 when the HAT start comes first or on the same
          day), and the crime window ends the day before it (charges from the
          HAT start on are not counted).
    """
    h, protocol, code, day = on_pairs(
        history, pairs, lookback_days=lookback_days, gap_days=gap_days
    )
    columns = spread(outcomes(h, code, day, protocol), np.ones(len(code), dtype=bool))
    _, has_ost = last_ost_day(h, code, day)
    for name in ("retention_days", "discontinued", "pp_retention_days", "pp_discontinued"):
        values = columns[name]
        assert isinstance(values, pd.arrays.IntegerArray)
        columns[name] = pd.arrays.IntegerArray(
            values.to_numpy(dtype=np.int64, na_value=0), ~has_ost
        )
    return pd.DataFrame(columns, index=pairs.index)
