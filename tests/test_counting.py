"""The Cox engine on counting-process data (``fit_cox(..., entry=)``) and the estimators of
:mod:`analysis.outcomes.counting`, against R's ``survival`` and by invariances.

Reference values: ``tests/reference/r_values_counting.json``, made by
``tests/reference/make_reference_counting.R`` from ``counting_data.csv`` (300 persons, 1,939
intervals ``(start, stop]`` in whole months, delayed entry, time-varying weights and a
time-varying covariate), e.g.::

    coxph(Surv(start, stop, event) ~ x + cluster(id), data = d, weights = w, ties = "breslow")
    survfit(Surv(start, stop, event) ~ x, data = d, weights = w)
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.outcomes._product_limit import survival_at_time
from analysis.outcomes.counting import aj_counting, cox_counting, km_counting
from analysis.outcomes.coxph import CoxResult, CoxScore, fit_cox

REF_DIR = Path(__file__).parent / "reference"
REFERENCE = json.loads((REF_DIR / "r_values_counting.json").read_text())
COX_CASES = ["breslow_x", "efron_x", "breslow_xz_strata", "efron_xz_strata"]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(REF_DIR / "counting_data.csv")


def _fit(d: pd.DataFrame, case: dict, **kw) -> CoxResult:
    return fit_cox(
        d[case["covariates"]],
        d["stop"],
        d["event"],
        entry=d["start"],
        weights=d["w"],
        cluster=d["id"],
        strata=d["stratum"] if case["strata"] else None,
        ties=case["ties"],
        **kw,
    )


def test_reference_data_are_counting_process_data(data):
    """Several intervals per person, delayed entry, tied events, rows entering at event
    times (not at risk there), weights varying within persons."""
    assert data.groupby("id").size().max() > 10
    assert (data.groupby("id")["start"].min() > 0).mean() > 0.25
    events = data[data["event"] == 1]
    assert events.groupby(["stop"]).size().max() > 5
    assert data["start"].isin(events["stop"]).sum() > 1000
    assert (data.groupby("id")["w"].nunique() > 1).mean() > 0.5


@pytest.mark.parametrize("name", COX_CASES)
def test_fit_cox_with_entry_matches_r(data, name):
    """Coefficients, model-based and robust (clustered on the person) variances,
    log-likelihoods and score tests of R's ``coxph(Surv(start, stop, event) ~ ... +
    cluster(id), weights = w)``. R's robust variance and robust score test have no
    small-sample factor; ours multiply by G / (G - 1)."""
    case = REFERENCE[name]
    res = _fit(data, case, tol=1e-11, max_iter=100)
    g = case["n_clusters"]
    factor = g / (g - 1)
    np.testing.assert_allclose(res.params, case["coef"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.se, case["se"], rtol=1e-8)
    np.testing.assert_allclose(
        res.robust_se, np.sqrt(factor) * np.array(case["robust_se"]), rtol=1e-8
    )
    np.testing.assert_allclose(res.cov, case["var"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(
        res.robust_cov, factor * np.array(case["robust_var"]), rtol=1e-8, atol=1e-12
    )
    np.testing.assert_allclose([res.loglik_null, res.loglik], case["loglik"], rtol=1e-10)
    np.testing.assert_allclose(res.score_test, case["score_test"], rtol=1e-8)
    np.testing.assert_allclose(res.robust_score_test * factor, case["robust_score_test"], rtol=1e-8)
    assert (res.n, res.n_events, res.n_clusters) == (case["n"], case["nevent"], g)
    assert res.converged and not res.diverging


@pytest.mark.parametrize("name", ["breslow_xz_strata", "efron_xz_strata"])
def test_residuals_with_entry_match_r(data, name):
    """Score residuals (ours: case weight times R's ``residuals(fit, "score")``) and
    Schoenfeld residuals (compared within each stratum and time: R orders tied events its
    own way)."""
    case = REFERENCE[name]
    res = _fit(data, case, tol=1e-11, max_iter=100)
    expected = np.array(case["score_residuals"]) * data["w"].to_numpy()[:, None]
    np.testing.assert_allclose(res.score_residuals, expected, rtol=1e-7, atol=1e-10)

    def by_time(values, stratum, time):
        frame = pd.DataFrame(values, columns=["a", "b"]).assign(s=stratum, t=time)
        return frame.sort_values(["s", "t", "a", "b"]).to_numpy()

    sch = res.schoenfeld_residuals
    ours = by_time(
        sch.to_numpy(), data["stratum"].to_numpy()[sch.index], data["stop"].to_numpy()[sch.index]
    )
    theirs = by_time(case["schoenfeld"], case["schoenfeld_stratum"], case["schoenfeld_time"])
    np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10)


def test_cox_counting_matches_r(data):
    """The per-protocol hazard ratio: R's Breslow fit; the information is 1 / var."""
    case = REFERENCE["breslow_x"]
    cols = [data[c].to_numpy() for c in ("start", "stop", "event", "x", "w")]
    b, info = cox_counting(*cols)
    np.testing.assert_allclose(b, case["coef"][0], rtol=1e-9)
    np.testing.assert_allclose(info, 1.0 / case["var"][0][0], rtol=1e-8)


@pytest.mark.parametrize("arm", [0, 1])
def test_km_counting_matches_r_survfit(data, arm):
    """Weighted Kaplan-Meier on (start, stop]: R's survfit at every time of the arm."""
    ref = REFERENCE["km"][str(arm)]
    d = data[data["x"] == arm]
    times, surv = km_counting(*(d[c].to_numpy() for c in ("start", "stop", "event", "w")))
    got = [survival_at_time(times, surv, t) for t in ref["time"]]
    np.testing.assert_allclose(got, ref["surv"], rtol=1e-10, atol=1e-14)
    assert set(times) == {t for t, e in zip(ref["time"], ref["n_event"], strict=True) if e > 0}


@pytest.mark.parametrize("arm", [0, 1])
def test_aj_counting_matches_r_survfit(data, arm):
    """Weighted Aalen-Johansen cumulative incidence of cause 1 on (start, stop]."""
    ref = REFERENCE["aj"][str(arm)]
    d = data[data["x"] == arm]
    cols = [d[c].to_numpy() for c in ("start", "stop", "etype", "w")]
    got = [aj_counting(*cols, time=t) for t in ref["time"]]
    np.testing.assert_allclose(got, ref["cif"], rtol=1e-10, atol=1e-14)


# --- invariances ------------------------------------------------------------------------------


def _split(t, e, cuts_per_row, rng):
    """Split each row (0, t] at random whole times: (start, stop] rows and their origin."""
    n = len(t)
    rows, starts, stops, events = [], [], [], []
    for i in range(n):
        inner = np.unique(rng.integers(1, max(int(t[i]), 2), cuts_per_row))
        inner = inner[inner < t[i]]
        bounds = np.r_[0.0, inner, t[i]]
        k = len(bounds) - 1
        rows += [i] * k
        starts += list(bounds[:-1])
        stops += list(bounds[1:])
        events += [0] * (k - 1) + [e[i]]
    return np.array(rows), np.array(starts), np.array(stops), np.array(events)


@pytest.fixture(scope="module")
def cohort():
    rng = np.random.default_rng(11)
    n = 500
    X = np.column_stack([rng.binomial(1, 0.4, n), rng.normal(size=n)])
    t = np.ceil(rng.exponential(np.exp(-X @ [0.5, 0.3])) * 40) + 1
    e = rng.binomial(1, 0.7, n)
    w = rng.uniform(0.3, 3.0, n)
    stratum = rng.integers(0, 3, n)
    return X, t, e, w, stratum


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("strata", [False, True])
def test_split_follow_up_gives_the_unsplit_fit(cohort, ties, strata):
    """Splitting follow-up into many intervals (constant covariates and weights) leaves the
    partial likelihood, the residuals summed per person and so every result unchanged."""
    X, t, e, w, stratum = cohort
    st = stratum if strata else None
    whole = fit_cox(X, t, e, weights=w, strata=st, ties=ties, cluster=np.arange(len(t)))
    row, start, stop, event = _split(t, e, 12, np.random.default_rng(2))
    assert len(row) > 8 * len(t)
    split = fit_cox(
        X[row],
        stop,
        event,
        entry=start,
        weights=w[row],
        strata=None if st is None else st[row],
        ties=ties,
        cluster=row,
    )
    for field in ("params", "se", "robust_se", "information"):
        np.testing.assert_allclose(
            getattr(split, field), getattr(whole, field), rtol=1e-10, atol=1e-13
        )
    np.testing.assert_allclose(split.loglik, whole.loglik, rtol=1e-12)
    np.testing.assert_allclose(split.score_test, whole.score_test, rtol=1e-10)
    np.testing.assert_allclose(split.robust_score_test, whole.robust_score_test, rtol=1e-10)
    per_person = pd.DataFrame(split.score_residuals).groupby(row).sum().to_numpy()
    np.testing.assert_allclose(per_person, whole.score_residuals, atol=1e-12)
    np.testing.assert_allclose(
        np.sort(split.schoenfeld_residuals.to_numpy(), axis=0),
        np.sort(whole.schoenfeld_residuals.to_numpy(), axis=0),
        atol=1e-12,
    )


def test_entry_before_every_time_is_right_censored_data(cohort):
    X, t, e, w, stratum = cohort
    a = fit_cox(X, t, e, weights=w, strata=stratum)
    b = fit_cox(X, t, e, weights=w, strata=stratum, entry=np.full(len(t), -5.0))
    np.testing.assert_allclose(b.params, a.params, rtol=1e-12)
    np.testing.assert_allclose(b.robust_cov, a.robust_cov, rtol=1e-10)
    np.testing.assert_allclose(b.score_residuals, a.score_residuals, atol=1e-13)


def test_row_order_does_not_matter_with_entry(data):
    case = REFERENCE["efron_xz_strata"]
    a = _fit(data, case)
    perm = np.random.default_rng(4).permutation(len(data))
    b = _fit(data.iloc[perm].reset_index(drop=True), case)
    np.testing.assert_allclose(b.params, a.params, rtol=1e-12)
    np.testing.assert_allclose(b.robust_cov, a.robust_cov, rtol=1e-10)
    np.testing.assert_allclose(b.score_residuals, a.score_residuals[perm], atol=1e-13)


def test_delayed_entry_changes_the_risk_sets():
    """A late entrant is not at risk before its entry (nor at it): hand-computed Breslow."""
    # rows: (entry, stop, event, x); events at t = 2 (x = 1) and t = 4 (x = 0)
    entry = np.array([0.0, 0.0, 2.0, 3.0])
    stop = np.array([2.0, 4.0, 5.0, 6.0])
    event = np.array([1, 1, 0, 0])
    x = np.array([1.0, 0.0, 1.0, 0.0])
    res = fit_cox(x, stop, event, entry=entry, ties="breslow")
    # risk sets: t=2 {0, 1} (row 2 enters at 2, not at risk); t=4 {1, 2, 3}
    b = res.params[0]
    score = (1 - np.exp(b) / (np.exp(b) + 1)) + (0 - np.exp(b) / (1 + np.exp(b) + 1))
    assert abs(score) < 1e-8
    assert np.isclose(b, 0.5 * np.log(2.0))  # exp(b)^2 = 2


def test_fewer_rows_at_risk_than_stop_order_suggests_keeps_precision():
    """Many later intervals of the same persons make the tail sums by stop time much larger
    than the risk sets; the compensated difference keeps the fit as good as unsplit."""
    rng = np.random.default_rng(8)
    n = 200
    x = rng.binomial(1, 0.5, n).astype(float)
    t = rng.integers(1000, 1200, n).astype(float)
    t[:40] = rng.integers(1, 10, 40)  # early events among few
    e = np.ones(n, dtype=int)
    whole = fit_cox(x, t, e, ties="breslow")
    row, start, stop, event = _split(t, e, 400, rng)
    split = fit_cox(x[row], stop, event, entry=start, ties="breslow")
    np.testing.assert_allclose(split.params, whole.params, rtol=1e-11)
    np.testing.assert_allclose(split.information, whole.information, rtol=1e-11)


def test_cox_score_with_entry_is_the_engine(data):
    X = data[["x", "z"]].to_numpy(float)
    args = (X, data["stop"], data["event"])
    w = data["w"].to_numpy()
    fit = fit_cox(*args, entry=data["start"], weights=w, tol=1e-12)
    score = CoxScore(*args, entry=data["start"])
    np.testing.assert_allclose(score(fit.params, w), fit.score_residuals, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(score.total(fit.params, w), 0.0, atol=1e-8)


def test_monotone_likelihood_with_entry_is_detected():
    """Every event is on x = 1 while rows with x = 0 are at risk: the estimate is +infinity.
    The late entrants with x = 1 (entering after the last event) do not change that."""
    rng = np.random.default_rng(3)
    n = 60
    x = np.r_[np.ones(n // 2), np.zeros(n // 2)]
    stop = rng.integers(5, 50, n).astype(float)
    event = (x == 1) & (rng.uniform(size=n) < 0.6)
    entry = np.where(x == 1, 0.0, rng.integers(0, 4, n).astype(float))
    with pytest.warns(RuntimeWarning, match="monotone likelihood"):
        res = fit_cox(x, stop, event, entry=entry)
    assert "x0" in res.diverging and "largest value of x0" in res.diverging["x0"]
    b, info = cox_counting(entry, stop, event.astype(int), x, np.ones(n))
    assert np.isnan(b) and np.isnan(info)


def test_no_false_monotone_flag_with_entry(data):
    """On the reference data no coefficient is infinite (checked by the exact risk-set
    extremes, not only the quick exit)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fit_cox(data["x"], data["stop"], data["event"], entry=data["start"])
    assert not res.diverging


def test_cox_counting_leaves_out_zero_weights(data):
    """A bootstrap replicate's zero weights: the same as dropping those rows."""
    cols = {c: data[c].to_numpy() for c in ("start", "stop", "event", "x", "w")}
    w0 = cols["w"] * (data["id"].to_numpy() % 4 != 0)
    keep = w0 > 0
    with_zeros = cox_counting(cols["start"], cols["stop"], cols["event"], cols["x"], w0)
    dropped = cox_counting(*(v[keep] for v in cols.values()))
    assert with_zeros == dropped


def test_cox_counting_without_events_in_an_arm_is_nan(data):
    cols = [data[c].to_numpy() for c in ("start", "stop", "event", "x", "w")]
    cols[2] = cols[2] * (cols[3] == 1)
    assert all(np.isnan(cox_counting(*cols)))
    cols[2] = np.zeros_like(cols[2])
    assert all(np.isnan(cox_counting(*cols)))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (np.array([0.0, 2.0, np.nan]), "entry has missing"),
        (np.array([0.0, 2.0, 3.0]), "entry must be before duration"),
        (np.array([0.0, 2.0]), "entry must have shape"),
    ],
)
def test_invalid_entry_raises(entry, message):
    with pytest.raises(ValueError, match=message):
        fit_cox(
            np.array([0.0, 1.0, 0.5]), np.array([1.0, 2.0, 3.0]), np.array([1, 1, 0]), entry=entry
        )
