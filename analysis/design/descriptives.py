"""Descriptive baseline table ("Table 1") by group, optionally weighted.

:func:`baseline_table` summarises covariates of any DataFrame by a group column: a numeric
covariate as mean and SD, a 0/1 covariate as a percentage, a categorical covariate as one
percentage per level; which levels are shown, in which order and under which labels is the
caller's choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype

from analysis._checks import require_columns
from analysis.design.missing import is_categorical

__all__ = ["baseline_table"]


def _wmean(x: np.ndarray, w: np.ndarray) -> float:
    ok = ~np.isnan(x)
    return float(np.sum(x[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else float("nan")


def _wsd(x: np.ndarray, w: np.ndarray) -> float:
    ok = ~np.isnan(x)
    if ok.sum() < 2:
        return float("nan")
    m = _wmean(x, w)
    return float(np.sqrt(np.sum(w[ok] * (x[ok] - m) ** 2) / np.sum(w[ok])))


def _covariate_rows(
    cov: str,
    s: pd.Series,
    *,
    levels: Mapping[str, Sequence],
    binary: Sequence[str],
) -> list[tuple[str, str, np.ndarray, bool]]:
    """``(variable, statistic, values, is_percentage)`` of one covariate's rows."""
    if is_categorical(s):
        shown = levels.get(cov)
        if shown is None:
            shown = sorted(s.dropna().astype(str).unique())
        # a share of every person: a missing value is in no level's row (code -1); one
        # factorisation instead of a comparison of every value per level
        codes, uniques = pd.factorize(s)
        where = {u: i for i, u in enumerate(uniques)}
        return [
            (f"{cov}: {lv}", "%", (codes == where.get(lv, -2)).astype(float), True) for lv in shown
        ]
    x = s.to_numpy(float, na_value=np.nan)
    if cov in binary or is_bool_dtype(s):
        rows = [(cov, "%", x, True)]
    else:
        rows = [(cov, "mean", x, False), (cov, "SD", x, False)]
    miss = np.isnan(x)
    if miss.any():
        rows.append((cov, "% missing", miss.astype(float), True))
    return rows


def baseline_table(
    df: pd.DataFrame,
    *,
    group: str,
    covariates: Sequence[str] = (),
    weights: str | None = None,
    levels: Mapping[str, Sequence] | None = None,
    binary: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Summarise baseline covariates by group.

    Numeric covariates as mean (SD), 0/1 covariates as percentages of persons with a
    known value, categorical covariates as one percentage per level (of all persons);
    each numeric or 0/1 covariate with missing values also gets a "% missing" row.
    Weighted summaries (matching or IPT weights) when ``weights`` is given.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    group : str
        Column holding the group label; one result column per group, sorted.
    covariates : sequence of str
        Columns to summarise, in order.
    weights : str, optional
        Column of weights.
    levels : mapping of str to sequence, optional
        Categorical covariate -> the levels shown, in order (levels not observed get
        0%; levels left out get no row). Default: the observed levels, sorted.
    binary : sequence of str, default ()
        Numeric 0/1 covariates shown as a percentage (boolean columns always are).
    labels : mapping of str to str, optional
        Row label -> label shown, for rows of a covariate (``<covariate>``) or of a
        level (``<covariate>: <level>``).

    Returns
    -------
    DataFrame
        Columns ``variable, statistic`` and one column per group (numbers); the first
        row is the number of persons (then the sum of weights, if weighted).

    Raises
    ------
    analysis._checks.ColumnError
        A column named by ``group``, ``covariates`` or ``weights`` is not in ``df``.
    """
    require_columns(df, group=group, weights=weights)
    for cov in covariates:
        require_columns(df, covariates=cov)
    levels, labels = dict(levels or {}), dict(labels or {})
    groups = sorted(df[group].unique())
    w_all = df[weights].to_numpy(float) if weights else np.ones(len(df))
    masks = {g: (df[group] == g).to_numpy() for g in groups}
    rows: list[dict] = [
        {"variable": "persons", "statistic": "n", **{g: float(masks[g].sum()) for g in groups}}
    ]
    if weights:
        sums = {g: float(w_all[masks[g]].sum()) for g in groups}
        rows.append({"variable": "persons", "statistic": "sum of weights", **sums})
    for cov in covariates:
        for variable, statistic, x, percent in _covariate_rows(
            cov, df[cov], levels=levels, binary=binary
        ):
            scale = 100 if percent else 1
            values = {g: scale * _wmean(x[masks[g]], w_all[masks[g]]) for g in groups}
            if statistic == "SD":
                values = {g: _wsd(x[masks[g]], w_all[masks[g]]) for g in groups}
            label = labels.get(variable, variable)
            rows.append({"variable": label, "statistic": statistic, **values})
    return pd.DataFrame(rows)
