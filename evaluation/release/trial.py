"""The rules applied to the tables of an emulated target trial (version-2 extract).

- ``flow`` (``step, n_rows, n_persons``): persons below the threshold suppressed, and the
  rows (person-dates) of such a step too, since they are the person-dates of fewer persons
  than the threshold; both rounded.
- ``protocol``: the protocol's text (the configuration), no counts: released as it is.
- ``ipcw_weights`` (quantiles of the censoring weights): the smallest and largest weights
  (quantiles 0 and 1) are individual values and are left out.
- ``comparator_use`` and ``exclusions`` are counts of persons
  (:func:`evaluation.release.tables.release_counts_table`).
"""

from __future__ import annotations

import pandas as pd

from evaluation.release.record import Output
from evaluation.release.rules import Rules, round_columns, suppress_cells

__all__ = ["release_flow_rows", "release_text", "release_weight_quantiles"]


def release_flow_rows(df: pd.DataFrame, rules: Rules, out: Output) -> pd.DataFrame:
    """A target trial's flow: persons thresholded, the rows of a small step suppressed too."""
    small = rules.small_mask(df[["n_persons"]], out)["n_persons"]
    released = suppress_cells(
        df,
        pd.DataFrame({"n_persons": small}, index=df.index),
        out,
        rules.small_reason(),
        rules.small_text,
    )
    rows_small = rules.small_mask(df[["n_rows"]], out)["n_rows"]
    released = suppress_cells(
        released,
        pd.DataFrame({"n_rows": rows_small}, index=df.index),
        out,
        rules.small_reason("person-dates"),
        rules.small_text,
    )
    of_few = small & ~rows_small
    released = suppress_cells(
        released,
        pd.DataFrame({"n_rows": of_few}, index=df.index),
        out,
        "person-dates of fewer persons than the threshold: minimum frequency threshold",
        "suppressed",
    )
    return round_columns(released, ["n_rows", "n_persons"], rules)


def release_text(df: pd.DataFrame, out: Output) -> pd.DataFrame:
    """A table of text (the protocol): released as it is."""
    out.comments.append("text of the configuration; no counts or individual values")
    return df


def release_weight_quantiles(df: pd.DataFrame, out: Output) -> pd.DataFrame:
    """Quantiles of the censoring weights without the minimum and maximum."""
    extreme = df["quantile"].isin([0.0, 1.0])
    if extreme.any():
        out.coarsened.append(
            "quantiles 0 and 1 (the smallest and largest weights, individual values) left out"
        )
    return df[~extreme.to_numpy()]
