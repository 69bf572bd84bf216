"""Shared pieces of the count estimators (private): checked count columns and log-rate influences.

Used by :mod:`analysis.outcomes.rates`, :mod:`analysis.outcomes.negative_binomial` and
:mod:`analysis.outcomes.before_after`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis._checks import binary, cluster_codes, numeric, weights_array

__all__ = ["CountColumns", "count_columns", "log_rate", "no_events_arm", "refactor"]


class CountColumns(NamedTuple):
    """Checked arrays of a count model: events, exposure, treatment (float), weights, clusters."""

    y: np.ndarray
    exposure: np.ndarray
    a: np.ndarray
    w: np.ndarray
    codes: np.ndarray


def count_columns(
    df: pd.DataFrame,
    *,
    events: str,
    exposure: str,
    treatment: str,
    weights: str | None,
    cluster: str | None,
    integer: bool,
) -> CountColumns:
    """Read and check the columns of a two-arm count model.

    Parameters
    ----------
    df : DataFrame
        One row per unit.
    events, exposure, treatment : str
        Event counts (>= 0; whole numbers when ``integer``), person-time (>= 0) and the 0/1
        treatment.
    weights, cluster : str or None
        Weights and cluster columns (ones and one cluster per row when ``None``).
    integer : bool
        Whether the events must be whole numbers (a likelihood for counts).

    Returns
    -------
    CountColumns
        The treatment as float; cluster codes 0..G-1.
    """
    y = numeric(df, events, "events")
    if integer and ((y < 0).any() or (y != np.round(y)).any()):
        raise ValueError(f"events column {events!r} must hold non-negative integers")
    if (y < 0).any():
        raise ValueError(f"events column {events!r} has negative values")
    expo = numeric(df, exposure, "exposure")
    if (expo < 0).any():
        raise ValueError(f"exposure column {exposure!r} has negative values")
    a = binary(df, treatment, "treatment").astype(float)
    w = weights_array(df, weights)
    codes, _ = cluster_codes(df, cluster)
    return CountColumns(y, expo, a, w, codes)


def refactor(codes: np.ndarray) -> np.ndarray:
    """Cluster codes renumbered 0..G-1 after rows were dropped."""
    return pd.factorize(codes)[0].astype(np.intp)


def no_events_arm(
    y: np.ndarray, a: np.ndarray, arm_labels: tuple[str, str]
) -> tuple[str, str] | None:
    """``(arm label, limit of the rate ratio)`` of an arm without events, or ``None``.

    The treated arm is checked first: no treated events sends the ratio to 0, no control
    events to infinity.
    """
    treated, control = arm_labels
    if y[a == 1].sum() == 0:
        return treated, "0"
    if y[a == 0].sum() == 0:
        return control, "infinity"
    return None


def log_rate(
    y: np.ndarray, e: np.ndarray, w: np.ndarray, sel: np.ndarray
) -> tuple[float, float, float, np.ndarray]:
    """Weighted rate of the rows ``sel`` and each row's influence on its logarithm.

    Returns ``(events, person_years, rate, influence)``: ``rate = sum w y / sum w e`` over
    ``sel`` (NaN without person-time) and ``influence = w (y - rate e) / sum w y`` on the
    rows of ``sel``, 0 elsewhere (0 everywhere without events or person-time, where the
    log-rate is not defined).
    """
    events = float(np.sum(w[sel] * y[sel]))
    person_years = float(np.sum(w[sel] * e[sel]))
    rate = events / person_years if person_years > 0 else float("nan")
    influence = np.zeros(len(y))
    if events > 0 and person_years > 0:
        influence[sel] = w[sel] * (y[sel] - rate * e[sel]) / events
    return events, person_years, rate, influence
