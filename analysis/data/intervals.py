"""Day numbers, merged intervals and sorted per-person day keys.

The vectorised machinery shared by the cohort derivation (version 1,
:mod:`analysis.data.cohort`) and the target trial's derivations (version 2,
:mod:`analysis.data.histories` and the modules built on it): dates become
integer day numbers; each person's intervals (treatment episodes, prison
stays) are merged by a sort and one running maximum; each person's dated rows
are sorted once under the integer key ``person * span + (day - origin)``, so
that every per-row rule is a binary search (``np.searchsorted``) into those
keys. No Python loop runs over persons or dates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "Covered",
    "Intervals",
    "Keys",
    "at",
    "containing",
    "covered",
    "day_numbers",
    "merge_intervals",
    "person_codes",
    "sorted_keys",
    "year_of",
]


def day_numbers(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Day numbers of dates and a mask of missing dates.

    Parameters
    ----------
    values : pandas.Series or numpy.ndarray
        Dates: ``datetime64`` of any unit, or anything :func:`pandas.to_datetime` reads.

    Returns
    -------
    days : numpy.ndarray
        ``int64`` days since 1970-01-01; 0 where missing.
    missing : numpy.ndarray of bool
        Where the date is missing (``NaT``).
    """
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.datetime64):
        arr = pd.to_datetime(pd.Series(values)).to_numpy()
    missing = np.isnat(arr)
    days = arr.astype("datetime64[D]").astype(np.int64)
    return np.where(missing, 0, days), missing


def year_of(day: np.ndarray) -> np.ndarray:
    """Calendar year of each day number."""
    return day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


def at(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``values[pos]``, also when ``values`` is empty (then zeros: every ``pos`` is unused)."""
    return values[pos] if len(values) else np.zeros(len(pos), dtype=values.dtype)


def person_codes(ids: pd.Index, person_id: pd.Series, table: str) -> np.ndarray:
    """Position of each row's person in the sorted ``persons`` table.

    Parameters
    ----------
    ids : pandas.Index
        The sorted, unique ``person_id`` values of ``persons`` (as ``str``).
    person_id : pandas.Series
        The ``person_id`` column of a table.
    table : str
        The table's name, for the message.

    Returns
    -------
    numpy.ndarray
        ``int64`` codes into ``ids``.

    Raises
    ------
    ValueError
        A row's person is not in ``persons``.
    """
    if person_id.hasnans or len(person_id) == 0:
        codes = ids.get_indexer(person_id.astype(str))
    else:
        # rows of a person are usually consecutive (tables sorted by person): look up the
        # first row of each run of equal values only, and repeat its code over the run
        values = person_id.to_numpy()
        heads = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        codes = ids.get_indexer(pd.Series(values[heads], dtype=object).astype(str))
        codes = np.repeat(codes, np.diff(np.r_[heads, len(values)]))
    if (codes < 0).any():
        unknown = pd.unique(person_id[codes < 0].astype(str))[:5]
        raise ValueError(
            f"{table}: {int((codes < 0).sum())} rows with a person_id not in persons "
            f"(e.g. {', '.join(unknown)})"
        )
    return codes.astype(np.int64)


# --------------------------------------------------------------------------- merged intervals
@dataclass(frozen=True)
class Intervals:
    """Merged intervals, sorted by person and start: ``code, start, end`` (day numbers)."""

    code: np.ndarray
    start: np.ndarray
    end: np.ndarray


def merge_intervals(
    code: np.ndarray, start: np.ndarray, end: np.ndarray, *, max_gap: int, origin: int, span: int
) -> Intervals:
    """Merge each person's intervals whose gap to the running end is at most ``max_gap``.

    Rows are sorted by person and start; an interval joins the current merged
    interval when ``start - (running maximum of the previous ends) <= max_gap``.
    The running maximum within persons is one ``np.maximum.accumulate`` over
    ``code * span + (end - origin)``: every person's keys lie above every
    earlier person's, so the maximum restarts with each person.

    Parameters
    ----------
    code, start, end : numpy.ndarray
        Person codes and day numbers of the intervals.
    max_gap : int
        Largest gap that still joins two intervals.
    origin, span : int
        No day is before ``origin`` or at or after ``origin + span``.

    Returns
    -------
    Intervals
    """
    if len(code) == 0:
        empty = np.empty(0, dtype=np.int64)
        return Intervals(empty, empty, empty)
    key = code * span + (start - origin)
    if not bool(np.all(key[1:] >= key[:-1])):  # tables sorted by person and start: no sort
        order = np.argsort(key, kind="stable")  # = np.lexsort((start, code))
        code, start, end = code[order], start[order], end[order]
    offset = code * span - origin
    running_end = np.maximum.accumulate(end + offset) - offset
    new = np.empty(len(code), dtype=bool)
    new[0] = True
    new[1:] = (code[1:] != code[:-1]) | (start[1:] - running_end[:-1] > max_gap)
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(code)) - 1
    return Intervals(code[first], start[first], running_end[last])


def containing(
    intervals: Intervals, code: np.ndarray, day: np.ndarray, *, origin: int, span: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each ``(code, day)``, the merged interval of that person containing ``day``.

    The candidate is the person's latest merged interval starting on or before
    ``day`` (merged intervals of a person are disjoint, so it is the only one).

    Returns
    -------
    end : numpy.ndarray
        End day of the candidate interval (0 where there is none).
    found : numpy.ndarray of bool
        A candidate exists; whether it contains ``day`` depends on the caller's
        rule for the end (``day <= end`` for spells, ``day < end`` for stays).
    """
    if len(intervals.code) == 0:
        return np.zeros(len(code), dtype=np.int64), np.zeros(len(code), dtype=bool)
    keys = intervals.code * span + (intervals.start - origin)
    pos = np.searchsorted(keys, code * span + (day - origin), side="right") - 1
    found = pos >= 0
    pos = np.where(found, pos, 0)
    found &= intervals.code[pos] == code
    return np.where(found, intervals.end[pos], 0), found


# --------------------------------------------------------------------------- day keys
@dataclass(frozen=True)
class Keys:
    """Rows sorted by ``(person, day)`` under the key ``person * span + day - origin``.

    ``first[p]`` is the position of person ``p``'s first row (``first[n]`` the
    number of rows), so a person's rows are ``first[p]:first[p + 1]``.
    """

    keys: np.ndarray
    first: np.ndarray
    origin: int
    span: int

    def query(self, code: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Positions after the last row of ``code`` with a day on or before ``day``."""
        offset = day - self.origin
        if len(offset) and (offset.min() < 0 or offset.max() >= self.span):
            offset = np.clip(offset, 0, self.span - 1)
        offset += code * self.span
        return np.searchsorted(self.keys, offset, side="right")

    def count_on_or_before(self, code: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Rows of each ``code`` dated on or before ``day``."""
        return self.query(code, day) - self.first[code]

    def count_between(self, code: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Rows of each ``code`` dated from ``first`` to ``last``, both included."""
        return np.maximum(self.query(code, last) - self.query(code, first - 1), 0)

    def last_on_or_before(self, code: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position of the latest row of ``code`` dated on or before ``day``, and whether any."""
        pos = self.query(code, day) - 1
        found = pos >= self.first[code]
        return np.where(found, pos, 0), found


def sorted_keys(
    code: np.ndarray, day: np.ndarray, n: int, origin: int, span: int
) -> tuple[Keys, np.ndarray]:
    """Sorted keys of ``(code, day)`` rows of ``n`` persons and the order that sorts them."""
    key = code * span + (day - origin)
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.searchsorted(key, np.arange(n + 1, dtype=np.int64) * span, side="left")
    return Keys(key, first, origin, span), order


@dataclass(frozen=True)
class Covered:
    """Disjoint intervals ``[start, end)`` per person with running sums of their days."""

    index: Keys
    start: np.ndarray
    end: np.ndarray
    days_before: np.ndarray  # days of the person's earlier intervals

    def days_before_day(self, code: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Days covered strictly before ``day``."""
        pos, found = self.index.last_on_or_before(code, day - 1)
        inside = np.minimum(day, at(self.end, pos)) - at(self.start, pos)
        return np.where(found, at(self.days_before, pos) + inside, 0)


def covered(
    code: np.ndarray, start: np.ndarray, end: np.ndarray, n: int, origin: int, span: int
) -> Covered:
    """Merge half-open intervals ``[start, end)`` per person (touching ones join)."""
    merged = merge_intervals(code, start, end, max_gap=0, origin=origin, span=span)
    index, _ = sorted_keys(merged.code, merged.start, n, origin, span)
    length = merged.end - merged.start
    total = np.concatenate([[0], np.cumsum(length)])
    days_before = total[:-1] - total[index.first[merged.code]]
    return Covered(index, merged.start, merged.end, days_before)
