"""Calendar-time simulation of the national OST population, week by week (contract version 2).

One loop over calendar weeks; each week is one vectorised step over every person present
(no loop over persons). In a week a person has at most one *event* of the competing
hazards (death, emigration, leaving treatment, starting HAT, entering prison; the first of
them, by one exponential draw against their sum, its kind by a second uniform); scheduled
re-entries after an interruption are applied at the start of the week they fall in.
Charges and non-fatal overdoses are Poisson counts over the week's days at risk, the
time-varying states (injecting, homelessness, benzodiazepine use, psychiatric diagnosis)
switch at the end of the week, and yearly status forms record them.

Random numbers are *counter-based*: every uniform is a hash of (person key, week, slot),
so a person's numbers do not depend on who else is simulated or in what order. A course
can therefore be replayed from any week's state, alone or with others, and two versions
of the same person (HAT now, or not now) share every random number after the index date:
common random numbers for the truth (``synthetic/history_truth.py``).

Days are integers counted from 1970-01-01; week ``k`` covers days ``t0 + 7k`` to
``t0 + 7k + 6``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from analysis.data.contract import DAYS_PER_YEAR, MEDICATIONS, OFFENCES, REGIONS
from synthetic.history_spec import Coefficients, HistoryScenario
from synthetic.population import day_number

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

# slots of the per-person, per-week uniforms (dense: every person, every week)
S_TIME, S_CHARGES, S_OVERDOSES, S_MOVE = 0, 1, 2, 3
N_DENSE = 4
# sparse slots (only persons with the event)
S_KIND, S_CAUSE, S_EXIT_KIND, S_GAP, S_MED, S_SWITCH, S_SWITCH_GAP, S_PRISON = range(10, 18)
S_FORM, S_ITEMS = 20, 21  # items 21..25
S_CHARGE_DAY, S_OFFENCE, S_OVERDOSE_DAY = 100, 300, 500  # + j-th event of the week

_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLD, _SLOT = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD1B54A32D192ED03)
_FRESH = np.uint64(0x5851F42D4C957F2D)  # another root for a replay's first, partial week


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


def _to_unit(z: np.ndarray) -> np.ndarray:
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def week_base(key: np.ndarray, week: int) -> np.ndarray:
    """Hash of (key, week), the root of a person's numbers in that week."""
    return _mix(key ^ _mix(np.full(1, week, dtype=np.uint64) * _GOLD))


def dense_uniforms(base: np.ndarray, n_slots: int = N_DENSE) -> np.ndarray:
    """Uniforms in [0, 1) for slots 0..n_slots-1, shape (n, n_slots)."""
    slots = _mix(np.arange(1, n_slots + 1, dtype=np.uint64) * _SLOT)
    return _to_unit(_mix(base[:, None] ^ slots[None, :]))


def uniform_at(base: np.ndarray, slot: np.ndarray | int) -> np.ndarray:
    """One uniform per element: slot ``slot`` of the week root ``base``."""
    s = _mix((np.atleast_1d(np.asarray(slot, dtype=np.uint64)) + np.uint64(1)) * _SLOT)
    return _to_unit(_mix(base ^ s))


def poisson_from_uniform(u: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Poisson counts by inversion of the CDF at ``u`` (vectorised, small means)."""
    k = np.zeros(u.shape, dtype=np.int64)
    p = np.exp(-mean)
    idx = np.flatnonzero(u >= p)
    c, pj, m, uu = p[idx], p[idx], mean[idx], u[idx]
    j = 0
    while idx.size:
        j += 1
        pj = pj * m / j
        c = c + pj
        k[idx] += 1
        go = uu >= c
        idx, c, pj, m, uu = idx[go], c[go], pj[go], m[go], uu[go]
        if j > 200:  # pragma: no cover - means here are far below this
            break
    return k


def choose_medication(u: np.ndarray, shares: dict[str, float]) -> np.ndarray:
    names = list(shares)
    cum = np.cumsum([shares[k] for k in names])
    codes = np.array([MEDICATIONS.index(k) for k in names], dtype=np.int8)
    return codes[np.minimum(np.searchsorted(cum, u, side="right"), len(codes) - 1)]


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
    """Struct of arrays: one row per person (see :data:`FIELDS`) and two week buffers."""

    cols: dict[str, np.ndarray]
    charge_buf: np.ndarray  # (n, CHARGE_WEEKS) charges per week
    ost_buf: np.ndarray  # (n, OST_WEEKS) days in OST per week

    def __len__(self) -> int:
        return len(self.cols["pid"])

    def take(self, idx: np.ndarray) -> State:
        return State(
            {k: v[idx].copy() for k, v in self.cols.items()},
            self.charge_buf[idx].copy(),
            self.ost_buf[idx].copy(),
        )

    @staticmethod
    def concat(parts: list[State]) -> State:
        return State(
            {k: np.concatenate([p.cols[k] for p in parts]) for k in FIELDS},
            np.concatenate([p.charge_buf for p in parts]),
            np.concatenate([p.ost_buf for p in parts]),
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
        np.zeros((n, CHARGE_WEEKS), dtype=np.uint8),
        np.zeros((n, OST_WEEKS), dtype=np.uint8),
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


def _terms(coef: Coefficients) -> tuple[tuple[str, float], ...]:
    """The non-zero (feature, coefficient) pairs of a model."""
    return tuple((f, b) for f in Coefficients.model_fields if (b := getattr(coef, f)))


def _lp(terms: tuple[tuple[str, float], ...], feats: dict[str, np.ndarray]) -> np.ndarray:
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
    spec, pop = rates.spec, rates.spec.population
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
    tr = spec.treatment
    if entry_day is None:
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
        c["next_day"][:] = ref
        c["next_med"][:] = choose_medication(rng.random(n), rates.mix)
        c["next_new_regime"][:] = True
        treated = np.zeros(n, dtype=bool)
    for name in STATES:
        proc = pop.states[name]
        p = np.where(treated, proc.prevalence_in_treatment, proc.prevalence_out_of_treatment)
        c[name][:] = rng.random(n) < p
    return s


# --------------------------------------------------------------------------- one week
@dataclass(frozen=True)
class Snapshot:
    """States of persons starting HAT, at the start of their index week (for replays)."""

    state: State
    week: np.ndarray
    day: np.ndarray


class Simulation:
    """The weekly loop over a population (data, or a replay of persons from snapshots).

    Parameters
    ----------
    rates : Rates
    state : State
        Persons, sorted by ``enter_week``.
    scale : float
        Multiple of the national population (HAT capacity scales with it).
    weights : ndarray, optional
        Sums of HAT weights by (week, site, pool) to use instead of the population's own
        (replays use those of the population they came from).
    snapshots : bool
        Keep the state of each person starting HAT, at the start of the week.
    """

    def __init__(
        self,
        rates: Rates,
        state: State,
        *,
        scale: float,
        weights: np.ndarray | None = None,
        snapshots: bool = False,
    ) -> None:
        self.r = rates
        self.s = state
        self.scale = scale
        self.log = Log()
        self.fixed_weights = weights
        self.weights = np.zeros((rates.n_weeks, len(rates.site_region), 2))
        self.keep_snapshots = snapshots
        self.snaps: list[tuple[State, np.ndarray, np.ndarray]] = []
        self.entered = 0
        spec = rates.spec
        models = {
            "mortality": spec.mortality.coefficients,
            "treatment": spec.treatment.coefficients,
            "crime": spec.crime.coefficients,
            "overdose": spec.overdose.coefficients,
        }
        # time-fixed part of each linear predictor, once per person
        c = state.cols
        fixed = {
            "female": c["female"].astype(float),
            "severity": c["severity"],
            "frailty": np.log((1 + c["frailty"]) / 2),
        }
        self.static = {
            m: sum((getattr(coef, f) * v for f, v in fixed.items()), np.zeros(len(state)))
            for m, coef in models.items()
        }
        self.dynamic = {
            m: _terms(coef.model_copy(update=dict.fromkeys(fixed, 0.0)))
            for m, coef in models.items()
        }
        self.hat_static = sum(
            (getattr(spec.hat.coefficients, f) * v for f, v in fixed.items()),
            np.zeros(len(state)),
        )
        self.hat_dynamic = _terms(
            spec.hat.coefficients.model_copy(update=dict.fromkeys(fixed, 0.0))
        )
        day = 1 / DAYS_PER_YEAR
        mo, cr, od = spec.mortality, spec.crime, spec.overdose
        # (out of treatment, in treatment) base rates per day
        self.k_mort = (
            mo.out_of_treatment_per_1000py / 1000 * day,
            mo.in_treatment_per_1000py / 1000 * day,
        )
        self.k_crime = (cr.out_of_treatment_per_year * day, cr.in_treatment_per_year * day)
        self.k_od = (od.out_of_treatment_per_year * day, od.in_treatment_per_year * day)
        self.k_emig = spec.emigration.per_1000py / 1000 * day
        # transitions of the time-varying states: off-rate, and on-rates out / in treatment
        # (x the person's severity multiplier), as probabilities per week
        pop = spec.population
        self.moves = []
        for name in STATES:
            proc = pop.states[name]
            off = 1 / (proc.mean_years_on * DAYS_PER_YEAR)
            on = [
                p / (1 - p) * off
                for p in (proc.prevalence_out_of_treatment, proc.prevalence_in_treatment)
            ]
            mult = np.exp(proc.severity_loading * c["severity"] - proc.severity_loading**2 / 2)
            self.moves.append((name, off, on, mult))
        self.psych_onset = -np.expm1(-pop.psychiatric_dx_onset_per_year * day * WEEK)

    # ------------------------------------------------------------------ features
    def _features(self, i: np.ndarray, a: int) -> dict[str, np.ndarray]:
        c = self.s.cols
        age = (a - c["birth_day"][i]) / DAYS_PER_YEAR
        return {
            "age_per_10y": (age - 45.0) / 10.0,
            "injecting": c["injecting"][i],
            "homeless": c["homeless"][i],
            "benzodiazepine_use": c["benzodiazepine_use"][i],
            "psychiatric_dx": c["psychiatric_dx"][i],
            "recent_overdose": a - c["last_overdose"][i] < 730,
            "log1p_charges_2y": np.log1p(c["charges_2y"][i]),
            "share_out_of_ost_last_year": 1 - c["ost_days_1y"][i] / (OST_WEEKS * WEEK),
        }

    def _recorded(self, i: np.ndarray, a: int, feats: dict[str, np.ndarray]) -> dict:
        """The features as the clinic knows them: the latest form (within 730 days)."""
        c = self.s.cols
        recent = (a - c["form_day"][i]) < 730
        out = dict(feats)
        for name in ("injecting", "homeless", "psychiatric_dx", "benzodiazepine_use"):
            out[name] = recent & (c[f"f_{name}"][i] == 1)
        return out

    # ------------------------------------------------------------------ loop
    def run(self, first_week: int = 0, last_week: int | None = None) -> Simulation:
        last = self.r.n_weeks - 1 if last_week is None else last_week
        for k in range(first_week, last + 1):
            self.step(k)
        self.close()
        return self

    def close(self) -> None:
        """Write the episodes still open at the end of the run (end NEVER = open)."""
        c = self.s.cols
        i = np.flatnonzero(c["alive"] & (c["tx"] != OUT))
        self.log.add(
            "episodes",
            self.r.n_weeks,
            pid=c["pid"][i],
            start=c["ep_start"][i],
            end=np.full(i.size, NEVER, dtype=np.int64),
            med=c["med"][i],
        )
        # a re-entry already scheduled on or before the extract date starts an open episode
        j = np.flatnonzero(c["alive"] & (c["tx"] == OUT) & (c["next_day"] <= self.r.extract_day))
        self.log.add(
            "episodes",
            self.r.n_weeks,
            pid=c["pid"][j],
            start=c["next_day"][j],
            end=np.full(j.size, NEVER, dtype=np.int64),
            med=c["next_med"][j],
        )

    def step(self, k: int) -> None:
        r, spec, c = self.r, self.r.spec, self.s.cols
        a = r.t0 + WEEK * k
        # --- persons entering the simulation this week
        n = len(self.s)
        hi = self.entered
        while hi < n and c["enter_week"][hi] <= k:
            hi += 1
        if hi > self.entered:
            new = np.arange(self.entered, hi)
            c["alive"][new] = ~c["gone"][new]
            self.entered = hi
        i = np.flatnonzero(c["alive"][:hi])
        if i.size == 0:
            return
        fresh = c["t_from"][i] >= 0  # a replay's first, partial week: fresh numbers
        t_from = np.maximum(c["t_from"][i], 0.0)
        c["t_from"][i] = -1.0

        # --- scheduled (re-)entries falling in this week (or overdue)
        due = (c["tx"][i] == OUT) & (c["next_day"][i] < a + WEEK)
        reentry = np.full(i.size, NONE, dtype=np.int64)
        if due.any():
            d = i[due]
            reentry[due] = c["next_day"][d]
            c["tx"][d] = np.where(c["next_med"][d] == HAT_MED, IN_HAT, IN_OST)
            c["med"][d] = c["next_med"][d]
            c["ep_start"][d] = c["next_day"][d]
            c["regime_start"][d] = np.where(
                c["next_new_regime"][d], c["next_day"][d], c["regime_start"][d]
            )
            c["ever_treated"][d] = True
            c["next_day"][d] = NEVER

        tx = c["tx"][i]
        in_tx, hat = tx != OUT, tx == IN_HAT
        feats = self._features(i, a)
        lp = {m: self.static[m][i] + _lp(terms, feats) for m, terms in self.dynamic.items()}
        base = week_base(c["key"][i], k)
        if fresh.any():
            base[fresh] = _mix(base[fresh] ^ _FRESH)
        u = dense_uniforms(base)

        # --- hazards per day
        mo, tr, ef, od = spec.mortality, spec.treatment, spec.effects, spec.overdose
        mu = np.where(in_tx, self.k_mort[1], self.k_mort[0]) * np.exp(lp["mortality"])
        mu *= np.where(hat, ef.hr_mortality, 1.0)
        if mo.leaving_spike_multiplier != 1:
            spike = ~in_tx & (a - c["last_exit"][i] < mo.leaving_spike_days)
            mu *= np.where(spike, mo.leaving_spike_multiplier, 1.0)
        since = np.maximum(a - c["regime_start"][i], 0) / DAYS_PER_YEAR
        leave = tr.exit_late_per_year + tr.exit_early_excess_per_year * np.exp(
            -since / tr.exit_early_years
        )
        leave *= np.exp(lp["treatment"]) / DAYS_PER_YEAR
        leave *= np.where(hat, ef.hr_discontinuation, np.where(in_tx, 1.0, 0.0))
        crime = np.where(in_tx, self.k_crime[1], self.k_crime[0]) * c["frailty"][i]
        crime *= np.exp(lp["crime"])
        crime *= np.where(hat, ef.irr_crime, 1.0)
        in_prison = c["prison_until"][i] > a
        prison = np.where(in_prison, 0.0, spec.prison.stays_per_charge * crime)
        odr = np.where(in_tx, self.k_od[1], self.k_od[0]) * np.exp(lp["overdose"])
        odr *= np.where(hat, od.hat_rate_ratio, 1.0)
        hat_h = self._hat_hazard(i, k, a, tx, in_prison, reentry, feats)

        # --- the week's first event: time from the total hazard, kind from the shares
        total = mu + self.k_emig + leave + hat_h + prison
        with np.errstate(divide="ignore"):
            t_ev = t_from - np.log1p(-u[:, S_TIME]) / total
        has = t_ev < WEEK
        kind = np.full(i.size, -1, dtype=np.int64)
        day = np.full(i.size, NEVER, dtype=np.int64)
        e = np.flatnonzero(has)
        if e.size:
            de = np.maximum(r.t0 + WEEK * k + np.floor(t_ev[e]).astype(np.int64), reentry[e])
            ok = de <= r.extract_day
            e, de = e[ok], de[ok]
            cum = np.cumsum(
                np.stack([mu[e], np.full(e.size, self.k_emig), leave[e], hat_h[e], prison[e]]),
                axis=0,
            )
            uk = uniform_at(base[e], S_KIND) * cum[-1]
            kind[e] = np.minimum((uk[None, :] >= cum).sum(axis=0), 4)
            day[e] = de
        end_day = np.where((kind == 0) | (kind == 1), day, NEVER)  # death or emigration
        start_day = np.where(reentry > NONE, reentry, a + np.ceil(t_from).astype(np.int64))
        tx0 = tx

        if self.keep_snapshots:
            starters = np.flatnonzero(kind == 3)
            if starters.size:
                self.snaps.append(
                    (self.s.take(i[starters]), np.full(starters.size, k), day[starters])
                )

        self._deaths(i, k, kind, day, base, tx0)
        self._exits(i, k, kind == 2, day, base)
        self._hat_starts(i, k, kind == 3, day, base)
        self._prison(i, k, kind == 4, day, base)

        # --- charges and overdoses over the days at risk
        week_end = np.minimum(np.minimum(end_day, a + WEEK), r.extract_day + 1)
        span = np.maximum(week_end - start_day, 0)
        lo = np.maximum(c["prison_from"][i], start_day)
        hi_p = np.minimum(c["prison_until"][i], week_end)
        at_risk = span - np.maximum(hi_p - lo, 0)
        n_ch = self._events(
            "charges", i, k, base, crime * at_risk, u[:, S_CHARGES], start_day, week_end
        )
        self._events("overdoses", i, k, base, odr * at_risk, u[:, S_OVERDOSES], start_day, week_end)

        # --- days in OST this week and the two-year charge count
        in_ost_from = np.where(tx0 == IN_OST, start_day, NEVER)
        ost_end = np.where((kind >= 0) & (kind <= 3), day, a + WEEK)
        ost_days = np.clip(ost_end - in_ost_from, 0, WEEK)
        sb, ob = k % CHARGE_WEEKS, k % OST_WEEKS
        c["charges_2y"][i] += n_ch - self.s.charge_buf[i, sb]
        self.s.charge_buf[i, sb] = np.minimum(n_ch, 255)
        c["ost_days_1y"][i] += ost_days - self.s.ost_buf[i, ob]
        self.s.ost_buf[i, ob] = ost_days

        # --- status forms (state at the start of the week), then the states move on
        self._forms(i, k, a, in_tx, end_day, base)
        self._transitions(i, u[:, S_MOVE])

    # ------------------------------------------------------------------ pieces
    def _hat_hazard(self, i, k, a, tx, in_prison, reentry, feats) -> np.ndarray:
        r, spec, c = self.r, self.r.spec, self.s.cols
        h = np.zeros(i.size)
        open_ = a >= r.site_open
        if not open_.any():
            return h
        age = (a - c["birth_day"][i]) / DAYS_PER_YEAR
        elig = (
            ~c["ever_hat"][i]
            & ~in_prison
            & (age >= spec.hat.min_age)
            & (reentry == NONE)
            & (c["hat_policy"][i] == 0)
            & (c["no_hat_week"][i] != k)
        )
        pool = np.where(tx == IN_OST, 0, 1)
        elig &= np.where(
            tx == IN_OST,
            c["ep_start"][i] < a,
            (tx == OUT) & c["ever_treated"][i] & (c["next_day"][i] >= a + WEEK),
        )
        w = np.exp(self.hat_static[i] + _lp(self.hat_dynamic, self._recorded(i, a, feats)))
        for s, region in enumerate(r.site_region):
            if not open_[s]:
                continue
            at = elig & (c["region"][i] == region)
            for p in (0, 1):
                m = at & (pool == p)
                total = (
                    self.fixed_weights[k, s, p]
                    if self.fixed_weights is not None
                    else float(w[m].sum())
                )
                self.weights[k, s, p] = total
                if total > 0:
                    h[m] = self.scale * r.site_rate[s, p] * w[m] / total
        return h

    def _deaths(self, i, k, kind, day, base, tx0) -> None:
        c, mo, log = self.s.cols, self.r.spec.mortality, self.log
        for which, table in ((0, "deaths"), (1, "emigrations")):
            m = kind == which
            if not m.any():
                continue
            j, dd = i[m], day[m]
            treated = c["tx"][j] != OUT
            log.add(
                "episodes",
                k,
                pid=c["pid"][j][treated],
                start=c["ep_start"][j][treated],
                end=dd[treated],
                med=c["med"][j][treated],
            )
            if table == "deaths":
                share = np.array(
                    [
                        mo.overdose_share_out_of_treatment,
                        mo.overdose_share_in_treatment,
                        min(
                            1.0,
                            mo.overdose_share_in_treatment
                            * self.r.spec.effects.overdose_share_ratio,
                        ),
                    ]
                )
                overdose = uniform_at(base[m], S_CAUSE) < share[tx0[m]]
                log.add("deaths", k, pid=c["pid"][j], day=dd, overdose=overdose)
            else:
                log.add("emigrations", k, pid=c["pid"][j], day=dd)
            c["alive"][j] = False
            c["gone"][j] = True
            c["tx"][j] = OUT

    def _exits(self, i, k, m, day, base) -> None:
        if not m.any():
            return
        c, tr, log = self.s.cols, self.r.spec.treatment, self.log
        j, e, b = i[m], day[m], base[m]
        log.add("episodes", k, pid=c["pid"][j], start=c["ep_start"][j], end=e, med=c["med"][j])
        was_hat = c["tx"][j] == IN_HAT
        uk, ug, um = uniform_at(b, S_EXIT_KIND), uniform_at(b, S_GAP), uniform_at(b, S_MED)
        bridged = tr.bridged_gap_days
        switch = was_hat & (uk < tr.hat_switch_share)
        short = np.where(
            was_hat,
            ~switch
            & (
                uk
                < tr.hat_switch_share + (1 - tr.hat_switch_share) * tr.hat_short_interruption_share
            ),
            uk < tr.short_interruption_share,
        )
        long_gap = bridged + 1 + np.floor(-tr.reentry_mean_days * np.log1p(-ug)).astype(np.int64)
        gap = np.where(
            switch,
            1 + np.floor(ug * tr.switch_gap_max_days).astype(np.int64),
            np.where(short, 1 + np.floor(ug * bridged).astype(np.int64), long_gap),
        )
        back = was_hat & ~switch & ~short & (um < tr.hat_return_share)
        u_mix = np.clip(
            np.where(was_hat, (um - tr.hat_return_share) / (1 - tr.hat_return_share + 1e-12), um),
            0,
            1 - 1e-12,
        )
        nxt = np.where(
            switch,
            METHADONE,
            np.where(
                short, c["med"][j], np.where(back, HAT_MED, choose_medication(u_mix, self.r.mix))
            ),
        )
        c["tx"][j] = OUT
        c["next_day"][j] = e + gap
        c["next_med"][j] = nxt
        c["next_new_regime"][j] = ~short & ~switch
        c["last_exit"][j] = e

    def apply_hat_start(self, j: np.ndarray, k: int, e: np.ndarray, b: np.ndarray) -> None:
        """Start HAT on day ``e`` (persons ``j``): a switch from OST ends the OST episode
        the day before (or 1-5 days before), an entry from outside cancels a scheduled one."""
        c, log = self.s.cols, self.log
        from_ost = c["tx"][j] == IN_OST
        gap = np.where(
            uniform_at(b, S_SWITCH) < self.r.spec.hat.switch_gap_share,
            1 + np.floor(uniform_at(b, S_SWITCH_GAP) * 5).astype(np.int64),
            0,
        )
        o = j[from_ost]
        log.add(
            "episodes",
            k,
            pid=c["pid"][o],
            start=c["ep_start"][o],
            end=np.maximum(c["ep_start"][o], (e - 1 - gap)[from_ost]),
            med=c["med"][o],
        )
        log.add("hat_starts", k, pid=c["pid"][j], day=e, from_tx=c["tx"][j].astype(np.int64))
        # a switch keeps the spell's clock (the exit hazard falls with time in continuous
        # treatment, OST or HAT); an entry from outside starts a new one
        c["regime_start"][j] = np.where(from_ost, c["regime_start"][j], e)
        c["tx"][j] = IN_HAT
        c["med"][j] = HAT_MED
        c["ep_start"][j] = e
        c["next_day"][j] = NEVER
        c["ever_hat"][j] = True
        c["ever_treated"][j] = True

    def _hat_starts(self, i, k, m, day, base) -> None:
        if m.any():
            self.apply_hat_start(i[m], k, day[m], base[m])

    def _prison(self, i, k, m, day, base) -> None:
        if not m.any():
            return
        c, pr = self.s.cols, self.r.spec.prison
        j, e = i[m], day[m]
        z = ndtri(np.clip(uniform_at(base[m], S_PRISON), 1e-12, 1 - 1e-12))
        length = np.clip(np.ceil(np.exp(np.log(pr.median_days) + pr.sigma * z)), 1, pr.max_days)
        c["prison_from"][j] = e
        c["prison_until"][j] = e + length.astype(np.int64)
        self.log.add("prison", k, pid=c["pid"][j], start=e, end=c["prison_until"][j])

    def _events(self, table, i, k, base, mean, u, start_day, week_end) -> np.ndarray:
        """Poisson events over [start_day, week_end) outside prison; returns counts kept."""
        c = self.s.cols
        count = poisson_from_uniform(u, np.maximum(mean, 0.0))
        kept = np.zeros(i.size, dtype=np.int64)
        has = np.flatnonzero(count)
        if has.size == 0:
            return kept
        row = np.repeat(has, count[has])
        first = np.r_[0, np.cumsum(count[has])[:-1]]
        jth = np.arange(row.size) - np.repeat(first, count[has])
        b = base[row]
        slot0 = S_CHARGE_DAY if table == "charges" else S_OVERDOSE_DAY
        width = (week_end - start_day)[row]
        dd = start_day[row] + np.floor(uniform_at(b, slot0 + jth) * width).astype(np.int64)
        p = i[row]
        ok = (width > 0) & ~((dd >= c["prison_from"][p]) & (dd < c["prison_until"][p]))
        row, dd, p, b, jth = row[ok], dd[ok], p[ok], b[ok], jth[ok]
        kept += np.bincount(row, minlength=i.size)
        if table == "charges":
            shares = self.r.spec.crime.offence_shares
            cum = np.cumsum([shares.get(o, 0.0) for o in OFFENCES])
            offence = np.minimum(
                np.searchsorted(cum, uniform_at(b, S_OFFENCE + jth), side="right"),
                len(OFFENCES) - 1,
            )
            self.log.add("charges", k, pid=c["pid"][p], day=dd, offence=offence)
        else:
            self.log.add("overdoses", k, pid=c["pid"][p], day=dd)
            np.maximum.at(c["last_overdose"], p, dd)
        return kept

    def _forms(self, i, k, a, in_tx0, end_day, base) -> None:
        c, asm = self.s.cols, self.r.spec.assessments
        due = a + (c["form_offset"][i] - a) % 365
        m = np.flatnonzero(
            in_tx0 & (due < a + WEEK) & (due < end_day) & (due <= self.r.extract_day)
        )
        m = m[uniform_at(base[m], S_FORM) < asm.form_share]
        if not m.size:
            return
        j, f, b = i[m], due[m], base[m]
        answers = {
            "years_opioid_use": np.round((f - c["onset_day"][j]) / DAYS_PER_YEAR).astype(float),
            **{name: c[name][j].astype(float) for name in FORM_ITEMS[1:]},
        }
        for q, name in enumerate(FORM_ITEMS):
            gone = uniform_at(b, S_ITEMS + q) < asm.missing_answer_share[name]
            answers[name] = np.where(gone, np.nan, answers[name])
        self.log.add("forms", k, pid=c["pid"][j], day=f, **answers)
        c["form_day"][j] = f
        for name in ("injecting", "homeless", "psychiatric_dx", "benzodiazepine_use"):
            v = answers[name]
            c[f"f_{name}"][j] = np.where(np.isnan(v), -1, v).astype(np.int8)

    def _transitions(self, i: np.ndarray, u: np.ndarray) -> None:
        """At most one state switches per week: ``u`` falls in one of the disjoint
        intervals whose lengths are the weekly switching probabilities."""
        c = self.s.cols
        live = c["alive"][i]
        in_tx = (c["tx"][i] != OUT).astype(np.int64)
        lo = np.zeros(i.size)
        for name, off, on, mult in self.moves:
            now = c[name][i]
            rate = np.where(now, off, np.where(in_tx, on[1], on[0]) * mult[i])
            p = -np.expm1(-rate * WEEK)
            flip = live & (u >= lo) & (u < lo + p)
            c[name][i[flip]] = ~now[flip]
            lo = lo + p
        flip = live & (u >= lo) & (u < lo + self.psych_onset)
        c["psychiatric_dx"][i[flip]] = True

    def snapshots(self) -> Snapshot:
        if not self.snaps:
            return Snapshot(empty_state(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
        return Snapshot(
            State.concat([s for s, _, _ in self.snaps]),
            np.concatenate([w for _, w, _ in self.snaps]),
            np.concatenate([d for _, _, d in self.snaps]),
        )


# --------------------------------------------------------------------------- population run
def simulate_population(
    spec: HistoryScenario,
    rng: np.random.Generator,
    *,
    scale: float,
    regions: tuple[int, ...] = tuple(range(len(REGIONS))),
    snapshots: bool = False,
) -> Simulation:
    """Simulate the population of ``regions`` at ``scale`` x the national size.

    The initial population and the new entrants (their entry days uniform over the run)
    are drawn up front; new entrants join the loop ``pre_entry_years`` before entry.
    """
    rates = Rates.of(spec)
    pop = spec.population
    share = sum(pop.region_shares.get(REGIONS[r], 0.0) for r in regions)
    n0 = int(rng.poisson(scale * share * (pop.initial_in_ost + pop.initial_out_of_treatment)))
    first_day = rates.t0
    last_day = rates.extract_day
    years = (last_day - first_day + 1) / DAYS_PER_YEAR
    n1 = int(rng.poisson(scale * share * pop.first_entries_per_year * years))
    initial = new_persons(n0, rates=rates, rng=rng, first_pid=0, regions=regions, entry_day=None)
    entry = np.sort(
        first_day + np.floor(rng.random(n1) * (last_day - first_day + 1)).astype(np.int64)
    )
    entrants = new_persons(n1, rates=rates, rng=rng, first_pid=n0, regions=regions, entry_day=entry)
    state = State.concat([initial, entrants])
    order = np.argsort(state.cols["enter_week"], kind="stable")
    state = state.take(order)
    sim = Simulation(rates, state, scale=scale, snapshots=snapshots)
    return sim.run()
