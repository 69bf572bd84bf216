"""True effects a simulation study varies: names a trial planner uses, and the overrides.

``python -m evaluation.simulate --effects mortality_hr=0.5,0.7,1.0`` replaces the scenario's
true (conditional) effects of :class:`synthetic.spec.TrueEffects`, one setting per value; the
study's estimands are the marginal effects in the treated that follow from them
(:mod:`synthetic.truth`, computed per setting).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError

from synthetic.spec import Scenario, ScenarioError, TrueEffects

__all__ = ["EFFECT_PARAMETERS", "effect_name", "with_effects"]

#: the true effects a simulation study may vary (``python -m evaluation.simulate --effects``):
#: the name a trial planner uses (outcome and measure, as the estimates name them) -> the field
#: of :class:`TrueEffects` (the scenario file's key under ``effects:``)
EFFECT_PARAMETERS: dict[str, str] = {
    "mortality_hr": "hr_mortality",
    "retention_hr": "hr_discontinuation",
    "crime_irr": "irr_crime",
    "overdose_share_ratio": "overdose_share_ratio",
}


def effect_name(name: str) -> str:
    """The planner's name of a true effect, from itself or the scenario's key.

    ``mortality_hr``, ``hr_mortality`` and ``effects.hr_mortality`` all name the in-treatment
    mortality hazard ratio (:attr:`TrueEffects.hr_mortality`); the result is the first.

    Raises
    ------
    ScenarioError
        Not a true effect of the scenario (the message lists them).
    """
    key = name.strip().lower().removeprefix("effects.")
    if key in EFFECT_PARAMETERS:
        return key
    for planner, field in EFFECT_PARAMETERS.items():
        if key == field:
            return planner
    known = ", ".join(f"{k} (effects.{v})" for k, v in EFFECT_PARAMETERS.items())
    raise ScenarioError(f"unknown true effect {name!r}; the scenario's are {known}")


def with_effects(spec: Scenario, effects: Mapping[str, float]) -> Scenario:
    """The scenario with some true (conditional) effects replaced.

    Parameters
    ----------
    spec : Scenario
    effects : mapping
        Name (see :func:`effect_name`) -> value, e.g. ``{"mortality_hr": 0.5}``.

    Returns
    -------
    Scenario
        Validated; ``spec`` itself when ``effects`` is empty.

    Raises
    ------
    ScenarioError
        Unknown name or invalid value (the message names them).
    """
    if not effects:
        return spec
    fields = {EFFECT_PARAMETERS[effect_name(k)]: v for k, v in effects.items()}
    try:
        new = TrueEffects.model_validate({**spec.effects.model_dump(), **fields})
    except ValidationError as exc:
        raise ScenarioError(f"true effects {dict(effects)}: {exc}") from None
    return spec.model_copy(update={"effects": new})
