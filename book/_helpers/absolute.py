"""The hazard ratio beside the absolute measures (risk differences, RMST difference)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from evaluation.results_document import split_method

from .display import md, md_table, missing
from .formatting import ci_label, finite, interval, p_only, unavailable, value
from .labels import label
from .loading import config, estimate

#: the hazard ratio and the absolute measures of a time-to-event outcome, in table order
ABSOLUTE_MEASURES = ("HR", "RD_12m", "RD_24m", "RMST_diff")
#: what each absolute measure is a difference of, per outcome (HAT − OST)
ABSOLUTE_LABELS = {
    "mortality": {
        "RD_12m": "risk of death by 12 months, difference (pp)",
        "RD_24m": "risk of death by 24 months, difference (pp)",
        "RMST_diff": "days alive in the first {tau} days, difference",
    },
    "overdose_mortality": {
        "RD_12m": "cumulative incidence of overdose death by 12 months, difference (pp)",
        "RD_24m": "cumulative incidence of overdose death by 24 months, difference (pp)",
        "RMST_diff": "days alive in the first {tau} days, difference",
    },
    "retention": {
        "RD_12m": "share still in treatment at 12 months, difference (pp)",
        "RD_24m": "share still in treatment at 24 months, difference (pp)",
        "RMST_diff": "days in treatment in the first {tau} days, difference",
    },
}


def absolute_estimates(outcome: str) -> dict[str, dict[str, Any]]:
    """The matched-design HR and absolute measures of an outcome, by measure (present only)."""
    out = {}
    for measure in ABSOLUTE_MEASURES:
        e = estimate(outcome, measure)
        if e is not None and split_method(e.get("method", ""))[1] == "matched":
            out[measure] = e
    return out


def _tau_text(e: Mapping[str, Any]) -> str:
    tau = (e.get("details") or {}).get("tau") or config().get("rmst_tau_days")
    return f"{float(tau):g}" if finite(tau) else "τ"


def absolute_table(outcome: str) -> None:
    """A table of the hazard ratio beside the risk differences and the RMST difference.

    Rows: the HR, the differences at 12 and 24 months and the RMST difference of
    ``outcome`` on the primary (matched) design, each with its interval, p-value and,
    for synthetic data, the true value; the notes of not-estimable rows below.
    """
    rows_in = absolute_estimates(outcome)
    if not rows_in:
        missing(f"The hazard ratio and absolute measures of {label(outcome=outcome)}")
        return
    with_truth = any(finite(e.get("truth")) for e in rows_in.values())
    rows, notes = [], []
    for measure, e in rows_in.items():
        name = (
            "hazard ratio"
            if measure == "HR"
            else ABSOLUTE_LABELS.get(outcome, {}).get(measure, measure).format(tau=_tau_text(e))
        )
        ci = interval(e).removeprefix(ci_label() + " ")
        estimable = finite(e.get("estimate"))
        row = {
            "measure (HAT vs OST)": name,
            "estimate": value(e.get("estimate"), measure, short=True)
            if estimable
            else unavailable(e),
            ci_label(): ci.replace(" to ", "\u00a0to\u00a0") if "available" not in ci else "–",
            "p": p_only(e.get("p_value")),
        }
        if with_truth:
            row["true value"] = (
                value(e.get("truth"), measure, short=True) if finite(e.get("truth")) else "–"
            )
        rows.append(row)
        note = (e.get("details") or {}).get("note")
        if not estimable and note:
            notes.append(f"{name}: {note}")
    df = pd.DataFrame(rows)
    md_table(df, colalign=["left"] + ["right"] * (df.shape[1] - 1))
    if notes:
        md("Not estimable or withheld: " + "; ".join(notes) + ".")


def absolute_summary_table(outcomes: Iterable[str]) -> bool:
    """One row per outcome (and one for its true values): HR, RD 12 m, RD 24 m, RMST diff.

    Returns whether any estimate was shown.
    """
    cols = {"HR": "HR", "RD_12m": "RD 12 m (pp)", "RD_24m": "RD 24 m (pp)",
            "RMST_diff": "RMST diff. (days)"}  # fmt: skip
    rows, any_truth = [], False
    found = {o: absolute_estimates(o) for o in outcomes}
    for outcome, ests in found.items():
        if not ests:
            continue
        row, truth = {"outcome": label(outcome=outcome)}, {"outcome": "\u2003true value"}
        for measure, head in cols.items():
            e = ests.get(measure)
            if e is None or not finite(e.get("estimate")):
                row[head] = "–" if e is None else unavailable(e)
            else:
                ci = interval(e).removeprefix(ci_label() + " ")
                ci = ci.replace(" to ", "\u00a0to\u00a0") if "available" not in ci else "–"
                row[head] = f"{value(e['estimate'], measure, short=True)} ({ci})"
            t = (e or {}).get("truth")
            truth[head] = value(t, measure, short=True) if finite(t) else "–"
            any_truth |= finite(t)
        rows.append(row)
        rows.append(truth)
    if not rows:
        return False
    if not any_truth:
        rows = [r for r in rows if r["outcome"] != "\u2003true value"]
    df = pd.DataFrame(rows)
    md_table(df, colalign=["left"] + ["right"] * (df.shape[1] - 1))
    return True
