"""Performance of the study's estimators over simulated replicates.

:func:`performance` computes, for one estimand and one method, the performance
measures of Morris, White & Crowther (2019) with their Monte Carlo standard
errors (MCSE, their Table 6); :func:`summarise` applies it to every setting ×
estimand × method of a simulation study; :func:`power_figure` draws power
against sample size for the report.

Ratio measures (``HR``, ``IRR``, ``RR_12m``, ``ratio_of_rate_ratios``) are
assessed on the log scale, differences (``RD_12m``, ``RD_24m``, ``RMST_diff``) on
their natural scale (the scale of each measure is in :mod:`analysis.data.measures`); every (outcome, measure, method) a replicate reports is
summarised, so the absolute measures of each outcome get their own bias and coverage. The model-based standard error of a replicate is read from its
confidence interval, ``(hi - lo) / (2 z)`` on that scale, so that it is the
standard error the reported interval actually used.

A history study (data contract version 2, the emulated target trial) reports each
estimate with its ``estimand`` (``itt``, ``per_protocol``); the summary is then per
(estimand, outcome, measure, method) against the truth of that estimand, and
``estimand_primary`` marks the primaries of both estimands: the primary (intention-to-treat)
estimates and their per-protocol counterparts (same outcome, measure and model, design
:data:`PER_PROTOCOL_DESIGN`).

References
----------
Morris TP, White IR, Crowther MJ. Using simulation studies to evaluate
statistical methods. Stat Med 2019;38:2074-2102. doi:10.1002/sim.8086
"""

from __future__ import annotations

__all__ = [
    "ESTIMATE_COLUMNS",
    "MEASURES",
    "PER_PROTOCOL_DESIGN",
    "RATIO_MEASURES",
    "estimate_table",
    "model_se",
    "performance",
    "power_figure",
    "scale_of",
    "summarise",
    "to_scale",
]

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from analysis.data.measures import RATIO_MEASURES, scale_of

#: performance measures, in the order of the summary's columns (each followed by ``_mcse``)
MEASURES = ("bias", "empse", "mse", "modse", "relerr_modse", "coverage", "power")

#: design of the per-protocol counterpart of a primary estimate (``cox_ipcw``, ``rate_ipcw``)
PER_PROTOCOL_DESIGN = "ipcw"

#: columns of a replicate-level estimate table (see :func:`estimate_table`)
ESTIMATE_COLUMNS = (
    "setting",
    "n_hat",
    "replicate",
    "estimand",
    "outcome",
    "measure",
    "method",
    "primary",
    "estimate",
    "ci_low",
    "ci_high",
    "p_value",
    "truth",
)


def to_scale(values: Any, measure: str) -> np.ndarray:
    """Values on the scale a measure is assessed on (log of ratios: 0 -> -inf, < 0 -> NaN)."""
    x = np.asarray(values, dtype=float)
    if scale_of(measure) == "natural":
        return x
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x >= 0, np.log(np.maximum(x, 0.0)), np.nan)


def performance(
    estimate: Any,
    *,
    truth: float,
    se: Any | None = None,
    ci_low: Any | None = None,
    ci_high: Any | None = None,
    p_value: Any | None = None,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Performance measures of one method for one estimand, with Monte Carlo SEs.

    Every input is on the scale the estimand is assessed on (use :func:`to_scale`).
    Non-finite values are left out of the measures that need them, so each measure
    has its own number of replicates (``n_estimates``, ``n_se``, ``n_ci``, ``n_p``).

    Parameters
    ----------
    estimate : array-like
        Point estimates :math:`\\hat\\theta_i`, one per replicate.
    truth : float
        The true value :math:`\\theta`.
    se : array-like, optional
        Model-based standard errors (for ``modse`` and ``relerr_modse``).
    ci_low, ci_high : array-like, optional
        Confidence limits (for ``coverage``).
    p_value : array-like, optional
        Two-sided p-values for no effect (for ``power``).
    alpha : float
        Significance level: ``power`` is the share with ``p < alpha``.

    Returns
    -------
    dict
        With :math:`n` the replicates used, :math:`\\bar\\theta` the mean estimate
        and :math:`v_i = \\widehat{se}_i^2` (Morris et al. 2019, Table 6):

        - ``bias`` :math:`= \\bar\\theta - \\theta`, MCSE
          :math:`\\sqrt{\\sum(\\hat\\theta_i - \\bar\\theta)^2 / (n(n-1))}`;
        - ``empse`` :math:`= \\sqrt{\\sum(\\hat\\theta_i - \\bar\\theta)^2/(n-1)}`, MCSE
          :math:`\\mathrm{empse}/\\sqrt{2(n-1)}`;
        - ``mse`` :math:`= \\sum(\\hat\\theta_i-\\theta)^2/n`, MCSE
          :math:`\\sqrt{\\sum((\\hat\\theta_i-\\theta)^2 - \\mathrm{mse})^2/(n(n-1))}`;
        - ``modse`` :math:`= \\sqrt{\\bar v}`, MCSE
          :math:`\\sqrt{\\widehat{\\mathrm{Var}}(v)/(4 n\\, \\mathrm{modse}^2)}`;
        - ``relerr_modse`` :math:`= 100(\\mathrm{modse}/\\mathrm{empse} - 1)` (%), MCSE
          :math:`100\\frac{\\mathrm{modse}}{\\mathrm{empse}}\\sqrt{\\frac{\\widehat{\\mathrm{Var}}(v)}
          {4n\\,\\mathrm{modse}^4} + \\frac{1}{2(n-1)}}`;
        - ``coverage`` (share of intervals holding :math:`\\theta`) and ``power`` (share
          with ``p < alpha``), MCSE :math:`\\sqrt{c(1-c)/n}`;

        plus ``mean_estimate`` and the counts ``n_estimates``, ``n_se``, ``n_ci``,
        ``n_p``. A measure that cannot be computed (too few replicates) is NaN.

    References
    ----------
    Morris TP, White IR, Crowther MJ. Using simulation studies to evaluate statistical
    methods. Stat Med 2019;38:2074-2102, Table 6.
    """
    nan = float("nan")
    out: dict[str, float] = {}
    for name in MEASURES:
        out[name] = nan
        out[f"{name}_mcse"] = nan
    theta = float(truth) if truth is not None else nan

    est = np.asarray(estimate, dtype=float)
    est = est[np.isfinite(est)]
    n = est.size
    out["n_estimates"] = n
    out["mean_estimate"] = float(est.mean()) if n else nan
    if n >= 1 and math.isfinite(theta):
        out["bias"] = float(est.mean() - theta)
        sq = (est - theta) ** 2
        out["mse"] = float(sq.mean())
        if n >= 2:
            out["mse_mcse"] = float(math.sqrt(np.sum((sq - sq.mean()) ** 2) / (n * (n - 1))))
    if n >= 2:
        ss = float(np.sum((est - est.mean()) ** 2))
        out["empse"] = math.sqrt(ss / (n - 1))
        out["empse_mcse"] = out["empse"] / math.sqrt(2 * (n - 1))
        if math.isfinite(theta):
            out["bias_mcse"] = math.sqrt(ss / (n * (n - 1)))

    out["n_se"] = 0
    if se is not None:
        v = np.asarray(se, dtype=float) ** 2
        v = v[np.isfinite(v)]
        m = v.size
        out["n_se"] = m
        if m >= 1:
            out["modse"] = math.sqrt(float(v.mean()))
        if m >= 2 and out["modse"] > 0:
            var_v = float(np.var(v, ddof=1))
            out["modse_mcse"] = math.sqrt(var_v / (4 * m * out["modse"] ** 2))
            if math.isfinite(out["empse"]) and out["empse"] > 0:
                ratio = out["modse"] / out["empse"]
                out["relerr_modse"] = 100 * (ratio - 1)
                out["relerr_modse_mcse"] = (
                    100 * ratio * math.sqrt(var_v / (4 * m * out["modse"] ** 4) + 1 / (2 * (m - 1)))
                )

    out["n_ci"] = 0
    if ci_low is not None and ci_high is not None and math.isfinite(theta):
        lo = np.asarray(ci_low, dtype=float)
        hi = np.asarray(ci_high, dtype=float)
        ok = ~(np.isnan(lo) | np.isnan(hi))  # infinite limits are valid limits
        k = int(ok.sum())
        out["n_ci"] = k
        if k:
            c = float(np.mean((lo[ok] <= theta) & (theta <= hi[ok])))
            out["coverage"] = c
            out["coverage_mcse"] = math.sqrt(c * (1 - c) / k)

    out["n_p"] = 0
    if p_value is not None:
        p = np.asarray(p_value, dtype=float)
        p = p[np.isfinite(p)]
        out["n_p"] = p.size
        if p.size:
            pw = float(np.mean(p < alpha))
            out["power"] = pw
            out["power_mcse"] = math.sqrt(pw * (1 - pw) / p.size)
    return out


def model_se(ci_low: Any, ci_high: Any, measure: str, *, alpha: float = 0.05) -> np.ndarray:
    """Model-based standard errors from Wald confidence limits on the assessment scale."""
    z = norm.ppf(1 - alpha / 2)
    lo = to_scale(ci_low, measure)
    hi = to_scale(ci_high, measure)
    with np.errstate(invalid="ignore"):
        return (hi - lo) / (2 * z)


def estimate_table(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Every estimate of every successful replicate, one row each.

    Parameters
    ----------
    records : iterable of dict
        Replicate records as written by :mod:`evaluation.simulate` (``setting``,
        ``replicate``, ``status``, ``estimates``).

    Returns
    -------
    DataFrame
        :data:`ESTIMATE_COLUMNS`, sorted by setting, replicate and estimate; ``estimand``
        is ``None`` where the study does not name one (version 1).
    """
    rows = []
    for rec in records:
        if rec.get("status") != "ok":
            continue
        for e in rec.get("estimates", []):
            rows.append(
                {
                    "setting": rec["setting"]["name"],
                    "n_hat": rec["setting"]["n_hat"],
                    "replicate": rec["replicate"],
                    **{c: e.get(c) for c in ESTIMATE_COLUMNS[3:]},
                }
            )
    df = pd.DataFrame(rows, columns=list(ESTIMATE_COLUMNS))
    for c in ("estimate", "ci_low", "ci_high", "p_value", "truth"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["primary"] = df["primary"].fillna(False).astype(bool)
    df["estimand"] = df["estimand"].astype(object).where(df["estimand"].notna(), None)
    order = df.assign(
        _size=df["n_hat"].astype(float).fillna(0), _estimand=df["estimand"].fillna("").astype(str)
    ).sort_values(["_size", "setting", "replicate", "_estimand", "outcome", "measure", "method"])
    return df.loc[order.index].reset_index(drop=True)


def _setting_key(setting: Mapping[str, Any]) -> tuple[float, ...]:
    effects = (setting.get("effects") or {}).values()
    return (setting.get("n_hat") or 0, setting.get("scale") or 0.0, *effects)


def _truth_key(estimand: str | None, outcome: str, measure: str) -> tuple[str, ...]:
    return (outcome, measure) if estimand is None else (estimand, outcome, measure)


def _estimand_primary(out: pd.DataFrame) -> pd.Series:
    """The primaries of every estimand: the primary rows and their per-protocol counterparts."""
    flag = out["primary"].copy()
    pp = out["estimand"].eq("per_protocol") & out["design"].eq(PER_PROTOCOL_DESIGN)
    if pp.any():
        cols = ["setting", "outcome", "measure", "model"]
        primaries = set(map(tuple, out.loc[out["primary"], cols].to_numpy().tolist()))
        flag |= pp & pd.Series(
            [tuple(r) in primaries for r in out[cols].to_numpy().tolist()], index=out.index
        )
    return flag.astype(bool)


def summarise(
    records: Iterable[Mapping[str, Any]],
    *,
    truth: Mapping[tuple[str, ...], float],
    truth_mcse: Mapping[tuple[str, ...], float] | None = None,
    alpha: float = 0.05,
    setting_truth: Mapping[str, tuple[Mapping, Mapping]] | None = None,
) -> pd.DataFrame:
    """Performance of every method for every estimand in every setting.

    Parameters
    ----------
    records : iterable of dict
        Replicate records (failed ones included: they are counted, not dropped).
    truth : mapping
        ``(outcome, measure) -> true value`` on the natural scale; for estimates that
        name their estimand (a history study) ``(estimand, outcome, measure) -> value``.
    truth_mcse : mapping, optional
        Monte Carlo SE of the truth on the assessment scale, same keys as ``truth``.
    alpha : float
        Significance level of ``power``; also the level of the intervals, used to read
        the model SE from their width.
    setting_truth : mapping, optional
        ``setting name -> (truth, truth_mcse)`` for settings with their own truth (a power
        grid: the true effects are settings); the others use ``truth`` and ``truth_mcse``.

    Returns
    -------
    DataFrame
        One row per setting × (estimand, outcome, measure, method), ordered by setting,
        estimand, outcome, measure, method: ``setting, n_hat, n_ost, estimand, outcome,
        measure, method, model, design, primary, estimand_primary, scale, truth,
        truth_mcse, n_replicates, n_failed, n_missing`` then ``mean_estimate`` and every
        measure of :func:`performance` with its ``_mcse``, and the counts ``n_estimates,
        n_se, n_ci, n_p``. ``estimand`` is ``None`` when the study names none (version 1;
        ``estimand_primary`` is then ``primary``). ``truth`` and ``mean_estimate`` are on
        the assessment scale (``scale``); ``n_missing`` counts successful replicates
        without a finite estimate. In a power grid each setting's effect values follow
        ``n_ost`` as ``effect_<name>`` columns (``effect_mortality_hr``).
    """
    records = sorted(records, key=lambda r: (_setting_key(r["setting"]), r["replicate"]))
    settings: dict[str, dict[str, Any]] = {}
    for rec in records:
        s = settings.setdefault(
            rec["setting"]["name"], {**rec["setting"], "n_replicates": 0, "n_failed": 0}
        )
        s["n_replicates"] += 1
        s["n_failed"] += rec.get("status") != "ok"
    est = estimate_table(records)
    est["_estimand"] = est["estimand"].fillna("").astype(str)
    truth_mcse = truth_mcse or {}
    setting_truth = setting_truth or {}
    effect_names = list(dict.fromkeys(k for s in settings.values() for k in s.get("effects") or {}))
    rows = []
    for (name, estimand, outcome, measure, method), df in est.groupby(
        ["setting", "_estimand", "outcome", "measure", "method"], sort=False
    ):
        s = settings[name]
        key = _truth_key(estimand or None, outcome, measure)
        s_truth, s_mcse = setting_truth.get(name, (truth, truth_mcse))
        t = s_truth.get(key)
        t_scale = float(to_scale([t], measure)[0]) if t is not None else float("nan")
        perf = performance(
            to_scale(df["estimate"], measure),
            truth=t_scale,
            se=model_se(df["ci_low"], df["ci_high"], measure, alpha=alpha),
            ci_low=to_scale(df["ci_low"], measure),
            ci_high=to_scale(df["ci_high"], measure),
            p_value=df["p_value"],
            alpha=alpha,
        )
        model, _, design = str(method).partition("_")
        n_ok = s["n_replicates"] - s["n_failed"]
        rows.append(
            {
                "setting": name,
                "n_hat": s["n_hat"],
                "n_ost": s["n_ost"],
                **{f"effect_{k}": (s.get("effects") or {}).get(k) for k in effect_names},
                "estimand": estimand or None,
                "outcome": outcome,
                "measure": measure,
                "method": method,
                "model": model,
                "design": design,
                "primary": bool(df["primary"].any()),
                "estimand_primary": False,
                "scale": scale_of(measure),
                "truth": t_scale,
                "truth_mcse": float(s_mcse.get(key, float("nan"))),
                "n_replicates": s["n_replicates"],
                "n_failed": s["n_failed"],
                "n_missing": n_ok - perf["n_estimates"],
                "mean_estimate": perf.pop("mean_estimate"),
                **{k: perf[k] for m in MEASURES for k in (m, f"{m}_mcse")},
                **{k: perf[k] for k in ("n_estimates", "n_se", "n_ci", "n_p")},
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["estimand_primary"] = _estimand_primary(out)
    order = out.assign(
        _size=[_setting_key(settings[n]) for n in out["setting"]],
        _estimand=out["estimand"].fillna("").astype(str),
    ).sort_values(["_size", "_estimand", "outcome", "measure", "method"], kind="stable")
    return out.loc[order.index].reset_index(drop=True)


# ----------------------------------------------------------------------------- figure
#: one colour per primary outcome (Okabe-Ito, as :data:`evaluation.figures.GROUP_COLOURS`)
OUTCOME_COLOURS = {
    "mortality": "#D55E00",
    "overdose_mortality": "#CC79A7",
    "retention": "#0072B2",
    "crime": "#009E73",
}
OUTCOME_LABELS = {
    "mortality": "all-cause mortality",
    "overdose_mortality": "overdose mortality",
    "retention": "retention in treatment",
    "crime": "criminal charges",
}


def power_figure(summary: pd.DataFrame, *, primary_only: bool = True, alpha: float = 0.05):
    """Power against the number of HAT patients, one line per estimand.

    Parameters
    ----------
    summary : DataFrame
        As returned by :func:`summarise` (or read from ``summary.csv``).
    primary_only : bool
        Only the primary estimand of each outcome (else every matched-design estimate).
    alpha : float
        Shown in the axis label.

    Returns
    -------
    matplotlib.figure.Figure
        Power with error bars of ±1.96 Monte Carlo SE.
    """
    import matplotlib.pyplot as plt

    from evaluation import figures  # noqa: F401  (the report's seaborn theme)

    df = summary[summary["primary"]] if primary_only else summary[summary["design"] == "matched"]
    order = {o: i for i, o in enumerate(OUTCOME_LABELS)}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups = sorted(
        df.groupby(["outcome", "measure", "method"]), key=lambda g: (order.get(g[0][0], 99), g[0])
    )
    for (outcome, measure, method), d in groups:
        d = d.sort_values("n_hat")
        name = OUTCOME_LABELS.get(outcome, outcome)
        ax.errorbar(
            d["n_hat"],
            d["power"],
            yerr=1.96 * d["power_mcse"].fillna(0),
            marker="o",
            capsize=3,
            color=OUTCOME_COLOURS.get(outcome) if primary_only else None,
            label=f"{name} ({measure})" if primary_only else f"{name} ({measure}, {method})",
        )
    ax.set_xticks(sorted(df["n_hat"].unique()))
    ax.axhline(0.8, color="grey", lw=0.8, ls="--")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("HAT patients in the study (n_hat)")
    ax.set_ylabel(f"power (share with p < {alpha:g})")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig
