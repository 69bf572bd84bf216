"""Shared parts of the survival estimators: not-estimable results and notes, the checked
columns of a two-arm contrast, and the screening of a contrast at a horizon (empty arm,
horizon beyond the follow-up, too few clusters) with the notes that explain it."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis._checks import binary, cluster_codes, durations, weights_array
from analysis.data.contract import DAYS_PER_YEAR
from analysis.outcomes._product_limit import product_limit
from analysis.results import EffectEstimate
from analysis.sandwich import FewClustersWarning, cluster_check, count_clusters

__all__ = [
    "CHUNK_CELLS",
    "Screen",
    "TwoArm",
    "Variance",
    "add_note",
    "beyond_followup",
    "check_variance",
    "curve_cluster_check",
    "horizon_label",
    "nan_estimate",
    "no_event_notes",
    "robust_problem",
    "screen",
    "two_arm",
]

Variance = Literal["influence", "bootstrap"]

#: largest number of matrix cells (rows x replicates or rows x times) held at once
CHUNK_CELLS = 2_000_000


def nan_estimate(outcome: str, measure: str, method: str, note: str, **kw: Any) -> EffectEstimate:
    """A not-estimable result: NaN estimate, interval and p-value, ``details["note"]`` why.

    ``kw`` are further fields of :class:`analysis.results.EffectEstimate` (counts, and
    ``details`` to which the note is prepended).
    """
    nan = float("nan")
    details = {"note": note, **kw.pop("details", {})}
    return EffectEstimate(
        outcome=outcome,
        measure=measure,
        method=method,
        estimate=nan,
        ci_low=nan,
        ci_high=nan,
        p_value=nan,
        details=details,
        **kw,
    )


def add_note(details: dict[str, Any], note: str) -> None:
    """Append ``note`` to ``details["note"]`` (notes joined by "; ")."""
    details["note"] = f"{details['note']}; {note}" if details.get("note") else note


def curve_cluster_check(codes: np.ndarray, cluster: str | None, level: Any) -> None:
    """Warn when a curve's robust SE rests on few clusters (NaN below 2)."""
    what = f"values of {cluster} in group {level}" if cluster else f"persons in group {level}"
    problem = cluster_check(count_clusters(codes), what=what, stacklevel=4)
    if problem is not None and problem.startswith("not estimable"):
        warnings.warn(f"standard errors {problem}", FewClustersWarning, stacklevel=3)


def robust_problem(arm: TwoArm, stacklevel: int = 4) -> str | None:
    """:func:`analysis.sandwich.cluster_check` for a two-arm contrast's robust variance."""
    what = "clusters" if arm.clustered else "persons, each its own cluster"
    return cluster_check(count_clusters(arm.codes), what=what, stacklevel=stacklevel)


@dataclass(frozen=True)
class TwoArm:
    """The columns of a two-arm contrast as checked arrays, with the counts."""

    time: np.ndarray
    event: np.ndarray
    treat: np.ndarray
    w: np.ndarray
    codes: np.ndarray
    n_clusters: int
    n_treated: int
    n_control: int
    n_events: int
    weighted: bool
    clustered: bool


def two_arm(
    df: pd.DataFrame,
    duration: str,
    event: str,
    treatment: str,
    weights: str | None,
    cluster: str | None,
) -> TwoArm:
    """Check the columns of a two-arm contrast (:mod:`analysis._checks`) into a :class:`TwoArm`."""
    t = durations(df, duration)
    e = binary(df, event, "event")
    a = binary(df, treatment, "treatment")
    w = weights_array(df, weights)
    codes, n_clusters = cluster_codes(df, cluster)
    return TwoArm(
        time=t, event=e, treat=a, w=w, codes=codes, n_clusters=n_clusters,
        n_treated=int(a.sum()), n_control=int(len(a) - a.sum()), n_events=int(e.sum()),
        weighted=weights is not None, clustered=cluster is not None,
    )  # fmt: skip


def check_variance(variance: str) -> None:
    """Refuse a variance method other than ``"influence"`` and ``"bootstrap"``."""
    if variance not in ("influence", "bootstrap"):
        raise ValueError(f"variance must be 'influence' or 'bootstrap', got {variance!r}")


def beyond_followup(arm: TwoArm, horizon: float, name: str) -> tuple[str | None, dict]:
    """Whether ``horizon`` lies beyond the longest follow-up of an arm.

    The longest follow-up of an arm is its largest time (event or censoring) among rows
    with a positive weight; the Kaplan–Meier curve is observed up to and including it,
    and beyond it when it has reached 0 there (the last person left with an event).

    Returns
    -------
    note : str or None
        Why the functional at ``horizon`` is not estimable, or None when it is.
    longest : dict
        ``{"HAT": ..., "OST": ...}``, the longest follow-up of each arm.
    """
    longest, known = {}, {}
    for g, label in ((1, "HAT"), (0, "OST")):
        sel = (arm.treat == g) & (arm.w > 0)
        longest[label] = float(arm.time[sel].max()) if sel.any() else float("nan")
        # a curve that has reached 0 (everyone left with an event) stays 0: known for all t
        pl = product_limit(arm.time[sel], arm.event[sel], arm.w[sel]) if sel.any() else None
        known[label] = pl is not None and len(pl.survival) > 0 and pl.survival[-1] == 0.0
    short = [
        f"{label} {v:g}"
        for label, v in longest.items()
        if not (known[label] or (math.isfinite(v) and v >= horizon))
    ]
    if not short:
        return None, longest
    note = (
        f"not estimable: {name} = {horizon:g} is beyond the longest follow-up "
        f"({', '.join(short)}); the Kaplan-Meier curve is unknown there"
    )
    return note, longest


def horizon_label(time: float, label: str | None) -> str:
    """Measure suffix of a contrast at ``time``: ``label``, else ``"12m"`` at 365.25 days,
    else ``"<time>d"``."""
    if label is not None:
        return label
    return "12m" if time == DAYS_PER_YEAR else f"{time:g}d"


@dataclass(frozen=True)
class Screen:
    """Whether a two-arm contrast at a horizon is estimable (:func:`screen`)."""

    note: str | None  # why it is not estimable (the result is NaN), or None
    details: dict[str, Any]  # details of the not-estimable result
    longest: dict[str, float]  # longest follow-up of each arm
    problem: str | None  # few clusters: estimable, with this note


def screen(
    arm: TwoArm,
    horizon: float,
    key: str,
    *,
    check_clusters: bool,
    curve: str = "Kaplan-Meier curve",
) -> Screen:
    """Screen a two-arm contrast at ``horizon`` (``key``: its name, ``"time"`` or ``"tau"``).

    Not estimable with an empty arm, a horizon beyond an arm's follow-up (where ``curve``
    is unknown) or, with ``check_clusters`` and a robust variance, fewer than 2 clusters;
    a note on few clusters otherwise.
    """
    if arm.n_treated == 0 or arm.n_control == 0:
        return Screen("not estimable: one treatment group is empty", {}, {}, None)
    beyond, longest = beyond_followup(arm, horizon, key)
    if beyond is not None:
        info = {
            key: float(horizon),
            "per_group": {g: {"max_followup": v} for g, v in longest.items()},
        }
        note = beyond.replace("the Kaplan-Meier curve is", f"the {curve} is")
        return Screen(note, info, longest, None)
    robust = arm.weighted or arm.clustered
    problem = robust_problem(arm, stacklevel=5) if robust and check_clusters else None
    if problem is not None and problem.startswith("not estimable"):
        return Screen(problem, {}, longest, problem)
    return Screen(None, {}, longest, problem)


def no_event_notes(
    time: float, arms: list[str], *, events: str, scale: str, scales: str
) -> tuple[str | None, list[str]]:
    """Notes for arms without an event by ``time`` (a risk of 0 without variance).

    Returns the reason the contrast is not estimable (every arm in ``arms``: both are 0),
    else None, and one note per arm of ``arms`` otherwise. ``events`` names the events
    (e.g. ``"event of the cause"``), ``scale``/``scales`` the measure of each arm.
    """
    if len(arms) == 2:
        return (
            f"not estimable: no {events} by time = {time:g} in either arm (both {scales} are "
            "0, without sampling variance)"
        ), []
    return None, [
        f"no {events} by time = {time:g} in the {arm} arm: its {scale} is 0 without variance, "
        "so the interval reflects the other arm's uncertainty only and may be too narrow"
        for arm in arms
    ]
