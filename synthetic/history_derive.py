"""The contract's version-2 outcome definitions and initiator eligibility, on arrays.

Used by the truth (on potential outcomes) and tested against the hand-made example
(``tests/data/example-history``). Independent of ``analysis`` on purpose: the synthetic
side applies the contract's sentences itself.

Rows are *pseudo-persons*: one (person, date) pair each, with its own copy of the
person's records (child arrays refer to rows by position). Days are integers; a missing
date is handled by the ``has_*`` / ``*_open`` masks.
"""

from __future__ import annotations

import numpy as np

from synthetic.derive import (
    BIG,
    Derived,
    discontinued,
    followup_ends,
    inside_stays,
    spells,
    stay_days,
)

__all__ = ["history_outcomes", "initiator_reason"]


def history_outcomes(
    *,
    n: int,
    index: np.ndarray,
    extract: int,
    death: np.ndarray,
    has_death: np.ndarray,
    overdose: np.ndarray,
    emigration: np.ndarray,
    has_emigration: np.ndarray,
    ep_row: np.ndarray,
    ep_start: np.ndarray,
    ep_end: np.ndarray,
    ep_open: np.ndarray,
    ep_hat: np.ndarray,
    pr_row: np.ndarray | None = None,
    pr_start: np.ndarray | None = None,
    pr_end: np.ndarray | None = None,
    pr_open: np.ndarray | None = None,
    ch_row: np.ndarray | None = None,
    ch_day: np.ndarray | None = None,
    pp_censor: np.ndarray | None = None,
    gap_days: int = 30,
) -> Derived:
    """Outcomes from ``index`` (date d of each row) by the version-2 definitions.

    Follow-up, mortality and crime as version 1 with ``index_date`` = d; retention from
    the spell (gap rule over all agonist episodes, HAT included) holding the last OST day
    before d, 0 days if it ends before d, version 1's event and censoring rules; rows with
    no OST day before d are out of the retention analysis. ``pp_censor`` (per protocol):
    follow-up also ends, censored, on that day; charges from that day on do not count.
    """
    # the contract's definitions in order (follow-up, retention, crime) on the same day
    # arrays: one piece of about 90 lines
    index = np.asarray(index, dtype=np.int64)
    excluded, fu_end, died, emigrated = followup_ends(
        index, extract, death, has_death, emigration, has_emigration
    )
    censor = np.full(n, BIG, dtype=np.int64) if pp_censor is None else np.asarray(pp_censor)
    pp = censor < fu_end
    died = died & ~pp
    emigrated = emigrated & ~pp
    fu_end = np.minimum(fu_end, censor)
    followup = np.where(excluded, 0, fu_end - index)

    # --- retention: the spell holding the last OST day before d
    row = np.asarray(ep_row, dtype=np.int64)
    start = np.asarray(ep_start, dtype=np.int64)
    end = np.where(ep_open, extract, np.asarray(ep_end, dtype=np.int64))
    ost = ~np.asarray(ep_hat, dtype=bool) & (start <= index[row] - 1)
    last_ost = np.full(n, -BIG, dtype=np.int64)
    np.maximum.at(last_ost, row[ost], np.minimum(end[ost], index[row[ost]] - 1))
    has_ost = last_ost > -BIG
    s_row, s_start, s_end = spells(row, start, end, gap_days)
    # the spell of the row starting last on or before the last OST day
    span = int(max(int(s_end.max(initial=0)), int(index.max(initial=0))) + 2)
    off = int(min(int(s_start.min(initial=0)), int(index.min(initial=0)) - 1))
    keys = s_row * (span - off) + (s_start - off)
    q = np.flatnonzero(has_ost)
    pos = np.searchsorted(keys, q * (span - off) + (last_ost[q] - off), side="right") - 1
    spell_end = np.zeros(n, dtype=np.int64)
    spell_end[q] = s_end[pos]
    in_retention = has_ost & ~excluded
    retention = np.where(in_retention, np.maximum(np.minimum(spell_end, fu_end) - index, 0), np.nan)

    # --- crime: charges from d to the end of follow-up (per protocol: the day before the
    # censoring day), prison days removed
    crime_end = np.where(pp, fu_end - 1, fu_end)
    prison = np.zeros(n, dtype=np.int64)
    has_stays = pr_row is not None and len(pr_row) > 0
    if has_stays:
        pr_row = np.asarray(pr_row, dtype=np.int64)
        ps = np.asarray(pr_start, dtype=np.int64)
        pe = np.where(pr_open, extract, np.asarray(pr_end, dtype=np.int64))
        prison = stay_days(pr_row, ps, pe, index, crime_end + 1, n)
    counted = np.zeros(n, dtype=np.int64)
    if ch_row is not None and len(ch_row):
        cr = np.asarray(ch_row, dtype=np.int64)
        cd = np.asarray(ch_day, dtype=np.int64)
        fu = (cd >= index[cr]) & (cd <= crime_end[cr])
        if has_stays:
            fu &= ~inside_stays(cr, cd, pr_row, ps, pe)
        counted = np.bincount(cr[fu], minlength=n)
    zeros = np.zeros(n, dtype=np.int64)
    return Derived(
        excluded=excluded,
        followup_days=followup,
        died=died & ~excluded,
        overdose_death=died & ~excluded & np.asarray(overdose, dtype=bool),
        emigrated=emigrated & ~excluded,
        in_retention=in_retention,
        retention_days=retention,
        discontinued=discontinued(in_retention, spell_end, fu_end, died | pp, gap_days),
        prison_days=prison,
        crime_days=np.where(excluded, 0, crime_end - index + 1 - prison),
        baseline_charges=zeros,
        followup_charges=counted,
        baseline_prison_days=zeros,
        baseline_crime_days=zeros,
        baseline_charges_at_risk=zeros,
    )


def initiator_reason(
    *,
    index: np.ndarray,
    birth_year: np.ndarray,
    history_start: int,
    ep_row: np.ndarray,
    ep_start: np.ndarray,
    ep_end: np.ndarray,
    ep_open: np.ndarray,
    ep_hat: np.ndarray,
    min_age: int = 18,
    window: int = 7,
    lookback: int = 730,
) -> np.ndarray:
    """First eligibility rule an initiator fails on its index date ('' = eligible).

    For initiators (first HAT on d, alive on d, in a HAT region) only three rules can
    fail: age, in OST in the ``window`` days before d, and a lookback covered by the
    registries; they are checked in the contract's order.
    """
    index = np.asarray(index, dtype=np.int64)
    n = index.size
    year = (index.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64)) + 1970
    row = np.asarray(ep_row, dtype=np.int64)
    end = np.where(ep_open, BIG, ep_end)
    covers = (
        ~np.asarray(ep_hat, dtype=bool)
        & (ep_start <= index[row] - 1)
        & (end >= index[row] - window)
    )
    in_ost = np.bincount(row[covers], minlength=n) > 0
    reason = np.full(n, "", dtype=object)
    reason[(index - lookback < history_start)] = "registry history shorter than the lookback"
    reason[~in_ost] = "not in OST in the week before"
    reason[year - np.asarray(birth_year) < min_age] = "age below minimum"
    return reason
