"""Tests of analysis.design.balance (SMD, variance ratio, summaries) and the design figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis._checks import ColumnError
from analysis.design.balance import (
    balance_reference,
    balance_summary,
    balance_table,
    compare_balance,
)
from analysis.design.descriptives import baseline_table
from analysis.design.matching import match
from evaluation.figures_design import GROUP_COLOURS, love_plot, ps_overlap_plot
from tests.test_propensity import DESIGN, make_cohort, with_scores


def hand() -> pd.DataFrame:
    """Treated ages 30, 40, 50; control ages 20, 30, 40, 50; injecting known by hand."""
    return pd.DataFrame(
        {
            "person_id": list("abcdefg"),
            "treatment": [1, 1, 1, 0, 0, 0, 0],
            "age": [30.0, 40.0, 50.0, 20.0, 30.0, 40.0, 50.0],
            "injecting": [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        }
    )


def test_hand_computed_smd_and_variance_ratio() -> None:
    b = balance_table(hand(), treatment="treatment", covariates=["age", "injecting"])
    b = b.set_index("variable")
    # age: means 40 and 35, variances 100 and 166.67 (ddof=1)
    sd = np.sqrt((100 + 500 / 3) / 2)
    assert b.loc["age", "mean_treated"] == 40 and b.loc["age", "mean_control"] == 35
    assert b.loc["age", "sd_pooled"] == pytest.approx(sd)
    assert b.loc["age", "smd"] == pytest.approx(5 / sd)
    assert b.loc["age", "variance_ratio"] == pytest.approx(100 / (500 / 3))
    # injecting: 2/3 vs 1/4, variances 1/3 and 1/4 (ddof=1)
    sd = np.sqrt((1 / 3 + 1 / 4) / 2)
    assert b.loc["injecting", "smd"] == pytest.approx((2 / 3 - 1 / 4) / sd)
    assert b.loc["injecting", "binary"] and not b.loc["age", "binary"]


def test_a_reference_expanded_once_gives_the_same_tables() -> None:
    df = hand().assign(sex=list("FMFMMFM"))
    covs = ["age", "injecting", "sex"]
    ref = balance_reference(df, treatment="treatment", covariates=covs)
    sub = df.iloc[[0, 1, 2, 5, 6]]
    w = np.array([1, 2, 1, 0.5, 1.0])
    pd.testing.assert_frame_equal(
        balance_table(df, treatment="treatment", covariates=covs, reference=ref),
        balance_table(df, treatment="treatment", covariates=covs),
    )
    pd.testing.assert_frame_equal(
        balance_table(sub, treatment="treatment", covariates=covs, weights=w, reference=ref),
        balance_table(sub, treatment="treatment", covariates=covs, weights=w, reference=df),
    )
    with pytest.raises(ValueError, match="BalanceReference"):
        balance_table(sub, treatment="treatment", covariates=["age"], reference=ref)


def test_weights_and_the_fixed_denominator() -> None:
    df = hand()
    # weight the controls towards the treated ages: 20 gets 0, others 1
    w = np.array([1, 1, 1, 0, 1, 1, 1.0])
    b = balance_table(df, treatment="treatment", covariates=["age"], weights=w)
    b = b.set_index("variable")
    assert b.loc["age", "mean_control"] == 40
    assert b.loc["age", "smd"] == 0
    # the denominator is the unweighted one, whatever the weights
    assert b.loc["age", "sd_pooled"] == pytest.approx(np.sqrt((100 + 500 / 3) / 2))
    # a subsample described against a reference keeps the reference's denominator
    sub = df.iloc[[0, 1, 2, 5, 6]]
    r = balance_table(sub, treatment="treatment", covariates=["age"], reference=df)
    r = r.set_index("variable")
    assert r.loc["age", "sd_pooled"] == pytest.approx(np.sqrt((100 + 500 / 3) / 2))
    # unit weights = no weights
    cols = {"treatment": "treatment", "covariates": ["age", "injecting"]}
    u = balance_table(df, **cols, weights=np.ones(7))
    pd.testing.assert_frame_equal(u, balance_table(df, **cols))
    # weights as a column name
    pd.testing.assert_frame_equal(u, balance_table(df.assign(w=1.0), **cols, weights="w"))


def test_rows_for_levels_and_missing_indicators() -> None:
    df = make_cohort(0)
    b = balance_table(df, treatment="treatment", **DESIGN)
    assert {"sex_F", "sex_M", "region_south-east", "region_north"} <= set(b["variable"])
    assert {"years_opioid_use_missing", "homeless_missing"} <= set(b["variable"])
    assert b.set_index("variable").loc["homeless_missing", "covariate"] == "homeless"
    assert "baseline_charges_log1p" in set(b["variable"])
    # the transformations are the caller's: none asked, none made
    plain = balance_table(df, treatment="treatment", covariates=DESIGN["covariates"])
    assert "baseline_charges" in set(plain["variable"])
    assert "baseline_charges_log1p" not in set(plain["variable"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"treatment": "treat"}, "^treatment column 'treat' is not in the data$"),
        ({"covariates": ["age", "height"]}, "^covariates column 'height' is not in the data$"),
        ({"weights": "w"}, "^weights column 'w' is not in the data$"),
    ],
)
def test_missing_column_names_argument_and_column(kwargs, message) -> None:
    args = {"treatment": "treatment", "covariates": ["age"], **kwargs}
    with pytest.raises(ColumnError, match=message):
        balance_table(hand(), **args)
    with pytest.raises(ColumnError, match=message):
        compare_balance(hand(), hand(), **args)


def test_bad_treatment() -> None:
    df = hand().assign(treatment=[1, 1, 1, 0, 0, 0, np.nan])
    with pytest.raises(ValueError, match="treatment column 'treatment' has 1 missing"):
        balance_table(df, treatment="treatment", covariates=["age"])


@pytest.fixture(scope="module")
def comparison():
    df = with_scores(make_cohort(2))
    m = match(
        df, treatment="treatment", score="ps_logit", id="person_id", k=4, caliper=0.2,
        exact=("region",),
    )  # fmt: skip
    after = df.merge(m.data[["person_id", "weight"]], on="person_id")
    return df, m, compare_balance(df, after, treatment="treatment", **DESIGN, weights="weight")


def test_compare_and_summary(comparison) -> None:
    df, m, c = comparison
    assert {"smd_before", "smd_after", "variance_ratio_before", "variance_ratio_after"} <= set(c)
    s = balance_summary(c, share_treated_matched=m.share_treated_matched)
    assert s.max_abs_smd_before == pytest.approx(c["smd_before"].abs().max())
    assert s.max_abs_smd_after == pytest.approx(c["smd_after"].abs().max())
    assert s.max_abs_smd_after < 0.1
    assert s.max_abs_smd_before > 0.2
    assert s.n_imbalanced == 0
    assert s.worst_variable in set(c["variable"])
    assert s.share_treated_matched == m.n_treated_matched / m.n_treated
    assert s.to_dict()["threshold"] == 0.1


def test_figures(comparison) -> None:
    df, m, c = comparison
    fig = love_plot(c)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    assert any(np.allclose(line.get_xdata(), 0.1) for line in ax.get_lines())
    assert len(ax.get_yticklabels()) == len(c)
    flag = df["person_id"].isin(m.data["person_id"])
    fig = ps_overlap_plot(df, matched=flag.to_numpy())
    assert isinstance(fig, Figure) and len(fig.axes) >= 2
    assert "not finite" in fig.axes[0].get_title()  # regions without HAT
    assert GROUP_COLOURS == {"HAT": "#D55E00", "OST": "#0072B2"}


def test_baseline_table_levels_labels_and_binary() -> None:
    """Table 1 on any table: the caller chooses levels, labels and 0/1 covariates."""
    df = pd.DataFrame(
        {
            "arm": ["A", "A", "B", "B"],
            "sex": ["F", "M", "F", None],
            "age": [30.0, 40.0, 50.0, np.nan],
            "homeless": [1.0, 0.0, np.nan, 1.0],
            "w": [1.0, 3.0, 1.0, 1.0],
        }
    )
    covs = ["sex", "age", "homeless"]
    t = baseline_table(
        df, group="arm", covariates=covs, levels={"sex": ("F",)}, binary=["homeless"],
        labels={"sex: F": "women"},
    )  # fmt: skip
    got = {(r.variable, r.statistic): (r.A, r.B) for r in t.itertuples()}
    assert list(got) == [
        ("persons", "n"),
        ("women", "%"),
        ("age", "mean"),
        ("age", "SD"),
        ("age", "% missing"),
        ("homeless", "%"),
        ("homeless", "% missing"),
    ]
    assert got[("persons", "n")] == (2.0, 2.0)
    assert got[("women", "%")] == (50.0, 50.0)  # a missing sex is in no level's row
    assert got[("age", "mean")] == (35.0, 50.0)
    assert got[("age", "SD")][0] == 5.0 and np.isnan(got[("age", "SD")][1])
    assert got[("age", "% missing")] == (0.0, 50.0)
    assert got[("homeless", "%")] == (50.0, 100.0)  # of those with a known value
    # defaults: every observed level, sorted, labelled "<covariate>: <level>"; 0/1 as mean
    plain = baseline_table(df, group="arm", covariates=covs)
    assert plain["variable"].tolist()[1:3] == ["sex: F", "sex: M"]
    assert ("homeless", "mean") in set(zip(plain["variable"], plain["statistic"], strict=True))
    weighted = baseline_table(df, group="arm", covariates=["sex"], weights="w")
    assert weighted.iloc[1].tolist() == ["persons", "sum of weights", 4.0, 2.0]
    assert weighted.iloc[2].tolist() == ["sex: F", "%", 25.0, 50.0]
    with pytest.raises(ColumnError, match="^group column 'group' is not in the data$"):
        baseline_table(df, group="group", covariates=covs)
    with pytest.raises(ColumnError, match="^covariates column 'x' is not in the data$"):
        baseline_table(df, group="arm", covariates=["x"])
