"""Figures of a study, drawn from the tables of a results folder.

Every function takes tables as written in ``tables/`` (so the book and the
pipeline draw the same figures from the same numbers) and returns a matplotlib
Figure. Group colours are the same everywhere.
"""

from __future__ import annotations

__all__ = [
    "GROUP_COLOURS",
    "GROUP_LABELS",
    "all_figures",
    "cumulative_incidence_plot",
    "flow_plot",
    "forest_plot",
    "km_plot",
    "ps_histogram_plot",
    "rate_plot",
]

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from evaluation.figure_style import GROUP_COLOURS, GROUP_LABELS  # noqa: E402
from evaluation.figures_design import love_plot  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook")


def _step(ax, df: pd.DataFrame, y: str, group: str, *, lo: str | None, hi: str | None) -> None:
    colour = GROUP_COLOURS.get(group)
    ax.step(df["time"], df[y], where="post", color=colour, label=GROUP_LABELS.get(group, group))
    if lo and hi and lo in df and hi in df:
        ax.fill_between(df["time"], df[lo], df[hi], step="post", color=colour, alpha=0.15)


def km_plot(
    curve: pd.DataFrame,
    at_risk: pd.DataFrame | None = None,
    *,
    title: str = "Retention in treatment",
    ylabel: str = "Proportion still in treatment",
) -> plt.Figure:
    """Kaplan–Meier curves by group with numbers at risk below the axis.

    Parameters
    ----------
    curve : DataFrame
        Columns ``group, time, survival, ci_low, ci_high`` (time in days).
    at_risk : DataFrame, optional
        Columns ``group, time, n_at_risk`` at the tick times.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for group, df in curve.groupby("group", sort=True):
        _step(ax, df.sort_values("time"), "survival", group, lo="ci_low", hi="ci_high")
    ax.set_xlabel("Days since index date")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.set_title(title)
    ax.legend(loc="lower left", frameon=True)
    if at_risk is not None and len(at_risk):
        times = np.sort(at_risk["time"].unique())
        ax.set_xticks(times)
        lines = []
        for group, df in at_risk.groupby("group", sort=True):
            counts = df.set_index("time").reindex(times)["n_at_risk"]
            lines.append(
                f"{group:>4}: "
                + "  ".join(f"{int(c):>5}" if pd.notna(c) else f"{'–':>5}" for c in counts)
            )
        ax.text(
            0.0,
            -0.22,
            "Number at risk\n" + "\n".join(lines),
            transform=ax.transAxes,
            family="monospace",
            fontsize=8,
            va="top",
        )
    fig.tight_layout()
    return fig


def cumulative_incidence_plot(
    cif: pd.DataFrame, *, title: str = "Cumulative incidence of overdose death"
) -> plt.Figure:
    """Aalen–Johansen cumulative incidence by group.

    Parameters
    ----------
    cif : DataFrame
        Columns ``group, time, cumulative_incidence`` and optionally ``ci_low, ci_high``.
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for group, df in cif.groupby("group", sort=True):
        _step(ax, df.sort_values("time"), "cumulative_incidence", group, lo="ci_low", hi="ci_high")
    ax.set_xlabel("Days since index date")
    ax.set_ylabel("Cumulative incidence (other deaths competing)")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def rate_plot(
    rates: pd.DataFrame, *, x: str, ylabel: str, title: str, hue: str = "group"
) -> plt.Figure:
    """Rates with exact confidence intervals as points and error bars.

    Parameters
    ----------
    rates : DataFrame
        Columns ``group, rate, ci_low, ci_high`` and the category column ``x``.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    cats = list(dict.fromkeys(rates[x]))
    groups = sorted(rates[hue].unique())
    width = 0.8 / max(len(groups), 1)
    for j, group in enumerate(groups):
        df = rates[rates[hue] == group].set_index(x).reindex(cats)
        pos = np.arange(len(cats)) + (j - (len(groups) - 1) / 2) * width
        ax.bar(
            pos,
            df["rate"],
            width=width * 0.9,
            color=GROUP_COLOURS.get(group),
            label=GROUP_LABELS.get(group, group),
        )
        ax.errorbar(
            pos,
            df["rate"],
            yerr=[df["rate"] - df["ci_low"], df["ci_high"] - df["rate"]],
            fmt="none",
            ecolor="black",
            capsize=3,
            lw=1,
        )
    ax.set_xticks(np.arange(len(cats)))
    ax.set_xticklabels(cats)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def forest_plot(estimates: pd.DataFrame, *, title: str = "All estimates") -> plt.Figure:
    """Forest plot of ratio estimates (log scale) by outcome and method.

    Parameters
    ----------
    estimates : DataFrame
        Columns ``outcome, measure, method, estimate, ci_low, ci_high, primary`` and
        optionally ``truth``. Only ratio measures (HR, IRR, RR_12m) are drawn.
    """
    ratio = estimates[estimates["measure"].isin(["HR", "IRR", "RR_12m"])].copy()
    ratio = ratio.dropna(subset=["estimate"])
    ratio["label"] = ratio["outcome"] + " " + ratio["measure"] + " · " + ratio["method"]
    ratio = ratio.iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(ratio) + 1.4))
    y = np.arange(len(ratio))
    colours = np.where(ratio["primary"].astype(bool), "#000000", "#777777")
    ax.hlines(y, ratio["ci_low"], ratio["ci_high"], color=colours, lw=1.5)
    ax.scatter(ratio["estimate"], y, color=colours, zorder=3, s=22, label="estimate (95% CI)")
    if "truth" in ratio and ratio["truth"].notna().any():
        ax.scatter(ratio["truth"], y, marker="x", color="#009E73", zorder=4, s=30, label="truth")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    ticks = [t for t in (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 10) if lo <= t <= hi]
    if len(ticks) >= 2:
        ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(y)
    ax.set_yticklabels(ratio["label"], fontsize=9)
    ax.set_xlabel("Ratio, HAT vs OST (log scale; < 1 favours HAT except retention RR)")
    ax.set_title(title, pad=22)
    ax.legend(
        loc="lower left",
        bbox_to_anchor=(0, 1.0),
        ncol=2,
        fontsize=8,
        frameon=False,
        borderaxespad=0.2,
    )
    fig.tight_layout()
    return fig


def _count(x: object) -> str:
    """A count for a figure's text; a value suppressed by disclosure control as its label."""
    if hasattr(x, "shown"):
        return str(x.shown)
    return "–" if pd.isna(x) else f"{int(x):,}"


def flow_plot(flow: pd.DataFrame, *, title: str = "Flow of persons") -> plt.Figure:
    """Flow diagram: persons read, exclusions, analysed, retention analysis, matched.

    Parameters
    ----------
    flow : DataFrame
        Columns ``step, n_hat, n_ost`` in order; rows whose ``step`` starts with
        ``excluded`` are drawn as side boxes, the others as the main column.
    """
    rows = list(flow.itertuples(index=False))
    n = len(rows)
    fig, ax = plt.subplots(figsize=(8, 0.62 * n + 0.5))
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.1, n - 0.2)
    ax.axis("off")
    arrow = {"arrowstyle": "-|>", "color": "#444444", "lw": 1.0, "shrinkA": 0, "shrinkB": 0}
    main = {"boxstyle": "round,pad=0.4", "fc": "white", "ec": "#333333", "lw": 1.1}
    side = {"boxstyle": "round,pad=0.3", "fc": "#eeeeee", "ec": "#999999", "lw": 0.8}
    x_main, x_side = 2.3, 4.6
    ys = [n - i - 0.6 for i in range(n)]
    main_ys = [y for y, r in zip(ys, rows, strict=True) if not str(r.step).startswith("excluded")]
    if len(main_ys) > 1:
        ax.plot([x_main, x_main], [main_ys[0], main_ys[-1]], color="#444444", lw=1.0, zorder=0)
    for y, r in zip(ys, rows, strict=True):
        counts = f"HAT {_count(r.n_hat)}  ·  OST {_count(r.n_ost)}"
        if str(r.step).startswith("excluded"):
            text = str(r.step).replace("excluded from retention: ", "excluded from retention:\n")
            ax.annotate("", xy=(x_side - 0.1, y), xytext=(x_main, y), arrowprops=arrow)
            ax.text(x_side, y, f"{text}  ({counts})", ha="left", va="center", fontsize=9, bbox=side)
        else:
            ax.text(x_main, y, f"{r.step}\n{counts}", ha="center", va="center", fontsize=10,
                    bbox=main, zorder=3)  # fmt: skip
    ax.set_title(title)
    fig.tight_layout()
    return fig


def ps_histogram_plot(overlap: pd.DataFrame) -> plt.Figure:
    """Propensity-score overlap from the binned counts of ``tables/ps_overlap.csv``.

    Parameters
    ----------
    overlap : DataFrame
        Columns ``sample`` (``all``/``matched``), ``group``, ``bin_left``, ``bin_right``, ``n``.
        Each group's histogram is shown as a density so groups of different size compare.
    """
    samples = [s for s in ("all", "matched") if s in set(overlap["sample"])]
    fig, axes = plt.subplots(1, len(samples), figsize=(5.2 * len(samples), 3.8), sharex=True)
    axes = np.atleast_1d(axes)
    titles = {"all": "All persons (before matching)", "matched": "Matched sample"}
    for ax, sample in zip(axes, samples, strict=True):
        for group, df in overlap[overlap["sample"] == sample].groupby("group", sort=True):
            width = (df["bin_right"] - df["bin_left"]).to_numpy()
            total = df["n"].sum()
            density = df["n"] / (total * width) if total else df["n"] * 0.0
            ax.bar(
                df["bin_left"],
                density,
                width=width,
                align="edge",
                alpha=0.5,
                color=GROUP_COLOURS.get(group),
                label=f"{group} (n = {int(total)})",
            )
        ax.set_title(titles[sample])
        ax.set_xlabel("Logit of the propensity score")
        ax.set_ylabel("Density")
        ax.legend()
    fig.tight_layout()
    return fig


def all_figures(tables: dict[str, pd.DataFrame]) -> dict[str, plt.Figure]:
    """Every figure of the report that its tables allow, keyed by file name.

    Parameters
    ----------
    tables : dict of str to DataFrame
        The tables of a results folder (as in ``tables/``).
    """
    # a table without rows (e.g. no HAT person in treatment on the index date, so no
    # retention curves) gives no figure; the report says why the estimate is missing
    tables = {name: df for name, df in tables.items() if len(df)}
    figs: dict[str, plt.Figure] = {}
    if "balance" in tables:
        figs["love_plot"] = love_plot(tables["balance"])
    if "ps_overlap" in tables:
        figs["ps_overlap"] = ps_histogram_plot(tables["ps_overlap"])
    if "km_retention" in tables:
        figs["km_retention"] = km_plot(tables["km_retention"], tables.get("km_retention_at_risk"))
    if "cif_overdose" in tables:
        figs["cif_overdose"] = cumulative_incidence_plot(tables["cif_overdose"])
    if "mortality_rates" in tables:
        figs["mortality_rates"] = rate_plot(
            tables["mortality_rates"],
            x="outcome",
            ylabel="Deaths per 1,000 person-years",
            title="Mortality in the matched cohort (exact 95% CI)",
        )
    if "crime_rates" in tables:
        figs["crime_rates"] = rate_plot(
            tables["crime_rates"],
            x="period",
            ylabel="Charges per person-year",
            title="Police-registered charges before and after index (matched)",
        )
    if "estimates" in tables:
        figs["forest"] = forest_plot(tables["estimates"])
    return figs
