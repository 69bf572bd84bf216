"""The emulated target trial of a version-2 (history) extract: estimands and their estimates.

A version-2 results folder (``cohort.extract_version == 2``) holds two causal contrasts of
the same target trial, each estimate naming its own (``estimand``): *intention to treat*
(initiate HAT now versus do not initiate now, whatever happens later; primary) and *per
protocol* (initiate now versus never initiate). The primary analysis of the first is the
design ``design.primary`` (risk-set matching), of the second the design of the
per-protocol estimates (censoring weights, ``ipcw``). Every other estimate is a
sensitivity comparison, listed from the results document whatever its method label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from evaluation.labels import OUTCOME_LABELS

from .display import md, md_table, missing
from .formatting import (
    Notes,
    ci_label,
    estimate_note,
    finite,
    fmt_estimate,
    integer,
    interval,
    not_estimable_reason,
    num,
    unavailable,
    value,
    withheld,
)
from .labels import MEASURE_SHORT, MODEL_LABELS, design_label, label
from .loading import document, results, section

#: the estimands of a target trial, short (table headings) and in full (text)
ESTIMAND_LABELS = {"itt": "intention to treat", "per_protocol": "per protocol"}
ESTIMAND_DEFINITIONS = {
    "itt": "the intention-to-treat effect: initiating HAT on the day of eligibility versus "
    "not initiating it that day (the comparators may start HAT later), in the initiators "
    "who could be matched (effect in the treated)",
    "per_protocol": "the per-protocol effect: initiating HAT on the day of eligibility versus "
    "never initiating it (comparators censored when they start HAT, inverse probability of "
    "censoring weights), in the initiators who could be matched (effect in the treated)",
}
#: the per-protocol design of the primary analysis (estimates ``<model>_ipcw``)
PER_PROTOCOL_DESIGN = "ipcw"


def is_trial() -> bool:
    """Whether the results come from a version-2 (history) extract: an emulated target trial."""
    return section("cohort", "extract_version") == 2


def cluster_unit() -> str:
    """The clusters of the robust variances: persons (target trial) or matched sets."""
    return "persons" if is_trial() else "matched sets"


def estimand_label(name: Any, *, full: bool = False) -> str:
    """``intention to treat`` / ``per protocol`` (``full``: the definition); else the name."""
    if name is None:
        return "–"
    table = ESTIMAND_DEFINITIONS if full else ESTIMAND_LABELS
    return table.get(str(name), str(name).replace("_", " "))


def _typed_pairs() -> list[tuple[Any, dict[str, Any]]]:
    """Each typed estimate beside its entry of ``results.json`` (suppressed values marked)."""
    return list(zip(document().estimates, results().get("estimates", []), strict=True))


def per_protocol_design() -> str | None:
    """The design of the per-protocol primary analysis (``ipcw``, else the first one found)."""
    designs = [t.design for t, _ in _typed_pairs() if t.estimand == "per_protocol"]
    if not designs:
        return None
    return PER_PROTOCOL_DESIGN if PER_PROTOCOL_DESIGN in designs else designs[0]


def main_analyses() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The intention-to-treat estimates of the primary design and the per-protocol ones."""
    primary = section("design", "primary", default="matched")
    pp = per_protocol_design()
    itt = [e for t, e in _typed_pairs() if t.design == primary and t.estimand in ("itt", None)]
    per = [e for t, e in _typed_pairs() if t.design == pp and t.estimand == "per_protocol"]
    return itt, per


def sensitivity_estimates() -> list[dict[str, Any]]:
    """Every estimate outside the two main analyses, with ``design`` and ``model`` added."""
    primary = section("design", "primary", default="matched")
    pp = per_protocol_design()
    out = []
    for t, e in _typed_pairs():
        if (t.design == primary and t.estimand in ("itt", None)) or (
            t.design == pp and t.estimand == "per_protocol"
        ):
            continue
        out.append({**e, "design": t.design, "model": t.model})
    return out


def _cell(e: Mapping[str, Any] | None, notes: Notes) -> str:
    """An estimate and its interval for a table cell; a note as a footnote marker."""
    if e is None:
        return "–"
    if not finite(e.get("estimate")):
        reason = not_estimable_reason(e)
        return unavailable(e) + notes.mark(reason if withheld(e) else "not estimable: " + reason)
    measure = e.get("measure", "")
    ci = interval(e).removeprefix(ci_label() + " ")
    ci = ci.replace(" to ", "\u00a0to\u00a0") if "available" not in ci else "–"
    return f"{value(e['estimate'], measure, short=True)} ({ci})" + notes.mark(estimate_note(e))


def _truth(e: Mapping[str, Any] | None) -> str:
    if e is None or not finite(e.get("truth")):
        return "–"
    return value(e["truth"], e.get("measure", ""), short=True)


def _measure_name(e: Mapping[str, Any], duplicate: bool) -> str:
    measure = e.get("measure", "")
    name = MEASURE_SHORT.get(measure, measure)
    if duplicate:  # two models of one measure (crime's rate ratio and negative binomial)
        model = e.get("model") or str(e.get("method", "")).partition("_")[0]
        name += f" ({MODEL_LABELS.get(model, model)})"
    return name


def itt_pp_table(outcomes: Iterable[str] | None = None) -> bool:
    """Intention-to-treat beside per-protocol estimates, with the true values when known.

    One row per estimate of the intention-to-treat primary design (in the results' order);
    the per-protocol estimate of the same outcome and measure beside it (no per-protocol
    columns when that contrast was not run). Returns whether a table was shown.
    """
    itt, per = main_analyses()
    typed = {id(e): t for t, e in _typed_pairs()}
    wanted = set(outcomes) if outcomes is not None else None
    itt = [e for e in itt if wanted is None or e.get("outcome") in wanted]
    if not itt and not per:
        missing("Intention-to-treat and per-protocol estimates")
        return False
    pp_by = {}
    for e in per:
        pp_by.setdefault((e["outcome"], e["measure"]), e)
    keys = [(e["outcome"], e["measure"]) for e in itt]
    with_truth = any(finite(e.get("truth")) for e in itt + per)
    notes, rows, used = Notes(), [], set()
    order = {o: i for i, o in enumerate(OUTCOME_LABELS)}
    itt = sorted(itt, key=lambda e: order.get(e["outcome"], 99))
    for e in itt:
        key = (e["outcome"], e["measure"])
        t = typed.get(id(e))
        named = {**e, "model": t.model if t else None}
        pp = pp_by.get(key) if key not in used else None
        used.add(key)
        row = {
            "outcome": label(outcome=e["outcome"]),
            "measure": _measure_name(named, keys.count(key) > 1),
            f"intention to treat ({ci_label()})": _cell(e, notes),
        }
        if per:  # a column of dashes when the per-protocol contrast was not run
            row[f"per protocol ({ci_label()})"] = _cell(pp, notes)
        if with_truth:
            row["true value, ITT"] = _truth(e)
            if per:
                row["true value, per protocol"] = _truth(pp)
        rows.append(row)
    for key, e in pp_by.items():  # per-protocol estimates without an ITT counterpart
        if key not in used and (wanted is None or key[0] in wanted):
            row = {"outcome": label(outcome=key[0]), "measure": _measure_name(e, False),
                   f"intention to treat ({ci_label()})": "–",
                   f"per protocol ({ci_label()})": _cell(e, notes)}  # fmt: skip
            if with_truth:
                row["true value, ITT"] = "–"
                row["true value, per protocol"] = _truth(e)
            rows.append(row)
    df = pd.DataFrame(rows)
    md_table(df, colalign=["left", "left"] + ["right"] * (df.shape[1] - 2))
    notes.show()
    return True


def primary_pairs() -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each primary (intention-to-treat) estimate with its per-protocol counterpart."""
    _, per = main_analyses()
    out = []
    for t, e in _typed_pairs():
        if t.primary:
            pp = next(
                (p for p in per if (p["outcome"], p["measure"]) == (t.outcome, t.measure)), None
            )
            out.append((e, pp))
    return out


#: short names of designs in the target trial's sensitivity table (else ``design_label``)
TRIAL_DESIGN_SHORT = {"matched_mi": "multiple imputation"}


def trial_design_label(name: Any) -> str:
    """Short name of a design in the sensitivity comparisons of the emulated trial."""
    return TRIAL_DESIGN_SHORT.get(str(name)) or design_label(name, short=True)


def design_note(name: str) -> str | None:
    """What a design is (``design.designs[name].note``), if recorded."""
    info = section("design", "designs", name, default=None)
    note = info.get("note") if isinstance(info, Mapping) else None
    return str(note) if note else None


def sensitivity_table() -> bool:
    """Every sensitivity estimate by outcome, with its design, estimand and the true value.

    Generic: whatever designs the results hold besides the two main analyses (naive,
    prevalent users, caliper or k variants, a grace period...) are listed. Returns whether
    any was shown.
    """
    rows_in = sensitivity_estimates()
    if not rows_in:
        return False
    with_truth = any(finite(e.get("truth")) for e in rows_in)
    itt, per = main_analyses()
    reference = {(e["outcome"], e["measure"], "itt"): e for e in reversed(itt)}
    reference |= {(e["outcome"], e["measure"], "per_protocol"): e for e in reversed(per)}
    notes, rows = Notes(), []
    order = {o: i for i, o in enumerate(OUTCOME_LABELS)}
    rows_in = sorted(rows_in, key=lambda e: order.get(e["outcome"], 99))
    for e in rows_in:
        main = reference.get((e["outcome"], e["measure"], e.get("estimand") or "itt"))
        row = {
            "outcome": label(outcome=e["outcome"]),
            "measure": MEASURE_SHORT.get(e["measure"], e["measure"]),
            "comparison": trial_design_label(e["design"]),
            "estimand": estimand_label(e.get("estimand")),
            f"estimate ({ci_label()})": _cell(e, notes),
            "main analysis": _cell(main, notes),
            "n HAT / comparators": f"{integer(e.get('n_treated'))} / {integer(e.get('n_control'))}",
        }
        if with_truth:
            row["true value"] = _truth(e)
        rows.append(row)
    df = pd.DataFrame(rows)
    md_table(df, colalign=["left"] * 4 + ["right"] * (df.shape[1] - 4))
    notes.show()
    designs = list(dict.fromkeys(e["design"] for e in rows_in))
    described = [
        f"- **{trial_design_label(d)}**: {design_note(d) or design_label(d)}" for d in designs
    ]
    md(
        "The *main analysis* column repeats the estimate of the same estimand, outcome and "
        "measure from the emulated trial's primary analysis (risk-set matching for the "
        "intention-to-treat effect, censoring weights for the per-protocol one). The "
        "comparisons:\n\n" + "\n".join(described)
    )
    return True


def weight_summary() -> str | None:
    """One sentence on the per-protocol weights (``design.designs.per_protocol.weights``)."""
    info = section("design", "designs", "per_protocol", default=None) or {}
    w = info.get("weights") or {}
    if not finite(w.get("mean")):
        return None
    bounds = w.get("truncated_at") or []
    trunc = ""
    if len(bounds) == 2 and all(finite(b) for b in bounds):
        q = w.get("truncation_quantile")
        trunc = (
            f" They were truncated at {num(bounds[0], 3)} and {num(bounds[1], 3)}"
            + (f" (the {num(1 - float(q), 2)} and {num(q, 2)} quantiles)" if finite(q) else "")
            + (f", which changed {integer(w.get('n_truncated'))} interval weights" if finite(w.get("n_truncated")) else "")
            + "."
        )  # fmt: skip
    extreme = ""
    if finite(w.get("min")) and finite(w.get("max")):
        extreme = f", range {num(w['min'], 3)} to {num(w['max'], 3)} before truncation"
    return (
        f"The stabilised censoring weights of the comparators' intervals have mean "
        f"{num(w['mean'], 3)} and standard deviation {num(w.get('sd'), 3)}{extreme}"
        + (
            f" (mean before truncation {num(w['mean_untruncated'], 3)})"
            if finite(w.get("mean_untruncated"))
            else ""
        )
        + "."
        + trunc  # fmt: skip
    )


def estimand_sentence(e: Mapping[str, Any] | None) -> str:
    """``intention to treat`` or ``per protocol`` for an estimate, in words."""
    return estimand_label((e or {}).get("estimand") or "itt")


def fmt_with_estimand(e: Mapping[str, Any] | None) -> str:
    """An estimate with its estimand named: ``0.72 (95% CI ...; p = ...; intention to treat)``."""
    text = fmt_estimate(e)
    if e is None or not text.endswith(")"):
        return text
    return text[:-1] + f"; {estimand_sentence(e)})"
