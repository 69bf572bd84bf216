"""Parameters of the history-extract generator (data contract version 2): one frozen model.

A history scenario simulates the national OST population in calendar time, week by week,
from a burn-in date to the extract date: entries into OST, discontinuation, interruptions
and re-entry, yearly status forms whose answers change over time, non-fatal overdoses,
charges, prison stays, deaths and emigration; heroin-assisted treatment (HAT) at the sites
from their opening, started by whoever the clinics take in (a hazard that depends on the
person's recorded state and on the sites' capacity). Every number is a field here, with
its meaning and its source (``shared/calibration.md``) or the reason it was chosen; the
realised figures are checked by ``tests/test_synthetic_history.py``.

Hazards of a *reference person* are given: a 45-year-old man without any of the binary
traits, of severity 0 and crime frailty 1, no overdose or charge in the last two years.
The population averages these produce are the calibration targets (see the tests).
Effects of HAT (:class:`synthetic.spec.TrueEffects`) are those of version 1: conditional
on the person's state, acting while in HAT.
"""

from __future__ import annotations

# long: one documented field per parameter of the scenario (meaning and source); the models
# shared with version 1 are in synthetic.spec_base
import datetime as dt
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from synthetic.spec import Emigration, Prison, TrueEffects
from synthetic.spec_base import (
    BaseScenario,
    Charges,
    DeathCauses,
    Region,
    Site,
    TreatmentCourse,
    check_shares,
    default_region_shares,
    default_sites,
    read_scenario,
)
from synthetic.spec_base import Frozen as _Frozen

HISTORY_SCENARIO_DIR = Path(__file__).with_name("scenarios") / "history"

TimeVarying = Literal["injecting", "homeless", "benzodiazepine_use"]


class Coefficients(_Frozen):
    """Log hazard (or rate) ratios on the person's *current* features.

    Features: ``female``; ``age_per_10y`` ((age - 45) / 10); the latent binary states
    ``injecting``, ``homeless``, ``benzodiazepine_use``, ``psychiatric_dx``;
    ``recent_overdose`` (a non-fatal overdose in the last 730 days); ``severity`` (the
    person's latent severity, standard normal); ``frailty`` (log((1 + z) / 2), z the crime
    frailty, 0 at z = 1); ``log1p_charges_2y`` (log(1 + charges in the last 104 weeks));
    ``share_out_of_ost_last_year`` (share of the last 52 weeks not in OST, 0..1).
    """

    female: float = 0.0
    age_per_10y: float = 0.0
    injecting: float = 0.0
    homeless: float = 0.0
    benzodiazepine_use: float = 0.0
    psychiatric_dx: float = 0.0
    recent_overdose: float = 0.0
    severity: float = 0.0
    frailty: float = 0.0
    log1p_charges_2y: float = 0.0
    share_out_of_ost_last_year: float = 0.0


# --------------------------------------------------------------------------- population
class StateProcess(_Frozen):
    """A binary state that switches on and off (a two-state Markov process per person).

    The off-rate is 1 / ``mean_years_on``; the on-rate is set so that the stationary
    prevalence is ``prevalence_in_treatment`` while in treatment and
    ``prevalence_out_of_treatment`` out of it, times exp(``severity_loading`` x severity)
    (centred, so severity spreads it over persons without changing the average much).
    """

    prevalence_in_treatment: float = Field(gt=0, lt=1)
    prevalence_out_of_treatment: float = Field(gt=0, lt=1)
    mean_years_on: float = Field(gt=0)
    severity_loading: float = Field(0.5, description="log on-rate per SD of severity")


def _states() -> dict[TimeVarying, StateProcess]:
    return {
        # SERAF status reports: a minority of patients in OST inject (about a quarter to a
        # third), most of those out of treatment do; spells of injecting last a year or two
        "injecting": StateProcess(
            prevalence_in_treatment=0.30, prevalence_out_of_treatment=0.65, mean_years_on=1.5
        ),
        # SERAF: a small share of OST patients without stable housing; more out of treatment
        "homeless": StateProcess(
            prevalence_in_treatment=0.06, prevalence_out_of_treatment=0.20, mean_years_on=1.0
        ),
        # benzodiazepine co-use is common in Norwegian OST (version 1: 45%)
        "benzodiazepine_use": StateProcess(
            prevalence_in_treatment=0.45, prevalence_out_of_treatment=0.60, mean_years_on=2.0
        ),
    }


class HistoryPopulation(_Frozen):
    """Who is in the registry: the population at the start of the burn-in and new entrants."""

    initial_in_ost: int = Field(
        5900,
        ge=0,
        description="persons in OST at the start of the burn-in (national scale); with the "
        "entrants below, about 7,400 in OST in 2015 rising to about 8,300 in 2023 "
        "(SERAF status reports: 7,554 in 2016, about 7,600-8,300 in 2017-2023)",
    )
    initial_out_of_treatment: int = Field(
        1000,
        ge=0,
        description="earlier OST patients out of treatment at the start of the burn-in "
        "(they may re-enter; the burn-in brings this pool to its steady state)",
    )
    first_entries_per_year: float = Field(
        270.0,
        ge=0,
        description="first-ever OST entries per year (national); with re-entries after "
        "long gaps they give about 800-990 intakes a year (SERAF 2017-2021)",
    )
    pre_entry_years: float = Field(
        2.0,
        ge=0,
        description="new entrants are simulated (out of treatment, never treated) this long "
        "before their first entry, so that their charges, overdoses and prison stays in the "
        "years before entry exist; those who die before entry never enter the registry",
    )
    women_share: float = Field(0.30, gt=0, lt=1, description="OST about 30% women (SERAF)")
    initial_age_mean: float = Field(
        35.0,
        description="mean age at the start of the burn-in (2005); with the entrants the mean "
        "age in OST is about 45 in 2017 and 47 in 2021 (SERAF: 44.9 in 2017, 47 in 2021)",
    )
    entry_age_mean: float = Field(
        30.0, description="mean age at first OST entry (new patients are younger than the mean)"
    )
    age_sd: float = Field(8.5, gt=0, description="spread of age (initial and at entry)")
    age_min: float = Field(19.0, ge=15, description="youngest age drawn (truncated normal)")
    age_max: float = Field(70.0, description="oldest age drawn")
    onset_age_mean: float = Field(
        21.0, description="age at start of opioid use; years_opioid_use counts from it"
    )
    onset_age_sd: float = Field(4.0, gt=0, description="spread of onset age")
    onset_severity: float = Field(-1.5, description="years earlier onset per SD of severity")
    psychiatric_dx_prevalence: float = Field(
        0.35, gt=0, lt=1, description="diagnosed at the start (SERAF: a large share)"
    )
    psychiatric_dx_onset_per_year: float = Field(
        0.02, ge=0, description="new diagnoses per person-year (a diagnosis stays)"
    )
    states: dict[TimeVarying, StateProcess] = Field(
        default_factory=_states,
        description="the time-varying states and how they switch (sources in `_states`)",
    )
    region_shares: dict[Region, float] = Field(
        default_factory=default_region_shares,
        description="OST patients by regional health authority (as version 1)",
    )
    extract_persons: int | None = Field(
        None,
        ge=0,
        description="persons in the extract in all: when larger than the OST registry's "
        "persons, the extract is filled up with persons never in OST in the covered period "
        "(a national linkage beyond the OST registry, e.g. everyone with a drug-related "
        "charge, prison stay or overdose: persons rows, charges, deaths and emigrations, no "
        "episodes or status forms; see synthetic/history_outside.py). They never pass the "
        "trial's rule 4, so they are never candidates; they make the extract national in "
        "size. None: the OST registry's persons only",
    )
    crime_frailty_shape: float = Field(
        2.0,
        gt=0,
        description="shape of the gamma crime frailty of offenders (mean 1 overall); with "
        "`non_offender_share`, about 39% of OST patients have no charge in 3 years and the "
        "top 10% hold about 38% of charges (Bukten 2011)",
    )
    non_offender_share: float = Field(
        0.2, ge=0, lt=1, description="share with frailty 0 (never charged)"
    )

    @model_validator(mode="after")
    def _check(self) -> HistoryPopulation:
        check_shares(self.region_shares, "region_shares")
        if set(self.states) != set(_states()):
            raise ValueError(f"states must list exactly {sorted(_states())}")
        if self.age_max <= self.age_min:
            raise ValueError("age_max must exceed age_min")
        return self


# --------------------------------------------------------------------------- treatment
class HistoryTreatment(TreatmentCourse):
    """Discontinuation, interruptions, re-entry.

    The hazard of an episode ending falls with the time since the spell of continuous
    treatment began (switches between OST and HAT and short interruptions keep the clock;
    an entry after a long gap restarts it), so that HAT acts on it as in version 1: the
    hazard in HAT is ``hr_discontinuation`` x the hazard the person would have in OST,
    plus the hazard of leaving HAT for reasons of HAT itself (:class:`LeavingHat`).
    """

    exit_late_per_year: float = Field(
        0.023,
        gt=0,
        description="hazard of an episode ending long after the regime started (reference "
        "person); with the early excess, about 650 exits a year from about 8,000 in "
        "treatment (SERAF 2017-2021: 620-680)",
    )
    exit_early_excess_per_year: float = Field(
        0.39,
        ge=0,
        description="extra hazard at the start of a regime, decaying with `exit_early_years`: "
        "new OST patients leave often (12-month retention of new spells about 57%, "
        "O'Connor 2020: 57-61%)",
    )
    exit_early_years: float = Field(
        0.75, gt=0, description="time constant of the early excess (exp(-t / this))"
    )
    coefficients: Coefficients = Field(
        default_factory=lambda: Coefficients(
            age_per_10y=-0.15,
            injecting=0.25,
            psychiatric_dx=0.2,
            homeless=0.5,
            benzodiazepine_use=0.25,
            frailty=0.3,
            severity=0.2,
            recent_overdose=0.4,
            log1p_charges_2y=0.25,
        ),
        description="log hazard ratios of an episode ending (as version 1; younger, "
        "unstable, more criminally active patients leave more often; recent overdoses and "
        "charges mark instability; they act on leaving HAT too, see `leaving_hat`)",
    )
    switch_gap_max_days: int = Field(
        7, ge=1, le=30, description="a switch starts the new medication within this many days"
    )
    bridged_gap_days: int = Field(
        30, ge=2, description="the contract's gap rule: gaps of at most this many days bridged"
    )
    reentry_mean_days: float = Field(
        560.0,
        gt=0,
        description="mean time out of treatment beyond the bridged gap before re-entry; "
        "with first entries, about 870 intakes a year (SERAF: 800-990), which with the "
        "exits keep about 7,550 in OST in 2016 rising to about 8,250 in 2023",
    )


class HatUptake(_Frozen):
    """Who starts HAT, when: capacity spread over eligible persons by their weights.

    A person in a site's region, aged at least ``min_age``, never in HAT, not in prison, is
    eligible from the site's opening: in OST (an episode that began before the week) or
    out of treatment after earlier OST. In each week the site starts on average
    ``starts_per_year / 52.18`` persons (x the population scale), a share
    ``share_from_outside`` from out of treatment; a person's hazard is that rate times its
    weight exp(coefficients . features) over the sum of the weights of the eligible persons
    of its pool (OST or out of treatment) at the site. The weights use what the clinic
    knows: the answers of the latest status form (``injecting``, ``homeless``,
    ``psychiatric_dx``, ``benzodiazepine_use``; missing = 0), recent overdose, charges in
    the last two years and time out of OST in the last year (poor retention), age and sex.
    These are what a version-2 analysis can measure (up to missing answers and the exact
    windows), so adjustment can remove the confounding they cause.
    """

    starts_per_year: dict[str, float] = Field(
        default_factory=lambda: {"Oslo": 30.0, "Bergen": 20.0},
        description="starts per year by site: about 100 in the first two years, about 250 "
        "by the end of 2026 (planned about 250: Oslo about 100, Bergen 50-100; SERAF "
        "midway report 2024)",
    )
    share_from_outside: float = Field(
        0.15,
        ge=0,
        lt=1,
        description="share of starts by persons out of treatment (earlier OST patients); "
        "most switch straight from OST (protocol: earlier OST required)",
    )
    min_age: float = Field(20.0, ge=18, description="minimum age for HAT (protocol)")
    switch_gap_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="share of switches from OST with a few days (1-5) without medication "
        "between the OST episode and HAT; the others switch the next day",
    )
    coefficients: Coefficients = Field(
        default_factory=lambda: Coefficients(
            female=-0.6,  # OST about 30% women, HAT about 20% (SERAF; Melis et al.)
            age_per_10y=-0.1,  # HAT 45.9 at admission (Melis et al.)
            injecting=0.9,
            homeless=0.6,
            psychiatric_dx=0.4,
            benzodiazepine_use=0.4,
            recent_overdose=0.8,
            log1p_charges_2y=0.45,  # 44% crime in the 3 months before entry (Melis)
            share_out_of_ost_last_year=2.5,  # poor retention in OST: recent re-entrants
        ),
        description="log weights of starting HAT (the version-1 selection coefficients, "
        "on the recorded time-varying state)",
    )


class LeavingHat(_Frozen):
    """Leaving HAT for reasons of HAT itself, on top of the discontinuation hazard.

    HAT is demanding: supervised doses at the clinic two or three times a day, every day
    (Oviedo-Joekes et al. 2014, Subst Abuse Treat Prev Policy 9:23: many who leave HAT
    transfer to oral methadone for that reason). So a HAT episode ends at the hazard
    ``effects.hr_discontinuation`` x the hazard the person would have in OST (the spell's
    clock, as version 1) *plus* ``(late_per_year + early_per_year x exp(-t /
    early_years))`` x exp(the person's discontinuation predictor, ``treatment.
    coefficients``), t the time since the HAT episode began. Both kinds of ending follow
    ``treatment``'s rules for HAT endings: ``hat_switch_share`` are switches to methadone
    within a week, of the others ``hat_short_interruption_share`` come back within 30 days,
    the rest leave treatment (``hat_return_share`` of them later back to HAT).

    Published HAT retention falls mostly in the first year: 88% still in injectable heroin
    at 26 weeks (RIOTT, Strang et al. 2010, Lancet), 67% at 12 months (German trial,
    Haasen et al. 2007, Br J Psychiatry), more than 70% of 1,969 Swiss starters over a
    year (Rehm et al. 2001, Lancet), then slower: 56% of Dutch responders after 4 years
    (Blanken et al. 2010, Addiction). The level is set to the Norwegian figure: about 30
    of about 100 starters left within 2 years, half of them to ordinary OST (SERAF midway
    report 2024); the discontinuation hazard alone gives about 11% (HAT's initiators are
    mostly long-term OST patients, whose spell hazard is low).
    """

    early_per_year: float = Field(
        0.16,
        ge=0,
        description="hazard of leaving HAT at the start of a HAT episode (reference person, "
        "per year; HAT's initiators carry about 3 times the reference risk), decaying with "
        "`early_years`; with the discontinuation hazard about 30% of starters leave HAT "
        "within 2 years, about half of them to ordinary OST (SERAF midway report 2024)",
    )
    early_years: float = Field(
        0.5,
        gt=0,
        description="time constant of the early hazard (exp(-t / this)): most leaving "
        "in the first year (RIOTT 12% by 26 weeks; Haasen 33% by 12 months)",
    )
    late_per_year: float = Field(
        0.0,
        ge=0,
        description="hazard of leaving HAT long after the start besides the discontinuation "
        "hazard (0: later leaving is the discontinuation hazard alone, as Blanken 2010's "
        "slow decline after the first year suggests)",
    )


class HistoryMortality(DeathCauses):
    """Deaths: hazards by treatment state (reference person), current features and cause."""

    in_treatment_per_1000py: float = Field(
        8.0,
        gt=0,
        description="reference person; realised about 14 per 1000 PY in OST (Norway about "
        "1.4%/year in OST, Clausen 2008; Sordo 2017: 11.3 in methadone)",
    )
    out_of_treatment_per_1000py: float = Field(
        16.5,
        gt=0,
        description="reference person; realised about 35 per 1000 PY out of treatment "
        "(Clausen 2008: 3.5%/year after leaving; Sordo 2017: 36.1)",
    )
    leaving_spike_days: int = Field(28, gt=0, description="weeks 1-4 after leaving (Cornish)")
    coefficients: Coefficients = Field(
        default_factory=lambda: Coefficients(
            female=-0.2,
            age_per_10y=0.35,
            injecting=0.3,
            psychiatric_dx=0.25,
            homeless=0.35,
            recent_overdose=0.5,
            benzodiazepine_use=0.3,
            frailty=0.2,
        ),
        description="log hazard ratios of death (as version 1)",
    )


class NonFatalOverdose(_Frozen):
    """Non-fatal overdoses (the ``overdoses`` table): a Poisson process."""

    in_treatment_per_year: float = Field(
        0.035,
        gt=0,
        description="reference person; about 15% of OST patients with an overdose in the "
        "last two years (version 1's prior_overdose prevalence)",
    )
    out_of_treatment_per_year: float = Field(
        0.15, gt=0, description="reference person; street opioid use out of treatment"
    )
    hat_rate_ratio: float = Field(
        0.7,
        gt=0,
        description="in HAT vs in OST: assumed equal to the mortality hazard ratio (less "
        "street heroin; Ferri 2011 RR 0.65 for mortality)",
    )
    coefficients: Coefficients = Field(
        default_factory=lambda: Coefficients(
            female=-0.3,
            injecting=0.7,
            benzodiazepine_use=0.5,
            homeless=0.5,
            psychiatric_dx=0.2,
            recent_overdose=0.7,
            severity=0.2,
        ),
        description="log rate ratios (injecting and benzodiazepines raise the risk)",
    )


class HistoryCrime(Charges):
    """Police-registered charges: Poisson given the gamma frailty (overdispersed)."""

    out_of_treatment_per_year: float = Field(
        0.75,
        gt=0,
        description="reference person (frailty 1); realised about 1.5-1.6 per PY out of "
        "treatment after a first entry (Bukten 2012: 1.57 convictions per PY before OST)",
    )
    in_treatment_per_year: float = Field(
        0.6,
        gt=0,
        description="reference person; realised about 0.6 per PY in treatment (Bukten "
        "2012: 0.63 during OST, 0.47 if continuous)",
    )
    coefficients: Coefficients = Field(
        default_factory=lambda: Coefficients(
            female=-0.5,
            age_per_10y=-0.3,
            injecting=0.3,
            psychiatric_dx=0.1,
            homeless=0.4,
            benzodiazepine_use=0.2,
        ),
        description="log rate ratios of charges besides the frailty (as version 1)",
    )


class Assessments(_Frozen):
    """Yearly status forms of persons in treatment (the ``assessments`` table)."""

    form_share: float = Field(
        0.85,
        ge=0,
        le=1,
        description="share of yearly forms filled for persons in treatment on their "
        "form's day (the SERAF status forms are not complete)",
    )
    missing_answer_share: dict[str, float] = Field(
        default_factory=lambda: {
            "years_opioid_use": 0.10,
            "injecting": 0.06,
            "psychiatric_dx": 0.12,
            "homeless": 0.05,
            "benzodiazepine_use": 0.08,
        },
        description="share of each answer left empty on a filled form (version 1's missing shares)",
    )

    @model_validator(mode="after")
    def _check(self) -> Assessments:
        allowed = {
            "years_opioid_use",
            "injecting",
            "psychiatric_dx",
            "homeless",
            "benzodiazepine_use",
        }
        if set(self.missing_answer_share) != allowed:
            raise ValueError(f"missing_answer_share must list exactly {sorted(allowed)}")
        return self


class HistoryTruthSettings(_Frozen):
    """How the true effects are computed (see ``synthetic/history_truth.py``)."""

    population_scale: float = Field(
        20.0,
        gt=0,
        description="the truth simulates the sites' regions at this multiple of the national "
        "population (and of the sites' capacity), for many initiators",
    )
    n_batches: int = Field(
        10, ge=2, description="batches of initiators; their spread gives the Monte Carlo error"
    )
    seed: int = Field(
        20240301,
        ge=0,
        description="fixed: the truth is a property of the scenario, not of the data's seed",
    )


class HistoryScenario(BaseScenario):
    """A history scenario (data contract version 2)."""

    NOT_IN_TRUTH: ClassVar[tuple[str, ...]] = ("name", "description", "seed", "scale")

    description: str = "national OST population 2015-2026 with HAT from 2022, confounded uptake"
    scale: float = Field(
        1.0, gt=0, description="population size and HAT capacity relative to Norway"
    )
    history_start: dt.date = Field(
        dt.date(2015, 1, 1), description="first day the registries cover (contract)"
    )
    burn_in_years: int = Field(
        10,
        ge=1,
        description="years simulated before history_start so that episodes, states and "
        "the out-of-treatment pool are at their steady state when the registries begin",
    )
    sites: tuple[Site, ...] = Field(
        default_factory=default_sites,
        description="HAT sites and opening dates (protocol); `share` is not used here",
    )
    population: HistoryPopulation = Field(default_factory=HistoryPopulation)
    treatment: HistoryTreatment = Field(default_factory=HistoryTreatment)
    hat: HatUptake = Field(default_factory=HatUptake)
    leaving_hat: LeavingHat = Field(default_factory=LeavingHat)
    mortality: HistoryMortality = Field(default_factory=HistoryMortality)
    overdose: NonFatalOverdose = Field(default_factory=NonFatalOverdose)
    crime: HistoryCrime = Field(default_factory=HistoryCrime)
    prison: Prison = Field(default_factory=Prison)
    emigration: Emigration = Field(default_factory=Emigration)
    assessments: Assessments = Field(default_factory=Assessments)
    effects: TrueEffects = Field(default_factory=TrueEffects)
    truth: HistoryTruthSettings = Field(default_factory=HistoryTruthSettings)

    @model_validator(mode="after")
    def _check_sites(self) -> HistoryScenario:
        if not self.history_start < self.extract_date:
            raise ValueError("history_start must be before extract_date")
        cities = {s.city for s in self.sites}
        if set(self.hat.starts_per_year) != cities:
            raise ValueError(f"hat.starts_per_year must list exactly the sites {sorted(cities)}")
        if len({s.region for s in self.sites}) != len(self.sites):
            raise ValueError("one site per region")
        return self


def history_scenario_names() -> list[str]:
    """Names of the bundled history scenarios."""
    return sorted(p.stem for p in HISTORY_SCENARIO_DIR.glob("*.yml"))


def load_history_scenario(
    scenario: str | Path = "default", *, seed: int | None = None
) -> HistoryScenario:
    """Load a bundled history scenario by name, or a YAML file by path.

    Parameters
    ----------
    scenario : str or path-like
        ``default``, ``ci`` (in ``synthetic/scenarios/history/``) or a path to a YAML file.
    seed : int, optional
        Override of the scenario's seed.

    Raises
    ------
    ScenarioError
        Unknown scenario, unknown key or invalid value (the message names the key).
    """
    return read_scenario(
        scenario,
        directory=HISTORY_SCENARIO_DIR,
        model=HistoryScenario,
        what="history scenario",
        overrides={"seed": seed},
    )


__all__ = [
    "Assessments",
    "Coefficients",
    "HatUptake",
    "HistoryCrime",
    "HistoryMortality",
    "HistoryPopulation",
    "HistoryScenario",
    "HistoryTreatment",
    "HistoryTruthSettings",
    "LeavingHat",
    "NonFatalOverdose",
    "StateProcess",
    "history_scenario_names",
    "load_history_scenario",
]
