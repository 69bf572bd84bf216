"""The simple, hand-written alternatives that ``bench_pipeline.py`` compares each stage with.

Each function is what a researcher would plausibly write by hand with pandas,
numpy, statsmodels and lifelines, without the package: a per-person
``groupby().apply`` for treatment spells, a quadratic nearest-neighbour search
for matching, ``lifelines.CoxPHFitter`` for hazard ratios, statsmodels' discrete
``NegativeBinomial`` for rate ratios. They are benchmarks, not analysis code:
they are checked against the package where they compute the same thing (the
benchmark reports the agreement) and are deliberately plain.

Each returns a small dict of numbers (estimates, counts) so that the benchmark can
show that the alternative and the package agree, or say why they do not.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

#: covariates of the propensity model (as ``evaluation.config.StudyConfig.covariates``)
CATEGORICAL = ("sex", "region")
NUMERIC = (
    "age",
    "years_opioid_use",
    "prior_ost_episodes",
    "injecting",
    "psychiatric_dx",
    "homeless",
    "prior_overdose",
    "benzodiazepine_use",
)


# -- read ------------------------------------------------------------------------------
def read_tables(folder) -> dict[str, pd.DataFrame]:
    """``pd.read_parquet`` of every table: no validation, no type normalisation, no sorting."""
    from pathlib import Path

    folder = Path(folder)
    return {p.stem: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}


# -- retention spells --------------------------------------------------------------------
def retention_groupby(extract, person_ids: np.ndarray, *, gap_days: int = 30) -> pd.DataFrame:
    """Retention in treatment by a per-person ``groupby().apply`` loop.

    For each person: sort the episodes by start, walk through them merging an
    episode into the current spell while its start is at most ``gap_days`` after
    the spell's end so far, and return the end of the spell containing the index
    date. Follow-up end (death, emigration, extract date) is a vectorised merge.

    Returns
    -------
    DataFrame
        Index ``person_id``; ``in_retention``, ``retention_days``, ``discontinued``
        (the definitions of ``analysis.data.cohort.derive_cohort``).
    """
    extract_date = pd.Timestamp(extract.extract_date)
    persons = extract.persons.loc[
        extract.persons["person_id"].isin(person_ids),
        ["person_id", "index_date", "emigration_date"],
    ]
    ep = extract.treatment_episodes
    ep = ep.loc[ep["person_id"].isin(person_ids), ["person_id", "start_date", "end_date"]]
    ep = ep.assign(end_date=ep["end_date"].fillna(extract_date))
    ep = ep[ep["start_date"] <= extract_date]
    ep = ep.merge(persons[["person_id", "index_date"]], on="person_id")

    def spell_end(g: pd.DataFrame):
        g = g.sort_values("start_date")
        index_date = g["index_date"].iloc[0]
        start = end = None
        for s, e in zip(g["start_date"], g["end_date"], strict=True):
            if end is not None and (s - end).days <= gap_days:
                end = max(end, e)
                continue
            if end is not None and start <= index_date <= end:
                return end
            start, end = s, e
        if end is not None and start <= index_date <= end:
            return end
        return pd.NaT

    ends = ep.groupby("person_id").apply(spell_end, include_groups=False)
    out = persons.set_index("person_id")
    deaths = extract.deaths.set_index("person_id")["death_date"]
    followup_end = pd.concat([out["emigration_date"], deaths.reindex(out.index)], axis=1).min(
        axis=1
    )
    followup_end = followup_end.fillna(extract_date).clip(upper=extract_date)
    spell = pd.to_datetime(ends.reindex(out.index))
    in_ret = spell.notna()
    days = (np.minimum(spell, followup_end) - out["index_date"]).dt.days
    return pd.DataFrame(
        {
            "in_retention": in_ret,
            "retention_days": days.where(in_ret).astype(float),
            "discontinued": (spell < followup_end).astype(float).where(in_ret),
        },
        index=out.index,
    )


# -- propensity score --------------------------------------------------------------------
def design_by_hand(df: pd.DataFrame) -> pd.DataFrame:
    """Dummies, missing indicators with mean fill, ``log1p(baseline_charges)``."""
    X = pd.get_dummies(df[list(CATEGORICAL)], drop_first=True, dtype=float)
    for col in NUMERIC:
        x = df[col].astype(float)
        if x.isna().any():
            X[f"{col}_missing"] = x.isna().astype(float)
            x = x.fillna(x.mean())
        X[col] = x
    X["baseline_charges_log1p"] = np.log1p(df["baseline_charges"].astype(float))
    return X


def propensity_statsmodels(df: pd.DataFrame) -> dict[str, Any]:
    """``statsmodels`` ``Logit`` on a hand-made design, in the regions that have HAT.

    (Regions without any HAT patient separate perfectly; by hand one restricts the fit
    to the regions with HAT, where the package fixes those scores at 0.)
    """
    import statsmodels.api as sm

    hat_regions = df.loc[df["treatment"] == 1, "region"].unique()
    sub = df[df["region"].isin(hat_regions)]
    X = sm.add_constant(design_by_hand(sub))
    X = X.loc[:, X.std() > 0].assign(const=1.0)
    fit = sm.Logit(sub["treatment"].to_numpy(float), X).fit(disp=0)
    ps = fit.predict(X)
    return {
        "n_fit": len(sub),
        "converged": bool(fit.mle_retvals["converged"]),
        "ps_mean": float(ps.mean()),
    }


# -- matching ----------------------------------------------------------------------------
def match_quadratic(
    df: pd.DataFrame,
    *,
    k: int = 4,
    caliper: float = 0.2,
    max_treated: int | None = None,
    chunk_cells: int = 2**23,
    seed: int = 1,
) -> dict[str, Any]:
    """Greedy 1:k nearest-neighbour matching by brute force, numpy broadcasting in chunks.

    MatchIt's sequential rule: treated persons in order of descending logit score
    (ties by ``person_id``), ``k`` rounds, each taking the nearest unused control of
    the same region within ``caliper`` pooled SDs (ties by ``person_id``). For each
    chunk of treated persons the full chunk x controls distance matrix of their
    region is formed by broadcasting (at most ``chunk_cells`` cells), then rows are
    settled one by one: ``O(n_treated * n_control * k)`` time.

    ``max_treated``: match only a random subsample of that many treated persons
    (against the full control pool); the caller extrapolates the time linearly in
    the number of treated persons (each costs one pass over its region's controls
    per round, whatever the subsample).

    Returns
    -------
    dict
        ``pairs`` (DataFrame ``treated_id, control_id, round``), ``n_treated_run``,
        ``n_treated`` and ``subsample`` (bool).
    """
    ids = df["person_id"].to_numpy()
    s = df["ps_logit"].to_numpy(float)
    tr = df["treatment"].to_numpy() == 1
    region = df["region"].to_numpy()
    ok = np.isfinite(s)
    sd = np.sqrt((np.var(s[tr & ok], ddof=1) + np.var(s[~tr & ok], ddof=1)) / 2)
    width = caliper * sd
    ti = np.flatnonzero(tr & ok)
    n_treated = len(ti)
    subsample = max_treated is not None and n_treated > max_treated
    if subsample:
        ti = np.random.default_rng(seed).choice(ti, max_treated, replace=False)
    ti = ti[np.lexsort((ids[ti], -s[ti]))]  # descending score, ties by id
    ci = np.flatnonzero(~tr & ok)
    ci = ci[np.argsort(ids[ci], kind="stable")]  # argmin takes the lowest id on ties
    pairs = []
    for reg in np.unique(region[ti]):
        pool = ci[region[ci] == reg]
        sp = s[pool]
        used = np.zeros(len(pool), bool)
        active = ti[region[ti] == reg]
        chunk = max(1, chunk_cells // max(len(pool), 1))
        for rnd in range(1, k + 1):
            next_active = []
            for a in range(0, len(active), chunk):
                rows = active[a : a + chunk]
                dist = np.abs(s[rows][:, None] - sp[None, :])  # the quadratic part
                dist[:, used] = np.inf
                for i, t in enumerate(rows):
                    j = int(np.argmin(dist[i]))
                    if dist[i, j] <= width:
                        used[j] = True
                        dist[i + 1 :, j] = np.inf
                        pairs.append((ids[t], ids[pool[j]], rnd))
                        next_active.append(t)
            active = np.array(next_active, dtype=np.int64)
    return {
        "pairs": pd.DataFrame(pairs, columns=["treated_id", "control_id", "round"]),
        "n_treated_run": len(ti),
        "n_treated": n_treated,
        "subsample": bool(subsample),
    }


# -- weights and balance -----------------------------------------------------------------
def att_weights_by_hand(df: pd.DataFrame) -> dict[str, Any]:
    """ATT odds weights in one line, no checks, no ESS."""
    ps = df["ps"].to_numpy(float)
    w = np.where(df["treatment"].to_numpy() == 1, 1.0, ps / (1 - ps))
    return {"sum_control_weights": float(w[df["treatment"].to_numpy() == 0].sum())}


def balance_by_hand(df: pd.DataFrame, matched: pd.DataFrame) -> dict[str, Any]:
    """SMD per design column before and after matching, a loop over columns with pandas."""
    out = {}
    for name, data, w in (("before", df, None), ("matched", matched, "weight")):
        X = design_by_hand(data)
        t = data["treatment"].to_numpy() == 1
        wt = np.ones(len(data)) if w is None else data[w].to_numpy(float)
        smd = {}
        for col in X.columns:
            x = X[col].to_numpy(float)
            m1, m0 = np.average(x[t], weights=wt[t]), np.average(x[~t], weights=wt[~t])
            v1, v0 = np.var(x[t]), np.var(x[~t])
            smd[col] = (m1 - m0) / np.sqrt((v1 + v0) / 2) if v1 + v0 > 0 else 0.0
        out[f"max_abs_smd_{name}"] = float(np.max(np.abs(list(smd.values()))))
    return out


# -- outcome models ----------------------------------------------------------------------
def cox_lifelines(
    df: pd.DataFrame, *, duration: str, event: str, weights: str | None, cluster: str | None
) -> dict[str, Any]:
    """``lifelines.CoxPHFitter``: robust=True with ``cluster_col`` when a cluster is given."""
    from lifelines import CoxPHFitter

    cols = [duration, event, "treatment"] + [c for c in (weights, cluster) if c]
    data = df[cols].astype({duration: float, event: float, "treatment": float})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cph = CoxPHFitter().fit(
            data,
            duration,
            event,
            weights_col=weights,
            cluster_col=cluster,
            robust=cluster is not None,
        )
    return {
        "estimate": float(np.exp(cph.params_["treatment"])),
        "se_log": float(cph.standard_errors_["treatment"]),
    }


def nb_statsmodels(
    df: pd.DataFrame, *, count: str, exposure: str, cluster: str | None
) -> dict[str, Any]:
    """statsmodels discrete ``NegativeBinomial`` (NB2, alpha estimated), offset log exposure.

    Unweighted: the discrete count models of statsmodels take no case weights, so a
    by-hand fit on the matched sample ignores the control weights (1/k per set).
    """
    import statsmodels.api as sm

    d = df[df[exposure] > 0]
    X = sm.add_constant(d[["treatment"]].astype(float))
    model = sm.NegativeBinomial(
        d[count].to_numpy(float), X, loglike_method="nb2", offset=np.log(d[exposure].to_numpy())
    )
    kw = {"cov_type": "cluster", "cov_kwds": {"groups": d[cluster].to_numpy()}} if cluster else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(disp=0, maxiter=200, **kw)
    return {
        "estimate": float(np.exp(fit.params["treatment"])),
        "se_log": float(fit.bse["treatment"]),
        "alpha": float(fit.params["alpha"]),
    }


def _km_by_group(df: pd.DataFrame, *, duration: str, event: str, weights: str):
    from lifelines import KaplanMeierFitter

    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a, g in df.groupby("treatment"):
            fits[int(a)] = KaplanMeierFitter().fit(g[duration], g[event], weights=g[weights])
    return fits


def km_ratio_lifelines(
    df: pd.DataFrame, *, duration: str, event: str, weights: str, time: float
) -> dict[str, Any]:
    """Weighted ``KaplanMeierFitter`` per group; ratio of survival at ``time`` (no CI)."""
    fits = _km_by_group(df, duration=duration, event=event, weights=weights)
    s = {a: float(f.survival_function_at_times(time).iloc[0]) for a, f in fits.items()}
    return {"estimate": s[1] / s[0]}


def rmst_lifelines(
    df: pd.DataFrame, *, duration: str, event: str, weights: str, tau: float
) -> dict[str, Any]:
    """Weighted KM per group and ``lifelines.utils.restricted_mean_survival_time``; no CI."""
    from lifelines.utils import restricted_mean_survival_time

    fits = _km_by_group(df, duration=duration, event=event, weights=weights)
    r = {a: float(restricted_mean_survival_time(f, t=tau)) for a, f in fits.items()}
    return {"estimate": r[1] - r[0]}


def cif_lifelines(
    df: pd.DataFrame, *, duration: str, event_type: str, weights: str
) -> dict[str, Any]:
    """``AalenJohansenFitter`` per group (its default: jittered ties, variance computed)."""
    from lifelines import AalenJohansenFitter

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a, g in df.groupby("treatment"):
            ajf = AalenJohansenFitter(seed=1).fit(
                g[duration], g[event_type], event_of_interest=1, weights=g[weights]
            )
            out[f"cif_end_{int(a)}"] = float(ajf.cumulative_density_.iloc[-1, 0])
    return out
