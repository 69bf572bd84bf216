"""Tests of analysis.design.missing: the design matrix with missing indicators."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis._checks import ColumnError
from analysis.design.missing import (
    design_matrix,
    restricted_cubic_spline,
    spline_knots,
)
from evaluation.study_design import COVARIATES, LEVELS, TRANSFORMS
from tests.test_propensity import DESIGN, make_cohort

#: the level orders of the small table below (a data contract's order, passed by the caller)
SMALL_LEVELS = {"sex": ("F", "M"), "region": ("south-east", "west", "central", "north")}


def small() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "person_id": ["a", "b", "c", "d"],
            "sex": ["M", "F", "M", "M"],
            "region": ["west", "north", "south-east", "west"],
            "age": [30.0, 40.0, 50.0, 60.0],
            "homeless": [1.0, np.nan, 0.0, 0.0],
            "years_opioid_use": [np.nan, 10.0, 20.0, np.nan],
            "baseline_charges": [0, 3, 1, 7],
            "injecting": [1.0, 1.0, 1.0, 1.0],
        }
    )


def test_study_design_vocabulary() -> None:
    """The study's covariates and how they enter, passed at every call site."""
    assert COVARIATES == (
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
    assert dict(TRANSFORMS) == {"baseline_charges": "log1p", "calendar_years": "rcs4"}
    assert dict(LEVELS) == {
        "sex": ("F", "M"),
        "region": ("south-east", "west", "central", "north"),
    }


def test_columns_dummies_indicators_and_fill() -> None:
    df = small()
    X = design_matrix(
        df,
        ["age", "sex", "region", "homeless", "years_opioid_use", "baseline_charges", "injecting"],
        transforms={"baseline_charges": "log1p"},
        levels=SMALL_LEVELS,
    )
    # the caller's order of levels, first dropped; indicator right after its covariate;
    # the constant column (injecting) dropped
    assert list(X.columns) == [
        "age",
        "sex_M",
        "region_west",
        "region_north",
        "homeless",
        "homeless_missing",
        "years_opioid_use",
        "years_opioid_use_missing",
        "baseline_charges_log1p",
    ]
    assert (X.dtypes == np.float64).all()
    assert not X.isna().any().any()
    np.testing.assert_array_equal(X["sex_M"], [1, 0, 1, 1])
    np.testing.assert_array_equal(X["region_north"], [0, 1, 0, 0])
    np.testing.assert_array_equal(X["homeless"], [1.0, 1 / 3, 0.0, 0.0])  # observed mean
    np.testing.assert_array_equal(X["homeless_missing"], [0, 1, 0, 0])
    np.testing.assert_array_equal(X["years_opioid_use"], [15.0, 10.0, 20.0, 15.0])
    np.testing.assert_array_equal(X["years_opioid_use_missing"], [1, 0, 0, 1])
    np.testing.assert_allclose(X["baseline_charges_log1p"], np.log1p([0, 3, 1, 7]))
    assert X.attrs["source"]["homeless_missing"] == "homeless"
    assert X.attrs["source"]["region_north"] == "region"


def test_all_levels_when_not_dropping_first() -> None:
    X = design_matrix(small(), ["sex", "region"], drop_first=False, levels=SMALL_LEVELS)
    assert list(X.columns) == ["sex_F", "sex_M", "region_south-east", "region_west", "region_north"]
    np.testing.assert_array_equal(X.sum(axis=1), 2.0)
    # without levels: sorted; levels not listed follow the listed ones, sorted
    X = design_matrix(small(), ["region"], drop_first=False)
    assert list(X.columns) == ["region_north", "region_south-east", "region_west"]
    X = design_matrix(small(), ["region"], drop_first=False, levels={"region": ["west"]})
    assert list(X.columns) == ["region_west", "region_north", "region_south-east"]


def test_no_indicator_without_missing_values() -> None:
    X = design_matrix(make_cohort(0), **DESIGN)
    assert "age_missing" not in X and "injecting_missing" not in X
    assert {"years_opioid_use_missing", "prior_ost_episodes_missing", "homeless_missing"} <= set(X)


def test_column_order_does_not_depend_on_row_order() -> None:
    df = make_cohort(1)
    X = design_matrix(df, **DESIGN)
    Xs = design_matrix(df.sample(frac=1, random_state=3), **DESIGN)
    assert list(X.columns) == list(Xs.columns)
    pd.testing.assert_frame_equal(X, Xs.loc[X.index])


def test_reference_fixes_columns_and_fill_values() -> None:
    df = small()
    sub = df.iloc[[0, 3]]  # homeless observed only, region west only
    X = design_matrix(
        sub, ["region", "homeless", "years_opioid_use"], reference=df, levels=SMALL_LEVELS
    )
    assert list(X.columns) == [
        "region_west",
        "region_north",
        "homeless",
        "homeless_missing",
        "years_opioid_use",
        "years_opioid_use_missing",
    ]
    np.testing.assert_array_equal(X["years_opioid_use"], [15.0, 15.0])  # fill of the reference


def test_level_unseen_in_reference_is_refused() -> None:
    df = small()
    other = df.assign(region=["west", "west", "west", "central"])
    with pytest.raises(ValueError, match="central"):
        design_matrix(other, ["region"], reference=df)


def test_missing_categorical_gets_its_own_column() -> None:
    df = small().assign(sex=["M", None, "F", "M"])
    X = design_matrix(df, ["sex"])
    assert list(X.columns) == ["sex_M", "sex_missing"]
    np.testing.assert_array_equal(X["sex_missing"], [0, 1, 0, 0])


def test_unknown_covariate() -> None:
    with pytest.raises(KeyError, match="nope"):
        design_matrix(small(), ["nope"])
    with pytest.raises(ColumnError, match="^covariates column 'nope' is not in the data$"):
        design_matrix(small(), ["age", "nope"])
    with pytest.raises(ColumnError, match="'age' is not in the reference data"):
        design_matrix(small(), ["age"], reference=small().drop(columns="age"))


def test_no_transformation_because_of_a_name() -> None:
    """``baseline_charges`` and ``calendar_years`` enter as they are unless asked."""
    df = small().assign(calendar_years=[0.0, 1.0, 2.5, 3.0])
    X = design_matrix(df, ["baseline_charges", "calendar_years"])
    assert list(X.columns) == ["baseline_charges", "calendar_years"]
    np.testing.assert_array_equal(X["baseline_charges"], [0, 3, 1, 7])
    # any numeric column may be transformed
    X = design_matrix(df, ["age"], transforms={"age": "log1p", "not_a_covariate": "log1p"})
    np.testing.assert_allclose(X["age_log1p"], np.log1p([30.0, 40.0, 50.0, 60.0]))


def test_bad_transforms() -> None:
    with pytest.raises(ValueError, match="sqrt"):
        design_matrix(small(), ["age"], transforms={"age": "sqrt"})
    with pytest.raises(ValueError, match="categorical"):
        design_matrix(small(), ["sex"], transforms={"sex": "log1p"})
    with pytest.raises(TypeError, match="sequence"):
        design_matrix(small(), "age")


def test_calendar_time_enters_as_a_restricted_cubic_spline() -> None:
    rng = np.random.default_rng(3)
    years = rng.uniform(0, 4, 500)
    df = pd.DataFrame({"calendar_years": years})
    rcs = {"calendar_years": "rcs4"}
    X = design_matrix(df, ["calendar_years"], transforms=rcs)
    assert list(X.columns) == ["calendar_years", "calendar_years_rcs1", "calendar_years_rcs2"]
    np.testing.assert_array_equal(X["calendar_years"], years)
    knots = spline_knots(years, 4)
    np.testing.assert_allclose(knots, np.quantile(years, [0.05, 0.35, 0.65, 0.95]))
    # a subsample is described with the knots of its reference
    sub = design_matrix(df.iloc[:50], ["calendar_years"], reference=df, transforms=rcs)
    np.testing.assert_allclose(sub.to_numpy(), X.iloc[:50].to_numpy())
    # 3 and 5 knots: 1 and 3 nonlinear columns
    for n_knots in (3, 5):
        Xn = design_matrix(df, ["calendar_years"], transforms={"calendar_years": f"rcs{n_knots}"})
        assert Xn.shape[1] == n_knots - 1


def test_restricted_cubic_spline_is_a_natural_spline() -> None:
    """C2 at the knots, cubic between them, linear beyond the outer knots, zero before."""
    knots = np.array([0.2, 1.0, 1.7, 3.5])
    basis = restricted_cubic_spline
    h = 1e-3
    for j in range(2):

        def f(x, j=j):
            return basis(np.atleast_1d(np.asarray(x, dtype=float)), knots)[:, j]

        grid = np.linspace(-1, 5, 601)
        second = (f(grid + h) - 2 * f(grid) + f(grid - h)) / h**2
        assert np.abs(second[grid < knots[0] - h]).max() < 1e-6
        assert np.abs(second[grid > knots[-1] + h]).max() < 1e-6
        assert np.abs(f(grid[grid < knots[0]])).max() == 0
        # second derivative continuous across every knot (C2)
        for t in knots:
            left = (f(t - h) - 2 * f(t - 2 * h) + f(t - 3 * h)) / h**2
            right = (f(t + 3 * h) - 2 * f(t + 2 * h) + f(t + h)) / h**2
            assert left == pytest.approx(right, abs=1e-2)
        # not linear inside
        assert np.abs(second[(grid > knots[0]) & (grid < knots[-1])]).max() > 0.05
    assert basis(np.arange(3.0), knots[:2]).shape == (3, 0)  # fewer than 3 knots: linear only


def test_calendar_time_with_one_date_has_no_spline_column() -> None:
    df = pd.DataFrame({"calendar_years": [0.0, 0.0, 0.0], "age": [30.0, 40.0, 50.0]})
    X = design_matrix(df, ["calendar_years", "age"], transforms={"calendar_years": "rcs4"})
    assert list(X.columns) == ["age"]
