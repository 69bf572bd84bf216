"""The target trial's protocol as configuration (``target_trial:`` in the study's YAML).

Used for version-2 (history) extracts only; a version-1 extract ignores it. Each component
follows the TARGET reporting guideline's protocol table (Cashin et al. 2025): eligibility,
treatment strategies, assignment, time zero, outcomes, causal contrasts and the analysis
plan. The protocol's defaults are the data contract's bracketed defaults.

Grace period (``grace_period_days``, G; default 0)
    A trial of HAT cannot start treatment the day it is assigned: admission takes days to
    weeks. With a grace period the treatment strategy is "initiate HAT within G days of
    being eligible" and the comparator "do not initiate HAT now" (per protocol: never).
    Time zero stays the initiator's first HAT day, for it and its comparators, so no
    follow-up precedes an initiation (no immortal time) and nobody's arm or follow-up
    depends on anything after time zero. What G changes is when eligibility is assessed:
    the decision to initiate (the assignment) precedes the start by up to G days, so a
    person is eligible for the trial of date d when eligible on some day of d - G to d.
    The rules that must hold on d anyway (alive, never treated with HAT, the covariate
    window covered) and the fixed ones (age by year, region) are checked on d; only "in
    OST in the ``recent_ost_days`` days before" is relaxed, to an OST day in the
    ``recent_ost_days + G`` days before d. The rule is the same for initiators and
    candidates, so an initiator who left OST a few weeks before its start (Q2 of the
    example history: last OST day 31 days before its HAT start, analysed from G = 24)
    and the candidates in the same situation enter together. Under the per-protocol
    contrast a comparator is censored on any later HAT start, within G days of time zero
    or not (its data then follow "initiate within G days", the other arm's strategy).

    Not chosen: time zero at eligibility with clones of every eligible person in both
    arms, censored when their data leave the strategy (Hernán et al. 2016, J Clin
    Epidemiol; Cain et al. 2010): no intention-to-treat contrast, and with a few in a
    thousand eligible persons starting HAT within 30 days the weights of the treated
    clones would be in the hundreds; nor keeping a comparator that starts HAT within G
    days uncensored under per protocol, which would count HAT follow-up in the
    comparator arm (no strategy is emulated).

References
----------
Hernán MA, Robins JM (2016). Using big data to emulate a target trial when a randomized
trial is not available. *Am J Epidemiol* 183(8):758-764.

Hernán MA, Sauer BC, Hernández-Díaz S, Platt R, Shrier I (2016). Specifying a target trial
prevents immortal time bias and other self-inflicted injuries in observational analyses.
*J Clin Epidemiol* 79:70-75.

Danaei G, García Rodríguez LA, Cantero OF, Logan R, Hernán MA (2013). Observational data
for comparative effectiveness research: an emulation of randomised trials of statins and
primary prevention of coronary heart disease. *Stat Methods Med Res* 22(1):70-96.

Cain LE, Robins JM, Lanoy E, et al. (2010). When to start treatment? A systematic approach
to the comparison of dynamic regimes using observational data. *Int J Biostat* 6(2):18.

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


class MatchingVariant(_Frozen):
    """A variant of the risk-set matching plan: ``k`` and/or ``caliper`` changed.

    The variant's design label is ``matched_`` followed by ``1to<k>`` and/or
    ``caliper<caliper>`` for what differs from the primary plan (``matched_1to1``,
    ``matched_caliper0.1``, ``matched_1to2_caliper0.05``); its estimates have the
    methods ``<model>_<label>``.
    """

    k: int | None = Field(None, ge=1, le=20, description="comparators per initiator")
    caliper: float | None = Field(None, gt=0, description="caliper in SD of the logit of the score")

    @model_validator(mode="after")
    def _something(self) -> MatchingVariant:
        if self.k is None and self.caliper is None:
            raise ValueError("a matching variant changes k, caliper or both")
        return self

    def plan(self, primary: TrialAnalysisConfig) -> tuple[int, float]:
        """The variant's (k, caliper), the primary plan's where not given."""
        k = primary.k if self.k is None else self.k
        caliper = primary.caliper if self.caliper is None else self.caliper
        return k, caliper

    def label(self, primary: TrialAnalysisConfig) -> str | None:
        """The design label, or ``None`` when the variant is the primary plan."""
        k, caliper = self.plan(primary)
        parts = [f"1to{k}"] if k != primary.k else []
        parts += [f"caliper{caliper:g}"] if caliper != primary.caliper else []
        return "_".join(["matched", *parts]) if parts else None


class TrialSensitivityConfig(_Frozen):
    """Analyses that show what the emulation and its choices change (``primary: false``).

    Every sensitivity estimate has ``primary: false`` and ``estimand: itt``. Truth (on
    synthetic data) is attached to the matching variants and the prevalent-user
    comparison, which aim at the intention-to-treat effect in the analysed initiators; not
    to the naive comparison (a crude contrast of the initiators with everyone in OST on
    one date, no effect in the initiators) nor to the grace-period analysis (another
    population: initiators eligible under a longer window).
    """

    naive: bool = Field(True, description="initiators vs everyone in OST on a fixed date")
    naive_date: str = Field(
        "2022-01-01", pattern=r"^\d{4}-\d{2}-\d{2}$", description="the naive comparison's date"
    )
    prevalent: bool = Field(
        True,
        description="version 1's design: initiators vs prevalent OST patients on a random "
        "date each, matched",
    )
    grace_period_days: int | None = Field(
        30,
        ge=0,
        le=365,
        description="intention-to-treat estimates under this grace period (risk sets "
        "derived again, matched with the primary plan; design matched_grace<G>); null: "
        "not run, nor when it equals the protocol's grace period",
    )
    matching: tuple[MatchingVariant, ...] = Field(
        (MatchingVariant(k=1), MatchingVariant(caliper=0.1)),
        description="risk-set matching variants (k and/or caliper; the same propensity "
        "model and risk sets), intention-to-treat estimates of each; a variant equal to "
        "the primary plan is not run",
    )


class TargetTrialConfig(_Frozen):
    """The protocol of the emulated target trial (contract version 2)."""

    eligibility: EligibilityConfig = EligibilityConfig()
    strategies: StrategiesConfig = StrategiesConfig()
    grace_period_days: int = Field(
        0,
        ge=0,
        le=365,
        description="grace period G: the treatment strategy is 'initiate HAT within G days "
        "of being eligible'; time zero stays the HAT start, so eligibility is met on some "
        "day of the G days before it (in OST in the recent-OST window before that day), "
        "for initiators and comparators alike (analysis.data.eligibility.TrialProtocol)",
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
        plans = [v.plan(self.analysis) for v in self.sensitivity.matching]
        twice = sorted({p for p in plans if plans.count(p) > 1})
        if twice:
            raise ValueError(
                "sensitivity.matching: the same (k, caliper) more than once: "
                + ", ".join(f"k={k}, caliper={c:g}" for k, c in twice)
            )
        return self

    def matching_variants(self) -> dict[str, tuple[int, float]]:
        """The matching variants to run: design label -> (k, caliper), primary plan left out."""
        out = {}
        for v in self.sensitivity.matching:
            label = v.label(self.analysis)
            if label is not None:
                out[label] = v.plan(self.analysis)
        return out

    def sensitivity_grace(self) -> int | None:
        """The sensitivity analysis' grace period, ``None`` when not run."""
        g = self.sensitivity.grace_period_days
        return None if g is None or g == self.grace_period_days else g
