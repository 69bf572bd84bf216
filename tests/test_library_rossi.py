"""The library on the Rossi recidivism data, with its own column names, against R.

Rossi et al.'s 432 released prisoners (``tests/reference/rossi.csv``, lifelines' copy):
``week`` (follow-up, all censored at 52), ``arrest``, ``fin`` (financial aid, randomised),
covariates ``age, race, wexp, mar, paro, prio``, and ``id`` = row number. Every design and
outcome estimator runs on these names; nothing of the study's vocabulary is needed. The
reference values are from ``tests/reference/make_reference_library_rossi.R`` (MatchIt,
``lm``/``glm`` with ``sandwich::vcovCL(type = "HC0", cadjust = TRUE)``, ``coxph``) frozen in
``tests/reference/r_values_library_rossi.json``.
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
from analysis.outcomes.absolute import cumulative_risk_difference
from analysis.outcomes.cox import cox_hazard_ratio
from analysis.outcomes.kaplan_meier import kaplan_meier
from analysis.outcomes.logrank import cox_score_test, logrank
from analysis.outcomes.means import mean_difference, risk_difference, risk_ratio
from analysis.outcomes.rmst import rmst_difference

HERE = Path(__file__).parent / "reference"
R = json.loads((HERE / "r_values_library_rossi.json").read_text())
COVARIATES = ["age", "race", "wexp", "mar", "paro", "prio"]
SAMPLES = ("matched", "unweighted", "iptw")


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    df = pd.read_csv(HERE / "rossi.csv")
    return df.assign(id=np.arange(1, len(df) + 1))


@pytest.fixture(scope="module")
def ps(rossi):
    return fit_propensity(rossi, treatment="fin", covariates=COVARIATES)


@pytest.fixture(scope="module")
def matched(rossi, ps):
    m = match(rossi, treatment="fin", score=ps.logit, id="id", k=1, caliper=0.2)
    return m, rossi.merge(m.data[["id", "match_set", "weight"]], on="id")


def _sample(request, name: str) -> tuple[pd.DataFrame, dict]:
    """A sample with the weights and cluster arguments of its estimators."""
    rossi = request.getfixturevalue("rossi")
    if name == "matched":
        return request.getfixturevalue("matched")[1], {"weights": "weight", "cluster": "match_set"}
    if name == "iptw":
        ps = request.getfixturevalue("ps")
        w = att_weights(rossi, treatment="fin", score=ps.score).data["weight"].to_numpy()
        return rossi.assign(w=w), {"weights": "w"}
    return rossi, {}


def test_data_are_the_reference_data():
    assert hashlib.md5((HERE / "rossi.csv").read_bytes()).hexdigest() == R["data"]["md5"]


def test_propensity_coefficients(ps):
    expected = pd.Series(R["propensity"]["coefficients"]).rename({"(Intercept)": "const"})
    assert list(ps.coefficients.index) == list(expected.index)
    np.testing.assert_allclose(ps.coefficients, expected, rtol=1e-8, atol=1e-12)


def test_matched_sets_are_matchits(matched):
    m, _ = matched
    r = R["matching"]
    assert m.caliper_width == pytest.approx(R["propensity"]["caliper_width"], rel=1e-8)
    assert m.n_treated_matched == r["n_treated_matched"]
    pairs = m.pairs.sort_values("treated_id")
    np.testing.assert_array_equal(pairs["treated_id"], r["pairs_treated"])
    np.testing.assert_array_equal(pairs["control_id"], r["pairs_control"])


@pytest.mark.parametrize("sample", SAMPLES)
def test_means_against_r(request, sample):
    df, kw = _sample(request, sample)
    r = R[sample]
    md = mean_difference(df, outcome="week", treatment="fin", **kw)
    rd = risk_difference(df, outcome="arrest", treatment="fin", **kw)
    rr = risk_ratio(df, outcome="arrest", treatment="fin", **kw)
    for est, ref in ((md, r["mean_difference_week"]), (rd, r["risk_difference_arrest"])):
        assert est.estimate == pytest.approx(ref["estimate"], rel=1e-9)
        assert est.se == pytest.approx(ref["se"], rel=1e-9)
    assert math.log(rr.estimate) == pytest.approx(r["risk_ratio_arrest"]["log_estimate"], rel=1e-9)
    assert rr.se == pytest.approx(r["risk_ratio_arrest"]["se_log"], rel=1e-7)


def test_matched_cox_against_r(request):
    """coxph(Surv(week, arrest) ~ fin, weights, cluster = pair): robust variance x G/(G-1)."""
    df, kw = _sample(request, "matched")
    est = cox_hazard_ratio(
        df, duration="week", event="arrest", treatment="fin", outcome="arrest",
        method="cox_matched", **kw,
    )  # fmt: skip
    r = R["matched"]["cox"]
    g = r["n_clusters"]
    assert math.log(est.estimate) == pytest.approx(r["log_hr"], rel=1e-8)
    assert est.se == pytest.approx(r["se_robust"] * math.sqrt(g / (g - 1)), rel=1e-6)


@pytest.mark.parametrize("sample", SAMPLES)
def test_cumulative_risk_at_52_weeks_is_the_risk_difference(request, sample):
    """Nobody is censored before week 52, so 1 - KM(52) is the share arrested.

    The influence-function variance of the Kaplan–Meier contrast is then the mean's: equal
    with weights or clusters (both with G/(G-1)); without them the survival estimators use
    Greenwood's model-based variance, G/(G-1) = n/(n-1) smaller.
    """
    df, kw = _sample(request, sample)
    km = cumulative_risk_difference(
        df, duration="week", event="arrest", treatment="fin", time=52, outcome="arrest",
        method=sample, **kw,
    )  # fmt: skip
    rd = risk_difference(df, outcome="arrest", treatment="fin", **kw)
    assert km.estimate == pytest.approx(rd.estimate, rel=1e-10)
    n = len(df)
    factor = 1.0 if kw else math.sqrt(n / (n - 1))
    assert km.se * factor == pytest.approx(rd.se, rel=1e-8)


def test_every_estimator_runs_with_the_datas_names(request, rossi):
    df, kw = _sample(request, "matched")
    base = {"duration": "week", "event": "arrest"}
    curve = kaplan_meier(df, group="fin", **base, **kw).curve
    at_52 = curve[curve["time"] == 52].set_index("group")["survival"]
    share = df.groupby("fin")["arrest"].mean()  # 1:1 pairs: every weight is 1
    np.testing.assert_allclose(at_52.sort_index(), 1 - share.sort_index(), rtol=1e-12)
    rmst = rmst_difference(df, treatment="fin", tau=52, outcome="arrest", method="m", **base, **kw)
    assert math.isfinite(rmst.estimate) and rmst.se > 0
    score = cox_score_test(df, treatment="fin", **base, **kw)
    assert 0 < score["p_value"] < 1
    assert 0 < logrank(rossi, treatment="fin", **base)["p_value"] < 1
    table = balance_table(rossi, treatment="fin", covariates=COVARIATES)
    after = balance_table(
        df, treatment="fin", covariates=COVARIATES, weights="weight", reference=rossi
    )
    assert list(table["variable"]) == COVARIATES
    assert after["smd"].abs().max() < 0.1  # fin was randomised; matching keeps it balanced
