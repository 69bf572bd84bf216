"""Target-trial building blocks from a history extract (contract version 2).

A history extract gives treatment histories, not groups. This module derives,
by the data contract's "Target trial: derivations" (``shared/data-contract.md``):

- the HAT initiators and their index dates (:func:`hat_initiators`);
- the eligibility of a person on a date, with the first rule failed as the reason
  (:func:`eligibility_on`);
- the covariates on a date (:func:`covariates_on`);
- the outcomes from a date under intention to treat and per protocol, with the
  per-protocol censoring date (:func:`outcomes_from`);
- and, putting them together, one row per (index date, person): every
  initiator, and on every analysed initiator's index date every other person as
  a candidate of its risk set or not eligible with the reason
  (:func:`derive_risk_sets`; :func:`iter_risk_sets` yields the same rows in
  pieces of bounded size).

Everything is vectorised, as ``analysis.data.cohort`` is for version 1: dates are day
numbers; each person's episodes, stays, charges, status forms and overdoses are
sorted once under an integer key ``person * span + day``, and every per-row rule
is a binary search (``np.searchsorted``) into those keys, a cumulative sum of
covered days or a gather from a per-person array. No Python loop runs over
persons or dates; the only loop is over pieces of rows (:func:`iter_risk_sets`).

Windows include their first day and exclude their last unless said otherwise;
an episode covers its start and end dates and every day between.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.data.eligibility import (
    ELIGIBILITY_REASONS,
    REASON_AGE,
    REASON_DIED,
    REASON_HAT,
    REASON_HISTORY,
    REASON_NOT_IN_OST,
    REASON_REGION,
    TrialProtocol,
    eligibility_on,
    hat_initiators,
    initiator_days,
    protocol_of,
    reasons,
    resolve,
)
from analysis.data.extract import HistoryExtract
from analysis.data.histories import Histories, histories
from analysis.data.trial_columns import as_dates, categorical, spread
from analysis.data.trial_covariates import COVARIATE_COLUMNS, covariates, covariates_on
from analysis.data.trial_outcomes import OUTCOME_COLUMNS, outcomes, outcomes_from

__all__ = [
    "COVARIATE_COLUMNS",
    "ELIGIBILITY_REASONS",
    "OUTCOME_COLUMNS",
    "REASON_AGE",
    "REASON_DIED",
    "REASON_HAT",
    "REASON_HISTORY",
    "REASON_NOT_IN_OST",
    "REASON_REGION",
    "RISK_SET_COLUMNS",
    "ROLES",
    "ROLE_CANDIDATE",
    "ROLE_EXCLUDED",
    "ROLE_INITIATOR",
    "ROLE_NOT_ELIGIBLE",
    "RiskSets",
    "TrialProtocol",
    "covariates_on",
    "derive_risk_sets",
    "eligibility_on",
    "hat_initiators",
    "iter_risk_sets",
    "outcomes_from",
]

ROLE_INITIATOR = "initiator"
ROLE_EXCLUDED = "excluded initiator"
ROLE_CANDIDATE = "candidate"
ROLE_NOT_ELIGIBLE = "not eligible"
ROLES = (ROLE_INITIATOR, ROLE_EXCLUDED, ROLE_CANDIDATE, ROLE_NOT_ELIGIBLE)


#: columns of :attr:`RiskSets.table`, in order
RISK_SET_COLUMNS = (
    "index_date",
    "person_id",
    "role",
    "reason",
    *COVARIATE_COLUMNS,
    *OUTCOME_COLUMNS,
)


@dataclass(frozen=True, kw_only=True)
class RiskSets:
    """The target trial's risk sets: one row per (index date, person).

    Attributes
    ----------
    table : pandas.DataFrame
        Columns :data:`RISK_SET_COLUMNS`, sorted by ``index_date``, then the
        initiators of that date, then ``person_id``. Rows: every HAT initiator
        on its index date (``role`` ``initiator`` or ``excluded initiator``) and,
        on every date with an analysed initiator, every other person
        (``candidate`` or ``not eligible``; with ``not_eligible=False`` the
        not-eligible rows are left out). ``reason`` (categorical, the first
        eligibility rule failed, :data:`ELIGIBILITY_REASONS`) is missing on
        initiator and candidate rows; covariates and outcomes are given on those
        rows only (missing elsewhere). Types: ``index_date`` and the ``*_date`` /
        ``*_end`` columns ``datetime64[s]`` (``NaT`` missing); ``person_id``
        ``str``; ``role``, ``reason``, ``sex``, ``region`` categorical;
        ``years_opioid_use``, the status-form answers and ``prior_overdose``
        ``float64`` (booleans 0.0/1.0, ``NaN`` missing, as in
        :class:`analysis.data.extract.Extract`); every count and day number
        ``Int64``. The columns are described at :func:`covariates_on` and
        :func:`outcomes_from`.
    initiators : pandas.DataFrame
        One row per HAT initiator: ``person_id``, ``index_date``, ``analysed``
        (bool), ``reason`` (missing when analysed), sorted by ``index_date``
        and ``person_id``.
    protocol : TrialProtocol
        The protocol applied, with ``regions`` resolved.
    """

    table: pd.DataFrame
    initiators: pd.DataFrame
    protocol: TrialProtocol

    def exclusions(self) -> pd.DataFrame:
        """Initiators excluded on their own index date, by reason.

        Returns
        -------
        pandas.DataFrame
            ``reason, n`` with one row per eligibility rule (0 included), in
            the contract's order.
        """
        counts = self.initiators["reason"].value_counts()
        return pd.DataFrame(
            {
                "reason": list(ELIGIBILITY_REASONS),
                "n": [int(counts.get(r, 0)) for r in ELIGIBILITY_REASONS],
            }
        )


def _plan(h: Histories, protocol: TrialProtocol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initiators (codes, days, reason codes) under the resolved protocol."""
    code, day = initiator_days(h)
    reason = reasons(h, code, day, protocol, protocol.regions or ())
    return code, day, reason


def _piece(
    h: Histories,
    protocol: TrialProtocol,
    dates: np.ndarray,
    analysed_date: np.ndarray,
    init_code: np.ndarray,
    init_day: np.ndarray,
    not_eligible: bool,
) -> pd.DataFrame:
    """Rows of the given dates (sorted): every person on analysed dates, initiators elsewhere."""
    n = h.n
    grid_dates = dates[analysed_date]
    g_day = np.repeat(grid_dates, n)
    g_code = np.tile(np.arange(n, dtype=np.int64), len(grid_dates))
    alone = np.isin(init_day, dates[~analysed_date])
    code = np.concatenate([g_code, init_code[alone]])
    day = np.concatenate([g_day, init_day[alone]])
    reason = reasons(h, code, day, protocol, protocol.regions or ())
    initiator = h.first_hat[code] == day
    keep = initiator | (reason == 0) | not_eligible
    code, day, reason, initiator = code[keep], day[keep], reason[keep], initiator[keep]
    order = np.lexsort((code, ~initiator, day))
    code, day, reason, initiator = code[order], day[order], reason[order], initiator[order]
    eligible = reason == 0
    role = np.where(
        initiator,
        np.where(eligible, 0, 1),
        np.where(eligible, 2, 3),
    )
    columns: dict[str, object] = {
        "index_date": as_dates(day),
        "person_id": h.ids[code],
        "role": pd.Categorical.from_codes(role, categories=list(ROLES)),
        "reason": pd.Categorical.from_codes(reason.astype(np.int64) - 1, list(ELIGIBILITY_REASONS)),
    }
    c, d = code[eligible], day[eligible]
    values = covariates(h, c, d, protocol)
    values.update(outcomes(h, c, d, protocol))
    columns.update(spread(values, eligible))
    return pd.DataFrame(columns, columns=list(RISK_SET_COLUMNS), copy=False)


def _prepare(
    history: HistoryExtract, protocol: TrialProtocol
) -> tuple[Histories, TrialProtocol, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    h = histories(history, protocol.gap_days)
    protocol = resolve(h, protocol)
    code, day, reason = _plan(h, protocol)
    labels = np.array([None, *ELIGIBILITY_REASONS], dtype=object)[reason]
    initiators = pd.DataFrame(
        {
            "person_id": h.ids[code],
            "index_date": as_dates(day),
            "analysed": reason == 0,
            "reason": categorical(labels, ELIGIBILITY_REASONS),
        }
    )
    dates = np.unique(day)
    analysed_date = np.isin(dates, day[reason == 0])
    return h, protocol, initiators, code, day, dates, analysed_date


def iter_risk_sets(
    history: HistoryExtract,
    *,
    min_age: int = 18,
    lookback_days: int = 730,
    recent_ost_days: int = 7,
    gap_days: int = 30,
    regions: Sequence[str] | None = None,
    not_eligible: bool = True,
    grace_days: int = 0,
    max_rows: int = 2_000_000,
) -> Iterator[RiskSets]:
    """The rows of :func:`derive_risk_sets` in pieces of consecutive index dates.

    Memory is bounded by the piece: on a date with an analysed initiator every
    person is evaluated, so a piece holds ``max(1, max_rows // persons)`` such
    dates (and the initiators of dates without an analysed one). Concatenated,
    the pieces' tables equal :func:`derive_risk_sets`'s table.

    Parameters
    ----------
    history : HistoryExtract
        A validated history extract.
    min_age, lookback_days, recent_ost_days, gap_days, regions, not_eligible, grace_days
        As :func:`derive_risk_sets`.
    max_rows : int, default 2,000,000
        Rows evaluated per piece (before leaving out the not eligible).

    Yields
    ------
    RiskSets
        One per piece; ``initiators`` and ``protocol`` are those of the whole
        extract in every piece.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    protocol = protocol_of(min_age, lookback_days, recent_ost_days, gap_days, regions, grace_days)
    h, protocol, initiators, code, day, dates, analysed_date = _prepare(history, protocol)
    per_date = max(1, max_rows // max(h.n, 1))
    # pieces hold ``per_date`` analysed dates each (dates without one ride along)
    piece = np.maximum(np.cumsum(analysed_date) - 1, 0) // per_date
    for k in np.unique(piece):
        mine = piece == k
        # no local name for the table: the previous piece is freed while the next is built
        yield RiskSets(
            table=_piece(h, protocol, dates[mine], analysed_date[mine], code, day, not_eligible),
            initiators=initiators,
            protocol=protocol,
        )


def derive_risk_sets(
    history: HistoryExtract,
    *,
    min_age: int = 18,
    lookback_days: int = 730,
    recent_ost_days: int = 7,
    gap_days: int = 30,
    regions: Sequence[str] | None = None,
    not_eligible: bool = True,
    grace_days: int = 0,
) -> RiskSets:
    """The target trial's risk sets: one row per (index date, person).

    For every HAT initiator (first ``diacetylmorphine`` start, see
    :func:`hat_initiators`), its eligibility on its index date; for every date
    with an analysed (eligible) initiator, every other person's eligibility on
    that date (:func:`eligibility_on`) and, for the initiators and the eligible
    candidates, the covariates on the date (:func:`covariates_on`) and the
    outcomes from it (:func:`outcomes_from`).

    Parameters
    ----------
    history : HistoryExtract
        A validated history extract.
    min_age : int, default 18
        Rule 1.
    lookback_days : int, default 730
        Covariate window and rule 6.
    recent_ost_days : int, default 7
        Rule 4.
    gap_days : int, default 30
        Gap rule for spells.
    regions : sequence of str, optional
        Rule 5; default: the regions where an analysed initiator lives.
    not_eligible : bool, default True
        Keep the not-eligible rows (with their reasons); ``False`` keeps the
        initiators and the candidates only (much smaller on a large extract).
    grace_days : int, default 0
        Grace period of the strategy "initiate HAT within ``grace_days`` days of
        being eligible" (:class:`TrialProtocol`): rule 4's window is lengthened by
        it, for initiators and candidates alike; time zero stays the HAT start.

    Returns
    -------
    RiskSets
        ``table`` (see :class:`RiskSets`), ``initiators`` and the resolved
        ``protocol``.

    Notes
    -----
    Readings of the contract's ties and silences:

    - A death or emigration on the date leaves the person eligible (rule 2 says
      *before* the date), with 0 follow-up days.
    - Episodes starting after the extract date are ignored (as in version 1),
      so a HAT start after it makes no initiator and no per-protocol censoring.
    - The lookback window (``lookback_days``) is used for the status form, the
      prior overdose and the baseline charges alike, so rule 6 keeps every
      covariate window inside the registries' coverage.
    - Per protocol, a HAT start on the day of death or emigration censors (the
      person had left the comparator strategy that day).
    - Retention starts from the spell holding the last OST day before the
      date; when that spell ended before the date, ``retention_days`` is 0 and
      the end is a discontinuation (unless follow-up ended by emigration or the
      extract date within the gap after it).

    Examples
    --------
    >>> from analysis.data.extract import read_extract
    >>> history = read_extract("tests/data/example-history")  # doctest: +SKIP
    >>> derive_risk_sets(history).table.query("role == 'candidate'")  # doctest: +SKIP
    """
    protocol = protocol_of(min_age, lookback_days, recent_ost_days, gap_days, regions, grace_days)
    h, protocol, initiators, code, day, dates, analysed_date = _prepare(history, protocol)
    table = _piece(h, protocol, dates, analysed_date, code, day, not_eligible)
    return RiskSets(table=table, initiators=initiators, protocol=protocol)
