"""Descriptive baseline table ("Table 1") by group, optionally weighted."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.data.contract import BOOLEAN_COVARIATES, REGIONS


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    ok = ~np.isnan(x)
    return float(np.sum(x[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else float("nan")


def _wsd(x: np.ndarray, w: np.ndarray) -> float:
    ok = ~np.isnan(x)
    if ok.sum() < 2:
        return float("nan")
    m = _wmean(x, w)
    return float(np.sqrt(np.sum(w[ok] * (x[ok] - m) ** 2) / np.sum(w[ok])))


def baseline_table(
    df: pd.DataFrame,
    *,
    group: str = "group",
    covariates: Sequence[str] = (),
    weights: str | None = None,
) -> pd.DataFrame:
    """Summarise baseline covariates by group.

    Continuous covariates as mean (SD), booleans and categories as percentages of
    persons with a known value; each covariate with missing values also gets a
    "% missing" row. Weighted summaries (matching or IPT weights) when
    ``weights`` is given.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    group : str
        Column holding the group label (``HAT``/``OST``).
    covariates : sequence of str
        Columns to summarise; ``sex`` and ``region`` are shown by category.
    weights : str, optional
        Column of weights.

    Returns
    -------
    DataFrame
        Columns ``variable, statistic`` and one column per group (numbers), plus
        ``n`` in the first row.
    """
    groups = sorted(df[group].unique())
    rows: list[dict] = []
    w_all = df[weights].to_numpy(float) if weights else np.ones(len(df))

    def add(variable: str, statistic: str, values: dict[str, float]) -> None:
        rows.append({"variable": variable, "statistic": statistic, **values})

    masks = {g: (df[group] == g).to_numpy() for g in groups}
    add("persons", "n", {g: float(masks[g].sum()) for g in groups})
    if weights:
        add("persons", "sum of weights", {g: float(w_all[masks[g]].sum()) for g in groups})
    for cov in covariates:
        if cov == "sex":
            x = (df["sex"] == "F").to_numpy(float)
            add("women", "%", {g: 100 * _wmean(x[masks[g]], w_all[masks[g]]) for g in groups})
            continue
        if cov == "region":
            for region in REGIONS:
                x = (df["region"] == region).to_numpy(float)
                add(
                    f"region: {region}",
                    "%",
                    {g: 100 * _wmean(x[masks[g]], w_all[masks[g]]) for g in groups},
                )
            continue
        x = df[cov].to_numpy(float)
        if cov in BOOLEAN_COVARIATES:
            add(cov, "%", {g: 100 * _wmean(x[masks[g]], w_all[masks[g]]) for g in groups})
        else:
            add(cov, "mean", {g: _wmean(x[masks[g]], w_all[masks[g]]) for g in groups})
            add(cov, "SD", {g: _wsd(x[masks[g]], w_all[masks[g]]) for g in groups})
        miss = np.isnan(x).astype(float)
        if miss.any():
            add(
                cov, "% missing", {g: 100 * _wmean(miss[masks[g]], w_all[masks[g]]) for g in groups}
            )
    return pd.DataFrame(rows)
