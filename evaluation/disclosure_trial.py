"""Evidence for disclosure control of an emulated target trial (version-2 extract).

The counterpart of :func:`evaluation.disclosure.disclosure_evidence` for the matched risk
sets, computed where the person-level rows are (:func:`evaluation.target_trial.run_target_trial`).
A person can be a candidate in many risk sets and a comparator in several, so the rows of
the matched sample are person-dates: every count of the evidence is a count of **distinct
persons** (a cell's persons, its persons with an event), and every contribution to a sum
(charges) is a person's total over their rows, so the dominance rules see persons, not
rows. The curves' evidence (persons at risk and events at each time) counts rows, as the
curves do; ACRO's survival rule then asks for at least the threshold of events per step.

Tables (``disclosure_<output>``, never released): ``estimates`` (designs ``matched``:
intention to treat, and ``ipcw``: per protocol, whose follow-up of a comparator ends at its
HAT start), ``rates``, ``balance`` (samples ``before``: every stacked row, and ``matched``),
``km_retention``, ``cif_overdose``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.design.missing import design_matrix, fit_design
from evaluation.disclosure import (
    EVENT_COLUMNS,
    EVIDENCE_PREFIX,
    TOP_COLUMNS,
    _time_counts,
    contributions,
)
from evaluation.stages.secondary import RATE_TABLES
from evaluation.study_design import LEVELS, TRANSFORMS
from evaluation.trial_frame import outcome_frame

__all__ = ["trial_evidence"]


def _per_person(df: pd.DataFrame, column: str) -> np.ndarray:
    """A person's total of ``column`` over their rows (NaN rows left out)."""
    values = df[column].astype(float)
    keep = values.notna().to_numpy()
    return values[keep].groupby(df.loc[keep, "person_id"].to_numpy()).sum().to_numpy()


def _estimates_evidence(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Persons, persons with an event and each person's contribution, per design and arm."""
    rows = []
    for design, data in frames.items():
        data = data[data["weight"].to_numpy(float) > 0]
        for outcome, column in EVENT_COLUMNS.items():
            sub = data[data["in_retention"]] if outcome == "retention" else data
            for group, part in sub.groupby("group", sort=True):
                rows.append(
                    {"design": design, "outcome": outcome, "group": group}
                    | contributions(_per_person(part, column))
                )
    return pd.DataFrame(rows)


def _rates_evidence(data: pd.DataFrame) -> pd.DataFrame:
    """Persons and their contributions behind each cell of the crude-rate tables."""
    rows = []
    for table, (_label, blocks) in RATE_TABLES.items():
        for events, _years, name in blocks:
            for group, sub in data.groupby("group", sort=True):
                rows.append(
                    {"table": table, "key": name, "group": group}
                    | contributions(_per_person(sub, events))
                )
    out = pd.DataFrame(rows)
    return out[["table", "key", "group", "n", "n_events", "sum", "num_negative", *TOP_COLUMNS]]


def _balance_evidence(
    samples: Mapping[str, pd.DataFrame], reference: pd.DataFrame, covariates: Iterable[str]
) -> pd.DataFrame:
    """Distinct persons behind each standardised difference, per sample and arm.

    ``n_one`` and ``n_zero`` are the persons with a row of value 1 (0) of a binary column;
    a person with rows of both values counts in both.
    """
    covariates = list(covariates)
    spec = {"transforms": TRANSFORMS, "levels": LEVELS, "drop_first": False}
    fitted, ref = fit_design(reference, covariates, **spec)
    binary = {
        c: set(np.unique(ref[c])) >= {0.0, 1.0} and ref[c].nunique() <= 3 for c in ref.columns
    }
    rows = []
    for sample, df in samples.items():
        X = design_matrix(df, covariates, reference=fitted, **spec)
        person = pd.factorize(df["person_id"].astype(str))[0]
        treated = df["treatment"].to_numpy() == 1
        for group, mask in (("HAT", treated), ("OST", ~treated)):
            who = person[mask]
            n = int(np.unique(who).size)
            for col in X.columns:
                v = X[col].to_numpy(float)[mask]
                rows.append(
                    {
                        "variable": col,
                        "sample": sample,
                        "group": group,
                        "binary": bool(binary.get(col, False)),
                        "n": n,
                        "n_one": int(np.unique(who[v == 1]).size),
                        "n_zero": int(np.unique(who[v == 0]).size),
                    }
                )
    return pd.DataFrame(rows)


def trial_evidence(matched: Any, *, covariates: Iterable[str]) -> dict[str, pd.DataFrame]:
    """Evidence tables for :mod:`evaluation.release` of a target trial's results folder.

    Parameters
    ----------
    matched : analysis.design.risk_set_matching.RiskSetMatch
        The matched risk sets (``data``: matched rows with the intention-to-treat and
        ``pp_*`` per-protocol outcomes; ``stacked``: every analysed row).
    covariates : iterable of str
        The covariates of the balance table (the matching plan's, without calendar time).

    Returns
    -------
    dict of str to DataFrame
        ``disclosure_estimates``, ``disclosure_rates``, ``disclosure_balance``,
        ``disclosure_km_retention``, ``disclosure_cif_overdose``.
    """
    itt = outcome_frame(matched.data)
    pp = outcome_frame(matched.data, per_protocol=True)
    stacked = matched.stacked
    ret = itt[itt["in_retention"]]
    km_type = ret["discontinued"].to_numpy(float).astype(int)
    cif_type = np.select([itt["overdose_death"] == 1, itt["died"] == 1], [1, 2], 0)
    return {
        f"{EVIDENCE_PREFIX}estimates": _estimates_evidence({"matched": itt, "ipcw": pp}),
        f"{EVIDENCE_PREFIX}rates": _rates_evidence(itt),
        f"{EVIDENCE_PREFIX}balance": _balance_evidence(
            {"before": stacked, "matched": matched.data}, stacked, covariates
        ),
        f"{EVIDENCE_PREFIX}km_retention": _time_counts(
            ret, duration="retention_days", event_type=km_type, names=("events",)
        ),
        f"{EVIDENCE_PREFIX}cif_overdose": _time_counts(
            itt, duration="followup_days", event_type=cif_type, names=("events", "competing_events")
        ),
    }
