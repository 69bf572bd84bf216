"""A power grid for trial planners: true effects as settings, power curves.

``python -m evaluation.simulate --n-hat 100,200,400 --effects mortality_hr=0.5,0.7,0.9,1.0``
runs the study at every number of HAT patients × every effect value. The names are those
of :data:`synthetic.spec_effects.EFFECT_PARAMETERS` (``mortality_hr``, ``retention_hr``,
``crime_irr``, ``overdose_share_ratio``; the scenario's own keys such as ``hr_mortality``
are accepted too). The values replace the scenario's *conditional* effects (given
covariates and frailty, while in treatment); each setting's truth, the marginal effect in
the treated, is computed for that setting's scenario from potential outcomes, and the
power curves are drawn against it.

Several effects given together vary together: the j-th values of each name form the j-th
effect setting (``--effects mortality_hr=0.5,0.7 crime_irr=0.4,0.6`` is two settings,
not four), so that one grid draws a power curve for each of their estimands.

:func:`effect_levels` checks and orders the grid; :func:`power_curve_figure` draws power
against the true effect, one line per ``n_hat``; :func:`type_one_error` picks the settings
whose truth is the null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from evaluation.replicates import SimulationError

__all__ = [
    "EffectLevel",
    "effect_columns",
    "effect_label",
    "effect_levels",
    "is_null",
    "parse_effects",
    "power_curve_figure",
    "truth_varies",
    "type_one_error",
]

#: one effect setting: ``(name, value)`` pairs in the order of ``EFFECT_PARAMETERS``
EffectLevel = tuple[tuple[str, float], ...]

#: prefix of the summary's columns holding a setting's effect values
EFFECT_COLUMN = "effect_"


def parse_effects(text: str) -> tuple[str, tuple[float, ...]]:
    """One ``--effects`` word: ``mortality_hr=0.5,0.6,0.7`` -> ``("mortality_hr", (0.5, ...))``.

    Raises
    ------
    SimulationError
        Not ``NAME=V,V,...``, a value that is not a positive finite number, an unknown name.
    """
    from synthetic.spec import ScenarioError
    from synthetic.spec_effects import EFFECT_PARAMETERS, effect_name

    example = "mortality_hr=0.5,0.7,1.0"
    name, eq, values = text.partition("=")
    if not eq or not name.strip():
        raise SimulationError(f"--effects: expected NAME=V,V,... such as {example}, got {text!r}")
    try:
        name = effect_name(name)
    except ScenarioError as exc:
        raise SimulationError(f"--effects: {exc}") from None
    words = [w.strip() for w in values.split(",") if w.strip()]
    if not words:
        raise SimulationError(f"--effects: no values for {name} in {text!r} (e.g. {example})")
    out = []
    for w in words:
        try:
            v = float(w)
        except ValueError:
            raise SimulationError(f"--effects: {name}: {w!r} is not a number") from None
        if not (math.isfinite(v) and v > 0):
            raise SimulationError(
                f"--effects: {name}: {w} is not a ratio; true effects are positive "
                f"(1 is no effect; {EFFECT_PARAMETERS[name]} in the scenario)"
            )
        out.append(v)
    return name, tuple(out)


def effect_levels(effects: Mapping[str, Sequence[float]] | None) -> list[EffectLevel]:
    """The effect settings of a grid, checked and ordered.

    Parameters
    ----------
    effects : mapping or None
        Name -> values (``{"mortality_hr": [0.5, 0.7]}``; names as :func:`parse_effects`
        accepts them). Several names vary together and need the same number of values.

    Returns
    -------
    list of EffectLevel
        Sorted by value, repeated settings once; ``[()]`` (the scenario's own effects) when
        ``effects`` is empty or ``None``.

    Raises
    ------
    SimulationError
        A name given twice (also as its scenario key), lists of different lengths, a bad
        value or name.
    """
    from synthetic.spec_effects import EFFECT_PARAMETERS

    if not effects:
        return [()]
    grid: dict[str, tuple[float, ...]] = {}
    for raw, values in effects.items():
        text = f"{raw}={','.join(str(v) for v in values)}"
        name, parsed = parse_effects(text)
        if name in grid:
            raise SimulationError(f"--effects: {name} is given twice")
        grid[name] = parsed
    lengths = {len(v) for v in grid.values()}
    if len(lengths) > 1:
        counts = ", ".join(f"{k} {len(v)}" for k, v in grid.items())
        raise SimulationError(
            f"--effects: effects given together vary together (the j-th values of each form "
            f"the j-th setting), so each needs the same number of values; got {counts}"
        )
    names = [k for k in EFFECT_PARAMETERS if k in grid]
    levels = {tuple((k, grid[k][j]) for k in names) for j in range(lengths.pop())}
    return sorted(levels, key=lambda level: tuple(v for _, v in level))


def effect_label(effects: Mapping[str, float] | None) -> str:
    """``mortality_hr = 0.5, crime_irr = 0.4`` (empty for the scenario's own effects)."""
    return ", ".join(f"{k} = {v:g}" for k, v in (effects or {}).items())


def effect_columns(summary: pd.DataFrame) -> list[str]:
    """The summary's effect columns (``effect_mortality_hr``, ...); empty without a grid."""
    return [c for c in summary.columns if str(c).startswith(EFFECT_COLUMN)]


def is_null(truth: Any, truth_mcse: Any) -> np.ndarray:
    """Whether true values (assessment scale: log for ratios) are the null, no effect.

    A truth is the null when it is within 2 Monte Carlo SEs of 0 (or 1e-9 without an SE):
    the null scenario's truths are exactly 0 (both potential outcomes coincide).
    """
    t = np.asarray(truth, dtype=float)
    se = np.nan_to_num(np.asarray(truth_mcse, dtype=float), nan=0.0)
    return np.abs(t) <= np.maximum(2 * se, 1e-9)


def truth_varies(rows: pd.DataFrame) -> bool:
    """Whether the grid moved an estimand's truth: its range exceeds 4 Monte Carlo SEs.

    ``rows``: the summary rows of one estimand and method. A grid over ``mortality_hr``
    leaves the retention estimands where they were; their power curve would be one point.
    """
    t = rows["truth"].to_numpy(dtype=float)
    t = t[np.isfinite(t)]
    if t.size < 2:
        return False
    se = np.nan_to_num(rows["truth_mcse"].to_numpy(dtype=float), nan=0.0)
    return bool(np.ptp(t) > max(4 * float(se.max(initial=0.0)), 1e-9))


def _natural(d: pd.DataFrame) -> np.ndarray:
    t = d["truth"].to_numpy(dtype=float)
    return np.where(d["scale"].eq("log").to_numpy(), np.exp(t), t)


def power_curve_figure(
    summary: pd.DataFrame,
    outcome: str,
    measure: str,
    *,
    method: str | None = None,
    alpha: float = 0.05,
    label: str | None = None,
):
    """Power against the true effect of one estimand, one line per number of HAT patients.

    Parameters
    ----------
    summary : DataFrame
        As :func:`evaluation.simulation_summary.summarise` returns it (or ``summary.csv``).
    outcome, measure : str
        The estimand.
    method : str, optional
        The method (default: the primary one).
    alpha : float
        The significance level (a dotted line: the power at the null is the type I error).
    label : str, optional
        The x axis's label (default ``"true <outcome> <measure>"``).

    Returns
    -------
    matplotlib.figure.Figure
        x: the marginal true effect of each setting (natural scale; log axis for ratios);
        error bars ±1.96 Monte Carlo SE; hollow markers where the truth is the null.
    """
    import matplotlib.pyplot as plt

    from evaluation import figures  # noqa: F401  (the report's seaborn theme)

    d = summary[(summary["outcome"] == outcome) & (summary["measure"] == measure)]
    d = d[d["method"] == method] if method is not None else d[d["primary"].astype(bool)]
    ratio = bool(len(d)) and d["scale"].iloc[0] == "log"
    fig, ax = plt.subplots(figsize=(7, 4.2))
    colours = plt.get_cmap("viridis")
    sizes = sorted(d["n_hat"].unique())
    for i, n in enumerate(sizes):
        g = d[d["n_hat"] == n].assign(_x=lambda x: _natural(x)).sort_values("_x")
        colour = colours(i / max(len(sizes) - 1, 1) * 0.9)
        ax.errorbar(
            g["_x"],
            g["power"],
            yerr=1.96 * g["power_mcse"].fillna(0),
            marker="o",
            capsize=3,
            color=colour,
            label=f"n_hat = {n}",
        )
        null = is_null(g["truth"], g["truth_mcse"])
        if null.any():
            ax.plot(g["_x"][null], g["power"][null], "o", mfc="white", color=colour, ms=8)
    if ratio:
        ax.set_xscale("log")
        ticks = sorted({round(float(x), 2) for x in _natural(d)} | {1.0})
        if len(ticks) <= 12:
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
    ax.axvline(1.0 if ratio else 0.0, color="grey", lw=0.8)
    ax.axhline(0.8, color="grey", lw=0.8, ls="--")
    ax.axhline(alpha, color="grey", lw=0.8, ls=":")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(label or f"true {outcome} {measure} (marginal, in the treated)")
    ax.set_ylabel(f"power (share with p < {alpha:g})")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def type_one_error(summary: pd.DataFrame) -> pd.DataFrame:
    """The rows whose true effect is the null (:func:`is_null`): power there is type I error."""
    if summary.empty:
        return summary
    return summary[is_null(summary["truth"], summary["truth_mcse"])]
