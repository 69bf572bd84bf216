"""What the two generators' scenarios share: the frozen base model, the vocabulary, the parts
of the treatment, mortality and crime parameters written once, and the scenario loader.

:mod:`synthetic.spec` (designed extract, contract version 1) and
:mod:`synthetic.history_spec` (history extract, contract version 2) build their models on
these; each adds only what differs (its covariate effects, its rates of a reference person
or of the population average, its calendar).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "BaseScenario",
    "BinaryCovariate",
    "Charges",
    "DeathCauses",
    "Frozen",
    "Offence",
    "OstMedication",
    "Region",
    "ScenarioError",
    "Site",
    "TreatmentCourse",
    "check_shares",
    "default_region_shares",
    "default_sites",
    "read_scenario",
]

Region = Literal["south-east", "west", "central", "north"]
OstMedication = Literal["methadone", "buprenorphine", "morphine"]
Offence = Literal["property", "drug", "violence", "other"]
BinaryCovariate = Literal[
    "injecting", "psychiatric_dx", "homeless", "prior_overdose", "benzodiazepine_use"
]


class ScenarioError(ValueError):
    """A scenario that cannot be used (unknown name or key, wrong type, bad value)."""


class Frozen(BaseModel):
    """Base of every parameter model: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_shares(shares: Mapping[str, float], name: str) -> None:
    """Raise ``ValueError`` unless the shares sum to 1 (the message names ``name``)."""
    if abs(sum(shares.values()) - 1) > 1e-9:
        raise ValueError(f"{name} must sum to 1")


def default_region_shares() -> dict[Region, float]:
    """OST patients by regional health authority (roughly population shares)."""
    return {"south-east": 0.55, "west": 0.20, "central": 0.12, "north": 0.13}


def _ost_mix() -> dict[OstMedication, float]:
    # buprenorphine-based 55-61%, methadone 38-45%, slow-release morphine small (EMCDDA 2018)
    return {"buprenorphine": 0.57, "methadone": 0.39, "morphine": 0.04}


def _offence_mix() -> dict[Offence, float]:
    return {"property": 0.40, "drug": 0.35, "violence": 0.10, "other": 0.15}


# --------------------------------------------------------------------------- sites
class Site(Frozen):
    """A HAT clinic."""

    city: str
    region: Region
    start: dt.date = Field(description="first day of HAT at the site (protocol)")
    share: float = Field(gt=0, le=1, description="share of HAT patients treated at the site")


def default_sites() -> tuple[Site, ...]:
    """Oslo from January 2022, Bergen from March 2022 (protocol)."""
    # Oslo planned about 100, Bergen 50-100 (Myklebust et al. 2024) -> 60/40
    return (
        Site(city="Oslo", region="south-east", start=dt.date(2022, 1, 1), share=0.6),
        Site(city="Bergen", region="west", start=dt.date(2022, 3, 1), share=0.4),
    )


# --------------------------------------------------------------------------- shared parts
class TreatmentCourse(Frozen):
    """How an episode ends: interruptions, switches from HAT, returns, medication mix."""

    short_interruption_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="share of OST episode ends followed by re-entry within 30 days "
        "(bridged by the gap rule: a short interruption, not a discontinuation)",
    )
    hat_switch_share: float = Field(
        0.45,
        ge=0,
        le=1,
        description="share of HAT episode ends that are switches to methadone within a "
        "week; SERAF midway report 2024: half of those leaving HAT went to ordinary OST",
    )
    hat_short_interruption_share: float = Field(
        0.15,
        ge=0,
        le=1,
        description="share of the other HAT episode ends followed by re-entry within 30 days",
    )
    hat_return_share: float = Field(
        0.3, ge=0, le=1, description="share of re-entries after a long gap from HAT back to HAT"
    )
    ost_medication_shares: dict[OstMedication, float] = Field(
        default_factory=_ost_mix,
        description="medication of new OST episodes: buprenorphine-based 55-61%, methadone "
        "38-45%, slow-release morphine a small share (EMCDDA 2018; Aas et al. 2020)",
    )

    @model_validator(mode="after")
    def _check_medication_shares(self) -> TreatmentCourse:
        check_shares(self.ost_medication_shares, "ost_medication_shares")
        return self


class DeathCauses(Frozen):
    """Causes of death and the hazard just after leaving treatment."""

    overdose_share_in_treatment: float = Field(
        0.23, ge=0, le=1, description="Sordo 2017: 2.6 of 11.3 per 1000 PY in methadone"
    )
    overdose_share_out_of_treatment: float = Field(
        0.35, ge=0, le=1, description="Sordo 2017: 12.7 of 36.1 per 1000 PY out of methadone"
    )
    leaving_spike_multiplier: float = Field(
        1.0,
        ge=1,
        description="hazard multiplier in the first weeks after leaving: Cornish 2010 "
        "(about 3.5); Norway found no spike (Clausen 2008), so off (1) by default",
    )


class Charges(Frozen):
    """Offence types of police-registered charges."""

    offence_shares: dict[Offence, float] = Field(
        default_factory=_offence_mix, description="offence types of charges (illustrative)"
    )

    @model_validator(mode="after")
    def _check_offence_shares(self) -> Charges:
        check_shares(self.offence_shares, "offence_shares")
        return self


class BaseScenario(Frozen):
    """What every scenario has: a name, a seed, the extract date and the HAT sites."""

    #: keys that the true effects do not depend on (left out of :meth:`truth_key`)
    NOT_IN_TRUTH: ClassVar[tuple[str, ...]] = ("name", "description", "seed")

    name: str = "default"
    description: str = ""
    seed: int = Field(1, ge=0, description="default seed of the data")
    extract_date: dt.date = Field(dt.date(2026, 12, 31), description="registries cover up to")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dictionary of every parameter."""
        return json.loads(self.model_dump_json())

    def truth_key(self) -> str:
        """JSON of everything the true effects depend on (not :attr:`NOT_IN_TRUTH`)."""
        data = self.to_dict()
        for key in self.NOT_IN_TRUTH:
            data.pop(key)
        return json.dumps(data, sort_keys=True)


def read_scenario(
    scenario: str | Path,
    *,
    directory: Path,
    model: type[BaseScenario],
    what: str,
    overrides: Mapping[str, Any],
) -> Any:
    """Load a bundled scenario by name (``directory/<name>.yml``) or a YAML file by path.

    Parameters
    ----------
    scenario : str or path-like
        A bundled name or a path to a ``.yml``/``.yaml`` file.
    directory : pathlib.Path
        Folder of the bundled scenarios.
    model : type
        The scenario model to validate with.
    what : str
        ``"scenario"`` or ``"history scenario"``, for the message.
    overrides : mapping
        Keys replaced in the file's parameters (``None`` values keep the file's).

    Raises
    ------
    ScenarioError
        Unknown scenario, unknown key or invalid value (the message names the key).
    """
    path = Path(scenario)
    if not (path.suffix in (".yml", ".yaml") and path.is_file()):
        path = directory / f"{scenario}.yml"
        if not path.is_file():
            names = sorted(p.stem for p in directory.glob("*.yml"))
            raise ScenarioError(f"unknown {what} {str(scenario)!r}; bundled: {', '.join(names)}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: must hold a mapping of parameters")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{path.name}: {exc}") from None
