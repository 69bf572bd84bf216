"""Design stage: the cohort, the propensity score, the primary and sensitivity designs, balance.

:func:`cohort_stage` derives the cohort table of a version-1 extract (with the calendar-time
covariate) and checks that a comparison can be made; :func:`design_stage` fits the
propensity score and builds the designs (:func:`build_designs`: 1:k matching, IPTW,
narrower caliper, 1:1, naive); :func:`balance_stage` measures covariate balance. The
design tables (Table 1, the propensity-score histogram) are made here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.data.cohort import calendar_years, derive_cohort
from analysis.data.contract import CALENDAR_COVARIATE
from analysis.design.balance import balance_reference, balance_table, effective_sample_size
from analysis.design.estimated_weights import EstimatedWeights, att_weight_model_from_propensity
from analysis.design.matching import match
from analysis.design.propensity import PropensityScore, fit_propensity
from analysis.design.weighting import att_weights
from evaluation import study_design
from evaluation.config import StudyConfig
from evaluation.study import StudyError, StudyState

__all__ = [
    "Design",
    "balance_stage",
    "build_designs",
    "cohort_stage",
    "design_stage",
    "design_tables",
]


@dataclass(frozen=True)
class Design:
    """An analysis sample: cohort rows with a weight and a cluster per person.

    Attributes
    ----------
    name : str
        ``matched``, ``iptw``, ``matched_caliper0.1``, ``matched_1to1`` or ``naive``.
    data : DataFrame
        Cohort columns plus ``weight`` and ``cluster``.
    weighted : bool
        Whether the weights are not all one.
    info : dict
        Numbers describing the design (matched counts, ESS...).
    weight_model : EstimatedWeights, optional
        For estimated weights (IPTW): the weights as a function of the propensity
        model, rows in the order of ``data``, so the outcome models' variances can
        account for the propensity model's estimation.
    clustered : bool, default True
        Whether the outcome models' variances are clustered on ``cluster``. ``False`` for
        version 1's unweighted naive design, one row per person, whose variances are
        model-based; a design in which a person can have several rows (version 2's naive
        comparison: an initiator is also in OST on the fixed date) must keep it.
    """

    name: str
    data: pd.DataFrame
    weighted: bool
    info: dict[str, Any] = field(default_factory=dict)
    weight_model: EstimatedWeights | None = None
    clustered: bool = True


def _matched_design(
    name: str,
    df: pd.DataFrame,
    *,
    k: int,
    caliper: float,
    config: StudyConfig,
    ids: pd.Index | None = None,
) -> Design:
    matched = match(
        df,
        treatment="treatment",
        score="ps_logit",
        id="person_id",
        k=k,
        caliper=caliper,
        exact=config.matching.exact,
        replace=config.matching.replace,
    )
    sample = _inner_join(df, matched.data[["person_id", "match_set", "weight"]], ids)
    # Control weights rescaled to sum to the number of matched HAT persons, so both arms
    # carry equal total weight, as in the ATT's two potential outcomes of the same treated
    # population. Under non-proportional hazards the Cox estimate depends on the arms'
    # relative weight in the risk sets, so MatchIt's convention (controls summing to their
    # count, 1:k) would target a different average hazard ratio.
    is_control = sample["treatment"].to_numpy() == 0
    weight = sample["weight"].to_numpy(dtype=np.float64, copy=True)
    control_total = pd.Series(weight[is_control]).sum()
    if control_total > 0:
        weight[is_control] *= matched.n_treated_matched / control_total
        sample["weight"] = weight
    sample["cluster"] = _person_codes(sample) if config.matching.replace else sample["match_set"]
    info = {
        "k": k,
        "caliper_sd": caliper,
        "replace": config.matching.replace,
        "exact": list(config.matching.exact),
        "n_treated": int(matched.n_treated),
        "n_treated_matched": int(matched.n_treated_matched),
        "n_control_matched": int(matched.n_control_matched),
        "share_treated_matched": matched.n_treated_matched / max(matched.n_treated, 1),
        "unmatched_treated_by_reason": {
            str(k): int(v)
            for k, v in matched.unmatched["reason"].value_counts().sort_index().items()
        },
        "ess_control": effective_sample_size(weight[is_control]),
    }
    return Design(name=name, data=sample, weighted=True, info=info)


def _inner_join(df: pd.DataFrame, data: pd.DataFrame, ids: pd.Index | None = None) -> pd.DataFrame:
    """``df.merge(data, on="person_id", how="inner", validate="one_to_one")``, by position.

    The rows of ``df`` (in its order, fresh index) whose ``person_id`` is in ``data``, with
    ``data``'s other columns after ``df``'s: what the merge gives, without its hashing and
    copying of every column. Repeated ids fall back to the merge (which refuses them).
    ``ids``: ``pd.Index(df["person_id"])``, built once for several joins (its hash table is
    kept by the index).
    """
    try:
        index = pd.Index(df["person_id"]) if ids is None else ids
        pos = index.get_indexer(data["person_id"])
    except pd.errors.InvalidIndexError:  # repeated ids in df
        pos = None
    if pos is not None:
        order = np.argsort(pos, kind="stable")
        rows = pos[order]
        if len(rows) and (rows[0] < 0 or not (rows[1:] > rows[:-1]).all()):
            pos = None  # ids of data missing from df, or repeated
    if pos is None:
        return df.merge(data, on="person_id", how="inner", validate="one_to_one")
    out = df.take(rows)
    out.index = pd.RangeIndex(len(rows))
    for column in data.columns:
        if column != "person_id":
            out[column] = data[column].to_numpy()[order]
    return out


def _person_codes(df: pd.DataFrame) -> np.ndarray:
    """Integer cluster labels of persons, ordered as their ``person_id`` (one per person).

    A cluster per person: the codes :func:`pandas.factorize` (``sort=True``) gives the ids,
    so every cluster sum runs in the order it runs with the ids themselves, without
    sorting strings in each estimator.
    """
    ids = df["person_id"].to_numpy(dtype=object)
    if len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1])):  # the cohort is sorted by id
        return np.arange(len(ids))
    return pd.factorize(df["person_id"], sort=True)[0]


def _check_exact_overlap(df: pd.DataFrame, config: StudyConfig) -> None:
    """Matching exactly on ``config.matching.exact`` needs a cell with both groups."""
    exact = list(config.matching.exact)
    if not exact:
        return
    if len(exact) == 1:  # the usual case, by counts per code (missing is a cell of its own)
        codes = pd.factorize(df[exact[0]], use_na_sentinel=False)[0]
        treated = np.bincount(codes, weights=df["treatment"].to_numpy(dtype=np.float64))
        if ((treated > 0) & (treated < np.bincount(codes))).any():
            return
    counts = df.groupby(exact, dropna=False)["treatment"].agg(["sum", "size"])
    if ((counts["sum"] > 0) & (counts["sum"] < counts["size"])).any():
        return

    def cells(hat: bool) -> str:
        chosen = counts[(counts["sum"] > 0) if hat else (counts["sum"] == 0)]
        return ", ".join(str(c) for c in chosen.index.tolist()) or "none"

    raise StudyError(
        f"no value of {exact} (matched exactly) has both HAT and OST persons: HAT persons are "
        f"in {cells(True)}; OST persons in {cells(False)}; no HAT person can be compared"
    )


def build_designs(
    df: pd.DataFrame, config: StudyConfig, propensity: PropensityScore | None = None
) -> dict[str, Design]:
    """Primary and sensitivity designs for a cohort table with ``ps``/``ps_logit`` columns.

    With ``propensity`` (the fit behind ``ps``, on the rows of ``df``) the IPTW design
    carries its weight model, and its outcome variances account for the estimation of
    the propensity model (stacked estimating equations).
    """
    ids = pd.Index(df["person_id"])  # one hash table of the ids for every design's join
    designs = {
        "matched": _matched_design(
            "matched",
            df,
            k=config.matching.k,
            caliper=config.matching.caliper,
            config=config,
            ids=ids,
        )
    }
    if designs["matched"].info["n_treated_matched"] == 0:
        raise StudyError(
            "no HAT person could be matched to an OST comparator within the caliper "
            f"({config.matching.caliper} SD) and exact on {list(config.matching.exact)}"
        )
    sens = config.sensitivity
    if sens.iptw:
        weighted = att_weights(
            df, treatment="treatment", score="ps", trim=sens.iptw_trim, id="person_id"
        )
        sample = _inner_join(df, weighted.data[["person_id", "weight"]], ids)  # a new frame
        sample["cluster"] = _person_codes(sample)
        weight_model = None
        if propensity is not None:
            weight_model = att_weight_model_from_propensity(
                df,
                propensity,
                treatment="treatment",
                covariates=config.propensity_covariates,
                cap=weighted.cap,
            )
        designs["iptw"] = Design(
            name="iptw",
            data=sample,
            weighted=True,
            info={
                "trim": sens.iptw_trim,
                "n_treated": int(weighted.n_treated),
                "n_control": int(weighted.n_control),
                "ess_treated": float(weighted.ess_treated),
                "ess_control": float(weighted.ess_control),
                "variance": "stacked estimating equations (propensity model estimated)"
                if weight_model is not None
                else "robust sandwich, weights treated as known",
            },
            weight_model=weight_model,
        )
    if sens.caliper != config.matching.caliper:
        name = f"matched_caliper{sens.caliper:g}"
        designs[name] = _matched_design(
            name, df, k=config.matching.k, caliper=sens.caliper, config=config, ids=ids
        )
    if sens.one_to_one and config.matching.k != 1:
        designs["matched_1to1"] = _matched_design(
            "matched_1to1", df, k=1, caliper=config.matching.caliper, config=config, ids=ids
        )
    if sens.naive:
        designs["naive"] = Design(
            name="naive",
            # df's columns shared, not copied (no design's data is written in place)
            data=pd.concat(
                [df, pd.DataFrame({"weight": 1.0, "cluster": df["person_id"]}, index=df.index)],
                axis=1,
                copy=False,
            ),
            weighted=False,
            clustered=False,
            info={
                "n_treated": int(df["treatment"].sum()),
                "n_control": int((1 - df["treatment"]).sum()),
            },
        )
    return designs


def cohort_stage(state: StudyState, config: StudyConfig) -> StudyState:
    """Derive the cohort table (with the calendar-time covariate); both groups are needed.

    Parameters
    ----------
    state : StudyState
        With ``extract`` (a version-1 extract).
    config : StudyConfig

    Returns
    -------
    StudyState
        With ``cohort`` and ``data`` (the cohort table, a copy).

    Raises
    ------
    StudyError
        A group is empty after exclusions, or no exact-matching cell holds both groups.
    """
    cohort = derive_cohort(state.extract, gap_days=config.gap_days)
    df = cohort.table.copy(deep=False)  # columns added, the cohort's own never written
    df[CALENDAR_COVARIATE] = calendar_years(df["index_date"])
    n_hat = int(df["treatment"].sum())
    n_ost = int(len(df) - n_hat)
    if n_hat == 0 or n_ost == 0:
        raise StudyError(
            f"after exclusions {n_hat} HAT and {n_ost} OST persons remain; both are needed"
        )
    _check_exact_overlap(df, config)
    return replace(state, cohort=cohort, data=df)


def design_stage(state: StudyState, config: StudyConfig) -> StudyState:
    """Fit the propensity score (``ps``, ``ps_logit`` columns) and build every design.

    Raises
    ------
    StudyError
        The propensity model cannot be fitted, or nobody could be matched.
    """
    df = state.data
    n_hat = int(df["treatment"].sum())
    n_ost = int(len(df) - n_hat)
    try:
        ps = fit_propensity(
            df,
            treatment="treatment",
            covariates=config.propensity_covariates,
            transforms=study_design.TRANSFORMS,
            levels=study_design.LEVELS,
        )
    except ValueError as exc:
        raise StudyError(
            f"the propensity model could not be fitted on {n_hat} HAT and {n_ost} OST "
            f"persons: {exc}"
        ) from None
    df["ps"] = ps.score
    df["ps_logit"] = ps.logit
    designs = build_designs(df, config, propensity=ps)
    return replace(state, data=df, propensity=ps, designs=designs)


def balance_stage(state: StudyState, config: StudyConfig) -> StudyState:
    """Covariate balance before and after the primary design and IPTW (``balance``)."""
    return replace(state, balance=_balance(state.data, state.designs, config))


def design_tables(state: StudyState, config: StudyConfig) -> dict[str, pd.DataFrame]:
    """Table 1 (before and after matching) and the histogram of the propensity score."""
    matched = state.designs["matched"]
    return {
        "table1": _table1(state.data, matched, config),
        "ps_overlap": _ps_histogram(state.data, matched),
    }


def _balance(df: pd.DataFrame, designs: dict[str, Design], config: StudyConfig) -> pd.DataFrame:
    """SMD and variance ratio per covariate: before, after matching, after IPTW."""
    covariates = config.propensity_covariates
    reference = balance_reference(
        df,
        treatment="treatment",
        covariates=covariates,
        transforms=study_design.TRANSFORMS,
        levels=study_design.LEVELS,
    )
    before = balance_table(
        df,
        treatment="treatment",
        covariates=covariates,
        reference=reference,
        transforms=study_design.TRANSFORMS,
        levels=study_design.LEVELS,
    )
    out = before[["variable", "smd", "variance_ratio"]].rename(
        columns={"smd": "smd_before", "variance_ratio": "variance_ratio_before"}
    )
    for name in ("matched", "iptw"):
        if name not in designs:
            continue
        d = designs[name].data
        after = balance_table(
            d,
            treatment="treatment",
            covariates=covariates,
            weights="weight",
            reference=reference,
            transforms=study_design.TRANSFORMS,
            levels=study_design.LEVELS,
        )
        out = out.merge(
            after[["variable", "smd", "variance_ratio"]].rename(
                columns={"smd": f"smd_{name}", "variance_ratio": f"variance_ratio_{name}"}
            ),
            on="variable",
            how="left",
        )
    return out


def _table1(df: pd.DataFrame, matched: Design, config: StudyConfig) -> pd.DataFrame:
    """Baseline table by group, before and after matching."""
    from analysis.design.descriptives import baseline_table

    covs = list(config.propensity_covariates)
    table1 = {
        "levels": study_design.TABLE1_LEVELS,
        "binary": study_design.BINARY_COVARIATES,
        "labels": study_design.TABLE1_LABELS,
    }
    before = baseline_table(df, group="group", covariates=covs, **table1)
    after = baseline_table(matched.data, group="group", covariates=covs, weights="weight", **table1)
    before = before.rename(columns={"HAT": "HAT_all", "OST": "OST_all"})
    after = after.rename(columns={"HAT": "HAT_matched", "OST": "OST_matched"})
    return before.merge(after, on=["variable", "statistic"], how="outer", sort=False)


def _ps_histogram(df: pd.DataFrame, matched: Design, bins: int = 40) -> pd.DataFrame:
    """Counts of persons by bin of the logit propensity score, group and sample.

    Aggregated rather than person-level, so a results folder from real registry
    data carries no individual scores.
    """
    logit = df["ps_logit"].to_numpy(float)
    finite = np.isfinite(logit)
    edges = np.linspace(logit[finite].min(), logit[finite].max() + 1e-9, bins + 1)
    in_matched = df["person_id"].isin(matched.data["person_id"]).to_numpy()
    rows = []
    for sample, mask in (("all", np.ones(len(df), bool)), ("matched", in_matched)):
        for group in ("HAT", "OST"):
            sel = mask & finite & (df["group"] == group).to_numpy()
            counts, _ = np.histogram(logit[sel], bins=edges)
            rows.append(
                pd.DataFrame(
                    {
                        "sample": sample,
                        "group": group,
                        "bin_left": edges[:-1],
                        "bin_right": edges[1:],
                        "n": counts,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)
