"""The emulated target trial read against the TARGET guideline: the parts that are words.

What the chapter *The emulated target trial* says besides its tables of numbers: the data
source, the estimands (one row per causal contrast the results hold), the identifying
assumptions each contrast rests on, the follow-up and the limitations of the emulation
(Cashin et al. 2025, items on the protocol's causal contrasts, identifying assumptions,
follow-up and the discussion of limitations; Hernán & Robins 2016).

Every statement is conditional on the results folder: a contrast that was not run
(per protocol switched off), a sensitivity analysis left out, a table that is absent or an
extract without status forms or overdoses changes the text, and no number is written
here: each is read from ``results.json``, ``manifest.json`` or ``tables/``.
"""

from __future__ import annotations

from typing import Any

from evaluation.labels import OUTCOME_LABELS

from .formatting import finite, integer, num, pct
from .labels import MEASURE_SHORT, variable_label
from .loading import Suppressed, design, manifest, section, table
from .trial import ESTIMAND_LABELS, main_analyses, per_protocol_design, sensitivity_estimates

#: the status-form covariates (assessments table of the data contract)
STATUS_FORM_COVARIATES = (
    "years_opioid_use",
    "injecting",
    "psychiatric_dx",
    "homeless",
    "benzodiazepine_use",
)
#: the tables of a version-2 extract, in the data contract's words
EXTRACT_TABLES = {
    "persons": "persons (sex, birth year, region, emigration)",
    "treatment_episodes": "treatment episodes (OST and HAT, by medication)",
    "deaths": "deaths (with overdose as the cause)",
    "charges": "police-registered charges",
    "incarcerations": "prison stays",
    "assessments": "status forms (the treatment status form's answers)",
    "overdoses": "non-fatal overdoses",
}


def protocol() -> dict[str, Any]:
    """The protocol as run (``design.target_trial``); empty when not recorded."""
    return section("design", "target_trial", default={}) or {}


def contrasts() -> list[str]:
    """The causal contrasts of this results folder: those with estimates, else as configured."""
    itt, per = main_analyses()
    found = (["itt"] if itt else []) + (["per_protocol"] if per else [])
    return found or [c for c in protocol().get("contrasts") or ["itt"]]


def has_per_protocol() -> bool:
    """Whether the results hold the per-protocol contrast (it may be switched off)."""
    return per_protocol_design() is not None


def _names(columns: Any) -> str:
    """Readable covariate names joined: ``age (years), sex, region``."""
    return ", ".join(variable_label(c) for c in columns or [])


def extract_tables() -> list[str] | None:
    """The extract's tables that were read (``manifest.input.files``), else ``None``."""
    files = (manifest().get("input") or {}).get("files") or {}
    names = [f.removesuffix(".csv").removesuffix(".parquet") for f in files]
    tables = [n for n in EXTRACT_TABLES if n in names]
    return tables or None


def data_source_sentence() -> str:
    """What the extract holds and until when it follows persons (the TARGET data sources)."""
    tables = extract_tables()
    text = (
        "**Data source.** A version-2 (history) registry extract: each person's registry "
        "history, not a group assigned in advance"
    )
    if tables:
        text += ", with the tables " + "; ".join(EXTRACT_TABLES[t] for t in tables)
    end = manifest().get("extract_date")
    text += f". Follow-up ends at the latest on the extract date ({end})." if end else "."
    if tables is not None:
        absent = [t for t in ("assessments", "overdoses") if t not in tables]
        if absent:
            text += (
                " Not in this extract: "
                + " and ".join(EXTRACT_TABLES[t] for t in absent)
                + ", so the covariates made from them are missing for everyone."
            )
    return text


def _measures(rows: list[dict[str, Any]]) -> str:
    by_outcome: dict[str, list[str]] = {}
    for e in rows:
        names = by_outcome.setdefault(e["outcome"], [])
        short = MEASURE_SHORT.get(e["measure"], e["measure"])
        if short not in names:
            names.append(short)
    order = {o: i for i, o in enumerate(OUTCOME_LABELS)}
    return "; ".join(
        f"{OUTCOME_LABELS.get(o, o)}: {', '.join(m)}"
        for o, m in sorted(by_outcome.items(), key=lambda kv: order.get(kv[0], 99))
    )


def estimand_rows() -> list[dict[str, str]]:
    """One row per causal contrast in the results: strategies, population, measures, method."""
    strategies = protocol().get("strategies") or {}
    treatment = strategies.get("treatment") or "initiate HAT on the index date"
    m = design("matched") or {}
    who = "the initiators matched to at least one comparator (effect in the treated)"
    if finite(m.get("n_treated_matched")) and finite(m.get("n_treated")):
        who += f": {integer(m['n_treated_matched'])} of {integer(m['n_treated'])} analysed"
    itt, per = main_analyses()
    rows = []
    if "itt" in contrasts():
        rows.append({
            "estimand": ESTIMAND_LABELS["itt"] + " (primary)",
            "strategies compared": f"{treatment}; versus do not initiate HAT on that day "
            "(whatever the comparator does later, starting HAT included)",
            "in whom": who,
            "measures": _measures(itt) or "–",
            "estimated by": "risk-set matching; comparators followed whatever they do later",
        })  # fmt: skip
    if has_per_protocol():
        rows.append({
            "estimand": ESTIMAND_LABELS["per_protocol"],
            "strategies compared": f"{treatment}; versus never initiate HAT during follow-up",
            "in whom": who,
            "measures": _measures(per) or "–",
            "estimated by": "the same matched sets; comparators censored when they start "
            "HAT, inverse probability of censoring weights",
        })  # fmt: skip
    return rows


def _positivity_evidence() -> str:
    m = design("matched") or {}
    if not finite(m.get("n_treated")):
        return "not described in this results folder"
    text = (
        f"{integer(m.get('n_treated_matched'))} of {integer(m['n_treated'])} initiators "
        f"({pct(m.get('share_treated_matched'))}) had a comparator within the caliper"
    )
    unmatched = {r: v for r, v in (m.get("unmatched_treated_by_reason") or {}).items()
                 if r != "suppressed"}  # fmt: skip
    if unmatched:
        text += "; not matched: " + "; ".join(f"{integer(v)} ({r})" for r, v in unmatched.items())
    return text + ". The estimands are restricted to the matched initiators"


def _exchangeability_row() -> dict[str, str]:
    analysis = protocol().get("analysis") or {}
    covs = analysis.get("covariates") or section("design", "covariates", default=[])
    given = _names(covs) or "the covariates on the date"
    if analysis.get("calendar_time"):
        given += ", calendar time"
    exact = [c for c in analysis.get("exact") or [] if c]
    mx = section("design", "max_abs_smd", default={}) or {}
    shown = (
        f"largest absolute SMD on the date {num(mx.get('matched'))} after matching "
        f"({num(mx.get('before'))} before); not testable for what is not measured"
        if finite(mx.get("matched"))
        else "not testable for what is not measured"
    )
    return {
        "assumption": "exchangeability (no unmeasured confounding)",
        "contrast": "both",
        "what it requires here": "on the day of a risk set, whether an eligible person "
        "initiates HAT is independent of the outcomes it would have under either strategy, "
        f"given {given} (matched exactly on the day"
        + (" and on " + _names(exact) if exact else "")
        + ")",
        "what the results show": shown,
    }


def _per_protocol_rows() -> list[dict[str, str]]:
    pp_cfg = protocol().get("per_protocol") or {}
    covs = _names(pp_cfg.get("covariates")) or "the censoring model's covariates"
    w = ((design("per_protocol") or {}).get("weights")) or {}
    weights = (
        f"censoring weights from {num(w['min'], 3)} to {num(w['max'], 3)} before truncation"
        if finite(w.get("min")) and finite(w.get("max"))
        else "see the weight distribution under *Per-protocol weights*"
    )
    interval = pp_cfg.get("interval_days")
    return [
        {
            "assumption": "no unmeasured predictors of starting HAT (sequential exchangeability "
            "for censoring)",
            "contrast": ESTIMAND_LABELS["per_protocol"],
            "what it requires here": "among comparators still followed, starting HAT in an "
            + (f"interval of {integer(interval)} days " if finite(interval) else "interval ")
            + f"depends on the outcomes only through {covs} at the interval's start and the "
            "time since time zero, and the censoring model is correctly specified",
            "what the results show": "not testable; " + weights,
        },
        {
            "assumption": "positivity of staying off HAT",
            "contrast": ESTIMAND_LABELS["per_protocol"],
            "what it requires here": "every comparator still followed has a probability of not "
            "starting HAT above zero, given its covariates",
            "what the results show": weights,
        },
    ]


def identifying_assumptions() -> list[dict[str, str]]:
    """The assumptions under which the estimates are the causal contrasts they name.

    Exchangeability, positivity, consistency and no interference for both contrasts (the
    covariates listed are those of the propensity model as run), independent censoring by
    emigration and the end of the extract; for per protocol also no unmeasured predictors of
    starting HAT given the censoring model's covariates, and positivity of staying off HAT.
    """
    rows = [
        _exchangeability_row(),
        {
            "assumption": "positivity",
            "contrast": "both",
            "what it requires here": "initiators of every covariate pattern have eligible "
            "persons of the same pattern on their start day who do not initiate",
            "what the results show": _positivity_evidence(),
        },
        {
            "assumption": "consistency (well-defined strategies)",
            "contrast": "both",
            "what it requires here": "initiating HAT is one intervention whatever clinic or "
            "dose; not initiating is the natural course of the comparators (staying in OST, "
            "leaving it, starting HAT later), so the intention-to-treat effect depends on "
            "how often and when comparators would start HAT in the study period",
            "what the results show": "not testable",
        },
        {
            "assumption": "no interference",
            "contrast": "both",
            "what it requires here": "one person's initiation does not change another's "
            "outcomes; with a limited number of HAT places one start may delay another's",
            "what the results show": "not examined",
        },
        {
            "assumption": "independent censoring by emigration and the end of the extract",
            "contrast": "both",
            "what it requires here": "those who emigrate or reach the extract date would have "
            "had the same outcomes as those still followed",
            "what the results show": "not testable",
        },
    ]
    if has_per_protocol():
        rows += _per_protocol_rows()
    return rows


def follow_up_sentence() -> str | None:
    """Time at risk for mortality by arm (``tables/mortality_rates.csv``), or ``None``."""
    rates = table("mortality_rates")
    if rates is None or "person_years" not in rates:
        return None
    rows = rates[rates["outcome"].astype(str) == "all-cause mortality"]
    if rows.empty:
        rows = rates.drop_duplicates("group")
    py = {str(g): v for g, v in zip(rows["group"], rows["person_years"], strict=True)}
    hat, ost = py.get("HAT"), py.get("OST")
    if not (finite(hat) and finite(ost)):
        return None
    return (
        f"Follow-up for death: {num(hat, 1)} person-years in the matched initiators and "
        f"{num(ost, 1)} weighted person-years in their comparators (the weights of an "
        "initiator's comparators sum to one, so the two are on the same scale)."
    )


def follow_up_text() -> str:
    """When follow-up starts and ends, per contrast, and the time at risk by arm."""
    grace = protocol().get("grace_period_days")
    text = (
        "**Follow-up.** It starts at time zero, the initiator's first HAT day, for the "
        "initiator and its comparators alike"
        + (f" (grace period {integer(grace)} days)" if finite(grace) and grace else "")
        + ", and ends at death, emigration or the extract date, whichever comes first"
        + (
            "; per protocol a comparator's follow-up also ends, censored, on the day it starts HAT."
            if has_per_protocol()
            else "."
        )
    )
    aligned = (
        " Eligibility, assignment and the start of follow-up fall on the same day, so no "
        "follow-up precedes the assignment of a strategy (no immortal time; Hernán et al. 2016)."
        if not (finite(grace) and grace)
        else " Eligibility is assessed within the grace period before time zero, the same "
        "way for both arms, and follow-up starts at time zero for both, so no follow-up "
        "precedes an initiation (no immortal time; Hernán et al. 2016)."
    )
    extra = follow_up_sentence()
    return text + aligned + (" " + extra if extra else "")


def _status_form_limit() -> str | None:
    covs = (protocol().get("analysis") or {}).get("covariates") or []
    used = [c for c in covs if c in STATUS_FORM_COVARIATES]
    if not used:
        return None
    tables = extract_tables()
    if tables is not None and "assessments" not in tables:
        return (
            f"This extract has no status forms: {_names(used)} are missing for everyone, so "
            "the comparison does not take them into account."
        )
    lookback = (protocol().get("eligibility") or {}).get("lookback_days")
    return (
        f"The status-form covariates ({_names(used)}) come only from status forms (for "
        "example the yearly treatment status form): the latest form dated before the date"
        + (f" (within {integer(lookback)} days, so it may be that old)" if finite(lookback) else "")
        + ", missing when there is none. A change since the last form (starting to inject, "
        "losing housing) is not seen on the day of the risk set."
    )


def _recent_ost_limit() -> str:
    """The recent-OST window admits comparators in an interruption of OST (retention)."""
    days = (protocol().get("eligibility") or {}).get("recent_ost_days")
    if not finite(days):
        return ""
    return (
        f" Requiring OST on one of the {integer(days)} days before lets in initiators "
        "who switch with a few days without medication, and also comparators a few days "
        "into an interruption of OST, whose treatment spell may already have ended (0 days "
        "of retention); the propensity model does not know whether a person was in OST the "
        "day before, which can lean the retention estimate in favour of HAT."
    )


def limitations() -> list[str]:
    """The limitations of the emulation, each a sentence or two; true for any results folder."""
    out = [
        "**What the registries cannot see.** Whether a person was referred to HAT, assessed "
        "by a HAT clinic, offered a place or put on a waiting list, and why (the clinicians' "
        "judgement, the person's wish, how well OST had worked, current drug use), is not in "
        "the extract. These decide who initiates on a given day and are likely to predict "
        "the outcomes too: residual confounding by them is possible however good the "
        "balance on the measured covariates.",
    ]
    status = _status_form_limit()
    if status:
        out.append("**Covariates measured now and then.** " + status)
    out.append(
        "**Eligibility.** Only the registry rules of the protocol are checked; HAT's own "
        "clinical admission criteria are not in the registries, so some comparators would "
        "not have been admitted to HAT had they asked." + _recent_ost_limit()
    )
    later = (design("matched") or {}).get("comparators_later_hat_rows")
    out.append(
        "**Time zero.** The trial starts on the first HAT day, not on the day HAT was "
        "decided: persons already accepted and waiting for a place are comparators on that "
        "day. Comparators who start HAT later"
        + (
            f" ({integer(later)} matched comparator rows)"
            if finite(later) or isinstance(later, Suppressed)
            else ""
        )
        + " count their HAT follow-up in the comparator arm under intention to treat."
        + (
            " The grace-period analysis (sensitivity comparisons) moves when eligibility is "
            "assessed."
            if any(str(e["design"]).startswith("matched_grace") for e in sensitivity_estimates())
            else ""
        )
    )
    if has_per_protocol():
        out.append(
            "**Per protocol.** The censoring weights correct only for the predictors of "
            "starting HAT that the censoring model holds; the availability of places and "
            "referrals, which drive who starts, are not among them."
        )
    out.append(
        "**Outcomes from registries.** Charges are police-registered charges, not offending; "
        "retention is read from treatment episodes with a gap rule"
        + (f" of {integer(section('design', 'target_trial', 'gap_days'))} days"
           if finite(section("design", "target_trial", "gap_days")) else "")
        + "; deaths and their causes come from the cause-of-death registry."
    )  # fmt: skip
    out.append(
        "**Variances.** The intention-to-treat intervals treat the propensity model and the "
        "matched sets as given (clustered on persons)"
        + ("; the per-protocol bootstrap refits the censoring model but keeps the matched sets"
           if has_per_protocol() else "")
        + "."
    )  # fmt: skip
    return out


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def estimands_markdown() -> str:
    """The estimands as a Markdown list (a table of five long columns does not fit a page)."""
    return "\n".join(
        f"- **{_upper_first(r['estimand'])}**: {r['strategies compared']}. *In whom*: "
        f"{r['in whom']}. *Measures*: {r['measures']}. *Estimated by*: {r['estimated by']}."
        for r in estimand_rows()
    )


def assumptions_markdown() -> str:
    """The identifying assumptions as a Markdown list: each, its contrast, what it needs."""
    out = []
    for r in identifying_assumptions():
        which = "both contrasts" if r["contrast"] == "both" else f"{r['contrast']} only"
        out.append(
            f"- **{_upper_first(r['assumption'])}** ({which}): {r['what it requires here']}. "
            f"*What the results show*: {r['what the results show']}."
        )
    return "\n".join(out)
