"""The one registry of effect measures: name, scale, unit, digits and labels.

An estimate's ``measure`` (``results.json``, ``truth.json``, the simulation summary) is
one of these names. Ratios (hazard, rate and risk ratios) are compared with the truth
and assessed on the log scale; differences on their natural scale. The generator's truth,
the study, the simulation summary and both reports read the scale, unit, digits and
labels from here.

Measures at a time point carry a horizon suffix (``RD_12m``, ``RR_12m``; see
:func:`evaluation.pipeline.horizon_label`): :func:`measure` also knows a prefix with
any horizon (``RD_6m``, ``RD_100d``), with labels saying the horizon.

Examples
--------
>>> measure("HR").scale
'ratio'
>>> measure("RD_24m").unit
'percentage points'
>>> is_ratio("RMST_diff")
False
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MEASURES",
    "RATIO_MEASURES",
    "Measure",
    "is_ratio",
    "measure",
    "measure_label",
    "scale_of",
]


@dataclass(frozen=True)
class Measure:
    """An effect measure (HAT versus OST) as estimated, reported and compared with the truth.

    Attributes
    ----------
    name : str
        The measure's name in ``results.json`` (``HR``, ``RD_12m``...).
    scale : {"ratio", "difference"}
        Ratios are assessed on the log scale (bias, coverage, the truth's Monte Carlo SE),
        differences on their natural scale.
    unit : str
        The unit in which the report shows a value (``""`` for a ratio,
        ``"percentage points"`` for a risk difference, ``"days"``).
    digits : int
        Decimals shown in the report's text and tables.
    label : str
        What the measure is, for the reader (``hazard ratio``).
    short : str
        The measure's name in a table column, with its unit where it is not a ratio.
    factor : float
        The report shows ``factor * value`` (100 for a risk difference in percentage points).
    """

    name: str
    scale: Literal["ratio", "difference"]
    unit: str
    digits: int
    label: str
    short: str
    factor: float = 1.0

    @property
    def is_ratio(self) -> bool:
        """Whether the measure is a ratio (log scale)."""
        return self.scale == "ratio"


def _horizon_text(suffix: str) -> tuple[str, str]:
    """``12m`` -> (``12 months``, ``12 m``); ``100d`` -> (``100 days``, ``100 d``)."""
    number, unit = suffix[:-1], suffix[-1]
    return (f"{number} {'months' if unit == 'm' else 'days'}", f"{number} {unit}")


def _risk_difference(suffix: str) -> Measure:
    long, short = _horizon_text(suffix)
    return Measure(
        name=f"RD_{suffix}",
        scale="difference",
        unit="percentage points",
        digits=1,
        label=f"difference at {long} (risk, cumulative incidence or retention)",
        short=f"RD at {short} (pp)",
        factor=100.0,
    )


def _retention_ratio(suffix: str) -> Measure:
    long, short = _horizon_text(suffix)
    number, unit = suffix[:-1], suffix[-1]
    return Measure(
        name=f"RR_{suffix}",
        scale="ratio",
        unit="",
        digits=2,
        label=f"ratio of {number}-{'month' if unit == 'm' else 'day'} retention",
        short=f"RR at {short}",
    )


#: every measure the study reports, by name (in the order the reports list them)
MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure("HR", "ratio", "", 2, "hazard ratio", "HR"),
        Measure("IRR", "ratio", "", 2, "incidence rate ratio", "IRR"),
        _retention_ratio("12m"),
        _risk_difference("12m"),
        _risk_difference("24m"),
        Measure(
            "RMST_diff",
            "difference",
            "days",
            1,
            "difference in restricted mean time (days alive or in treatment)",
            "RMST diff. (days)",
        ),
        Measure(
            "ratio_of_rate_ratios",
            "ratio",
            "",
            2,
            "ratio of after/before rate ratios (difference-in-differences)",
            "ratio of rate ratios",
        ),
        Measure(
            "rate_ratio_after_vs_before",
            "ratio",
            "",
            2,
            "rate ratio, after vs before index",
            "rate_ratio_after_vs_before",
        ),
    )
}

#: the names of the registered ratio measures (log scale)
RATIO_MEASURES: tuple[str, ...] = tuple(m.name for m in MEASURES.values() if m.is_ratio)

_AT_HORIZON = re.compile(r"^(RD|RR)_(\d+(?:\.\d+)?[md])$")


def measure(name: str) -> Measure:
    """The registered measure of a name; a risk difference or ratio at any horizon too.

    Parameters
    ----------
    name : str
        ``HR``, ``RD_12m``, ``RD_6m``, ``RR_100d``...

    Returns
    -------
    Measure

    Raises
    ------
    KeyError
        Not a measure of the study.
    """
    if name in MEASURES:
        return MEASURES[name]
    found = _AT_HORIZON.match(str(name))
    if found is None:
        raise KeyError(f"measure {name!r} is not in analysis.data.measures.MEASURES")
    prefix, suffix = found.groups()
    return _risk_difference(suffix) if prefix == "RD" else _retention_ratio(suffix)


def is_ratio(name: str) -> bool:
    """Whether a measure is a ratio (assessed on the log scale); False for an unknown name."""
    try:
        return measure(name).is_ratio
    except KeyError:
        return False


def scale_of(name: str) -> str:
    """``"log"`` for a ratio measure, ``"natural"`` for a difference (or an unknown name)."""
    return "log" if is_ratio(name) else "natural"


def measure_label(name: str) -> str:
    """The reader's label of a measure; the name itself when it is not registered."""
    try:
        return measure(name).label
    except KeyError:
        return str(name)
