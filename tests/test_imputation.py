"""Multiple imputation: chained equations, Rubin's rules, the MI stage of the study."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.design.imputation import (
    impute_chain,
    multiple_imputation,
    nelson_aalen,
    potential_scale_reduction,
    variable_kinds,
)
from analysis.outcomes.pooling import pool_estimates, rubin_pool
from analysis.results import EffectEstimate

# --------------------------------------------------------------------------- Rubin's rules


def test_rubin_pool_by_hand():
    """Q = (0.1, 0.3, 0.2, 0.4), U = (0.04, 0.05, 0.045, 0.055), m = 4, complete df 50."""
    q = np.array([0.1, 0.3, 0.2, 0.4])
    u = np.array([0.04, 0.05, 0.045, 0.055])
    p = rubin_pool(q, u, df_complete=50)
    qbar, ubar = 0.25, 0.0475
    b = ((0.1 - qbar) ** 2 + (0.3 - qbar) ** 2 + (0.2 - qbar) ** 2 + (0.4 - qbar) ** 2) / 3
    t = ubar + 1.25 * b
    lam = 1.25 * b / t
    riv = 1.25 * b / ubar
    df_old = 3 / lam**2
    df_obs = 51 / 53 * 50 * (1 - lam)
    df = df_old * df_obs / (df_old + df_obs)
    assert p.estimate == pytest.approx(qbar)
    assert p.within == pytest.approx(ubar)
    assert p.between == pytest.approx(b)
    assert p.total == pytest.approx(t)
    assert p.lambda_ == pytest.approx(lam)
    assert p.riv == pytest.approx(riv)
    assert p.df == pytest.approx(df)
    assert p.fmi == pytest.approx((riv + 2 / (df + 3)) / (1 + riv))
    # by hand: b = 0.016667, t = 0.068333, lambda = 0.304878, df_old = 32.27, df_obs = 33.45
    assert (b, t, lam) == pytest.approx((0.0166667, 0.0683333, 0.3048780), rel=1e-5)
    assert (df_old, df_obs, df) == pytest.approx((32.2744, 33.4466, 16.4247), rel=1e-4)
    from scipy import stats

    half = stats.t.ppf(0.975, df) * math.sqrt(t)
    assert p.interval(0.05) == pytest.approx((qbar - half, qbar + half))
    assert p.p_value() == pytest.approx(2 * stats.t.sf(qbar / math.sqrt(t), df))


def test_rubin_pool_infinite_complete_df_is_rubin_1987():
    p = rubin_pool([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])
    lam = (4 / 3) * 1.0 / (0.5 + 4 / 3)
    assert p.df == pytest.approx(2 / lam**2)


def test_rubin_pool_no_between_variance():
    p = rubin_pool([1.0, 1.0], [0.2, 0.4])
    assert p.between == 0 and p.total == pytest.approx(0.3)
    assert math.isinf(p.df) and p.lambda_ == 0
    with pytest.raises(ValueError, match="at least two"):
        rubin_pool([1.0], [0.1])
    with pytest.raises(ValueError, match="finite"):
        rubin_pool([1.0, np.nan], [0.1, 0.1])


def test_rubin_pool_against_statsmodels_mice_combine():
    """statsmodels' MICE.combine on OLS fits of 5 fixed datasets gives the same pooling."""
    import statsmodels.api as sm
    from statsmodels.imputation.mice import MICE

    rng = np.random.default_rng(11)
    results = []
    for _ in range(5):
        x = rng.normal(size=(60, 2))
        y = 0.5 + x @ np.array([1.0, -0.5]) + rng.normal(size=60)
        results.append(sm.OLS(y, sm.add_constant(x)).fit())
    mice = object.__new__(MICE)
    mice.results_list = results
    mice.exog_names, mice.endog_names, mice.model_class = ["c", "x1", "x2"], "y", sm.OLS
    combined = mice.combine()
    cov = np.asarray(combined.cov_params())
    for j in range(3):
        ours = rubin_pool([r.params[j] for r in results], [r.cov_params()[j, j] for r in results])
        assert ours.estimate == pytest.approx(combined.params[j], rel=1e-12)
        assert ours.total == pytest.approx(cov[j, j], rel=1e-10)
        # statsmodels' "fraction of missing information" is (1 + 1/m) B / T
        assert ours.lambda_ == pytest.approx(combined.frac_miss_info[j], rel=1e-10)


def _hr(value: float, se: float, n_clusters: int = 100) -> EffectEstimate:
    return EffectEstimate.from_log(
        log_estimate=math.log(value), se=se, outcome="mortality", measure="HR",
        method="cox_matched", n_treated=10, n_control=40, n_events=5,
        details={"n_clusters": n_clusters},
    )  # fmt: skip


def test_pool_estimates_on_the_log_scale():
    ests = [_hr(0.6, 0.2), _hr(0.7, 0.25), _hr(0.65, 0.22)]
    pooled = pool_estimates(ests, method="cox_matched_mi")
    ref = rubin_pool(
        [math.log(0.6), math.log(0.7), math.log(0.65)], [0.04, 0.0625, 0.0484], df_complete=99
    )
    assert pooled.method == "cox_matched_mi"
    assert pooled.estimate == pytest.approx(math.exp(ref.estimate))
    assert pooled.se == pytest.approx(ref.se)
    low, high = ref.interval()
    assert (pooled.ci_low, pooled.ci_high) == pytest.approx((math.exp(low), math.exp(high)))
    assert pooled.details["pooling"]["df"] == pytest.approx(ref.df)
    assert pooled.details["pooling"]["fmi"] == pytest.approx(ref.fmi)
    assert pooled.n_treated == 10 and pooled.n_events == 5


def test_pool_estimates_differences_on_their_own_scale():
    def rd(value: float, se: float) -> EffectEstimate:
        return EffectEstimate(outcome="mortality", measure="RD_12m", method="km_matched",
                              estimate=value, ci_low=value - 2 * se, ci_high=value + 2 * se,
                              p_value=0.5, se=se)  # fmt: skip

    pooled = pool_estimates([rd(-0.02, 0.01), rd(-0.01, 0.012), rd(0.0, 0.011)],
                            method="km_matched_mi")  # fmt: skip
    ref = rubin_pool([-0.02, -0.01, 0.0], [0.01**2, 0.012**2, 0.011**2])
    assert pooled.estimate == pytest.approx(-0.01) == pytest.approx(ref.estimate)
    assert pooled.se == pytest.approx(ref.se)
    assert (pooled.ci_low, pooled.ci_high) == pytest.approx(ref.interval())
    assert pooled.details["estimates"] == [-0.02, -0.01, 0.0]


def test_pool_estimates_not_estimable():
    nan = EffectEstimate(outcome="mortality", measure="HR", method="cox_matched",
                         estimate=float("nan"), ci_low=float("nan"), ci_high=float("nan"),
                         p_value=float("nan"))  # fmt: skip
    pooled = pool_estimates([nan, _hr(0.6, 0.2)], method="cox_matched_mi")
    assert math.isnan(pooled.estimate) and "fewer than two" in pooled.details["note"]


# --------------------------------------------------------------------------- chained equations


def test_nelson_aalen_by_hand():
    h = nelson_aalen(np.array([3.0, 1, 2, 2]), np.array([1, 1, 0, 1]))
    # times 1, 2, 2, 3: at risk 4, 3, 1; events 1, 1, 1
    assert h == pytest.approx([1 / 4 + 1 / 3 + 1, 1 / 4, 1 / 4 + 1 / 3, 1 / 4 + 1 / 3])


def _mar_data(n: int = 1500, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """x binary, z continuous, c count, y outcome; x and z missing at random given y."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    x = (rng.random(n) < 1 / (1 + np.exp(-(0.8 * z - 0.2)))).astype(float)
    c = rng.poisson(np.exp(0.3 + 0.4 * x))
    y = 1.0 * x + 0.5 * z + rng.normal(size=n)
    full = pd.DataFrame(
        {"x": x, "z": z, "c": c.astype(float), "y": y, "g": rng.choice(["a", "b"], n)}
    )
    df = full.copy()
    p = 1 / (1 + np.exp(-(-1.0 + 1.2 * y)))
    df.loc[rng.random(n) < p, "x"] = np.nan
    df.loc[rng.random(n) < 0.2, "z"] = np.nan
    df.loc[rng.random(n) < 0.1, "c"] = np.nan
    return df, full


def test_variable_kinds():
    df, _ = _mar_data(100)
    assert variable_kinds(df, ["x", "z", "c"]) == {"x": "binary", "z": "continuous", "c": "count"}
    with pytest.raises(ValueError, match="numeric or boolean"):
        variable_kinds(df, ["g"])


def test_impute_chain_values_and_seed():
    df, full = _mar_data()
    args = {"impute": ["x", "z", "c"], "predictors": ["y", "g"], "iterations": 5}
    a = impute_chain(df, rng=np.random.default_rng(1), **args)
    b = impute_chain(df, rng=np.random.default_rng(1), **args)
    pd.testing.assert_frame_equal(a.values, b.values)
    assert not a.values.isna().any().any()
    assert set(np.unique(a.values["x"])) <= {0.0, 1.0}
    assert (a.values["c"] == np.round(a.values["c"])).all()
    observed = df["x"].notna()
    assert (a.values.loc[observed, "x"] == df.loc[observed, "x"]).all()
    # MAR given y: complete cases are biased for mean(x), the imputations are not
    assert abs(df["x"].mean() - full["x"].mean()) > 0.05
    assert abs(a.values["x"].mean() - full["x"].mean()) < 0.03
    assert set(a.trace.columns) == {"iteration", "variable", "mean", "sd"}
    with pytest.raises(ValueError, match="impute them too"):
        impute_chain(df, impute=["x"], predictors=["z"], rng=np.random.default_rng(1))
    # a missing level of a categorical predictor is its own level
    with_gap = df.assign(g=df["g"].where(df.index % 7 > 0))
    chain = impute_chain(with_gap, impute=["x"], predictors=["y", "g"], rng=np.random.default_rng(1),
                         iterations=2)  # fmt: skip
    assert not chain.values["x"].isna().any()


def test_multiple_imputation_independent_of_jobs_and_converges():
    df, _ = _mar_data(400)
    df = df.assign(c=df["c"].fillna(0))
    args = {"impute": ["x", "z"], "predictors": ["y", "c"], "m": 2, "iterations": 4}
    one = multiple_imputation(df, rng=np.random.default_rng(5), **args)
    two = multiple_imputation(df, rng=np.random.default_rng(5), n_jobs=2, **args)
    for a, b in zip(one.datasets, two.datasets, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert not one.datasets[0].equals(one.datasets[1])  # the chains differ
    conv = one.convergence()
    assert list(conv["variable"]) == ["x", "z"]
    assert (conv["rhat_mean"] < 2).all()
    assert one.m == 2 and one.n_missing["x"] == int(df["x"].isna().sum())


def test_impute_chain_collinear_and_constant_predictors():
    """A duplicated or constant predictor adds nothing: same chain as without it."""
    df, _ = _mar_data(400)
    df = df.assign(c=df["c"].fillna(0), y_again=df["y"], k=1.0)
    args = {"impute": ["x", "z"], "iterations": 3}
    plain = impute_chain(df, predictors=["y", "c"], rng=np.random.default_rng(2), **args)
    for extra in (["y_again"], ["k"]):
        chain = impute_chain(
            df, predictors=["y", "c", *extra], rng=np.random.default_rng(2), **args
        )
        pd.testing.assert_frame_equal(chain.values, plain.values)


def test_map_tasks_order_and_errors():
    import operator

    from analysis._parallel import map_tasks

    items = list(range(9))
    assert map_tasks(operator.neg, items, n_jobs=2) == [-i for i in items]
    assert map_tasks(operator.neg, items[:1], n_jobs=3) == [0]
    with pytest.raises(ValueError, match="math domain"):
        map_tasks(math.sqrt, [4.0, -1.0, 9.0, 16.0], n_jobs=2)


def test_potential_scale_reduction_by_hand():
    trace = pd.DataFrame({"chain": [0, 0, 0, 0, 1, 1, 1, 1], "iteration": [1, 2, 3, 4] * 2,
                          "variable": "v", "mean": [9, 9, 1.0, 2.0, 9, 9, 3.0, 4.0]})  # fmt: skip
    # second half: chains (1, 2) and (3, 4): W = 0.5, B = 2 * var(1.5, 3.5) = 4
    rhat = potential_scale_reduction(trace)["rhat"].iloc[0]
    assert rhat == pytest.approx(math.sqrt((0.5 * 0.5 + 4 / 2) / 0.5))


# --------------------------------------------------------------------------- the study stage


def _mi_study(extract, **imputation):
    from analysis.data.extract import read_extract
    from evaluation.config import StudyConfig
    from evaluation.pipeline import run_study

    config = StudyConfig.model_validate(
        {"missing": "mi", "imputation": {"m": 3, "iterations": 2, "n_jobs": 1, **imputation}}
    )
    return run_study(read_extract(extract), config)


@pytest.fixture(scope="module")
def mi_study(small_extract):
    return _mi_study(small_extract)


def test_mi_stage_primary_and_document(mi_study):
    study = mi_study
    doc = study.document
    assert doc.design.primary == "matched_mi"
    primaries = {(e.outcome, e.method) for e in doc.select(primary=True)}
    assert primaries == {("mortality", "cox_matched_mi"), ("retention", "cox_matched_mi"),
                         ("crime", "rate_matched_mi")}  # fmt: skip
    mi = doc.select(design="matched_mi") + doc.select(design="iptw_mi")
    assert len([e for e in mi if e.model in ("cox", "rate")]) == 8
    # the absolute measures of the matched design, pooled on their own scale
    absolute = {(e.outcome, e.measure) for e in doc.select(design="matched_mi")}
    assert {("mortality", "RD_12m"), ("retention", "RMST_diff"),
            ("overdose_mortality", "RD_24m")} <= absolute  # fmt: skip
    assert {e.model for e in doc.select(design="iptw_mi")} == {"cox", "rate"}
    assert all(e.details.get("pooling")["m"] == 3 for e in mi if e.estimate is not None)
    assert doc.select(model="cox", design="matched")  # the missing-indicator sensitivity estimate
    assert doc.design.get("missing")["method"] == "mi"
    info = doc.design.designs["matched_mi"]["imputation"]
    assert info["m"] == 3 and "injecting" in info["imputed"]
    assert {"matched_mi", "iptw_mi"} <= set(doc.design.max_abs_smd)
    assert {"missing", "balance_mi", "imputation_trace"} <= set(study.tables)
    assert [v.outcome for v in doc.diagnostics.e_values] == ["mortality", "retention", "crime"]
    assert len(study.tables["estimates"]) == len(doc.estimates)
    # disclosure evidence of the pooled estimates: one (worst-case) row per design x outcome x group
    ev = study.tables["disclosure_estimates"]
    mi_rows = ev[ev["design"].isin(["matched_mi", "iptw_mi"])]
    indicator = ev[ev["design"].isin(["matched", "iptw"])]
    assert len(mi_rows) == len(indicator) and set(mi_rows["outcome"]) == set(indicator["outcome"])
    assert not mi_rows.duplicated(["design", "outcome", "group"]).any()


def test_mi_stage_same_seed_same_bytes_whatever_jobs(small_extract, mi_study):
    again = _mi_study(small_extract, n_jobs=2)
    assert json.dumps(again.results, sort_keys=True) == json.dumps(mi_study.results, sort_keys=True)


def test_default_study_reports_the_multiple_imputation_sensitivity(small_extract):
    """End to end on the default configuration: the MI estimates are added, nothing else moves.

    ``imputation.sensitivity`` is ``null`` by default: on in a study run (m = 20 imputations
    pooled by Rubin's rules, not primary, with the fraction of missing information), off
    in a simulation replicate's ``scope="estimates"``; ``false`` switches it off, and
    ``design.missing`` says so.
    """
    from analysis.data.extract import read_extract
    from evaluation.config import StudyConfig
    from evaluation.pipeline import run_study

    extract = read_extract(small_extract)
    study = run_study(extract, StudyConfig())
    doc = study.document
    assert doc.design.primary == "matched"
    assert doc.design.get("missing") == {
        "method": "indicator",
        "primary_design": "matched",
        "sensitivity": "multiple imputation (matched_mi, iptw_mi)",
    }
    assert doc.design.designs["matched_mi"]["imputation"]["m"] == 20
    assert {"matched_mi", "iptw_mi"} <= set(doc.design.designs)
    mi = doc.select(design="matched_mi") + doc.select(design="iptw_mi")
    assert {e.method for e in mi if e.model in ("cox", "rate")} == {
        "cox_matched_mi", "rate_matched_mi", "cox_iptw_mi", "rate_iptw_mi"
    }  # fmt: skip
    assert not any(e.primary for e in mi)
    for e in mi:
        if e.estimate is None:
            continue
        # Rubin's rules over the imputations that gave an estimate: T = W + (1 + 1/m) B
        pooling, m = e.details.get("pooling"), e.details.get("pooling")["m"]
        assert e.details.get("n_imputations") == 20 and 2 <= m <= 20
        total = pooling["within"] + (1 + 1 / m) * pooling["between"]
        assert pooling["total"] == pytest.approx(total)
        assert 0 <= pooling["fmi"] <= 1 and pooling["df"] > 0
    assert {"missing", "balance_mi", "imputation_trace"} <= set(study.tables)

    # switched off: the same study without the additions, and design.missing says why
    off = run_study(extract, StudyConfig(imputation={"sensitivity": False}))
    assert off.results["design"]["missing"]["not_imputed"] == "configuration"
    kept = [e for e in study.results["estimates"] if not e["method"].endswith("_mi")]
    assert json.dumps(kept) == json.dumps(off.results["estimates"])
    assert {
        k: v
        for k, v in study.results["design"].items()
        if k not in ("designs", "max_abs_smd", "missing")
    } == {
        k: v
        for k, v in off.results["design"].items()  # fmt: skip
        if k not in ("designs", "max_abs_smd", "missing")
    }
    # a simulation replicate's scope: off unless its configuration asks for it
    fast = run_study(extract, StudyConfig(), scope="estimates")
    assert not [e for e in fast.results["estimates"] if e["method"].endswith("_mi")]


def test_nothing_to_impute_is_said(small_extract):
    """No missing covariate of the propensity model: MI is not run, and results.json says so."""
    from analysis.data.extract import read_extract
    from evaluation.config import StudyConfig
    from evaluation.pipeline import run_study

    config = StudyConfig(covariates=("age", "sex", "region"), calendar_time=False)
    for missing in ("indicator", "mi"):
        res = run_study(read_extract(small_extract), config.model_copy(update={"missing": missing}))
        note = res.results["design"]["missing"]
        assert note["method"] == missing and note["primary_design"] == "matched"
        assert note["not_imputed"] == "no_missing_values" and note["sensitivity"] is None
        assert not [e for e in res.results["estimates"] if e["method"].endswith("_mi")]
        assert res.results["design"]["primary"] == "matched"


def test_a_failed_sensitivity_analysis_is_a_warning_not_a_failed_study(small_extract, monkeypatch):
    """MI as the sensitivity analysis: its failure is warned about and noted; as primary, fatal."""
    from analysis.data.extract import read_extract
    from evaluation.config import StudyConfig
    from evaluation.pipeline import StudyError, run_study
    from evaluation.stages import imputation

    def broken(state, config):
        raise StudyError("multiple imputation failed: singular matrix")

    monkeypatch.setattr(imputation, "_run_imputations", broken)
    extract = read_extract(small_extract)
    with pytest.warns(RuntimeWarning, match="sensitivity analysis failed .*singular matrix"):
        res = run_study(extract, StudyConfig()).results
    assert res["design"]["missing"]["not_imputed"] == "failed"
    assert "singular matrix" in res["design"]["missing"]["note"]
    assert res["design"]["primary"] == "matched"
    with pytest.raises(StudyError, match="multiple imputation failed: singular matrix"):
        run_study(extract, StudyConfig(missing="mi"))


# --------------------------------------------------------------------------- the scenario


def test_informative_missing_scenario_depends_on_group_and_outcomes():
    from synthetic.generate import generate
    from synthetic.spec import load_scenario

    spec = load_scenario("informative_missing", n_hat=300, n_ost=3000)
    tables, _ = generate(spec, np.random.default_rng(2), truth=False)
    persons = tables["persons"]
    miss = persons["injecting"].isna()
    hat = persons["group"] == "HAT"
    died = persons["person_id"].isin(tables["deaths"]["person_id"])
    assert 0.25 < miss.mean() < 0.45
    assert miss[hat].mean() > miss[~hat].mean() + 0.1
    assert miss[died].mean() > miss[~died].mean() + 0.1
    # the MCAR covariate's share does not depend on the group
    assert abs(persons["psychiatric_dx"].isna()[hat].mean() - 0.12) < 0.06


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mi_recovers_truth_where_the_indicator_method_is_biased(tmp_path, seed):
    """Informative missingness: MI within 3 SE of the truth; the indicator method is not."""
    from tests.study_helpers import study_on_scenario

    study, _ = study_on_scenario(
        tmp_path, "informative_missing", seed, missing="mi", imputation={"m": 10, "n_jobs": 2}
    )
    z = {}
    for e in study.results["estimates"]:
        if e["method"] in ("cox_matched", "rate_matched", "cox_matched_mi", "rate_matched_mi"):
            z[(e["outcome"], e["method"].endswith("_mi"))] = (
                math.log(e["estimate"]) - math.log(e["truth"])
            ) / e["se"]
    for outcome in ("mortality", "retention", "crime"):
        assert abs(z[(outcome, True)]) < 3, (outcome, z)
    assert z[("mortality", False)] < -3  # the indicator method's bias


@pytest.mark.slow
def test_book_page_compares_the_two_methods(small_extract, tmp_path):
    """The book's page on missing covariates, built from a results folder with MI primary."""
    import html
    import re

    from evaluation.report import build_book
    from evaluation.run import main

    config = tmp_path / "mi.yml"
    config.write_text("missing: mi\nimputation: {m: 3, iterations: 2, n_jobs: 1}\n")
    out = tmp_path / "results"
    args = ["--no-book", "--quiet", "--data", str(small_extract), "--config", str(config)]
    assert main([*args, "--out", str(out)]) == 0
    page = html.unescape((build_book(out) / "missing.html").read_text(encoding="utf-8"))
    text = re.search(r'<article class="bd-article">(.*)</article>', page, flags=re.S).group(1)
    assert "Traceback" not in text and "Error" not in text
    assert "3 imputed datasets" in text and "Barnard–Rubin" in text
    assert "Multiple imputation is the primary analysis here" in text
    assert "injects drugs" in text
    # the extract is read as real data: the book reads release/, where a pooled estimate with
    # too few events is withheld like the missing-indicator one (30 HAT persons, few deaths)
    released = json.loads((out / "release" / "results.json").read_text())
    shown = {e["method"]: e for e in released["estimates"] if e["outcome"] == "mortality"}
    assert shown["cox_matched"]["estimate"] is None
    assert shown["cox_matched_mi"]["estimate"] is None
    assert "withheld" in text
