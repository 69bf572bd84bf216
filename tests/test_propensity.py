"""Tests of analysis.design.propensity, and the synthetic confounded cohort of the design tests."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from analysis._checks import ColumnError
from analysis.design.missing import design_matrix
from analysis.design.propensity import fit_propensity

REGIONS = ["south-east", "west", "central", "north"]

#: the design of the cohort below: covariates, transformations and level orders, as a
#: study passes them (the library has no defaults)
COVARIATES = (
    "age",
    "sex",
    "region",
    "years_opioid_use",
    "prior_ost_episodes",
    "injecting",
    "psychiatric_dx",
    "homeless",
    "prior_overdose",
    "benzodiazepine_use",
    "baseline_charges",
)
TRANSFORMS = {"baseline_charges": "log1p"}
LEVELS = {"sex": ("F", "M"), "region": tuple(REGIONS)}
DESIGN = {"covariates": COVARIATES, "transforms": TRANSFORMS, "levels": LEVELS}


def make_cohort(seed: int, *, n_treated: int = 200, n_control: int = 2000) -> pd.DataFrame:
    """A confounded cohort table: HAT patients differ from OST patients at baseline.

    Treated and controls are drawn from different distributions (older, longer use,
    more injecting, overdoses, homelessness and charges among the treated); HAT exists
    only in south-east and west. With independent covariates from exponential-family
    distributions the true propensity model is logistic and additive, so a correct
    model and good matching exist. ``years_opioid_use`` and ``prior_ost_episodes`` are
    missing together (more often among controls), ``homeless`` missing at random.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for t, n in ((1, n_treated), (0, n_control)):
        region_p = [0.6, 0.4, 0.0, 0.0] if t else [0.4, 0.25, 0.2, 0.15]
        parts.append(
            pd.DataFrame(
                {
                    "treatment": t,
                    "region": rng.choice(REGIONS, n, p=region_p),
                    "sex": rng.choice(["F", "M"], n, p=[0.3 - 0.05 * t, 0.7 + 0.05 * t]),
                    "age": np.round(rng.normal(37 + 2.5 * t, 8, n)),
                    "years_opioid_use": np.clip(rng.normal(14 + 2.5 * t, 6, n), 0, None),
                    "prior_ost_episodes": rng.poisson(1.5 + 0.8 * t, n).astype(float),
                    "injecting": rng.binomial(1, 0.55 + 0.15 * t, n).astype(float),
                    "psychiatric_dx": rng.binomial(1, 0.30 + 0.05 * t, n).astype(float),
                    "homeless": rng.binomial(1, 0.10 + 0.08 * t, n).astype(float),
                    "prior_overdose": rng.binomial(1, 0.15 + 0.12 * t, n).astype(float),
                    "benzodiazepine_use": rng.binomial(1, 0.40 + 0.05 * t, n).astype(float),
                    "baseline_charges": rng.poisson(2.0 + 1.2 * t, n),
                }
            )
        )
    df = pd.concat(parts, ignore_index=True)
    n = len(df)
    miss = rng.random(n) < np.where(df["treatment"] == 1, 0.03, 0.10)
    df.loc[miss, ["years_opioid_use", "prior_ost_episodes"]] = np.nan
    df.loc[rng.random(n) < 0.08, "homeless"] = np.nan
    df.insert(0, "person_id", [f"P{i:05d}" for i in rng.permutation(n)])
    return df.sort_values("person_id", ignore_index=True)


def with_scores(df: pd.DataFrame) -> pd.DataFrame:
    ps = fit_propensity(df, treatment="treatment", **DESIGN)
    return df.assign(ps=ps.score, ps_logit=ps.logit)


def test_scores_and_logits() -> None:
    df = make_cohort(0)
    ps = fit_propensity(df, treatment="treatment", **DESIGN)
    assert ps.n == len(df) and ps.score.shape == ps.logit.shape == (len(df),)
    assert ps.converged and ps.method == "logit_mle"
    finite = np.isfinite(ps.logit)
    p = ps.score[finite]
    np.testing.assert_allclose(ps.logit[finite], np.log(p / (1 - p)))
    # the covariates that drive treatment get positive coefficients
    for name in ("age", "injecting", "prior_overdose", "baseline_charges_log1p"):
        assert ps.coefficients[name] > 0
    frame = ps.to_frame(df["person_id"])
    assert list(frame.columns) == ["person_id", "ps", "ps_logit"]
    assert list(ps.to_frame(df["person_id"].to_numpy(), name="pid").columns)[0] == "pid"
    # the fit records its design, so it can be rebuilt
    assert ps.covariates == COVARIATES and ps.transforms == TRANSFORMS
    assert ps.levels == LEVELS


def test_region_without_hat_is_separated_not_a_crash() -> None:
    df = make_cohort(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no convergence or separation warnings leak out
        ps = fit_propensity(df, treatment="treatment", **DESIGN)
    no_hat = df["region"].isin(["central", "north"]).to_numpy()
    assert ps.n_separated == no_hat.sum()
    assert (ps.score[no_hat] == 0).all() and np.isneginf(ps.logit[no_hat]).all()
    assert np.isfinite(ps.logit[~no_hat]).all()
    assert np.isnan(ps.coefficients["region_central"])
    assert ps.dropped["region_north"].startswith("separation")
    # identical missing indicators: the second is dropped, not a singular fit
    assert ps.dropped["prior_ost_episodes_missing"] == "linear combination of earlier columns"


def test_equals_statsmodels_on_the_non_separated_rows() -> None:
    """Reference: statsmodels Logit on the rows and columns left after separation."""
    df = make_cohort(2)
    ps = fit_propensity(df, treatment="treatment", **DESIGN)
    keep = df["region"].isin(["south-east", "west"]).to_numpy()
    X = design_matrix(df, **DESIGN)
    X = X.loc[keep, [c for c in X.columns if c not in ps.dropped]]
    ref = sm.Logit(df.loc[keep, "treatment"].to_numpy(float), sm.add_constant(X)).fit(disp=0)
    np.testing.assert_allclose(ps.coefficients[ref.params.index], ref.params, rtol=1e-6)
    np.testing.assert_allclose(ps.score[keep], ref.predict(), rtol=1e-6)


def test_row_order_does_not_matter() -> None:
    df = make_cohort(3)
    a = fit_propensity(df, treatment="treatment", **DESIGN)
    a = a.to_frame(df["person_id"]).set_index("person_id")
    sh = df.sample(frac=1, random_state=1)
    b = fit_propensity(sh, treatment="treatment", **DESIGN)
    b = b.to_frame(sh["person_id"]).set_index("person_id")
    np.testing.assert_allclose(a["ps_logit"], b.loc[a.index, "ps_logit"], rtol=1e-8)


def test_continuous_separation_falls_back_with_a_warning() -> None:
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"age": rng.normal(40, 5, 200), "sex": rng.choice(["F", "M"], 200)})
    df["treatment"] = (df["age"] > 45).astype(int)
    with pytest.warns(RuntimeWarning, match="ridge"):
        ps = fit_propensity(df, treatment="treatment", covariates=["age", "sex"])
    assert ps.method == "ridge_fallback" and not ps.converged
    assert np.isfinite(ps.logit).all()
    treated = df["treatment"].to_numpy() == 1
    assert ps.score[treated].mean() > 0.5 > ps.score[~treated].mean()


@pytest.mark.parametrize(
    ("values", "message"),
    [([0, 1, np.nan], "missing"), ([0, 2, 1], "only 0 and 1"), ([0, 0, 0], "both")],
)
def test_bad_treatment(values, message) -> None:
    df = pd.DataFrame({"treatment": values, "age": [30.0, 40.0, 50.0]})
    with pytest.raises(ValueError, match=message) as err:
        fit_propensity(df, treatment="treatment", covariates=["age"])
    assert "treatment column 'treatment'" in str(err.value)


def test_missing_columns_are_named() -> None:
    """A missing column: one line naming the argument and the column."""
    df = pd.DataFrame({"treat": [0, 1, 0, 1], "age": [30.0, 40.0, 50.0, 45.0]})
    with pytest.raises(ColumnError, match="^treatment column 'treatment' is not in the data$"):
        fit_propensity(df, treatment="treatment", covariates=["age"])
    with pytest.raises(ColumnError, match="^covariates column 'sex' is not in the data$"):
        fit_propensity(df, treatment="treat", covariates=["age", "sex"])


def test_transforms_and_levels_are_the_callers() -> None:
    """No column is transformed because of its name; levels follow the caller's order."""
    df = make_cohort(0)
    df = df[df["region"].isin(["south-east", "west"])].reset_index(drop=True)
    plain = fit_propensity(df, treatment="treatment", covariates=COVARIATES)
    assert "baseline_charges" in plain.coefficients
    assert "baseline_charges_log1p" not in plain.coefficients
    assert plain.transforms == {} and plain.levels == {}
    # default level order is sorted: "south-east" is the reference level
    assert "region_west" in plain.coefficients and "region_south-east" not in plain.coefficients
    flipped = fit_propensity(
        df, treatment="treatment", covariates=COVARIATES, levels={"region": ("west", "south-east")}
    )
    assert "region_west" not in flipped.coefficients
    assert flipped.coefficients["region_south-east"] == pytest.approx(
        -plain.coefficients["region_west"], rel=1e-6
    )
    np.testing.assert_allclose(flipped.score, plain.score, rtol=1e-8)
    logged = fit_propensity(df, treatment="treatment", covariates=COVARIATES, transforms=TRANSFORMS)
    assert logged.coefficients["baseline_charges_log1p"] > 0
    assert "baseline_charges" not in logged.coefficients


@pytest.mark.parametrize("case", ["plain", "rare", "separated", "collinear", "tiny"])
def test_direct_newton_is_statsmodels_to_the_last_bit(case: str) -> None:
    """``_newton_logit`` gives statsmodels' Newton coefficients exactly (``array_equal``), the
    same convergence, and the same ``LinAlgError`` where statsmodels raises one."""
    from analysis.design.propensity import _newton_logit

    rng = np.random.default_rng(["plain", "rare", "separated", "collinear", "tiny"].index(case))
    n, p = (40, 2) if case == "tiny" else (3000, 8)
    X = rng.standard_normal((n, p))
    shift = -4.0 if case == "rare" else 0.0
    y = (rng.random(n) < 1 / (1 + np.exp(-(X[:, 0] - X[:, 1] + shift)))).astype(float)
    if case == "separated":
        y = (X[:, 0] > 0).astype(float)
    if case == "collinear":
        X[:, 2] = X[:, 0] + X[:, 1]
    exog = np.column_stack([np.ones(n), X])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = sm.Logit(y, exog).fit(method="newton", maxiter=100, disp=0)
        except np.linalg.LinAlgError:
            with pytest.raises(np.linalg.LinAlgError):
                _newton_logit(y, exog)
            return
        params, converged = _newton_logit(y, exog)
    assert np.array_equal(params, np.asarray(res.params), equal_nan=True)
    assert converged == res.mle_retvals["converged"]


def _separated_rows_by_loop(X, y, names):
    """The plain loop ``_separated_rows`` computes by cell counts (its earlier code)."""
    n, p = X.shape
    binary = [j for j in range(p) if np.isin(X[:, j], (0.0, 1.0)).all()]
    active, fixed, reasons, changed = np.ones(n, dtype=bool), np.full(n, np.nan), {}, True
    while changed:
        changed = False
        for j in binary:
            for v in (1.0, 0.0):
                rows = active & (X[:, j] == v)
                if not rows.any() or not active[~rows].any():
                    continue
                ys = y[rows]
                if ys.min() == ys.max():
                    fixed[rows] = ys[0]
                    active &= ~rows
                    group = "treated" if ys[0] == 1 else "controls"
                    reasons[names[j]] = f"separation: all {group} where {names[j]} == {v:g}"
                    changed = True
    return active, fixed, reasons


@pytest.mark.parametrize("seed", range(8))
def test_separated_rows_as_the_plain_loop(seed: int) -> None:
    from analysis.design.propensity import _separated_rows

    rng = np.random.default_rng(seed)
    n = 300
    X = np.column_stack(
        [rng.random(n) < q for q in rng.choice([0.01, 0.05, 0.3, 0.5, 0.97], 6)]
        + [rng.standard_normal(n)]
    ).astype(float)
    y = (rng.random(n) < np.where(X[:, 0] == 1, 0.0, np.where(X[:, 1] == 1, 1.0, 0.3))).astype(
        float
    )
    names = [f"x{j}" for j in range(X.shape[1])]
    got, expected = _separated_rows(X, y, names), _separated_rows_by_loop(X, y, names)
    assert np.array_equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1], equal_nan=True)
    assert got[2] == expected[2] and list(got[2]) == list(expected[2])
