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
of the same person (not initiating HAT now, never initiating) share every random number
after the index date: common random numbers for the truth (``synthetic/history_truth.py``).

Days are integers counted from 1970-01-01; week ``k`` covers days ``t0 + 7k`` to
``t0 + 7k + 6``. The state, parameters and population are in :mod:`synthetic.history_state`,
the random numbers in :mod:`synthetic.history_random`, the event handlers in
:mod:`synthetic.history_events`; their names used elsewhere are importable from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.data.contract import DAYS_PER_YEAR, REGIONS
from synthetic.history_events import WeekEvents
from synthetic.history_random import (
    S_CHARGES,
    S_KIND,
    S_MOVE,
    S_OVERDOSES,
    S_TIME,
    dense_uniforms,
    fresh_base,
    uniform_at,
    week_base,
)
from synthetic.history_spec import HistoryScenario
from synthetic.history_state import (
    CHARGE_WEEKS,
    HAT_MED,
    IN_HAT,
    IN_OST,
    NEVER,
    NONE,
    OST_WEEKS,
    OUT,
    STATES,
    WEEK,
    Log,
    Rates,
    State,
    empty_state,
    linear_predictor,
    new_persons,
    nonzero_terms,
)

__all__ = [
    "HAT_MED",
    "NEVER",
    "WEEK",
    "Rates",
    "Simulation",
    "Snapshot",
    "State",
    "simulate_population",
    "week_base",
]


# --------------------------------------------------------------------------- one week
@dataclass(frozen=True)
class Snapshot:
    """States of persons starting HAT, at the start of their index week (for replays)."""

    state: State
    week: np.ndarray
    day: np.ndarray


class Simulation(WeekEvents):
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
            m: nonzero_terms(coef.model_copy(update=dict.fromkeys(fixed, 0.0)))
            for m, coef in models.items()
        }
        self.hat_static = sum(
            (getattr(spec.hat.coefficients, f) * v for f, v in fixed.items()),
            np.zeros(len(state)),
        )
        self.hat_dynamic = nonzero_terms(
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
        # per person, an upper bound of the week's switching probabilities summed in the
        # order of _transitions: persons above it this week switch nothing
        bound = np.zeros(len(state))
        for _, off, on, mult in self.moves:
            p_on = [-np.expm1(-(x * mult) * WEEK) for x in on]
            bound = bound + np.maximum(-np.expm1(-off * WEEK), np.maximum(*p_on))
        self.move_bound = bound + self.psych_onset

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
        """Simulate week ``k`` for every person present."""
        r, c = self.r, self.s.cols
        a = r.t0 + WEEK * k
        i = self._present(k)
        if i.size == 0:
            return
        t_from = c["t_from"][i]
        fresh = t_from >= 0  # a replay's first, partial week: fresh numbers
        t_from = np.maximum(t_from, 0.0)
        if fresh.any():
            c["t_from"][i[fresh]] = -1.0
        reentry = self._reenter(i, a)
        tx = c["tx"][i]
        in_tx = tx != OUT
        feats = self._features(i, a)
        base = week_base(c["key"][i], k)
        if fresh.any():
            base[fresh] = fresh_base(base[fresh])
        u = dense_uniforms(base)
        rate = self._hazards(i, k, a, tx, reentry, feats)

        # --- the week's first event: time from the total hazard, kind from the shares
        total = rate["death"] + self.k_emig + rate["leave"] + rate["hat"] + rate["prison"]
        with np.errstate(divide="ignore"):
            t_ev = t_from - np.log1p(-u[:, S_TIME]) / total
        kind, day = self._first_event(k, t_ev, rate, base, reentry)
        end_day = np.where((kind == 0) | (kind == 1), day, NEVER)  # death or emigration
        start_day = np.where(reentry > NONE, reentry, a + np.ceil(t_from).astype(np.int64))
        if self.keep_snapshots:
            starters = np.flatnonzero(kind == 3)
            if starters.size:
                self.snaps.append(
                    (self.s.take(i[starters]), np.full(starters.size, k), day[starters])
                )
        self._deaths(i, k, kind, day, base, tx)
        self._exits(i, k, kind == 2, day, base)
        self._hat_starts(i, k, kind == 3, day, base)
        self._prison(i, k, kind == 4, day, base)
        self._counts(i, k, a, rate, u, base, (tx, kind, day, start_day, end_day))
        # --- status forms (state at the start of the week), then the states move on
        self._forms(i, k, a, in_tx, end_day, base)
        self._transitions(i, u[:, S_MOVE])

    def _present(self, k: int) -> np.ndarray:
        """Persons present in week ``k`` (those entering this week join)."""
        c = self.s.cols
        hi = int(np.searchsorted(c["enter_week"], k, side="right"))  # sorted by enter_week
        if hi > self.entered:
            new = np.arange(self.entered, hi)
            c["alive"][new] = ~c["gone"][new]
            self.entered = hi
        return np.flatnonzero(c["alive"][:hi])

    def _reenter(self, i: np.ndarray, a: int) -> np.ndarray:
        """Apply the scheduled (re-)entries falling in this week (or overdue); their days."""
        c = self.s.cols
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
        return reentry

    def _hazards(
        self, i: np.ndarray, k: int, a: int, tx: np.ndarray, reentry: np.ndarray, feats: dict
    ) -> dict[str, np.ndarray]:
        """Hazards per day of each event, and the rates of charges and overdoses."""
        spec, c = self.r.spec, self.s.cols
        in_tx, hat = tx != OUT, tx == IN_HAT
        lp = {
            m: self.static[m][i] + linear_predictor(terms, feats)
            for m, terms in self.dynamic.items()
        }
        mo, tr, ef, od = spec.mortality, spec.treatment, spec.effects, spec.overdose
        # the effects of HAT act on the few in HAT only (x 1 elsewhere: the same numbers)
        h = np.flatnonzero(hat)
        mu = np.where(in_tx, self.k_mort[1], self.k_mort[0]) * np.exp(lp["mortality"])
        mu[h] *= ef.hr_mortality
        if mo.leaving_spike_multiplier != 1:
            spike = ~in_tx & (a - c["last_exit"][i] < mo.leaving_spike_days)
            mu *= np.where(spike, mo.leaving_spike_multiplier, 1.0)
        since = np.maximum(a - c["regime_start"][i], 0) / DAYS_PER_YEAR
        leave = tr.exit_late_per_year + tr.exit_early_excess_per_year * np.exp(
            -since / tr.exit_early_years
        )
        risk = np.exp(lp["treatment"]) / DAYS_PER_YEAR
        leave *= risk
        leave = np.where(in_tx, leave, 0.0)
        if h.size:
            leave[h] *= ef.hr_discontinuation
            # leaving HAT for reasons of HAT itself (time since the HAT episode began)
            lh = spec.leaving_hat
            in_hat = np.maximum(a - c["ep_start"][i[h]], 0) / DAYS_PER_YEAR
            extra = lh.late_per_year + lh.early_per_year * np.exp(-in_hat / lh.early_years)
            leave[h] += extra * risk[h]
        crime = np.where(in_tx, self.k_crime[1], self.k_crime[0]) * c["frailty"][i]
        crime *= np.exp(lp["crime"])
        crime[h] *= ef.irr_crime
        in_prison = c["prison_until"][i] > a
        odr = np.where(in_tx, self.k_od[1], self.k_od[0]) * np.exp(lp["overdose"])
        odr[h] *= od.hat_rate_ratio
        return {
            "death": mu,
            "leave": leave,
            "hat": self._hat_hazard(i, k, a, tx, in_prison, reentry, feats),
            "prison": np.where(in_prison, 0.0, spec.prison.stays_per_charge * crime),
            "crime": crime,
            "overdose": odr,
        }

    def _first_event(
        self, k: int, t_ev: np.ndarray, rate: dict, base: np.ndarray, reentry: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Kind (0 death, 1 emigration, 2 leaving, 3 HAT start, 4 prison; -1 none) and day."""
        r = self.r
        kind = np.full(t_ev.size, -1, dtype=np.int64)
        day = np.full(t_ev.size, NEVER, dtype=np.int64)
        e = np.flatnonzero(t_ev < WEEK)
        if e.size:
            de = np.maximum(r.t0 + WEEK * k + np.floor(t_ev[e]).astype(np.int64), reentry[e])
            ok = de <= r.extract_day
            e, de = e[ok], de[ok]
            cum = np.cumsum(
                np.stack(
                    [
                        rate["death"][e],
                        np.full(e.size, self.k_emig),
                        rate["leave"][e],
                        rate["hat"][e],
                        rate["prison"][e],
                    ]
                ),
                axis=0,
            )
            uk = uniform_at(base[e], S_KIND) * cum[-1]
            kind[e] = np.minimum((uk[None, :] >= cum).sum(axis=0), 4)
            day[e] = de
        return kind, day

    def _counts(
        self, i: np.ndarray, k: int, a: int, rate: dict, u: np.ndarray, base: np.ndarray, week
    ) -> None:
        """Charges and overdoses over the days at risk; days in OST; the two-year charges."""
        r, c = self.r, self.s.cols
        tx0, kind, day, start_day, end_day = week
        week_end = np.minimum(np.minimum(end_day, a + WEEK), r.extract_day + 1)
        at_risk = np.maximum(week_end - start_day, 0)
        # days in prison this week: only those with a stay ending after the week's start
        p = np.flatnonzero(c["prison_until"][i] > start_day)
        if p.size:
            lo = np.maximum(c["prison_from"][i[p]], start_day[p])
            hi_p = np.minimum(c["prison_until"][i[p]], week_end[p])
            at_risk[p] -= np.maximum(hi_p - lo, 0)
        n_ch = self._events(
            "charges", i, k, base, rate["crime"] * at_risk, u[:, S_CHARGES], start_day, week_end
        )
        self._events(
            "overdoses",
            i,
            k,
            base,
            rate["overdose"] * at_risk,
            u[:, S_OVERDOSES],
            start_day,
            week_end,
        )
        in_ost_from = np.where(tx0 == IN_OST, start_day, NEVER)
        ost_end = np.where((kind >= 0) & (kind <= 3), day, a + WEEK)
        ost_days = np.clip(ost_end - in_ost_from, 0, WEEK)
        sb, ob = k % CHARGE_WEEKS, k % OST_WEEKS
        # the rings: only persons whose value changes are written
        charge_row, ost_row = self.s.charge_buf[sb], self.s.ost_buf[ob]
        old = charge_row[i]
        m = np.flatnonzero((n_ch != 0) | (old != 0))
        c["charges_2y"][i[m]] += n_ch[m] - old[m]
        charge_row[i[m]] = np.minimum(n_ch[m], 255)
        old = ost_row[i]
        m = np.flatnonzero(ost_days != old)
        c["ost_days_1y"][i[m]] += ost_days[m] - old[m]
        ost_row[i[m]] = ost_days[m]

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
