"""A small, schema-correct results folder for building the report in tests.

It follows ``docs/results-folder.md`` (and the shapes the pipeline's functions
return, e.g. ``EffectEstimate.to_dict()``), with made-up but plausible numbers,
so the book can be built and checked without running a study. It is written
with the pipeline's own writer (``evaluation.results_folder.write_results_folder``).

``write_results_fixture(path)`` writes the full folder (synthetic data, truth
known); ``minimal=True`` writes only the contract's minimum (``results.json``
with ``schema_version``, ``cohort`` and the three primary estimates, truth
``null``; no tables, no figures, no IPTW design) to check that every page
tolerates missing optional pieces. Both hold estimates with a note and a
not-estimable one, which the pages must show with their reasons.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation.config import StudyConfig
from evaluation.results_document import (
    CohortSummary,
    DesignSection,
    Diagnostics,
    Estimate,
    PHTestRecord,
    ResultsDocument,
)
from evaluation.results_folder import package_versions, write_results_folder

DESIGNS = ("matched", "iptw", "matched_caliper0.1", "matched_1to1", "naive")

#: (outcome, measure, model, truth) of the per-design ratio estimates
RATIO_ESTIMATES = (
    ("mortality", "HR", "cox", 0.71),
    ("overdose_mortality", "HR", "cox", 0.62),
    ("retention", "HR", "cox", 0.55),
    ("crime", "IRR", "rate", 0.68),
)

#: the primary (matched) values: estimate, ci_low, ci_high, p_value
PRIMARY_VALUES = {
    "mortality": (0.734, 0.452, 1.191, 0.2113),
    "overdose_mortality": (0.598, 0.301, 1.188, 0.1421),
    "retention": (0.571, 0.437, 0.746, 0.00004),
    "crime": (0.664, 0.512, 0.861, 0.0021),
}


#: the minimal folder's estimates in the states a small study meets
MINIMAL_NOTES = {
    "mortality": "only 12 clusters (values of cluster): the cluster-robust variance (with the "
    "G/(G-1) factor) may be too small and the interval too narrow",
}
MINIMAL_NOT_ESTIMABLE = (
    "not estimable: the cluster-robust variance needs at least 2 clusters and there is 1 "
    "(values of cluster); scores sum to zero within a single cluster, so its variance would be 0"
)


def _estimate(
    outcome: str,
    measure: str,
    method: str,
    estimate: float,
    ci_low: float,
    ci_high: float,
    p_value: float,
    *,
    primary: bool = False,
    truth: float | None = None,
    n_treated: int = 96,
    n_control: int = 371,
    n_events: int | None = 40,
    details: dict[str, Any] | None = None,
) -> Estimate:
    ratio = not (measure.startswith("RD_") or measure == "RMST_diff")
    se = (
        (math.log(ci_high) - math.log(ci_low)) / (2 * 1.959964)
        if ratio
        else (ci_high - ci_low) / (2 * 1.959964)
    )

    def value(x: float) -> float | None:  # not estimable: null, as EffectEstimate.to_dict()
        return x if math.isfinite(x) else None

    return Estimate(
        outcome=outcome,
        measure=measure,
        method=method,
        estimate=value(estimate),
        ci_low=value(ci_low),
        ci_high=value(ci_high),
        p_value=value(p_value),
        se=value(se),
        n_treated=n_treated,
        n_control=n_control,
        n_events=n_events,
        primary=primary,
        truth=truth,
        details=details or {},
    )


def _estimates(synthetic: bool) -> list[Estimate]:
    out = []
    shift = {"matched": 1.0, "iptw": 1.04, "matched_caliper0.1": 0.97, "matched_1to1": 1.06,
             "naive": 1.45}  # fmt: skip
    for design in DESIGNS:
        for outcome, measure, model, truth in RATIO_ESTIMATES:
            est, lo, hi, p = PRIMARY_VALUES[outcome]
            f = shift[design]
            robust = design != "naive"
            # retention's hazard ratio changes over follow-up (test rejects at 5%), the others not
            chisq, p_ph = (6.3 * f, 0.012 / f) if outcome == "retention" else (0.84 * f, 0.36 / f)
            test = {"statistic": chisq, "p_value": p_ph, "df": 1}
            ph = (
                {"ph_test": {**test, "transform": "km", "term": "treatment",
                             "variance": "robust" if robust else "model",
                             "terms": {"treatment": dict(test)}, "global": dict(test),
                             "model_based": {"statistic": chisq * 0.8, "p_value": min(p_ph * 1.2, 1.0),
                                             "global": dict(test)}}}
                if model == "cox" else {"alpha": 1.9}
            )  # fmt: skip
            if (outcome, design) == ("crime", "matched_1to1"):  # a finite estimate with a note
                ph["note"] = "no overdispersion: theta at the boundary, the fit is Poisson"
            if (outcome, design) == ("overdose_mortality", "matched_1to1"):  # not estimable
                out.append(
                    _estimate(outcome, measure, f"{model}_{design}", math.nan, math.nan,
                              math.nan, math.nan, truth=truth if synthetic else None,
                              n_events=9, details={"note": (
                                  "HR not estimable: monotone likelihood: at every event time "
                                  "no HAT person is at risk with an event (every HAT person's "
                                  "follow-up ends before the first OST event; the HR tends to 0)"
                              )})
                )  # fmt: skip
                continue
            out.append(
                _estimate(
                    outcome,
                    measure,
                    f"{model}_{design}",
                    est * f,
                    lo * f,
                    hi * f,
                    min(p * f, 1.0),
                    primary=design == "matched" and outcome != "overdose_mortality",
                    truth=truth if synthetic else None,
                    n_control=1500 if design == "naive" else 371,
                    details=ph,
                )
            )
    per_group = {"HAT": {"survival": 0.781, "se": 0.043, "max_followup": 1450.0},
                 "OST": {"survival": 0.602, "se": 0.027, "max_followup": 1461.0}}  # fmt: skip
    km = {"time": 365.25, "variance": "bootstrap", "per_group": per_group}
    out += [
        _estimate("retention", "RR_12m", "km_matched", 1.297, 1.131, 1.488, 0.0002,
                  truth=1.35 if synthetic else None, details=km),
        _estimate("retention", "RD_12m", "km_matched", 0.179, 0.081, 0.277, 0.0003,
                  truth=0.21 if synthetic else None, details=km),
        _estimate("retention", "RMST_diff", "rmst_matched", 96.4, 41.2, 151.6, 0.0006,
                  truth=110.0 if synthetic else None, details={"tau": 730.0}),
        _estimate("crime", "ratio_of_rate_ratios", "poisson_matched", 0.702, 0.531, 0.928,
                  0.0129, truth=0.68 if synthetic else None),
    ]  # fmt: skip
    # absolute measures beside the hazard ratios (secondary, matched design)
    for outcome, measure, method, values, truth, definition in ABSOLUTE_ESTIMATES:
        time = {"RD_12m": 365.25, "RD_24m": 730.5}.get(measure)
        details = {"definition": definition, **({"time": time} if time else {"tau": 730.0})}
        out.append(
            _estimate(outcome, measure, method, *values, truth=truth if synthetic else None,
                      details=details)
        )  # fmt: skip
    return out


#: (outcome, measure, method, (estimate, ci_low, ci_high, p), truth, definition)
ABSOLUTE_ESTIMATES = (
    ("retention", "RD_24m", "km_matched", (0.262, 0.158, 0.366, 0.00001), 0.30,
     "difference in the probability of still being in treatment at 730.5 days, HAT - OST"),
    ("mortality", "RD_12m", "km_matched", (-0.012, -0.031, 0.007, 0.2171), -0.010,
     "difference in the cumulative risk of death by 365.25 days, HAT - OST"),
    ("mortality", "RD_24m", "km_matched", (-0.021, -0.046, 0.004, 0.1003), -0.019,
     "difference in the cumulative risk of death by 730.5 days, HAT - OST"),
    ("mortality", "RMST_diff", "rmst_matched", (6.1, -1.9, 14.1, 0.1346), 7.0,
     "difference in restricted mean survival time up to 730 days, HAT - OST"),
    ("overdose_mortality", "RD_12m", "aj_matched", (-0.004, -0.009, 0.001, 0.1172), -0.003,
     "difference in the cumulative incidence of overdose death by 365.25 days, HAT - OST"),
    ("overdose_mortality", "RD_24m", "aj_matched", (-0.007, -0.015, 0.001, 0.0865), -0.006,
     "difference in the cumulative incidence of overdose death by 730.5 days, HAT - OST"),
)  # fmt: skip


def _km(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    curves, risks = [], []
    for group, n, hazard in (("HAT", 96, 0.00068), ("OST", 371, 0.0014)):
        times = np.sort(rng.exponential(1 / hazard, n).round() + 1)
        times = times[times < 1460]
        surv = np.exp(-hazard * times)
        se = 0.02 + 0.02 * (1 - surv)
        curve = pd.DataFrame(
            {
                "group": group,
                "time": np.r_[0.0, times],
                "n_at_risk": np.r_[float(n), n - np.arange(len(times))],
                "events": np.r_[0.0, np.ones(len(times))],
                "censored": 0.0,
                "survival": np.r_[1.0, surv],
                "se": np.r_[0.0, se],
                "ci_low": np.r_[1.0, np.clip(surv - 1.96 * se, 0, 1)],
                "ci_high": np.r_[1.0, np.clip(surv + 1.96 * se, 0, 1)],
            }
        )
        curves.append(curve)
        at = np.arange(0.0, 1461.0, 180.0)
        risks.append(
            pd.DataFrame(
                {"group": group, "time": at, "n_at_risk": (n * np.exp(-hazard * at * 1.3)).round()}
            )
        )
    return pd.concat(curves, ignore_index=True), pd.concat(risks, ignore_index=True)


def _cif() -> pd.DataFrame:
    rows = []
    for group, rate in (("HAT", 0.000022), ("OST", 0.000037)):
        t = np.arange(0.0, 1461.0, 30.0)
        ci = 1 - np.exp(-rate * t)
        rows.append(
            pd.DataFrame(
                {
                    "group": group,
                    "time": t,
                    "n_at_risk": np.linspace(96.0, 5.0, len(t)),
                    "events": 0.0,
                    "competing_events": 0.0,
                    "cumulative_incidence": ci,
                    "se": ci / 3,
                    "ci_low": ci * 0.4,
                    "ci_high": ci * 1.9,
                    "cumulative_incidence_competing": ci * 1.5,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def _rates(column: str, values: list[tuple[str, str, float, float]], per: float) -> pd.DataFrame:
    from scipy import stats

    rows = []
    for category, group, events, py in values:
        lo = stats.chi2.ppf(0.025, 2 * events) / 2 if events > 0 else 0.0
        hi = stats.chi2.ppf(0.975, 2 * events + 2) / 2
        rows.append(
            {
                "group": group,
                "n": 96 if group == "HAT" else 371,
                "events": events,
                "person_years": py,
                "rate": per * events / py,
                "ci_low": per * lo / py,
                "ci_high": per * hi / py,
                "per": per,
                "method": "exact (Garwood)",
                column: category,
            }
        )
    return pd.DataFrame(rows)


def _tables(rng: np.random.Generator, estimates: list[Estimate]) -> dict[str, pd.DataFrame]:
    flow = pd.DataFrame(
        [
            ("persons read", "read", 104, 1530),
            ("excluded: died before index date", "cohort", 1, 12),
            ("excluded: emigrated before index date", "cohort", 0, 3),
            ("analysed", "analysed", 103, 1515),
            ("excluded from retention: no treatment spell holding the index date", "retention", 2, 40),
            ("in retention analysis", "retention analysis", 101, 1475),
            ("matched", "matched", 96, 371),
        ],
        columns=["step", "stage", "n_hat", "n_ost"],
    )  # fmt: skip
    flow["n_total"] = flow["n_hat"] + flow["n_ost"]
    exclusions = pd.DataFrame(
        [
            ("cohort", "died before index date", 1, 12),
            ("cohort", "emigrated before index date", 0, 3),
            ("retention", "no treatment spell holding the index date", 2, 40),
        ],
        columns=["stage", "reason", "n_hat", "n_ost"],
    )
    t1 = [
        ("persons", "n", 103, 1515, 96, 371),
        ("persons", "sum of weights", np.nan, np.nan, 96, 96),
        ("age", "mean", 41.2, 38.5, 41.0, 40.7),
        ("age", "SD", 8.9, 10.1, 8.8, 9.2),
        ("women", "%", 24.3, 29.8, 24.0, 25.1),
        ("region: south-east", "%", 60.2, 48.1, 61.5, 61.5),
        ("region: west", "%", 39.8, 22.4, 38.5, 38.5),
        ("region: central", "%", 0.0, 15.3, 0.0, 0.0),
        ("region: north", "%", 0.0, 14.2, 0.0, 0.0),
        ("years_opioid_use", "mean", 19.4, 14.8, 19.0, 18.6),
        ("years_opioid_use", "SD", 7.7, 8.3, 7.6, 7.9),
        ("years_opioid_use", "% missing", 4.9, 6.1, 5.2, 5.8),
        ("injecting", "%", 82.5, 61.2, 81.3, 79.4),
        ("homeless", "%", 35.0, 18.0, 34.4, 33.1),
        ("baseline_charges", "mean", 6.1, 3.2, 5.9, 5.7),
        ("baseline_charges", "SD", 5.0, 3.9, 4.9, 5.2),
    ]  # fmt: skip
    table1 = pd.DataFrame(
        t1, columns=["variable", "statistic", "HAT_all", "OST_all", "HAT_matched", "OST_matched"]
    )
    variables = ["age", "sex: M", "region: west", "region: central", "region: north",
                 "years_opioid_use", "years_opioid_use (missing)", "prior_ost_episodes",
                 "injecting", "psychiatric_dx", "homeless", "prior_overdose",
                 "benzodiazepine_use", "baseline_charges", "calendar_years",
                 "calendar_years_rcs1", "calendar_years_rcs2"]  # fmt: skip
    before = rng.uniform(-0.6, 0.6, len(variables))
    balance = pd.DataFrame(
        {
            "variable": variables,
            "smd_before": before,
            "variance_ratio_before": rng.uniform(0.6, 1.6, len(variables)),
            "smd_matched": before * rng.uniform(-0.15, 0.15, len(variables)),
            "variance_ratio_matched": rng.uniform(0.85, 1.15, len(variables)),
            "smd_iptw": before * rng.uniform(-0.1, 0.1, len(variables)),
            "variance_ratio_iptw": rng.uniform(0.85, 1.15, len(variables)),
        }
    )
    edges = np.linspace(-6.0, 1.5, 31)
    centres = (edges[:-1] + edges[1:]) / 2
    ps = []
    for sample, scale in (("all", 1.0), ("matched", 0.25)):
        for group, mu, n in (("HAT", -1.0, 103), ("OST", -3.5, 1515)):
            dens = np.exp(-0.5 * ((centres - mu) / 1.1) ** 2)
            m = n * (scale if group == "OST" else 0.93)
            counts = np.round(m * dens / dens.sum()).astype(int)
            ps.append(
                pd.DataFrame({"sample": sample, "group": group, "bin_left": edges[:-1],
                              "bin_right": edges[1:], "n": counts})
            )  # fmt: skip
    km, at_risk = _km(rng)
    mortality = _rates(
        "outcome",
        [("all-cause mortality", "HAT", 9, 301.5), ("all-cause mortality", "OST", 48, 1160.2),
         ("overdose mortality", "HAT", 4, 301.5), ("overdose mortality", "OST", 27, 1160.2)],
        1000,
    )  # fmt: skip
    crime = _rates(
        "period",
        [("2 years before index (out of prison)", "HAT", 1180, 192.0),
         ("2 years before index (out of prison)", "OST", 1371, 192.0 * 371 / 96 / 1.3),
         ("after index (out of prison)", "HAT", 890, 288.3),
         ("after index (out of prison)", "OST", 3905, 1098.6)],
        1,
    )  # fmt: skip
    ba = []
    for group, est, lo, hi in (("HAT", 0.504, 0.41, 0.62), ("OST", 0.72, 0.65, 0.80)):
        e = _estimate("crime", "rate_ratio_after_vs_before", "poisson_matched", est, lo, hi,
                      0.0001, details={"group": group, "cluster": "match_set"})  # fmt: skip
        row = e.to_json_dict()
        del row["details"]
        ba.append({"group": group, **row})
    flat = pd.DataFrame([e.to_json_dict() for e in estimates]).drop(columns=["details"])
    return {
        "flow": flow,
        "exclusions": exclusions,
        "table1": table1,
        "balance": balance,
        "ps_overlap": pd.concat(ps, ignore_index=True),
        "km_retention": km,
        "km_retention_at_risk": at_risk,
        "cif_overdose": _cif(),
        "mortality_rates": mortality,
        "crime_rates": crime,
        "crime_before_after": pd.DataFrame(ba),
        "estimates": flat,
    }


def _figures(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    from evaluation import figures

    if hasattr(figures, "all_figures"):
        return figures.all_figures(tables)
    return {}


def write_results_fixture(
    path: str | Path, *, synthetic: bool = True, minimal: bool = False
) -> Path:
    """Write a small results folder following ``docs/results-folder.md``.

    Parameters
    ----------
    path : path-like
        Folder to write (replaced if it exists).
    synthetic : bool
        Whether the data are synthetic (truth known, ``truth`` section filled).
    minimal : bool
        Only the contract's minimum: no tables, figures or manifest details,
        no design or diagnostics section, truth ``null``; its primary estimates
        in the states a small study meets (a finite one with a note on few
        clusters, one not estimable with the reason in ``details.note``).

    Returns
    -------
    pathlib.Path
        The folder written.
    """
    rng = np.random.default_rng(1)
    if minimal:
        primary = [
            _estimate(outcome, measure, f"{model}_matched", *PRIMARY_VALUES[outcome], primary=True,
                      details={"note": MINIMAL_NOTES[outcome]} if outcome in MINIMAL_NOTES else None)
            for outcome, measure, model, _ in RATIO_ESTIMATES
            if outcome != "overdose_mortality"
        ]  # fmt: skip
        # a small study: one primary estimate not estimable (reason in its note)
        primary[-1] = _estimate("crime", "IRR", "rate_matched", math.nan, math.nan, math.nan,
                                math.nan, primary=True, details={"note": MINIMAL_NOT_ESTIMABLE})  # fmt: skip
        document = ResultsDocument(
            schema_version=1,
            cohort=CohortSummary(n_hat=103, n_ost=1515, n_hat_matched=96, n_ost_matched=371),
            estimates=primary,
        )
        return write_results_folder(path, results=document.to_json_dict(), manifest={})
    estimates = _estimates(synthetic)
    config = StudyConfig(seed=7, scenario="ci")
    truth = None
    if synthetic:
        keys = {(e.outcome, e.measure): e.truth for e in estimates}
        truth = {
            "scenario": "ci",
            "seed": 7,
            "estimands": [
                {"outcome": o, "measure": m, "value": v, "definition": f"true {o} {m} (ATT)"}
                for (o, m), v in keys.items()
            ],
            "conditional": {"hr_mortality_in_hat_vs_in_ost": 0.6},
        }
    matched_info = {"k": 4, "caliper_sd": 0.2, "replace": False, "exact": ["region"],
                    "n_treated": 103, "n_treated_matched": 96, "n_control_matched": 371,
                    "share_treated_matched": 96 / 103}  # fmt: skip
    designs = {
        "matched": matched_info,
        "iptw": {"trim": None, "n_treated": 103, "n_control": 1515, "ess_treated": 103.0,
                 "ess_control": 412.7},
        "matched_caliper0.1": {**matched_info, "caliper_sd": 0.1, "n_treated_matched": 91,
                               "n_control_matched": 350, "share_treated_matched": 91 / 103},
        "matched_1to1": {**matched_info, "k": 1, "n_control_matched": 96},
        "naive": {"n_treated": 103, "n_control": 1515},
    }  # fmt: skip
    tables = _tables(rng, estimates)
    bal = tables["balance"]
    cohort = CohortSummary(
        n_hat=103,
        n_ost=1515,
        n_hat_matched=96,
        n_ost_matched=371,
        n_read=1634,
        n_excluded=16,
        exclusions=tables["exclusions"].to_dict(orient="records"),
    )
    document = ResultsDocument(
        schema_version=1,
        cohort=cohort,
        estimates=estimates,
        design=DesignSection(
            primary="matched",
            designs=designs,
            covariates=list(config.propensity_covariates),
            max_abs_smd={
                "before": float(bal["smd_before"].abs().max()),
                "matched": float(bal["smd_matched"].abs().max()),
                "iptw": float(bal["smd_iptw"].abs().max()),
            },
        ),
        diagnostics=Diagnostics.model_validate({
            "ph_tests": [
                PHTestRecord.model_validate(
                    {"outcome": e.outcome, "method": e.method, **e.details.ph_test.to_json_dict()}
                )
                for e in estimates
                if e.details.ph_test is not None
            ],
            "e_values": [
                {
                    "outcome": "mortality",
                    "measure": "HR",
                    "estimate": 0.734,
                    "ci_low": 0.452,
                    "ci_high": 1.191,
                    "rr": 0.734,
                    "rr_ci_low": 0.452,
                    "rr_ci_high": 1.191,
                    "point": 2.07,
                    "ci": 1.0,
                    "rare": True,
                    "rare_rule": "cumulative incidence by the end of follow-up 0.112 <= 0.15: rare outcome",
                    "incidence": 0.112,
                    "conversion": "rare outcome: HR ~ RR",
                },
                {
                    "outcome": "retention",
                    "measure": "HR",
                    "estimate": 0.571,
                    "ci_low": 0.437,
                    "ci_high": 0.746,
                    "rr": 0.696,
                    "rr_ci_low": 0.589,
                    "rr_ci_high": 0.817,
                    "point": 2.24,
                    "ci": 1.71,
                    "rare": False,
                    "rare_rule": "cumulative incidence by the end of follow-up 0.468 > 0.15: common outcome",
                    "incidence": 0.468,
                    "conversion": "common outcome: VanderWeele (2020) HR conversion",
                },
                {
                    "outcome": "crime",
                    "measure": "IRR",
                    "estimate": 0.664,
                    "ci_low": 0.512,
                    "ci_high": 0.861,
                    "rr": 0.664,
                    "rr_ci_low": 0.512,
                    "rr_ci_high": 0.861,
                    "point": 2.37,
                    "ci": 1.59,
                    "rare": None,
                    "rare_rule": "not needed: risk or rate ratio",
                    "incidence": None,
                    "conversion": "none",
                },
            ],  # fmt: skip
            "score_test_retention": {
                "statistic": 17.3,
                "p_value": 0.00003,
                "df": 1,
                "test": "robust Cox score test",
                "weighted": True,
                "robust": True,
                "n_clusters": 231,
            },  # fmt: skip
            "retention_at_12m": {
                "HAT": {"survival": 0.781, "se": 0.043},
                "OST": {"survival": 0.602, "se": 0.027},
            },  # fmt: skip
        }),
        truth=truth,
    )  # fmt: skip
    source = (
        {"kind": "synthetic", "scenario": "ci"}
        if synthetic
        else {"kind": "extract", "path": "/data/registry-extract-2026"}
    )
    manifest = {
        "created": "2026-11-23T21:00:00+00:00",
        "command": "python -m evaluation.run --config configs/ci.yml --out results-ci",
        "seed": 7,
        "config": config.to_dict(),
        "config_sha256": config.hash(),
        "source": source,
        "input": {"sha256": "ab" * 32, "files": {"persons.csv": "cd" * 32}},
        "extract_date": "2025-12-31",
        "extract_notes": [],
        "counts": cohort.to_json_dict(),
        "versions": package_versions(),
        "timings_seconds": {"derive cohort": 0.4, "outcome models": 3.1},
        "elapsed_seconds": 6.2,
    }
    return write_results_folder(
        path,
        results=document.to_json_dict(),
        manifest=manifest,
        tables=tables,
        figures=_figures(tables),
    )


def write_trial_results(path: str | Path, *, seed: int = 3, bootstrap: int = 20) -> Path:
    """A results folder of an emulated target trial, written by the package (no report).

    The ``ci`` history scenario (``python -m synthetic --scenario ci --contract 2``) analysed
    by :func:`evaluation.run.run`, with its ``release/``; the per-protocol bootstrap has
    ``bootstrap`` replicates (the default 200 take about a minute), so the folder is made
    in about 20 s. Its extract is written beside it (``<path>-extract``).

    Returns
    -------
    pathlib.Path
        The results folder; ``run``'s warnings are in its manifest (``warnings``).
    """
    from evaluation.config import load_config
    from evaluation.run import run
    from synthetic import generate_extract

    path = Path(path)
    extract = generate_extract(
        "ci", out=path.parent / f"{path.name}-extract", seed=seed, contract=2
    )
    # without the multiple-imputation sensitivity analysis (on by default; tested elsewhere)
    config = load_config(
        target_trial={"per_protocol": {"bootstrap": bootstrap}},
        imputation={"sensitivity": False},
    )
    run(data=extract, out=path, config=config, book=False, quiet=True)
    return path
