"""The typed results document: a pydantic model of ``results.json``.

The study builds a :class:`ResultsDocument` (:func:`evaluation.pipeline.run_study`), the
results folder writes its JSON (:meth:`ResultsDocument.to_json_dict`), the book and the
book's test fixture read and write it through the same model. An estimate carries its
``outcome``, ``measure``, ``model``, ``design``, ``estimand`` and ``primary`` as fields,
and its ``details`` as :class:`EstimateDetails`, whose common entries (the
proportional-hazards test, the events by group, the per-group values, the note) are typed.

The JSON is the data contract's (``../shared/data-contract.md``): every model writes
exactly the keys it was given, in the order they were given, so a document read from a
``results.json`` is written back byte for byte, and the model adds no key of its own.
``model`` and ``design`` are not written: the contract's ``method`` is
``<model>_<design>``, and :class:`Estimate` reads them from it when they are not given
(and checks them against it when they are).

Numbers keep their JSON type (an integer stays an integer) and a ``float`` subclass
(the report's marker of a value withheld by disclosure control) is kept as given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    model_serializer,
    model_validator,
)

__all__ = [
    "CohortSummary",
    "Coefficient",
    "DesignSection",
    "Diagnostics",
    "EValueRecord",
    "Estimate",
    "EstimateDetails",
    "EventsByGroup",
    "GroupValue",
    "PHTest",
    "PHTestRecord",
    "ResultsDocument",
    "TestResult",
    "split_method",
]


def _real(value: Any) -> int | float:
    """A real number as given: an int stays an int, a numpy scalar becomes a Python number."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {value!r}")
    return value


#: a number kept with its JSON type (``3`` stays ``3``, ``3.0`` stays ``3.0``; NaN allowed)
Real = Annotated[int | float, PlainValidator(_real)]


class _Document(BaseModel):
    """A part of ``results.json``: written with the keys given, in the order given.

    Unknown keys are kept (``extra="allow"``) after validation of the known ones, so a
    document from a newer producer, a release folder (``suppressed``) or an estimator's
    extra detail passes through unchanged.
    """

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)
    _keys: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_keys(cls, data: Any, handler: Any) -> Any:
        obj = handler(data)
        if isinstance(data, Mapping):
            obj._keys = tuple(str(k) for k in data)
        elif isinstance(data, _Document):
            obj._keys = data._keys
        return obj

    @model_serializer(mode="wrap")
    def _given_keys(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        aliases = {name: f.alias or name for name, f in type(self).model_fields.items()}
        keys = [aliases.get(k, k) for k in self._keys]
        return {k: out[k] for k in keys if k in out}

    def get(self, key: str, default: Any = None) -> Any:
        """The JSON entry ``key`` (a field by its JSON name, or an extra key), else ``default``."""
        for name, f in type(self).model_fields.items():
            if key in (name, f.alias):
                return getattr(self, name) if key in self._given() else default
        return (self.model_extra or {}).get(key, default)

    def _given(self) -> set[str]:
        aliases = {f.alias: name for name, f in type(self).model_fields.items() if f.alias}
        return set(self._keys) | {aliases[k] for k in self._keys if k in aliases}

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object as written (keys as given, JSON names, NaN left for the writer)."""
        return self.model_dump(by_alias=True)


class TestResult(_Document):
    """A chi-square test: ``statistic``, ``df``, ``p_value``."""

    __test__ = False  # not a pytest test class

    statistic: Real | None = None
    df: Real | None = None
    p_value: Real | None = None


class PHTest(TestResult):
    """Proportional-hazards test of a Cox model (``details.ph_test``), as R's ``cox.zph``.

    ``variance`` is ``robust`` or ``model``; ``model_based`` the model-based test beside a
    robust one; ``global_`` (JSON ``global``) the test of all terms; ``terms`` per term.
    """

    transform: str | None = None
    term: str | None = None
    variance: str | None = None
    terms: dict[str, TestResult] | None = None
    global_: TestResult | None = Field(default=None, alias="global")
    model_based: PHTest | None = None


class EventsByGroup(_Document):
    """Events (deaths, discontinuations) in each arm that entered the model."""

    treated: Real | None = None
    control: Real | None = None


class GroupValue(_Document):
    """An arm's value at a time point (``details.per_group``): survival, its SE, follow-up."""

    survival: Real | None = None
    se: Real | None = None
    max_followup: Real | None = None


class Coefficient(_Document):
    """A model coefficient and its standard error."""

    coef: Real | None = None
    se: Real | None = None


class EstimateDetails(_Document):
    """Method-specific details of an estimate, the common ones typed.

    Attributes
    ----------
    note : str, optional
        Why the estimate is not estimable, or a caveat on a finite one.
    definition : str, optional
        What the difference or ratio is of (absolute measures).
    ph_test : PHTest, optional
        The proportional-hazards test of a Cox model.
    events_by_group : EventsByGroup, optional
        Events per arm (Cox).
    per_group : dict of str to GroupValue, optional
        Each arm's value at the time point (Kaplan–Meier ratio and difference).
    coefficients : dict of str to Coefficient, optional
        The fitted coefficients.
    time, tau : number, optional
        The time point of a difference at a time; the horizon of an RMST difference.
    group : str, optional
        The arm of a per-group before/after ratio.
    n_clusters : int, optional
        Clusters of the robust variance.
    se_log, se_log_model, se_log_weights_known : number, optional
        Robust, model-based and known-weights standard errors of a log ratio.
    theta, alpha : number, optional
        The negative binomial's dispersion (``alpha = 1 / theta``).
    """

    note: str | None = None
    definition: str | None = None
    ph_test: PHTest | None = None
    events_by_group: EventsByGroup | None = None
    per_group: dict[str, GroupValue] | None = None
    coefficients: dict[str, Coefficient] | None = None
    time: Real | None = None
    tau: Real | None = None
    group: str | None = None
    n_clusters: int | None = None
    se_log: Real | None = None
    se_log_model: Real | None = None
    se_log_weights_known: Real | None = None
    theta: Real | None = None
    alpha: Real | None = None


def split_method(method: str) -> tuple[str, str]:
    """``cox_matched_1to1`` -> (``cox``, ``matched_1to1``): the contract's ``<model>_<design>``."""
    model, _, design = str(method).partition("_")
    return model, design


class Estimate(_Document):
    """One comparison of HAT with OST (an entry of ``estimates``).

    ``model`` (``cox``, ``rate``, ``nb``, ``km``, ``aj``, ``rmst``, ``poisson``...) and
    ``design`` (``matched``, ``iptw``, ``matched_caliper0.1``, ``naive``...) are fields
    that are not written: the JSON's ``method`` is ``<model>_<design>``.
    """

    outcome: str
    measure: str
    method: str
    estimate: Real | None = None
    ci_low: Real | None = None
    ci_high: Real | None = None
    p_value: Real | None = None
    se: Real | None = None
    n_treated: Real | None = None
    n_control: Real | None = None
    n_events: Real | None = None
    primary: bool = False
    truth: Real | None = None
    details: EstimateDetails = Field(default_factory=EstimateDetails)
    estimand: Literal["itt", "per_protocol"] | None = None
    model: str = Field(default="", exclude=True)
    design: str = Field(default="", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _model_and_design(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "method" not in data:
            return data
        model, design = split_method(data["method"])
        given = (data.get("model") or model, data.get("design") or design)
        if given != (model, design):
            raise ValueError(
                f"method {data['method']!r} is not <model>_<design> of model {given[0]!r} "
                f"and design {given[1]!r}"
            )
        return {**data, "model": model, "design": design}

    @classmethod
    def from_effect(cls, effect: Any) -> Estimate:
        """The entry of an :class:`analysis.results.EffectEstimate` (its ``to_dict()``)."""
        return cls.model_validate(effect.to_dict())


class CohortSummary(_Document):
    """``cohort``: persons analysed, matched, read and excluded (with the reasons).

    ``n_hat`` and ``n_ost`` are required; ``null`` where disclosure control withheld them.
    """

    n_hat: int | None
    n_ost: int | None
    n_hat_matched: int | None = None
    n_ost_matched: int | None = None
    n_read: int | None = None
    n_excluded: int | None = None
    exclusions: list[dict[str, Any]] | None = None
    extract_version: int | None = None


class DesignSection(_Document):
    """``design``: the primary design, every design's numbers, covariates and balance."""

    primary: str | None = None
    designs: dict[str, dict[str, Any]] | None = None
    covariates: list[str] | None = None
    propensity_not_finite: dict[str, Any] | None = None
    max_abs_smd: dict[str, Real | None] | None = None
    primary_estimand: str | None = None
    target_trial: dict[str, Any] | None = None


class PHTestRecord(PHTest):
    """An entry of ``diagnostics.ph_tests``: the estimate's test with its outcome and method."""

    outcome: str
    method: str
    estimand: str | None = None


class EValueRecord(_Document):
    """An entry of ``diagnostics.e_values``: the E-values of a primary estimate."""

    outcome: str
    measure: str
    estimand: str | None = None
    point: Real | None = None
    ci: Real | None = None


class Diagnostics(_Document):
    """``diagnostics``: proportional-hazards tests, E-values and the primary design's extras."""

    ph_tests: list[PHTestRecord] = Field(default_factory=list)
    e_values: list[EValueRecord] = Field(default_factory=list)
    score_test_retention: dict[str, Any] | None = None
    retention_at_12m: dict[str, GroupValue] | None = None


class ResultsDocument(_Document):
    """``results.json``: the study's results as the data contract defines them.

    Examples
    --------
    >>> doc = ResultsDocument.model_validate({"schema_version": 1,
    ...     "cohort": {"n_hat": 2, "n_ost": 5}, "estimates": []})
    >>> doc.to_json_dict()
    {'schema_version': 1, 'cohort': {'n_hat': 2, 'n_ost': 5}, 'estimates': []}
    """

    schema_version: int
    cohort: CohortSummary
    estimates: list[Estimate]
    design: DesignSection | None = None
    diagnostics: Diagnostics | None = None
    truth: dict[str, Any] | None = None

    def select(
        self,
        *,
        outcome: str | None = None,
        measure: str | None = None,
        model: str | None = None,
        design: str | None = None,
        estimand: str | None = None,
        primary: bool | None = None,
    ) -> list[Estimate]:
        """The estimates matching every criterion given, in the document's order."""
        wanted = {"outcome": outcome, "measure": measure, "model": model, "design": design,
                  "estimand": estimand, "primary": primary}  # fmt: skip
        return [
            e
            for e in self.estimates
            if all(v is None or getattr(e, k) == v for k, v in wanted.items())
        ]

    def primary_estimate(self, outcome: str) -> Estimate | None:
        """The estimate with ``primary: true`` for an outcome (``None`` when there is none)."""
        found = self.select(outcome=outcome, primary=True)
        return found[0] if found else None
