"""Readable names: designs, models, covariates, measures, outcomes; the tests the text reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.data.measures import MEASURES, measure_label
from evaluation.labels import OUTCOME_LABELS
from evaluation.results_document import split_method

from .formatting import finite
from .loading import config, design, document, results, section

DESIGN_LABELS = {
    "matched": "1:k matching (primary)",
    "iptw": "inverse probability of treatment weighting (ATT)",
    "matched_caliper0.1": "matching, caliper 0.1 SD",
    "matched_1to1": "1:1 matching",
    "naive": "unmatched, unadjusted (naive)",
    "matched_mi": "1:k matching, multiple imputation",
    "iptw_mi": "IPTW (ATT), multiple imputation",
    # an emulated target trial (version-2 extract)
    "ipcw": "per protocol: comparators censored when they start HAT, censoring weights",
    "prevalent": "prevalent users (version 1's design on the history extract)",
}
MODEL_LABELS = {
    "cox": "Cox",
    "nb": "negative binomial",
    "rate": "ratio of rates (robust)",
    "km": "Kaplan–Meier",
    "rmst": "RMST",
    "poisson": "Poisson (before/after)",
    "aj": "Aalen–Johansen",
}
VARIABLE_LABELS = {
    "age": "age (years)",
    "sex": "sex",
    "women": "women",
    "region": "region",
    "years_opioid_use": "years of opioid use",
    "prior_ost_episodes": "previous OST episodes",
    "injecting": "injects drugs",
    "psychiatric_dx": "psychiatric diagnosis",
    "homeless": "homeless",
    "prior_overdose": "previous non-fatal overdose",
    "benzodiazepine_use": "benzodiazepine use",
    "baseline_charges": "charges before index",
    "calendar_years": "calendar time (years since the first index date)",
    # covariates on the date of a risk set (version-2 extract)
    "prior_ost_spells": "previous OST spells",
    "days_in_ost_last_year": "days in OST in the past year",
    "in_index_spell": "still in the treatment spell of the index date",
}
#: measure names in tables, with the unit of the value where it is not a ratio (registry)
MEASURE_SHORT = {name: m.short for name, m in MEASURES.items()}


def variable_label(name: Any) -> str:
    """Readable name of a covariate or a design-matrix column.

    ``years_opioid_use_missing`` -> ``years of opioid use (missing)``, ``sex_F`` ->
    ``sex: F``, ``baseline_charges_log1p`` -> ``charges before index (log 1 + x)``;
    ``region: west`` and unknown names are kept.
    """
    text = str(name)
    for key in sorted(VARIABLE_LABELS, key=len, reverse=True):
        if text == key:
            return VARIABLE_LABELS[key]
        if text.startswith(key) and text[len(key)] in " :_":
            rest = text[len(key) :]
            if rest.startswith("_"):
                rest = rest[1:]
                if rest.startswith("rcs") and rest[3:].isdigit():  # restricted cubic spline
                    rest = f", spline term {rest[3:]}"
                else:
                    rest = {"missing": " (missing)", "log1p": " (log 1 + x)"}.get(rest, f": {rest}")
            return VARIABLE_LABELS[key] + rest
    return text


def variable_order(name: Any) -> int:
    """Position of a Table 1 / balance row: persons first, then covariates as configured."""
    text = str(name)
    covs = ["persons", *(section("design", "covariates", default=None) or VARIABLE_LABELS)]
    covs = [("women" if c == "sex" else c) for c in covs] + ["sex"]
    for i, key in enumerate(covs):
        if text == key or text.startswith((key + " ", key + ":", key + "_")):
            return i
    return len(covs)


def design_label(name: Any, *, short: bool = False, primary: Any = None) -> str:
    """Readable name of a design (``matched``, ``iptw``, ``matched_caliper0.1``...).

    The short name of the primary design says "(primary)" unless ``primary`` is False: a
    secondary estimate on that design (a risk difference, the negative binomial beside
    crime's rate ratio) is then not mistaken for the primary estimate.
    """
    name = str(name)
    if not short:
        if name in DESIGN_LABELS:
            return DESIGN_LABELS[name]
        if name.startswith("matched_caliper"):
            return f"matching, caliper {name.removeprefix('matched_caliper')} SD"
        if name.startswith("matched_grace") and name.removeprefix("matched_grace").isdigit():
            days = name.removeprefix("matched_grace")
            return f"risk-set matching with a grace period of {days} days"  # target trial
        return name.replace("_", " ")
    short_names = {"matched": "matched 1:k (primary)", "iptw": "IPTW", "matched_1to1": "matched 1:1",
                   "naive": "naive (unadjusted)", "ipcw": "per protocol (IPCW)",
                   "prevalent": "prevalent users"}  # fmt: skip
    if name in short_names:
        k = (design("matched") or {}).get("k") if name == "matched" else None
        if name == "matched" and primary is not None and not bool(primary):
            return f"matched 1:{k}" if k else "matched 1:k"
        return f"matched 1:{k} (primary)" if k else short_names[name]
    if name.startswith("matched_caliper"):
        return f"caliper {name.removeprefix('matched_caliper')} SD"
    if name.startswith("matched_grace") and name.removeprefix("matched_grace").isdigit():
        return f"grace period {name.removeprefix('matched_grace')} days"  # target trial
    return name.replace("_", " ")


def label(outcome: str | None = None, measure: str | None = None, method: str | None = None) -> str:
    """Readable label of an outcome, a measure or a method."""
    if outcome is not None:
        return OUTCOME_LABELS.get(outcome, str(outcome).replace("_", " "))
    if measure is not None:
        return measure_label(measure)
    if method is not None:
        model, design_name = split_method(method)
        return f"{MODEL_LABELS.get(model, model)}, {design_label(design_name)}"
    return ""


#: the time transform g(t) of a proportional-hazards test (``ph_test.transform``)
PH_TRANSFORMS = {
    "km": "1 − Kaplan–Meier",
    "rank": "the rank of the event time",
    "identity": "time",
    "log": "log time",
}
#: the page that shows an outcome's estimates
OUTCOME_PAGES = {
    "mortality": "mortality.md",
    "overdose_mortality": "mortality.md",
    "retention": "retention.md",
    "crime": "crime.md",
}


def alpha_level() -> float:
    """The configured ``alpha`` (default 0.05): the level of the tests the text reads."""
    a = config().get("alpha", 0.05)
    return float(a) if finite(a) else 0.05


def ph_variance_label(test: Mapping[str, Any]) -> str:
    """``robust`` or ``model-based``: the variance of a proportional-hazards test."""
    return {"robust": "robust", "model": "model-based"}.get(
        str(test.get("variance")), str(test.get("variance") or "–")
    )


def primary_ph_tests() -> list[dict[str, Any]]:
    """The proportional-hazards tests of the primary Cox models (``diagnostics.ph_tests``)."""
    primary = {(e.get("outcome"), e.get("method")) for e in results().get("estimates", [])
               if e.get("primary")}  # fmt: skip
    return [
        t
        for t in section("diagnostics", "ph_tests", default=[])
        if (t.get("outcome"), t.get("method")) in primary
    ]


def other_measures(outcome: str, method_suffix: str = "_matched") -> list[str]:
    """Labels of the measures beside the HR for an outcome (absolute measures and others)."""
    seen = []
    design_name = method_suffix.removeprefix("_")
    for e in document().estimates:
        m = e.measure
        if e.outcome == outcome and m not in ("HR", "IRR") and e.design == design_name:
            if m not in seen:
                seen.append(m)
    return [label(measure=m).removesuffix(" (days)") for m in seen]
