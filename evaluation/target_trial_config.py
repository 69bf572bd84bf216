"""The target trial's protocol as configuration (``target_trial:`` in the study's YAML).

Used for version-2 (history) extracts only; a version-1 extract ignores it. Each component
follows the TARGET reporting guideline's protocol table (Cashin et al. 2025): eligibility,
treatment strategies, assignment, time zero, outcomes, causal contrasts and the analysis
plan. The protocol's defaults are the data contract's bracketed defaults.

References
----------
Hernán MA, Robins JM (2016). Using big data to emulate a target trial when a randomized
trial is not available. *Am J Epidemiol* 183(8):758-764.

Cashin AG, Hansford HJ, Hernán MA, et al. (2025). Transparent reporting of observational
studies emulating a target trial: the TARGET guideline. *JAMA* 334(12):1084-1093.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from analysis.data.contract import BOOLEAN_COVARIATES, OUTCOMES, PRIMARY_OUTCOMES, REGIONS
from analysis.data.risk_sets import COVARIATE_COLUMNS

#: covariates on the date that the propensity model may use
TARGET_TRIAL_COVARIATES: tuple[str, ...] = COVARIATE_COLUMNS
#: columns on which risk-set matching may be exact (besides the risk set itself)
TARGET_TRIAL_EXACT: tuple[str, ...] = ("region", "sex", *BOOLEAN_COVARIATES)
#: time-varying covariates the censoring (HAT-start) model of the per-protocol analysis may use
CENSORING_COVARIATES: tuple[str, ...] = (
    *COVARIATE_COLUMNS,
    "in_index_spell",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EligibilityConfig(_Frozen):
    """Who could be in the trial on a date (the contract's rules 1-6)."""

    min_age: int = Field(18, ge=0, le=100, description="minimum age (year of date - birth year)")
    lookback_days: int = Field(
        730, ge=1, description="covariate window before the date; must lie inside the registries"
    )
    recent_ost_days: int = Field(
        7, ge=1, description="an OST episode covers one of the days before the date"
    )
    regions: tuple[str, ...] | None = Field(
        None, description="eligible regions; null: those where an analysed initiator lives"
    )

    @field_validator("regions")
    @classmethod
    def _known_regions(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            unknown = [r for r in value if r not in REGIONS]
            if unknown:
                raise ValueError(f"unknown regions {unknown}; allowed: {list(REGIONS)}")
            if not value:
                raise ValueError("regions: give at least one, or null for the HAT regions")
        return value


class StrategiesConfig(_Frozen):
    """The two treatment strategies compared (described in the protocol table)."""

    treatment: str = Field(
        "initiate HAT (prescribed diacetylmorphine) on the index date",
        min_length=1,
        description="strategy of the initiators",
    )
    comparator: str = Field(
        "do not initiate HAT on the index date (stay in OST); per protocol: never initiate HAT",
        min_length=1,
        description="strategy of the comparators",
    )


class TrialAnalysisConfig(_Frozen):
    """Risk-set matching: propensity model on the stacked risk sets, 1:k nearest neighbour."""

    k: int = Field(4, ge=1, le=20, description="comparators per initiator (1:k)")
    caliper: float = Field(
        0.2, gt=0, description="caliper in SD of the logit of the score (Austin 2011)"
    )
    exact: tuple[str, ...] = Field(
        ("region",), description="columns matched exactly (besides the risk set)"
    )
    covariates: tuple[str, ...] = Field(
        tuple(c for c in COVARIATE_COLUMNS if c != "region") + ("region",),
        description="covariates on the date in the propensity model",
    )
    calendar_time: bool = Field(
        True,
        description="calendar time of the index date (years since the first analysed index "
        "date, restricted cubic spline) in the propensity model",
    )

    @field_validator("exact")
    @classmethod
    def _known_exact(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in TARGET_TRIAL_EXACT]
        if unknown:
            raise ValueError(
                f"cannot match exactly on {unknown}; allowed: {list(TARGET_TRIAL_EXACT)}"
            )
        return value

    @field_validator("covariates")
    @classmethod
    def _known_covariates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in TARGET_TRIAL_COVARIATES]
        if unknown:
            raise ValueError(
                f"unknown covariates {unknown}; allowed: {list(TARGET_TRIAL_COVARIATES)}"
            )
        return value


class PerProtocolConfig(_Frozen):
    """Inverse probability of censoring weights for the per-protocol contrast."""

    interval_days: int = Field(
        30, ge=1, le=365, description="length of the follow-up intervals of the censoring model"
    )
    covariates: tuple[str, ...] = Field(
        (
            "age",
            "sex",
            "injecting",
            "homeless",
            "psychiatric_dx",
            "benzodiazepine_use",
            "prior_overdose",
            "days_in_ost_last_year",
            "baseline_charges",
            "in_index_spell",
        ),
        description="covariates of the censoring model, updated at each interval's start",
    )
    truncate: float = Field(
        0.99,
        gt=0.5,
        le=1.0,
        description="weights truncated at this quantile and at 1 minus it (1: not truncated)",
    )
    bootstrap: int = Field(
        200, ge=0, description="bootstrap replicates over persons (censoring model refitted)"
    )

    @field_validator("covariates")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in CENSORING_COVARIATES]
        if unknown:
            raise ValueError(f"unknown covariates {unknown}; allowed: {list(CENSORING_COVARIATES)}")
        return value


class TrialSensitivityConfig(_Frozen):
    """Comparisons that show what the emulation changes (``primary: false``)."""

    naive: bool = Field(True, description="initiators vs everyone in OST on a fixed date")
    naive_date: str = Field(
        "2022-01-01", pattern=r"^\d{4}-\d{2}-\d{2}$", description="the naive comparison's date"
    )
    prevalent: bool = Field(
        True,
        description="version 1's design: initiators vs prevalent OST patients on a random "
        "date each, matched",
    )


class TargetTrialConfig(_Frozen):
    """The protocol of the emulated target trial (contract version 2)."""

    eligibility: EligibilityConfig = EligibilityConfig()
    strategies: StrategiesConfig = StrategiesConfig()
    grace_period_days: int = Field(
        0, ge=0, le=0, description="grace period for starting HAT (only 0 is implemented)"
    )
    time_zero: Literal["hat_start"] = Field(
        "hat_start",
        description="the initiator's first HAT day; the same date for its comparators",
    )
    outcomes: tuple[str, ...] = Field(OUTCOMES, description="outcomes analysed")
    contrasts: tuple[Literal["itt", "per_protocol"], ...] = Field(
        ("itt", "per_protocol"), description="causal contrasts (itt is the primary)"
    )
    analysis: TrialAnalysisConfig = TrialAnalysisConfig()
    per_protocol: PerProtocolConfig = PerProtocolConfig()
    sensitivity: TrialSensitivityConfig = TrialSensitivityConfig()

    @field_validator("outcomes")
    @classmethod
    def _outcomes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [o for o in value if o not in OUTCOMES]
        if unknown:
            raise ValueError(f"unknown outcomes {unknown}; allowed: {list(OUTCOMES)}")
        missing = [o for o in PRIMARY_OUTCOMES if o not in value]
        if missing:
            raise ValueError(f"the primary outcomes {missing} cannot be left out")
        return value

    @model_validator(mode="after")
    def _itt_primary(self) -> TargetTrialConfig:
        if "itt" not in self.contrasts:
            raise ValueError("contrasts: 'itt' (the primary contrast) cannot be left out")
        return self
