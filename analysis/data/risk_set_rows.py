"""Rows of the target trial's risk sets, in pieces (the machinery behind ``risk_sets``).

:func:`risk_set_source` sorts an extract's histories once and finds the initiators;
:class:`RiskSetSource` then gives the rows of consecutive index dates in pieces of bounded
size (:meth:`RiskSetSource.pieces`) and the full rows of chosen (person, date) pairs
(:meth:`RiskSetSource.rows`). On a date with an analysed initiator only the persons in OST
in rule 4's window are evaluated when the not-eligible rows are not wanted (a superset of
the candidates, found from the merged OST intervals), else every person. The public face,
with the derivations' documentation, is :mod:`analysis.data.risk_sets`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from analysis.data.eligibility import (
    ELIGIBILITY_REASONS,
    TrialProtocol,
    initiator_days,
    protocol_of,
    reasons,
    resolve,
)
from analysis.data.extract import HistoryExtract
from analysis.data.histories import Histories, histories
from analysis.data.trial_columns import as_dates, categorical, spread
from analysis.data.trial_covariates import COVARIATE_COLUMNS, covariates
from analysis.data.trial_outcomes import OUTCOME_COLUMNS, outcomes

__all__ = [
    "RISK_SET_COLUMNS",
    "ROLES",
    "ROLE_CANDIDATE",
    "ROLE_EXCLUDED",
    "ROLE_INITIATOR",
    "ROLE_NOT_ELIGIBLE",
    "RiskSetSource",
    "RiskSets",
    "risk_set_source",
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


def _recent_ost(
    h: Histories, grid_dates: np.ndarray, protocol: TrialProtocol
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (person code, day) of the dates ``grid_dates`` (sorted) on which the person
    was in OST in the window of rule 4 and lives in an allowed region: a superset of the
    eligible (rules 1-3 and 6 are left to :func:`reasons`).

    A merged OST interval ``[s, e)`` puts its person in the window of every day ``d``
    with ``s <= d - 1`` and ``e - 1 >= d - window``, i.e. ``s < d < e + window``. A
    person's intervals are sorted and disjoint, so their runs of dates only overlap
    where a gap is shorter than the window: each run starts after the previous one ends.
    """
    code, lo, count = _runs(h, grid_dates, protocol)
    rows = np.repeat(np.arange(len(code)), count)
    # position of each expanded row within its interval's run of dates
    offset = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
    return code[rows], grid_dates[lo[rows] + offset]


def _runs(
    h: Histories, grid_dates: np.ndarray, protocol: TrialProtocol
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per merged OST interval: person code, first grid position and number of dates."""
    window = protocol.recent_ost_days + protocol.grace_days
    cover = h.ost_cover
    code = cover.index.keys // cover.index.span
    lo = np.searchsorted(grid_dates, cover.start, side="right")
    hi = np.searchsorted(grid_dates, cover.end + window, side="left")
    same = np.zeros(len(code), dtype=bool)  # no OST interval at all: nothing to do
    same[1:] = code[1:] == code[:-1]
    lo[same] = np.maximum(lo[same], hi[:-1][same[1:]])
    allowed = np.isin(h.region.astype(str), np.asarray(list(protocol.regions or ()), dtype=str))
    return code, lo, np.where(allowed[code], np.maximum(hi - lo, 0), 0)


def _in_window(
    h: Histories, code: np.ndarray, day: np.ndarray, protocol: TrialProtocol
) -> np.ndarray:
    """Whether :func:`_recent_ost` gives the pair ``(code, day)``."""
    window = protocol.recent_ost_days + protocol.grace_days
    pos, found = h.ost_cover.index.last_on_or_before(code, day - 1)
    allowed = np.isin(h.region.astype(str), np.asarray(list(protocol.regions or ()), dtype=str))
    return found & (h.ost_cover.end[pos] > day - window) & allowed[code]


def _piece(
    h: Histories,
    protocol: TrialProtocol,
    dates: np.ndarray,
    analysed_date: np.ndarray,
    init_code: np.ndarray,
    init_day: np.ndarray,
    not_eligible: bool,
    *,
    with_outcomes: bool = True,
    with_codes: bool = False,
) -> pd.DataFrame:
    """Rows of the given dates (sorted): every person on analysed dates, initiators elsewhere.

    ``with_outcomes=False`` leaves the outcome columns out; ``with_codes=True`` adds the
    person's code (``person_code``, row of the histories) as the last column.
    """
    grid_dates = dates[analysed_date]
    if not_eligible:
        g_day = np.repeat(grid_dates, h.n)
        g_code = np.tile(np.arange(h.n, dtype=np.int64), len(grid_dates))
    else:
        # only persons who pass rule 4 can be candidates; the initiators always stay
        g_code, g_day = _recent_ost(h, grid_dates, protocol)
        mine = np.isin(init_day, grid_dates)
        mine[mine] = ~_in_window(h, init_code[mine], init_day[mine], protocol)
        g_code = np.concatenate([g_code, init_code[mine]])
        g_day = np.concatenate([g_day, init_day[mine]])
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
    names = list(RISK_SET_COLUMNS)
    if with_outcomes:
        values.update(outcomes(h, c, d, protocol))
    else:
        names = names[: len(names) - len(OUTCOME_COLUMNS)]
    columns.update(spread(values, eligible))
    if with_codes:
        columns["person_code"] = code
        names.append("person_code")
    return pd.DataFrame(columns, columns=names, copy=False)


def _pieces(
    h: Histories,
    protocol: TrialProtocol,
    dates: np.ndarray,
    analysed_date: np.ndarray,
    not_eligible: bool,
    max_rows: int,
) -> np.ndarray:
    """Piece number of each date: consecutive dates whose evaluated rows stay within
    ``max_rows`` (at least one analysed date per piece; dates without one ride along)."""
    grid = dates[analysed_date]
    if not len(grid):  # no analysed initiator: the excluded initiators in one piece
        return np.zeros(len(dates), dtype=np.int64)
    if not_eligible:
        rows = np.full(len(grid), h.n, dtype=np.int64)
    else:
        _, lo, count = _runs(h, grid, protocol)
        step = np.bincount(lo, weights=count > 0, minlength=len(grid) + 1)
        step -= np.bincount(lo + count, weights=count > 0, minlength=len(grid) + 1)
        rows = np.cumsum(step)[: len(grid)].astype(np.int64)
    # greedy: a new piece starts where the running total would pass max_rows
    piece_of_grid = np.zeros(len(grid), dtype=np.int64)
    total, k = 0, 0
    for i, r in enumerate(rows.tolist()):  # one step per analysed date, not per row
        if total and total + r > max_rows:
            k, total = k + 1, 0
        total += r
        piece_of_grid[i] = k
    return piece_of_grid[np.maximum(np.cumsum(analysed_date) - 1, 0)]


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


@dataclass(frozen=True)
class RiskSetSource:
    """The sorted histories and the initiators of an extract, ready to give risk sets.

    Made by :func:`risk_set_source`; :meth:`pieces` yields the risk sets in pieces of
    consecutive index dates and :meth:`rows` the full rows (outcomes included) of chosen
    (person, date) pairs, so a consumer can keep only the rows it needs of each piece
    and fetch the outcomes of those it keeps at the end.

    Attributes
    ----------
    histories : Histories
    protocol : TrialProtocol
        With ``regions`` resolved.
    initiators : pandas.DataFrame
        As :attr:`RiskSets.initiators`.
    """

    histories: Histories
    protocol: TrialProtocol
    initiators: pd.DataFrame
    _code: np.ndarray
    _day: np.ndarray
    _dates: np.ndarray
    _analysed_date: np.ndarray

    def pieces(
        self,
        *,
        not_eligible: bool = False,
        max_rows: int = 2_000_000,
        with_outcomes: bool = True,
        with_codes: bool = False,
    ) -> Iterator[RiskSets]:
        """The risk sets in pieces (see :func:`iter_risk_sets`).

        Parameters
        ----------
        not_eligible, max_rows
            As :func:`iter_risk_sets`.
        with_outcomes : bool, default True
            ``False`` leaves the outcome columns out of the tables (faster, smaller).
        with_codes : bool, default False
            Add ``person_code`` (the row of :attr:`histories`, for :meth:`rows`).

        Yields
        ------
        RiskSets
        """
        for task in self.tasks(
            not_eligible=not_eligible, max_rows=max_rows, with_outcomes=with_outcomes,
            with_codes=with_codes,
        ):  # fmt: skip
            # no local name for the piece: the previous one is freed while the next is built
            yield task()

    def tasks(
        self,
        *,
        not_eligible: bool = False,
        max_rows: int = 2_000_000,
        with_outcomes: bool = True,
        with_codes: bool = False,
    ) -> list[Callable[[], RiskSets]]:
        """:meth:`pieces` as callables, one per piece, that build it when called.

        The callables only read the histories, so they may run on several threads at once
        (:func:`analysis.design.streamed_logit.ordered_map`). Parameters as :meth:`pieces`.

        Returns
        -------
        list of callable
            In the order of :meth:`pieces`; each returns a :class:`RiskSets`.
        """
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        h, protocol = self.histories, self.protocol
        dates, analysed = self._dates, self._analysed_date
        piece = _pieces(h, protocol, dates, analysed, not_eligible, max_rows)

        def build(mine: np.ndarray) -> RiskSets:
            table = _piece(
                h, protocol, dates[mine], analysed[mine], self._code, self._day,
                not_eligible, with_outcomes=with_outcomes, with_codes=with_codes,
            )  # fmt: skip
            return RiskSets(table=table, initiators=self.initiators, protocol=protocol)

        return [partial(build, piece == k) for k in np.unique(piece)]

    def rows(self, code: np.ndarray, day: np.ndarray) -> pd.DataFrame:
        """Full rows (:data:`RISK_SET_COLUMNS`) of eligible ``(person code, day)`` pairs.

        Parameters
        ----------
        code : ndarray of int
            Rows of :attr:`histories` (``person_code`` of a piece).
        day : ndarray of int
            Day numbers of the index dates.

        Returns
        -------
        pandas.DataFrame
            In the order given; ``role`` is ``initiator`` where the person starts HAT on
            the day, else ``candidate``; ``reason`` missing; covariates and outcomes as
            in the risk-set table.
        """
        h, protocol = self.histories, self.protocol
        code, day = np.asarray(code, dtype=np.int64), np.asarray(day, dtype=np.int64)
        role = np.where(h.first_hat[code] == day, 0, 2)
        columns: dict[str, object] = {
            "index_date": as_dates(day),
            "person_id": h.ids[code],
            "role": pd.Categorical.from_codes(role, categories=list(ROLES)),
            "reason": pd.Categorical.from_codes(np.full(len(code), -1), list(ELIGIBILITY_REASONS)),
        }
        values = covariates(h, code, day, protocol)
        values.update(outcomes(h, code, day, protocol))
        columns.update(spread(values, np.ones(len(code), dtype=bool)))
        return pd.DataFrame(columns, columns=list(RISK_SET_COLUMNS), copy=False)


def risk_set_source(
    history: HistoryExtract,
    *,
    min_age: int = 18,
    lookback_days: int = 730,
    recent_ost_days: int = 7,
    gap_days: int = 30,
    regions: Sequence[str] | None = None,
    grace_days: int = 0,
) -> RiskSetSource:
    """Sort the histories once and find the initiators: a :class:`RiskSetSource`.

    Parameters
    ----------
    history : HistoryExtract
        A validated history extract.
    min_age, lookback_days, recent_ost_days, gap_days, regions, grace_days
        As :func:`derive_risk_sets`.

    Returns
    -------
    RiskSetSource
    """
    protocol = protocol_of(min_age, lookback_days, recent_ost_days, gap_days, regions, grace_days)
    h, protocol, initiators, code, day, dates, analysed_date = _prepare(history, protocol)
    return RiskSetSource(h, protocol, initiators, code, day, dates, analysed_date)
