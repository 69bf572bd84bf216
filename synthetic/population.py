"""Baseline covariates, treatment history before index and baseline charges.

Every person of the source population (OST candidates and HAT candidates alike) is drawn
by :func:`draw_population`: correlated covariates from one latent severity, a gamma crime
frailty, the OST episode ongoing at index (or time out of treatment for new starters), an
earlier episode, and charges in the years before index. HAT patients are a *selection*
from this same population (``synthetic.selection``); nothing about them is drawn
differently, so adjusting for the covariates and baseline charges removes confounding
(up to missing values).

Times are integer days: ``index_day`` counts days since 1970-01-01; history is in days
relative to the index date (negative = before).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
from scipy.special import ndtr, ndtri

from analysis.data.contract import DAYS_PER_YEAR, MEDICATIONS, REGIONS
from synthetic.spec import Effects, Population, Scenario

__all__ = [
    "BINARIES",
    "EPOCH",
    "FEATURES",
    "HAT_MED",
    "METHADONE",
    "NO_DAY",
    "People",
    "centres",
    "choose",
    "crime_multiplier",
    "day_number",
    "draw_population",
    "in_treatment_intervals",
    "linear_predictor",
    "multipliers",
    "ost_candidates",
    "site_candidates",
    "uniform_days",
    "window_days",
]

EPOCH = np.datetime64("1970-01-01", "D")
NO_DAY = np.iinfo(np.int64).min // 4  # "no such date" in integer-day arrays

#: medication codes (index into ``analysis.data.contract.MEDICATIONS``)
HAT_MED = MEDICATIONS.index("diacetylmorphine")
METHADONE = MEDICATIONS.index("methadone")

BINARIES = ("injecting", "psychiatric_dx", "homeless", "prior_overdose", "benzodiazepine_use")
FEATURES = tuple(Effects.model_fields)


def day_number(date) -> int:
    """Days since 1970-01-01 of a date."""
    return int((np.datetime64(date, "D") - EPOCH).astype(np.int64))


@dataclass(frozen=True)
class People:
    """Arrays of one value per person (true, complete covariates and history)."""

    region: np.ndarray  # int8 index into REGIONS
    index_day: np.ndarray  # int64 days since epoch
    female: np.ndarray  # bool
    age: np.ndarray  # float years at index
    years_opioid_use: np.ndarray  # float
    prior_ost_episodes: np.ndarray  # int64
    injecting: np.ndarray  # bool
    psychiatric_dx: np.ndarray
    homeless: np.ndarray
    prior_overdose: np.ndarray
    benzodiazepine_use: np.ndarray
    frailty: np.ndarray  # gamma crime frailty z, mean 1
    new_start: np.ndarray  # bool: out of treatment just before index
    current_start: np.ndarray  # int64 rel. day the ongoing episode began (0 if new start)
    current_med: np.ndarray  # int8 medication of the ongoing (or new) OST episode
    prev_start: np.ndarray  # int64 rel. day, NO_DAY if no earlier episode
    prev_end: np.ndarray
    prev_med: np.ndarray
    baseline_charges: np.ndarray  # int64 charges in [-730, 0)

    def __len__(self) -> int:
        return len(self.index_day)

    def take(self, idx: np.ndarray) -> People:
        return People(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(parts: list[People]) -> People:
        return People(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(People)}
        )

    def features(self) -> dict[str, np.ndarray]:
        """Features of the log-linear models (see :class:`synthetic.spec.Effects`)."""
        return {
            "female": self.female.astype(float),
            "age_per_10y": (self.age - 45.0) / 10.0,
            "years_opioid_use_per_10y": (self.years_opioid_use - 20.0) / 10.0,
            "prior_ost_episodes": np.minimum(self.prior_ost_episodes, 10).astype(float),
            **{name: getattr(self, name).astype(float) for name in BINARIES},
            "frailty": np.log1p(self.frailty),
            "log1p_baseline_charges": np.log1p(self.baseline_charges),
        }


def linear_predictor(effects: Effects, feats: dict[str, np.ndarray]) -> np.ndarray:
    """Sum of coefficient x feature over the non-zero coefficients."""
    n = len(feats["female"])
    lp = np.zeros(n)
    for name in FEATURES:
        beta = getattr(effects, name)
        if beta:
            lp += beta * feats[name]
    return lp


# --------------------------------------------------------------------------- covariates
def _truncated_normal(rng, n, mean, sd, low, high):
    a, b = ndtr((low - mean) / sd), ndtr((high - mean) / sd)
    return mean + sd * ndtri(a + (b - a) * rng.random(n))


def _covariates(n: int, pop: Population, rng: np.random.Generator) -> dict[str, np.ndarray]:
    severity = rng.standard_normal(n)
    female = rng.random(n) < pop.women_share
    age = _truncated_normal(rng, n, pop.age_mean, pop.age_sd, pop.age_min, pop.age_max)
    onset = pop.onset_age_mean + pop.onset_severity * severity
    onset = onset + pop.onset_age_sd * rng.standard_normal(n)
    onset = np.clip(onset, 12.0, age - 1.0)
    years = np.round(age - onset, 1)
    prior = rng.poisson(
        pop.prior_ost_mean
        * np.exp(pop.prior_ost_severity * severity - pop.prior_ost_severity**2 / 2)
    )
    out = {
        "female": female,
        "age": age,
        "years_opioid_use": years,
        "prior_ost_episodes": prior.astype(np.int64),
    }
    for name in BINARIES:
        spec = pop.binaries[name]
        latent = spec.loading * severity + np.sqrt(1 - spec.loading**2) * rng.standard_normal(n)
        out[name] = latent > ndtri(1 - spec.prevalence)
    k, zero = pop.crime_frailty_shape, pop.non_offender_share
    frailty = rng.gamma(k, 1.0 / (k * (1 - zero)), n)
    out["frailty"] = np.where(rng.random(n) < zero, 0.0, frailty)
    return out


@lru_cache(maxsize=16)
def _centres(key: str) -> dict[str, float]:
    spec = Scenario.model_validate_json(key)
    rng = np.random.default_rng(20240101)  # fixed reference sample, see `centres`
    n = 200_000
    cov = _covariates(n, spec.population, rng)
    zeros = np.zeros(n, dtype=np.int64)
    people = People(
        region=zeros.astype(np.int8),
        index_day=zeros,
        new_start=zeros.astype(bool),
        current_start=zeros,
        current_med=zeros.astype(np.int8),
        prev_start=zeros,
        prev_end=zeros,
        prev_med=zeros.astype(np.int8),
        baseline_charges=zeros,
        **cov,
    )
    feats = people.features()
    out = {}
    for name, effects in (
        ("mortality", spec.mortality.coefficients),
        ("treatment", spec.treatment.coefficients),
        ("crime", spec.crime.coefficients),
    ):
        out[name] = float(np.log(np.mean(np.exp(linear_predictor(effects, feats)))))
    return out


def centres(spec: Scenario) -> dict[str, float]:
    """Log of the mean multiplier exp(lp) of each outcome model in the OST population.

    Computed once per parameter set on a fixed reference sample of 200,000 persons, so that
    the rates in :class:`synthetic.spec.Mortality` etc. are population averages. The same
    constants serve the data and the truth.
    """
    key = spec.model_copy(update={"name": "", "seed": 0, "n_hat": 1, "n_ost": 1}).model_dump_json()
    return _centres(key)


def crime_multiplier(people: People, spec: Scenario) -> np.ndarray:
    """Person-level multiplier of the charge rate: frailty x covariate effects."""
    lp = linear_predictor(spec.crime.coefficients, people.features())
    return people.frailty * np.exp(lp - centres(spec)["crime"])


def multipliers(people: People, spec: Scenario) -> dict[str, np.ndarray]:
    """Person-level multipliers of the discontinuation, mortality and crime rates."""
    feats = people.features()
    c = centres(spec)
    return {
        "treatment": np.exp(linear_predictor(spec.treatment.coefficients, feats) - c["treatment"]),
        "mortality": np.exp(linear_predictor(spec.mortality.coefficients, feats) - c["mortality"]),
        "crime": people.frailty
        * np.exp(linear_predictor(spec.crime.coefficients, feats) - c["crime"]),
    }


# --------------------------------------------------------------------------- history
def choose(rng_u: np.ndarray, shares: dict[str, float]) -> np.ndarray:
    """Medication codes from uniforms and a {medication: share} mapping."""
    names = list(shares)
    cum = np.cumsum([shares[k] for k in names])
    codes = np.array([MEDICATIONS.index(k) for k in names], dtype=np.int8)
    return codes[np.minimum(np.searchsorted(cum, rng_u, side="right"), len(codes) - 1)]


def _history(n: int, years_use: np.ndarray, spec: Scenario, rng) -> dict[str, np.ndarray]:
    tr = spec.treatment
    new_start = rng.random(n) < tr.new_start_share
    career = np.maximum(np.floor(years_use * DAYS_PER_YEAR), 1).astype(np.int64)
    elapsed = 1 + np.floor(rng.exponential(tr.current_episode_mean_years * DAYS_PER_YEAR, n))
    elapsed = np.minimum(elapsed.astype(np.int64), career)
    current_start = np.where(new_start, 0, -elapsed)
    current_med = choose(rng.random(n), tr.ost_medication_shares)
    gap = (
        tr.bridged_gap_days
        + 1
        + np.floor(rng.exponential(tr.previous_gap_mean_years * DAYS_PER_YEAR, n)).astype(np.int64)
    )
    length = np.floor(rng.exponential(tr.previous_episode_mean_years * DAYS_PER_YEAR, n)).astype(
        np.int64
    )
    # the previous episode ends `gap` days before the current one starts (for new starters:
    # before index); only persons with at least one earlier OST episode have one
    prev_end = np.where(new_start, 0, current_start) - gap
    prev_start = np.maximum(prev_end - length, -career)  # not before opioid use began
    return {
        "new_start": new_start,
        "current_start": current_start.astype(np.int64),
        "current_med": current_med,
        "prev_start": prev_start,
        "prev_end": prev_end,
        "prev_med": choose(rng.random(n), tr.ost_medication_shares),
    }


def in_treatment_intervals(people_hist: dict[str, np.ndarray], has_prev: np.ndarray):
    """Half-open [start, end) day intervals in treatment before index: previous, current."""
    prev_s = np.where(has_prev, people_hist["prev_start"], 0)
    prev_e = np.where(has_prev, people_hist["prev_end"] + 1, 0)
    cur_s = people_hist["current_start"]
    cur_e = np.zeros_like(cur_s)  # the ongoing episode covers [current_start, 0)
    return (prev_s, prev_e), (cur_s, cur_e)


def window_days(intervals, w0: int, w1: int) -> np.ndarray:
    """Days of the intervals within the window [w0, w1)."""
    total = 0
    for s, e in intervals:
        total = total + np.maximum(0, np.minimum(e, w1) - np.maximum(s, w0))
    return total


def draw_population(
    n: int,
    spec: Scenario,
    rng: np.random.Generator,
    *,
    region: np.ndarray,
    index_day: np.ndarray,
) -> People:
    """Draw ``n`` persons of the source population with the given regions and index dates.

    Baseline charges (the count in the 730 days before index) are drawn here because
    selection into HAT depends on them; their dates are placed by
    :func:`synthetic.outcomes.history_charges`.
    """
    cov = _covariates(n, spec.population, rng)
    hist = _history(n, cov["years_opioid_use"], spec, rng)
    has_prev = (cov["prior_ost_episodes"] > 0) & (hist["prev_start"] <= hist["prev_end"])
    hist["prev_start"] = np.where(has_prev, hist["prev_start"], NO_DAY)
    hist["prev_end"] = np.where(has_prev, hist["prev_end"], NO_DAY)
    people = People(
        region=region.astype(np.int8),
        index_day=index_day.astype(np.int64),
        baseline_charges=np.zeros(n, dtype=np.int64),
        **cov,
        **hist,
    )
    crime = crime_multiplier(people, spec)
    has_prev = people.prev_start != NO_DAY
    intervals = in_treatment_intervals(hist, has_prev)
    in_days = window_days(intervals, -730, 0)
    rate_in = spec.crime.in_treatment_per_year / DAYS_PER_YEAR
    rate_out = spec.crime.out_of_treatment_per_year / DAYS_PER_YEAR
    mean = crime * (rate_in * in_days + rate_out * (730 - in_days))
    return People(
        **{f.name: getattr(people, f.name) for f in fields(People) if f.name != "baseline_charges"},
        baseline_charges=rng.poisson(mean).astype(np.int64),
    )


def uniform_days(rng, n: int, first, last) -> np.ndarray:
    """Integer days uniform on [first, last] (day numbers)."""
    return np.asarray(first) + np.floor(rng.random(n) * (np.asarray(last) - first + 1)).astype(
        np.int64
    )


def ost_candidates(n: int, spec: Scenario, rng: np.random.Generator) -> People:
    """OST candidates: all regions, index date uniform over the study period."""
    shares = spec.population.region_shares
    cum = np.cumsum([shares.get(r, 0.0) for r in REGIONS])
    region = np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(REGIONS) - 1)
    index_day = uniform_days(
        rng, n, day_number(spec.ost_index_start), day_number(spec.ost_index_end)
    )
    return draw_population(n, spec, rng, region=region, index_day=index_day)


def site_candidates(n: int, spec: Scenario, rng: np.random.Generator) -> People:
    """Source population of the HAT sites: a site by its share, index date uniform from
    the site's start to the last HAT start; covariates as in OST."""
    shares = np.cumsum([s.share for s in spec.sites])
    site = np.minimum(np.searchsorted(shares, rng.random(n), side="right"), len(spec.sites) - 1)
    region = np.array([REGIONS.index(s.region) for s in spec.sites])[site]
    start = np.array([day_number(s.start) for s in spec.sites])[site]
    index_day = uniform_days(rng, n, start, day_number(spec.hat_index_end))
    return draw_population(n, spec, rng, region=region, index_day=index_day)
