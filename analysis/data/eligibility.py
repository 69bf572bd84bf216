"""The target trial's protocol and eligibility on a date (contract version 2).

By the data contract's "Target trial: derivations": the HAT initiators and
their index dates (:func:`hat_initiators`), and the eligibility of a person on a
date with the first rule failed as the reason (:func:`eligibility_on`), under a
:class:`TrialProtocol`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis.data.contract import REGIONS
from analysis.data.extract import HistoryExtract
from analysis.data.histories import NO_DATE, Histories, histories, last_ost_day
from analysis.data.intervals import day_numbers, person_codes
from analysis.data.trial_columns import as_dates, categorical, years_of

__all__ = [
    "ELIGIBILITY_REASONS",
    "REASON_AGE",
    "REASON_DIED",
    "REASON_HAT",
    "REASON_HISTORY",
    "REASON_NOT_IN_OST",
    "REASON_REGION",
    "TrialProtocol",
    "eligibility_on",
    "hat_initiators",
    "initiator_days",
    "on_pairs",
    "pairs_of",
    "protocol_of",
    "reasons",
    "resolve",
]

#: the eligibility rules in the contract's order; the first rule failed is the reason
REASON_AGE = "age below minimum"
REASON_DIED = "died or emigrated before the date"
REASON_HAT = "previous or same-day HAT"
REASON_NOT_IN_OST = "not in OST in the week before"
REASON_REGION = "region without HAT"
REASON_HISTORY = "registry history shorter than the lookback"
ELIGIBILITY_REASONS = (
    REASON_AGE,
    REASON_DIED,
    REASON_HAT,
    REASON_NOT_IN_OST,
    REASON_REGION,
    REASON_HISTORY,
)


@dataclass(frozen=True, kw_only=True)
class TrialProtocol:
    """Parameters of the target trial's protocol (the contract's bracketed defaults).

    Attributes
    ----------
    min_age : int, default 18
        Eligible from this age (year of the date minus ``birth_year``).
    lookback_days : int, default 730
        Length of the covariate window before the date (status form, prior
        overdose, baseline charges and prison days); the whole window must lie
        on or after ``history_start`` (rule 6).
    recent_ost_days : int, default 7
        An OST episode must cover at least one of the days ``d - recent_ost_days``
        to ``d - 1`` (rule 4).
    gap_days : int, default 30
        Largest gap between episodes that still joins them into one spell.
    regions : tuple of str or None
        Regions where persons are eligible (rule 5). ``None``: the regions where
        an analysed initiator lives (resolved in :attr:`RiskSets.protocol`).
    grace_days : int, default 0
        Grace period ``G`` of the strategy "initiate HAT within ``G`` days of being
        eligible", with time zero kept at the HAT start: a person is eligible on ``d``
        when eligible on some day of ``d - G`` to ``d``. Rules 1-3, 5 and 6 checked on
        ``d`` are at least as strict as on an earlier day (and must hold on ``d``
        anyway: alive, HAT-naive, the covariate window covered), so only rule 4 changes:
        an OST episode must cover a day of ``d - recent_ost_days - G`` to ``d - 1``.
        The same rule for initiators and candidates; nothing after ``d`` is used.
    """

    min_age: int = 18
    lookback_days: int = 730
    recent_ost_days: int = 7
    gap_days: int = 30
    regions: tuple[str, ...] | None = None
    grace_days: int = 0

    def __post_init__(self) -> None:
        for name in ("min_age", "lookback_days", "gap_days", "grace_days"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if int(self.recent_ost_days) < 1:
            raise ValueError(f"recent_ost_days must be >= 1, got {self.recent_ost_days}")
        if self.regions is not None:
            unknown = sorted(set(self.regions) - set(REGIONS))
            if unknown:
                raise ValueError(f"regions: {unknown} not among {REGIONS}")
            object.__setattr__(self, "regions", tuple(sorted(set(self.regions))))


def reasons(
    h: Histories,
    code: np.ndarray,
    day: np.ndarray,
    protocol: TrialProtocol,
    regions: Sequence[str],
) -> np.ndarray:
    """Code of the first eligibility rule failed (0 = eligible), rules in contract order.

    Rule 3 fails when the person's first HAT start is before ``day``; a start on
    ``day`` makes the row an initiator's, which is not a candidate anyway.
    """
    reason = np.zeros(len(code), dtype=np.int8)
    todo = np.ones(len(code), dtype=bool)

    def rule(k: int, fails: np.ndarray, where: np.ndarray | None = None) -> None:
        nonlocal todo
        if where is None:
            hit = todo & fails
        else:
            hit = np.zeros(len(code), dtype=bool)
            hit[where] = fails
        reason[hit] = k
        todo &= ~hit

    rule(1, years_of(day) - h.birth_year[code] < protocol.min_age)
    rule(2, (h.death[code] < day) | (h.emigration[code] < day))
    rule(3, h.first_hat[code] < day)
    rest = np.flatnonzero(todo)
    last, found = last_ost_day(h, code[rest], day[rest])
    window = protocol.recent_ost_days + protocol.grace_days
    rule(4, ~found | (last < day[rest] - window), where=rest)
    allowed = np.isin(h.region.astype(str), np.asarray(list(regions), dtype=str))
    rule(5, ~allowed[code])
    rule(6, day - protocol.lookback_days < h.history_start_day)
    return reason


def initiator_days(h: Histories) -> tuple[np.ndarray, np.ndarray]:
    """Codes and index days of the HAT initiators, sorted by day then person."""
    code = np.flatnonzero(h.first_hat != NO_DATE)
    day = h.first_hat[code]
    order = np.lexsort((code, day))
    return code[order], day[order]


def resolve(h: Histories, protocol: TrialProtocol) -> TrialProtocol:
    """The protocol with ``regions`` resolved: by default those of the analysed initiators.

    An initiator is analysed when eligible on its index date; its own region
    then counts, so the default regions are those of the initiators passing
    every other rule.
    """
    if protocol.regions is not None:
        return protocol
    code, day = initiator_days(h)
    reason = reasons(h, code, day, protocol, REGIONS)
    regions = sorted({str(r) for r in h.region[code[reason == 0]]})
    return replace(protocol, regions=tuple(regions))


def pairs_of(
    history: HistoryExtract, pairs: pd.DataFrame, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Person codes and day numbers of ``pairs`` (``person_id``, ``index_date``)."""
    if not {"person_id", "index_date"} <= set(pairs.columns):
        raise ValueError("pairs must have the columns 'person_id' and 'index_date'")
    code = person_codes(pd.Index(ids), pairs["person_id"], "pairs")
    day, missing = day_numbers(pairs["index_date"])
    if missing.any():
        raise ValueError(f"pairs: {int(missing.sum())} missing index dates")
    return code, day


def protocol_of(
    min_age: int,
    lookback_days: int,
    recent_ost_days: int,
    gap_days: int,
    regions: Sequence[str] | None,
    grace_days: int = 0,
) -> TrialProtocol:
    """The :class:`TrialProtocol` of keyword arguments (``regions`` as a tuple)."""
    return TrialProtocol(
        min_age=min_age,
        lookback_days=lookback_days,
        recent_ost_days=recent_ost_days,
        gap_days=gap_days,
        regions=None if regions is None else tuple(regions),
        grace_days=grace_days,
    )


def on_pairs(
    history: HistoryExtract, pairs: pd.DataFrame, *, lookback_days: int, gap_days: int
) -> tuple[Histories, TrialProtocol, np.ndarray, np.ndarray]:
    """The sorted histories, the protocol and the rows ``(code, day)`` of ``pairs``.

    For the covariates on and outcomes from dates, which use only the lookback window
    and the gap rule of the protocol.
    """
    protocol = protocol_of(18, lookback_days, 7, gap_days, ())
    h = histories(history, gap_days)
    code, day = pairs_of(history, pairs, h.ids)
    return h, protocol, code, day


def hat_initiators(history: HistoryExtract) -> pd.DataFrame:
    """The HAT initiators and their index dates.

    Parameters
    ----------
    history : HistoryExtract
        A validated history extract.

    Returns
    -------
    pandas.DataFrame
        ``person_id, index_date``: each person's first ``diacetylmorphine``
        episode's start, sorted by ``index_date`` and ``person_id``. Episodes
        starting after the extract date are ignored (as in version 1).
    """
    h = histories(history, 0)
    code, day = initiator_days(h)
    return pd.DataFrame({"person_id": h.ids[code], "index_date": as_dates(day)})


def eligibility_on(
    history: HistoryExtract,
    pairs: pd.DataFrame,
    *,
    min_age: int = 18,
    lookback_days: int = 730,
    recent_ost_days: int = 7,
    gap_days: int = 30,
    regions: Sequence[str] | None = None,
    grace_days: int = 0,
) -> pd.Series:
    """Eligibility of persons on dates, with the first rule failed as the reason.

    The rules, in the contract's order: (1) age (year of the date minus
    ``birth_year``) at least ``min_age``; (2) not dead or emigrated before the
    date; (3) no HAT before the date (a person starting HAT on the date is an
    initiator, not a candidate); (4) an OST episode covers at least one day from
    ``date - recent_ost_days - grace_days`` to ``date - 1``; (5) the region is one of
    ``regions``; (6) ``date - lookback_days`` is on or after ``history_start``.

    Parameters
    ----------
    history : HistoryExtract
        A validated history extract.
    pairs : pandas.DataFrame
        ``person_id`` and ``index_date`` (the date ``d``), any number of rows.
    min_age, lookback_days, recent_ost_days, gap_days, regions, grace_days
        The protocol (see :class:`TrialProtocol`); ``regions=None`` stands for
        the regions where an analysed initiator lives.

    Returns
    -------
    pandas.Series
        Categorical reason (:data:`ELIGIBILITY_REASONS`), missing where
        eligible; same index as ``pairs``.
    """
    protocol = protocol_of(min_age, lookback_days, recent_ost_days, gap_days, regions, grace_days)
    h = histories(history, protocol.gap_days)
    protocol = resolve(h, protocol)
    code, day = pairs_of(history, pairs, h.ids)
    reason = reasons(h, code, day, protocol, protocol.regions or ())
    labels = np.array([None, *ELIGIBILITY_REASONS], dtype=object)[reason]
    return pd.Series(categorical(labels, ELIGIBILITY_REASONS), index=pairs.index, name="reason")
