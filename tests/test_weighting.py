"""Tests of analysis.design.weighting: ATT odds weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis._checks import ColumnError
from analysis.design.balance import compare_balance, effective_sample_size
from analysis.design.weighting import att_weights
from tests.test_propensity import DESIGN, make_cohort, with_scores

#: the columns of the test cohort
COLUMNS = {"treatment": "treatment", "score": "ps", "id": "person_id"}


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return with_scores(make_cohort(1))


def test_odds_weights_normalised_to_the_treated(cohort) -> None:
    w = att_weights(cohort, treatment="treatment", score="ps", id="person_id")
    d = w.data
    assert list(d.columns) == ["person_id", "treatment", "weight", "score"]
    assert (d["person_id"].to_numpy() == cohort["person_id"].to_numpy()).all()
    t = d["treatment"] == 1
    assert (d.loc[t, "weight"] == 1).all()
    e = cohort.loc[~t.to_numpy(), "ps"].to_numpy()
    odds = e / (1 - e)
    np.testing.assert_allclose(d.loc[~t, "weight"], odds * t.sum() / odds.sum())
    assert d.loc[~t, "weight"].sum() == pytest.approx(t.sum())
    # a region without HAT: propensity 0, weight 0
    no_hat = cohort["region"].isin(["central", "north"]).to_numpy()
    assert (d.loc[no_hat, "weight"] == 0).all()
    assert w.n_zero == no_hat.sum()
    assert w.info()["n_treated"] == t.sum()


def test_ess(cohort) -> None:
    w = att_weights(cohort, **COLUMNS)
    wc = w.data.loc[w.data["treatment"] == 0, "weight"].to_numpy()
    assert w.ess_control == pytest.approx(wc.sum() ** 2 / (wc**2).sum())
    assert w.ess_treated == pytest.approx(w.n_treated)
    assert w.ess_control < (wc > 0).sum()
    assert effective_sample_size([1.0, 1.0, 1.0, 1.0]) == 4.0
    assert effective_sample_size([3.0, 1.0]) == pytest.approx(16 / 10)
    assert effective_sample_size(2.5 * wc) == pytest.approx(effective_sample_size(wc))
    assert np.isnan(effective_sample_size([0.0, 0.0]))


def test_weighting_balances_the_means(cohort) -> None:
    w = att_weights(cohort, **COLUMNS)
    weighted = cohort.merge(w.data[["person_id", "weight"]], on="person_id")
    b = compare_balance(cohort, weighted, treatment="treatment", **DESIGN, weights="weight")
    assert (b["smd_before"].abs() > 0.2).any()
    assert (b["smd_after"].abs() < 0.1).all(), b.loc[b["smd_after"].abs() >= 0.1]


def test_trimming_caps_control_weights(cohort) -> None:
    w = att_weights(cohort, **COLUMNS, trim=0.95)
    e = cohort.loc[cohort["treatment"] == 0, "ps"].to_numpy()
    odds = e / (1 - e)
    cap = np.quantile(odds, 0.95)
    assert w.cap == pytest.approx(cap)
    assert w.n_trimmed == (odds > cap).sum() > 0
    capped = np.minimum(odds, cap)
    wc = w.data.loc[w.data["treatment"] == 0, "weight"].to_numpy()
    np.testing.assert_allclose(wc, capped * w.n_treated / capped.sum())
    assert w.ess_control > att_weights(cohort, **COLUMNS).ess_control


def test_score_as_array_and_row_order(cohort) -> None:
    a = att_weights(cohort, **COLUMNS).data.set_index("person_id")
    sh = cohort.sample(frac=1, random_state=4)
    b = att_weights(sh, **{**COLUMNS, "score": sh["ps"].to_numpy()}).data.set_index("person_id")
    np.testing.assert_allclose(a["weight"], b.loc[a.index, "weight"], rtol=1e-12)


def test_without_id_and_other_names(cohort) -> None:
    """Without ``id`` the weights are in row order; the treatment column keeps its name."""
    renamed = cohort.rename(columns={"treatment": "treat", "ps": "e"})
    w = att_weights(renamed, treatment="treat", score="e")
    assert list(w.data.columns) == ["treat", "weight", "score"]
    np.testing.assert_array_equal(w.data["weight"], att_weights(cohort, **COLUMNS).data["weight"])
    assert w.info()["n_control"] == (cohort["treatment"] == 0).sum()


@pytest.mark.parametrize(("role", "name"), [("treatment", "treat"), ("score", "e"), ("id", "pid")])
def test_missing_column_names_argument_and_column(cohort, role, name) -> None:
    with pytest.raises(ColumnError, match=f"^{role} column '{name}' is not in the data$"):
        att_weights(cohort, **{**COLUMNS, role: name})


@pytest.mark.parametrize(
    ("scores", "trim", "message"),
    [
        ([0.5, 0.2, np.nan], None, "probability"),
        ([0.5, 0.2, 1.2], None, "probability"),
        ([0.5, 1.0, 0.2], None, "infinite"),
        ([0.5, 0.2, 0.3], 0.4, "trim"),
        ([0.5, 0.0, 0.0], None, "weight 0"),
    ],
)
def test_bad_input(scores, trim, message) -> None:
    df = pd.DataFrame({"person_id": ["a", "b", "c"], "treatment": [1, 0, 0], "ps": scores})
    with pytest.raises(ValueError, match=message):
        att_weights(df, **COLUMNS, trim=trim)


def test_bad_treatment() -> None:
    df = pd.DataFrame({"treatment": [1, 0, 2], "ps": [0.5, 0.2, 0.3]})
    with pytest.raises(ValueError, match="treatment column 'treatment' must hold only 0 and 1"):
        att_weights(df, treatment="treatment", score="ps")


def test_column_names_that_clash() -> None:
    df = pd.DataFrame({"weight": [1, 0, 0], "ps": [0.5, 0.2, 0.3], "pid": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="treatment column 'weight'.*rename"):
        att_weights(df, treatment="weight", score="ps")
    df = df.rename(columns={"weight": "t", "pid": "score"})
    with pytest.raises(ValueError, match="id column 'score'.*rename"):
        att_weights(df, treatment="t", score="ps", id="score")
