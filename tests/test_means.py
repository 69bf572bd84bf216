"""Specifications of analysis.outcomes.means: weighted mean and risk differences, risk ratio.

References: the weighted least-squares sandwich written out with matrices (and statsmodels'
cluster-robust WLS, whose default adds (n-1)/(n-k)); simulated data with a known effect in
the treated. R's values on real data are in test_library_lalonde.py and test_library_rossi.py.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.special import expit

from analysis._checks import ColumnError
from analysis.outcomes.means import mean_difference, risk_difference, risk_ratio
from analysis.sandwich import FewClustersWarning

ESTIMATORS = (mean_difference, risk_difference, risk_ratio)


def _sample(seed: int = 1, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    a = rng.binomial(1, expit(x - 0.5))
    return pd.DataFrame(
        {
            "unit": np.arange(n),
            "grp": rng.integers(0, 60, size=n),
            "arm": a,
            "y": 1.0 + 0.7 * a + x + rng.normal(size=n),
            "hit": rng.binomial(1, expit(-0.5 + 0.6 * a + 0.5 * x)),
            "w": rng.gamma(2.0, 0.5, size=n),
        }
    )


def _wls_sandwich(y, a, w, codes) -> tuple[float, float]:
    """Treatment coefficient of WLS y ~ 1 + a and its HC0 cluster sandwich times G/(G-1)."""
    X = np.column_stack([np.ones_like(y), a])
    bread = np.linalg.inv(X.T @ (w[:, None] * X))
    beta = bread @ X.T @ (w * y)
    scores = X * (w * (y - X @ beta))[:, None]
    totals = np.array([scores[codes == g].sum(axis=0) for g in np.unique(codes)])
    G = len(totals)
    cov = G / (G - 1) * bread @ totals.T @ totals @ bread
    return float(beta[1]), float(np.sqrt(cov[1, 1]))


# ----------------------------------------------------------------------------- references


@pytest.mark.parametrize("weights", [None, "w"])
@pytest.mark.parametrize("cluster", [None, "grp"])
def test_mean_difference_is_the_wls_coefficient_with_the_cluster_sandwich(weights, cluster):
    df = _sample()
    est = mean_difference(df, outcome="y", treatment="arm", weights=weights, cluster=cluster)
    w = df["w"].to_numpy() if weights else np.ones(len(df))
    codes = df[cluster].to_numpy() if cluster else np.arange(len(df))
    beta, se = _wls_sandwich(df["y"].to_numpy(), df["arm"].to_numpy(float), w, codes)
    assert est.estimate == pytest.approx(beta, rel=1e-12)
    assert est.se == pytest.approx(se, rel=1e-10)
    assert est.details["n_clusters"] == len(np.unique(codes))


def test_mean_difference_against_statsmodels_cluster_wls():
    """statsmodels' cluster WLS multiplies by G/(G-1) (n-1)/(n-k): ours by G/(G-1) only."""
    df = _sample(seed=3)
    est = mean_difference(df, outcome="y", treatment="arm", weights="w", cluster="grp")
    fit = sm.WLS(df["y"], sm.add_constant(df["arm"].astype(float)), weights=df["w"]).fit(
        cov_type="cluster", cov_kwds={"groups": df["grp"]}
    )
    n, k = len(df), 2
    assert est.estimate == pytest.approx(fit.params["arm"], rel=1e-12)
    assert est.se * math.sqrt((n - 1) / (n - k)) == pytest.approx(fit.bse["arm"], rel=1e-10)


def test_risk_ratio_is_the_log_link_fit_with_the_delta_method():
    df = _sample(seed=4)
    est = risk_ratio(df, outcome="hit", treatment="arm", weights="w", cluster="grp")
    p1 = np.average(df.hit[df.arm == 1], weights=df.w[df.arm == 1])
    p0 = np.average(df.hit[df.arm == 0], weights=df.w[df.arm == 0])
    assert est.estimate == pytest.approx(p1 / p0, rel=1e-12)
    # the log-link GLM with treatment only has the same estimate; its sandwich (statsmodels:
    # G/(G-1) (n-1)/(n-k)) equals the delta-method variance times (n-1)/(n-k)
    with warnings.catch_warnings():  # log link outside the binomial's domain; var_weights
        warnings.simplefilter("ignore")
        fit = sm.GLM(
            df["hit"],
            sm.add_constant(df["arm"].astype(float)),
            family=sm.families.Binomial(link=sm.families.links.Log()),
            var_weights=df["w"],
        ).fit(cov_type="cluster", cov_kwds={"groups": df["grp"]})
    n = len(df)
    assert math.log(est.estimate) == pytest.approx(fit.params["arm"], rel=1e-7)
    assert est.se * math.sqrt((n - 1) / (n - 2)) == pytest.approx(fit.bse["arm"], rel=1e-6)
    assert est.details["se_log"] == est.se
    assert est.ci_low < est.estimate < est.ci_high
    assert math.log(est.ci_high) - math.log(est.estimate) == pytest.approx(1.959963984540 * est.se)


def test_risk_difference_equals_mean_difference_of_a_binary_outcome():
    df = _sample(seed=5)
    rd = risk_difference(df, outcome="hit", treatment="arm", weights="w", cluster="grp")
    md = mean_difference(df, outcome="hit", treatment="arm", weights="w", cluster="grp")
    assert (rd.estimate, rd.se) == (md.estimate, md.se)
    assert rd.measure == "RD" and md.measure == "mean_diff"
    assert rd.n_events == int(df.hit.sum()) and md.n_events is None
    assert rd.details["per_group"]["treated"]["risk"] == pytest.approx(
        np.average(df.hit[df.arm == 1], weights=df.w[df.arm == 1])
    )


def test_result_fields():
    df = _sample()
    est = mean_difference(df, outcome="y", treatment="arm", alpha=0.1)
    assert est.outcome == "y" and est.method == "means" and not est.primary
    assert (est.n_treated, est.n_control) == (int(df.arm.sum()), int((1 - df.arm).sum()))
    z = 1.6448536269514722
    assert est.ci_high - est.estimate == pytest.approx(z * est.se)
    per = est.details["per_group"]
    assert per["treated"]["mean"] - per["control"]["mean"] == pytest.approx(est.estimate)
    assert per["treated"]["n"] == est.n_treated and not est.details["weighted"]
    assert est.to_dict()["measure"] == "mean_diff"


# ----------------------------------------------------------------------------- simulated truth


def _confounded(seed: int, n: int = 4000) -> tuple[pd.DataFrame, float, float]:
    """Treatment depends on x, which raises the outcome: the naive difference is biased.

    Returns the data (with the true ATT odds weights) and the true effects in the treated:
    the mean difference (constant, 2.0) and the risk difference of ``hit`` (the average
    over the treated of p1(x) - p0(x), computed from the known model).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    e = expit(-1.0 + 1.2 * x)
    a = rng.binomial(1, e)
    y = 1.0 + 2.0 * a + 3.0 * x + rng.normal(size=n)
    p0, p1 = expit(-1.0 + 0.8 * x), expit(-0.2 + 0.8 * x)
    hit = rng.binomial(1, np.where(a == 1, p1, p0))
    w = np.where(a == 1, 1.0, e / (1 - e))
    df = pd.DataFrame({"arm": a, "y": y, "hit": hit, "w": w})
    return df, 2.0, float(np.mean((p1 - p0)[a == 1]))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_simulation_recovers_the_effect_in_the_treated(seed):
    df, md_truth, rd_truth = _confounded(seed)
    md = mean_difference(df, outcome="y", treatment="arm", weights="w")
    naive = mean_difference(df, outcome="y", treatment="arm")
    assert abs(md.estimate - md_truth) < 4 * md.se
    assert abs(naive.estimate - md_truth) > 10 * naive.se  # confounding is strong
    rd = risk_difference(df, outcome="hit", treatment="arm", weights="w")
    assert abs(rd.estimate - rd_truth) < 4 * rd.se


def test_coverage_over_seeds():
    """95% intervals of the weighted mean difference cover the truth in most of 40 samples."""
    covered = 0
    for seed in range(40):
        df, truth, _ = _confounded(100 + seed, n=1500)
        est = mean_difference(df, outcome="y", treatment="arm", weights="w")
        covered += est.ci_low <= truth <= est.ci_high
    assert covered >= 33  # binomial(40, 0.95): P(X < 34) < 0.01


# ----------------------------------------------------------------------------- invariance


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_row_order_unit_weights_and_zero_weights(estimator):
    df = _sample(seed=6)
    outcome = "y" if estimator is mean_difference else "hit"
    kw = {"outcome": outcome, "treatment": "arm", "cluster": "grp"}
    base = estimator(df, weights="w", **kw)
    shuffled = estimator(df.sample(frac=1, random_state=2), weights="w", **kw)
    assert shuffled.estimate == pytest.approx(base.estimate, rel=1e-12)
    assert shuffled.se == pytest.approx(base.se, rel=1e-12)
    ones = estimator(df.assign(one=1.0), weights="one", **kw)
    none = estimator(df, **kw)
    assert (ones.estimate, ones.se) == pytest.approx((none.estimate, none.se), rel=1e-12)
    # rows with weight 0 are the same as rows left out (also from the count of clusters)
    extra = df.assign(w=0.0, grp=df["grp"] + 1000)
    padded = estimator(pd.concat([df, extra], ignore_index=True), weights="w", **kw)
    assert (padded.estimate, padded.se) == pytest.approx((base.estimate, base.se), rel=1e-12)
    assert padded.details["n_zero_weight"] == len(df)
    assert padded.n_treated == base.n_treated


def test_weights_rescaled_within_a_group_change_nothing():
    df = _sample(seed=7)
    base = mean_difference(df, outcome="y", treatment="arm", weights="w", cluster="grp")
    df2 = df.assign(w=np.where(df.arm == 0, 7.5 * df.w, df.w))
    other = mean_difference(df2, outcome="y", treatment="arm", weights="w", cluster="grp")
    assert (other.estimate, other.se) == pytest.approx((base.estimate, base.se), rel=1e-12)


def test_boolean_columns():
    df = _sample(seed=8)
    a = risk_difference(df, outcome="hit", treatment="arm")
    b = risk_difference(
        df.assign(hit=df.hit.astype(bool), arm=df.arm.astype(bool)), outcome="hit", treatment="arm"
    )
    assert (a.estimate, a.se) == (b.estimate, b.se)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outcome": "nope"}, "outcome column 'nope' is not in the data"),
        ({"treatment": "nope"}, "treatment column 'nope' is not in the data"),
        ({"weights": "nope"}, "weights column 'nope' is not in the data"),
        ({"cluster": "nope"}, "cluster column 'nope' is not in the data"),
    ],
)
def test_missing_column_names_argument_and_column(estimator, kwargs, message):
    df = _sample()
    args = {"outcome": "hit", "treatment": "arm", **kwargs}
    with pytest.raises(ColumnError) as err:
        estimator(df, **args)
    assert str(err.value) == message
    assert isinstance(err.value, KeyError)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_treatment_not_binary(estimator):
    df = _sample().assign(arm=lambda d: d.arm * 2)
    with pytest.raises(ValueError, match="treatment column 'arm' must hold only 0 and 1"):
        estimator(df, outcome="hit", treatment="arm")


@pytest.mark.parametrize("estimator", [risk_difference, risk_ratio])
def test_risk_outcome_not_binary(estimator):
    with pytest.raises(ValueError, match="outcome column 'y' must hold only 0 and 1"):
        estimator(_sample(), outcome="y", treatment="arm")


def test_other_input_errors():
    df = _sample()
    with pytest.raises(ValueError, match="outcome column 'y' has 1 missing"):
        mean_difference(df.assign(y=df.y.where(df.index != 3)), outcome="y", treatment="arm")
    with pytest.raises(ValueError, match="outcome column 'y' is not numeric"):
        mean_difference(df.assign(y="a"), outcome="y", treatment="arm")
    with pytest.raises(ValueError, match="weights column 'w' has negative values"):
        mean_difference(df.assign(w=-df.w), outcome="y", treatment="arm", weights="w")
    with pytest.raises(ValueError, match="cluster column 'grp' has missing values"):
        mean_difference(df.assign(grp=np.nan), outcome="y", treatment="arm", cluster="grp")
    with pytest.raises(ValueError, match="alpha must be in"):
        mean_difference(df, outcome="y", treatment="arm", alpha=1.5)
    with pytest.raises(TypeError):
        mean_difference(df, "y", "arm")  # column roles are keyword-only


# ----------------------------------------------------------------------------- not estimable


def _assert_not_estimable(est, reason: str):
    assert math.isnan(est.estimate) and math.isnan(est.ci_low) and math.isnan(est.p_value)
    assert est.details["note"].startswith("not estimable")
    assert reason in est.details["note"]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_empty_group(estimator):
    df = _sample()
    est = estimator(df.assign(w=np.where(df.arm == 0, 0.0, 1.0)), outcome="hit",
                    treatment="arm", weights="w")  # fmt: skip
    _assert_not_estimable(est, "no control row with positive weight")
    assert est.n_control == 0 and est.n_treated == int(df.arm.sum())


def test_one_cluster_and_few_clusters():
    df = _sample()
    one = mean_difference(df.assign(c=1), outcome="y", treatment="arm", cluster="c")
    _assert_not_estimable(one, "at least 2 clusters")
    with pytest.warns(FewClustersWarning):
        few = mean_difference(df.assign(c=df.grp % 5), outcome="y", treatment="arm", cluster="c")
    assert math.isfinite(few.se) and "only 5 clusters" in few.details["note"]


def test_no_warning_with_many_clusters():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = mean_difference(_sample(), outcome="y", treatment="arm", cluster="grp")
    assert "note" not in est.details


def test_risk_ratio_without_events_in_a_group():
    df = _sample()
    est = risk_ratio(df.assign(hit=df.hit * df.arm), outcome="hit", treatment="arm")
    _assert_not_estimable(est, "no row with hit = 1 in the control group")
    rd = risk_difference(df.assign(hit=df.hit * df.arm), outcome="hit", treatment="arm")
    assert math.isfinite(rd.estimate) and rd.se > 0  # the treated group still varies


def test_constant_outcome():
    est = risk_difference(_sample().assign(hit=0), outcome="hit", treatment="arm")
    _assert_not_estimable(est, "constant within each group")
