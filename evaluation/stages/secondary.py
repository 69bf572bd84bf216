"""Secondary estimates, curves and rates of the primary (matched) design.

Absolute measures beside the hazard ratios (risk differences at the configured times,
restricted mean time differences), retention at 12 months, the before/after comparison of
charges, the negative binomial beside the ratio of rates, and the report's curves and
crude-rate tables.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.data.contract import DAYS_PER_YEAR
from analysis.outcomes.absolute import cumulative_risk_difference, survival_at
from analysis.outcomes.before_after import before_after_ratio
from analysis.outcomes.competing_risks import cumulative_incidence, cumulative_incidence_difference
from analysis.outcomes.kaplan_meier import kaplan_meier
from analysis.outcomes.logrank import cox_score_test
from analysis.outcomes.negative_binomial import negative_binomial_irr
from analysis.outcomes.rates import crude_rates
from analysis.outcomes.rmst import rmst_difference
from analysis.results import EffectEstimate
from evaluation.config import StudyConfig
from evaluation.stages.designs import Design

__all__ = [
    "RATE_PER",
    "RATE_TABLES",
    "horizon_label",
    "primary_extras",
    "secondary_estimates",
]


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
    RMST difference are made in :func:`primary_extras`.
    """
    df = design.data
    ret = _retention_rows(df)
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
            continue  # RD at that time is made with the RR in primary_extras
        rd = survival_at(
            ret, duration="retention_days", event="discontinued", time=t,
            label=horizon_label(t), outcome="retention", method="km_matched", **common,
        ).difference  # fmt: skip
        out.append(_defined(rd, _retention_rd_definition(t)))
    return out


def _retention_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the retention analysis, with the columns its estimators read."""
    columns = ["retention_days", "discontinued", "treatment", "weight", "cluster"]
    return df.loc[df["in_retention"].to_numpy(dtype=bool), columns]


def _retention_rd_definition(t: float) -> str:
    return (
        f"difference in the probability of still being in treatment at {t:g} days (weighted "
        "Kaplan-Meier of retention), HAT - OST; positive: more HAT patients retained"
    )


def primary_extras(
    design: Design, config: StudyConfig
) -> tuple[list[EffectEstimate], dict[str, pd.DataFrame], dict[str, Any]]:
    """Secondary estimates, curves and rates on the primary (matched) design."""
    estimates, rr, per_group = _primary_estimates(design, config)
    tables, extras = _primary_tables(design, rr, per_group)
    return estimates, tables, extras


def secondary_estimates(design: Design, config: StudyConfig) -> list[EffectEstimate]:
    """The secondary estimates of :func:`primary_extras` alone (no curves, rates, extras)."""
    return _primary_estimates(design, config)[0]


# 95 lines: moved unchanged from the pipeline, so call-site edits made elsewhere merge cleanly
def _primary_estimates(
    design: Design, config: StudyConfig
) -> tuple[list[EffectEstimate], EffectEstimate, list[EffectEstimate]]:
    """Secondary estimates of the primary design, retention's RR and the before/after arms."""
    df = design.data
    ret = _retention_rows(df)
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
    return estimates, rr, per_group


def _primary_tables(
    design: Design, rr: EffectEstimate, per_group: list[EffectEstimate]
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """The curves and crude rates of the primary design, and its diagnostics."""
    df = design.data
    ret = df[df["in_retention"]]
    common = {"treatment": "treatment", "weights": "weight", "cluster": "cluster"}
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
    return tables, extras
