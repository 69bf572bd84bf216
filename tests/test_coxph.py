"""Tests for the Cox engine ``analysis.outcomes.coxph`` and ``cox_zph``: R's ``survival::coxph``, lifelines, simulated truth, invariances."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.outcomes._coxph_core import _segment_cumsum, _segment_revcumsum
from analysis.outcomes.cox import cox_hazard_ratio
from analysis.outcomes.coxph import CoxResult, CoxScore, fit_cox
from analysis.outcomes.ph_test import cox_zph

REF_DIR = Path(__file__).parent / "reference"
REFERENCE = json.loads((REF_DIR / "r_values_coxph.json").read_text())
COVARIATES = REFERENCE["efron"]["covariates"]
CASES = sorted(k for k in REFERENCE if not k.startswith("_"))
ROSSI_COVARIATES = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
ZPH_REFERENCE = json.loads((REF_DIR / "r_values_zph.json").read_text())
ZPH_CASES = sorted(k for k in ZPH_REFERENCE if not k.startswith("_"))
ZPH_RTOL = 1e-8


@pytest.fixture(scope="module")
def ref_data() -> pd.DataFrame:
    return pd.read_csv(REF_DIR / "coxph_data.csv")


@pytest.fixture(scope="module")
def ref_files(ref_data) -> dict[str, pd.DataFrame]:
    return {
        "coxph_data.csv": ref_data,
        "coxph_halving.csv": pd.read_csv(REF_DIR / "coxph_halving.csv"),
    }


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    from lifelines.datasets import load_rossi

    return load_rossi()


def fit_columns(
    df: pd.DataFrame,
    *,
    duration: str,
    event: str,
    covariates: list[str],
    weights: str | None = None,
    cluster: str | None = None,
    strata: str | list[str] | None = None,
    **kw,
) -> CoxResult:
    """The engine on columns of a DataFrame (shorthand of these tests)."""
    return fit_cox(
        df[list(covariates)],
        df[duration],
        df[event],
        weights=None if weights is None else df[weights],
        cluster=None if cluster is None else df[cluster],
        strata=None if strata is None else df[strata],
        **kw,
    )


def _fit_case(df: pd.DataFrame, case: dict) -> CoxResult:
    return fit_columns(
        df,
        duration=case["time"],
        event="event",
        covariates=case["covariates"],
        weights="weight" if case["weights"] else None,
        cluster="cluster" if case["cluster"] else None,
        strata=case["strata"],
        ties=case["ties"],
    )


# --- R reference ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_matches_r_coxph(ref_files, name):
    """Coefficients, model-based and robust variances, log-likelihoods equal R's to 1e-6.

    Reference made by ``tests/reference/make_reference_coxph.R`` (R 4.2.2, survival 3.5.3)
    from ``coxph_data.csv`` (``make_data_coxph.py``); the R call of each case is in
    ``r_values_coxph.json``.
    R's robust variance has no small-sample factor; the package multiplies every robust
    variance by G / (G - 1) (G = 150 clusters, or the rows without a cluster), applied here.
    """
    case = REFERENCE[name]
    res = _fit_case(ref_files[case["file"]], case)
    g = 150 if case["cluster"] else case["n"]
    factor = g / (g - 1)
    assert res.converged
    np.testing.assert_allclose(res.params, case["coef"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.se, case["se"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        res.robust_se, np.sqrt(factor) * np.asarray(case["robust_se"]), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(res.cov, case["var"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(
        res.robust_cov, factor * np.asarray(case["robust_var"]), rtol=0, atol=1e-8
    )
    np.testing.assert_allclose([res.loglik_null, res.loglik], case["loglik"], rtol=1e-10)
    assert res.n == case["n"]
    assert res.n_events == case["nevent"]
    assert res.names == tuple(case["covariates"])
    assert res.n_clusters == (150 if case["cluster"] else None)


def test_step_halving_is_exercised(ref_files, monkeypatch):
    """On ``coxph_halving.csv`` a Newton step lowers the log-likelihood, so the step is halved."""
    import analysis.outcomes._coxph_solve as coxph

    seen = []
    original = coxph._evaluate

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out.loglik)
        return out

    monkeypatch.setattr(coxph, "_evaluate", recording)
    _fit_case(ref_files["coxph_halving.csv"], REFERENCE["halving"])
    assert any(b < a for a, b in zip(seen, seen[1:], strict=False))


def test_reference_data_are_heavily_tied(ref_data):
    """The R reference exercises the Efron correction: many event times carry several events."""
    sizes = ref_data[ref_data.event == 1].groupby("time").size()
    assert sizes.max() >= 20
    assert sizes[sizes >= 2].sum() / sizes.sum() > 0.95  # events sharing their time


# --- lifelines and published values on the Rossi data -----------------------------------------


def test_rossi_published_coefficients(rossi):
    """Fox & Weisberg's Cox model of the Rossi recidivism data (Efron ties)."""
    res = fit_columns(rossi, duration="week", event="arrest", covariates=ROSSI_COVARIATES)
    published = [-0.379, -0.0574, 0.314, -0.150, -0.434, -0.0849, 0.0915]
    np.testing.assert_allclose(res.params, published, rtol=0, atol=6e-4)
    assert res.n == 432 and res.n_events == 114


def test_rossi_matches_lifelines(rossi):
    """Estimates, model-based SEs and log-likelihood equal lifelines' ``CoxPHFitter``."""
    from lifelines import CoxPHFitter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cph = CoxPHFitter().fit(rossi[["week", "arrest", *ROSSI_COVARIATES]], "week", "arrest")
    res = fit_columns(rossi, duration="week", event="arrest", covariates=ROSSI_COVARIATES)
    np.testing.assert_allclose(res.params, cph.params_[ROSSI_COVARIATES], atol=1e-6)
    np.testing.assert_allclose(res.se, cph.standard_errors_[ROSSI_COVARIATES], atol=1e-6)
    np.testing.assert_allclose(res.loglik, cph.log_likelihood_, rtol=1e-9)


@pytest.mark.parametrize(
    ("ties", "r_robust_se"),
    [
        (
            "efron",
            [0.19554177898, 0.02533614626, 0.29232855535, 0.21806031528, 0.38024446575,
             0.19920082960, 0.02897459463],
        ),
        (
            "breslow",
            [0.19468774019, 0.02522870015, 0.29107772357, 0.21696090359, 0.37889121715,
             0.19834201090, 0.02874838692],
        ),
    ],
)  # fmt: skip
def test_rossi_robust_se_matches_r(rossi, ties, r_robust_se):
    """Per-observation sandwich SEs equal R's on the Rossi data.

    R 4.2.2, survival 3.5.3, with ``d`` = ``lifelines.datasets.load_rossi()`` written to CSV::

        f <- coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, d,
                   robust = TRUE, ties = "<ties>")
        print(sqrt(diag(f$var)), digits = 10)

    (lifelines' ``robust=True`` gives different values, off by up to 0.01 here.) Times the
    small-sample factor sqrt(432 / 431) of the package's robust variances.
    """
    res = fit_columns(
        rossi, duration="week", event="arrest", covariates=ROSSI_COVARIATES, ties=ties
    )
    expected = np.sqrt(432 / 431) * np.asarray(r_robust_se)
    np.testing.assert_allclose(res.robust_se, expected, rtol=0, atol=1e-8)


# --- simulated truth ---------------------------------------------------------------------------


def simulate_cohort(
    n: int, rng: np.random.Generator, log_hr: float = np.log(0.7)
) -> tuple[pd.DataFrame, float]:
    """Confounded treatment, day-resolution follow-up; returns the data and the true log HR."""
    age = rng.normal(38.0, 8.0, n)
    male = rng.binomial(1, 0.7, n)
    site = rng.integers(0, 40, n)
    logit = -0.5 + 0.06 * (age - 38.0) + 0.4 * male
    treatment = rng.binomial(1, 1.0 / (1.0 + np.exp(-logit)))
    eta = log_hr * treatment + 0.05 * (age - 38.0) + 0.3 * male
    t_event = rng.exponential(365.25 * 8.0 * np.exp(-eta))
    t_cens = np.minimum(rng.uniform(0.0, 3650.0, n), 1826.0)
    df = pd.DataFrame(
        {
            "followup_days": np.ceil(np.minimum(t_event, t_cens)).astype(int),
            "died": (t_event <= t_cens).astype(int),
            "treatment": treatment,
            "age": age,
            "male": male,
            "site": site,
        }
    )
    return df, log_hr


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_recovers_simulated_hazard_ratio(seed):
    """|log est - log truth| < 4 se, and closer to the truth than the unadjusted estimate."""
    df, truth = simulate_cohort(6000, np.random.default_rng(seed))
    kw = {"duration": "followup_days", "event": "died", "cluster": "site"}
    res = fit_columns(df, covariates=["treatment", "age", "male"], **kw)
    naive = fit_columns(df, covariates=["treatment"], **kw)
    assert abs(res.params[0] - truth) < 4 * res.robust_se[0]
    assert abs(res.params[0] - truth) < abs(naive.params[0] - truth)


@pytest.mark.slow
def test_confidence_interval_coverage():
    """Monte Carlo: 95% intervals (robust SE) cover the true log HR 92-98% of the time."""
    rng = np.random.default_rng(2026)
    hits = []
    for _ in range(300):
        df, truth = simulate_cohort(2000, rng)
        res = fit_columns(
            df, duration="followup_days", event="died", covariates=["treatment", "age", "male"]
        )
        hits.append(abs(res.params[0] - truth) < 1.959964 * res.robust_se[0])
    assert 0.92 <= np.mean(hits) <= 0.98


# --- invariances ---------------------------------------------------------------------------------


def _assert_same(a: CoxResult, b: CoxResult, atol: float = 1e-10) -> None:
    np.testing.assert_allclose(a.params, b.params, rtol=0, atol=atol)
    np.testing.assert_allclose(a.se, b.se, rtol=0, atol=atol)
    np.testing.assert_allclose(a.robust_se, b.robust_se, rtol=0, atol=atol)
    np.testing.assert_allclose(a.loglik, b.loglik, rtol=1e-12)


def _ref_fit(df: pd.DataFrame, **kw) -> CoxResult:
    return fit_columns(df, duration="time", event="event", covariates=COVARIATES, **kw)


def test_row_order_does_not_matter(ref_data):
    kw = {"weights": "weight", "cluster": "cluster", "strata": "stratum"}
    permuted = ref_data.sample(frac=1.0, random_state=7)
    _assert_same(_ref_fit(ref_data, **kw), _ref_fit(permuted, **kw))


def test_unit_weights_equal_no_weights(ref_data):
    df = ref_data.assign(one=1.0)
    _assert_same(_ref_fit(df), _ref_fit(df, weights="one"))


def test_integer_weights_equal_replicated_rows(ref_data):
    """Case weights: a weight of k is k copies of the row (estimate, model SE, log-lik).

    Exact for Breslow ties only: Efron's correction counts tied rows, not weights (as in R).
    """
    df = ref_data.assign(k=np.random.default_rng(3).integers(1, 4, len(ref_data)))
    kw = {"strata": "stratum", "ties": "breslow"}
    weighted = _ref_fit(df, weights="k", **kw)
    replicated = _ref_fit(df.loc[df.index.repeat(df["k"])], **kw)
    np.testing.assert_allclose(weighted.params, replicated.params, atol=1e-10)
    np.testing.assert_allclose(weighted.se, replicated.se, atol=1e-10)
    np.testing.assert_allclose(weighted.loglik, replicated.loglik, rtol=1e-12)


def test_singleton_clusters_equal_per_observation_robust(ref_data):
    df = ref_data.assign(row_id=np.arange(len(ref_data)))
    plain = _ref_fit(df, weights="weight")
    clustered = _ref_fit(df, weights="weight", cluster="row_id")
    np.testing.assert_allclose(plain.robust_cov, clustered.robust_cov, atol=1e-12)


def test_labels_and_input_types_do_not_matter(ref_data):
    """Strata/cluster labels as strings; arrays vs DataFrame; multi-column strata."""
    base = _ref_fit(ref_data, cluster="cluster", strata="stratum")
    df = ref_data.assign(
        region=ref_data["stratum"].map({0: "north", 1: "east", 2: "west"}),
        site=ref_data["cluster"].map("site-{:03d}".format),
    )
    _assert_same(base, _ref_fit(df, cluster="site", strata="region"))
    arrays = fit_cox(
        ref_data[COVARIATES].to_numpy(),
        ref_data["time"].to_numpy(),
        ref_data["event"].astype(bool).to_numpy(),
        cluster=ref_data["cluster"].to_numpy(),
        strata=ref_data["stratum"].to_numpy(),
    )
    _assert_same(base, arrays)
    assert arrays.names == tuple(f"x{j}" for j in range(len(COVARIATES)))
    df2 = ref_data.assign(a=ref_data["stratum"] // 2, b=ref_data["stratum"] % 2)
    _assert_same(base, _ref_fit(df2, cluster="cluster", strata=["a", "b"]))


def test_breslow_equals_efron_without_ties(ref_data):
    df = ref_data.drop_duplicates("time_exact")
    kw = {"duration": "time_exact", "event": "event", "covariates": COVARIATES}
    _assert_same(
        fit_columns(df, **kw, ties="efron"), fit_columns(df, **kw, ties="breslow"), atol=1e-12
    )


def test_input_is_not_modified(ref_data):
    X = ref_data[COVARIATES].to_numpy().copy()
    before = X.copy()
    fit_cox(X, ref_data["time"], ref_data["event"])
    np.testing.assert_array_equal(X, before)


# --- numerics ------------------------------------------------------------------------------------


def test_segmented_cumsums_keep_precision_after_large_segments():
    """Small segments after a huge one: restarting must not lose their relative precision.

    A plain cumulative sum minus the running total loses about 1e-5 absolute here, i.e. the
    leading digits of the small segment's sums.
    """
    rng = np.random.default_rng(0)
    big = rng.uniform(0.5, 1.0, 100_000) * 1e6
    small = rng.uniform(0.5, 1.0, 50) * 1e-3
    values = np.concatenate([big, small, big[:10]])
    seg = np.repeat([0, 1, 2], [100_000, 50, 10])
    first = np.array([0, 100_000, 100_050])[seg]
    last = np.array([99_999, 100_049, 100_059])[seg]
    fwd = _segment_cumsum(values, first)
    rev = _segment_revcumsum(values, last)
    np.testing.assert_allclose(fwd[100_000:100_050], np.cumsum(small), rtol=1e-13)
    np.testing.assert_allclose(rev[100_000:100_050], np.cumsum(small[::-1])[::-1], rtol=1e-13)
    np.testing.assert_allclose(rev[:100_000], np.cumsum(big[::-1])[::-1], rtol=1e-13)
    naive = np.cumsum(values)[100_000:100_050] - np.cumsum(values)[99_999]
    assert np.abs(naive / np.cumsum(small) - 1).max() > 1e-6


def test_extreme_risk_scores_in_a_small_stratum():
    """A stratum whose covariate sits 300 below the others' (risk scores ~e^-150) still fits."""
    rng = np.random.default_rng(5)
    n = 400
    x = rng.normal(size=n)
    shift = np.where(np.arange(n) < 300, 0.0, -300.0)  # stratum 1: covariate far below
    t = np.ceil(rng.exponential(np.exp(-0.5 * x)) * 50)
    ev = rng.binomial(1, 0.8, n)
    strata = (np.arange(n) >= 300).astype(int)
    both = fit_cox(np.column_stack([x + shift]), t, ev, strata=strata)
    # The coefficient is the same whether stratum 1 is shifted or not (within-stratum shifts
    # cancel), so compare with the unshifted fit.
    plain = fit_cox(np.column_stack([x]), t, ev, strata=strata)
    _assert_same(both, plain, atol=1e-9)


# --- API -------------------------------------------------------------------------------------------


def test_summary_and_to_dict(rossi):
    res = fit_columns(rossi, duration="week", event="arrest", covariates=ROSSI_COVARIATES)
    table = res.summary()
    assert list(table.index) == ROSSI_COVARIATES
    assert list(table.columns) == [
        "coef", "hazard_ratio", "se", "robust_se", "z", "p_value", "ci_low", "ci_high"
    ]  # fmt: skip
    np.testing.assert_allclose(table["hazard_ratio"], np.exp(res.params))
    np.testing.assert_allclose(np.log(table["ci_high"]) - res.params, 1.959964 * res.se, 1e-6)
    robust = res.summary(robust=True)
    np.testing.assert_allclose(robust["z"], res.params / res.robust_se)
    payload = json.loads(json.dumps(res.to_dict()))
    assert payload["names"] == ROSSI_COVARIATES and payload["converged"] is True


def test_not_converged_warns(rossi):
    with pytest.warns(RuntimeWarning, match="did not converge"):
        res = fit_cox(rossi[ROSSI_COVARIATES], rossi["week"], rossi["arrest"], max_iter=1)
    assert not res.converged and res.n_iter == 1


R2 = json.loads((REF_DIR / "r_values_small_sample.json").read_text())


@pytest.fixture(scope="module")
def matched_ref() -> pd.DataFrame:
    return pd.read_csv(REF_DIR / "reference_data.csv")


def test_score_tests_match_r(matched_ref):
    """R (tests/reference/make_reference_small_sample.R, survival 3.5.3):
    summary(coxph(Surv(time, event) ~ treatment, [weights = weight], [cluster = match_set |
    robust = TRUE]))$sctest / $robscore, and the 3-covariate weighted clustered model.
    robscore has no small-sample factor: ours is it times (G - 1) / G."""
    d = matched_ref
    st = R2["score_tests"]
    kw = {"duration": "time", "event": "event"}
    shrink_sets, shrink_rows = 139 / 140, (len(d) - 1) / len(d)
    plain = fit_columns(d, covariates=["treatment"], **kw)
    assert plain.score_test == pytest.approx(st["sctest_unweighted"], rel=1e-9)
    wc = fit_columns(d, covariates=["treatment"], weights="weight", cluster="match_set", **kw)
    assert wc.robust_score_test == pytest.approx(
        st["robscore_weighted_cluster"] * shrink_sets, rel=1e-9
    )
    w = fit_columns(d, covariates=["treatment"], weights="weight", **kw)
    assert w.robust_score_test == pytest.approx(
        st["robscore_weighted_robust"] * shrink_rows, rel=1e-9
    )
    c = fit_columns(d, covariates=["treatment"], cluster="match_set", **kw)
    assert c.robust_score_test == pytest.approx(st["robscore_cluster"] * shrink_sets, rel=1e-9)
    three = fit_columns(
        d, covariates=["treatment", "age", "female"], weights="weight", cluster="match_set", **kw
    )
    assert three.score_test == pytest.approx(st["sctest_weighted_cluster_3df"], rel=1e-9)
    assert three.robust_score_test == pytest.approx(
        st["robscore_weighted_cluster_3df"] * shrink_sets, rel=1e-9
    )


def test_clustered_robust_se_matches_vcovcl(matched_ref):
    """R: sandwich::vcovCL(coxph(Surv(time, event) ~ treatment + age + female),
    cluster = ~match_set, type = "HC0", cadjust = TRUE): the G / (G - 1) factor from an
    independent implementation."""
    res = fit_columns(
        matched_ref, duration="time", event="event", covariates=["treatment", "age", "female"],
        cluster="match_set",
    )  # fmt: skip
    r = R2["cox_vcovcl_cluster"]
    np.testing.assert_allclose(res.params, list(r["coef"].values()), rtol=1e-8)
    np.testing.assert_allclose(res.robust_se, list(r["se"].values()), rtol=1e-8)


def test_one_cluster_has_no_robust_variance(matched_ref):
    """One cluster: the weighted score residuals sum to the score, zero at the estimate, so
    the factor-free sandwich would be exactly 0. It is NaN instead."""
    res = fit_columns(
        matched_ref.assign(one=1), duration="time", event="event", covariates=["treatment"],
        cluster="one",
    )  # fmt: skip
    assert res.n_clusters == 1
    assert np.isnan(res.robust_se).all() and np.isnan(res.robust_score_test)
    assert np.isfinite(res.se).all()


def _monotone_eight():
    """The 8 persons of make_reference_small_sample.R: every treated event precedes every
    control event (times 1-4 treated, 5-8 control), control weight 1/4, 4 matched sets."""
    return pd.DataFrame(
        {
            "time": np.arange(1, 9),
            "event": 1,
            "treatment": np.repeat([1, 0], 4),
            "weight": np.repeat([1.0, 0.25], 4),
            "set": np.tile(np.arange(4), 2),
        }
    )


def test_monotone_likelihood_is_detected():
    """R also fails here: coxph stops with "Ran out of iterations and did not converge" at
    coef 20.8 with robust SE 0.55 (frozen in r_values_small_sample.json), i.e. a finite-looking
    HR of 1e9 with p ~ 1e-300."""
    df = _monotone_eight()
    assert "did not converge" in R2["monotone"]["r_warning"] and R2["monotone"]["coef"] > 15
    with pytest.warns(RuntimeWarning, match="monotone likelihood"):
        res = fit_columns(
            df, duration="time", event="event", covariates=["treatment"], weights="weight",
            cluster="set",
        )  # fmt: skip
    assert set(res.diverging) == {"treatment"}
    assert "largest value of treatment" in res.diverging["treatment"]
    assert "+infinity" in res.diverging["treatment"]
    # mirrored: controls first, the coefficient tends to -infinity
    mirror = df.assign(treatment=1 - df["treatment"])
    with pytest.warns(RuntimeWarning):
        res = fit_columns(mirror, duration="time", event="event", covariates=["treatment"])
    assert "-infinity" in res.diverging["treatment"]


def test_monotone_likelihood_not_flagged_for_finite_estimates(matched_ref):
    """Swap two neighbouring times so that one control event has a treated person at risk:
    the estimate is finite (large, but with a maximum) and nothing is flagged."""
    df = _monotone_eight()
    df.loc[[3, 4], "time"] = [5, 4]  # treated person 4 now leaves after control person 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit_columns(df, duration="time", event="event", covariates=["treatment"])
    assert res.converged and res.diverging == {} and np.isfinite(res.params).all()
    assert 1.0 < res.params[0] < 10.0
    fits = [
        fit_columns(matched_ref, duration="time", event="event", covariates=["treatment", "age"]),
        fit_columns(
            matched_ref, duration="time", event="event", covariates=["treatment", "age"],
            weights="weight", cluster="match_set", strata="female",
        ),
    ]  # fmt: skip
    assert all(f.diverging == {} and f.converged for f in fits)


def test_monotone_likelihood_within_strata():
    """Separation inside each stratum only (not overall) is still monotone likelihood."""
    rng = np.random.default_rng(8)
    n = 40
    stratum = np.repeat([0, 1], n // 2)
    treatment = np.tile(np.repeat([1, 0], n // 4), 2)
    # within each stratum, treated times 1..10 then controls 11..20; stratum 1 shifted down
    base = np.tile(np.arange(1, n // 2 + 1), 2).astype(float)
    time = base - 5.0 * stratum
    x2 = rng.normal(size=n)
    with pytest.warns(RuntimeWarning, match="monotone"):
        res = fit_cox(np.column_stack([treatment, x2]), time, np.ones(n), strata=stratum)
    assert set(res.diverging) == {"x0"}
    # overall (without strata) the treated and control times overlap: finite
    res = fit_cox(np.column_stack([treatment, x2]), time, np.ones(n))
    assert res.diverging == {}


def test_monotone_likelihood_along_a_combination():
    """x1 - x2 separates the events although neither covariate does alone: the runaway
    check (the log-likelihood flat while the coefficients still move by several units per
    Newton step) flags both; with noise added to x2 the fit is finite and nothing is flagged."""
    n = 30
    rng = np.random.default_rng(2)
    x1 = rng.normal(size=n)
    x2 = x1 - np.linspace(3, -3, n)  # x1 - x2 decreases with time: each event has the largest
    time = np.arange(1, n + 1, dtype=float)
    with pytest.warns(RuntimeWarning, match="monotone likelihood"):
        res = fit_cox(np.column_stack([x1, x2]), time, np.ones(n))
    assert set(res.diverging) == {"x0", "x1"}
    assert all("still moved" in r for r in res.diverging.values())
    noisy = fit_cox(np.column_stack([x1, x2 + rng.normal(scale=3, size=n)]), time, np.ones(n))
    assert noisy.converged and noisy.diverging == {}


def test_monotone_likelihood_warns():
    """All events in one group: the coefficient diverges; warn as R's coxph does."""
    rng = np.random.default_rng(4)
    group = np.repeat([0, 1], 50)
    x = np.column_stack([group, rng.normal(size=100)])
    event = group.copy()
    t = rng.integers(1, 30, 100)
    with pytest.warns(RuntimeWarning, match=r"before \['x0'\]; coefficient may be infinite"):
        res = fit_cox(x, t, event)
    assert res.params[0] > 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event": 2}, "event must be 0/1"),
        ({"event": 0}, "no events"),
        ({"weight": 0.0}, "weights must be finite and > 0"),
        ({"age": np.nan}, "missing values"),
        ({"age": 40.0}, "singular"),
    ],
)
def test_invalid_input_raises(ref_data, change, message):
    df = ref_data.assign(**change)
    with pytest.raises(ValueError, match=message):
        _ref_fit(df, weights="weight")


def test_collinear_covariates_raise(ref_data):
    df = ref_data.assign(age2=2.0 * ref_data["age"] + 1.0)
    with pytest.raises(ValueError, match="singular"):
        fit_columns(df, duration="time", event="event", covariates=[*COVARIATES, "age2"])


def test_unknown_ties_and_columns_raise(ref_data):
    with pytest.raises(ValueError, match="ties"):
        _ref_fit(ref_data, ties="exact")
    # the engine takes arrays; the estimator on a DataFrame names a missing column
    with pytest.raises(KeyError, match="nope"):
        cox_hazard_ratio(ref_data, duration="time", event="event", treatment="treatment",
                         cluster="nope", outcome="o", method="m")  # fmt: skip


# --- proportional-hazards test (cox_zph) ------------------------------------------------------


def _zph_data(case: dict) -> dict:
    """The arrays of an R case of ``r_values_zph.json``: design, terms, weights, strata."""
    df = pd.read_csv(REF_DIR / case["file"])
    parts = [t.strip() for t in case["rhs"].split("+")]
    strata = [t for t in parts if t.startswith("strata(")]
    columns, terms = [], {}
    for term in (t for t in parts if not t.startswith("strata(")):
        if term.startswith("factor("):  # R's treatment contrasts: one indicator per level
            var = term[len("factor(") : -1]
            cols = [c for c in case["columns"] if c.startswith(term)]
            for c in cols:
                columns.append((df[var] == c[len(term) :]).astype(float).to_numpy())
        else:
            cols = [term]
            columns.append(df[term].to_numpy(dtype=float))
        terms[term] = list(range(len(columns) - len(cols), len(columns)))
    return {
        "X": np.column_stack(columns),
        "duration": df["time"].to_numpy(dtype=float),
        "event": df["event"].to_numpy(),
        "weights": None if case["weights"] is None else df[case["weights"]].to_numpy(),
        "strata": df[strata[0][len("strata(") : -1]].to_numpy() if strata else None,
        "cluster": None if case["cluster"] is None else df[case["cluster"]].to_numpy(),
        "terms": terms,
        "ties": case["ties"],
    }


ZPH_TESTS = [
    (name, variance, tr)
    for name in ZPH_CASES
    for variance, key in (("model", "cox_zph"), ("robust", "robust"))
    for tr in ZPH_REFERENCE[name][key]
]


@pytest.mark.parametrize(("name", "variance", "transform"), ZPH_TESTS)
def test_cox_zph_matches_r(name, variance, transform):
    """Per-term and global chi-square, df and p equal R's to 1e-8 relative.

    ``variance="model"``: ``cox.zph(fit, transform)$table`` of survival 3.5-3, fits made by
    ``tests/reference/make_reference_zph.R`` (the exact R call is stored with each
    case): unweighted, matching weights 1 and 0.25, with and without ``cluster()`` (which
    ``cox.zph`` ignores), inverse-probability weights, Efron and Breslow ties, strata, a
    two-column factor term, events at time 0. ``variance="robust"``: the same score tests
    with the sandwich variance, computed in R from the score residuals of the model with
    the ``x g(t)`` terms added (data split at the event times), summed within clusters.
    """
    case = ZPH_REFERENCE[name]
    data = _zph_data(case)
    fit = fit_cox(
        data["X"], data["duration"], data["event"], weights=data["weights"],
        strata=data["strata"], ties=data["ties"], tol=1e-14, max_iter=100,
    )  # fmt: skip
    np.testing.assert_allclose(fit.params, case["coef"], rtol=1e-9, atol=1e-12)
    res = cox_zph(
        fit, data["X"], data["duration"], data["event"], weights=data["weights"],
        strata=data["strata"], cluster=data["cluster"], transform=transform,
        terms=data["terms"], variance=variance,
    )  # fmt: skip
    ref = case["cox_zph" if variance == "model" else "robust"][transform]
    assert list(res.table.index) == ref["terms"]
    np.testing.assert_allclose(res.table["chisq"], ref["chisq"], rtol=ZPH_RTOL)
    np.testing.assert_allclose(res.table["p"], ref["p"], rtol=ZPH_RTOL)
    np.testing.assert_array_equal(res.table["df"], ref["df"])
    assert res.transform == transform and res.variance == variance


def test_cox_zph_reference_covers_weighted_and_robust_cases():
    """The frozen cases include what the study fits: matching weights 1 and 0.25 with
    clusters, Efron ties on tied times, several transforms, one and several terms."""
    case = ZPH_REFERENCE["matching_weights_cluster"]
    df = pd.read_csv(REF_DIR / case["file"])
    assert set(df["weight"]) == {1.0, 0.25}
    assert df[df["event"] == 1].groupby("time").size().max() >= 5  # tied event times
    assert {"km", "rank", "identity"} <= set(case["robust"])
    assert len(ZPH_REFERENCE["unweighted_3cov"]["cox_zph"]) == 4  # every transform
    # cox.zph ignores cluster(): the same table with and without it
    assert case["cox_zph"]["km"] == ZPH_REFERENCE["matching_weights"]["cox_zph"]["km"]


def test_weighted_information_with_unit_weights_is_the_information(ref_data):
    """The g-weighted information used by the test is the fit's information when g = 1."""
    import analysis.outcomes._coxph_core as coxph

    X = ref_data[COVARIATES].to_numpy(dtype=float)
    ev = ref_data["event"].to_numpy() == 1
    lay, _ = coxph._layout(X, ref_data["time"].to_numpy(dtype=float), ev,
                           ref_data["weight"].to_numpy(), None, "efron")  # fmt: skip
    buf = np.empty_like(lay.XT)
    cur = coxph._evaluate(lay, np.linspace(-0.3, 0.3, X.shape[1]), buf)
    ones = np.ones(lay.eg_count.size)
    np.testing.assert_allclose(
        coxph._weighted_information(lay, cur, ones, buf), cur.info, rtol=1e-10, atol=1e-10
    )
    plain = coxph._weighted_score_residuals(lay, cur, out=np.empty_like(lay.XT))
    unit = coxph._weighted_score_residuals(lay, cur, out=buf, set_weight=ones)
    np.testing.assert_allclose(unit, plain, rtol=1e-12, atol=1e-12)


def test_cox_zph_invariances(ref_data):
    """Row order does not matter; the robust test does not depend on the scale of the
    weights, while R's model-based test treats them as frequencies (chi-square x c)."""
    kw = {"weights": ref_data["weight"].to_numpy(), "cluster": ref_data["cluster"].to_numpy()}
    X = ref_data[COVARIATES].to_numpy(dtype=float)
    t, e = ref_data["time"].to_numpy(dtype=float), ref_data["event"].to_numpy()
    fit = fit_cox(X, t, e, weights=kw["weights"])
    base = {v: cox_zph(fit, X, t, e, variance=v, **kw).table for v in ("model", "robust")}
    perm = np.random.default_rng(1).permutation(len(t))
    fit_p = fit_cox(X[perm], t[perm], e[perm], weights=kw["weights"][perm])
    for v in ("model", "robust"):
        got = cox_zph(fit_p, X[perm], t[perm], e[perm], variance=v,
                      weights=kw["weights"][perm], cluster=kw["cluster"][perm]).table  # fmt: skip
        np.testing.assert_allclose(got["chisq"], base[v]["chisq"], rtol=1e-8)
    w3 = 3.0 * kw["weights"]
    fit3 = fit_cox(X, t, e, weights=w3)
    robust3 = cox_zph(fit3, X, t, e, weights=w3, cluster=kw["cluster"], variance="robust").table
    model3 = cox_zph(fit3, X, t, e, weights=w3).table
    np.testing.assert_allclose(robust3["chisq"], base["robust"]["chisq"], rtol=1e-8)
    np.testing.assert_allclose(model3["chisq"], 3.0 * base["model"]["chisq"], rtol=1e-8)


def test_cox_zph_refuses_what_it_cannot_test(ref_data):
    X = ref_data[["treatment"]].to_numpy(dtype=float)
    t, e = ref_data["time"].to_numpy(dtype=float), ref_data["event"].to_numpy()
    fit = fit_cox(X, t, e)
    with pytest.raises(ValueError, match="transform must be"):
        cox_zph(fit, X, t, e, transform="sqrt")
    with pytest.raises(ValueError, match="variance must be"):
        cox_zph(fit, X, t, e, variance="sandwich")
    with pytest.raises(ValueError, match="do not match the fit"):
        cox_zph(fit, X[:-1], t[:-1], e[:-1])
    zero = t.copy()
    zero[np.flatnonzero(e == 1)[0]] = 0.0  # log(0) at an event time
    with pytest.raises(ValueError, match="not finite at every event time"):
        cox_zph(fit_cox(X, zero, e), X, zero, e, transform="log")
    one_time = np.where(e == 1, 5.0, 10.0)  # every event at one time: g is constant
    with pytest.raises(ValueError, match="singular"):
        cox_zph(fit_cox(X, one_time, e), X, one_time, e)


def test_mancl_derouen_matches_the_cluster_jackknife():
    """Few treated events in 1:4 matched sets with a shared frailty: the bias-corrected
    sandwich is the delete-one-set jackknife to first order (here within 1%), and both are
    larger than the G/(G-1) sandwich, which the few sets with a treated event pull down."""
    rng = np.random.default_rng(3)
    n_sets, k = 150, 5
    cluster = np.repeat(np.arange(n_sets), k)
    x = np.tile([1.0] + [0.0] * (k - 1), n_sets)
    frailty = np.repeat(rng.gamma(2.0, 0.5, n_sets), k)
    t = np.ceil(rng.exponential(3000 / (frailty * np.exp(-0.4 * x))))
    e = (t < 900).astype(int)
    t = np.minimum(t, 900)
    X = np.column_stack([x, rng.normal(size=x.size)])
    w = np.where(x == 1, 1.0, 0.25)
    plain = fit_cox(X, t, e, weights=w, cluster=cluster)
    md = fit_cox(X, t, e, weights=w, cluster=cluster, small_sample="mancl-derouen")
    assert 10 <= e[x == 1].sum() <= 40
    jack = np.array(
        [
            fit_cox(
                X[cluster != g], t[cluster != g], e[cluster != g], weights=w[cluster != g]
            ).params
            for g in range(n_sets)
        ]
    )
    jack_se = np.sqrt((n_sets - 1) / n_sets * ((jack - jack.mean(0)) ** 2).sum(0))
    np.testing.assert_allclose(md.robust_se, jack_se, rtol=0.01)
    assert (np.abs(md.robust_se / jack_se - 1) < np.abs(plain.robust_se / jack_se - 1)).all()
    np.testing.assert_allclose(md.robust_cov_factor, plain.robust_cov, rtol=1e-12)
    np.testing.assert_allclose(md.params, plain.params, rtol=1e-12)
    assert md.small_sample == "mancl-derouen" and 0 < md.max_leverage < 0.5
    with pytest.raises(ValueError, match="small_sample"):
        fit_cox(X, t, e, small_sample="HC3")


# --- what the engine returns beside the coefficients ------------------------------------------


def test_information_residuals_and_robust_variance_agree(ref_data):
    """The information is the inverse covariance; the weighted score residuals sum to the score
    (0 at the estimate) and give the robust covariance through the one cluster sandwich; the
    weighted Schoenfeld residuals also sum to the score (one row per event, by time)."""
    kw = {"weights": "weight", "cluster": "cluster", "strata": "stratum"}
    res = _ref_fit(ref_data, **kw)
    p = len(COVARIATES)
    np.testing.assert_allclose(res.information @ res.cov, np.eye(p), atol=1e-9)
    assert res.score_residuals.shape == (len(ref_data), p)
    np.testing.assert_allclose(res.score_residuals.sum(axis=0), 0.0, atol=1e-8)
    totals = pd.DataFrame(res.score_residuals).groupby(ref_data["cluster"].to_numpy()).sum()
    g = len(totals)
    meat = g / (g - 1) * totals.to_numpy().T @ totals.to_numpy()
    np.testing.assert_allclose(res.robust_cov, res.cov @ meat @ res.cov, rtol=1e-10, atol=1e-14)
    sch = res.schoenfeld_residuals
    assert len(sch) == res.n_events and list(sch.columns) == COVARIATES
    events = ref_data.iloc[sch.index]
    assert (events["event"] == 1).all()
    order = events[["stratum", "time"]].to_numpy()
    assert (np.diff(order[:, 0]) >= 0).all()  # by stratum, then time
    same = np.diff(order[:, 0]) == 0
    assert (np.diff(order[:, 1])[same] >= 0).all()
    weighted_sum = (sch.to_numpy() * events["weight"].to_numpy()[:, None]).sum(axis=0)
    np.testing.assert_allclose(weighted_sum, 0.0, atol=1e-8)
    assert "score_residuals" not in res.to_dict()


def test_cox_score_is_the_engine_at_any_coefficients_and_weights(ref_data):
    """CoxScore (the estimating function of the stacked variance) gives the fit's weighted
    score residuals at the estimate, and at other weights sums to the score of that fit."""
    X = ref_data[COVARIATES].to_numpy(dtype=float)
    t, e = ref_data["time"].to_numpy(dtype=float), ref_data["event"].to_numpy()
    w = ref_data["weight"].to_numpy(dtype=float)
    fit = fit_cox(X, t, e, weights=w)
    score = CoxScore(X, t, e)
    np.testing.assert_allclose(score(fit.params, w), fit.score_residuals, rtol=1e-12, atol=1e-13)
    w2 = w * np.random.default_rng(5).uniform(0.5, 2.0, len(w))
    refit = fit_cox(X, t, e, weights=w2)
    np.testing.assert_allclose(score.total(refit.params, w2), 0.0, atol=1e-8)
    np.testing.assert_allclose(
        score(fit.params, w2).sum(axis=0), score.total(fit.params, w2), rtol=1e-10, atol=1e-10
    )


def test_cox_zph_tests_share_one_sort_and_equal_cox_zph(ref_data):
    """Both variances from one pass, and from the fit's own sorted data: the same tables."""
    from analysis.outcomes.coxph import _fit_cox
    from analysis.outcomes.ph_test import _cox_zph_tests_of_fit, _distinct, cox_zph_tests

    X = ref_data[COVARIATES].to_numpy(dtype=float)
    t, e = ref_data["time"].to_numpy(dtype=float), ref_data["event"].to_numpy()
    w, cl = ref_data["weight"].to_numpy(), ref_data["cluster"].to_numpy()
    fit, engine = _fit_cox(
        X, t, e, entry=None, weights=w, cluster=None, strata=None, ties="efron",
        tol=1e-9, max_iter=50, small_sample="factor",
    )  # fmt: skip
    for transform in ("km", "rank", "identity", "log"):
        kw = {"cluster": cl, "transform": transform}
        both = cox_zph_tests(fit, X, t, e, weights=w, **kw)
        reused = _cox_zph_tests_of_fit(fit, engine, t, e, **kw)
        for v in ("model", "robust"):
            alone = cox_zph(fit, X, t, e, weights=w, variance=v, **kw).table
            pd.testing.assert_frame_equal(both[v].table, alone, check_exact=True)
            pd.testing.assert_frame_equal(reused[v].table, alone, check_exact=True)
    strata = np.arange(len(t)) % 2
    with pytest.raises(ValueError, match="without strata"):
        fit_s, engine_s = _fit_cox(
            X, t, e, entry=None, weights=w, cluster=None, strata=strata, ties="efron",
            tol=1e-9, max_iter=50, small_sample="factor",
        )  # fmt: skip
        _cox_zph_tests_of_fit(fit_s, engine_s, t, e)
    order = np.argsort(t, kind="stable")
    for got, want in zip(_distinct(t, order), np.unique(t, return_inverse=True), strict=True):
        np.testing.assert_array_equal(got, want)
