"""State, parameters and population of the history simulation (contract version 2).

:class:`State` holds one row per person (struct of arrays, :data:`FIELDS`) and two week
buffers; :class:`Log` the records written as they happen; :class:`Rates` the per-day rates
and constants of a scenario; :func:`new_persons` draws the initial population and new
entrants. Days are integers counted from 1970-01-01; week ``k`` covers days ``t0 + 7k`` to
``t0 + 7k + 6``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from analysis.data.contract import DAYS_PER_YEAR, MEDICATIONS, REGIONS
from synthetic.history_spec import Coefficients, HistoryScenario
from synthetic.population import choose as choose_medication
from synthetic.population import day_number

__all__ = [
    "CHARGE_WEEKS",
    "FIELDS",
    "FORM_ITEMS",
    "HAT_MED",
    "IN_HAT",
    "IN_OST",
    "METHADONE",
    "NEVER",
    "NONE",
    "OST_WEEKS",
    "OUT",
    "STATES",
    "TABLE_COLUMNS",
    "WEEK",
    "Log",
    "Rates",
    "State",
    "choose_medication",
    "empty_state",
    "linear_predictor",
    "new_persons",
    "nonzero_terms",
]

OUT, IN_OST, IN_HAT = 0, 1, 2
HAT_MED = MEDICATIONS.index("diacetylmorphine")
METHADONE = MEDICATIONS.index("methadone")
WEEK = 7
NONE = -(2**40)  # "no such day" (far past)
NEVER = 2**40  # "no such day" (far future)
CHARGE_WEEKS = 104  # charges in the last two years (weeks)
OST_WEEKS = 52  # days in OST in the last year (weeks)
STATES = ("injecting", "homeless", "benzodiazepine_use")
FORM_ITEMS = ("years_opioid_use", "injecting", "psychiatric_dx", "homeless", "benzodiazepine_use")


# --------------------------------------------------------------------------- state
#: per-person arrays (name -> dtype); the two buffers are 2-D
FIELDS: dict[str, type] = {
    "pid": np.int64,  # person number (creation order)
    "key": np.uint64,  # random-number key
    "enter_week": np.int64,  # first week simulated
    "female": np.bool_,
    "birth_day": np.int64,
    "region": np.int8,
    "severity": np.float64,
    "frailty": np.float64,  # crime frailty z (mean 1)
    "onset_day": np.int64,  # start of opioid use
    "form_offset": np.int64,  # day of the yearly status form (days mod 365)
    "alive": np.bool_,  # present: entered, not dead, not emigrated
    "gone": np.bool_,  # dead or emigrated
    "tx": np.int8,  # OUT, IN_OST, IN_HAT
    "med": np.int8,
    "ep_start": np.int64,  # start of the open episode
    "regime_start": np.int64,  # start of the current spell of treatment: the exit clock
    "next_day": np.int64,  # scheduled (re-)entry, NEVER if none
    "next_med": np.int8,
    "next_new_regime": np.bool_,
    "last_exit": np.int64,
    "ever_treated": np.bool_,
    "ever_hat": np.bool_,
    "prison_from": np.int64,
    "prison_until": np.int64,  # first day out of prison
    "injecting": np.bool_,
    "homeless": np.bool_,
    "benzodiazepine_use": np.bool_,
    "psychiatric_dx": np.bool_,
    "last_overdose": np.int64,
    "form_day": np.int64,  # day of the latest status form
    "f_injecting": np.int8,  # its answers: -1 missing
    "f_homeless": np.int8,
    "f_psychiatric_dx": np.int8,
    "f_benzodiazepine_use": np.int8,
    "charges_2y": np.int64,
    "ost_days_1y": np.int64,
    "hat_policy": np.int8,  # 0 natural, 1 never starts HAT (per-protocol comparator)
    "no_hat_week": np.int64,  # no HAT start in this week ("not now"), -1 none
    "t_from": np.float64,  # replays: day offset where the next week starts (-1: whole week)
}


@dataclass
class State:
    """Struct of arrays: one row per person (see :data:`FIELDS`) and two week buffers.

    The buffers are stored week by person (one contiguous row per week of the ring), so
    that a week's values of the persons present are a fast gather from one row.
    """

    cols: dict[str, np.ndarray]
    charge_buf: np.ndarray  # (CHARGE_WEEKS, n) charges per week
    ost_buf: np.ndarray  # (OST_WEEKS, n) days in OST per week

    def __len__(self) -> int:
        return len(self.cols["pid"])

    def take(self, idx: np.ndarray) -> State:
        return State(
            {k: v[idx].copy() for k, v in self.cols.items()},
            self.charge_buf[:, idx],
            self.ost_buf[:, idx],
        )

    @staticmethod
    def concat(parts: list[State]) -> State:
        return State(
            {k: np.concatenate([p.cols[k] for p in parts]) for k in FIELDS},
            np.concatenate([p.charge_buf for p in parts], axis=1),
            np.concatenate([p.ost_buf for p in parts], axis=1),
        )


def empty_state(n: int) -> State:
    cols = {k: np.zeros(n, dtype=t) for k, t in FIELDS.items()}
    for k in ("next_day", "prison_from", "prison_until"):
        cols[k][:] = NEVER if k == "next_day" else NONE
    for k in ("last_exit", "last_overdose", "form_day"):
        cols[k][:] = NONE
    for k in ("f_injecting", "f_homeless", "f_psychiatric_dx", "f_benzodiazepine_use"):
        cols[k][:] = -1
    cols["no_hat_week"][:] = -1
    cols["t_from"][:] = -1.0
    return State(
        cols,
        np.zeros((CHARGE_WEEKS, n), dtype=np.uint8),
        np.zeros((OST_WEEKS, n), dtype=np.uint8),
    )


# --------------------------------------------------------------------------- event log
@dataclass
class Log:
    """Records written as they happen (lists of arrays, concatenated by :meth:`arrays`).

    Every record carries the week it was written in (``week``), so that a replay from
    week k can take the records written before k and add its own.
    """

    parts: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)

    def add(self, table: str, week: int, **cols: np.ndarray) -> None:
        n = len(next(iter(cols.values())))
        if n:
            self.parts.setdefault(table, []).append(
                {**cols, "week": np.full(n, week, dtype=np.int64)}
            )

    def arrays(self, table: str, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
        parts = self.parts.get(table, [])
        if not parts:
            return {c: np.zeros(0, dtype=np.int64) for c in (*columns, "week")}
        return {c: np.concatenate([p[c] for p in parts]) for c in (*columns, "week")}


TABLE_COLUMNS = {
    "episodes": ("pid", "start", "end", "med"),  # end NEVER = open at the end of the run
    "deaths": ("pid", "day", "overdose"),
    "emigrations": ("pid", "day"),
    "prison": ("pid", "start", "end"),
    "charges": ("pid", "day", "offence"),
    "overdoses": ("pid", "day"),
    "forms": ("pid", "day", *FORM_ITEMS),
    "hat_starts": ("pid", "day", "from_tx"),
}


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Rates:
    """Per-day rates and derived constants of a scenario (computed once)."""

    spec: HistoryScenario
    t0: int  # first day of week 0
    n_weeks: int
    extract_day: int
    site_region: np.ndarray  # region code of each site
    site_open: np.ndarray  # first day of each site
    site_rate: np.ndarray  # (site, pool) HAT starts per day at scale 1; pool 0 OST, 1 out
    mix: dict[str, float]

    @staticmethod
    def of(spec: HistoryScenario) -> Rates:
        t0 = day_number(
            spec.history_start.replace(year=spec.history_start.year - spec.burn_in_years)
        )
        extract = day_number(spec.extract_date)
        n_weeks = (extract - t0) // WEEK + 1
        sites = spec.sites
        rate = np.array([spec.hat.starts_per_year[s.city] for s in sites]) / DAYS_PER_YEAR
        share = spec.hat.share_from_outside
        return Rates(
            spec=spec,
            t0=t0,
            n_weeks=n_weeks,
            extract_day=extract,
            site_region=np.array([REGIONS.index(s.region) for s in sites], dtype=np.int8),
            site_open=np.array([day_number(s.start) for s in sites], dtype=np.int64),
            site_rate=np.stack([rate * (1 - share), rate * share], axis=1),
            mix=dict(spec.treatment.ost_medication_shares),
        )


def nonzero_terms(coef: Coefficients) -> tuple[tuple[str, float], ...]:
    """The non-zero (feature, coefficient) pairs of a model."""
    return tuple((f, b) for f in Coefficients.model_fields if (b := getattr(coef, f)))


def linear_predictor(
    terms: tuple[tuple[str, float], ...], feats: dict[str, np.ndarray]
) -> np.ndarray:
    """Sum of coefficient x feature."""
    out = np.zeros(len(next(iter(feats.values()))))
    for name, beta in terms:
        out += beta * feats[name]
    return out


# --------------------------------------------------------------------------- population
def _truncnorm(u1: np.ndarray, mean, sd, low, high) -> np.ndarray:
    a, b = ndtr((low - mean) / sd), ndtr((high - mean) / sd)
    return mean + sd * ndtri(a + (b - a) * u1)


def new_persons(
    n: int,
    *,
    rates: Rates,
    rng: np.random.Generator,
    first_pid: int,
    regions: tuple[int, ...],
    entry_day: np.ndarray | None,
) -> State:
    """Draw ``n`` persons: the initial population (``entry_day`` None) or new entrants.

    Initial persons are in OST or out of treatment after earlier OST at the start of week
    0; new entrants are never treated and start OST on ``entry_day``, simulated from
    ``pre_entry_years`` before it.
    """
    pop = rates.spec.population
    s = empty_state(n)
    c = s.cols
    c["pid"][:] = first_pid + np.arange(n)
    c["key"][:] = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    shares = np.array([pop.region_shares.get(REGIONS[r], 0.0) for r in regions])
    c["region"][:] = np.asarray(regions, dtype=np.int8)[
        np.minimum(
            np.searchsorted(np.cumsum(shares / shares.sum()), rng.random(n), "right"),
            len(regions) - 1,
        )
    ]
    c["female"][:] = rng.random(n) < pop.women_share
    severity = rng.standard_normal(n)
    c["severity"][:] = severity
    k, zero = pop.crime_frailty_shape, pop.non_offender_share
    z = rng.gamma(k, 1.0 / (k * (1 - zero)), n)
    c["frailty"][:] = np.where(rng.random(n) < zero, 0.0, z)
    c["form_offset"][:] = rng.integers(0, 365, n)
    start = rates.t0
    if entry_day is None:
        age = _truncnorm(rng.random(n), pop.initial_age_mean, pop.age_sd, pop.age_min, pop.age_max)
        ref = np.full(n, start, dtype=np.int64)
        c["enter_week"][:] = 0
    else:
        age = _truncnorm(rng.random(n), pop.entry_age_mean, pop.age_sd, pop.age_min, pop.age_max)
        ref = entry_day.astype(np.int64)
        first = ref - round(pop.pre_entry_years * DAYS_PER_YEAR)
        c["enter_week"][:] = np.maximum((first - start) // WEEK, 0)
    c["birth_day"][:] = ref - np.floor(age * DAYS_PER_YEAR).astype(np.int64)
    onset = (
        pop.onset_age_mean
        + pop.onset_severity * severity
        + pop.onset_age_sd * rng.standard_normal(n)
    )
    onset = np.clip(onset, 12.0, age - 0.5)
    c["onset_day"][:] = c["birth_day"] + np.floor(onset * DAYS_PER_YEAR).astype(np.int64)
    c["psychiatric_dx"][:] = rng.random(n) < pop.psychiatric_dx_prevalence
    treated = _treatment_at_start(c, n, rates=rates, rng=rng, start=start, entry=entry_day)
    for name in STATES:
        proc = pop.states[name]
        p = np.where(treated, proc.prevalence_in_treatment, proc.prevalence_out_of_treatment)
        c[name][:] = rng.random(n) < p
    return s


def _treatment_at_start(
    c: dict[str, np.ndarray],
    n: int,
    *,
    rates: Rates,
    rng: np.random.Generator,
    start: int,
    entry: np.ndarray | None,
) -> np.ndarray:
    """Treatment when first simulated: initial persons in OST or out of it after earlier
    OST; new entrants never treated, entering OST on ``entry``. Returns who is treated."""
    tr, pop = rates.spec.treatment, rates.spec.population
    if entry is None:
        n_in = round(
            n * pop.initial_in_ost / max(pop.initial_in_ost + pop.initial_out_of_treatment, 1)
        )
        in_ost = np.arange(n) < n_in
        rng.shuffle(in_ost)
        c["tx"][:] = np.where(in_ost, IN_OST, OUT)
        c["med"][:] = choose_medication(rng.random(n), rates.mix)
        elapsed = 1 + np.floor(rng.exponential(4.0 * DAYS_PER_YEAR, n)).astype(np.int64)
        c["ep_start"][:] = np.where(in_ost, start - elapsed, NONE)
        c["regime_start"][:] = c["ep_start"]
        gap = tr.bridged_gap_days + 1 + np.floor(rng.exponential(tr.reentry_mean_days, n))
        c["next_day"][:] = np.where(in_ost, NEVER, start + np.floor(rng.random(n) * gap)).astype(
            np.int64
        )
        c["next_med"][:] = c["med"]
        c["next_new_regime"][:] = True
        c["last_exit"][:] = np.where(in_ost, NONE, start - 1)
        c["ever_treated"][:] = True
        c["alive"][:] = True
        treated = in_ost
    else:
        c["tx"][:] = OUT
        c["next_day"][:] = entry
        c["next_med"][:] = choose_medication(rng.random(n), rates.mix)
        c["next_new_regime"][:] = True
        treated = np.zeros(n, dtype=bool)
    return treated
