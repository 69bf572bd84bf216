"""Outcomes after index: treatment course, deaths, emigration, prison stays and charges.

The treatment course is simulated in continuous time (days since index) as a sequence of
*cycles*, each an episode in treatment followed by a gap out of treatment; each cycle is
one vectorised step over all persons still under observation (no loop over persons). In
an episode the person can leave treatment (hazard by medication), die or be censored
(emigration, extract date); in a gap the person can die (out-of-treatment hazard, with
an optional spike in the first weeks), be censored or re-enter. Death uses one Exp(1)
threshold per person against the cumulative hazard along the path, so the same random
numbers give *coupled* potential outcomes under HAT and under OST (the truth relies on
it: every cycle draws the same numbers for every person, active or not).

Prison entries are a Poisson process proportional to the crime intensity (thinned by the
treatment state at the candidate time; no new entry while inside); charges are a Poisson
process with the person's frailty-scaled rate for the current state, none inside prison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.data.contract import DAYS_PER_YEAR
from synthetic.population import HAT_MED, METHADONE, NO_DAY, People, choose
from synthetic.spec import Scenario
from synthetic.tables import stable_order

__all__ = [
    "Course",
    "PrisonCandidates",
    "Stays",
    "expected_followup_charges",
    "followup_charges",
    "history_charges",
    "prison_candidates",
    "prison_stays",
    "simulate_course",
    "state_rates",
]

OUT, IN_OST, IN_HAT = 0, 1, 2
_SCALE = 1 << 17  # key = person * _SCALE + time; times are < 2**17 days


@dataclass(frozen=True)
class Course:
    """Simulated treatment course after index for ``n`` persons (times in days since index).

    Episodes: the first one's start is its recorded start (before index for an ongoing
    OST episode); ``ep_end`` is NaN for an episode still open at the extract date.
    Segments cover [0, ``end_time``) of every person by state (OUT, IN_OST, IN_HAT) and are
    sorted by person and time.
    """

    died: np.ndarray
    death_time: np.ndarray
    overdose: np.ndarray
    emigrated: np.ndarray
    end_time: np.ndarray
    ep_person: np.ndarray
    ep_start: np.ndarray
    ep_end: np.ndarray
    ep_med: np.ndarray
    seg_person: np.ndarray
    seg_start: np.ndarray
    seg_end: np.ndarray
    seg_state: np.ndarray


def simulate_course(
    *,
    first_med: np.ndarray,
    first_start: np.ndarray,
    treatment_mult: np.ndarray,
    mortality_mult: np.ndarray,
    admin_end: np.ndarray,
    emigration_time: np.ndarray,
    spec: Scenario,
    rng: np.random.Generator,
) -> Course:
    """Simulate the treatment course, death and censoring after index.

    Parameters
    ----------
    first_med : array of int8
        Medication at index (``HAT_MED`` for HAT): everyone is in treatment at index.
    first_start : array of float
        Recorded start of the episode ongoing at index (<= 0).
    treatment_mult, mortality_mult : arrays of float
        Person-level multipliers of the discontinuation and death hazards.
    admin_end : array of float
        End of the extract date in days since index (extract - index + 1).
    emigration_time : array of float
        Time of emigration (``inf`` if none before the horizon).
    spec : Scenario
    rng : numpy.random.Generator
        Draws the same numbers for the same ``n`` whatever the treatment, so two calls
        with identically seeded generators give coupled potential outcomes.
    """
    # one vectorised loop over episode cycles whose state lives in local arrays: one piece
    n = len(first_med)
    tr, mo, ef = spec.treatment, spec.mortality, spec.effects
    exit_ost = tr.ost_exit_per_year / DAYS_PER_YEAR * treatment_mult
    mu_in = mo.in_treatment_per_1000py / 1000 / DAYS_PER_YEAR * mortality_mult
    mu_out = mo.out_of_treatment_per_1000py / 1000 / DAYS_PER_YEAR * mortality_mult
    spike, spike_days = mo.leaving_spike_multiplier, mo.leaving_spike_days
    cens = np.minimum(admin_end, emigration_time)
    still_open = emigration_time >= admin_end  # censoring at the extract date: episode open
    threshold = rng.standard_exponential(n)
    u_cause = rng.random(n)

    t = np.zeros(n)
    med = first_med.astype(np.int8).copy()
    rec_start = first_start.astype(float).copy()
    hazard = np.zeros(n)
    active = np.ones(n, dtype=bool)
    death_time = np.full(n, np.nan)
    death_state = np.zeros(n, dtype=np.int8)
    eps: list[tuple[np.ndarray, ...]] = []
    segs: list[tuple[np.ndarray, ...]] = []
    p_switch, p_short_hat = tr.hat_switch_share, tr.hat_short_interruption_share
    bridged = float(tr.bridged_gap_days)

    for _ in range(tr.max_cycles):
        u = rng.random((4, n))
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        ti, m = t[idx], med[idx]
        hat = m == HAT_MED
        # --- episode in treatment
        t_exit = ti - np.log1p(-u[0, idx]) / (
            exit_ost[idx] * np.where(hat, ef.hr_discontinuation, 1.0)
        )
        mu = mu_in[idx] * np.where(hat, ef.hr_mortality, 1.0)
        t_death = ti + (threshold[idx] - hazard[idx]) / mu
        c = cens[idx]
        stop = np.minimum(np.minimum(t_exit, t_death), c)
        dead = t_death <= np.minimum(t_exit, c)
        censored = ~dead & (c <= t_exit)
        hazard[idx] += mu * (stop - ti)
        state = np.where(hat, IN_HAT, IN_OST).astype(np.int8)
        end = np.where(censored & still_open[idx], np.nan, stop)
        eps.append((idx, rec_start[idx], end, m))
        segs.append((idx, ti, stop, state))
        death_time[idx[dead]] = t_death[dead]
        death_state[idx[dead]] = state[dead]
        active[idx[dead | censored]] = False
        # --- gap out of treatment
        leave = ~dead & ~censored
        j, te, was_hat, mj = idx[leave], t_exit[leave], hat[leave], m[leave]
        uu, ug, um = u[1, j], u[2, j], u[3, j]
        switch = was_hat & (uu < p_switch)
        short = np.where(
            was_hat,
            ~switch & (uu < p_switch + (1 - p_switch) * p_short_hat),
            uu < tr.short_interruption_share,
        )
        gap = np.where(
            switch,
            1 + (tr.switch_gap_max_days - 1) * ug,
            np.where(
                short,
                1 + (bridged - 1) * ug,
                bridged + 1 - tr.reentry_mean_days * np.log1p(-ug),
            ),
        )
        back_to_hat = was_hat & ~switch & ~short & (um < tr.hat_return_share)
        u_mix = np.where(
            was_hat, (um - tr.hat_return_share) / (1 - tr.hat_return_share + 1e-12), um
        )
        mix = choose(np.clip(u_mix, 0, 1 - 1e-12), tr.ost_medication_shares)
        next_med = np.where(
            switch, METHADONE, np.where(short, mj, np.where(back_to_hat, HAT_MED, mix))
        ).astype(np.int8)
        mo_ = mu_out[j]
        remaining = threshold[j] - hazard[j]
        spike_hazard = mo_ * spike * spike_days
        s_death = np.where(
            remaining < spike_hazard,
            remaining / (mo_ * spike),
            spike_days + (remaining - spike_hazard) / mo_,
        )
        room = cens[j] - te
        g_stop = np.minimum(np.minimum(gap, s_death), room)
        dead_g = s_death <= np.minimum(gap, room)
        cens_g = ~dead_g & (room < gap)
        hazard[j] += mo_ * (
            spike * np.minimum(g_stop, spike_days) + np.maximum(g_stop - spike_days, 0)
        )
        segs.append((j, te, te + g_stop, np.full(j.size, OUT, dtype=np.int8)))
        death_time[j[dead_g]] = te[dead_g] + s_death[dead_g]
        death_state[j[dead_g]] = OUT
        active[j[dead_g | cens_g]] = False
        t[j] = te + gap
        rec_start[j] = te + gap
        med[j] = next_med
    if active.any():  # pragma: no cover - max_cycles is far above any realistic course
        raise RuntimeError("treatment.max_cycles reached; raise it")

    died = ~np.isnan(death_time)
    share = np.array(
        [
            mo.overdose_share_out_of_treatment,
            mo.overdose_share_in_treatment,
            min(1.0, mo.overdose_share_in_treatment * ef.overdose_share_ratio),
        ]
    )
    overdose = died & (u_cause < share[death_state])
    end_time = np.where(died, death_time, cens)
    ep = [np.concatenate(x) for x in zip(*eps, strict=True)]
    sg = [np.concatenate(x) for x in zip(*segs, strict=True)]
    order = stable_order(sg[0] * float(_SCALE) + sg[1])
    sg = [x[order] for x in sg]
    return Course(
        died=died,
        death_time=death_time,
        overdose=overdose,
        emigrated=~died & (emigration_time < admin_end),
        end_time=end_time,
        ep_person=ep[0],
        ep_start=ep[1],
        ep_end=ep[2],
        ep_med=ep[3].astype(np.int8),
        seg_person=sg[0],
        seg_start=sg[1],
        seg_end=sg[2],
        seg_state=sg[3].astype(np.int8),
    )


# --------------------------------------------------------------------------- helpers
def _segment_of(course: Course, person: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Index of the segment holding (person, time), -1 if none (after the end)."""
    keys = course.seg_person * float(_SCALE) + course.seg_start
    pos = np.searchsorted(keys, person * float(_SCALE) + time, side="right") - 1
    posc = np.maximum(pos, 0)
    ok = (pos >= 0) & (course.seg_person[posc] == person) & (time < course.seg_end[posc])
    return np.where(ok, pos, -1)


def state_rates(spec: Scenario) -> np.ndarray:
    """Charge rate per day by state (OUT, IN_OST, IN_HAT) for a multiplier of 1."""
    cr = spec.crime
    return (
        np.array(
            [
                cr.out_of_treatment_per_year,
                cr.in_treatment_per_year,
                cr.in_treatment_per_year * spec.effects.irr_crime,
            ]
        )
        / DAYS_PER_YEAR
    )


# --------------------------------------------------------------------------- prison
@dataclass(frozen=True)
class PrisonCandidates:
    """Candidate prison entries at the out-of-treatment rate (thinned later by state)."""

    person: np.ndarray
    time: np.ndarray
    u: np.ndarray
    days: np.ndarray


def prison_candidates(
    crime_mult: np.ndarray, admin_end: np.ndarray, spec: Scenario, rng: np.random.Generator
) -> PrisonCandidates:
    """Draw candidate entries on [0, admin_end) at the highest (out-of-treatment) rate."""
    rate = spec.prison.stays_per_charge * state_rates(spec)[OUT] * crime_mult
    count = rng.poisson(rate * admin_end)
    person = np.repeat(np.arange(len(crime_mult)), count)
    time = rng.random(person.size) * admin_end[person]
    u = rng.random(person.size)
    pr = spec.prison
    days = np.ceil(rng.lognormal(np.log(pr.median_days), pr.sigma, person.size))
    days = np.clip(days, 1, pr.max_days).astype(np.int64)
    order = np.lexsort((time, person))
    return PrisonCandidates(person[order], time[order], u[order], days[order])


@dataclass(frozen=True)
class Stays:
    """Prison stays in whole days [start, end) since index, sorted, non-overlapping.

    ``end`` is the release day as drawn (may lie after the end of observation);
    ``recorded_end`` is the end date to write (NaN = still inside at the extract date).
    """

    person: np.ndarray
    start: np.ndarray
    end: np.ndarray
    recorded_end: np.ndarray


def _first_of_person(person: np.ndarray) -> np.ndarray:
    return np.r_[True, person[1:] != person[:-1]] if person.size else np.zeros(0, bool)


def prison_stays(cand: PrisonCandidates, course: Course, spec: Scenario, admin_end) -> Stays:
    """Thin candidate entries by the state at the entry time, drop entries while inside."""
    seg = _segment_of(course, cand.person, cand.time)
    rates = state_rates(spec)
    accept = np.where(seg >= 0, rates[course.seg_state[np.maximum(seg, 0)]] / rates[OUT], 0.0)
    keep = cand.u < accept
    person, start = cand.person[keep], np.floor(cand.time[keep]).astype(np.int64)
    end = start + cand.days[keep]
    # greedy: the first undecided entry of each person is kept, later ones inside it dropped
    kept = np.zeros(person.size, dtype=bool)
    undecided = np.ones(person.size, dtype=bool)
    while undecided.any():
        ui = np.flatnonzero(undecided)
        first = ui[_first_of_person(person[ui])]
        kept[first] = True
        undecided[first] = False
        ui = np.flatnonzero(undecided)
        pos = np.minimum(np.searchsorted(person[first], person[ui]), first.size - 1)
        blocked = (person[first][pos] == person[ui]) & (start[ui] < end[first][pos])
        undecided[ui[blocked]] = False
    person, start, end = person[kept], start[kept], end[kept]
    stop_day = np.floor(course.end_time[person])
    extract_rel = admin_end[person] - 1
    ended_early = course.died[person] | course.emigrated[person]
    recorded = np.where(
        ended_early & (end > stop_day),
        stop_day,
        np.where(end > extract_rel, np.nan, end),
    )
    return Stays(person, start, end, recorded.astype(float))


def _inside(stays: Stays, person: np.ndarray, time: np.ndarray) -> np.ndarray:
    if stays.person.size == 0:
        return np.zeros(person.size, dtype=bool)
    keys = stays.person * float(_SCALE) + stays.start
    pos = np.searchsorted(keys, person * float(_SCALE) + time, side="right") - 1
    posc = np.maximum(pos, 0)
    return (pos >= 0) & (stays.person[posc] == person) & (time < stays.end[posc])


# --------------------------------------------------------------------------- charges
def followup_charges(
    course: Course, crime_mult: np.ndarray, stays: Stays, spec: Scenario, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Charges after index: (person, time in days since index), none inside prison."""
    rate = state_rates(spec)[course.seg_state] * crime_mult[course.seg_person]
    length = course.seg_end - course.seg_start
    count = rng.poisson(rate * length)
    seg = np.repeat(np.arange(length.size), count)
    time = course.seg_start[seg] + rng.random(seg.size) * length[seg]
    person = course.seg_person[seg]
    keep = ~_inside(stays, person, time)
    return person[keep], time[keep]


def expected_followup_charges(
    course: Course, crime_mult: np.ndarray, stays: Stays, spec
) -> np.ndarray:
    """Expected number of charges after index given the course (prison time removed)."""
    n = len(crime_mult)
    rate = state_rates(spec)[course.seg_state] * crime_mult[course.seg_person]
    total = np.bincount(
        course.seg_person, weights=rate * (course.seg_end - course.seg_start), minlength=n
    )
    if stays.person.size == 0:
        return total
    # cumulative intensity at segment starts, then Lambda(t) by lookup
    cum = np.cumsum(rate * (course.seg_end - course.seg_start))
    cum_before = cum - rate * (course.seg_end - course.seg_start)

    def big_lambda(person, time):
        seg = _segment_of(course, person, np.minimum(time, course.end_time[person] - 1e-9))
        s = np.maximum(seg, 0)
        return cum_before[s] + rate[s] * (
            np.minimum(time, course.end_time[person]) - course.seg_start[s]
        )

    lo = np.minimum(stays.start.astype(float), course.end_time[stays.person])
    hi = np.minimum(stays.end.astype(float), course.end_time[stays.person])
    removed = np.where(hi > lo, big_lambda(stays.person, hi) - big_lambda(stays.person, lo), 0.0)
    return total - np.bincount(stays.person, weights=removed, minlength=n)


def _place(u: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Map u in [0, 1) to a day in the union of pieces [start, start + length) (K x m)."""
    cols = np.arange(u.size)
    x = u * lengths.sum(0)
    cum = np.cumsum(lengths, axis=0)
    k = np.minimum((x[None, :] >= cum).sum(0), lengths.shape[0] - 1)
    before = cum[k, cols] - lengths[k, cols]
    return starts[k, cols] + np.floor(x - before).astype(np.int64)


def history_charges(
    people: People, crime_mult: np.ndarray, spec: Scenario, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Charges before index: (person, day since index < 0).

    The count in [-730, 0) is the baseline count drawn with the population (selection
    depends on it); an older window back to ``crime.history_days`` is drawn here. Each
    charge falls in treatment or out of it in proportion to rate x days, then uniformly.
    """
    n = len(people)
    rates = state_rates(spec)
    has_prev = people.prev_start != NO_DAY
    prev_s = np.where(has_prev, people.prev_start, -(10**6))
    prev_e = np.where(has_prev, people.prev_end + 1, -(10**6))
    cur_s, cur_e = people.current_start, np.zeros(n, dtype=np.int64)
    persons, days = [], []
    for w0, w1, counts in (
        (-730, 0, people.baseline_charges),
        (-spec.crime.history_days, -730, None),
    ):
        a1, b1 = np.clip(prev_s, w0, w1), np.clip(prev_e, w0, w1)
        a2, b2 = np.clip(cur_s, w0, w1), np.clip(cur_e, w0, w1)
        in_days = (b1 - a1) + (b2 - a2)
        out_days = (w1 - w0) - in_days
        lam_in = crime_mult * rates[IN_OST] * in_days
        lam_out = crime_mult * rates[OUT] * out_days
        if counts is None:
            counts = rng.poisson(lam_in + lam_out)
        p = np.repeat(np.arange(n), counts)
        tot = (lam_in + lam_out)[p]
        is_in = rng.random(p.size) * np.where(tot > 0, tot, 1) < lam_in[p]
        u = rng.random(p.size)
        w0a = np.full(p.size, w0)
        in_starts = np.stack([a1[p], a2[p]])
        in_lengths = np.stack([b1[p] - a1[p], b2[p] - a2[p]])
        out_starts = np.stack([w0a, b1[p], b2[p]])
        out_lengths = np.stack([a1[p] - w0, a2[p] - b1[p], w1 - b2[p]])
        day = np.where(is_in, _place(u, in_starts, in_lengths), 0)
        day = np.where(is_in, day, _place(u, out_starts, out_lengths))
        persons.append(p)
        days.append(day)
    return np.concatenate(persons), np.concatenate(days)
