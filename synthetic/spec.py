"""Scenario parameters of the synthetic generator: one validated, frozen model.

Every number the generator uses is a field here, with its default, its meaning and its
source (``shared/calibration.md``) or the reason it was chosen. A scenario file
(``synthetic/scenarios/<name>.yml``) only overrides some of them; unknown keys are
refused, so a typo fails loudly with the key's name.

Rates are *population averages* over the OST candidate population (the covariate effects
are centred so that the mean multiplier is 1 there); effects of HAT are *conditional*
(given covariates and the person's frailty, at the same time since index).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from analysis.data.contract import REGIONS
from synthetic.missingness import Missing
from synthetic.spec_base import (
    BaseScenario,
    BinaryCovariate,
    Charges,
    DeathCauses,
    OstMedication,
    Region,
    ScenarioError,
    Site,
    TreatmentCourse,
    check_shares,
    default_region_shares,
    default_sites,
    read_scenario,
)
from synthetic.spec_base import Frozen as _Frozen

SCENARIO_DIR = Path(__file__).with_name("scenarios")


# --------------------------------------------------------------------------- covariate effects
class Effects(_Frozen):
    """Coefficients of a log-linear (or logit) model on the baseline features.

    Features: ``female`` (0/1), ``age_per_10y`` ((age - 45) / 10), ``years_opioid_use_per_10y``
    ((years - 20) / 10), ``prior_ost_episodes`` (count, capped at 10), the five binary
    covariates, ``frailty`` (log(1 + z), z the person's gamma crime frailty) and
    ``log1p_baseline_charges`` (log(1 + charges in the 730 days before index); used only
    by selection).
    """

    female: float = 0.0
    age_per_10y: float = 0.0
    years_opioid_use_per_10y: float = 0.0
    prior_ost_episodes: float = 0.0
    injecting: float = 0.0
    psychiatric_dx: float = 0.0
    homeless: float = 0.0
    prior_overdose: float = 0.0
    benzodiazepine_use: float = 0.0
    frailty: float = 0.0
    log1p_baseline_charges: float = 0.0


# --------------------------------------------------------------------------- population
class Binary(_Frozen):
    """A binary covariate: 1[rho * S + sqrt(1 - rho^2) * e > q], S the latent severity."""

    prevalence: float = Field(gt=0, lt=1, description="share with the trait in OST")
    loading: float = Field(
        ge=-0.95, le=0.95, description="correlation of the latent trait with severity S"
    )


def _binaries() -> dict[str, Binary]:
    return {
        # SERAF status reports: most patients have injected; about half inject at admission
        "injecting": Binary(prevalence=0.55, loading=0.5),
        # SERAF: a large share have a psychiatric diagnosis besides the opioid dependence
        "psychiatric_dx": Binary(prevalence=0.40, loading=0.35),
        # SERAF: a small share have no stable housing
        "homeless": Binary(prevalence=0.08, loading=0.5),
        # non-fatal overdose in the previous 2 years (contract definition)
        "prior_overdose": Binary(prevalence=0.15, loading=0.55),
        # benzodiazepine co-use is common in Norwegian OST
        "benzodiazepine_use": Binary(prevalence=0.45, loading=0.45),
    }


def _missing() -> dict[str, Missing]:
    # a few % to ~15% per covariate (brief); the less routinely recorded ones more often
    return {
        "years_opioid_use": Missing(share=0.10, mechanism="MAR"),
        "prior_ost_episodes": Missing(share=0.03, mechanism="MCAR"),
        "injecting": Missing(share=0.06, mechanism="MAR"),
        "psychiatric_dx": Missing(share=0.12, mechanism="MCAR"),
        "homeless": Missing(share=0.05, mechanism="MAR"),
        "prior_overdose": Missing(share=0.15, mechanism="MAR"),
        "benzodiazepine_use": Missing(share=0.08, mechanism="MCAR"),
    }


class Population(_Frozen):
    """Baseline covariates of the source population (OST patients and HAT candidates)."""

    women_share: float = Field(0.30, gt=0, lt=1, description="OST about 30% women (SERAF)")
    age_mean: float = Field(
        45.0, description="mean age at index: OST 44.9 (2017) rising to 47 (2021) (SERAF)"
    )
    age_sd: float = Field(9.5, gt=0, description="spread of age; keeps ages mostly 25-65")
    age_min: float = Field(20.0, ge=15, description="youngest age at index (truncated normal)")
    age_max: float = Field(75.0, description="oldest age at index (truncated normal)")
    onset_age_mean: float = Field(
        21.0, description="age at start of opioid use; years_opioid_use = age - onset"
    )
    onset_age_sd: float = Field(5.0, gt=0, description="spread of onset age")
    onset_severity: float = Field(-1.5, description="years earlier onset per SD of latent severity")
    prior_ost_mean: float = Field(
        1.5, ge=0, description="mean number of earlier OST episodes (Poisson)"
    )
    prior_ost_severity: float = Field(
        0.35, description="log-mean change of prior OST episodes per SD of severity"
    )
    binaries: dict[BinaryCovariate, Binary] = Field(default_factory=_binaries)
    region_shares: dict[Region, float] = Field(
        default_factory=default_region_shares,
        description="OST patients by regional health authority (roughly population shares)",
    )
    crime_frailty_shape: float = Field(
        1.5,
        gt=0,
        description="shape k of the gamma crime frailty z of offenders (variance 1/k among "
        "them); with `non_offender_share`, chosen so that about 39% have no charge in 3 "
        "years and the top 10% hold about 38% of charges (Bukten 2011)",
    )
    non_offender_share: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="share with frailty 0 (never charged); the others' frailty is "
        "gamma(k, 1/(k(1 - share))) so that z has mean 1",
    )
    missing: dict[str, Missing] = Field(default_factory=_missing)

    @model_validator(mode="after")
    def _check(self) -> Population:
        check_shares(self.region_shares, "region_shares")
        if set(self.binaries) != set(_binaries()):
            raise ValueError(f"binaries must list exactly {sorted(_binaries())}")
        allowed = {"years_opioid_use", "prior_ost_episodes", *_binaries()}
        unknown = set(self.missing) - allowed
        if unknown:
            raise ValueError(f"missing: unknown covariates {sorted(unknown)}")
        if self.age_max <= self.age_min:
            raise ValueError("age_max must exceed age_min")
        return self


# --------------------------------------------------------------------------- HAT and selection
class Selection(_Frozen):
    """Who enters HAT: P(select | X) = expit(intercept + coefficients . features).

    HAT patients are drawn from the source population of the sites' regions by rejection
    sampling with this probability, so their covariate distribution is the source
    distribution tilted towards the sicker, more criminally active and more injecting.
    """

    intercept: float = Field(
        -4.0,
        description="sets the sampling fraction (about 10% of the sites' candidates); "
        "small, so the selected distribution is nearly the source tilted by exp(lp)",
    )
    coefficients: Effects = Field(
        default_factory=lambda: Effects(
            female=-0.6,  # OST about 30% women, HAT about 20% (SERAF; Melis et al.)
            age_per_10y=-0.1,  # with longer careers: HAT 45.9 at admission (Melis et al.)
            years_opioid_use_per_10y=0.3,  # treatment-refractory, long careers
            prior_ost_episodes=0.15,  # several failed OST attempts
            injecting=0.9,
            psychiatric_dx=0.4,
            homeless=0.6,
            prior_overdose=0.7,
            benzodiazepine_use=0.4,
            log1p_baseline_charges=0.45,  # 44% crime in the 3 months before entry (Melis)
        ),
        description="log-odds of entering HAT; unmeasured frailty acts only through the "
        "observed baseline charges, so adjustment for the covariates removes confounding",
    )
    pool_batch: int = Field(
        20_000, ge=1000, description="candidates drawn per rejection-sampling round"
    )


# --------------------------------------------------------------------------- treatment course
class Treatment(TreatmentCourse):
    """Treatment episodes: discontinuation, interruptions, switches and re-entry."""

    ost_exit_per_year: float = Field(
        0.58,
        gt=0,
        description="hazard of an OST episode ending (per person-year, population average); "
        "with the interruptions below it gives 12-month spell retention of about 60% in "
        "HAT-like OST patients (O'Connor 2020: 57-61%; NAOMI 54%)",
    )
    switch_gap_max_days: float = Field(
        7.0, ge=1, le=30, description="a switch starts the new medication within this many days"
    )
    bridged_gap_days: int = Field(
        30, ge=1, description="the contract's gap rule: gaps of at most this many days are bridged"
    )
    reentry_mean_days: float = Field(
        400.0,
        gt=0,
        description="mean time out of treatment beyond the bridged gap before re-entry "
        "(about 900 intakes vs 650 exits per year in about 8,000: SERAF)",
    )
    new_start_share: float = Field(
        0.12,
        ge=0,
        le=1,
        description="share whose OST (or, for HAT patients, treatment) starts on the index "
        "date after time out of treatment: about 900 intakes a year in about 8,000 (SERAF)",
    )
    current_episode_mean_years: float = Field(
        4.0, gt=0, description="mean time in the ongoing episode at index (exponential)"
    )
    previous_episode_mean_years: float = Field(
        2.0, gt=0, description="mean length of the previous OST episode"
    )
    previous_gap_mean_years: float = Field(
        1.0, gt=0, description="mean gap (beyond 30 days) between previous and current episode"
    )
    coefficients: Effects = Field(
        default_factory=lambda: Effects(
            age_per_10y=-0.15,
            prior_ost_episodes=0.08,
            injecting=0.25,
            psychiatric_dx=0.2,
            homeless=0.5,
            benzodiazepine_use=0.25,
            frailty=0.3,
        ),
        description="log hazard ratios of an episode ending (younger, unstable, more "
        "criminally active patients leave more often)",
    )
    max_cycles: int = Field(
        200, ge=1, description="safety bound on episode cycles per person (never reached)"
    )


class Mortality(DeathCauses):
    """Deaths: hazards by treatment state, covariates and cause."""

    in_treatment_per_1000py: float = Field(
        14.0,
        gt=0,
        description="Norway about 1.4%/year in OST (Clausen 2008); Sordo 2017: 11.3 in methadone",
    )
    out_of_treatment_per_1000py: float = Field(
        35.0,
        gt=0,
        description="Norway 3.5%/year after leaving (Clausen 2008); Sordo 2017: 36.1 out of methadone",
    )
    leaving_spike_days: float = Field(28.0, gt=0, description="weeks 1-4 after leaving (Cornish)")
    coefficients: Effects = Field(
        default_factory=lambda: Effects(
            female=-0.2,
            age_per_10y=0.35,
            injecting=0.3,
            psychiatric_dx=0.25,
            homeless=0.35,
            prior_overdose=0.5,
            benzodiazepine_use=0.3,
            frailty=0.2,
        ),
        description="log hazard ratios of death",
    )


class Crime(Charges):
    """Police-registered charges: a Poisson process given a gamma frailty (overdispersed)."""

    out_of_treatment_per_year: float = Field(
        1.3,
        gt=0,
        description="average over the OST population; those out of treatment are the "
        "more criminally active, so the realised rate out of treatment is about 1.57 per "
        "PY (Bukten 2012: 1.57 convictions per PY before OST)",
    )
    in_treatment_per_year: float = Field(
        0.65,
        gt=0,
        description="average over the OST population; realised about 0.6 per PY in "
        "treatment (Bukten 2012: 0.63 during OST, 0.47 if continuous)",
    )
    history_days: int = Field(
        1095, ge=730, description="charges are generated from this many days before index"
    )
    coefficients: Effects = Field(
        default_factory=lambda: Effects(
            female=-0.5,
            age_per_10y=-0.3,
            injecting=0.3,
            psychiatric_dx=0.1,
            homeless=0.4,
            benzodiazepine_use=0.2,
        ),
        description="log rate ratios of charges (besides the gamma frailty)",
    )


class Prison(_Frozen):
    """Prison stays: entries proportional to the crime intensity, no charges inside."""

    stays_per_charge: float = Field(
        0.05,
        ge=0,
        description="prison entries per expected charge; so HAT lowers incarceration as it "
        "lowers crime (Ferri 2010: RR 0.64)",
    )
    median_days: float = Field(45.0, gt=0, description="median stay (short sentences, custody)")
    sigma: float = Field(1.0, gt=0, description="log-normal spread of stay lengths")
    max_days: int = Field(1095, ge=1, description="longest stay")


class Emigration(_Frozen):
    """Emigration, which ends follow-up."""

    per_1000py: float = Field(2.0, ge=0, description="small emigration rate; censors follow-up")


class TrueEffects(_Frozen):
    """True conditional effects of HAT versus OST (given covariates and frailty)."""

    hr_discontinuation: float = Field(
        0.33,
        gt=0,
        description="hazard ratio of a HAT episode ending vs an OST episode; gives "
        "12-month retention about 86% HAT vs 59% matched OST (NAOMI 87.8% vs 54.1%) and "
        "about 35% leaving HAT within 2 years (SERAF midway report: about 30 of 100)",
    )
    hr_mortality: float = Field(
        0.7,
        gt=0,
        description="in-treatment mortality hazard ratio HAT vs OST (Ferri 2011: RR 0.65)",
    )
    overdose_share_ratio: float = Field(
        1.0,
        gt=0,
        description="overdose share of in-HAT deaths relative to in-OST deaths (1: the "
        "cause-specific HRs equal hr_mortality)",
    )
    irr_crime: float = Field(
        0.55,
        gt=0,
        description="charge rate ratio in HAT vs in OST (Smart & Reuter 2022: median OR 0.45)",
    )


class TruthSettings(_Frozen):
    """How the true (marginal, ATT) effects are computed from potential outcomes."""

    n_treated: int = Field(
        200_000, ge=1000, description="treated persons drawn from the HAT distribution"
    )
    n_batches: int = Field(
        10, ge=2, description="independent batches; their spread gives the Monte Carlo error"
    )
    pool_factor: int = Field(
        4, ge=1, description="candidates per treated person for sampling-importance-resampling"
    )
    seed: int = Field(
        20240229,
        ge=0,
        description="fixed: the truth is a property of the scenario, not of the seed",
    )
    matched_k: int = Field(
        4, ge=1, description="controls per HAT patient when approximating a study's SE"
    )


class Scenario(BaseScenario):
    """A synthetic scenario: sizes, calendar and every data-generating parameter."""

    NOT_IN_TRUTH: ClassVar[tuple[str, ...]] = ("name", "description", "seed", "n_hat", "n_ost")

    description: str = "Norwegian HAT pilot with confounded selection and known truth"
    n_hat: int = Field(400, ge=1, description="HAT patients (400 announced in 2019)")
    n_ost: int = Field(
        8000, ge=1, description="OST candidates: about 7,600-8,300 in OST (SERAF 2017-2023)"
    )
    hat_index_end: dt.date = Field(
        dt.date(2025, 12, 31), description="last possible HAT start (starts spread 2022-2025)"
    )
    ost_index_start: dt.date = Field(
        dt.date(2022, 1, 1), description="OST candidates' index dates: uniform from"
    )
    ost_index_end: dt.date = Field(dt.date(2025, 12, 31), description="... to")
    sites: tuple[Site, ...] = Field(default_factory=default_sites)
    population: Population = Field(default_factory=Population)
    selection: Selection = Field(default_factory=Selection)
    treatment: Treatment = Field(default_factory=Treatment)
    mortality: Mortality = Field(default_factory=Mortality)
    crime: Crime = Field(default_factory=Crime)
    prison: Prison = Field(default_factory=Prison)
    emigration: Emigration = Field(default_factory=Emigration)
    effects: TrueEffects = Field(default_factory=TrueEffects)
    truth: TruthSettings = Field(default_factory=TruthSettings)

    @model_validator(mode="after")
    def _check_calendar(self) -> Scenario:
        if abs(sum(s.share for s in self.sites) - 1) > 1e-9:
            raise ValueError("sites: shares must sum to 1")
        for site in self.sites:
            if not site.start <= self.hat_index_end:
                raise ValueError(f"site {site.city}: start after hat_index_end")
        if not self.ost_index_start <= self.ost_index_end:
            raise ValueError("ost_index_start after ost_index_end")
        if max(self.hat_index_end, self.ost_index_end) > self.extract_date:
            raise ValueError("index dates must not be after extract_date")
        if self.treatment.bridged_gap_days < 2:
            raise ValueError("treatment.bridged_gap_days must be at least 2")
        return self


def scenario_names() -> list[str]:
    """Names of the bundled scenarios."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yml"))


def load_scenario(
    scenario: str | Path = "default",
    *,
    seed: int | None = None,
    n_hat: int | None = None,
    n_ost: int | None = None,
) -> Scenario:
    """Load a bundled scenario by name, or a scenario YAML file by path.

    Parameters
    ----------
    scenario : str or path-like
        ``default``, ``pilot``, ``null``, ``large``, ``ci`` or a path to a YAML file.
    seed, n_hat, n_ost : int, optional
        Overrides (``None`` keeps the scenario's value).

    Returns
    -------
    Scenario

    Raises
    ------
    ScenarioError
        Unknown scenario, unknown key or invalid value (the message names the key).
    """
    return read_scenario(
        scenario,
        directory=SCENARIO_DIR,
        model=Scenario,
        what="scenario",
        overrides={"seed": seed, "n_hat": n_hat, "n_ost": n_ost},
    )


__all__ = [
    "REGIONS",
    "BinaryCovariate",
    "Crime",
    "Effects",
    "Emigration",
    "Mortality",
    "OstMedication",
    "Population",
    "Prison",
    "Region",
    "Scenario",
    "ScenarioError",
    "Selection",
    "Site",
    "Treatment",
    "TrueEffects",
    "TruthSettings",
    "load_scenario",
    "scenario_names",
]
