"""Study configuration: a validated, frozen model loaded from YAML.

Every default lives here, once. Unknown keys are refused, so a typo such as
``calliper:`` fails loudly with the key's name. The resolved configuration and
its hash are written into the results manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analysis.data.contract import BOOLEAN_COVARIATES, CALENDAR_COVARIATE
from evaluation.study_design import CALIPER, COVARIATES, EXACT, K
from evaluation.target_trial_config import TargetTrialConfig

#: cohort columns with few values, on which matching may be exact (missing = its own value)
EXACT_MATCH_COLUMNS = ("region", "sex", *BOOLEAN_COVARIATES)


class ConfigError(ValueError):
    """A configuration file that cannot be used (unknown key, wrong type, bad value)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatchingConfig(_Frozen):
    """Propensity-score matching of OST comparators to HAT patients."""

    k: int = Field(K, ge=1, le=20, description="controls per treated person (1:k)")
    caliper: float = Field(
        CALIPER,
        gt=0,
        description="caliper in standard deviations of the logit of the propensity score "
        "(Austin 2011)",
    )
    replace: bool = Field(False, description="match with replacement")
    exact: tuple[str, ...] = Field(EXACT, description="covariates matched exactly")

    @field_validator("exact")
    @classmethod
    def _known_exact(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in EXACT_MATCH_COLUMNS]
        if unknown:
            raise ValueError(
                f"cannot match exactly on {unknown}: not a categorical column of the cohort; "
                f"allowed: {list(EXACT_MATCH_COLUMNS)}"
            )
        return value


class SensitivityConfig(_Frozen):
    """Alternative designs reported with ``primary: false``."""

    caliper: float = Field(0.1, gt=0, description="alternative, narrower caliper")
    one_to_one: bool = Field(True, description="also report 1:1 matching")
    iptw: bool = Field(True, description="also report inverse probability weighting (ATT)")
    iptw_trim: float | None = Field(
        None, gt=0.5, le=1.0, description="quantile at which control IPT weights are capped"
    )
    naive: bool = Field(True, description="also report the unmatched, unadjusted comparison")


class ImputationConfig(_Frozen):
    """Multiple imputation of missing covariates by chained equations (``missing: mi``)."""

    m: int = Field(20, ge=2, le=500, description="imputed datasets")
    iterations: int = Field(
        10, ge=1, le=200, description="cycles of the chained equations per imputed dataset"
    )
    k_pmm: int = Field(5, ge=1, le=50, description="donors of predictive mean matching")
    sensitivity: bool | None = Field(
        None,
        description="report the other missing-data method beside the primary one: with "
        "missing: indicator the multiple-imputation estimates (cox_matched_mi...), with "
        "missing: mi the missing-indicator estimates (always computed, so always reported). "
        "null (default): on in a study run (python -m evaluation.run), off in the replicates "
        "of a simulation, whose configuration decides (true: impute in every replicate); "
        "false: off, and results.json and the report say it was switched off. With m = 20 "
        "it costs the default study about 22 CPU-seconds (8 -> 30 CPU-s; on two idle cores "
        "about 7 s -> 18 s), the version-2 ci extract about 23 CPU-s and the default history "
        "scenario about 280 CPU-s (58 -> 340 CPU-s; on two idle cores about 1 -> 3.5 min; "
        "benchmarks/README.md). Not run when no covariate of the propensity model has a "
        "missing value (multiple imputation would repeat the missing-indicator analysis; "
        "results.json says so); as the sensitivity analysis, a failure of the imputations is "
        "a warning and a note in results.json, not a failed study",
    )
    n_jobs: int = Field(
        2,
        ge=1,
        description="processes working on the imputations at once: this one and n_jobs - 1 "
        "worker processes (1 = all in this process); the results do not depend on it",
    )

    def reports_other(self) -> bool:
        """Whether ``sensitivity`` asks for the other method (``None``: yes, a study run)."""
        return self.sensitivity is not False

    def for_scope(self, scope: str) -> ImputationConfig:
        """This configuration with ``sensitivity`` decided for a run's scope.

        ``None`` becomes ``True`` in a full study run and ``False`` in a simulation
        replicate (``scope="estimates"``); ``True`` and ``False`` stay as they are.
        """
        if self.sensitivity is not None:
            return self
        return self.model_copy(update={"sensitivity": scope == "full"})


class DisclosureConfig(_Frozen):
    """Statistical disclosure control of the outputs that may leave the secure environment.

    The first nine keys are ACRO's risk-appetite parameters, with ACRO's names and
    defaults (``acro/default.yaml``, ACRO 1.0.2), so a TRE's ACRO configuration can be
    copied here; ``time_grid_days`` and ``round_counts`` are this study's additions.
    See :mod:`evaluation.release` for the rules that use them.
    """

    safe_threshold: int = Field(
        10, ge=1, description="minimum frequency: a count of persons below it is suppressed"
    )
    safe_dof_threshold: int = Field(
        10, ge=1, description="minimum residual degrees of freedom of a model (ACRO)"
    )
    safe_nk_n: int = Field(
        2, ge=1, le=10, description="N of the N-K dominance rule for sums (largest N contributors)"
    )
    safe_nk_k: float = Field(
        0.9,
        gt=0,
        le=1,
        description="K of the N-K rule: a sum fails when its N largest contributors hold at "
        "least this share of it",
    )
    safe_pratio_p: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="p-ratio rule: a sum fails when its total less the two largest "
        "contributions is below this share of the largest",
    )
    check_missing_values: bool = Field(
        False, description="ACRO's check for missing values (recorded; not used by the rules)"
    )
    survival_safe_threshold: int = Field(
        10,
        ge=1,
        description="persons at risk and events needed in every step of a released survival "
        "or cumulative-incidence curve",
    )
    zeros_are_disclosive: bool = Field(
        True, description="a count of zero is suppressed like a small count (class disclosure)"
    )
    safe_round_base: int = Field(
        5, ge=1, description="released counts of persons are rounded to a multiple of this"
    )
    time_grid_days: int = Field(
        30,
        ge=1,
        description="released times of curves are multiples of this many days (no finer date)",
    )
    round_counts: bool = Field(
        True,
        description="round released counts to safe_round_base, so that a small count cannot "
        "be recovered as the difference of two released counts",
    )

    def acro_config(self) -> dict[str, Any]:
        """The ACRO-format configuration (``acro/default.yaml`` keys) these values give."""
        keys = (
            "safe_threshold",
            "safe_dof_threshold",
            "safe_nk_n",
            "safe_nk_k",
            "safe_pratio_p",
            "check_missing_values",
            "survival_safe_threshold",
            "zeros_are_disclosive",
            "safe_round_base",
        )
        return {k: getattr(self, k) for k in keys}


class StudyConfig(_Frozen):
    """Everything that decides a study's results, besides the data."""

    seed: int = Field(20220101, ge=0, description="seed for every random step")
    scenario: str = Field(
        "default", description="synthetic scenario generated when no --data is given"
    )
    n_hat: int | None = Field(None, ge=1, description="override the scenario's HAT count")
    n_ost: int | None = Field(None, ge=1, description="override the scenario's OST count")
    gap_days: int = Field(30, ge=0, description="gap bridged within a treatment spell")
    covariates: tuple[str, ...] = Field(
        COVARIATES,
        description="baseline covariates of the propensity model",
    )
    calendar_time: bool = Field(
        True,
        description="add calendar time of the index date (years since the cohort's first "
        "index date, restricted cubic spline with 4 knots) to the propensity model",
    )
    matching: MatchingConfig = MatchingConfig()
    sensitivity: SensitivityConfig = SensitivityConfig()
    retention_time_days: float = Field(
        365.25, gt=0, description="time at which retention is compared (12 months)"
    )
    rmst_tau_days: float = Field(730.0, gt=0, description="horizon of restricted mean time")
    risk_times_days: tuple[float, ...] = Field(
        (365.25, 730.5),
        description="times at which the absolute risks of the time-to-event outcomes are "
        "compared (risk differences beside the hazard ratios; 12 and 24 months)",
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="1 - confidence level")
    cox_small_sample: Literal["factor", "mancl-derouen"] = Field(
        "factor",
        description="small-sample correction of the matched designs' Cox robust variance: the "
        "G/(G-1) factor that every cluster-robust variance of the package uses (default), or "
        "Mancl-DeRouen's bias-corrected sandwich (2-3% larger SEs for all-cause mortality, about "
        "7% for overdose deaths in the default scenario; see benchmarks/coverage.md)",
    )
    missing: Literal["indicator", "mi"] = Field(
        "indicator",
        description="missing covariates in the primary analysis: the missing-indicator method "
        "(mean fill and indicators in the propensity model) or multiple imputation by chained "
        "equations with the designs and outcome models within each imputed dataset, pooled "
        "by Rubin's rules (the other method is then reported as a sensitivity analysis)",
    )
    imputation: ImputationConfig = ImputationConfig()
    disclosure: DisclosureConfig = DisclosureConfig()
    target_trial: TargetTrialConfig = Field(
        TargetTrialConfig(), description="protocol of the emulated target trial (version 2)"
    )

    @field_validator("covariates")
    @classmethod
    def _known_covariates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        allowed = set(COVARIATES)
        unknown = [c for c in value if c not in allowed]
        if unknown:
            raise ValueError(f"unknown covariates {unknown}; allowed: {sorted(allowed)}")
        return value

    @field_validator("risk_times_days")
    @classmethod
    def _positive_times(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not t > 0 for t in value) or len(set(value)) != len(value):
            raise ValueError("risk times must be positive and distinct")
        return value

    @property
    def propensity_covariates(self) -> tuple[str, ...]:
        """Covariates of the propensity model and of the balance tables.

        ``covariates``, then ``calendar_years`` when ``calendar_time`` is on.
        """
        if self.calendar_time:
            return (*self.covariates, CALENDAR_COVARIATE)
        return self.covariates

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dictionary of the resolved configuration."""
        return json.loads(self.model_dump_json())

    def hash(self) -> str:
        """SHA-256 of the resolved configuration (sorted keys)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what the YAML parser found, on one line."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {problem}" if problem else where


def load_config(path: str | Path | None = None, **overrides: Any) -> StudyConfig:
    """Load and validate a configuration.

    Parameters
    ----------
    path : path-like, optional
        YAML file; missing keys take their defaults, unknown keys are refused.
    **overrides
        Top-level values that take precedence (``None`` values are ignored), as
        given on the command line.

    Returns
    -------
    StudyConfig

    Raises
    ------
    ConfigError
        Unreadable file, invalid YAML, unknown key or invalid value, with the
        key named.
    """
    data: dict[str, Any] = {}
    where = "configuration"
    if path is not None:
        path = Path(path)
        where = str(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read the file ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: not UTF-8 text; a configuration is a YAML file") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML{_yaml_problem(exc)}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{where}: the top level must be a mapping of keys to values")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}'")
            else:
                problems.append(f"key '{key}': {err['msg']}")
        raise ConfigError(f"{where}: " + "; ".join(problems)) from None
