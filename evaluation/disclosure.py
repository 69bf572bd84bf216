"""Evidence for statistical disclosure control, computed where the person-level data are.

The tables of a results folder are weighted (matching weights) or aggregated, so
they cannot show how many *persons* stand behind a cell, nor how much the largest
contributors hold of a sum. :func:`disclosure_evidence` computes that, per cell of
every output, from the analysis samples: unweighted counts of persons and events
and the largest individual contributions to each sum. These are ACRO's "interim
tables" (ACRO's federated mode collects the same evidence for a trusted aggregator).

They are written into the analyst's results folder as ``tables/disclosure_*.csv``
and never into ``release/``: they hold individual values (the largest contributions)
and counts of one. :mod:`evaluation.release` reads them to decide what may leave the
secure research environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from analysis.data.contract import BOOLEAN_COVARIATES, REGIONS
from analysis.design.missing import design_matrix, fit_design
from evaluation.study_design import LEVELS, TRANSFORMS

__all__ = [
    "EVENT_COLUMNS",
    "EVIDENCE_PREFIX",
    "TOP_COLUMNS",
    "TOP_VALUES",
    "contributions",
    "disclosure_evidence",
]

#: prefix of the evidence tables in ``tables/``
EVIDENCE_PREFIX = "disclosure_"
#: how many of the largest contributions of each sum are kept (N of the N-K rule <= this)
TOP_VALUES = 10
TOP_COLUMNS = tuple(f"top{i}" for i in range(1, TOP_VALUES + 1))

#: outcome -> (event column, persons column filter) of the estimates' evidence
EVENT_COLUMNS = {
    "mortality": "died",
    "overdose_mortality": "overdose_death",
    "retention": "discontinued",
    "crime": "followup_charges",
    "crime_before": "baseline_charges_at_risk",
}


def contributions(values: Iterable[float]) -> dict[str, Any]:
    """Sum, persons with a non-zero value, negatives and the largest values of a sum.

    Returns
    -------
    dict
        ``n`` (values present), ``n_events`` (values > 0), ``sum``,
        ``num_negative`` and ``top1``... ``top10`` (largest values; NaN where
        there are fewer).
    """
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    x = x[~np.isnan(x)]
    top = np.sort(x)[::-1][:TOP_VALUES]
    out: dict[str, Any] = {
        "n": int(x.size),
        "n_events": int((x > 0).sum()),
        "sum": float(x.sum()),
        "num_negative": int((x < 0).sum()),
    }
    for i, name in enumerate(TOP_COLUMNS):
        out[name] = float(top[i]) if i < top.size else np.nan
    return out


def _table1_evidence(
    samples: Mapping[str, pd.DataFrame], covariates: Iterable[str]
) -> pd.DataFrame:
    """Persons behind each cell of Table 1 (same rows as ``analysis.design.descriptives``)."""
    rows: list[dict[str, Any]] = []
    for column, df in samples.items():

        def add(
            variable: str,
            statistic: str,
            n: int,
            n_with: float,
            extra: dict | None = None,
            column: str = column,
        ) -> None:
            rows.append(
                {
                    "variable": variable,
                    "statistic": statistic,
                    "column": column,
                    "n": int(n),
                    "n_with": n_with,
                    "n_without": (n - n_with) if np.isfinite(n_with) else np.nan,
                    **(extra or {}),
                }
            )

        add("persons", "n", len(df), float(len(df)))
        add("persons", "sum of weights", len(df), float(len(df)))
        for cov in covariates:
            if cov == "sex":
                x = (df["sex"] == "F").to_numpy(float)
                add("women", "%", len(x), float(x.sum()))
                continue
            if cov == "region":
                codes, uniques = pd.factorize(df["region"])  # once, not once per region
                where = {u: i for i, u in enumerate(uniques)}
                for region in REGIONS:
                    x = (codes == where.get(region, -2)).astype(float)
                    add(f"region: {region}", "%", len(x), float(x.sum()))
                continue
            x = df[cov].to_numpy(float)
            known = ~np.isnan(x)
            if cov in BOOLEAN_COVARIATES:
                add(cov, "%", int(known.sum()), float(np.nansum(x)))
            else:
                c = contributions(x)
                extra = {k: c[k] for k in ("sum", "num_negative", *TOP_COLUMNS)}
                add(cov, "mean", int(known.sum()), np.nan, extra)
                add(cov, "SD", int(known.sum()), np.nan, extra)
            add(cov, "% missing", len(x), float((~known).sum()))
    return pd.DataFrame(rows)


def _reference_rows(
    sample: pd.DataFrame, reference: pd.DataFrame, ids: pd.Index, covariates: list[str], id: str
) -> np.ndarray | None:
    """Row of ``reference`` (whose ``id`` column is ``ids``) holding each row of ``sample``
    (same ``id``, same covariate values), or ``None`` if some row has no such row there."""
    if id not in sample.columns or not ids.is_unique:
        return None
    rows = ids.get_indexer(sample[id])
    if (rows < 0).any():
        return None
    for c in covariates:
        a, b = sample[c].to_numpy(), reference[c].to_numpy()[rows]
        if not (pd.isna(a) == pd.isna(b)).all() or not (a == b)[~pd.isna(a)].all():
            return None
    return rows


def _balance_evidence(
    samples: Mapping[str, pd.DataFrame],
    reference: pd.DataFrame,
    covariates: Iterable[str],
    id: str = "person_id",
) -> pd.DataFrame:
    """Persons behind each standardised difference: per design column, sample and arm.

    A design row depends only on the row and on ``reference``, so ``reference`` is
    expanded once (:func:`~analysis.design.missing.fit_design`) and a sample whose rows
    are rows of ``reference`` (same ``id`` and covariate values: the matched and weighted
    samples of the cohort) reads its rows there. Any other samples are expanded together
    in one :func:`~analysis.design.missing.design_matrix` call with the
    :class:`~analysis.design.missing.DesignSpec` fitted on ``reference``.
    """
    covariates = list(covariates)
    spec = {"transforms": TRANSFORMS, "levels": LEVELS, "drop_first": False}
    fitted, ref = fit_design(reference, covariates, **spec)
    binary = {
        c: set(np.unique(ref[c])) >= {0.0, 1.0} and ref[c].nunique() <= 3 for c in ref.columns
    }
    X = ref.to_numpy()
    ones, zeros = X == 1, X == 0
    ids = pd.Index(reference[id] if id in reference.columns else [])
    rows_in = {
        name: np.arange(len(df))
        if df is reference
        else _reference_rows(df, reference, ids, covariates, id)
        for name, df in samples.items()
    }
    others = [name for name, rows in rows_in.items() if rows is None]
    stacked = (
        design_matrix(
            pd.concat([samples[name][covariates] for name in others], ignore_index=True),
            covariates,
            reference=fitted,
            **spec,
        ).to_numpy()
        if others
        else np.empty((0, ref.shape[1]))
    )
    out = []
    start = 0
    for sample, df in samples.items():
        treated = df["treatment"].to_numpy() == 1
        rows = rows_in[sample]
        if rows is None:
            sub = stacked[start : start + len(df)]
            start += len(df)
            one, zero = sub == 1, sub == 0
        elif df is reference:
            one, zero = ones, zeros
        else:
            one, zero = ones[rows], zeros[rows]
        for group, mask in (("HAT", treated), ("OST", ~treated)):
            n_one, n_zero = one[mask].sum(axis=0), zero[mask].sum(axis=0)
            for j, col in enumerate(ref.columns):
                out.append(
                    {
                        "variable": col,
                        "sample": sample,
                        "group": group,
                        "binary": bool(binary.get(col, False)),
                        "n": int(mask.sum()),
                        "n_one": int(n_one[j]),
                        "n_zero": int(n_zero[j]),
                    }
                )
    return pd.DataFrame(out)


def _time_counts(
    df: pd.DataFrame, *, duration: str, event_type: np.ndarray, names: tuple[str, ...]
) -> pd.DataFrame:
    """Unweighted persons at risk, events (by type) and censored at each time, by group."""
    frames = []
    for group, sub in df.assign(_type=event_type).groupby("group", sort=True):
        t = sub[duration].to_numpy(float)
        types = sub["_type"].to_numpy()
        times = np.unique(t)
        out = pd.DataFrame({"group": group, "time": times})
        order = np.sort(t)
        out["n_at_risk"] = len(t) - np.searchsorted(order, times, side="left")
        for k, name in enumerate(names, start=1):
            out[name] = pd.Series(t[types == k]).value_counts().reindex(times, fill_value=0).values
        out["censored"] = (
            pd.Series(t[types == 0]).value_counts().reindex(times, fill_value=0).values
        )
        frames.append(out)
    if not frames:
        return pd.DataFrame(columns=["group", "time", "n_at_risk", *names, "censored"])
    return pd.concat(frames, ignore_index=True)


def _rates_evidence(
    df: pd.DataFrame, tables: Mapping[str, tuple[str, tuple[tuple[str, str, str], ...]]]
) -> pd.DataFrame:
    """Persons and contributions behind each cell of the rates tables."""
    rows = []
    for table, (label, blocks) in tables.items():
        for events, _years, name in blocks:
            for group, sub in df.groupby("group", sort=True):
                rows.append(
                    {"table": table, label: name, "key": name, "group": group}
                    | contributions(sub[events].to_numpy(float))
                )
    out = pd.DataFrame(rows)
    return out[["table", "key", "group", "n", "n_events", "sum", "num_negative", *TOP_COLUMNS]]


def _estimates_evidence(designs: Mapping[str, Any]) -> pd.DataFrame:
    """Persons, events and contributions per design, outcome and arm behind the estimates."""
    rows = []
    for name, design in designs.items():
        data = design.data
        # the rows and columns used, as arrays (no copies of the whole design table)
        keep = data["weight"].to_numpy(float) > 0 if design.weighted else slice(None)
        group = data["group"].to_numpy()[keep]
        in_retention = data["in_retention"].to_numpy(bool)[keep]
        levels = sorted(g for g in pd.unique(group) if not pd.isna(g))
        for outcome, column in EVENT_COLUMNS.items():
            values = data[column].to_numpy(float)[keep]
            for g in levels:
                sel = group == g
                if outcome == "retention":
                    sel &= in_retention
                if not sel.any():
                    continue
                rows.append(
                    {"design": name, "outcome": outcome, "group": g} | contributions(values[sel])
                )
    return pd.DataFrame(rows)


def disclosure_evidence(
    df: pd.DataFrame,
    designs: Mapping[str, Any],
    *,
    covariates: Iterable[str],
    rate_tables: Mapping[str, tuple[str, tuple[tuple[str, str, str], ...]]],
) -> dict[str, pd.DataFrame]:
    """Evidence tables for :mod:`evaluation.release`, named ``disclosure_<output>``.

    Parameters
    ----------
    df : DataFrame
        The analysed cohort (one row per person, with ``group`` and ``treatment``).
    designs : mapping of str to Design
        The study's designs (:func:`evaluation.pipeline.build_designs`); ``matched`` is
        the primary one, whose curves, rates and Table 1 columns are released.
    covariates : iterable of str
        Covariates of Table 1 and of the balance tables.
    rate_tables : mapping
        ``{table: (label column, ((events column, person-years column, label), ...))}``,
        the blocks of the crude-rate tables.

    Returns
    -------
    dict of str to DataFrame
        ``disclosure_table1``, ``disclosure_balance``, ``disclosure_rates``,
        ``disclosure_estimates``, ``disclosure_km_retention``, ``disclosure_cif_overdose``.
    """
    covariates = list(covariates)
    matched = designs["matched"].data
    hat, ost = df["group"] == "HAT", df["group"] == "OST"
    # subsets hold only the columns their evidence reads (not copies of whole tables)
    t1_samples = {
        "HAT_all": df.loc[hat, covariates],
        "OST_all": df.loc[ost, covariates],
        "HAT_matched": matched.loc[matched["group"] == "HAT", covariates],
        "OST_matched": matched.loc[matched["group"] == "OST", covariates],
    }
    balance_samples = {"before": df, "matched": matched}
    if "iptw" in designs:
        d = designs["iptw"].data
        columns = [*dict.fromkeys(["person_id", *covariates, "treatment"])]
        balance_samples["iptw"] = d.loc[d["weight"].to_numpy(float) > 0, columns]
    ret = matched[matched["in_retention"]]
    km_type = ret["discontinued"].to_numpy(float).astype(int)
    cif_type = np.select([matched["overdose_death"] == 1, matched["died"] == 1], [1, 2], 0)
    return {
        f"{EVIDENCE_PREFIX}table1": _table1_evidence(t1_samples, covariates),
        f"{EVIDENCE_PREFIX}balance": _balance_evidence(balance_samples, df, covariates),
        f"{EVIDENCE_PREFIX}rates": _rates_evidence(matched, rate_tables),
        f"{EVIDENCE_PREFIX}estimates": _estimates_evidence(designs),
        f"{EVIDENCE_PREFIX}km_retention": _time_counts(
            ret, duration="retention_days", event_type=km_type, names=("events",)
        ),
        f"{EVIDENCE_PREFIX}cif_overdose": _time_counts(
            matched,
            duration="followup_days",
            event_type=cif_type,
            names=("events", "competing_events"),
        ),
    }
