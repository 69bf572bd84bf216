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
  pieces of bounded size; :func:`risk_set_source` sorts the histories once for a
  consumer that wants pieces without outcomes and the full rows of the pairs it keeps,
  :mod:`analysis.design.risk_set_stream`).

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
    protocol_of,
)
from analysis.data.extract import HistoryExtract
from analysis.data.risk_set_rows import (
    RISK_SET_COLUMNS,
    ROLE_CANDIDATE,
    ROLE_EXCLUDED,
    ROLE_INITIATOR,
    ROLE_NOT_ELIGIBLE,
    ROLES,
    RiskSets,
    RiskSetSource,
    _piece,
    _prepare,
    risk_set_source,
)
from analysis.data.trial_covariates import COVARIATE_COLUMNS, covariates_on
from analysis.data.trial_outcomes import OUTCOME_COLUMNS, outcomes_from

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
    "RiskSetSource",
    "RiskSets",
    "TrialProtocol",
    "covariates_on",
    "derive_risk_sets",
    "eligibility_on",
    "hat_initiators",
    "iter_risk_sets",
    "outcomes_from",
    "risk_set_source",
]


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

    Memory is bounded by the piece: a piece holds consecutive dates with an analysed
    initiator (and the initiators of dates without one) whose evaluated rows stay
    within ``max_rows`` (at least one such date). On such a date every person is
    evaluated when the not-eligible rows are kept; with ``not_eligible=False`` only
    the persons in OST in rule 4's window (and the date's initiators), a superset of
    the candidates. Concatenated, the pieces' tables equal :func:`derive_risk_sets`'s
    table.

    Parameters
    ----------
    history : HistoryExtract
        A validated history extract.
    min_age, lookback_days, recent_ost_days, gap_days, regions, not_eligible, grace_days
        As :func:`derive_risk_sets`.
    max_rows : int, default 2,000,000
        Rows evaluated per piece (before leaving out the not eligible), unless one
        date alone has more.

    Yields
    ------
    RiskSets
        One per piece; ``initiators`` and ``protocol`` are those of the whole
        extract in every piece.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    source = risk_set_source(
        history, min_age=min_age, lookback_days=lookback_days, recent_ost_days=recent_ost_days,
        gap_days=gap_days, regions=regions, grace_days=grace_days,
    )  # fmt: skip
    yield from source.pieces(not_eligible=not_eligible, max_rows=max_rows)


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
