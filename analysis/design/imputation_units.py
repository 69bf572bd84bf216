"""Imputation of a missing value shared by several rows: one record per unit.

In a long table a missing covariate value may be shared by several rows: a person's status
form is carried forward to every date it covers, so the stacked risk sets of a target trial
hold the same unanswered question on many rows of one person. Imputing each row on its own
would draw different values for one unknown (and so understate the correlation of a
person's rows). :func:`unit_table` collapses the rows to one record per unit (the imputed
columns' one value, the predictors summarised over the unit's rows); the chains of
:func:`analysis.design.imputation.impute_chain` impute the records and
:meth:`UnitTable.spread` carries each imputed value to all the rows of its unit.

References
----------
van Buuren S (2018). *Flexible Imputation of Missing Data*, 2nd ed. CRC Press, chapter 7
(multilevel data: imputing the higher-level variables on the aggregated level).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis._checks import require_columns
from analysis.design.imputation import ImputationChain
from analysis.design.missing import design_matrix

__all__ = ["UnitTable", "unit_table"]


@dataclass(frozen=True, kw_only=True)
class UnitTable:
    """A long table collapsed to one record per unit for imputation (:func:`unit_table`).

    Attributes
    ----------
    table : DataFrame
        One row per unit, in sorted order of the unit key: the imputed columns (the
        unit's value, NaN when missing) and the predictors' numeric columns.
    predictors : tuple of str
        The predictor columns of ``table`` (complete, numeric).
    codes : ndarray
        The unit (row of ``table``) of each row of the long table.
    """

    table: pd.DataFrame
    predictors: tuple[str, ...]
    codes: np.ndarray

    @property
    def n_units(self) -> int:
        """The number of units (records imputed)."""
        return len(self.table)

    def spread(self, chain: ImputationChain, index: pd.Index) -> ImputationChain:
        """The chain's imputed unit values carried to the rows of the long table."""
        values = chain.values.iloc[self.codes].set_axis(index)
        return ImputationChain(values=values, trace=chain.trace)


def unit_table(
    df: pd.DataFrame,
    *,
    unit: str,
    impute: Sequence[str],
    predictors: Sequence[str],
    transforms: Mapping[str, str] | None = None,
    maximum: Sequence[str] = (),
) -> UnitTable:
    """Collapse a long table to one record per unit of a shared missing value.

    Parameters
    ----------
    df : DataFrame
        Long table: several rows may belong to one unit.
    unit : str
        Column of the unit key. The imputed columns must be constant within a unit
        (one value, observed on every row of the unit or on none).
    impute : sequence of str
        Numeric or boolean columns to impute.
    predictors : sequence of str
        Complete columns of the imputation model (categorical ones become 0/1
        columns, ``transforms`` applied), averaged over the unit's rows.
    transforms : mapping of str to str, optional
        As :func:`~analysis.design.missing.design_matrix`.
    maximum : sequence of str
        Numeric predictors summarised by their maximum over the unit's rows instead of
        the mean (a 0/1 column: "some row of the unit has it").

    Returns
    -------
    UnitTable
        Impute ``table`` with :func:`~analysis.design.imputation.impute_chain`
        (``predictors=list(unit_table.predictors)``) and carry the values to the rows
        with :meth:`UnitTable.spread`.

    Raises
    ------
    ValueError
        An imputed column takes different values within a unit, or a predictor has
        missing values.

    Examples
    --------
    >>> df = pd.DataFrame({"person": ["a", "a", "b"], "x": [None, None, 1.0],
    ...                    "y": [1.0, 3.0, 5.0]})
    >>> u = unit_table(df, unit="person", impute=["x"], predictors=["y"])
    >>> u.table
         x   x0
    0  NaN  2.0
    1  1.0  5.0
    """
    require_columns(df, unit=unit)
    impute = list(impute)
    codes, _ = pd.factorize(df[unit], sort=True)
    values = df[impute].astype(np.float64).reset_index(drop=True)
    by_unit = values.groupby(codes, sort=True)
    low, high = by_unit.min(), by_unit.max()
    seen = values.notna().groupby(codes, sort=True).sum()
    size = np.bincount(codes)
    for col in impute:
        n = seen[col].to_numpy()
        if ((n > 0) & (n < size)).any() or (low[col] != high[col])[n > 0].any():
            raise ValueError(f"{col}: values differ within a unit of {unit!r}")
    if df[list(predictors)].isna().any().any():
        raise ValueError("the predictors must be complete")
    x = design_matrix(df, list(predictors), transforms=transforms).reset_index(drop=True)
    grouped = x.groupby(codes, sort=True)
    summary = grouped.mean()
    for col in maximum:
        if col in summary.columns:
            summary[col] = grouped[col].max()
    summary.columns = [f"x{j}" for j in range(summary.shape[1])]
    table = pd.concat([low.reset_index(drop=True), summary.reset_index(drop=True)], axis=1)
    return UnitTable(table=table, predictors=tuple(summary.columns), codes=codes)
