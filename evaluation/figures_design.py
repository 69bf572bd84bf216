"""Figures of the design stage: covariate balance and propensity-score overlap.

Each function takes a table (a balance table, or person-level scores) and returns a
matplotlib :class:`~matplotlib.figure.Figure`, drawn without pyplot's global state,
so figures can be made in worker processes and closed by garbage collection.

References
----------
Austin PC (2009). Balance diagnostics for comparing the distribution of baseline
covariates between treatment groups in propensity-score matched samples. *Stat Med*
28(25):3083-3107.
"""

from __future__ import annotations

__all__ = ["DESIGN_STYLES", "GROUP_COLOURS", "love_plot", "ps_overlap_plot"]

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from evaluation.figure_style import GROUP_COLOURS  # one colour per group across the study

#: colour and marker of each design in a Love plot (``smd_<design>`` columns)
DESIGN_STYLES = {
    "before": ("#999999", "o"),
    "after": ("#000000", "D"),
    "matched": ("#000000", "D"),
    "iptw": ("#009E73", "s"),
}
_OTHER_STYLES = [("#CC79A7", "^"), ("#E69F00", "v"), ("#56B4E9", "P")]

_LABELS = {
    "before": "before matching",
    "after": "after adjustment",
    "matched": "matched",
    "iptw": "IPT-weighted (ATT)",
}


def love_plot(
    balance: pd.DataFrame,
    *,
    threshold: float = 0.1,
    title: str = "Covariate balance",
) -> Figure:
    """Absolute standardised mean differences per covariate, before and after.

    Parameters
    ----------
    balance : DataFrame
        A ``variable`` column and one ``smd_<design>`` column per design, e.g. the
        output of :func:`analysis.design.balance.compare_balance` (``smd_before``,
        ``smd_after``) or the study's balance table (``smd_before``,
        ``smd_matched``, ``smd_iptw``).
    threshold : float, default 0.1
        Position of the dashed reference line (Austin 2009).
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Austin PC (2009). Balance diagnostics for comparing the distribution of
    baseline covariates between treatment groups in propensity-score matched
    samples. *Stat Med* 28:3083-3107.
    """
    cols = [c for c in balance.columns if c.startswith("smd_")]
    if not cols:
        raise ValueError("balance needs at least one smd_<design> column")
    order = balance.assign(_key=balance[cols[0]].abs()).sort_values("_key", kind="stable")
    y = np.arange(len(order))
    fig = Figure(figsize=(7.0, 0.28 * len(order) + 1.6), layout="constrained")
    ax = fig.subplots()
    extra = iter(_OTHER_STYLES)
    for col in cols:
        design = col.removeprefix("smd_")
        colour, marker = DESIGN_STYLES.get(design) or next(extra, ("#666666", "x"))
        ax.scatter(
            order[col].abs(),
            y,
            color=colour,
            marker=marker,
            s=28,
            zorder=3,
            label=_LABELS.get(design, design),
        )
    ax.axvline(threshold, color="#555555", linestyle="--", linewidth=1, zorder=1)
    ax.set_yticks(y, order["variable"].astype(str))
    ax.set_xlabel("Absolute standardised mean difference")
    ax.set_ylabel("Covariate")
    ax.set_xlim(left=0)
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.grid(axis="y", color="#EEEEEE", zorder=0)
    ax.set_title(title)
    ax.legend(loc="lower right", frameon=True)
    return fig


def ps_overlap_plot(
    df: pd.DataFrame,
    *,
    score: str = "ps_logit",
    treatment: str = "treatment",
    matched: str | np.ndarray | pd.Series | None = None,
    weights: str | np.ndarray | pd.Series | None = None,
    bins: int = 40,
    xlabel: str | None = None,
) -> Figure:
    """Distribution of the propensity score by group, all persons and matched.

    Parameters
    ----------
    df : DataFrame
        One row per person, with ``score`` and ``treatment`` (1 = HAT, 0 = OST).
    score : str, default ``"ps_logit"``
        Column to plot (the logit shows the tails better than the probability).
        Non-finite values (separated persons) are left out and counted in the title.
    treatment : str, default ``"treatment"``
        0/1 column.
    matched : str or array-like of bool, optional
        Column name or flags (row order of ``df``) of persons in the matched sample;
        adds a second panel.
    weights : str or array-like, optional
        Column name or values: matching weights, applied in the matched panel (so
        the controls' histogram is the one the outcome models see).
    bins : int, default 40
        Histogram bins, shared by the panels.
    xlabel : str, optional
        Axis label (default: logit or probability, from the column name).

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = df[score].to_numpy(dtype=np.float64)
    finite = np.isfinite(x)
    group = np.where(df[treatment].to_numpy() == 1, "HAT", "OST")
    panels = [("All persons", np.ones(len(df), dtype=bool))]
    if matched is not None:
        flag = df[matched] if isinstance(matched, str) else matched
        panels.append(("Matched sample", np.asarray(flag, dtype=bool)))
    w = None
    if weights is not None:
        w = np.asarray(df[weights] if isinstance(weights, str) else weights, dtype=np.float64)
    if not finite.any():
        raise ValueError(f"{score}: no finite values to plot")
    edges = np.histogram_bin_edges(x[finite], bins=bins)
    fig = Figure(figsize=(5.0 * len(panels), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharex=True, sharey=False))
    for ax, (name, mask) in zip(axes, panels, strict=True):
        sel = mask & finite
        data = pd.DataFrame({"score": x[sel], "group": group[sel]})
        if w is not None and name == "Matched sample":
            data["weight"] = np.nan_to_num(w[sel])
        sns.histplot(
            data=data,
            x="score",
            weights="weight" if "weight" in data else None,
            hue="group",
            hue_order=["HAT", "OST"],
            palette=GROUP_COLOURS,
            bins=edges,
            stat="density",
            common_norm=False,
            element="step",
            alpha=0.3,
            ax=ax,
        )
        n_hat = int((sel & (group == "HAT")).sum())
        n_ost = int((sel & (group == "OST")).sum())
        dropped = int((mask & ~finite).sum())
        note = f", {dropped} not finite" if dropped else ""
        ax.set_title(f"{name} (HAT {n_hat}, OST {n_ost}{note})", fontsize="medium")
        ax.set_xlabel(
            xlabel or ("Logit of propensity score" if "logit" in score else "Propensity score")
        )
        ax.set_ylabel("Density")
    return fig
