"""Tests of the count estimators (analysis.outcomes.rates, .negative_binomial,
.before_after): R reference values (MASS::glm.nb, glm poisson with a clustered sandwich), an
independent Python fit (statsmodels' discrete NegativeBinomial), exact Poisson limits,
simulated truth, invariances and edge cases.

R values: ``tests/reference/make_reference.R`` on ``tests/reference/reference_data.csv``
(see ``tests/test_survival.py``), frozen in ``r_values.json``; robust variances there carry
no small-sample factor, so the tests multiply them by ``G / (G - 1)`` (G = matched sets, or
persons without a cluster), the package's convention (``analysis.sandwich``). The same
variances straight from ``sandwich::vcovCL(type = "HC0", cadjust = TRUE)``, which applies that
factor itself, are frozen in ``r_values_small_sample.json``
(``tests/reference/make_reference_small_sample.R``). glm.nb was run with
``glm.control(epsilon = 1e-13)``; observed discrepancies are below 1e-10 relative for
coefficients, SEs (model-based, robust and clustered) and theta. Tolerances: 1e-6 for
coefficients and theta, 1e-5 for SEs (margin for platform differences and stopping
points); the SE of theta 1e-5 (R evaluates it at the last-but-one means of its
alternating fit: observed difference 2e-6).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.outcomes.before_after import BeforeAfter, before_after_ratio
from analysis.outcomes.negative_binomial import negative_binomial_irr
from analysis.outcomes.rates import PoissonRate, crude_rates, poisson_rate, rate_ratio

REF = Path(__file__).parent / "reference"
R = json.loads((REF / "r_values.json").read_text())
R2 = json.loads((REF / "r_values_small_sample.json").read_text())
N_SETS = R2["meta"]["n_sets"]
N_ROWS = R2["meta"]["n"]


def _factor(kw: dict) -> float:
    """sqrt(G / (G - 1)) for the robust variance of a call with these keywords."""
    if not kw:
        return 1.0
    g = N_SETS if "cluster" in kw else N_ROWS
    return math.sqrt(g / (g - 1))


COEF_RTOL = 1e-6
SE_RTOL = 1e-5
TERMS = {"intercept": "(Intercept)", "treatment": "treatment", "age": "age"}
ARMS = ("HAT", "OST")


@pytest.fixture(scope="module")
def ref() -> pd.DataFrame:
    return pd.read_csv(REF / "reference_data.csv")


def _nb(df, **kw):
    return negative_binomial_irr(
        df, events="count", exposure="exposure", treatment="treatment", covariates=["age"],
        outcome="crime", method="nb_test", arm_labels=ARMS, **kw,
    )  # fmt: skip


# ----------------------------------------------------------------------------- R: glm.nb


@pytest.mark.parametrize(
    ("key", "kw", "se_key"),
    [
        ("nb_unweighted", {}, "se"),
        ("nb_unweighted", {"cluster": "match_set"}, "se_cluster"),
        ("nb_weighted", {"weights": "weight"}, "se_robust"),
        ("nb_weighted", {"weights": "weight", "cluster": "match_set"}, "se_cluster"),
    ],
)
def test_negative_binomial_matches_r(ref, key, kw, se_key):
    """R: glm.nb(count ~ treatment + age + offset(log(exposure)), [weights = weight]);
    se = sqrt(diag(vcov(fit))); se_cluster / se_robust = bread %*% meat %*% bread with
    bread = vcov(fit) and meat from rowsum(working weights x working residuals x X,
    match_set / row), times the small-sample factor G / (G - 1) applied here."""
    est = _nb(ref, **kw)
    r = R[key]
    for ours, theirs in TERMS.items():
        got = est.details["coefficients"][ours]
        assert got["coef"] == pytest.approx(r["coef"][theirs], rel=COEF_RTOL)
        assert got["se"] == pytest.approx(r[se_key][theirs] * _factor(kw), rel=SE_RTOL)
    assert est.details["theta"] == pytest.approx(r["theta"], rel=COEF_RTOL)
    assert est.details["dispersion"] == pytest.approx(1 / r["theta"], rel=COEF_RTOL)
    assert est.details["theta_se"] == pytest.approx(r["se_theta"], rel=1e-5)
    assert 2 * est.details["loglik"] == pytest.approx(r["twologlik"], rel=1e-9)
    assert est.details["se_log_model"] == pytest.approx(r["se"]["treatment"], rel=SE_RTOL)
    assert est.measure == "IRR" and est.outcome == "crime"
    assert est.details["robust"] is bool(kw)


@pytest.mark.parametrize(
    ("key", "kw"),
    [
        ("weighted_cluster", {"weights": "weight", "cluster": "match_set"}),
        ("weighted_person", {"weights": "weight"}),
        ("unweighted_cluster", {"cluster": "match_set"}),
    ],
)
def test_negative_binomial_matches_vcovcl(ref, key, kw):
    """R: sqrt(diag(sandwich::vcovCL(glm.nb(...), cluster = ~match_set | ~id, type = "HC0",
    cadjust = TRUE))), which applies the G / (G - 1) factor itself."""
    est = _nb(ref, **kw)
    for ours, theirs in TERMS.items():
        got = est.details["coefficients"][ours]["se"]
        assert got == pytest.approx(R2["nb"][key][theirs], rel=SE_RTOL)


def test_negative_binomial_matches_statsmodels(ref):
    """Independent implementation: statsmodels' discrete NegativeBinomial (NB2, which
    estimates alpha, unlike the GLM family) gives the same maximum-likelihood estimates."""
    import statsmodels.api as sm

    x = sm.add_constant(ref[["treatment", "age"]].astype(float))
    fit = sm.NegativeBinomial(
        ref["count"], x, loglike_method="nb2", offset=np.log(ref["exposure"])
    ).fit(disp=0, maxiter=100, method="newton", tol=1e-12)
    assert fit.mle_retvals["converged"]
    est = _nb(ref)
    assert est.details["coefficients"]["treatment"]["coef"] == pytest.approx(
        fit.params["treatment"], rel=COEF_RTOL
    )
    assert est.details["dispersion"] == pytest.approx(fit.params["alpha"], rel=COEF_RTOL)


# ----------------------------------------------------------------------------- R: before/after


@pytest.mark.parametrize(
    ("key", "kw"),
    [
        ("before_after_person", {}),
        ("before_after_weighted_match_set", {"weights": "weight", "cluster": "match_set"}),
    ],
)
def test_before_after_matches_r(ref, key, kw):
    """R: glm(y ~ after * treatment + offset(log(E)), family = poisson, [weights]) on the
    stacked person-periods, clustered sandwich by person (id) or matched set; the SEs also
    equal sandwich::vcovCL(..., type = "HC0", cadjust = TRUE) (r_values_small_sample.json),
    i.e. R's factor-free sandwich times G / (G - 1)."""
    res = before_after_ratio(
        ref, events_before="count_before", exposure_before="exposure_before",
        events_after="count_after", exposure_after="exposure", treatment="treatment",
        outcome="crime", method="poisson_test", arm_labels=ARMS, **kw,
    )  # fmt: skip
    assert isinstance(res, BeforeAfter)
    per_group, ratio = res
    hat, ost = per_group
    r = R[key]
    assert hat.details["group"] == "HAT" and ost.details["group"] == "OST"
    g = N_SETS if kw else N_ROWS  # clusters: matched sets, or persons
    factor = math.sqrt(g / (g - 1))
    for est, name in ((hat, "rr_hat"), (ost, "rr_ost"), (ratio, "ratio")):
        assert math.log(est.estimate) == pytest.approx(r[f"log_{name}"], rel=COEF_RTOL)
        assert est.se == pytest.approx(r[f"se_log_{name}"] * factor, rel=SE_RTOL)
        assert est.se == pytest.approx(R2[key][f"se_log_{name}"], rel=SE_RTOL)
    assert hat.measure == "rate_ratio_after_vs_before"
    assert ratio.measure == "ratio_of_rate_ratios"
    assert ratio.estimate == pytest.approx(hat.estimate / ost.estimate, rel=1e-12)


# ----------------------------------------------------------------------------- exact rates


def test_poisson_rate_exact_limits():
    """Garwood limits: 10 events -> (4.7954, 18.3904); 0 events -> (0, 3.6889)
    (e.g. Ulm 1990, tables of exact Poisson limits)."""
    r = poisson_rate(10, 1.0)
    assert isinstance(r, PoissonRate)
    assert r.ci_low == pytest.approx(4.7954, abs=1e-4)
    assert r.ci_high == pytest.approx(18.3904, abs=1e-4)
    z = poisson_rate(0, 2.0)
    assert z.ci_low == 0 and z.ci_high == pytest.approx(3.6889 / 2, abs=1e-4)
    with pytest.raises(ValueError):
        poisson_rate(1.5, 1.0)
    with pytest.raises(ValueError):
        poisson_rate(1, 0.0)
    json.dumps(r.to_dict())


def test_crude_rates(ref):
    rates = crude_rates(ref, events="event", exposure="exposure", group="treatment", per=1000)
    assert list(rates["group"]) == [0, 1]
    g1 = ref[ref["treatment"] == 1]
    row = rates[rates["group"] == 1].iloc[0]
    assert row["rate"] == pytest.approx(1000 * g1["event"].sum() / g1["exposure"].sum())
    exact = poisson_rate(int(g1["event"].sum()), float(g1["exposure"].sum()))
    assert row["ci_low"] == pytest.approx(1000 * exact.ci_low)
    assert row["ci_high"] == pytest.approx(1000 * exact.ci_high)
    # unit weights: the Fay-Feuer gamma interval reduces to Garwood's
    unit = crude_rates(
        ref.assign(w=1.0), events="event", exposure="exposure", group="treatment",
        per=1000, weights="w",
    )  # fmt: skip
    for col in ("rate", "ci_low", "ci_high"):
        np.testing.assert_allclose(unit[col], rates[col], rtol=1e-10)
    weighted = crude_rates(
        ref, events="count", exposure="exposure", group="treatment", per=1, weights="weight"
    )
    assert (weighted["ci_low"] < weighted["rate"]).all()
    assert (weighted["rate"] < weighted["ci_high"]).all()


# ----------------------------------------------------------------------------- simulated truth

IRR_TRUE = 0.55
THETA_TRUE = 1.5


def _counts(seed: int, n: int = 4000) -> pd.DataFrame:
    """Gamma-Poisson (NB2) counts with a known IRR, randomised treatment, exposure 0.2-3 y."""
    rng = np.random.default_rng(seed)
    treat = rng.binomial(1, 0.3, n)
    expo = rng.uniform(0.2, 3.0, n)
    base = rng.binomial(1, 0.5, n)
    mu = expo * 1.3 * np.exp(np.log(IRR_TRUE) * treat + 0.4 * base)
    y = rng.poisson(mu * rng.gamma(THETA_TRUE, 1 / THETA_TRUE, n))
    return pd.DataFrame(
        {"y": y, "expo": expo, "treatment": treat, "base": base, "w": rng.uniform(0.3, 1.5, n),
         "set": np.arange(n) // 5}
    )  # fmt: skip


@pytest.mark.parametrize(("seed", "weighted"), [(41, False), (42, False), (43, True)])
def test_truth_negative_binomial(seed, weighted):
    df = _counts(seed)
    kw = {"weights": "w", "cluster": "set"} if weighted else {}
    est = negative_binomial_irr(
        df, events="y", exposure="expo", treatment="treatment", covariates=["base"],
        outcome="crime", method="nb", **kw,
    )  # fmt: skip
    assert abs(math.log(est.estimate) - math.log(IRR_TRUE)) < 4 * est.se
    alpha_se = est.details["theta_se"] / est.details["theta"] ** 2
    if not weighted:  # model-based SE of theta is only valid unweighted
        assert abs(est.details["dispersion"] - 1 / THETA_TRUE) < 4 * alpha_se
    assert est.details["converged"]


def test_truth_before_after():
    """Person frailty shared by both periods; after/before rate ratio 0.8 in OST and
    0.8 x 0.5 in HAT, so the ratio of rate ratios is 0.5."""
    rng = np.random.default_rng(51)
    n = 4000
    treat = rng.binomial(1, 0.3, n)
    frail = rng.gamma(2.0, 0.5, n)
    eb = np.full(n, 2.0)
    ea = rng.uniform(0.3, 3.0, n)
    df = pd.DataFrame(
        {
            "yb": rng.poisson(eb * 1.5 * frail),
            "eb": eb,
            "ya": rng.poisson(ea * 1.5 * frail * 0.8 * np.where(treat == 1, 0.5, 1.0)),
            "ea": ea,
            "treatment": treat,
        }
    )
    (hat, ost), ratio = before_after_ratio(
        df, events_before="yb", exposure_before="eb", events_after="ya", exposure_after="ea",
        treatment="treatment", outcome="crime", method="poisson",
    )  # fmt: skip
    assert abs(math.log(ratio.estimate) - math.log(0.5)) < 4 * ratio.se
    assert abs(math.log(ost.estimate) - math.log(0.8)) < 4 * ost.se
    assert abs(math.log(hat.estimate) - math.log(0.4)) < 4 * hat.se


# ----------------------------------------------------------------------------- invariances


def test_permuted_rows_and_unit_weights(ref):
    perm = ref.sample(frac=1, random_state=7).reset_index(drop=True)
    a, b = (
        _nb(ref, weights="weight", cluster="match_set"),
        _nb(perm, weights="weight", cluster="match_set"),
    )
    assert a.estimate == pytest.approx(b.estimate, rel=1e-9)
    assert a.se == pytest.approx(b.se, rel=1e-8)
    # unit weights: same fit; the variance becomes robust (= unweighted, person clusters)
    unit = _nb(ref.assign(weight=1.0), weights="weight")
    plain = _nb(ref)
    robust = _nb(ref.assign(person=np.arange(len(ref))), cluster="person")
    assert unit.estimate == pytest.approx(plain.estimate, rel=1e-10)
    assert unit.details["theta"] == pytest.approx(plain.details["theta"], rel=1e-8)
    assert unit.se == pytest.approx(robust.se, rel=1e-10)
    kw = dict(events_before="count_before", exposure_before="exposure_before",
              events_after="count_after", exposure_after="exposure", treatment="treatment",
              outcome="crime", method="m")  # fmt: skip
    x = before_after_ratio(ref, **kw).ratio
    y = before_after_ratio(perm, **kw).ratio
    z = before_after_ratio(ref.assign(w=1.0), weights="w", **kw).ratio
    for other in (y, z):
        assert x.estimate == pytest.approx(other.estimate, rel=1e-12)
        assert x.se == pytest.approx(other.se, rel=1e-12)


# ----------------------------------------------------------------------------- edge cases


def test_zero_exposure_rows_are_dropped_and_counted(ref):
    df = ref.copy()
    df.loc[:4, "exposure"] = 0.0
    est = _nb(df, weights="weight", cluster="match_set")
    assert est.details["n_dropped_zero_exposure"] == 5
    assert est.details["events_dropped_zero_exposure"] == int(ref.loc[:4, "count"].sum())
    same = _nb(ref.iloc[5:], weights="weight", cluster="match_set")
    assert est.estimate == pytest.approx(same.estimate, rel=1e-10)
    assert est.se == pytest.approx(same.se, rel=1e-10)
    assert est.n_treated + est.n_control == len(ref) - 5


def test_poisson_data_reach_the_boundary():
    rng = np.random.default_rng(61)
    n = 3000
    treat = rng.binomial(1, 0.5, n)
    expo = rng.uniform(0.5, 2, n)
    df = pd.DataFrame({"y": rng.poisson(expo * np.exp(-0.5 * treat)), "e": expo, "t": treat})
    est = negative_binomial_irr(
        df, events="y", exposure="e", treatment="t", outcome="crime", method="nb"
    )
    assert est.details["dispersion"] < 0.05
    import statsmodels.api as sm

    pois = sm.GLM(df["y"], sm.add_constant(df[["t"]].astype(float)), family=sm.families.Poisson(),
                  offset=np.log(df["e"])).fit()  # fmt: skip
    assert math.log(est.estimate) == pytest.approx(pois.params["t"], abs=2e-3)


def _before_after(df, **kw):
    return before_after_ratio(
        df, events_before="count_before", exposure_before="exposure_before",
        events_after="count_after", exposure_after="exposure", treatment="treatment",
        outcome="crime", method="m", **kw,
    )  # fmt: skip


def test_one_cluster_is_not_estimable(ref):
    """One cluster: the score totals are exactly zero (the scores sum to zero at the
    estimate), so the robust SE would be 0 and p = 0. Reported as not estimable instead."""
    one = ref.assign(one=1)
    est = _nb(one, weights="weight", cluster="one")
    assert math.isnan(est.estimate) and math.isnan(est.se) and math.isnan(est.p_value)
    assert "at least 2 clusters" in est.details["note"]
    (hat, ost), ratio = _before_after(one, weights="weight", cluster="one")
    for e in (hat, ost, ratio):
        assert math.isnan(e.estimate) and "at least 2 clusters" in e.details["note"]
    json.dumps(est.to_dict())


def test_few_clusters_warn_and_note(ref):
    from analysis.sandwich import FewClustersWarning

    few = ref[ref["match_set"] <= 12]
    with pytest.warns(FewClustersWarning, match="only 12 clusters"):
        est = _nb(few, weights="weight", cluster="match_set")
    assert math.isfinite(est.estimate) and est.se > 0
    assert "only 12 clusters" in est.details["note"]
    with pytest.warns(FewClustersWarning, match="only 12 clusters"):
        ratio = _before_after(few, weights="weight", cluster="match_set").ratio
    assert "only 12 clusters" in ratio.details["note"]
    # 140 matched sets: no warning, no note
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FewClustersWarning)
        assert "note" not in _nb(ref, weights="weight", cluster="match_set").details


def test_two_clusters_use_the_small_sample_factor(ref):
    """Hand-derived: with G = 2 the meat is doubled (G / (G - 1) = 2), so the SE is
    sqrt(2) times the factor-free sandwich built here from the score totals."""
    from analysis.sandwich import FewClustersWarning

    two = ref.assign(half=(ref["match_set"] > 70).astype(int))
    with pytest.warns(FewClustersWarning, match="only 2 clusters"):
        est = _nb(two, cluster="half")
    per_set = _nb(ref, cluster="match_set")
    # rebuild the factor-free meat from the fitted means
    b = [per_set.details["coefficients"][k]["coef"] for k in ("intercept", "treatment", "age")]
    x = np.column_stack([np.ones(len(ref)), ref["treatment"], ref["age"]])
    mu = ref["exposure"].to_numpy() * np.exp(x @ b)
    theta = per_set.details["theta"]
    u = x * ((ref["count"].to_numpy() - mu) / (1 + mu / theta))[:, None]
    bread = np.linalg.inv((x.T * (mu / (1 + mu / theta))) @ x)
    totals = np.vstack([u[two["half"] == h].sum(axis=0) for h in (0, 1)])
    v = bread @ totals.T @ totals @ bread
    assert est.se == pytest.approx(math.sqrt(2 * v[1, 1]), rel=1e-6)


def test_monotone_likelihood_is_not_estimable(ref):
    """All events at one value of a covariate, the other rows on one side: its coefficient
    runs off to infinity (the Poisson/NB likelihood has no maximum)."""
    z = (ref["count"] == 0) & (ref.index % 3 == 0)  # only rows without events have z = 1
    est = negative_binomial_irr(
        ref.assign(z=z.astype(int)), events="count", exposure="exposure", treatment="treatment",
        covariates=["z"], outcome="crime", method="m",
    )  # fmt: skip
    assert math.isnan(est.estimate)
    assert est.details["note"].startswith("IRR not estimable: monotone likelihood")
    assert "z = 0" in est.details["note"] and "-infinity" in est.details["note"]
    # one row with an event at z = 1 makes it finite again
    z2 = z.copy()
    z2[ref.index[ref["count"] > 0][0]] = True
    fine = negative_binomial_irr(
        ref.assign(z=z2.astype(int)), events="count", exposure="exposure", treatment="treatment",
        covariates=["z"], outcome="crime", method="m",
    )  # fmt: skip
    assert math.isfinite(fine.estimate) and "note" not in fine.details


def test_no_events_in_a_group_and_bad_input(ref):
    none = ref.assign(count=np.where(ref["treatment"] == 1, 0, ref["count"]))
    est = _nb(none)
    assert math.isnan(est.estimate) and "no events in the HAT group" in est.details["note"]
    assert "IRR tends to 0" in est.details["note"]
    none_ost = ref.assign(count=np.where(ref["treatment"] == 0, 0, ref["count"]))
    assert "IRR tends to infinity" in _nb(none_ost).details["note"]
    json.dumps(est.to_dict())
    with pytest.raises(ValueError, match="negative"):
        _nb(ref.assign(exposure=-ref["exposure"]))
    with pytest.raises(ValueError, match="integers"):
        _nb(ref.assign(count=ref["count"] + 0.5))
    with pytest.raises(ValueError, match="missing"):
        _nb(ref.assign(age=ref["age"].where(ref.index > 3)))


def test_speed_at_scale():
    """50,000 rows (the matched sample at scale) fit quickly."""
    import time

    df = pd.concat([_counts(s, n=10000) for s in range(5)], ignore_index=True)
    df["set"] = np.arange(len(df)) // 5
    start = time.perf_counter()
    negative_binomial_irr(
        df, events="y", exposure="expo", treatment="treatment", covariates=["base"],
        weights="w", cluster="set", outcome="crime", method="nb",
    )  # fmt: skip
    assert time.perf_counter() - start < 10


# ----------------------------------------------------------------------------- rate ratio
R_RATE = json.loads((REF / "r_values_rate_ratio.json").read_text())


@pytest.mark.parametrize(
    ("key", "kw"),
    [
        ("weighted_cluster", {"weights": "weight", "cluster": "match_set"}),
        ("weighted_person", {"weights": "weight"}),
        ("unweighted_person", {}),
    ],
)
def test_rate_ratio_matches_r_poisson_with_vcovcl(ref, key, kw):
    """R: glm(count ~ treatment + offset(log(exposure)), poisson, weights = weight) with
    sandwich::vcovCL(type = "HC0", cadjust = TRUE) clustered on match_set or id
    (tests/reference/make_reference_rate_ratio.R)."""
    est = rate_ratio(ref, events="count", exposure="exposure", treatment="treatment",
                     outcome="crime", method="rate", **kw)  # fmt: skip
    r = R_RATE[key]
    # R's glm stops at its deviance tolerance (1e-8); the ratio here is exact
    assert math.log(est.estimate) == pytest.approx(r["log_irr"], rel=1e-7)
    assert est.se == pytest.approx(r["se"], rel=1e-6)


def test_rate_ratio_is_the_ratio_of_weighted_totals_and_refuses_empty_arms(ref):
    d = ref[ref["exposure"] > 0]
    est = rate_ratio(ref, events="count", exposure="exposure", treatment="treatment",
                     weights="weight", outcome="crime", method="rate")  # fmt: skip
    w, y, t = d["weight"], d["count"], d["exposure"]
    hat, ost = d["treatment"] == 1, d["treatment"] == 0
    expected = ((w * y)[hat].sum() / (w * t)[hat].sum()) / ((w * y)[ost].sum() / (w * t)[ost].sum())
    assert est.estimate == pytest.approx(expected, rel=1e-12)
    none = ref.assign(count=np.where(ref["treatment"] == 1, 0, ref["count"]))
    empty = rate_ratio(none, events="count", exposure="exposure", treatment="treatment",
                       outcome="crime", method="rate", arm_labels=ARMS)  # fmt: skip
    assert math.isnan(empty.estimate) and "no events in the HAT group" in empty.details["note"]
    one = rate_ratio(ref.assign(one=1), events="count", exposure="exposure",
                     treatment="treatment", cluster="one", outcome="crime",
                     method="rate")  # fmt: skip
    assert math.isnan(one.estimate) and "at least 2 clusters" in one.details["note"]


# ----------------------------------------------------------------------------- generic use


def test_generic_column_roles_and_arm_labels(ref):
    """Any column names; a missing column names its argument; arms are labelled as asked."""
    from analysis._checks import ColumnError

    df = ref.rename(columns={"count": "k", "exposure": "t", "treatment": "z"})
    est = rate_ratio(df, events="k", exposure="t", treatment="z", outcome="o", method="m")
    same = rate_ratio(ref, events="count", exposure="exposure", treatment="treatment",
                      outcome="o", method="m")  # fmt: skip
    assert est.estimate == same.estimate and est.se == same.se
    assert list(est.details["rates"]) == ["treated", "control"]
    assert "z" in est.details["coefficients"]
    nb = negative_binomial_irr(df, events="k", exposure="t", treatment="z", outcome="o",
                               method="m")  # fmt: skip
    nb_ref = negative_binomial_irr(ref, events="count", exposure="exposure",
                                   treatment="treatment", outcome="o", method="m")  # fmt: skip
    assert (
        nb.estimate == nb_ref.estimate and nb.details["dispersion"] == nb_ref.details["dispersion"]
    )
    ba = before_after_ratio(
        ref, events_before="count_before", exposure_before="exposure_before",
        events_after="count_after", exposure_after="exposure", treatment="treatment",
        outcome="o", method="m",
    )  # fmt: skip
    assert ba.per_group[0].details["group"] == "treated"
    assert ba.ratio.details["contrast"] == "treated / control"
    for call in (
        lambda: rate_ratio(df, events="nope", exposure="t", treatment="z", outcome="o",
                           method="m"),
        lambda: negative_binomial_irr(df, events="k", exposure="t", treatment="z",
                                      covariates=["nope"], outcome="o", method="m"),
        lambda: crude_rates(df, events="k", exposure="t", group="nope"),
    ):  # fmt: skip
        with pytest.raises(ColumnError, match="column 'nope' is not in the data"):
            call()
    with pytest.raises(ColumnError, match="^events column 'nope'"):
        rate_ratio(df, events="nope", exposure="t", treatment="z", outcome="o", method="m")
    with pytest.raises(ColumnError, match="^covariates column 'nope'"):
        negative_binomial_irr(df, events="k", exposure="t", treatment="z", covariates=["nope"],
                              outcome="o", method="m")  # fmt: skip
