"""The library on Lalonde's data, against R (MatchIt, lm, sandwich).

NSW treated persons and CPS-1 controls from the PyPI package ``causaldata``, with the data's
own column names (``unit``, ``treat``, ``re78``...): nothing of the study's vocabulary. The
reference values were made once by ``tests/reference/make_reference_lalonde.R`` from the CSV
written by ``tests/reference/make_data_lalonde.py`` and frozen in
``tests/reference/r_values_lalonde.json`` (see ``tests/reference/README_lalonde.md``):

- ``glm(treat ~ age + educ + black + hisp + marr + nodegree + re74 + re75 + u74 + u75,
  family = binomial)`` (and the same without ``u74 + u75``);
- ``matchit(treat ~ lp, distance = lp, mahvars = ~lp, ratio = 1, replace = FALSE,
  m.order = "largest", caliper = 0.2 * pooled SD of lp, std.caliper = FALSE)``;
- ``lm(re78 ~ treat, weights)`` with ``sandwich::vcovCL`` on the pairs and, for the ATT
  weights ``ps / (1 - ps)``, ``vcovHC(type = "HC1")``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.design.balance import balance_table
from analysis.design.matching import match
from analysis.design.propensity import fit_propensity
from analysis.design.weighting import att_weights
from analysis.outcomes.means import mean_difference, risk_difference, risk_ratio

pytest.importorskip("causaldata")

from tests.reference.make_data_lalonde import (  # noqa: E402
    COVARIATES,
    COVARIATES_SHORT,
    experimental_benchmark,
    lalonde,
    to_csv_text,
)

R = json.loads((Path(__file__).parent / "reference" / "r_values_lalonde.json").read_text())
SPECS = {"full": COVARIATES, "short": COVARIATES_SHORT}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return lalonde().assign(employed78=lambda d: (d["re78"] > 0).astype(int))


@pytest.fixture(scope="module", params=list(SPECS))
def spec(request) -> str:
    """One of the two propensity models."""
    return request.param


@pytest.fixture(scope="module")
def ps(spec, data):
    return fit_propensity(data, treatment="treat", covariates=SPECS[spec])


@pytest.fixture(scope="module")
def matched(ps, data):
    """1:1 nearest neighbour on the logit, without replacement, caliper 0.2 pooled SD."""
    m = match(data, treatment="treat", score=ps.logit, id="unit", k=1, caliper=0.2)
    return m, data.merge(m.data[["unit", "match_set", "weight"]], on="unit")


@pytest.fixture(scope="module")
def weighted(ps, data):
    """ATT (odds) weights."""
    w = att_weights(data, treatment="treat", score=ps.score)
    return w, data.assign(w=w.data["weight"].to_numpy())


def test_data_are_the_reference_data(data):
    """The frame built from causaldata is, byte for byte, the CSV R read."""
    frame = data.drop(columns="employed78")
    assert hashlib.md5(to_csv_text(frame).encode()).hexdigest() == R["data"]["md5"]
    assert (len(frame), int(frame.treat.sum())) == (R["data"]["rows"], R["data"]["n_treated"])
    assert not {"person_id", "treatment", "region"} & set(frame.columns)


def test_experimental_benchmark():
    """NSW treated minus randomised controls: 1,794 (Dehejia & Wahba 1999)."""
    assert experimental_benchmark() == pytest.approx(1794.342382, abs=1e-5)


def test_propensity_coefficients(spec, ps):
    r = R[spec]
    assert ps.converged and ps.method == "logit_mle" and not ps.dropped
    expected = pd.Series(r["coefficients"]).rename({"(Intercept)": "const"})
    assert list(ps.coefficients.index) == list(expected.index)
    np.testing.assert_allclose(ps.coefficients, expected, rtol=1e-7, atol=1e-12)


def test_matched_sets_are_matchits(spec, matched):
    (m, _), r = matched, R[spec]
    assert m.caliper_width == pytest.approx(r["caliper_width"], rel=1e-7)
    assert m.n_treated_matched == r["matching"]["n_treated_matched"] == 185
    pairs = m.pairs.sort_values("treated_id")
    np.testing.assert_array_equal(pairs["treated_id"], r["matching"]["pairs_treated"])
    np.testing.assert_array_equal(pairs["control_id"], r["matching"]["pairs_control"])
    # MatchIt's own standardisation (SD over all units) gives the same sets here
    assert r["matching"]["same_sets_with_std_caliper"]
    assert set(m.data["unit"]) == set(pairs["treated_id"]) | set(pairs["control_id"])


def test_att_weights_are_the_odds(spec, weighted):
    (w, _), r = weighted, R[spec]["iptw"]["control_weights"]
    weight = pd.Series(w.data["weight"].to_numpy(), index=lalonde()["unit"])
    control = weight[weight.index > 185]
    assert weight[weight.index <= 185].eq(1.0).all()
    assert control.sum() == pytest.approx(185.0, rel=1e-12)
    np.testing.assert_allclose(control.loc[r["units"]], r["normalised"], rtol=1e-6)
    assert (control**2).sum() == pytest.approx(r["sum_squares_normalised"], rel=1e-6)
    assert control.max() == pytest.approx(r["max_normalised"], rel=1e-6)
    assert w.ess_control == pytest.approx(r["ess"], rel=1e-6)


def test_matched_mean_difference(spec, matched):
    """ATT on the matched pairs, clustered on the pair: R's vcovCL exactly."""
    est = mean_difference(
        matched[1], outcome="re78", treatment="treat", weights="weight", cluster="match_set"
    )
    r = R[spec]["matched"]
    assert est.estimate == pytest.approx(r["estimate"], rel=1e-10)
    assert est.se == pytest.approx(r["se_vcovCL_HC0_cadjust"], rel=1e-10)
    # vcovCL's default type "HC1" adds (n - 1) / (n - k), k = 2 coefficients
    n = r["n"]
    assert est.se * math.sqrt((n - 1) / (n - 2)) == pytest.approx(r["se_vcovCL"], rel=1e-10)
    assert est.details["n_clusters"] == r["n_clusters"]
    assert est.details["per_group"]["control"]["mean"] == pytest.approx(r["mean_control"])


def test_iptw_mean_difference(spec, weighted):
    """ATT with the odds weights, each person a cluster: vcovHC's HC1 up to (n-1)/(n-2)."""
    est = mean_difference(weighted[1], outcome="re78", treatment="treat", weights="w")
    r = R[spec]["iptw"]
    assert est.estimate == pytest.approx(r["estimate"], rel=1e-8)
    assert est.se == pytest.approx(r["se_vcovCL_HC0_cadjust"], rel=1e-8)
    n = r["n"]
    assert est.se * math.sqrt((n - 1) / (n - 2)) == pytest.approx(r["se_HC1"], rel=1e-8)


@pytest.mark.parametrize("sample", ["matched", "iptw"])
def test_binary_outcome(spec, request, sample):
    """Employment in 1978: risk difference (lm) and risk ratio (log-link glm) as R's."""
    if sample == "matched":
        df, kw = (
            request.getfixturevalue("matched")[1],
            {"weights": "weight", "cluster": "match_set"},
        )
    else:
        df, kw = request.getfixturevalue("weighted")[1], {"weights": "w"}
    r = R[spec][sample]["employed78"]
    rd = risk_difference(df, outcome="employed78", treatment="treat", **kw)
    rr = risk_ratio(df, outcome="employed78", treatment="treat", **kw)
    tol = 1e-10 if sample == "matched" else 1e-7
    assert rd.estimate == pytest.approx(r["risk_difference"]["estimate"], rel=tol)
    assert rd.se == pytest.approx(r["risk_difference"]["se"], rel=tol)
    assert math.log(rr.estimate) == pytest.approx(r["risk_ratio"]["log_estimate"], rel=tol)
    assert rr.se == pytest.approx(r["risk_ratio"]["se_log"], rel=1e-6)


def test_issue_numbers():
    """The numbers measured independently in the issue (full model)."""
    r = R["full"]
    assert round(r["matched"]["estimate"]) == 1903 and round(r["matched"]["se_vcovCL"]) == 655
    assert round(r["iptw"]["estimate"]) == 1377 and round(r["iptw"]["se_HC1"]) == 655


def test_balance(spec, matched, weighted, data):
    """Matching and weighting shrink the standardised differences of the model's covariates."""
    covs = list(SPECS[spec])
    before = balance_table(data, treatment="treat", covariates=covs)
    after_m = balance_table(
        matched[1], treatment="treat", covariates=covs, weights="weight", reference=data,
    )  # fmt: skip
    after_w = balance_table(weighted[1], treatment="treat", covariates=covs, weights="w")
    assert list(before["variable"]) == covs
    assert before["smd"].abs().max() > 1.0  # CPS controls are very different
    assert after_m["smd"].abs().max() < before["smd"].abs().max() / 5
    assert after_w["smd"].abs().max() < before["smd"].abs().max() / 5
    # the treated side of the matched sample is every treated person, unweighted
    np.testing.assert_allclose(after_m["mean_treated"], before["mean_treated"])
