"""Per-protocol effects of the emulated target trial: comparators censored when they start
HAT, inverse probability of censoring weights, bootstrap over persons.

The comparator strategy per protocol is "never initiate HAT". A comparator's follow-up
ends, censored, on its first HAT start (the ``pp_*`` columns of the risk sets). The
censoring is informative, so the comparators' intervals are weighted by stabilised inverse
probability of censoring weights (:mod:`analysis.design.ipcw`):

- **censoring model** (denominator): pooled logistic regression of starting HAT in an
  interval of ``interval_days`` on the covariates *at the interval's start* (the latest
  status form, an overdose in the lookback window, days in OST in the year before,
  charges in the lookback window, still in the treatment spell of the index date, age,
  sex; :func:`analysis.data.risk_sets.covariates_on` on the interval's first day) and time
  since the index date (restricted cubic spline, 4 knots), over the comparators'
  intervals of follow-up;
- **numerator model**: time since the index date only;
- weights truncated at the configured quantile (and 1 minus it) of the comparators'
  interval weights; initiators have weight 1 (they are never artificially censored).

Estimates (all HAT vs comparators, weighted by matching weight x censoring weight): Cox
hazard ratio on counting-process data (Breslow ties), Kaplan-Meier risk differences,
retention ratios and RMST differences, Aalen-Johansen cumulative incidence differences,
and ratios of weighted charge rates for crime.

No negative-binomial model per protocol: the censoring weights change from interval to
interval, so a weighted count model has to be fitted to the person-intervals, where a
negative binomial's gamma term would describe variation between intervals rather than the
persons' overdispersion (the reason version 1 and the intention-to-treat analysis fit it to
persons); the ratio of weighted rates (a weighted Poisson model with the arm only, on the
same intervals) targets the ratio of total charges to total person-time, the truth's
definition, and the bootstrap over persons makes its variance robust to the overdispersion.

Variance: a bootstrap over persons (the clusters: a person may be in several matched sets
and in both arms), refitting both censoring models in every replicate, so the estimation of
the weights is accounted for; the matched sets are kept as they are (as the
intention-to-treat variances treat the matching as fixed). Wald intervals from the
bootstrap SE (log scale for ratios). The truncation bounds are those of the full sample.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

from analysis.data.contract import DAYS_PER_YEAR
from analysis.data.risk_sets import covariates_on, outcomes_from
from analysis.design.ipcw import censoring_weights, fit_logistic, split_intervals
from analysis.design.missing import design_matrix, restricted_cubic_spline, spline_knots
from analysis.design.risk_set_matching import RiskSetMatch
from analysis.outcomes.counting import (
    aj_counting,
    cox_counting,
    km_counting,
    rmst,
    survival_at_time,
    weighted_rates,
)
from analysis.outcomes.coxph import fit_cox
from analysis.results import EffectEstimate
from evaluation import study_design
from evaluation.config import StudyConfig
from evaluation.stages.secondary import horizon_label
from evaluation.trial_frame import outcome_frame

#: ratio measures (log scale for the bootstrap SE)
_RATIOS = ("HR", "IRR", "ratio_of_rate_ratios")


def _time_columns(t_years: np.ndarray, knots: np.ndarray) -> np.ndarray:
    return np.column_stack([t_years, restricted_cubic_spline(t_years, knots)])


class _Data:
    """The matched rows split into intervals, with everything the estimators need."""

    def __init__(self, history: Any, matched: RiskSetMatch, config: StudyConfig) -> None:
        tt = config.target_trial
        self.L = tt.per_protocol.interval_days
        m = matched.data
        self.pp = outcome_frame(m, per_protocol=True)
        itt = outcome_frame(m)
        self.x = self.pp["treatment"].to_numpy(np.int64)
        self.match_w = self.pp["weight"].to_numpy(float)
        person = self.pp["person_id"].to_numpy()
        self.persons, self.person_code = np.unique(person, return_inverse=True)
        index_day = m["index_date"].to_numpy("datetime64[D]")
        censor_day = m["pp_censor_date"].to_numpy("datetime64[D]")
        end_day = m["followup_end"].to_numpy("datetime64[D]")
        censored = ~np.isnat(censor_day) & (self.x == 0)
        censored &= censor_day <= np.where(np.isnat(end_day), censor_day, end_day)
        self.censored = censored
        fu = self.pp["followup_days"].to_numpy(float)
        self.iv = split_intervals(fu, self.pp["died"].to_numpy(), self.L)
        iv = self.iv
        n_per_row = np.bincount(iv.row, minlength=len(fu))
        self.row_first = np.r_[0, np.cumsum(n_per_row)[:-1]]
        last = np.r_[iv.row[1:] != iv.row[:-1], True]
        self.cens_event = (last & censored[iv.row]).astype(np.int64)
        # the comparators' intervals: the censoring model's rows
        comp = self.x[iv.row] == 0
        self.comp = comp
        offset = np.maximum(iv.start, 0).astype(np.int64)
        pairs = pd.DataFrame(
            {
                "person_id": person[iv.row[comp]],
                "index_date": (index_day[iv.row[comp]] + offset[comp]).astype("datetime64[s]"),
            }
        )
        cov = covariates_on(
            history, pairs, lookback_days=tt.eligibility.lookback_days, gap_days=config.gap_days
        )
        ret = itt["retention_days"].to_numpy(float)
        cov["in_index_spell"] = (offset[comp] < np.nan_to_num(ret[iv.row[comp]], nan=-1)).astype(
            float
        )
        t_years = offset[comp] / DAYS_PER_YEAR
        self.knots = spline_knots(t_years, 4)
        time_cols = _time_columns(t_years, self.knots)
        covs = list(tt.per_protocol.covariates)
        den = (
            design_matrix(
                cov, covs, transforms=study_design.TRANSFORMS, levels=study_design.LEVELS
            ).to_numpy(float)
            if covs
            else np.empty((len(cov), 0))
        )
        self.X_den = np.column_stack([den, time_cols])
        self.X_num = time_cols
        self.y_cens = self.cens_event[comp]
        # crime by interval: charges and days at risk from each interval's start on
        out = outcomes_from(
            history, pairs, lookback_days=tt.eligibility.lookback_days, gap_days=config.gap_days
        )
        charges = out["pp_followup_charges"].to_numpy(np.int64, na_value=0).astype(float)
        days = out["pp_crime_days"].to_numpy(np.int64, na_value=0).astype(float)
        rows_c = iv.row[comp]
        nxt_same = np.r_[rows_c[1:] == rows_c[:-1], False]
        self.crime_y = charges - np.where(nxt_same, np.r_[charges[1:], 0.0], 0.0)
        self.crime_t = (days - np.where(nxt_same, np.r_[days[1:], 0.0], 0.0)) / DAYS_PER_YEAR
        self.crime_row = rows_c
        # retention intervals (rows in retention) on the same grid
        inret = self.pp["in_retention"].to_numpy()
        rdays = np.where(inret, self.pp["retention_days"].to_numpy(float), 0.0)
        riv = split_intervals(rdays, np.nan_to_num(self.pp["discontinued"].to_numpy(float)), self.L)
        keep = inret[riv.row]
        self.riv = riv
        self.riv_keep = keep
        self.riv_flat = self.row_first[riv.row] + riv.j
        # event types for the competing risks (last mortality interval)
        od = self.pp["overdose_death"].to_numpy()
        self.event_type = np.where(iv.event == 1, np.where(od[iv.row] == 1, 1, 2), 0)


def _weights(
    d: _Data, freq_int: np.ndarray, bounds: tuple[float, float] | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Censoring weights of every mortality interval (1 for initiators), and the models."""
    w = np.ones(len(d.iv.row))
    info: dict[str, Any] = {}
    if d.y_cens.sum() == 0:
        info["note"] = "no comparator started HAT during follow-up: all weights 1"
        return w, info
    f = freq_int[d.comp]
    if (f * d.y_cens).sum() == 0:
        info["note"] = "no comparator in the sample started HAT during follow-up: weights 1"
        return w, info
    b_den = fit_logistic(d.X_den, d.y_cens, f)
    b_num = fit_logistic(d.X_num, d.y_cens, f)
    p_den = expit(b_den[0] + d.X_den @ b_den[1:])
    p_num = expit(b_num[0] + d.X_num @ b_num[1:])
    wc = censoring_weights(d.iv.row[d.comp], p_num, p_den)
    if bounds is None:
        bounds = (float("-inf"), float("inf"))
    info["untruncated"] = wc
    w[d.comp] = np.clip(wc, *bounds)
    info["coef_den"] = b_den
    return w, info


class _CoxRows(NamedTuple):
    """The interval rows of one time-to-event outcome: what its Cox and KM fits take."""

    start: np.ndarray
    stop: np.ndarray
    event: np.ndarray
    arm: np.ndarray
    weight: np.ndarray
    person: np.ndarray


def _cox_rows(d: _Data, w_int: np.ndarray, freq_row: np.ndarray) -> dict[str, _CoxRows]:
    """Rows of mortality, overdose mortality and retention for one set of weights."""
    iv, x = d.iv, d.x
    row_w = d.match_w * freq_row
    wt = row_w[iv.row] * w_int
    xi, person = x[iv.row], d.person_code[iv.row]
    od_event = (d.event_type == 1).astype(np.int64)
    riv, k = d.riv, d.riv_keep
    return {
        "mortality": _CoxRows(iv.start, iv.stop, iv.event, xi, wt, person),
        "overdose_mortality": _CoxRows(iv.start, iv.stop, od_event, xi, wt, person),
        "retention": _CoxRows(
            riv.start[k], riv.stop[k], riv.event[k], x[riv.row][k],
            (row_w[riv.row] * w_int[d.riv_flat])[k], d.person_code[riv.row][k],
        ),
    }  # fmt: skip


def _values(d: _Data, w_int: np.ndarray, freq_row: np.ndarray, config: StudyConfig) -> dict:
    """Every per-protocol estimate for one set of weights (and bootstrap frequencies)."""
    x = d.x
    row_w = d.match_w * freq_row
    rows = _cox_rows(d, w_int, freq_row)
    out: dict[tuple[str, str], float] = {}

    def arms_km(start, stop, event, ww, xx):
        return [
            km_counting(start[xx == a], stop[xx == a], event[xx == a], ww[xx == a]) for a in (1, 0)
        ]

    hr = {
        o: np.exp(cox_counting(r.start, r.stop, r.event, r.arm, r.weight)[0])
        for o, r in rows.items()
    }
    m = rows["mortality"]
    out[("mortality", "HR")] = hr["mortality"]
    (t1, s1), (t0, s0) = arms_km(m.start, m.stop, m.event, m.weight, m.arm)
    for t in config.risk_times_days:
        out[("mortality", f"RD_{horizon_label(t)}")] = (1 - survival_at_time(t1, s1, t)) - (
            1 - survival_at_time(t0, s0, t)
        )
    tau = config.rmst_tau_days
    out[("mortality", "RMST_diff")] = rmst(t1, s1, tau) - rmst(t0, s0, tau)
    out[("overdose_mortality", "HR")] = hr["overdose_mortality"]
    xi = m.arm
    for t in config.risk_times_days:
        c = [
            aj_counting(
                m.start[xi == a], m.stop[xi == a], d.event_type[xi == a], m.weight[xi == a], t
            )
            for a in (1, 0)
        ]
        out[("overdose_mortality", f"RD_{horizon_label(t)}")] = c[0] - c[1]
    # retention
    r = rows["retention"]
    out[("retention", "HR")] = hr["retention"]
    (t1, s1), (t0, s0) = arms_km(r.start, r.stop, r.event, r.weight, r.arm)
    t12 = config.retention_time_days
    a1, a0 = survival_at_time(t1, s1, t12), survival_at_time(t0, s0, t12)
    out[("retention", f"RR_{horizon_label(t12)}")] = a1 / a0 if a0 > 0 else float("nan")
    for t in sorted({t12, *config.risk_times_days}):
        out[("retention", f"RD_{horizon_label(t)}")] = survival_at_time(
            t1, s1, t
        ) - survival_at_time(t0, s0, t)
    out[("retention", "RMST_diff")] = rmst(t1, s1, tau) - rmst(t0, s0, tau)
    # crime: initiators by their totals (weight 1), comparators by interval
    init = x == 1
    pp = d.pp
    y_i = pp["followup_charges"].to_numpy(float)[init]
    t_i = pp["crime_years"].to_numpy(float)[init]
    wc = row_w[d.crime_row] * w_int[d.comp]
    count = np.r_[y_i, d.crime_y]
    years = np.r_[t_i, d.crime_t]
    arm = np.r_[np.ones(int(init.sum()), np.int64), np.zeros(len(d.crime_y), np.int64)]
    ww = np.r_[row_w[init], wc]
    r1, r0 = weighted_rates(count, years, arm, ww)
    out[("crime", "IRR")] = r1 / r0 if r0 > 0 else float("nan")
    b1, b0 = weighted_rates(
        pp["baseline_charges_at_risk"].to_numpy(float),
        pp["baseline_crime_years"].to_numpy(float),
        x,
        row_w,
    )
    out[("crime", "ratio_of_rate_ratios")] = (
        (r1 / b1) / (r0 / b0) if min(b1, b0, r0) > 0 else float("nan")
    )
    return out


_METHODS = {
    "HR": "cox_ipcw",
    "IRR": "rate_ipcw",
    "ratio_of_rate_ratios": "rate_ipcw",
    "RMST_diff": "rmst_ipcw",
}


def _method(outcome: str, measure: str) -> str:
    if measure in _METHODS:
        return _METHODS[measure]
    return "aj_ipcw" if outcome == "overdose_mortality" else "km_ipcw"


def per_protocol_estimates(
    history: Any, matched: RiskSetMatch, config: StudyConfig
) -> tuple[list[EffectEstimate], dict[str, Any], dict[str, pd.DataFrame]]:
    """Per-protocol estimates on the matched risk sets.

    Returns
    -------
    (estimates, info, tables)
        Estimates (``primary`` false; ``estimand`` set by the caller), the design's
        description for ``results.json`` (weight distribution, censoring model,
        bootstrap) and the table ``ipcw_weights`` (distribution of the weights).
    """
    pp_cfg = config.target_trial.per_protocol
    d = _Data(history, matched, config)
    ones_int = np.ones(len(d.iv.row))
    ones_row = np.ones(len(d.x))
    w_raw, winfo = _weights(d, ones_int, None)
    if "untruncated" in winfo:
        wc = winfo["untruncated"]
        q = pp_cfg.truncate
        bounds = (float(np.quantile(wc, 1 - q)), float(np.quantile(wc, q)))
    else:
        wc = np.ones(int(d.comp.sum()))
        bounds = (1.0, 1.0)
    w, _ = _weights(d, ones_int, bounds)
    point = _values(d, w, ones_row, config)
    point_rows = _cox_rows(d, w, ones_row)
    robust = _robust_hr_se(point_rows)
    # bootstrap over persons, refitting the censoring models
    B = pp_cfg.bootstrap
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2,)))
    G = len(d.persons)
    reps: dict[tuple[str, str], list[float]] = {k: [] for k in point}
    for _ in range(B):
        counts = rng.multinomial(G, np.full(G, 1.0 / G)).astype(float)
        freq_row = counts[d.person_code]
        wb, _ = _weights(d, freq_row[d.iv.row], bounds)
        for key, v in _values(d, wb, freq_row, config).items():
            reps[key].append(v)
    z = float(stats.norm.ppf(1 - config.alpha / 2))
    n_t, n_c = int((d.x == 1).sum()), int((d.x == 0).sum())
    estimates = []
    for (outcome, measure), value in point.items():
        ratio = measure in _RATIOS or measure.startswith("RR")
        r = np.asarray(reps[(outcome, measure)], dtype=float)
        if ratio:  # a replicate without events in a group gives a ratio of 0: not finite
            with np.errstate(divide="ignore"):
                r = np.log(r)
        ok = np.isfinite(r)
        common = {
            "outcome": outcome,
            "measure": measure,
            "method": _method(outcome, measure),
            "n_treated": n_t,
            "n_control": n_c,
        }
        details: dict[str, Any] = {
            "variance": f"bootstrap over persons ({int(ok.sum())} of {B} replicates finite), "
            "censoring models refitted",
            "weights": "matching weight x stabilised, truncated inverse probability of "
            "censoring weight",
        }
        if measure == "HR":
            ev, arm = point_rows[outcome].event, point_rows[outcome].arm
            by_group = {"treated": int(ev[arm == 1].sum()), "control": int(ev[arm == 0].sum())}
            details["events_by_group"] = by_group
        if not np.isfinite(value) or (ratio and not value > 0):
            note = "the weighted estimate is not finite (nobody left at the time)"
            if measure == "HR" and min(by_group.values()) == 0:
                group = "HAT" if by_group["treated"] == 0 else "comparator"
                note = (
                    f"not estimable: no events in the {group} group (the partial likelihood "
                    "has no maximum; the HR tends to 0 or infinity)"
                )
            estimates.append(_not_estimable(common, note, details))
            continue
        if measure == "HR":
            # hazard ratios: the person-clustered sandwich (weights known, conservative);
            # the bootstrap's SD is kept for comparison
            se = robust[outcome]
            details["variance"] = (
                "cluster-robust sandwich on persons, censoring weights treated as known "
                "(conservative)"
            )
            if ok.sum() >= 2:
                details["se_bootstrap"] = float(np.std(r[ok], ddof=1))
            details["bootstrap_finite"] = f"{int(ok.sum())} of {B}"
            if not np.isfinite(se):
                estimates.append(_not_estimable(common, "no robust variance", details))
                continue
            estimates.append(
                EffectEstimate.from_log(
                    log_estimate=float(np.log(value)), se=se, alpha=config.alpha,
                    details=details, **common,
                )
            )  # fmt: skip
            continue
        if ok.sum() < 2:
            estimates.append(
                _not_estimable(common, "fewer than 2 finite bootstrap replicates", details)
            )
            continue
        if (~ok).sum() > config.alpha / 2 * B:
            # replicates at 0 or infinity (an arm drew none of its few events): the bootstrap
            # distribution has mass at the boundary, so the SD of the finite ones is too small
            # and a percentile interval would be unbounded; no finite interval is honest
            details["point_estimate"] = float(value)
            note = (
                f"not estimable: {int((~ok).sum())} of {B} bootstrap replicates are at 0 or "
                f"infinity (more than alpha/2 of them; too few events in an arm), so the "
                "interval is unbounded"
            )
            estimates.append(_not_estimable(common, note, details))
            continue
        se = float(np.std(r[ok], ddof=1))
        if ratio:
            estimates.append(
                EffectEstimate.from_log(
                    log_estimate=float(np.log(value)), se=se, alpha=config.alpha,
                    details=details, **common,
                )
            )  # fmt: skip
        else:
            p = float(2 * stats.norm.sf(abs(value / se))) if se > 0 else float("nan")
            estimates.append(
                EffectEstimate(
                    estimate=float(value), ci_low=float(value - z * se),
                    ci_high=float(value + z * se), p_value=p, se=se, details=details, **common,
                )
            )  # fmt: skip
    qs = [0.0, 0.01, 0.25, 0.5, 0.75, 0.99, 1.0]
    dist = pd.DataFrame(
        {
            "quantile": qs,
            "untruncated": np.quantile(wc, qs),
            "truncated": np.quantile(np.clip(wc, *bounds), qs),
        }
    )
    info = {
        "variance": f"bootstrap over persons, {B} replicates, censoring models refitted",
        "interval_days": d.L,
        "censoring_model": "pooled logistic regression of starting HAT in an interval on "
        f"{list(pp_cfg.covariates)} at the interval's start and time since the index date "
        "(restricted cubic spline); numerator: time since the index date",
        "n_comparator_rows": n_c,
        "n_comparators_censored": int(d.censored.sum()),
        "n_censoring_intervals": int(d.comp.sum()),
        "weights": {
            "mean": float(np.mean(np.clip(wc, *bounds))),
            "sd": float(np.std(np.clip(wc, *bounds))),
            "min": float(np.min(wc)),
            "max": float(np.max(wc)),
            "mean_untruncated": float(np.mean(wc)),
            "truncated_at": [bounds[0], bounds[1]],
            "truncation_quantile": pp_cfg.truncate,
            "n_truncated": int(((wc < bounds[0]) | (wc > bounds[1])).sum()),
        },
        "note": winfo.get("note"),
    }
    del w_raw
    return estimates, info, {"ipcw_weights": dist}


def _robust_hr_se(rows: dict[str, _CoxRows]) -> dict[str, float]:
    """Cluster-robust (person) SE of each per-protocol log HR, the weights treated as known.

    The same weighted counting-process Cox fits as :func:`_values` (Breslow ties), by the Cox
    engine with the sandwich clustered on the person. Treating estimated inverse probability of
    censoring weights as known gives a conservative variance (Robins, Hernán & Brumback 2000;
    Hernán, Brumback & Robins 2000), and unlike a bootstrap it stays finite when an arm has
    only a few events.
    """
    out = {}
    for outcome, (start, stop, event, arm, weight, person) in rows.items():
        keep = weight > 0
        both = event[keep & (arm == 1)].sum() > 0 and event[keep & (arm == 0)].sum() > 0
        if not both:
            out[outcome] = float("nan")
            continue
        fit = fit_cox(
            arm[keep, None].astype(float), stop[keep], event[keep], entry=start[keep],
            weights=weight[keep], cluster=person[keep], ties="breslow",
        )  # fmt: skip
        out[outcome] = float(fit.robust_se[0])
    return out


def _not_estimable(common: dict[str, Any], note: str, details: dict[str, Any]) -> EffectEstimate:
    nan = float("nan")
    return EffectEstimate(
        estimate=nan, ci_low=nan, ci_high=nan, p_value=nan,
        details={"note": note, **details}, **common,
    )  # fmt: skip
