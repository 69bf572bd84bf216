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
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis.data.cohort import _merge_intervals
from analysis.data.contract import (
    ASSESSMENT_COVARIATES,
    DAYS_PER_YEAR,
    HAT_MEDICATION,
    OST_MEDICATIONS,
    REGIONS,
    SEXES,
)
from analysis.data.extract import HistoryExtract

__all__ = [
    "ELIGIBILITY_REASONS",
    "RISK_SET_COLUMNS",
    "ROLES",
    "RiskSets",
    "TrialProtocol",
    "covariates_on",
    "derive_risk_sets",
    "eligibility_on",
    "hat_initiators",
    "iter_risk_sets",
    "outcomes_from",
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

ROLE_INITIATOR = "initiator"
ROLE_EXCLUDED = "excluded initiator"
ROLE_CANDIDATE = "candidate"
ROLE_NOT_ELIGIBLE = "not eligible"
ROLES = (ROLE_INITIATOR, ROLE_EXCLUDED, ROLE_CANDIDATE, ROLE_NOT_ELIGIBLE)

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
#: columns of :attr:`RiskSets.table`, in order
RISK_SET_COLUMNS = (
    "index_date",
    "person_id",
    "role",
    "reason",
    *COVARIATE_COLUMNS,
    *OUTCOME_COLUMNS,
)
_DATE_OUTCOMES = ("pp_censor_date", "followup_end", "pp_followup_end")

#: day number standing for "no date" (no death, emigration or HAT)
_NO_DATE = np.iinfo(np.int64).max // 4


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
    """

    min_age: int = 18
    lookback_days: int = 730
    recent_ost_days: int = 7
    gap_days: int = 30
    regions: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("min_age", "lookback_days", "gap_days"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if int(self.recent_ost_days) < 1:
            raise ValueError(f"recent_ost_days must be >= 1, got {self.recent_ost_days}")
        if self.regions is not None:
            unknown = sorted(set(self.regions) - set(REGIONS))
            if unknown:
                raise ValueError(f"regions: {unknown} not among {REGIONS}")
            object.__setattr__(self, "regions", tuple(sorted(set(self.regions))))


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


# --------------------------------------------------------------------------- day keys
def _day_numbers(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Day numbers (int64 days since 1970-01-01) and a mask of missing dates."""
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.datetime64):
        arr = pd.to_datetime(pd.Series(values)).to_numpy()
    missing = np.isnat(arr)
    days = arr.astype("datetime64[D]").astype(np.int64)
    return np.where(missing, 0, days), missing


def _at(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``values[pos]``, also when ``values`` is empty (then zeros: every ``pos`` is unused)."""
    return values[pos] if len(values) else np.zeros(len(pos), dtype=values.dtype)


def _year_of(day: np.ndarray) -> np.ndarray:
    return day.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970


@dataclass(frozen=True)
class _Keys:
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


@dataclass(frozen=True)
class _Covered:
    """Disjoint intervals ``[start, end)`` per person with running sums of their days."""

    index: _Keys
    start: np.ndarray
    end: np.ndarray
    days_before: np.ndarray  # days of the person's earlier intervals

    def days_before_day(self, code: np.ndarray, day: np.ndarray) -> np.ndarray:
        """Days covered strictly before ``day``."""
        pos, found = self.index.last_on_or_before(code, day - 1)
        inside = np.minimum(day, _at(self.end, pos)) - _at(self.start, pos)
        return np.where(found, _at(self.days_before, pos) + inside, 0)


@dataclass(frozen=True)
class _Histories:
    """A history extract as per-person arrays and sorted keys (persons sorted by id)."""

    ids: np.ndarray
    birth_year: np.ndarray
    sex: np.ndarray
    region: np.ndarray
    death: np.ndarray  # day of death, _NO_DATE if none
    emigration: np.ndarray
    overdose_death: np.ndarray
    first_hat: np.ndarray  # first diacetylmorphine start on or before the extract date
    end: np.ndarray  # end of follow-up: first of death, emigration, extract date
    died: np.ndarray
    emigrated: np.ndarray
    extract_day: int
    history_start_day: int
    ost_cover: _Covered  # days covered by OST episodes (inclusive ends made exclusive)
    ost_spells: _Keys  # starts of OST spells (gap rule over OST episodes)
    spells: _Keys  # starts of treatment spells (gap rule over all episodes)
    spell_end: np.ndarray
    prison: _Covered  # merged prison stays [start, end)
    charges: _Keys
    charges_at_risk: _Keys  # charges not dated inside a prison stay
    assessments: _Keys
    answers: dict[str, np.ndarray]
    assessment_day: np.ndarray
    overdoses: _Keys | None

    @property
    def n(self) -> int:
        return len(self.ids)


def _codes(ids: pd.Index, person_id: pd.Series, table: str) -> np.ndarray:
    codes = ids.get_indexer(person_id.astype(str))
    if (codes < 0).any():
        unknown = pd.unique(person_id[codes < 0].astype(str))[:5]
        raise ValueError(
            f"{table}: {int((codes < 0).sum())} rows with a person_id not in persons "
            f"(e.g. {', '.join(unknown)})"
        )
    return codes.astype(np.int64)


def _keys(
    code: np.ndarray, day: np.ndarray, n: int, origin: int, span: int
) -> tuple[_Keys, np.ndarray]:
    """Sorted keys of ``(code, day)`` rows and the order that sorts them."""
    key = code * span + (day - origin)
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.searchsorted(key, np.arange(n + 1, dtype=np.int64) * span, side="left")
    return _Keys(key, first, origin, span), order


def _covered(
    code: np.ndarray, start: np.ndarray, end: np.ndarray, n: int, origin: int, span: int
) -> _Covered:
    """Merge half-open intervals ``[start, end)`` per person (touching ones join)."""
    merged = _merge_intervals(code, start, end, max_gap=0, origin=origin, span=span)
    index, _ = _keys(merged.code, merged.start, n, origin, span)
    length = merged.end - merged.start
    total = np.concatenate([[0], np.cumsum(length)])
    days_before = total[:-1] - total[index.first[merged.code]]
    return _Covered(index, merged.start, merged.end, days_before)


def _histories(history: HistoryExtract, gap_days: int) -> _Histories:
    """Sort every table once (see :class:`_Histories`)."""
    persons = history.persons.sort_values("person_id", kind="stable").reset_index(drop=True)
    ids = pd.Index(persons["person_id"].astype(str))
    if not ids.is_unique:
        raise ValueError("persons: person_id not unique")
    n = len(ids)
    extract_day = int(_day_numbers(np.array([history.extract_date], dtype="datetime64[s]"))[0][0])
    start_day = int(_day_numbers(np.array([history.history_start], dtype="datetime64[s]"))[0][0])

    deaths = history.deaths
    d_code = _codes(ids, deaths["person_id"], "deaths")
    death = np.full(n, _NO_DATE, dtype=np.int64)
    death[d_code], _ = _day_numbers(deaths["death_date"])
    overdose_death = np.zeros(n, dtype=bool)
    overdose_death[d_code] = deaths["cause"].to_numpy() == "overdose"
    emigration, missing = _day_numbers(persons["emigration_date"])
    emigration[missing] = _NO_DATE
    end = np.minimum(np.minimum(death, emigration), extract_day)
    died = (death <= extract_day) & (death == end)
    emigrated = (emigration <= extract_day) & (emigration == end) & ~died

    episodes = history.treatment_episodes
    e_code = _codes(ids, episodes["person_id"], "treatment_episodes")
    e_start, _ = _day_numbers(episodes["start_date"])
    e_end, e_open = _day_numbers(episodes["end_date"])
    e_end[e_open] = extract_day
    use = e_start <= extract_day  # as version 1: episodes after the extract date are ignored
    medication = episodes["medication"].to_numpy()
    is_hat = (medication == HAT_MEDICATION) & use
    is_ost = np.isin(medication, OST_MEDICATIONS) & use
    first_hat = np.full(n, _NO_DATE, dtype=np.int64)
    np.minimum.at(first_hat, e_code[is_hat], e_start[is_hat])

    stays = history.incarcerations
    s_code = _codes(ids, stays["person_id"], "incarcerations")
    s_start, _ = _day_numbers(stays["start_date"])
    s_end, s_open = _day_numbers(stays["end_date"])
    s_end[s_open] = extract_day

    charges = history.charges
    c_code = _codes(ids, charges["person_id"], "charges")
    c_day, _ = _day_numbers(charges["charge_date"])
    forms = history.assessments
    a_code = _codes(ids, forms["person_id"], "assessments")
    a_day, _ = _day_numbers(forms["assessment_date"])
    if history.overdoses is not None:
        o_code = _codes(ids, history.overdoses["person_id"], "overdoses")
        o_day, _ = _day_numbers(history.overdoses["overdose_date"])
    else:
        o_code = o_day = np.empty(0, dtype=np.int64)

    known = [death[death != _NO_DATE], emigration[emigration != _NO_DATE], e_start, e_end]
    known += [s_start, s_end, c_day, a_day, o_day, np.array([extract_day, start_day])]
    origin = min(int(a.min()) for a in known if len(a)) - 2
    span = max(int(a.max()) for a in known if len(a)) + 3 - origin

    # OST coverage: an episode covers [start, end] = [start, end + 1)
    ost_cover = _covered(e_code[is_ost], e_start[is_ost], e_end[is_ost] + 1, n, origin, span)
    ost_spells = _merge_intervals(
        e_code[is_ost], e_start[is_ost], e_end[is_ost], max_gap=gap_days, origin=origin, span=span
    )
    ost_spell_keys, _ = _keys(ost_spells.code, ost_spells.start, n, origin, span)
    spells = _merge_intervals(
        e_code[use], e_start[use], e_end[use], max_gap=gap_days, origin=origin, span=span
    )
    spell_keys, _ = _keys(spells.code, spells.start, n, origin, span)
    prison = _covered(s_code, s_start, s_end, n, origin, span)

    # charges dated inside a stay (from its first day to the day before its end)
    pos, found = prison.index.last_on_or_before(c_code, c_day)
    in_stay = found & (c_day < _at(prison.end, pos))
    charge_keys, _ = _keys(c_code, c_day, n, origin, span)
    at_risk_keys, _ = _keys(c_code[~in_stay], c_day[~in_stay], n, origin, span)
    form_keys, form_order = _keys(a_code, a_day, n, origin, span)
    answers = {c: forms[c].to_numpy(dtype=np.float64)[form_order] for c in ASSESSMENT_COVARIATES}
    overdose_keys = (
        _keys(o_code, o_day, n, origin, span)[0] if history.overdoses is not None else None
    )
    return _Histories(
        ids=ids.to_numpy(dtype=object),
        birth_year=persons["birth_year"].to_numpy(dtype=np.int64),
        sex=persons["sex"].to_numpy(dtype=object),
        region=persons["region"].to_numpy(dtype=object),
        death=death,
        emigration=emigration,
        overdose_death=overdose_death,
        first_hat=first_hat,
        end=end,
        died=died,
        emigrated=emigrated,
        extract_day=extract_day,
        history_start_day=start_day,
        ost_cover=ost_cover,
        ost_spells=ost_spell_keys,
        spells=spell_keys,
        spell_end=spells.end,
        prison=prison,
        charges=charge_keys,
        charges_at_risk=at_risk_keys,
        assessments=form_keys,
        answers=answers,
        assessment_day=a_day[form_order],
        overdoses=overdose_keys,
    )


# --------------------------------------------------------------------------- the rules
def _last_ost_day(
    h: _Histories, code: np.ndarray, day: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The last day before ``day`` covered by an OST episode, and whether there is one."""
    pos, found = h.ost_cover.index.last_on_or_before(code, day - 1)
    return np.minimum(_at(h.ost_cover.end, pos) - 1, day - 1), found


def _reasons(
    h: _Histories,
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

    rule(1, _year_of(day) - h.birth_year[code] < protocol.min_age)
    rule(2, (h.death[code] < day) | (h.emigration[code] < day))
    rule(3, h.first_hat[code] < day)
    rest = np.flatnonzero(todo)
    last, found = _last_ost_day(h, code[rest], day[rest])
    rule(4, ~found | (last < day[rest] - protocol.recent_ost_days), where=rest)
    allowed = np.isin(h.region.astype(str), np.asarray(list(regions), dtype=str))
    rule(5, ~allowed[code])
    rule(6, day - protocol.lookback_days < h.history_start_day)
    return reason


def _initiators(h: _Histories) -> tuple[np.ndarray, np.ndarray]:
    """Codes and index days of the HAT initiators, sorted by day then person."""
    code = np.flatnonzero(h.first_hat != _NO_DATE)
    day = h.first_hat[code]
    order = np.lexsort((code, day))
    return code[order], day[order]


def _resolve(h: _Histories, protocol: TrialProtocol) -> TrialProtocol:
    """The protocol with ``regions`` resolved: by default those of the analysed initiators.

    An initiator is analysed when eligible on its index date; its own region
    then counts, so the default regions are those of the initiators passing
    every other rule.
    """
    if protocol.regions is not None:
        return protocol
    code, day = _initiators(h)
    reason = _reasons(h, code, day, protocol, REGIONS)
    regions = sorted({str(r) for r in h.region[code[reason == 0]]})
    return replace(protocol, regions=tuple(regions))


def _covariates(
    h: _Histories, code: np.ndarray, day: np.ndarray, protocol: TrialProtocol
) -> dict[str, np.ndarray]:
    lookback = protocol.lookback_days
    out: dict[str, np.ndarray] = {
        "age": _year_of(day) - h.birth_year[code],
        "sex": h.sex[code],
        "region": h.region[code],
    }
    pos, found = h.assessments.last_on_or_before(code, day - 1)
    form_day = _at(h.assessment_day, pos)
    found &= form_day >= day - lookback
    for column in ASSESSMENT_COVARIATES:
        out[column] = np.where(found, _at(h.answers[column], pos), np.nan)
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


def _outcomes(
    h: _Histories, code: np.ndarray, day: np.ndarray, protocol: TrialProtocol
) -> dict[str, np.ndarray]:
    gap, lookback = protocol.gap_days, protocol.lookback_days
    end = h.end[code]
    died = h.died[code]
    emigrated = h.emigrated[code]
    overdose_death = died & h.overdose_death[code]
    # retention: the treatment spell holding the last OST day before the date
    last, has_ost = _last_ost_day(h, code, day)
    pos, in_spell = h.spells.last_on_or_before(code, np.where(has_ost, last, day - 1))
    has_spell = has_ost & in_spell
    spell_end = np.where(has_spell, _at(h.spell_end, pos), day - 1)
    # per protocol: a later HAT start ends follow-up, censored (it wins a tie with death)
    hat = h.first_hat[code]
    later_hat = (hat > day) & (hat != _NO_DATE)
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
        "pp_censor_date": np.where(later_hat, hat, _NO_DATE),
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


# --------------------------------------------------------------------------- tables
def _dates(days: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    out = np.where(days == _NO_DATE, 0, days).astype("datetime64[D]").astype("datetime64[s]")
    missing = days == _NO_DATE if valid is None else ~valid | (days == _NO_DATE)
    out[missing] = np.datetime64("NaT")
    return out


def _categorical(values: np.ndarray, categories: Sequence[str]) -> pd.Categorical:
    return pd.Categorical(values, categories=list(categories))


def _column(name: str, values: np.ndarray, valid: np.ndarray, n: int) -> object:
    """A column of ``n`` rows holding ``values`` where ``valid`` (others missing)."""
    if len(values) == n:  # every row valid
        if name in ("sex", "region"):
            return _categorical(values, SEXES if name == "sex" else REGIONS)
        if name in _DATE_OUTCOMES:
            return _dates(values)
        if values.dtype == np.float64:
            return values
        return pd.arrays.IntegerArray(values.astype(np.int64, copy=False), np.zeros(n, dtype=bool))
    if name in ("sex", "region"):
        full = np.full(n, None, dtype=object)
        full[valid] = values
        return _categorical(full, SEXES if name == "sex" else REGIONS)
    if name in _DATE_OUTCOMES:
        full = np.full(n, _NO_DATE, dtype=np.int64)
        full[valid] = values
        return _dates(full)
    if values.dtype == np.float64:
        full = np.full(n, np.nan)
        full[valid] = values
        return full
    data = np.zeros(n, dtype=np.int64)
    data[valid] = values
    return pd.arrays.IntegerArray(data, ~valid)


def _frame(
    h: _Histories,
    code: np.ndarray,
    day: np.ndarray,
    protocol: TrialProtocol,
    *,
    covariates: bool = True,
    outcomes: bool = True,
    valid: np.ndarray | None = None,
) -> dict[str, object]:
    """Covariate and outcome columns of the rows ``(code, day)``, given where ``valid``."""
    n = len(code)
    valid = np.ones(n, dtype=bool) if valid is None else valid
    c, d = code[valid], day[valid]
    values: dict[str, np.ndarray] = {}
    if covariates:
        values.update(_covariates(h, c, d, protocol))
    if outcomes:
        values.update(_outcomes(h, c, d, protocol))
    out = {}
    for name in list(values):  # each compact column is freed once spread out
        v = np.asarray(values.pop(name))
        if v.dtype == bool:
            v = v.astype(np.int64)
        out[name] = _column(name, v, valid, n)
    return out


def _pairs(
    history: HistoryExtract, pairs: pd.DataFrame, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    if not {"person_id", "index_date"} <= set(pairs.columns):
        raise ValueError("pairs must have the columns 'person_id' and 'index_date'")
    code = _codes(pd.Index(ids), pairs["person_id"], "pairs")
    day, missing = _day_numbers(pairs["index_date"])
    if missing.any():
        raise ValueError(f"pairs: {int(missing.sum())} missing index dates")
    return code, day


def _protocol(
    min_age: int,
    lookback_days: int,
    recent_ost_days: int,
    gap_days: int,
    regions: Sequence[str] | None,
) -> TrialProtocol:
    return TrialProtocol(
        min_age=min_age,
        lookback_days=lookback_days,
        recent_ost_days=recent_ost_days,
        gap_days=gap_days,
        regions=None if regions is None else tuple(regions),
    )


# --------------------------------------------------------------------------- public API
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
    h = _histories(history, 0)
    code, day = _initiators(h)
    return pd.DataFrame({"person_id": h.ids[code], "index_date": _dates(day)})


def eligibility_on(
    history: HistoryExtract,
    pairs: pd.DataFrame,
    *,
    min_age: int = 18,
    lookback_days: int = 730,
    recent_ost_days: int = 7,
    gap_days: int = 30,
    regions: Sequence[str] | None = None,
) -> pd.Series:
    """Eligibility of persons on dates, with the first rule failed as the reason.

    The rules, in the contract's order: (1) age (year of the date minus
    ``birth_year``) at least ``min_age``; (2) not dead or emigrated before the
    date; (3) no HAT before the date (a person starting HAT on the date is an
    initiator, not a candidate); (4) an OST episode covers at least one day from
    ``date - recent_ost_days`` to ``date - 1``; (5) the region is one of
    ``regions``; (6) ``date - lookback_days`` is on or after ``history_start``.

    Parameters
    ----------
    history : HistoryExtract
        A validated history extract.
    pairs : pandas.DataFrame
        ``person_id`` and ``index_date`` (the date ``d``), any number of rows.
    min_age, lookback_days, recent_ost_days, gap_days, regions
        The protocol (see :class:`TrialProtocol`); ``regions=None`` stands for
        the regions where an analysed initiator lives.

    Returns
    -------
    pandas.Series
        Categorical reason (:data:`ELIGIBILITY_REASONS`), missing where
        eligible; same index as ``pairs``.
    """
    protocol = _protocol(min_age, lookback_days, recent_ost_days, gap_days, regions)
    h = _histories(history, protocol.gap_days)
    protocol = _resolve(h, protocol)
    code, day = _pairs(history, pairs, h.ids)
    reason = _reasons(h, code, day, protocol, protocol.regions or ())
    labels = np.array([None, *ELIGIBILITY_REASONS], dtype=object)[reason]
    return pd.Series(_categorical(labels, ELIGIBILITY_REASONS), index=pairs.index, name="reason")


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
    protocol = _protocol(18, lookback_days, 7, gap_days, ())
    h = _histories(history, gap_days)
    code, day = _pairs(history, pairs, h.ids)
    columns = _frame(h, code, day, protocol, outcomes=False)
    return pd.DataFrame(columns, index=pairs.index)


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
    protocol = _protocol(18, lookback_days, 7, gap_days, ())
    h = _histories(history, gap_days)
    code, day = _pairs(history, pairs, h.ids)
    columns = _frame(h, code, day, protocol, covariates=False)
    _, has_ost = _last_ost_day(h, code, day)
    for name in ("retention_days", "discontinued", "pp_retention_days", "pp_discontinued"):
        values = columns[name]
        assert isinstance(values, pd.arrays.IntegerArray)
        columns[name] = pd.arrays.IntegerArray(
            values.to_numpy(dtype=np.int64, na_value=0), ~has_ost
        )
    return pd.DataFrame(columns, index=pairs.index)


def _plan(h: _Histories, protocol: TrialProtocol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initiators (codes, days, reason codes) under the resolved protocol."""
    code, day = _initiators(h)
    reason = _reasons(h, code, day, protocol, protocol.regions or ())
    return code, day, reason


def _piece(
    h: _Histories,
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
    reason = _reasons(h, code, day, protocol, protocol.regions or ())
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
        "index_date": _dates(day),
        "person_id": h.ids[code],
        "role": pd.Categorical.from_codes(role, categories=list(ROLES)),
        "reason": pd.Categorical.from_codes(reason.astype(np.int64) - 1, list(ELIGIBILITY_REASONS)),
    }
    columns.update(_frame(h, code, day, protocol, valid=eligible))
    return pd.DataFrame(columns, columns=list(RISK_SET_COLUMNS), copy=False)


def _prepare(
    history: HistoryExtract, protocol: TrialProtocol
) -> tuple[_Histories, TrialProtocol, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    h = _histories(history, protocol.gap_days)
    protocol = _resolve(h, protocol)
    code, day, reason = _plan(h, protocol)
    labels = np.array([None, *ELIGIBILITY_REASONS], dtype=object)[reason]
    initiators = pd.DataFrame(
        {
            "person_id": h.ids[code],
            "index_date": _dates(day),
            "analysed": reason == 0,
            "reason": _categorical(labels, ELIGIBILITY_REASONS),
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
    min_age, lookback_days, recent_ost_days, gap_days, regions, not_eligible
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
    protocol = _protocol(min_age, lookback_days, recent_ost_days, gap_days, regions)
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
    protocol = _protocol(min_age, lookback_days, recent_ost_days, gap_days, regions)
    h, protocol, initiators, code, day, dates, analysed_date = _prepare(history, protocol)
    table = _piece(h, protocol, dates, analysed_date, code, day, not_eligible)
    return RiskSets(table=table, initiators=initiators, protocol=protocol)
