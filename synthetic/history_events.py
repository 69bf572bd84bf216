"""The events of a week in the history simulation: what happens to those who have one.

:class:`WeekEvents` is the part of :class:`synthetic.history_sim.Simulation` that applies
the week's first event of each person (death or emigration, leaving treatment, starting
HAT, entering prison), draws the charges and non-fatal overdoses over the days at risk,
fills in the yearly status forms and moves the time-varying states on. Every random
number is a slot of the person's week root (:mod:`synthetic.history_random`).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from analysis.data.contract import DAYS_PER_YEAR
from synthetic.history_random import (
    S_CAUSE,
    S_CHARGE_DAY,
    S_EXIT_KIND,
    S_FORM,
    S_GAP,
    S_ITEMS,
    S_MED,
    S_OFFENCE,
    S_OVERDOSE_DAY,
    S_PRISON,
    S_SWITCH,
    S_SWITCH_GAP,
    poisson_from_uniform,
    uniform_at,
)
from synthetic.history_state import (
    FORM_ITEMS,
    HAT_MED,
    IN_HAT,
    IN_OST,
    METHADONE,
    NEVER,
    NONE,
    OUT,
    WEEK,
    Log,
    Rates,
    State,
    choose_medication,
    linear_predictor,
)
from synthetic.tables import offence_codes

__all__ = ["WeekEvents"]


class WeekEvents:
    """Event handlers of :class:`synthetic.history_sim.Simulation` (which sets the attributes)."""

    r: Rates
    s: State
    log: Log
    scale: float
    fixed_weights: np.ndarray | None
    weights: np.ndarray
    hat_static: np.ndarray
    hat_dynamic: tuple[tuple[str, float], ...]
    moves: list
    psych_onset: float
    move_bound: np.ndarray

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
        w = np.exp(
            self.hat_static[i] + linear_predictor(self.hat_dynamic, self._recorded(i, a, feats))
        )
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
            offence = offence_codes(
                uniform_at(b, S_OFFENCE + jth), self.r.spec.crime.offence_shares
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
        intervals whose lengths are the weekly switching probabilities.

        Only persons whose ``u`` is below the sum of their largest probabilities
        (``move_bound``, summed in the same order, so never below the real sum) can
        switch; the others are skipped, which changes no outcome.
        """
        c = self.s.cols
        near = np.flatnonzero(u < self.move_bound[i])
        i, u = i[near], u[near]
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
