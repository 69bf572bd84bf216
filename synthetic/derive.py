"""The data contract's definitions (``shared/data-contract.md``, "Definitions") on arrays.

A small, vectorised implementation used by the truth (on the potential outcomes) and by
the generator's self-checks. It is independent of ``analysis.data.cohort`` on purpose, and is
tested against the hand-made example extract (``tests/data/example-extract``).

All dates are integer day numbers (any origin); a missing date is ``None``/``NO_DAY``
handled by the caller via the ``has_*`` masks. Persons are 0..n-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.data.contract import DAYS_PER_YEAR

__all__ = [
    "BIG",
    "Derived",
    "derive",
    "derive_frame",
    "followup_ends",
    "inside_stays",
    "spells",
    "stay_days",
    "discontinued",
]

#: day number standing for "no such date" (far future)
BIG = np.iinfo(np.int64).max // 4


@dataclass(frozen=True)
class Derived:
    """Person-level outcomes by the contract's definitions (one entry per person)."""

    excluded: np.ndarray  # died or emigrated before index
    followup_days: np.ndarray
    died: np.ndarray
    overdose_death: np.ndarray
    emigrated: np.ndarray
    in_retention: np.ndarray
    retention_days: np.ndarray  # float, NaN where not in_retention
    discontinued: np.ndarray  # float, NaN where not in_retention
    prison_days: np.ndarray  # days of stays in the crime window [index, end of follow-up]
    crime_days: np.ndarray  # followup_days + 1 - prison_days
    baseline_charges: np.ndarray
    followup_charges: np.ndarray
    baseline_prison_days: np.ndarray  # days of stays in [index - 730, index)
    baseline_crime_days: np.ndarray  # 730 - baseline_prison_days
    baseline_charges_at_risk: np.ndarray  # baseline charges not dated inside a stay

    @property
    def crime_years(self) -> np.ndarray:
        """Crime person-years: ``crime_days / 365.25``."""
        return self.crime_days / DAYS_PER_YEAR

    def take(self, idx: np.ndarray) -> Derived:
        """The persons ``idx`` (an index or mask into every field)."""
        return Derived(**{f: getattr(self, f)[idx] for f in Derived.__dataclass_fields__})

    @staticmethod
    def concat(parts: list[Derived]) -> Derived:
        """The persons of ``parts``, one after the other."""
        return Derived(
            **{
                f: np.concatenate([getattr(p, f) for p in parts])
                for f in Derived.__dataclass_fields__
            }
        )


def _first_of_group(g: np.ndarray) -> np.ndarray:
    return np.r_[True, g[1:] != g[:-1]] if g.size else np.zeros(0, dtype=bool)


def _group_cummax(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Running maximum of x within consecutive groups g (sorted by g)."""
    if x.size == 0:
        return x
    span = float(x.max() - x.min() + 1)
    codes = np.cumsum(_first_of_group(g)) - 1
    shifted = x + codes * span
    return np.maximum.accumulate(shifted) - codes * span


def _order3(person: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Order by person, start, end (one int64 key when the ranges allow, else lexsort)."""
    if person.size == 0:
        return np.arange(0)
    s0, e0 = start.min(), end.min()
    ss, es = int(start.max() - s0) + 1, int(end.max() - e0) + 1
    if (int(person.max()) + 1) * ss * es < 2**62:
        key = (person * ss + (start - s0)) * es + (end - e0)
        return np.argsort(key, kind="stable")
    return np.lexsort((end, start, person))


def followup_ends(
    index: np.ndarray,
    extract: np.ndarray | int,
    death: np.ndarray,
    has_death: np.ndarray,
    emigration: np.ndarray,
    has_emigration: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exclusion, end of follow-up and how it ended, by the contract's rules.

    Returns ``(excluded, end, died, emigrated)``: died or emigrated before ``index``;
    the first of death, emigration and ``extract``; follow-up ended by death (on or
    before the extract date; a death the same day as an emigration counts as a death);
    ended by emigration.
    """
    death_d = np.where(has_death, death, BIG)
    emig_d = np.where(has_emigration, emigration, BIG)
    excluded = (death_d < index) | (emig_d < index)
    end = np.minimum(np.minimum(death_d, emig_d), extract)
    died = has_death & (death_d <= np.minimum(emig_d, extract))
    emigrated = has_emigration & ~died & (emig_d <= extract)
    return excluded, end, died, emigrated


def spells(
    person: np.ndarray, start: np.ndarray, end: np.ndarray, gap_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spells of episodes joined by gaps of at most ``gap_days``: ``(person, start, end)``.

    Sorted by person and start; an episode joins the spell when its start is at most
    ``gap_days`` after the running maximum of the previous ends.
    """
    order = _order3(person, start, end)
    person, start, end = person[order], start[order], end[order]
    run_end = _group_cummax(person, end)
    prev_end = np.r_[0, run_end[:-1]]
    new = _first_of_group(person) | (start - prev_end > gap_days)
    s_end = np.maximum.reduceat(end, np.flatnonzero(new)) if end.size else end
    return person[new], start[new], s_end


def discontinued(
    in_retention: np.ndarray,
    spell_end: np.ndarray,
    followup_end: np.ndarray,
    by_death: np.ndarray,
    gap_days: int,
) -> np.ndarray:
    """1.0 where the spell ended before follow-up, 0.0 censored, NaN out of retention.

    A spell ending fewer than ``gap_days`` before a follow-up that did not end by death
    (``by_death``) is censored at its end: a return within the gap could not be seen.
    """
    unseen_return = ~by_death & (followup_end - spell_end < gap_days)
    ended = (spell_end < followup_end) & ~unseen_return
    return np.where(in_retention, ended.astype(float), np.nan)


def stay_days(
    person: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    first: np.ndarray,
    stop: np.ndarray,
    n: int,
) -> np.ndarray:
    """Days of stays ``[start, end)`` inside each person's window ``[first, stop)``."""
    overlap = np.maximum(0, np.minimum(end, stop[person]) - np.maximum(start, first[person]))
    return np.bincount(person, weights=overlap, minlength=n).astype(np.int64)


def derive(
    *,
    n: int,
    index: np.ndarray,
    extract: np.ndarray | int,
    death: np.ndarray,
    has_death: np.ndarray,
    overdose: np.ndarray,
    emigration: np.ndarray,
    has_emigration: np.ndarray,
    ep_person: np.ndarray,
    ep_start: np.ndarray,
    ep_end: np.ndarray,
    ep_open: np.ndarray,
    pr_person: np.ndarray | None = None,
    pr_start: np.ndarray | None = None,
    pr_end: np.ndarray | None = None,
    pr_open: np.ndarray | None = None,
    ch_person: np.ndarray | None = None,
    ch_day: np.ndarray | None = None,
    gap_days: int = 30,
) -> Derived:
    """Derive follow-up, mortality, retention and crime outcomes by the contract's rules.

    Parameters
    ----------
    n : int
        Number of persons; person arrays have length ``n`` and child tables refer to
        persons by position.
    index, extract : integer day arrays (``extract`` may be a scalar)
    death, has_death, overdose, emigration, has_emigration : person arrays
    ep_person, ep_start, ep_end, ep_open : treatment episodes (``ep_open``: end missing)
    pr_person, pr_start, pr_end, pr_open : prison stays (optional)
    ch_person, ch_day : charges (optional)
    gap_days : int
        Gaps of at most this many days join episodes into one spell.
    """
    # the contract's definitions in order (follow-up, retention, prison, charges) on the
    # same day arrays: one piece of about 80 lines
    index = np.asarray(index, dtype=np.int64)
    extract = np.broadcast_to(np.asarray(extract, dtype=np.int64), (n,))
    excluded, fu_end, died, emigrated = followup_ends(
        index, extract, death, has_death, emigration, has_emigration
    )
    followup = fu_end - index

    # --- retention: spells of episodes joined by gaps <= gap_days
    person = np.asarray(ep_person, dtype=np.int64)
    end = np.where(ep_open, extract[person], np.asarray(ep_end, dtype=np.int64))
    s_person, s_start, s_end = spells(person, np.asarray(ep_start, dtype=np.int64), end, gap_days)
    contains = (s_start <= index[s_person]) & (index[s_person] <= s_end)
    in_retention = np.zeros(n, dtype=bool)
    spell_end = np.zeros(n, dtype=np.int64)
    in_retention[s_person[contains]] = True
    spell_end[s_person[contains]] = s_end[contains]
    in_retention &= ~excluded
    retention = np.where(in_retention, np.minimum(spell_end, fu_end) - index, np.nan)

    # --- prison: days of stays [start, end) within the crime window [index, fu_end]
    # (both days included) and within the baseline window [index - 730, index)
    prison = np.zeros(n, dtype=np.int64)
    prison_before = np.zeros(n, dtype=np.int64)
    has_stays = pr_person is not None and len(pr_person) > 0
    if has_stays:
        pp = np.asarray(pr_person, dtype=np.int64)
        ps = np.asarray(pr_start, dtype=np.int64)
        pe = np.where(pr_open, extract[pp], np.asarray(pr_end, dtype=np.int64))
        prison = stay_days(pp, ps, pe, index, fu_end + 1, n)
        prison_before = stay_days(pp, ps, pe, index - 730, index, n)

    # --- charges
    baseline = np.zeros(n, dtype=np.int64)
    baseline_at_risk = np.zeros(n, dtype=np.int64)
    counted = np.zeros(n, dtype=np.int64)
    if ch_person is not None and len(ch_person):
        cp = np.asarray(ch_person, dtype=np.int64)
        cd = np.asarray(ch_day, dtype=np.int64)
        base = (cd >= index[cp] - 730) & (cd < index[cp])
        baseline = np.bincount(cp[base], minlength=n)
        fu = (cd >= index[cp]) & (cd <= fu_end[cp])
        if has_stays:
            inside = inside_stays(cp, cd, pp, ps, pe)
            fu &= ~inside
            base &= ~inside
        counted = np.bincount(cp[fu], minlength=n)
        baseline_at_risk = np.bincount(cp[base], minlength=n)
    followup = np.where(excluded, 0, followup)
    return Derived(
        excluded=excluded,
        followup_days=followup,
        died=died & ~excluded,
        overdose_death=died & ~excluded & np.asarray(overdose, dtype=bool),
        emigrated=emigrated & ~excluded,
        in_retention=in_retention,
        retention_days=retention,
        discontinued=discontinued(in_retention, spell_end, fu_end, died, gap_days),
        prison_days=prison,
        crime_days=np.where(excluded, 0, followup + 1 - prison),
        baseline_charges=baseline,
        followup_charges=counted,
        baseline_prison_days=prison_before,
        baseline_crime_days=730 - prison_before,
        baseline_charges_at_risk=baseline_at_risk,
    )


def inside_stays(cp, cd, pp, ps, pe) -> np.ndarray:
    """Charges dated inside a stay (from its first day to the day before its end)."""
    inside = np.zeros(cp.size, dtype=bool)
    order = np.lexsort((ps, pp))
    pp, ps, pe = pp[order], ps[order], pe[order]
    # stays may overlap in general data: check each of up to k stays starting before
    span = int(max(cd.max(), pe.max()) - min(cd.min(), ps.min()) + 2)
    off = int(min(cd.min(), ps.min()))
    keys = pp * span + (ps - off)
    pos = np.searchsorted(keys, cp * span + (cd - off), side="right") - 1
    depth = int(np.bincount(pp).max()) if pp.size else 0
    for k in range(depth):
        q = pos - k
        qc = np.maximum(q, 0)
        ok = (q >= 0) & (pp[qc] == cp)
        inside |= ok & (cd >= ps[qc]) & (cd < pe[qc])
    return inside


def derive_frame(tables: dict[str, pd.DataFrame], extract_date, gap_days: int = 30) -> pd.DataFrame:
    """Apply :func:`derive` to contract tables (dates as datetime-like columns).

    Returns a frame indexed like ``tables['persons']`` with the derived columns plus
    ``person_id`` and ``group``.
    """
    persons = tables["persons"].reset_index(drop=True)
    n = len(persons)
    pos = pd.Index(persons["person_id"].astype(str))

    def days(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        d = pd.to_datetime(s).to_numpy(dtype="datetime64[D]")
        ok = ~np.isnat(d)
        return np.where(ok, d.astype(np.int64), 0), ok

    def person_pos(df: pd.DataFrame) -> np.ndarray:
        return pos.get_indexer(df["person_id"].astype(str))

    index, _ = days(persons["index_date"])
    emig, has_emig = days(persons["emigration_date"])
    deaths = tables["deaths"]
    death = np.zeros(n, dtype=np.int64)
    has_death = np.zeros(n, dtype=bool)
    overdose = np.zeros(n, dtype=bool)
    dp = person_pos(deaths)
    death[dp] = days(deaths["death_date"])[0]
    has_death[dp] = True
    overdose[dp] = (deaths["cause"] == "overdose").to_numpy()
    ep = tables["treatment_episodes"]
    ep_end, ep_has_end = days(ep["end_date"])
    pr = tables.get("incarcerations")
    pr_kw = {}
    if pr is not None and len(pr):
        pr_end, pr_has_end = days(pr["end_date"])
        pr_kw = dict(
            pr_person=person_pos(pr),
            pr_start=days(pr["start_date"])[0],
            pr_end=pr_end,
            pr_open=~pr_has_end,
        )
    ch = tables["charges"]
    extract = np.datetime64(pd.Timestamp(extract_date).date(), "D").astype(np.int64)
    out = derive(
        n=n,
        index=index,
        extract=extract,
        death=death,
        has_death=has_death,
        overdose=overdose,
        emigration=emig,
        has_emigration=has_emig,
        ep_person=person_pos(ep),
        ep_start=days(ep["start_date"])[0],
        ep_end=ep_end,
        ep_open=~ep_has_end,
        ch_person=person_pos(ch),
        ch_day=days(ch["charge_date"])[0],
        gap_days=gap_days,
        **pr_kw,
    )
    frame = pd.DataFrame({k: getattr(out, k) for k in out.__dataclass_fields__})
    frame.insert(0, "group", persons["group"].to_numpy())
    frame.insert(0, "person_id", persons["person_id"].astype(str).to_numpy())
    return frame
