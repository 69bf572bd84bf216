"""The study as a pure function: configuration + extract -> results.

``run_study`` derives the cohort, builds the primary design (1:k propensity-score
matching) and the sensitivity designs (IPTW, narrower caliper, 1:1, naive),
fits every outcome model and returns the contents of ``results.json`` with the
tables behind the report. It reads and writes no files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.data.cohort import Cohort, calendar_years, derive_cohort
from analysis.data.contract import (
    CALENDAR_COVARIATE,
    DAYS_PER_YEAR,
    PRIMARY_OUTCOMES,
    SCHEMA_VERSION,
)
from analysis.data.extract import Extract, HistoryExtract
from analysis.design.balance import balance_table, effective_sample_size
from analysis.design.matching import match
from analysis.design.propensity import PropensityScore, fit_propensity
from analysis.design.weighting import att_weights
from analysis.outcomes.absolute import cumulative_risk_difference, survival_at
from analysis.outcomes.before_after import before_after_ratio
from analysis.outcomes.competing_risks import (
    cumulative_incidence,
    cumulative_incidence_difference,
)
from analysis.outcomes.cox import cox_hazard_ratio
from analysis.outcomes.kaplan_meier import kaplan_meier
from analysis.outcomes.logrank import cox_score_test
from analysis.outcomes.negative_binomial import negative_binomial_irr
from analysis.outcomes.rates import crude_rates, rate_ratio
from analysis.outcomes.rmst import rmst_difference
from analysis.outcomes.sensitivity import e_value, incidence_at_end
from analysis.outcomes.stacked import (
    EstimatedWeights,
    att_weight_model_from_propensity,
    cox_estimating_function,
    nb_estimating_function,
    nb_expected_bread,
    stacked_variance,
    with_stacked_variance,
)
from analysis.results import EffectEstimate
from evaluation import study_design
from evaluation.config import StudyConfig
from evaluation.disclosure import disclosure_evidence
from evaluation.progress import Steps


class StudyError(ValueError):
    """The extract is valid but the study cannot be done on it (e.g. nobody matched)."""


#: the primary outcome models, each on the matched design
OUTCOME_MODELS = {
    "mortality": ("cox", "followup_days", "died"),
    "overdose_mortality": ("cox", "followup_days", "overdose_death"),
    "retention": ("cox", "retention_days", "discontinued"),
    "crime": ("rate", "followup_charges", "crime_years"),
}


#: crude-rate tables of the matched design: {table: (label column, blocks of
#: (events column, person-years column, label))}
RATE_TABLES = {
    "mortality_rates": (
        "outcome",
        (
            ("died", "followup_years", "all-cause mortality"),
            ("overdose_death", "followup_years", "overdose mortality"),
        ),
    ),
    "crime_rates": (
        "period",
        (
            (
                "baseline_charges_at_risk",
                "baseline_crime_years",
                "2 years before index (out of prison)",
            ),
            ("followup_charges", "crime_years", "after index (out of prison)"),
        ),
    ),
}
RATE_PER = {"mortality_rates": 1000, "crime_rates": 1}


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
    """

    name: str
    data: pd.DataFrame
    weighted: bool
    info: dict[str, Any] = field(default_factory=dict)
    weight_model: EstimatedWeights | None = None


@dataclass(frozen=True)
class Study:
    """Results of a study: ``results`` (the JSON document) and ``tables`` for the report."""

    results: dict[str, Any]
    tables: dict[str, pd.DataFrame]

    def figures(self) -> dict[str, Any]:
        """Draw the report's figures from the tables."""
        from evaluation.figures import all_figures

        return all_figures(self.tables)


def _matched_design(
    name: str, df: pd.DataFrame, *, k: int, caliper: float, config: StudyConfig
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
    data = matched.data[["person_id", "match_set", "weight"]]
    sample = df.merge(data, on="person_id", how="inner", validate="one_to_one")
    # Control weights rescaled to sum to the number of matched HAT persons, so both arms
    # carry equal total weight, as in the ATT's two potential outcomes of the same treated
    # population. Under non-proportional hazards the Cox estimate depends on the arms'
    # relative weight in the risk sets, so MatchIt's convention (controls summing to their
    # count, 1:k) would target a different average hazard ratio.
    is_control = sample["treatment"].to_numpy() == 0
    control_total = sample.loc[is_control, "weight"].sum()
    if control_total > 0:
        sample.loc[is_control, "weight"] *= matched.n_treated_matched / control_total
    cluster = "person_id" if config.matching.replace else "match_set"
    sample = sample.assign(cluster=sample[cluster])
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
        "ess_control": effective_sample_size(
            sample.loc[sample["treatment"] == 0, "weight"].to_numpy(float)
        ),
    }
    return Design(name=name, data=sample, weighted=True, info=info)


def _check_exact_overlap(df: pd.DataFrame, config: StudyConfig) -> None:
    """Matching exactly on ``config.matching.exact`` needs a cell with both groups."""
    exact = list(config.matching.exact)
    if not exact:
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
    designs = {
        "matched": _matched_design(
            "matched", df, k=config.matching.k, caliper=config.matching.caliper, config=config
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
        sample = df.merge(weighted.data[["person_id", "weight"]], on="person_id", how="inner")
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
            data=sample.assign(cluster=sample["person_id"]),
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
            name, df, k=config.matching.k, caliper=sens.caliper, config=config
        )
    if sens.one_to_one and config.matching.k != 1:
        designs["matched_1to1"] = _matched_design(
            "matched_1to1", df, k=1, caliper=config.matching.caliper, config=config
        )
    if sens.naive:
        designs["naive"] = Design(
            name="naive",
            data=df.assign(weight=1.0, cluster=df["person_id"]),
            weighted=False,
            info={
                "n_treated": int(df["treatment"].sum()),
                "n_control": int((1 - df["treatment"]).sum()),
            },
        )
    return designs


def _outcome_estimates(design: Design, config: StudyConfig) -> list[EffectEstimate]:
    """The four HR/IRR estimates of a design."""
    df = design.data
    weights = "weight" if design.weighted else None
    cluster = "cluster" if design.name != "naive" else None
    out = []
    for outcome, (model, a, b) in OUTCOME_MODELS.items():
        data = df[df["in_retention"]] if outcome == "retention" else df
        if model == "cox":
            est = cox_hazard_ratio(
                data,
                duration=a,
                event=b,
                treatment="treatment",
                weights=weights,
                cluster=cluster,
                alpha=config.alpha,
                outcome=outcome,
                method=f"cox_{design.name}",
                small_sample=config.cox_small_sample
                if design.name.startswith("matched")
                else "factor",
            )
        else:
            # the ratio of marginal rates (Poisson estimating equation, robust variance): the
            # effect among the treated on charges is defined as a ratio of total charges to
            # total person-time; a negative-binomial fit targets another ratio (below)
            est = rate_ratio(
                data,
                events=a,
                exposure=b,
                treatment="treatment",
                weights=weights,
                cluster=cluster,
                alpha=config.alpha,
                outcome=outcome,
                method=f"rate_{design.name}",
                arm_labels=("HAT", "OST"),
            )
        if design.weight_model is not None and np.isfinite(est.estimate):
            est = _with_estimated_weights(est, data, design, model=model, a=a, b=b, config=config)
        out.append(est)
    return out


def not_estimable(estimates: list[dict[str, Any]] | list[EffectEstimate]) -> list[str]:
    """One line per primary estimate that could not be estimated, with its reason."""
    lines = []
    for e in estimates:
        est = e if isinstance(e, dict) else e.to_dict()  # to_dict: NaN -> None
        if est["primary"] and est["estimate"] is None:
            reason = (est.get("details") or {}).get("note") or "no reason recorded"
            lines.append(f"{est['outcome']} {est['measure']}: {reason}")
    return lines


def _check_primaries(estimates: list[EffectEstimate]) -> None:
    """A study with no estimable primary estimate cannot be done."""
    missing = not_estimable(estimates)
    if missing and len(missing) == sum(e.primary for e in estimates):
        raise StudyError("no primary estimate is estimable: " + "; ".join(missing))


def _incidence(design: Design, outcome: str) -> float | None:
    """Cumulative incidence by the end of follow-up of a time-to-event outcome.

    Kaplan–Meier 1 - S at the longest follow-up, both arms of the design together with
    their weights (the overall incidence, which decides whether an E-value treats a hazard
    ratio as for a rare outcome); None for a count outcome.
    """
    model, duration, event = OUTCOME_MODELS[outcome]
    if model != "cox":
        return None
    df = design.data
    data = df[df["in_retention"]] if outcome == "retention" else df
    weights = "weight" if design.weighted else None
    return incidence_at_end(data, duration=duration, event=event, weights=weights)


def _with_estimated_weights(
    est: EffectEstimate,
    data: pd.DataFrame,
    design: Design,
    *,
    model: str,
    a: str,
    b: str,
    config: StudyConfig,
) -> EffectEstimate:
    """Re-estimate the SE of an IPTW estimate by stacking the propensity model's equations."""
    wm = design.weight_model
    assert wm is not None
    rows = pd.Index(design.data["person_id"]).get_indexer(data["person_id"])
    w = wm.weights[rows]
    treated = data["treatment"].to_numpy(float)
    coefs = est.details["coefficients"]
    beta = np.array([v["coef"] for v in coefs.values()], dtype=float)
    if model == "cox":
        keep = w > 0
        ef = cox_estimating_function(
            data[a].to_numpy(float)[keep], data[b].to_numpy(float)[keep], treated[keep, None]
        )
        bread = None  # the observed information, by central differences
        term = 0
    else:
        keep = (w > 0) & (data[b].to_numpy(float) > 0)
        design_x = np.column_stack([np.ones(int(keep.sum())), treated[keep]])
        exposure = data[b].to_numpy(float)[keep]
        theta = float(est.details.get("theta", np.inf))  # rate ratio: Poisson equation
        ef = nb_estimating_function(data[a].to_numpy(float)[keep], exposure, design_x, theta=theta)
        bread = nb_expected_bread(exposure, design_x, beta, w[keep], theta=theta)
        term = 1
    variance = stacked_variance(ef, beta, wm, rows=rows[keep], bread=bread)
    return with_stacked_variance(est, variance, term=term, alpha=config.alpha)


def _truth_lookup(truth: dict | None) -> dict[tuple[str, str], float]:
    if not truth:
        return {}
    return {
        (e["outcome"], e["measure"]): e["value"]
        for e in truth.get("estimands", [])
        if e.get("value") is not None
    }


def _rates(
    df: pd.DataFrame, *, per: float, label: str, rows: tuple[tuple[str, str, str], ...]
) -> pd.DataFrame:
    """Weighted crude rates by group, one block per (events, person-years, name) row."""
    return pd.concat(
        [
            crude_rates(
                df, events=events, exposure=years, group="group", per=per, weights="weight"
            ).assign(**{label: name})
            for events, years, name in rows
        ],
        ignore_index=True,
    )


def horizon_label(days: float) -> str:
    """Measure suffix of a time point: ``12m`` for 365.25 days, ``24m`` for 730.5, else ``<days>d``."""
    months = days * 12 / DAYS_PER_YEAR
    if abs(months - round(months)) < 1e-9 and round(months) > 0:
        return f"{round(months)}m"
    return f"{days:g}d"


def _defined(est: EffectEstimate, definition: str) -> EffectEstimate:
    """The estimate with ``details["definition"]``: what its difference or ratio is of."""
    return replace(est, details={**est.details, "definition": definition})


def _absolute_measures(design: Design, config: StudyConfig) -> list[EffectEstimate]:
    """Absolute measures beside the hazard ratios, on the primary (matched) design.

    For each time-to-event outcome: differences in the cumulative risk (mortality: 1 minus
    the weighted Kaplan–Meier curve; overdose mortality: the weighted Aalen–Johansen
    cumulative incidence with other deaths competing) or in the probability of still being
    in treatment (retention) at ``config.risk_times_days``, and the difference in restricted
    mean time up to ``config.rmst_tau_days``, all HAT − OST, with cluster-robust
    influence-function variances. Retention's RR/RD at ``retention_time_days`` and its
    RMST difference are made in :func:`_primary_extras`.
    """
    df = design.data
    ret = df[df["in_retention"]]
    common = {"treatment": "treatment", "weights": "weight", "cluster": "cluster"}
    common |= {"alpha": config.alpha}
    tau = config.rmst_tau_days
    out: list[EffectEstimate] = []
    for t in config.risk_times_days:
        label = horizon_label(t)
        out.append(
            _defined(
                cumulative_risk_difference(
                    df, duration="followup_days", event="died", time=t, label=label,
                    outcome="mortality", method="km_matched", **common,
                ),
                f"difference in the cumulative risk of death (1 - weighted Kaplan-Meier) by "
                f"{t:g} days, HAT - OST; negative: fewer deaths with HAT",
            )
        )  # fmt: skip
    out.append(
        _defined(
            rmst_difference(
                df, duration="followup_days", event="died", tau=tau, outcome="mortality",
                method="rmst_matched", **common,
            ),
            f"difference in restricted mean survival time up to {tau:g} days (days alive "
            f"within the first {tau:g} days), HAT - OST; positive: HAT patients lived longer",
        )
    )  # fmt: skip
    event_type = np.select([df["overdose_death"] == 1, df["died"] == 1], [1, 2], 0)
    for t in config.risk_times_days:
        out.append(
            _defined(
                cumulative_incidence_difference(
                    df.assign(event_type=event_type), duration="followup_days",
                    event_type="event_type", time=t, label=horizon_label(t),
                    outcome="overdose_mortality", method="aj_matched", **common,
                ),
                f"difference in the cumulative incidence of overdose death by {t:g} days "
                "(weighted Aalen-Johansen, deaths from other causes competing), HAT - OST; "
                "negative: fewer overdose deaths with HAT",
            )
        )  # fmt: skip
    for t in config.risk_times_days:
        if t == config.retention_time_days:
            continue  # RD at that time is made with the RR in _primary_extras
        rd = survival_at(
            ret, duration="retention_days", event="discontinued", time=t,
            label=horizon_label(t), outcome="retention", method="km_matched", **common,
        ).difference  # fmt: skip
        out.append(_defined(rd, _retention_rd_definition(t)))
    return out


def _retention_rd_definition(t: float) -> str:
    return (
        f"difference in the probability of still being in treatment at {t:g} days (weighted "
        "Kaplan-Meier of retention), HAT - OST; positive: more HAT patients retained"
    )


def _primary_extras(
    design: Design, config: StudyConfig
) -> tuple[list[EffectEstimate], dict[str, pd.DataFrame], dict[str, Any]]:
    """Secondary estimates, curves and rates on the primary (matched) design."""
    df = design.data
    ret = df[df["in_retention"]]
    common = {"treatment": "treatment", "weights": "weight", "cluster": "cluster"}
    estimates: list[EffectEstimate] = []
    t12 = config.retention_time_days
    rr, rd = survival_at(
        ret,
        duration="retention_days",
        event="discontinued",
        time=t12,
        alpha=config.alpha,
        outcome="retention",
        method="km_matched",
        label=horizon_label(t12),
        **common,
    )
    estimates += [
        _defined(
            rr,
            f"ratio of the probabilities of still being in treatment at {t12:g} days "
            "(weighted Kaplan-Meier of retention), HAT / OST",
        ),
        _defined(rd, _retention_rd_definition(t12)),
    ]
    tau = config.rmst_tau_days
    estimates.append(
        _defined(
            rmst_difference(
                ret,
                duration="retention_days",
                event="discontinued",
                tau=tau,
                alpha=config.alpha,
                outcome="retention",
                method="rmst_matched",
                **common,
            ),
            f"difference in restricted mean time in treatment up to {tau:g} days (days in "
            f"treatment within the first {tau:g} days), HAT - OST",
        )
    )
    estimates += _absolute_measures(design, config)
    # the same at-risk rules before and after index: prison days are not person-time and
    # charges dated inside a stay are not counted (baseline_charges, the propensity-model
    # covariate, counts every charge of the window as the contract defines it)
    per_group, ratio = before_after_ratio(
        df,
        events_before="baseline_charges_at_risk",
        exposure_before="baseline_crime_years",
        events_after="followup_charges",
        exposure_after="crime_years",
        treatment="treatment",
        weights="weight",
        cluster="cluster",
        alpha=config.alpha,
        outcome="crime",
        method="poisson_matched",
        arm_labels=("HAT", "OST"),
    )
    estimates += [ratio]
    # the model that was primary before: a negative-binomial regression, whose IRR weights
    # persons by 1 / (1 + mu / theta) and so is not the ratio of marginal rates
    estimates.append(
        negative_binomial_irr(
            df,
            events="followup_charges",
            exposure="crime_years",
            treatment="treatment",
            weights="weight",
            cluster="cluster",
            alpha=config.alpha,
            outcome="crime",
            method="nb_matched",
            arm_labels=("HAT", "OST"),
        )
    )
    tables: dict[str, pd.DataFrame] = {}
    km = kaplan_meier(
        ret,
        duration="retention_days",
        event="discontinued",
        group="group",
        weights="weight",
        cluster="cluster",
    )
    tables["km_retention"] = km.curve
    tables["km_retention_at_risk"] = km.at_risk
    # event type for the competing-risks analysis: 1 = overdose death, 2 = other death
    cif_df = df.assign(
        event_type=np.select([df["overdose_death"] == 1, df["died"] == 1], [1, 2], 0)
    )
    tables["cif_overdose"] = cumulative_incidence(
        cif_df,
        duration="followup_days",
        event_type="event_type",
        group="group",
        weights="weight",
        cluster="cluster",
    )
    for name, (label, rows) in RATE_TABLES.items():
        tables[name] = _rates(df, per=RATE_PER[name], label=label, rows=rows)
    tables["crime_before_after"] = pd.DataFrame(
        [
            {
                "group": e.details["group"],
                **{k: v for k, v in e.to_dict().items() if k != "details"},
            }
            for e in per_group
        ]
    )
    extras = {
        "score_test_retention": cox_score_test(
            ret, duration="retention_days", event="discontinued", **common
        ),
        "retention_at_12m": rr.details.get("per_group", {}),
    }
    return estimates, tables, extras


def run_study(
    extract: Extract | HistoryExtract,
    config: StudyConfig,
    *,
    steps: Steps | None = None,
) -> Study:
    """Run every analysis of the study on a validated extract.

    Parameters
    ----------
    extract : Extract
        A validated registry extract.
    config : StudyConfig
        The study's configuration (seed, design, horizons).
    steps : Steps, optional
        Progress reporter.

    Returns
    -------
    Study
        ``results`` (contents of ``results.json``) and ``tables``.

    Raises
    ------
    StudyError
        The extract is valid but the study cannot be done on it.

    Notes
    -----
    A version-2 (history) extract is analysed as an emulated target trial
    (:func:`evaluation.target_trial.run_target_trial`).
    """
    if isinstance(extract, HistoryExtract):
        from evaluation.target_trial import run_target_trial

        return run_target_trial(extract, config, steps=steps)
    steps = steps or Steps(quiet=True)
    with steps.step("derive cohort"):
        cohort: Cohort = derive_cohort(extract, gap_days=config.gap_days)
        df = cohort.table.copy()
        df[CALENDAR_COVARIATE] = calendar_years(df["index_date"])
        n_hat = int(df["treatment"].sum())
        n_ost = int(len(df) - n_hat)
        if n_hat == 0 or n_ost == 0:
            raise StudyError(
                f"after exclusions {n_hat} HAT and {n_ost} OST persons remain; both are needed"
            )
        _check_exact_overlap(df, config)
    with steps.step("propensity score and designs"):
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
    with steps.step("balance"):
        balance = _balance(df, designs, config)
    estimates: list[EffectEstimate] = []
    with steps.step("outcome models"):
        for name, design in designs.items():
            for est in _outcome_estimates(design, config):
                primary = name == "matched" and est.outcome in PRIMARY_OUTCOMES
                estimates.append(est.with_primary(primary))
        extra_estimates, tables, extras = _primary_extras(designs["matched"], config)
        estimates += extra_estimates
    _check_primaries(estimates)
    truth = _truth_lookup(extract.truth)
    estimates = [e.with_truth(truth.get((e.outcome, e.measure))) for e in estimates]
    e_values = []
    for e in estimates:
        if e.primary:
            ev = e_value(
                e.estimate,
                e.ci_low,
                e.ci_high,
                measure=e.measure,
                incidence=_incidence(designs["matched"], e.outcome),
            )
            e_values.append({"outcome": e.outcome, "measure": e.measure, **ev.to_dict()})
    ph_tests = [
        {"outcome": e.outcome, "method": e.method, **e.details.get("ph_test", {})}
        for e in estimates
        if "ph_test" in e.details
    ]
    matched = designs["matched"]
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "cohort": {
            "n_hat": n_hat,
            "n_ost": n_ost,
            "n_hat_matched": matched.info["n_treated_matched"],
            "n_ost_matched": matched.info["n_control_matched"],
            "n_read": cohort.n_read,
            "n_excluded": int(
                cohort.exclusions.query("stage == 'cohort'")[["n_hat", "n_ost"]].sum().sum()
            ),
            "exclusions": cohort.exclusions.to_dict(orient="records"),
        },
        "estimates": [e.to_dict() for e in estimates],
        "design": {
            "primary": "matched",
            "designs": {name: d.info for name, d in designs.items()},
            "covariates": list(config.propensity_covariates),
            "propensity_not_finite": {
                "n_hat": int((~np.isfinite(df["ps_logit"]) & (df["treatment"] == 1)).sum()),
                "n_ost": int((~np.isfinite(df["ps_logit"]) & (df["treatment"] == 0)).sum()),
                "note": "persons whose score is 0 or 1 (e.g. OST in regions without HAT); "
                "they cannot be matched and are not in ps_overlap.csv",
            },
            "max_abs_smd": {
                col.removeprefix("smd_"): float(balance[col].abs().max())
                for col in balance.columns
                if col.startswith("smd_")
            },
        },
        "diagnostics": {"ph_tests": ph_tests, "e_values": e_values, **extras},
        "truth": extract.truth,
    }
    tables.update(
        {
            "flow": pd.concat(
                [
                    cohort.flow(),
                    pd.DataFrame(
                        [
                            {
                                "step": "matched",
                                "stage": "matched",
                                "n_hat": matched.info["n_treated_matched"],
                                "n_ost": matched.info["n_control_matched"],
                                "n_total": matched.info["n_treated_matched"]
                                + matched.info["n_control_matched"],
                            }
                        ]
                    ),
                ],
                ignore_index=True,
            ),
            "exclusions": cohort.exclusions,
            "balance": balance,
            "table1": _table1(df, matched, config),
            "ps_overlap": _ps_histogram(df, matched),
            "estimates": pd.DataFrame([e.to_dict() for e in estimates]).drop(columns=["details"]),
        }
    )
    # for disclosure control of the outputs (stays in the analyst's folder, never released)
    tables.update(
        disclosure_evidence(
            df, designs, covariates=config.propensity_covariates, rate_tables=RATE_TABLES
        )
    )
    return Study(results=results, tables=tables)


def _balance(df: pd.DataFrame, designs: dict[str, Design], config: StudyConfig) -> pd.DataFrame:
    """SMD and variance ratio per covariate: before, after matching, after IPTW."""
    covariates = config.propensity_covariates
    before = balance_table(
        df,
        treatment="treatment",
        covariates=covariates,
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
            reference=df,
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
    before = baseline_table(
        df,
        group="group",
        covariates=covs,
        levels=study_design.TABLE1_LEVELS,
        binary=study_design.BINARY_COVARIATES,
        labels=study_design.TABLE1_LABELS,
    )
    after = baseline_table(
        matched.data,
        group="group",
        covariates=covs,
        weights="weight",
        levels=study_design.TABLE1_LEVELS,
        binary=study_design.BINARY_COVARIATES,
        labels=study_design.TABLE1_LABELS,
    )
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
