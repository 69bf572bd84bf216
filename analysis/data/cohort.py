"""Cohort derivation: from a registry extract to one analysis row per person.

:func:`derive_cohort` applies the definitions of the data contract
(``shared/data-contract.md``, "Definitions"): follow-up, mortality, retention in
treatment (episodes merged into spells), prison time and police-registered
charges. It is vectorised: every date is turned into an integer day number and
every per-person rule is a sort, a running maximum, a binary search or a
``bincount`` over whole tables, so a million persons with millions of episode
and charge rows take seconds.

Dates are handled as calendar days; a window ``[a, b)`` includes ``a`` and
excludes ``b`` unless said otherwise, as in the contract.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.data.contract import BOOLEAN_COVARIATES, DAYS_PER_YEAR, NUMERIC_COVARIATES
from analysis.data.extract import Extract
from analysis.data.intervals import (
    Intervals,
    containing,
    day_numbers,
    merge_intervals,
    person_codes,
)

__all__ = [
    "BASELINE_DAYS",
    "COHORT_COLUMNS",
    "Cohort",
    "calendar_years",
    "derive_cohort",
]

#: day number standing for "no date" (missing death or emigration date)
_NO_DATE = np.iinfo(np.int64).max

#: length of the window of baseline charges, in days before the index date
BASELINE_DAYS = 730

STAGE_COHORT = "cohort"
STAGE_RETENTION = "retention"
REASON_DIED = "died before index date"
REASON_EMIGRATED = "emigrated before index date"
REASON_NO_SPELL = "no treatment spell containing the index date"

#: columns of :attr:`Cohort.table`, in order (ARCHITECTURE.md, "Cohort table")
COHORT_COLUMNS = (
    "person_id",
    "group",
    "treatment",
    "index_date",
    "followup_end",
    "followup_days",
    "followup_years",
    "died",
    "overdose_death",
    "emigrated",
    "in_retention",
    "retention_days",
    "discontinued",
    "prison_days",
    "crime_days",
    "crime_years",
    "baseline_charges",
    "followup_charges",
    "baseline_prison_days",
    "baseline_crime_days",
    "baseline_crime_years",
    "baseline_charges_at_risk",
    "age",
    "sex",
    "region",
    *NUMERIC_COVARIATES,
    *BOOLEAN_COVARIATES,
)


@dataclass(frozen=True)
class Cohort:
    """The analysis cohort derived from an extract.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per analysed person, sorted by ``person_id``, with the columns:

        - ``person_id`` (str), ``group`` (str, ``HAT``/``OST``),
          ``treatment`` (int, 1 = HAT, 0 = OST).
        - ``index_date`` (datetime64): start of follow-up.
        - ``followup_end`` (datetime64): the first of the death date, the
          emigration date and the extract date (a death or emigration on or
          after the extract date does not end follow-up before it).
        - ``followup_days`` (int): ``followup_end - index_date``;
          ``followup_years`` (float): ``followup_days / 365.25``.
        - ``died`` (int 0/1): follow-up ended by death (a death on the index
          date counts, with 0 follow-up days); ``overdose_death`` (int 0/1): that
          death had cause ``overdose``; ``emigrated`` (int 0/1): follow-up ended
          by emigration (a death on the same day wins).
        - ``in_retention`` (bool): a treatment spell contains the index date.
        - ``retention_days`` (float, whole days): ``min(spell end,
          followup_end) - index_date``; NaN where ``in_retention`` is False.
        - ``discontinued`` (float 0.0/1.0): the spell ended before follow-up
          ended (1) or not (0, censored); a spell that ended fewer than
          ``gap_days`` days before follow-up ended by emigration or the extract
          date is censored (0) at its end, since a return within the gap could
          not be seen. NaN where ``in_retention`` is False.
        - ``prison_days`` (int): days of prison stays (merged, an open stay
          ending at the extract date) inside ``[index_date, followup_end]``,
          both days included (the crime window).
        - ``crime_days`` (int): ``followup_days + 1 - prison_days``, the days at
          risk of a charge: the days of the crime window ``[index_date,
          followup_end]`` out of prison (a charge on ``followup_end`` counts,
          so that day is at risk); ``crime_years`` (float): ``crime_days / 365.25``.
        - ``baseline_charges`` (int): charges dated from ``index_date - 730``
          days to ``index_date - 1`` day, in prison or not: the contract's
          baseline crime count, a covariate of the propensity model.
        - ``followup_charges`` (int): charges dated from ``index_date`` to
          ``followup_end``, both included, except those dated inside a prison
          stay (from its first day to the day before its end).
        - ``baseline_prison_days`` (int): days of prison stays inside the
          baseline window ``[index_date - 730, index_date)``;
          ``baseline_crime_days`` (int): ``730 - baseline_prison_days``, the
          baseline days at risk of a charge; ``baseline_crime_years`` (float):
          ``baseline_crime_days / 365.25``.
        - ``baseline_charges_at_risk`` (int): the baseline charges not dated
          inside a prison stay. With ``baseline_crime_years`` it gives the rate
          before index by the same rules as ``followup_charges`` and
          ``crime_years`` after it (the before/after comparison).
        - ``age`` (int): year of ``index_date`` minus ``birth_year``.
        - ``sex``, ``region`` (str) and the covariates ``years_opioid_use``,
          ``prior_ost_episodes``, ``injecting``, ``psychiatric_dx``,
          ``homeless``, ``prior_overdose``, ``benzodiazepine_use`` (float,
          booleans 0.0/1.0, NaN = missing), copied from ``persons``.
    exclusions : pandas.DataFrame
        Columns ``stage, reason, n_hat, n_ost``. Stage ``cohort`` (left out of
        every analysis): ``died before index date``, ``emigrated before index
        date`` (each person counted once; a death before the index date takes
        precedence). Stage ``retention`` (left out of the retention analysis
        only): ``no treatment spell containing the index date``. Every row is
        present even when its counts are 0.
    n_read : int
        Persons read from the extract.
    gap_days : int
        Largest gap between treatment episodes that still joins them into one
        spell.
    """

    table: pd.DataFrame
    exclusions: pd.DataFrame
    n_read: int
    gap_days: int

    def flow(self) -> pd.DataFrame:
        """Counts for a flow diagram, by group.

        Returns
        -------
        pandas.DataFrame
            Columns ``step, stage, n_hat, n_ost, n_total``, one row per box in
            order: ``persons read``, one ``excluded: <reason>`` row per cohort
            exclusion, ``analysed``, one ``excluded from retention: <reason>``
            row per retention exclusion and ``in retention analysis``.
        """
        is_hat = self.table["treatment"].to_numpy() == 1
        analysed = (int(is_hat.sum()), int((~is_hat).sum()))
        in_ret = self.table["in_retention"].to_numpy(dtype=bool)
        retained = (int((in_ret & is_hat).sum()), int((in_ret & ~is_hat).sum()))
        ex = self.exclusions
        cohort_ex = ex[ex["stage"] == STAGE_COHORT]
        ret_ex = ex[ex["stage"] == STAGE_RETENTION]
        read = (
            analysed[0] + int(cohort_ex["n_hat"].sum()),
            analysed[1] + int(cohort_ex["n_ost"].sum()),
        )
        rows = [("persons read", "read", *read)]
        rows += [
            (f"excluded: {r.reason}", STAGE_COHORT, int(r.n_hat), int(r.n_ost))
            for r in cohort_ex.itertuples()
        ]
        rows.append(("analysed", "analysed", *analysed))
        rows += [
            (f"excluded from retention: {r.reason}", STAGE_RETENTION, int(r.n_hat), int(r.n_ost))
            for r in ret_ex.itertuples()
        ]
        rows.append(("in retention analysis", "retention analysis", *retained))
        out = pd.DataFrame(rows, columns=["step", "stage", "n_hat", "n_ost"])
        out["n_total"] = out["n_hat"] + out["n_ost"]
        return out.astype({"n_hat": "int64", "n_ost": "int64", "n_total": "int64"})


def calendar_years(dates: pd.Series, *, first: pd.Timestamp | None = None) -> pd.Series:
    """Calendar time of each date: years (days / 365.25) since ``first``.

    Parameters
    ----------
    dates : pandas.Series
        Dates (``index_date`` of the cohort, or of stacked risk-set rows).
    first : pandas.Timestamp, optional
        The origin; default the earliest of ``dates``.

    Returns
    -------
    pandas.Series
        The :data:`analysis.data.contract.CALENDAR_COVARIATE` of the propensity models.
    """
    if not (isinstance(dates, pd.Series) and pd.api.types.is_datetime64_any_dtype(dates.dtype)):
        dates = pd.to_datetime(dates)  # (on dates already, it would only look at them one by one)
    origin = dates.min() if first is None else first
    return (dates - origin).dt.days / DAYS_PER_YEAR


def _to_timestamps(days: np.ndarray) -> np.ndarray:
    """Day numbers back to dates (``datetime64[s]``, as the extract's dates)."""
    return days.astype("datetime64[D]").astype("datetime64[s]")


def _required_days(df: pd.DataFrame, column: str, table: str) -> np.ndarray:
    days, missing = day_numbers(df[column])
    if missing.any():
        raise ValueError(f"{table}.{column}: {int(missing.sum())} missing dates")
    return days


def _open_ended(df: pd.DataFrame, table: str, extract_day: int) -> tuple[np.ndarray, ...]:
    """Start and end days of an interval table; a missing end is the extract date."""
    start = _required_days(df, "start_date", table)
    end, open_ = day_numbers(df["end_date"])
    end[open_] = extract_day
    return start, end


@dataclass(frozen=True)
class _Followup:
    """Per-person follow-up by the contract's rules (day numbers, masks)."""

    end: np.ndarray  # first of death, emigration and extract date
    died: np.ndarray
    emigrated: np.ndarray
    overdose: np.ndarray  # the death (if any) had cause overdose
    died_before: np.ndarray  # excluded: died before the index date
    emigrated_before: np.ndarray  # excluded: emigrated before it (and did not die before)

    @property
    def keep(self) -> np.ndarray:
        return ~(self.died_before | self.emigrated_before)


def _followup(
    extract: Extract, persons: pd.DataFrame, ids: pd.Index, index_day: np.ndarray, extract_day: int
) -> _Followup:
    """Deaths and emigration: the end of follow-up and the exclusions before index."""
    n = len(persons)
    deaths = extract.deaths
    d_code = person_codes(ids, deaths["person_id"], "deaths")
    if len(np.unique(d_code)) != len(d_code):
        raise ValueError("deaths: person_id not unique")
    death_day = np.full(n, _NO_DATE, dtype=np.int64)
    death_day[d_code] = _required_days(deaths, "death_date", "deaths")
    overdose = np.zeros(n, dtype=bool)
    overdose[d_code] = deaths["cause"].to_numpy() == "overdose"
    emig_day, emig_missing = day_numbers(persons["emigration_date"])
    emig_day[emig_missing] = _NO_DATE

    died_before = death_day < index_day
    followup_end = np.minimum(np.minimum(death_day, emig_day), extract_day)
    # a death or emigration on the extract date is inside follow-up (its last day)
    died = (death_day <= extract_day) & (death_day == followup_end)
    return _Followup(
        end=followup_end,
        died=died,
        emigrated=(emig_day <= extract_day) & (emig_day == followup_end) & ~died,
        overdose=overdose,
        died_before=died_before,
        emigrated_before=(emig_day < index_day) & ~died_before,
    )


def derive_cohort(extract: Extract, *, gap_days: int = 30) -> Cohort:
    """Derive the person-level analysis table and the exclusions from an extract.

    Parameters
    ----------
    extract : Extract
        A validated registry extract (tables in any row order).
    gap_days : int, default 30
        Treatment episodes whose start is at most this many days after the
        latest end of the previous episodes of the person join one spell.

    Returns
    -------
    Cohort
        ``table`` (one row per analysed person), ``exclusions``, ``n_read``
        and ``gap_days``.

    Raises
    ------
    ValueError
        ``gap_days`` is negative; ``person_id`` is not unique in ``persons`` or
        in ``deaths``; a row refers to a person not in ``persons``; a required
        date is missing; an index date is after the extract date.

    Notes
    -----
    The definitions of the data contract, with these readings of its ties:

    - Follow-up runs from ``index_date`` to the first of the death date, the
      emigration date and the extract date. A death or an emigration strictly
      before the index date excludes the person. A death or an emigration on or
      after the extract date does not end follow-up (censored at the extract
      date, ``died = emigrated = 0``). A death on the index date gives 0 days
      and ``died = 1``. A death and an emigration on the same day: died.
    - Retention: each person's episodes of any medication (switches stay in
      treatment), an open episode ending at the extract date and episodes
      starting after the extract date ignored, are sorted by start and merged
      while ``start - running maximum of previous ends <= gap_days``. The spell
      with ``start <= index_date <= end`` gives ``retention_days =
      min(end, followup_end) - index_date`` and ``discontinued = end <
      followup_end``; a spell ending on or after the end of follow-up (death,
      emigration, extract date, or episodes recorded beyond it) is censored.
    - Prison: overlapping or adjacent stays are merged first, an open stay
      ending at the extract date; ``prison_days`` is the overlap of
      ``[start, end)`` with ``[index_date, followup_end)``. A charge dated from
      a stay's first day to the day before its end is not counted in follow-up.
    """
    if gap_days < 0:
        raise ValueError(f"gap_days must be >= 0, got {gap_days}")
    persons = extract.persons.sort_values("person_id", kind="stable").reset_index(drop=True)
    ids = pd.Index(persons["person_id"].astype(str))
    if not ids.is_unique:
        dup = ids[ids.duplicated()].unique()[:5]
        raise ValueError(f"persons: person_id not unique (e.g. {', '.join(dup)})")
    n = len(persons)
    extract_day = int(day_numbers(pd.Series([pd.Timestamp(extract.extract_date)]))[0][0])
    index_day = _required_days(persons, "index_date", "persons")
    if (index_day > extract_day).any():
        raise ValueError(
            f"persons.index_date: {int((index_day > extract_day).sum())} index dates after "
            f"the extract date {pd.Timestamp(extract.extract_date).date()}"
        )
    fu = _followup(extract, persons, ids, index_day, extract_day)

    # -- a common frame of day numbers for sort keys ------------------------------------
    episodes = extract.treatment_episodes
    e_code = person_codes(ids, episodes["person_id"], "treatment_episodes")
    e_start, e_end = _open_ended(episodes, "treatment_episodes", extract_day)
    use = e_start <= extract_day
    e_code, e_start, e_end = e_code[use], e_start[use], e_end[use]
    stays = extract.incarcerations
    s_code = person_codes(ids, stays["person_id"], "incarcerations")
    s_start, s_end = _open_ended(stays, "incarcerations", extract_day)
    charges = extract.charges
    c_code = person_codes(ids, charges["person_id"], "charges")
    c_day = _required_days(charges, "charge_date", "charges")
    all_days = (index_day, e_start, e_end, s_start, s_end, c_day, np.array([extract_day]))
    origin = min(int(a.min()) for a in all_days if len(a))
    span = max(int(a.max()) for a in all_days if len(a)) - origin + 1

    spells = merge_intervals(e_code, e_start, e_end, max_gap=gap_days, origin=origin, span=span)
    columns = _retention(spells, index_day, fu, gap_days, origin=origin, span=span)
    prison = merge_intervals(s_code, s_start, s_end, max_gap=0, origin=origin, span=span)
    columns |= _crime(prison, c_code, c_day, index_day, fu.end, origin=origin, span=span)
    table = _table(persons, ids, index_day, fu, columns)
    is_hat = persons["group"].to_numpy() == "HAT"

    def counts(mask: np.ndarray) -> tuple[int, int]:
        return int((mask & is_hat).sum()), int((mask & ~is_hat).sum())

    exclusions = pd.DataFrame(
        [
            (STAGE_COHORT, REASON_DIED, *counts(fu.died_before)),
            (STAGE_COHORT, REASON_EMIGRATED, *counts(fu.emigrated_before)),
            (STAGE_RETENTION, REASON_NO_SPELL, *counts(fu.keep & ~columns["in_retention"])),
        ],
        columns=["stage", "reason", "n_hat", "n_ost"],
    ).astype({"n_hat": "int64", "n_ost": "int64"})
    return Cohort(table=table, exclusions=exclusions, n_read=n, gap_days=gap_days)


def _retention(
    spells: Intervals,
    index_day: np.ndarray,
    fu: _Followup,
    gap_days: int,
    *,
    origin: int,
    span: int,
) -> dict[str, np.ndarray]:
    """Retention columns: the spell containing the index date, its end and censoring."""
    codes = np.arange(len(index_day), dtype=np.int64)
    spell_end, in_retention = containing(spells, codes, index_day, origin=origin, span=span)
    in_retention &= index_day <= spell_end
    retention_days = np.where(in_retention, np.minimum(spell_end, fu.end) - index_day, np.nan)
    # a return within the gap after the spell's end falls after follow-up ended by
    # emigration or the extract date and could not be seen: censored at the spell's end
    unseen_return = ~fu.died & (fu.end - spell_end < gap_days)
    ended = (spell_end < fu.end) & ~unseen_return
    return {
        "in_retention": in_retention,
        "retention_days": retention_days,
        "discontinued": np.where(in_retention, ended.astype(float), np.nan),
    }


def _crime(
    prison: Intervals,
    c_code: np.ndarray,
    c_day: np.ndarray,
    index_day: np.ndarray,
    followup_end: np.ndarray,
    *,
    origin: int,
    span: int,
) -> dict[str, np.ndarray]:
    """Prison days and charges in the crime window and the baseline window."""
    n = len(index_day)

    def prison_days_in(first: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """Days of merged stays inside each person's window ``[first, stop)``."""
        overlap = np.minimum(prison.end, stop[prison.code]) - np.maximum(
            prison.start, first[prison.code]
        )
        overlap = np.clip(overlap, 0, None).astype(np.float64)  # exact sums below 2**53
        return np.bincount(prison.code, weights=overlap, minlength=n).astype(np.int64)

    c_index = index_day[c_code]
    baseline = (c_day >= c_index - BASELINE_DAYS) & (c_day <= c_index - 1)
    stay_end, in_stay = containing(prison, c_code, c_day, origin=origin, span=span)
    in_stay &= c_day < stay_end
    counted = (c_day >= c_index) & (c_day <= followup_end[c_code]) & ~in_stay
    return {
        # the crime window [index, followup_end] includes its last day
        "prison_days": prison_days_in(index_day, followup_end + 1),
        "baseline_prison_days": prison_days_in(index_day - BASELINE_DAYS, index_day),
        "baseline_charges": np.bincount(c_code[baseline], minlength=n).astype(np.int64),
        "baseline_charges_at_risk": np.bincount(c_code[baseline & ~in_stay], minlength=n).astype(
            np.int64
        ),
        "followup_charges": np.bincount(c_code[counted], minlength=n).astype(np.int64),
    }


def _table(
    persons: pd.DataFrame,
    ids: pd.Index,
    index_day: np.ndarray,
    fu: _Followup,
    derived: dict[str, np.ndarray],
) -> pd.DataFrame:
    """The cohort table (:data:`COHORT_COLUMNS`) of the persons kept."""
    followup_days = fu.end - index_day
    crime_days = followup_days + 1 - derived["prison_days"]
    baseline_crime_days = BASELINE_DAYS - derived["baseline_prison_days"]
    index_year = _to_timestamps(index_day).astype("datetime64[Y]").astype(np.int64) + 1970
    columns = {
        "person_id": ids.to_numpy(dtype=object),
        "group": persons["group"].to_numpy(dtype=object),
        "treatment": (persons["group"].to_numpy() == "HAT").astype(np.int64),
        "index_date": _to_timestamps(index_day),
        "followup_end": _to_timestamps(fu.end),
        "followup_days": followup_days,
        "followup_years": followup_days / DAYS_PER_YEAR,
        "died": fu.died.astype(np.int64),
        "overdose_death": (fu.died & fu.overdose).astype(np.int64),
        "emigrated": fu.emigrated.astype(np.int64),
        **derived,
        "crime_days": crime_days,
        "crime_years": crime_days / DAYS_PER_YEAR,
        "baseline_crime_days": baseline_crime_days,
        "baseline_crime_years": baseline_crime_days / DAYS_PER_YEAR,
        "age": index_year - persons["birth_year"].to_numpy(dtype=np.int64),
        "sex": persons["sex"].to_numpy(dtype=object),
        "region": persons["region"].to_numpy(dtype=object),
    }
    for col in (*NUMERIC_COVARIATES, *BOOLEAN_COVARIATES):
        columns[col] = persons[col].to_numpy(dtype=np.float64)
    keep = fu.keep
    if bool(keep.all()):  # every person kept: the frame copies the columns anyway
        return pd.DataFrame({k: columns[k] for k in COHORT_COLUMNS}, columns=list(COHORT_COLUMNS))
    return pd.DataFrame({k: columns[k][keep] for k in COHORT_COLUMNS}, columns=list(COHORT_COLUMNS))
