"""Loading and formatting a simulation folder for the pages of the simulation report.

The pages only read a folder written by ``python -m evaluation.simulate`` (``summary.csv``,
``summary.json``, ``manifest.json``) and format it; every number in the text comes from
there. The folder is the environment variable ``HAT_SIMULATION`` (absolute path) or
``results-simulation/default`` at the repository root.
"""

from __future__ import annotations

import io
import json
import math
import os
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import Image, Markdown, display

from analysis.data.measures import measure as measure_info
from analysis.data.measures import measure_label
from evaluation.labels import OUTCOME_LABELS

REPO = Path(__file__).resolve().parents[1]


DESIGN_ORDER = ("matched", "iptw", "matched_caliper0.1", "matched_1to1", "naive")
DESIGN_LABELS = {
    "matched": "matched 1:k (primary)",
    "iptw": "IPTW (ATT)",
    "matched_caliper0.1": "matched, caliper 0.1 SD",
    "matched_1to1": "matched 1:1",
    "naive": "naive (unadjusted)",
}


# ----------------------------------------------------------------------------- loading
def folder() -> Path:
    """The simulation folder: ``$HAT_SIMULATION`` or ``results-simulation/default``."""
    return Path(
        os.environ.get("HAT_SIMULATION") or REPO / "results-simulation" / "default"
    ).resolve()


@cache
def summary() -> pd.DataFrame:
    """``summary.csv``: one row per setting x estimand x method."""
    path = folder() / "summary.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"no summary.csv in {path.parent}: set HAT_SIMULATION to a folder written by "
            "`python -m evaluation.simulate`"
        )
    df = pd.read_csv(path)
    df["primary"] = df["primary"].astype(bool)
    return df


@cache
def document() -> dict[str, Any]:
    """``summary.json`` (settings, failures, truth, rows)."""
    return json.loads((folder() / "summary.json").read_text(encoding="utf-8"))


@cache
def manifest() -> dict[str, Any]:
    """``manifest.json``; empty when absent."""
    path = folder() / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def sizes() -> list[int]:
    """The settings' numbers of HAT patients, ascending (each once)."""
    return sorted({int(s["n_hat"]) for s in document()["settings"]})


def effects() -> dict[str, list[float]]:
    """The power grid's true effects, name -> values (empty: the scenario's own effects)."""
    return document().get("effects") or {}


def effect_cols(df: pd.DataFrame) -> list[str]:
    """The summary's effect columns (``effect_mortality_hr``), empty without a grid."""
    return [c for c in df.columns if str(c).startswith("effect_")]


def effect_text(row: Any) -> str:
    """``mortality_hr = 0.5`` for a summary row of a power grid (empty otherwise)."""
    get = row.get if isinstance(row, dict | pd.Series) else lambda c: getattr(row, c)
    return ", ".join(f"{c.removeprefix('effect_')} = {get(c):g}" for c in effect_cols(summary()))


def alpha() -> float:
    """Significance level (and 1 - confidence level) of the study."""
    return float(document().get("alpha", 0.05))


# ----------------------------------------------------------------------------- formatting
def finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def num(x: Any, digits: int = 3, *, sign: bool = False) -> str:
    """A number, or an en dash when missing."""
    if not finite(x):
        return "–"
    x = float(x)
    if round(x, digits) == 0:
        x = 0.0
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def with_mcse(x: Any, mcse: Any, digits: int = 3, *, sign: bool = False) -> str:
    """``0.012 (0.004)``: a value and its Monte Carlo SE in brackets."""
    if not finite(x):
        return "–"
    return f"{num(x, digits, sign=sign)} ({num(mcse, digits)})"


def pct_mcse(x: Any, mcse: Any, digits: int = 1) -> str:
    """``94.5% (1.6)``: a proportion as a percentage, its Monte Carlo SE in points."""
    if not finite(x):
        return "–"
    return f"{100 * float(x):.{digits}f}% ({num(100 * float(mcse), digits)})"


def estimand(outcome: str, measure: str) -> str:
    """``all-cause mortality, hazard ratio``."""
    return f"{OUTCOME_LABELS.get(outcome, outcome)}, {measure_label(measure)}"


def method_label(method: str) -> str:
    """``Cox, matched 1:k (primary)``."""
    model, _, design = str(method).partition("_")
    models = {"cox": "Cox", "nb": "neg. binomial", "km": "Kaplan–Meier", "rmst": "RMST",
              "poisson": "Poisson"}  # fmt: skip
    return f"{models.get(model, model)}, {DESIGN_LABELS.get(design, design.replace('_', ' '))}"


def truth_text(row: pd.Series) -> str:
    """The true value on the natural scale (``0.71``; RMST in days)."""
    t = row["truth"]
    if not finite(t):
        return "–"
    t = math.exp(t) if row["scale"] == "log" else float(t)
    return f"{t:.1f} days" if in_days(row["measure"]) else f"{t:.3f}"


def in_days(measure: str) -> bool:
    """Whether a measure's values are days (``RMST_diff``), from the registry of measures."""
    try:
        return measure_info(measure).unit == "days"
    except KeyError:
        return False


# ----------------------------------------------------------------------------- display
def md(text: str) -> None:
    """Show Markdown (MyST) text."""
    display(Markdown(text))


def md_table(df: pd.DataFrame) -> None:
    """Show a DataFrame as a Markdown table."""
    display(Markdown(df.to_markdown(index=False, disable_numparse=True)))


def show(fig: Any) -> None:
    """Show a matplotlib figure as a PNG and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    display(Image(data=buf.getvalue()))


def synthetic_banner() -> None:
    """Say what a simulation study is (and is not)."""
    md(
        ":::{admonition} Simulated data\n:class: warning\n"
        f"Every replicate is a synthetic registry extract of the scenario "
        f"`{document()['scenario']}`, analysed exactly like real data. These pages show how "
        "well the study's methods recover the known true effects, and with what power; they "
        "say nothing about heroin-assisted treatment in Norway.\n:::"
    )


# ----------------------------------------------------------------------------- tables
def ordered(df: pd.DataFrame) -> pd.DataFrame:
    outcomes = {o: i for i, o in enumerate(OUTCOME_LABELS)}
    designs = {d: i for i, d in enumerate(DESIGN_ORDER)}
    return (
        df.assign(_o=df["outcome"].map(outcomes).fillna(99))
        .assign(_d=df["design"].map(designs).fillna(99))
        .sort_values(["_o", "measure", "_d", *effect_cols(df), "n_hat"], kind="stable")
        .drop(columns=["_o", "_d"])
    )


def by_size(rows: pd.DataFrame, cell) -> pd.DataFrame:
    """One row per estimand (and method, and effect setting of a power grid), one column per
    number of HAT patients; ``cell(row) -> str``."""
    rows = ordered(rows)
    eff = effect_cols(rows)
    out = []
    for (outcome, measure, method, *_), d in rows.groupby(
        ["outcome", "measure", "method", *eff], sort=False
    ):
        line = {"estimand": estimand(outcome, measure)}
        if rows["method"].nunique() > 1 and not rows["primary"].all():
            line["method"] = method_label(method)
        if eff:
            line["true effects of the setting"] = effect_text(d.iloc[0])
            line["true value"] = truth_text(d.iloc[0])
        for r in d.itertuples():
            line[f"n_hat = {r.n_hat}"] = cell(r)
        out.append(line)
    return pd.DataFrame(out)


def replicates_note(rows: pd.DataFrame) -> str:
    """``200 replicates per setting (0 failed)`` for the rows shown."""
    per = rows.groupby("setting")[["n_replicates", "n_failed"]].first()
    reps = sorted(set(per["n_replicates"]))
    failed = int(per["n_failed"].sum())
    reps_text = " to ".join(str(r) for r in (reps[0], reps[-1]) if r is not None)
    if len(reps) == 1:
        reps_text = str(reps[0])
    return f"{reps_text} replicates per setting, {failed} failed in all"
