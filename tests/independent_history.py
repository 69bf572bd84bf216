"""An independent history-extract generator with ITT and per-protocol truths from potential outcomes.

Written from the data contract only (``data-contract.md``, "Version 2: history extract", and the
hand-worked ``example-history``); it imports nothing of ``synthetic/`` or ``analysis/``, so that
agreement between :func:`evaluation.pipeline.run_study` and these truths does not rest on a
reading of the contract shared with the project's own generator.

Data-generating process (a daily grid, vectorised over persons, one loop over days)
-----------------------------------------------------------------------------------
Persons enter OST on dates spread uniformly from 2012 to mid-2025 (``history_start`` is
2020-03-01, so many enter before the registries begin; episodes that overlap ``history_start``
are written with their true start, as in the example). Each person has a sex, a birth year
(age = year of the day minus birth year, the contract's age; a few are 17 at entry), a region of
residence (HAT sites only in ``south-east`` and ``west``, opening 2022-01-01) and four binary traits
(``injecting``, ``homeless``, ``psychiatric_dx``, ``benzodiazepine_use``), fixed over time and
recorded without error on status forms (``assessments``) dated on every entry into treatment and
yearly while in treatment, with ``years_opioid_use``. A non-fatal overdose in the last 730 days
(``overdoses``) is the one time-varying confounder.

States: OST, HAT, a short interruption of OST (3-20 days, so the gap rule keeps the spell: the
hazards are OST's and nothing but the return to OST can happen), out of treatment (a return,
to OST or straight to HAT, only after 44 days: every exit to "out" ends the spell), dead,
emigrated. Each day, in this order: death (hazard by the state of the day before), emigration
(constant hazard, independent of everything), a change of treatment (competing daily
probabilities), then charges (Poisson) and non-fatal overdoses by the state of the day. Hazards
are constant per year and log-linear in age - 40, male, the four traits and recent overdose
(:data:`COEF`); out of treatment raises death, charges and overdoses. From OST: the spell ends
(to out), the OST medication changes (new episode the next day), a short interruption, or -- in
a HAT region from 2022-01-01, never before in HAT -- HAT starts (the OST episode ends the day
before the HAT episode starts). The HAT-start hazard rises with the same traits, recent overdose
and youth, so initiators are sicker: confounding that the covariates on the date measure.
In HAT the hazards of death and of the spell ending and the charge rate are multiplied by the
conditional effects (``effects``); HAT ends back to OST (the spell goes on) or out of treatment
(the spell ends). A HAT start straight from out of treatment happens too (such initiators fail
the contract's rule 4 and are not analysed). An episode open at death is left open or closed on
the death date (half each); at emigration it is closed on the emigration date.

Truth (:func:`potential_outcome_truth`)
---------------------------------------
The population is the analysed initiators (those meeting the contract's rules 1-6 on their first
HAT day d, computed from the simulated states). Each is copied ``replicates`` times and its course
from d is simulated under three strategies with common random numbers (the same uniforms for a
copy in every strategy): "initiate now" (HAT from d, what follows as it naturally would),
"do not initiate now" (OST on d; HAT may start from d + 1 as it naturally would) and "never
initiate" (no HAT from d on). Every copy is followed to death, emigration (re-simulated) or the
extract date, and its outcomes are derived with the contract's rules: mortality; retention, the
time from d to the end of the spell holding d - 1 (HAT switches keep it), discontinued if it
ends before follow-up ends unless follow-up ends by emigration or the extract date fewer than
30 days later; charges from d to the end of follow-up over the days from d to its end. The ITT
truth compares "initiate now" with "do not initiate now", the per-protocol truth with "never
initiate": the marginal hazard ratio is a Cox fit of the strategy on the pooled copies (Efron
ties; lifelines), the rate ratio the ratio of total charges to total person-time. The Monte Carlo
SE on the log scale is the SD over ``batches`` disjoint batches of copies divided by
sqrt(``batches``). That truth is conditional on the extract's own initiators;
:func:`population_truth` computes it in a large population of initiators (batches of
initiators, so its MC SE also counts their sampling), the estimand a study's SE describes;
:data:`POPULATION_TRUTH` holds it for the default effects. ``uptake`` multiplies the HAT-start
hazard (more comparators start HAT later, so ITT and per protocol differ more).
"""

# long: one generator and its truth kept in one file (the contract-only check of issue 15)

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

EPOCH = np.datetime64("1970-01-01", "D")
SIM_START = np.datetime64("2012-01-01", "D")
LAST_ENTRY = np.datetime64("2025-06-30", "D")
HISTORY_START = np.datetime64("2020-03-01", "D")
EXTRACT_DATE = np.datetime64("2025-12-31", "D")
HAT_OPENING = np.datetime64("2022-01-01", "D")
REGIONS = ("south-east", "west", "central", "north")
REGION_P = (0.45, 0.2, 0.2, 0.15)
HAT_REGIONS = ("south-east", "west")
OST_MEDS = ("methadone", "buprenorphine", "morphine")
OST_MED_P = (0.55, 0.40, 0.05)
HAT_MED = 3  # index of diacetylmorphine in MEDICATIONS
MEDICATIONS = (*OST_MEDS, "diacetylmorphine")
TRAITS = ("injecting", "homeless", "psychiatric_dx", "benzodiazepine_use")
TRAIT_P = (0.5, 0.2, 0.3, 0.4)

# states
NOT_ENTERED, OST, HAT, GAP, OUT = 0, 1, 2, 3, 4
#: days out of treatment before a return is possible (gap = return - last day >= 45 > 30)
MIN_OUT = 44
LOOKBACK = 730
RECENT_OST = 7
GAP_RULE = 30
MIN_AGE = 18

#: base hazards per year in OST (at age 40, female, no trait, no recent overdose)
RATES = {
    "death": 0.02,
    "spell_end": 0.12,
    "crime": 0.8,
    "hat_start": 0.015,
    "hat_to_ost": 0.15,
    "return": 0.6,
    "emigration": 0.004,
    "overdose": 0.06,
    "switch": 0.05,
    "interruption": 0.08,
}
#: multipliers out of treatment
OUT_FACTOR = {"death": 2.5, "crime": 1.6, "overdose": 2.0}
#: probability that a return from out of treatment is straight to HAT (where and when possible)
DIRECT_HAT = 0.15
#: log-hazard coefficients of (age - 40, male, injecting, homeless, psychiatric_dx,
#: benzodiazepine_use, overdose in the last 730 days)
COEF = {
    "death": np.array([0.04, 0.2, 0.4, 0.4, 0.2, 0.3, 0.7]),
    "spell_end": np.array([-0.02, 0.1, 0.2, 0.6, 0.3, 0.3, 0.3]),
    "crime": np.array([-0.03, 0.5, 0.3, 0.5, 0.1, 0.3, 0.3]),
    "hat_start": np.array([-0.03, 0.0, 0.8, 0.6, 0.4, 0.3, 0.8]),
    "overdose": np.array([0.0, 0.1, 0.8, 0.5, 0.0, 0.5, 0.0]),
}
_COEF_MATRIX = np.column_stack(list(COEF.values()))
N_UNIFORMS = 7  # death, emigration, move, medication, charges, overdose, interruption length


@dataclass(frozen=True)
class Effects:
    """Conditional effects of being in HAT (multipliers of the OST hazards and charge rate)."""

    death: float = 0.6
    retention: float = 0.5
    crime: float = 0.7


def _p(rate_per_year: np.ndarray | float) -> np.ndarray:
    """Daily probability of an event with a constant hazard per year."""
    return -np.expm1(-np.asarray(rate_per_year) / 365.25)


class _Course:
    """Treatment courses of many rows on the daily grid (persons, or copies of initiators).

    ``start``: each row's first day; ``hat_never``: rows that may never start HAT.
    """

    def __init__(
        self, x: np.ndarray, hat_region: np.ndarray, effects: Effects, uptake: float = 1.0
    ) -> None:
        n = len(x)
        self.uptake = uptake
        self.x = x  # (n, 6): birth year, male, four traits
        self.hat_region = hat_region
        self.eff = effects
        self.state = np.full(n, NOT_ENTERED, np.int8)
        self.alive = np.ones(n, bool)
        self.present = np.ones(n, bool)  # in the country
        self.ever_hat = np.zeros(n, bool)
        self.hat_never = np.zeros(n, bool)
        self.last_od = np.full(n, -(10**6), np.int64)
        self.out_since = np.zeros(n, np.int64)
        self.gap_left = np.zeros(n, np.int64)
        self.last_tx = np.full(n, -(10**6), np.int64)  # last day covered by an episode
        self.med = np.zeros(n, np.int8)

    def lps(self, t: int, year: int) -> None:
        """The day's hazard multipliers exp(x'b) of every row, one column per :data:`COEF`."""
        x = self.x
        z = np.empty((len(x), 7))
        z[:, 0] = year - x[:, 0] - 40
        z[:, 1:6] = x[:, 1:6]
        z[:, 6] = self.last_od >= t - LOOKBACK
        self._day_lp = dict(zip(COEF, np.exp(z @ _COEF_MATRIX).T, strict=True))

    def _lp(self, t: int, year: int, name: str) -> np.ndarray:
        return self._day_lp[name]

    def exits(self, t: int, year: int, u: np.ndarray, movable: np.ndarray):
        """Deaths, emigrations and changes of treatment on day ``t`` of the ``movable`` rows.

        Returns masks (died, emigrated) and the moves as (rows, new state, new medication or
        -1, whether a new episode starts, whether an episode ended the day before).
        """
        self.lps(t, year)
        st = self.state
        out, hat = st == OUT, st == HAT
        h = RATES["death"] * self._lp(t, year, "death")
        h = h * np.where(out, OUT_FACTOR["death"], 1.0) * np.where(hat, self.eff.death, 1.0)
        died = movable & (u[:, 0] < _p(h))
        emig = movable & ~died & (u[:, 1] < _p(RATES["emigration"]))
        live = movable & ~died & ~emig
        m = u[:, 2]
        new = st.copy()
        # OST: spell ends, medication change, interruption, HAT start (last: coupling)
        p_end = _p(RATES["spell_end"] * self._lp(t, year, "spell_end"))
        hat_ok = self.hat_region & (t >= _day(HAT_OPENING)) & ~self.ever_hat & ~self.hat_never
        p_hat = np.where(
            hat_ok, _p(RATES["hat_start"] * self.uptake * self._lp(t, year, "hat_start")), 0.0
        )
        c1 = p_end
        c2 = c1 + _p(RATES["switch"])
        c3 = c2 + _p(RATES["interruption"])
        c4 = c3 + p_hat
        ost = live & (st == OST)
        to_out = ost & (m < c1)
        switch = ost & (m >= c1) & (m < c2)
        interrupt = ost & (m >= c2) & (m < c3)
        to_hat = ost & (m >= c3) & (m < c4)
        # HAT: spell ends (times the effect) or back to OST
        in_hat = live & hat
        q_end = _p(RATES["spell_end"] * self._lp(t, year, "spell_end") * self.eff.retention)
        hat_out = in_hat & (m < q_end)
        hat_ost = in_hat & (m >= q_end) & (m < q_end + _p(RATES["hat_to_ost"]))
        # out of treatment: a return after MIN_OUT days, to HAT or OST
        ret = live & out & (t - self.out_since >= MIN_OUT) & (m < _p(RATES["return"]))
        ret_hat = ret & hat_ok & (u[:, 3] < DIRECT_HAT)
        ret_ost = ret & ~ret_hat
        # interruption: back to OST when over
        in_gap = live & (st == GAP)
        self.gap_left[in_gap] -= 1
        gap_over = in_gap & (self.gap_left <= 0)
        # new medications
        first = np.searchsorted(np.cumsum(OST_MED_P), u[:, 3] * 0.999999).astype(np.int8)
        other = ((self.med + 1 + (u[:, 3] < 0.5)) % 3).astype(np.int8)
        new[to_out | hat_out] = OUT
        new[to_hat | ret_hat] = HAT
        new[switch | hat_ost | ret_ost | gap_over] = OST
        new[interrupt] = GAP
        ended = to_out | hat_out | to_hat | switch | hat_ost | interrupt  # episode ended t-1
        starts = to_hat | ret_hat | switch | hat_ost | ret_ost | gap_over
        med = self.med.copy()
        med[to_hat | ret_hat] = HAT_MED
        med[ret_ost | gap_over | hat_ost] = first[ret_ost | gap_over | hat_ost]
        med[switch] = other[switch]
        self.gap_left[interrupt] = 3 + np.floor(u[interrupt, 6] * 18).astype(np.int64)
        self.out_since[to_out | hat_out] = t
        self.ever_hat |= to_hat | ret_hat
        self.alive &= ~died
        self.present &= ~emig
        old_med = self.med
        self.med = med
        self.state = new
        return died, emig, ended, starts, old_med, (to_hat, ret_hat)

    def counts(self, t: int, year: int, u: np.ndarray, here: np.ndarray):
        """Charges (counts) and non-fatal overdoses on day ``t`` of the rows ``here``."""
        st = self.state
        out, hat = st == OUT, st == HAT
        self.last_tx[here & ((st == OST) | hat)] = t
        lam = RATES["crime"] * self._lp(t, year, "crime") / 365.25
        lam = lam * np.where(out, OUT_FACTOR["crime"], 1.0) * np.where(hat, self.eff.crime, 1.0)
        e = np.exp(-lam)
        n = ((u[:, 4] > e).astype(np.int64) + (u[:, 4] > e * (1 + lam))) * here
        h = RATES["overdose"] * self._lp(t, year, "overdose")
        od = here & (u[:, 5] < _p(h * np.where(out, OUT_FACTOR["overdose"], 1.0)))
        self.last_od[od] = t
        return n, od


def _day(d: np.datetime64) -> int:
    return int((d - EPOCH).astype(np.int64))


def _years(t0: int, t1: int) -> np.ndarray:
    days = np.arange(t0, t1 + 1).astype("datetime64[D]")
    return days.astype("datetime64[Y]").astype(np.int64) + 1970


def _persons(rng: np.random.Generator, n: int) -> pd.DataFrame:
    t0, t1 = _day(SIM_START), _day(LAST_ENTRY)
    entry = rng.integers(t0, t1 + 1, n)
    entry_year = entry.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    age_at_entry = np.where(rng.random(n) < 0.03, 17, rng.integers(19, 56, n))
    df = pd.DataFrame(
        {
            "person_id": [f"IP{i:05d}" for i in range(n)],
            "entry": entry,
            "birth_year": entry_year - age_at_entry,
            "male": (rng.random(n) < 0.7).astype(np.int64),
            "region": np.asarray(REGIONS)[rng.choice(4, n, p=REGION_P)],
            "onset": entry - np.round(rng.uniform(1, 20, n) * 365.25).astype(np.int64),
        }
    )
    for name, p in zip(TRAITS, TRAIT_P, strict=True):
        df[name] = (rng.random(n) < p).astype(np.int64)
    return df


def _x(df: pd.DataFrame) -> np.ndarray:
    return df[["birth_year", "male", *TRAITS]].to_numpy(np.float64)


def _simulate_registry(
    rng: np.random.Generator, people: pd.DataFrame, effects: Effects, uptake: float = 1.0
):
    """Simulate every person's course from entry to the extract date; returns event tables."""
    n = len(people)
    c = _Course(_x(people), people["region"].isin(HAT_REGIONS).to_numpy(), effects, uptake)
    entry = people["entry"].to_numpy()
    t0, t1 = _day(SIM_START), _day(EXTRACT_DATE)
    years = _years(t0, t1)
    ep_start = np.zeros(n, np.int64)
    next_form = np.full(n, np.iinfo(np.int64).max)
    death = np.full(n, -1, np.int64)
    emig = np.full(n, -1, np.int64)
    eps, forms, charges, ods, inits = [], [], [], [], []
    for t in range(t0, t1 + 1):
        year = int(years[t - t0])
        u = rng.random((n, N_UNIFORMS))
        movable = c.alive & c.present & (c.state != NOT_ENTERED)
        prev_state = c.state
        died, em, ended, starts, old_med, (to_hat, ret_hat) = c.exits(t, year, u, movable)
        idx = np.flatnonzero(ended)
        eps.append(np.c_[idx, ep_start[idx], np.full(len(idx), t - 1), old_med[idx]])
        ep_start[starts] = t
        death[died] = t
        emig[em] = t
        # close episodes open at death (half left open) or emigration
        tx = (prev_state == OST) | (prev_state == HAT)
        close = (died & tx & (u[:, 3] < 0.5)) | (em & tx)
        idx = np.flatnonzero(close)
        eps.append(np.c_[idx, ep_start[idx], np.full(len(idx), t), old_med[idx]])
        left_open = np.flatnonzero(died & tx & ~close)
        eps.append(np.c_[left_open, ep_start[left_open], np.full(len(left_open), -1),
                         old_med[left_open]])  # fmt: skip
        # entries
        enter = entry == t
        c.state[enter] = OST
        c.med[enter] = np.searchsorted(np.cumsum(OST_MED_P), u[enter, 3] * 0.999999)
        ep_start[enter] = t
        if to_hat.any() or ret_hat.any():
            idx = np.flatnonzero(to_hat | ret_hat)
            inits.append(np.c_[idx, np.full(len(idx), t), c.last_od[idx], to_hat[idx]])
        # status forms: on entry into treatment and yearly while in treatment
        here = c.alive & c.present & (c.state != NOT_ENTERED)
        in_tx = np.isin(c.state, (OST, HAT, GAP))
        back = enter | (starts & (prev_state == OUT))
        due = here & ((back) | ((next_form == t) & in_tx))
        idx = np.flatnonzero(due)
        if len(idx):
            forms.append(np.c_[idx, np.full(len(idx), t)])
        next_form[due] = t + 365
        next_form[here & (next_form == t) & ~in_tx] = np.iinfo(np.int64).max
        n_ch, od = c.counts(t, year, u, here)
        idx = np.flatnonzero(n_ch)
        if len(idx):
            charges.append(np.repeat(np.c_[idx, np.full(len(idx), t)], n_ch[idx], axis=0))
        idx = np.flatnonzero(od)
        if len(idx):
            ods.append(np.c_[idx, np.full(len(idx), t)])
    # episodes open at the extract date
    open_ = np.flatnonzero(c.alive & c.present & np.isin(c.state, (OST, HAT)))
    eps.append(np.c_[open_, ep_start[open_], np.full(len(open_), -1), c.med[open_]])

    def cat(parts: list[np.ndarray], k: int) -> np.ndarray:
        parts = [p for p in parts if len(p)]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros((0, k), np.int64)

    return {
        "episodes": cat(eps, 4),
        "forms": cat(forms, 2),
        "charges": cat(charges, 2),
        "overdoses": cat(ods, 2),
        "initiations": cat(inits, 4),
        "death": death,
        "emigration": emig,
    }


def _date(days: np.ndarray) -> pd.Series:
    s = pd.Series(np.asarray(days).astype("datetime64[D]").astype("datetime64[ns]"))
    return s.where(np.asarray(days) >= 0).dt.strftime("%Y-%m-%d").fillna("")


def _analysed(people: pd.DataFrame, inits: np.ndarray) -> np.ndarray:
    """Which HAT initiations meet the contract's rules 1-6 on their first HAT day."""
    row, d, from_ost = inits[:, 0], inits[:, 1], inits[:, 3].astype(bool)
    year = d.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    age_ok = year - people["birth_year"].to_numpy()[row] >= MIN_AGE
    # rule 4: straight from OST (its episode ends on d - 1); a return from out of treatment
    # comes after >= MIN_OUT days without an episode; rule 5: HAT only in the HAT regions
    history_ok = d - LOOKBACK >= _day(HISTORY_START)
    return age_ok & from_ost & history_ok


def _write(folder: Path, people: pd.DataFrame, sim: dict, rng: np.random.Generator) -> None:
    """The contract-v2 tables from the simulated registry, from ``history_start`` on."""
    hs = _day(HISTORY_START)
    death, emig = sim["death"], sim["emigration"]
    keep = ~(((death >= 0) & (death < hs)) | ((emig >= 0) & (emig < hs)))
    pid = people["person_id"].to_numpy()
    folder.mkdir(parents=True, exist_ok=True)
    persons = pd.DataFrame(
        {
            "person_id": pid,
            "sex": np.where(people["male"] == 1, "M", "F"),
            "birth_year": people["birth_year"],
            "region": people["region"],
            "emigration_date": _date(emig),
        }
    )[keep]
    persons.to_csv(folder / "persons.csv", index=False)
    ep = sim["episodes"]
    ep = ep[keep[ep[:, 0]] & ((ep[:, 2] < 0) | (ep[:, 2] >= hs))]
    ep = ep[np.lexsort((ep[:, 1], ep[:, 0]))]
    pd.DataFrame(
        {
            "person_id": pid[ep[:, 0]],
            "start_date": _date(ep[:, 1]),
            "end_date": _date(ep[:, 2]),
            "medication": np.asarray(MEDICATIONS)[ep[:, 3]],
        }
    ).to_csv(folder / "treatment_episodes.csv", index=False)
    dead = np.flatnonzero(keep & (death >= 0))
    pd.DataFrame(
        {
            "person_id": pid[dead],
            "death_date": _date(death[dead]),
            "cause": np.where(rng.random(len(dead)) < 0.4, "overdose", "other"),
        }
    ).to_csv(folder / "deaths.csv", index=False)
    ch = sim["charges"]
    ch = ch[keep[ch[:, 0]] & (ch[:, 1] >= hs)]
    ch = ch[np.lexsort((ch[:, 1], ch[:, 0]))]
    offences = np.asarray(["property", "drug", "violence", "other"])
    pd.DataFrame(
        {
            "person_id": pid[ch[:, 0]],
            "charge_date": _date(ch[:, 1]),
            "offence": offences[rng.choice(4, len(ch), p=(0.4, 0.35, 0.1, 0.15))],
        }
    ).to_csv(folder / "charges.csv", index=False)
    fo = sim["forms"]
    fo = fo[keep[fo[:, 0]] & (fo[:, 1] >= hs)]
    fo = fo[np.lexsort((fo[:, 1], fo[:, 0]))]
    forms = pd.DataFrame(
        {
            "person_id": pid[fo[:, 0]],
            "assessment_date": _date(fo[:, 1]),
            "years_opioid_use": np.round(
                (fo[:, 1] - people["onset"].to_numpy()[fo[:, 0]]) / 365.25, 2
            ),
        }
    )
    for name in ("injecting", "psychiatric_dx", "homeless", "benzodiazepine_use"):
        forms[name] = people[name].to_numpy()[fo[:, 0]]
    forms.to_csv(folder / "assessments.csv", index=False)
    od = sim["overdoses"]
    od = od[keep[od[:, 0]] & (od[:, 1] >= hs)]
    od = od[np.lexsort((od[:, 1], od[:, 0]))]
    pd.DataFrame({"person_id": pid[od[:, 0]], "overdose_date": _date(od[:, 1])}).to_csv(
        folder / "overdoses.csv", index=False
    )
    (folder / "extract.yml").write_text(
        "contract_version: 2\n"
        f"extract_date: {EXTRACT_DATE}\n"
        f"history_start: {HISTORY_START}\n"
        "description: independent history extract (tests/independent_history.py)\n"
    )


def write_independent_history(
    folder: str | Path,
    rng: np.random.Generator,
    *,
    n: int = 4000,
    effects: Effects | None = None,
    replicates: int = 200,
    batches: int = 10,
    uptake: float = 1.0,
) -> dict:
    """Write a contract-v2 history extract to ``folder`` and return its ITT and PP truths.

    Parameters
    ----------
    folder : str or Path
        Created if needed; receives the CSV tables and ``extract.yml`` (no truth file).
    rng : numpy.random.Generator
        The only source of randomness (the extract, then the truth's copies).
    n : int
        Persons entering OST from 2012 to mid-2025 (those dead or emigrated before
        ``history_start`` are not in the extract).
    effects : Effects, optional
        Conditional effects of being in HAT; default :class:`Effects`.
    replicates, batches : int
        Copies of each analysed initiator per strategy (0: no truth computed), and the
        batches of copies whose spread gives the Monte Carlo SE.
    uptake : float
        Multiplier of the hazard of starting HAT (more comparators start HAT later: ITT and
        per protocol differ more, and the censoring weights matter more).

    Returns
    -------
    dict
        ``truth``: ``{estimand: {outcome: {"value", "log", "mc_se"}}}`` for estimands
        ``itt``, ``per_protocol`` and outcomes ``mortality`` (HR), ``retention`` (HR),
        ``crime`` (IRR); ``n_initiators``, ``n_analysed``, ``effects``, and the copies'
        event counts by strategy (``events``).
    """
    effects = effects or Effects()
    folder = Path(folder)
    people = _persons(rng, n)
    sim = _simulate_registry(rng, people, effects, uptake)
    _write(folder, people, sim, rng)
    inits = sim["initiations"]
    ok = _analysed(people, inits)
    truth = (
        potential_outcome_truth(
            people,
            inits[ok],
            rng,
            effects=effects,
            replicates=replicates,
            batches=batches,
            uptake=uptake,
        )  # fmt: skip
        if replicates
        else {}
    )
    return {
        **truth,
        "n_initiators": len(inits),
        "n_analysed": int(ok.sum()),
        "effects": effects,
        "uptake": uptake,
    }


def _follow(
    people: pd.DataFrame,
    inits: np.ndarray,
    rng: np.random.Generator,
    effects: Effects,
    r: int,
    uptake: float = 1.0,
) -> pd.DataFrame:
    """Each initiator's course from its index date under the three strategies, ``r`` copies each.

    Strategy 0 "initiate now", 1 "do not initiate now" (natural later HAT), 2 "never
    initiate"; the copies of one (initiator, replicate) share their uniforms in all three.
    """
    nb = len(inits) * r
    d = np.tile(np.repeat(inits[:, 1], r), 3)
    arm = np.repeat(np.arange(3), nb)
    rows = np.repeat(inits[:, 0], r)
    x = np.tile(_x(people)[rows], (3, 1))
    region = np.tile(people["region"].isin(HAT_REGIONS).to_numpy()[rows], 3)
    c = _Course(x, region, effects, uptake)
    c.last_od = np.tile(np.repeat(inits[:, 2], r), 3)
    c.last_tx = d - 1
    c.hat_never = arm == 2
    n = 3 * nb
    end = np.full(n, -1, np.int64)
    cause = np.zeros(n, np.int64)  # 0 extract date, 1 death, 2 emigration
    spell_end = np.full(n, -1, np.int64)
    charges = np.zeros(n, np.int64)
    t0, t1 = int(d.min()), _day(EXTRACT_DATE)
    years = _years(t0, t1)
    for t in range(t0, t1 + 1):
        year = int(years[t - t0])
        u = np.tile(rng.random((nb, N_UNIFORMS)), (3, 1))
        start = d == t
        if start.any():
            now = start & (arm == 0)
            c.state[now], c.med[now], c.ever_hat[now] = HAT, HAT_MED, True
            c.state[start & (arm > 0)] = OST
        movable = c.alive & c.present & (d < t)
        prev = c.state
        died, emig, *_ = c.exits(t, year, u, movable)
        end[died | emig] = t
        cause[died], cause[emig] = 1, 2
        first = (c.state == OUT) & ((prev == OST) | (prev == HAT)) & (spell_end < 0)
        spell_end[first] = t - 1
        here = c.alive & c.present & (d <= t)
        n_ch, _ = c.counts(t, year, u, here)
        charges += n_ch
    end[end < 0] = t1
    # follow-up ends during a short interruption: the spell ended on the last episode day
    gap = (c.state == GAP) & (spell_end < 0)
    spell_end[gap] = c.last_tx[gap]
    # retention (contract): discontinued when the spell ends before follow-up ends, unless
    # follow-up ends by emigration or the extract date fewer than GAP_RULE days after it
    ended = spell_end >= 0
    ret_time = np.where(ended, spell_end, end) - d
    ret_event = ended & ((cause == 1) | (end - spell_end >= GAP_RULE))
    return pd.DataFrame(
        {
            "arm": arm,
            "replicate": np.tile(np.tile(np.arange(r), len(inits)), 3),
            "followup_days": end - d,
            "died": (cause == 1).astype(np.int64),
            "retention_days": ret_time,
            "discontinued": ret_event.astype(np.int64),
            "charges": charges,
        }
    )


def _log_hr(df: pd.DataFrame, time: str, event: str) -> float:
    from lifelines import CoxPHFitter

    data = pd.DataFrame(
        {"T": df[time].to_numpy(float) + 0.5, "E": df[event], "hat": df["hat"]}
    )  # half a day: a discontinuation on the index date has a positive duration
    fit = CoxPHFitter().fit(data, "T", "E")
    return float(fit.params_["hat"])


def _log_rr(df: pd.DataFrame) -> float:
    s = df.groupby("hat")[["charges", "followup_days"]].sum()
    rate = s["charges"] / s["followup_days"]
    return float(np.log(rate[1] / rate[0]))


def potential_outcome_truth(
    people: pd.DataFrame,
    inits: np.ndarray,
    rng: np.random.Generator,
    *,
    effects: Effects,
    replicates: int = 200,
    batches: int = 10,
    by_initiator: bool = False,
    uptake: float = 1.0,
) -> dict:
    """ITT and per-protocol truths in the analysed initiators from their potential outcomes.

    ``inits``: rows (person row, index day, last overdose day before it, from OST).
    ``by_initiator``: batches of initiators (all their copies), so that the Monte Carlo SE
    also counts the sampling of the initiators (the population truth); otherwise batches of
    copies of every initiator (the truth conditional on these initiators).
    """
    f = _follow(people, inits, rng, effects, replicates, uptake)
    if by_initiator:
        who = np.tile(np.repeat(rng.permutation(len(inits)), replicates), 3)
        f["batch"] = who % batches
    else:
        f["batch"] = f["replicate"] % batches
    out: dict = {"truth": {}, "events": {}}
    for estimand, other in (("itt", 1), ("per_protocol", 2)):
        pair = f[f["arm"].isin((0, other))].assign(hat=lambda x: (x["arm"] == 0).astype(int))
        res = {}
        for outcome, fn in (
            ("mortality", lambda x: _log_hr(x, "followup_days", "died")),
            ("retention", lambda x: _log_hr(x, "retention_days", "discontinued")),
            ("crime", _log_rr),
        ):
            whole = fn(pair)
            per_batch = np.array([fn(g) for _, g in pair.groupby("batch")])
            mc = float(per_batch.std(ddof=1) / np.sqrt(batches))
            res[outcome] = {"value": float(np.exp(whole)), "log": whole, "mc_se": mc}
        out["truth"][estimand] = res
    out["events"] = (
        f.groupby("arm")[["died", "discontinued", "charges", "followup_days"]].sum().to_dict()
    )
    out["copies_per_arm"] = int((f["arm"] == 0).sum())
    return out


def population_truth(
    rng: np.random.Generator,
    *,
    n: int = 40000,
    effects: Effects | None = None,
    replicates: int = 10,
    batches: int = 20,
    uptake: float = 1.0,
) -> dict:
    """The truths in the population of analysed initiators (not those of one extract).

    The persons of an extract are independent draws, so its analysed initiators are a sample
    of this population: the truth of :func:`write_independent_history` is conditional on the
    sample's initiators (their covariates and index dates), this one is its expectation, the
    estimand whose variance a study's standard error describes. Simulates ``n`` persons (no
    extract written) and the potential outcomes of their analysed initiators.
    """
    effects = effects or Effects()
    people = _persons(rng, n)
    sim = _simulate_registry(rng, people, effects, uptake)
    inits = sim["initiations"]
    ok = _analysed(people, inits)
    truth = potential_outcome_truth(
        people, inits[ok], rng, effects=effects, replicates=replicates, batches=batches,
        by_initiator=True, uptake=uptake,
    )  # fmt: skip
    return {**truth, "n_persons": n, "n_analysed": int(ok.sum())}


#: :func:`population_truth` with the default effects and uptake: two runs of 60,000 persons
#: (``np.random.default_rng(201)`` and ``(202)``, 5 copies of each of their 2,752 + 2,666
#: analysed initiators, 20 batches of initiators each), combined weighted by initiators;
#: ``log`` and ``mc_se`` on the log scale
POPULATION_TRUTH = {
    "n_analysed": 5418,
    "truth": {
        "itt": {
            "mortality": {"value": 0.7087, "log": -0.3443, "mc_se": 0.0135},
            "retention": {"value": 0.5998, "log": -0.5111, "mc_se": 0.0096},
            "crime": {"value": 0.7876, "log": -0.2388, "mc_se": 0.0021},
        },
        "per_protocol": {
            "mortality": {"value": 0.6886, "log": -0.3732, "mc_se": 0.0142},
            "retention": {"value": 0.5777, "log": -0.5487, "mc_se": 0.0106},
            "crime": {"value": 0.7693, "log": -0.2623, "mc_se": 0.0021},
        },
    },
}
