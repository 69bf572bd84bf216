"""Tests of analysis.outcomes.stacked: IPTW variances that account for the propensity model.

Reference values: ``tests/reference/iptw_stacked/`` holds simulated data (``make_data.py``),
the same stack of estimating equations written independently in R (``make_reference.R``:
R's own Cox score residuals, one numerical Jacobian of all the equations at once) and a
2,000-replicate nonparametric bootstrap that refits the propensity and outcome models
(``bootstrap.py``). The tests never run R.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from analysis.design.estimated_weights import att_weight_model, att_weight_model_from_propensity
from analysis.design.propensity import fit_propensity
from analysis.design.weighting import att_weights
from analysis.outcomes.cox import cox_hazard_ratio
from analysis.outcomes.coxph import CoxScore, fit_cox
from analysis.outcomes.negative_binomial import negative_binomial_irr
from analysis.outcomes.stacked import (
    cox_estimating_function,
    nb_estimating_function,
    nb_expected_bread,
    stacked_variance,
)
from tests.reference.iptw_stacked.make_data import (
    LOG_EFFECT,
    SLOPES_CONTROL,
    SLOPES_TREATED,
    outcomes,
    simulate,
)

HERE = Path(__file__).parent / "reference" / "iptw_stacked"
COVARIATES = ("x1", "x2", "x3")
R_REF = json.loads((HERE / "reference.json").read_text())
BOOT = json.loads((HERE / "bootstrap.json").read_text())
TRIMS = {"untrimmed": None, "trim95": 0.95}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(HERE / "data.csv")


def iptw(df: pd.DataFrame, trim: float | None = None) -> dict:
    """Propensity fit, weights, Cox and NB fits and their stacked variances."""
    ps = fit_propensity(df, treatment="treatment", covariates=COVARIATES)
    ws = att_weights(df, treatment="treatment", score=ps.score, trim=trim)
    d = df.assign(weight=ws.data["weight"].to_numpy())
    wm = att_weight_model_from_propensity(
        df, ps, treatment="treatment", covariates=COVARIATES, cap=ws.cap
    )
    common = {"treatment": "treatment", "weights": "weight", "cluster": "person_id"}
    cox = cox_hazard_ratio(d, duration="time", event="event", outcome="o", method="m", **common)
    nb = negative_binomial_irr(d, events="y", exposure="expo", outcome="o", method="m", **common)
    a = d["treatment"].to_numpy(float)
    ef_cox = cox_estimating_function(d["time"], d["event"], a[:, None])
    ef_nb = nb_estimating_function(
        d["y"], d["expo"], np.column_stack([np.ones(len(d)), a]), theta=nb.details["theta"]
    )
    beta_nb = np.array([v["coef"] for v in nb.details["coefficients"].values()])
    return {
        "ps": ps,
        "weights": ws,
        "model": wm,
        "cox": cox,
        "nb": nb,
        "ef_cox": ef_cox,
        "ef_nb": ef_nb,
        "beta_nb": beta_nb,
        "sv_cox": stacked_variance(ef_cox, np.array([math.log(cox.estimate)]), wm),
        "sv_nb": stacked_variance(ef_nb, beta_nb, wm),
    }


@pytest.fixture(scope="module", params=list(TRIMS))
def fitted(request, data) -> tuple[str, dict]:
    return request.param, iptw(data, TRIMS[request.param])


def test_weight_model_reproduces_att_weights(fitted) -> None:
    _, f = fitted
    np.testing.assert_allclose(f["model"].weights, f["weights"].data["weight"], rtol=1e-12)
    assert f["model"].names[-1] == "log_normalisation"


def test_logistic_influence_is_the_robust_covariance_of_the_logit_fit(data) -> None:
    ps = fit_propensity(data, treatment="treatment", covariates=COVARIATES)
    wm = att_weight_model_from_propensity(data, ps, treatment="treatment", covariates=COVARIATES)
    X = sm.add_constant(data[list(COVARIATES)].to_numpy())
    fit = sm.Logit(data["treatment"].to_numpy(), X).fit(disp=0, cov_type="HC0")
    p = X.shape[1]
    ifa = wm.influence[:, :p]
    np.testing.assert_allclose(ifa.T @ ifa, fit.cov_params(), rtol=1e-7)
    np.testing.assert_allclose(ifa.sum(axis=0), 0, atol=1e-8)  # the score is zero at the fit


def test_weight_jacobian_matches_finite_differences(fitted) -> None:
    """d weights / d (alpha, log c), with the trimming cap held fixed, by central differences."""
    name, f = fitted
    wm = f["model"]
    cap = f["weights"].cap
    a = f["weights"].data["treatment"].to_numpy(float)
    theta = wm.theta.copy()
    Xd = pd.read_csv(HERE / "data.csv")[list(COVARIATES)].to_numpy()
    Xd = np.column_stack([np.ones(len(Xd)), Xd])

    def weights(th: np.ndarray) -> np.ndarray:
        m = np.minimum(np.exp(Xd @ th[:-1]), cap)
        return np.where(a == 1, 1.0, math.exp(th[-1]) * m)

    np.testing.assert_allclose(weights(theta), wm.weights, rtol=1e-10)
    for k in range(theta.size):
        h = 1e-6
        up, dn = theta.copy(), theta.copy()
        up[k] += h
        dn[k] -= h
        numeric = (weights(up) - weights(dn)) / (2 * h)
        np.testing.assert_allclose(wm.jacobian[:, k], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_weights_known_variance_is_the_estimators_robust_sandwich(fitted) -> None:
    _, f = fitted
    assert f["sv_cox"].se_weights_known[0] == pytest.approx(f["cox"].se, rel=1e-6)
    # the NB estimator's bread is the expected information; the default is the observed one
    assert f["sv_nb"].se_weights_known[1] == pytest.approx(f["nb"].se, rel=0.01)
    d = f["weights"].data
    x = np.column_stack([np.ones(len(d)), d["treatment"]])
    bread = nb_expected_bread(
        pd.read_csv(HERE / "data.csv")["expo"], x, f["beta_nb"], d["weight"],
        theta=f["nb"].details["theta"],
    )  # fmt: skip
    expected = stacked_variance(f["ef_nb"], f["beta_nb"], f["model"], bread=bread)
    assert expected.se_weights_known[1] == pytest.approx(f["nb"].se, rel=1e-9)
    assert expected.se[1] == pytest.approx(f["sv_nb"].se[1], rel=0.01)


def test_numerical_bread_is_the_inverse_information(data) -> None:
    f = iptw(data)
    a = data["treatment"].to_numpy(float)
    fit = fit_cox(a[:, None], data["time"], data["event"], weights=f["model"].weights)
    beta = np.array([math.log(f["cox"].estimate)])
    numerical = stacked_variance(f["ef_cox"], beta, f["model"], derivatives="numerical")
    np.testing.assert_allclose(numerical.bread, fit.cov, rtol=1e-6)
    np.testing.assert_allclose(f["sv_cox"].bread, fit.cov, rtol=1e-10)  # the engine's, exact
    analytic = stacked_variance(f["ef_cox"], beta, f["model"], bread=fit.cov)
    np.testing.assert_allclose(analytic.cov, f["sv_cox"].cov, rtol=1e-10)
    np.testing.assert_allclose(numerical.cov, f["sv_cox"].cov, rtol=1e-7)


def test_chain_rule_jacobian_equals_perturbing_the_propensity_coefficients(data) -> None:
    """J from directional derivatives in the weights = J from refitting weights at alpha +- h."""
    f = iptw(data)
    wm = f["model"]
    beta = np.array([math.log(f["cox"].estimate)])
    Xd = np.column_stack([np.ones(len(data)), data[list(COVARIATES)].to_numpy()])
    a = data["treatment"].to_numpy(float)

    def total(th: np.ndarray) -> np.ndarray:
        w = np.where(a == 1, 1.0, math.exp(th[-1]) * np.exp(Xd @ th[:-1]))
        return f["ef_cox"](beta, w).sum(axis=0)

    for k in range(wm.theta.size):
        up, dn = wm.theta.copy(), wm.theta.copy()
        up[k] += 1e-5
        dn[k] -= 1e-5
        numeric = (total(up) - total(dn)) / 2e-5
        np.testing.assert_allclose(f["sv_cox"].jacobian[:, k], numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["cox", "nb"])
def test_matches_the_independent_R_implementation(fitted, model) -> None:
    name, f = fitted
    ref = R_REF[name]
    np.testing.assert_allclose(f["model"].theta[:-1], R_REF["alpha"], rtol=1e-7)
    assert f["model"].theta[-1] == pytest.approx(ref["log_normalisation"], rel=1e-7, abs=1e-10)
    est, sv, term = (f["cox"], f["sv_cox"], 0) if model == "cox" else (f["nb"], f["sv_nb"], 1)
    r = ref[model]
    assert math.log(est.estimate) == pytest.approx(r["log_hr" if model == "cox" else "log_irr"])
    # R's sandwich has no small-sample factor; the package's is G / (G - 1), G = persons
    g = len(f["weights"].data)
    factor = math.sqrt(g / (g - 1))
    assert sv.se[term] == pytest.approx(r["se_stacked"] * factor, rel=1e-5)
    assert sv.se_weights_known[term] == pytest.approx(r["se_weights_known"] * factor, rel=1e-5)
    # the data were made so that the two differ clearly
    assert sv.se[term] > 1.05 * sv.se_weights_known[term]


@pytest.mark.parametrize("model", ["cox", "nb"])
def test_agrees_with_the_bootstrap_where_the_weights_known_sandwich_does_not(data, model) -> None:
    f = iptw(data)
    boot = BOOT["untrimmed"]["sd_log_hr" if model == "cox" else "sd_log_irr"]
    mc = BOOT["mc_relative_se"]
    sv, term = (f["sv_cox"], 0) if model == "cox" else (f["sv_nb"], 1)
    assert abs(sv.se[term] / boot - 1) < 3 * mc
    assert sv.se_weights_known[term] / boot - 1 < -3 * mc


def test_trimmed_weights_agree_with_the_bootstrap(data) -> None:
    """Holding the cap fixed ignores the quantile's own variability: still within MC error."""
    f = iptw(data, 0.95)
    mc = BOOT["mc_relative_se"]
    assert abs(f["sv_cox"].se[0] / BOOT["trim95"]["sd_log_hr"] - 1) < 3 * mc
    assert abs(f["sv_nb"].se[1] / BOOT["trim95"]["sd_log_irr"] - 1) < 3 * mc


def test_persons_outside_the_outcome_model_still_carry_the_propensity_influence(data) -> None:
    f = iptw(data)
    wm = f["model"]
    rows = np.flatnonzero(data["x3"].to_numpy() > -0.5)  # a subset, as the retention cohort
    sub = data.iloc[rows]
    a = sub["treatment"].to_numpy(float)
    ef = cox_estimating_function(sub["time"], sub["event"], a[:, None])
    d = sub.assign(weight=wm.weights[rows])
    cox = cox_hazard_ratio(
        d, duration="time", event="event", treatment="treatment", weights="weight",
        cluster="person_id", outcome="o", method="m",
    )  # fmt: skip
    sv = stacked_variance(ef, np.array([math.log(cox.estimate)]), wm, rows=rows)
    assert sv.se_weights_known[0] == pytest.approx(cox.se, rel=1e-6)
    outside = np.setdiff1d(np.arange(len(data)), rows)
    assert np.abs(sv.influence[outside]).max() > 0
    # clustering by row index changes nothing when every cluster is one row
    same = stacked_variance(
        ef, np.array([math.log(cox.estimate)]), wm, rows=rows, cluster=np.arange(len(data))
    )
    np.testing.assert_allclose(same.cov, sv.cov, rtol=1e-12)


def test_separated_controls_keep_weight_zero_and_no_influence() -> None:
    rng = np.random.default_rng(4)
    n = 600
    x = rng.normal(size=n)
    region = rng.integers(0, 3, n)
    a = (rng.uniform(size=n) < 1 / (1 + np.exp(-(-1 + x)))).astype(float)
    a[region == 2] = 0  # no treated person in region 2
    df = pd.DataFrame({"person_id": np.arange(n), "treatment": a, "x": x})
    df["region"] = np.array(["a", "b", "c"])[region]
    ps = fit_propensity(df, treatment="treatment", covariates=("x", "region"))
    wm = att_weight_model_from_propensity(df, ps, treatment="treatment", covariates=("x", "region"))
    sep = region == 2
    assert (wm.weights[sep] == 0).all()
    assert (wm.jacobian[sep] == 0).all()
    assert (wm.influence[sep, :-1] == 0).all()
    ws = att_weights(df, treatment="treatment", score=ps.score)
    np.testing.assert_allclose(wm.weights, ws.data["weight"], rtol=1e-12)


def test_invalid_input_is_refused() -> None:
    X = np.ones((4, 1))
    with pytest.raises(ValueError, match="shape"):
        att_weight_model(X, np.array([1, 0, 0]), np.array([0.0]))
    with pytest.raises(ValueError, match="no treated"):
        att_weight_model(X, np.zeros(4), np.array([0.0]))
    wm = att_weight_model(
        np.column_stack([np.ones(4), [0.0, 1.0, 2.0, 3.0]]), np.array([1, 0, 1, 0]), np.zeros(2)
    )
    with pytest.raises(ValueError, match="shape"):
        stacked_variance(lambda b, w: np.ones((len(w), 2)), np.zeros(1), wm)


# ----------------------------------------------------------------------------- coverage


def _truth(rng: np.random.Generator, n: int = 2_000_000) -> tuple[float, float]:
    """ATT log HR (Cox on both potential outcomes of the treated) and log IRR."""
    pop = simulate(n, rng)
    treated = pop[pop["treatment"] == 1]
    x = treated[list(COVARIATES)].to_numpy()
    m = len(treated)
    both = {
        arm: outcomes(x, np.full(m, arm), np.random.default_rng(rng.integers(2**32)))
        for arm in (0, 1)
    }
    time = np.r_[both[1]["time"], both[0]["time"]]
    event = np.r_[both[1]["event"], both[0]["event"]]
    fit = fit_cox(np.r_[np.ones(m), np.zeros(m)][:, None], time, event)
    rate = {
        arm: np.exp(LOG_EFFECT * arm + x @ np.asarray(s)).mean()
        for arm, s in ((1, SLOPES_TREATED), (0, SLOPES_CONTROL))
    }
    return float(fit.params[0]), float(np.log(rate[1] / rate[0]))


@pytest.mark.slow
def test_coverage_of_the_stacked_interval() -> None:
    """Stacked 95% intervals cover the ATT log HR and log IRR; weights-known ones under-cover.

    Measured (1,000 replicates of n = 2,000, about 2 minutes): Cox 95.5% stacked vs 91.6%
    weights known; NB 94.5% vs 90.1%; MC SE 0.7 percentage points at 95%.
    """
    rng = np.random.default_rng(20221103)
    log_hr, log_irr = _truth(rng)
    z = stats.norm.ppf(0.975)
    reps = 1000
    hits = np.zeros((reps, 4), dtype=bool)
    for r in range(reps):
        f = iptw(simulate(2000, rng))
        for j, (est, sv, term, truth) in enumerate(
            ((f["cox"], f["sv_cox"], 0, log_hr), (f["nb"], f["sv_nb"], 1, log_irr))
        ):
            err = abs(math.log(est.estimate) - truth)
            hits[r, 2 * j] = err < z * sv.se[term]
            hits[r, 2 * j + 1] = err < z * sv.se_weights_known[term]
    coverage = hits.mean(axis=0)
    mc = math.sqrt(0.95 * 0.05 / reps)
    print("coverage cox stacked, cox known, nb stacked, nb known:", coverage, "MC SE", mc)
    assert abs(coverage[0] - 0.95) < 3 * mc
    assert abs(coverage[2] - 0.95) < 3 * mc
    assert coverage[1] < 0.95 - 3 * mc
    assert coverage[3] < 0.95 - 3 * mc


# ----------------------------------------------------------------------------- in the study


@pytest.fixture(scope="module")
def ci_study(tmp_path_factory):
    from tests.study_helpers import study_on_scenario

    return study_on_scenario(tmp_path_factory.mktemp("ci"), "ci", seed=11)[0]


def test_study_iptw_estimates_use_the_stacked_variance(ci_study) -> None:
    results = ci_study.results
    assert "stacked" in results["design"]["designs"]["iptw"]["variance"]
    iptw_estimates = [e for e in results["estimates"] if e["method"].endswith("_iptw")]
    assert len(iptw_estimates) == 4
    z = stats.norm.ppf(0.975)
    for e in iptw_estimates:
        if e["estimate"] is None:
            continue
        d = e["details"]
        assert d["se_log"] == e["se"]
        assert d["se_log_weights_known"] > 0
        assert d["se_log_weights_known"] != pytest.approx(e["se"], rel=1e-6)
        assert e["ci_high"] == pytest.approx(e["estimate"] * math.exp(z * e["se"]))
    for e in results["estimates"]:
        if not e["method"].endswith("_iptw"):
            assert "se_log_weights_known" not in e["details"]


def test_fast_cox_total_is_the_sum_of_the_contributions(data) -> None:
    rng = np.random.default_rng(1)
    w = rng.uniform(0.2, 3, len(data))
    x = np.column_stack([data["treatment"], data["x1"]])
    ef = cox_estimating_function(data["time"], data["event"], x)
    for beta in ([0.0, 0.0], [0.5, -0.3], [1.3, 0.8]):
        b = np.asarray(beta)
        np.testing.assert_allclose(ef.total(b, w), ef(b, w).sum(axis=0), rtol=1e-10, atol=1e-9)


# ----------------------------------------------------------------------------- exact derivatives


@pytest.mark.parametrize(
    "case", ["efron", "efron_two_terms", "breslow", "strata", "entry", "subset", "clusters"]
)
def test_exact_derivatives_equal_the_numerical_ones(case) -> None:
    """J from the score residuals and the engine's information = central differences."""
    rng = np.random.default_rng(7)
    n = 3000
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 3))])
    a = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ [-1.2, 0.6, -0.4, 0.3])))).astype(float)
    fit_ps = sm.Logit(a, X).fit(disp=0, tol=1e-12)
    odds = np.exp(X @ fit_ps.params)
    wm = att_weight_model(X, a, fit_ps.params, cap=float(np.quantile(odds[a == 0], 0.95)))
    t = np.ceil(rng.exponential(np.exp(-(0.4 * a + 0.3 * X[:, 1]))) * 20) / 20  # heavy ties
    e = (rng.uniform(size=n) < 0.7).astype(float)
    rows = np.flatnonzero(X[:, 2] > -0.5) if case == "subset" else np.arange(n)
    x = np.column_stack([a, X[:, 1]]) if case == "efron_two_terms" else a[:, None]
    kw: dict = {
        "breslow": {"ties": "breslow"},
        "strata": {"strata": (X[:, 3] > 0).astype(int)},
        "entry": {"entry": t * rng.uniform(0, 0.5, n)},
    }.get(case, {})
    kw = {k: (v[rows] if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    fit = fit_cox(x[rows], t[rows], e[rows], weights=wm.weights[rows], **kw)
    ef = CoxScore(x[rows], t[rows], e[rows], **kw)
    cluster = rng.integers(0, n // 3, n) if case == "clusters" else None
    args = (ef, fit.params, wm)
    exact = stacked_variance(*args, rows=rows, cluster=cluster)
    numeric = stacked_variance(*args, rows=rows, cluster=cluster, derivatives="numerical")
    np.testing.assert_allclose(exact.jacobian, numeric.jacobian, rtol=1e-7, atol=1e-7 * n)
    np.testing.assert_allclose(exact.bread, numeric.bread, rtol=1e-7)
    np.testing.assert_allclose(exact.bread, fit.cov, rtol=1e-12)  # the fit's own information
    np.testing.assert_allclose(exact.se, numeric.se, rtol=1e-7)
    np.testing.assert_allclose(exact.se_weights_known, numeric.se_weights_known, rtol=1e-7)


def test_exact_nb_weight_derivative_equals_the_numerical_one(fitted) -> None:
    _, f = fitted
    exact = stacked_variance(f["ef_nb"], f["beta_nb"], f["model"])
    numeric = stacked_variance(f["ef_nb"], f["beta_nb"], f["model"], derivatives="numerical")
    np.testing.assert_allclose(exact.jacobian, numeric.jacobian, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(exact.bread, numeric.bread)  # numerical in both
    np.testing.assert_allclose(exact.se, numeric.se, rtol=1e-7)
    with pytest.raises(ValueError, match="derivatives"):
        stacked_variance(f["ef_nb"], f["beta_nb"], f["model"], derivatives="exact")  # type: ignore[arg-type]
