"""A history extract (contract version 2) as per-person arrays and sorted day keys.

:func:`histories` sorts every table of a :class:`analysis.data.extract.HistoryExtract`
once: persons by ``person_id``; each person's episodes, stays, charges, status
forms and overdoses under an integer key ``person * span + day``
(:class:`analysis.data.intervals.Keys`), with OST coverage, treatment spells and
prison stays merged (:class:`analysis.data.intervals.Covered`). Every rule of the
target trial (eligibility, covariates, outcomes on a date) is then a binary
search into those keys, a cumulative sum of covered days or a gather from a
per-person array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.data.contract import ASSESSMENT_COVARIATES, HAT_MEDICATION, OST_MEDICATIONS
from analysis.data.extract import HistoryExtract
from analysis.data.intervals import (
    Covered,
    Keys,
    at,
    covered,
    day_numbers,
    merge_intervals,
    person_codes,
    sorted_keys,
)

__all__ = ["NO_DATE", "Histories", "histories", "last_ost_day"]

#: day number standing for "no date" (no death, emigration or HAT)
NO_DATE = np.iinfo(np.int64).max // 4


@dataclass(frozen=True)
class Histories:
    """A history extract as per-person arrays and sorted keys (persons sorted by id)."""

    ids: np.ndarray
    birth_year: np.ndarray
    sex: np.ndarray
    region: np.ndarray
    death: np.ndarray  # day of death, NO_DATE if none
    emigration: np.ndarray
    overdose_death: np.ndarray
    first_hat: np.ndarray  # first diacetylmorphine start on or before the extract date
    end: np.ndarray  # end of follow-up: first of death, emigration, extract date
    died: np.ndarray
    emigrated: np.ndarray
    extract_day: int
    history_start_day: int
    ost_cover: Covered  # days covered by OST episodes (inclusive ends made exclusive)
    ost_spells: Keys  # starts of OST spells (gap rule over OST episodes)
    spells: Keys  # starts of treatment spells (gap rule over all episodes)
    spell_end: np.ndarray
    prison: Covered  # merged prison stays [start, end)
    charges: Keys
    charges_at_risk: Keys  # charges not dated inside a prison stay
    assessments: Keys
    answers: dict[str, np.ndarray]
    assessment_day: np.ndarray
    overdoses: Keys | None

    @property
    def n(self) -> int:
        return len(self.ids)


def _single_day(value: pd.Timestamp) -> int:
    return int(day_numbers(np.array([value], dtype="datetime64[s]"))[0][0])


def _vital(
    history: HistoryExtract, persons: pd.DataFrame, ids: pd.Index, extract_day: int
) -> dict[str, np.ndarray]:
    """Deaths, emigration and the end of follow-up of each person."""
    n = len(ids)
    deaths = history.deaths
    d_code = person_codes(ids, deaths["person_id"], "deaths")
    death = np.full(n, NO_DATE, dtype=np.int64)
    death[d_code], _ = day_numbers(deaths["death_date"])
    overdose_death = np.zeros(n, dtype=bool)
    overdose_death[d_code] = deaths["cause"].to_numpy() == "overdose"
    emigration, missing = day_numbers(persons["emigration_date"])
    emigration[missing] = NO_DATE
    end = np.minimum(np.minimum(death, emigration), extract_day)
    died = (death <= extract_day) & (death == end)
    return {
        "death": death,
        "emigration": emigration,
        "overdose_death": overdose_death,
        "end": end,
        "died": died,
        "emigrated": (emigration <= extract_day) & (emigration == end) & ~died,
    }


def _dated(
    df: pd.DataFrame | None, ids: pd.Index, table: str, column: str
) -> tuple[np.ndarray, np.ndarray]:
    """Person codes and day numbers of a table's rows (none when the table is absent)."""
    if df is None:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    code = person_codes(ids, df["person_id"], table)
    day, _ = day_numbers(df[column])
    return code, day


def _intervals(
    df: pd.DataFrame, ids: pd.Index, table: str, extract_day: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Person codes, start and end days of an interval table (open ends: the extract date)."""
    code, start = _dated(df, ids, table, "start_date")
    end, open_ = day_numbers(df["end_date"])
    end[open_] = extract_day
    return code, start, end


def histories(history: HistoryExtract, gap_days: int) -> Histories:
    """Sort every table once (see :class:`Histories`).

    Parameters
    ----------
    history : HistoryExtract
        A validated history extract.
    gap_days : int
        Largest gap between episodes that still joins them into one spell.

    Returns
    -------
    Histories
    """
    persons = history.persons.sort_values("person_id", kind="stable").reset_index(drop=True)
    ids = pd.Index(persons["person_id"].astype(str))
    if not ids.is_unique:
        raise ValueError("persons: person_id not unique")
    n = len(ids)
    extract_day = _single_day(history.extract_date)
    start_day = _single_day(history.history_start)
    vital = _vital(history, persons, ids, extract_day)

    e_code, e_start, e_end = _intervals(
        history.treatment_episodes, ids, "treatment_episodes", extract_day
    )
    use = e_start <= extract_day  # as version 1: episodes after the extract date are ignored
    medication = history.treatment_episodes["medication"].to_numpy()
    is_hat = (medication == HAT_MEDICATION) & use
    is_ost = np.isin(medication, OST_MEDICATIONS) & use
    first_hat = np.full(n, NO_DATE, dtype=np.int64)
    np.minimum.at(first_hat, e_code[is_hat], e_start[is_hat])
    s_code, s_start, s_end = _intervals(history.incarcerations, ids, "incarcerations", extract_day)
    c_code, c_day = _dated(history.charges, ids, "charges", "charge_date")
    forms = history.assessments
    a_code, a_day = _dated(forms, ids, "assessments", "assessment_date")
    o_code, o_day = _dated(history.overdoses, ids, "overdoses", "overdose_date")

    death, emigration = vital["death"], vital["emigration"]
    known = [death[death != NO_DATE], emigration[emigration != NO_DATE], e_start, e_end]
    known += [s_start, s_end, c_day, a_day, o_day, np.array([extract_day, start_day])]
    origin = min(int(a.min()) for a in known if len(a)) - 2
    span = max(int(a.max()) for a in known if len(a)) + 3 - origin

    def keys(code: np.ndarray, day: np.ndarray) -> tuple[Keys, np.ndarray]:
        return sorted_keys(code, day, n, origin, span)

    def spells(mask: np.ndarray) -> tuple[Keys, np.ndarray]:
        merged = merge_intervals(
            e_code[mask], e_start[mask], e_end[mask], max_gap=gap_days, origin=origin, span=span
        )
        return keys(merged.code, merged.start)[0], merged.end

    prison = covered(s_code, s_start, s_end, n, origin, span)
    # charges dated inside a stay (from its first day to the day before its end)
    pos, found = prison.index.last_on_or_before(c_code, c_day)
    in_stay = found & (c_day < at(prison.end, pos))
    form_keys, form_order = keys(a_code, a_day)
    all_spells, spell_end = spells(use)
    return Histories(
        ids=ids.to_numpy(dtype=object),
        birth_year=persons["birth_year"].to_numpy(dtype=np.int64),
        sex=persons["sex"].to_numpy(dtype=object),
        region=persons["region"].to_numpy(dtype=object),
        **vital,
        first_hat=first_hat,
        extract_day=extract_day,
        history_start_day=start_day,
        # OST coverage: an episode covers [start, end] = [start, end + 1)
        ost_cover=covered(e_code[is_ost], e_start[is_ost], e_end[is_ost] + 1, n, origin, span),
        ost_spells=spells(is_ost)[0],
        spells=all_spells,
        spell_end=spell_end,
        prison=prison,
        charges=keys(c_code, c_day)[0],
        charges_at_risk=keys(c_code[~in_stay], c_day[~in_stay])[0],
        assessments=form_keys,
        answers={c: forms[c].to_numpy(dtype=np.float64)[form_order] for c in ASSESSMENT_COVARIATES},
        assessment_day=a_day[form_order],
        overdoses=None if history.overdoses is None else keys(o_code, o_day)[0],
    )


def last_ost_day(h: Histories, code: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The last day before ``day`` covered by an OST episode, and whether there is one."""
    pos, found = h.ost_cover.index.last_on_or_before(code, day - 1)
    return np.minimum(at(h.ost_cover.end, pos) - 1, day - 1), found
