"""Streamed risk-set matching: the design, the logistic fit and the matching in pieces.

The streamed analysis (``analysis.design.risk_set_stream``) must give the whole-table
analysis' answer: the design matrix of the concatenated pieces, the propensity
coefficients to about 1e-10, and the same matched sets whatever the size of the pieces.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.data.extract import read_extract
from analysis.data.risk_set_rows import risk_set_source
from analysis.data.risk_sets import ROLE_NOT_ELIGIBLE, derive_risk_sets, iter_risk_sets
from analysis.design.ipcw import censoring_weights
from analysis.design.missing import design_matrix, restricted_cubic_spline
from analysis.design.propensity import fit_propensity
from analysis.design.risk_set_matching import risk_set_match
from analysis.design.risk_set_stream import stream_risk_set_match
from analysis.design.streamed_design import (
    DesignAccumulator,
    Moments,
    _spline,
    compact_frame,
    quantile_of_counts,
)
from analysis.design.streamed_logit import (
    _draw,
    fit_logit_pieces,
    ordered_map,
    subsample_every,
    subsample_rows,
)

TRANSFORMS = {"charges": "log1p", "calendar": "rcs4"}
LEVELS = {"region": ("south-east", "west", "central", "north")}


def _data(n: int = 4000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    region = rng.choice(["west", "south-east", "north"], n)
    homeless = np.where(rng.random(n) < 0.2, np.nan, (rng.random(n) < 0.3).astype(float))
    age = rng.integers(20, 70, n).astype(float)
    charges = rng.poisson(2.0, n).astype(float)
    calendar = rng.integers(0, 400, n) / 365.25
    years = np.where(rng.random(n) < 0.1, np.nan, rng.gamma(3.0, 4.0, n))
    eta = -3 + 0.5 * np.nan_to_num(homeless) + 0.02 * (age - 40) + 0.3 * np.log1p(charges)
    eta += 0.4 * (region == "west") + 0.2 * calendar
    treat = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(np.int64)
    return pd.DataFrame(
        {"region": pd.Categorical(region, categories=LEVELS["region"]), "homeless": homeless,
         "age": age, "charges": charges, "calendar": calendar, "years": years, "treat": treat}
    )  # fmt: skip


COVS = ("region", "homeless", "age", "charges", "calendar", "years")


def _pieces(df: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [df.iloc[i : i + size] for i in range(0, len(df), size)]


def test_quantile_of_counts_is_numpy_quantile() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 1000):
        x = rng.integers(0, 13, n) / 7.0
        v, k = np.unique(x, return_counts=True)
        q = (0.05, 0.35, 0.5, 0.65, 0.95)
        assert np.array_equal(quantile_of_counts(v, k, q), np.quantile(x, q))


@pytest.mark.parametrize("size", [97, 1000, 4000])
def test_design_of_pieces_is_the_design_of_the_whole(size: int) -> None:
    df = _data()
    acc = DesignAccumulator(COVS, transforms=TRANSFORMS, levels=LEVELS)
    for piece in _pieces(df, size):
        acc.add(compact_frame(piece[list(COVS)]))
    for drop_first in (True, False):
        spec = acc.spec(drop_first=drop_first)
        whole = design_matrix(df, COVS, transforms=TRANSFORMS, levels=LEVELS, drop_first=drop_first)
        assert spec.names == list(whole.columns)
        assert spec.sources == [whole.attrs["source"][c] for c in whole.columns]
        got = np.vstack([spec.matrix(p) for p in _pieces(df, size)])
        np.testing.assert_allclose(got, whole.to_numpy(), rtol=0, atol=1e-12)


def test_compact_frame_keeps_every_value() -> None:
    df = _data()[list(COVS)]
    back = compact_frame(df)
    assert back["age"].dtype == np.float16 and back["years"].dtype == np.float64
    for c in COVS:
        a = df[c].to_numpy(np.float64, na_value=np.nan) if c != "region" else df[c].cat.codes
        b = back[c].to_numpy(np.float64, na_value=np.nan) if c != "region" else back[c].cat.codes
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", [333, 4000])
def test_streamed_fit_equals_the_whole_table_fit(size: int) -> None:
    df = _data()
    ps = fit_propensity(
        df, treatment="treat", covariates=COVS, transforms=TRANSFORMS, levels=LEVELS
    )
    acc = DesignAccumulator(COVS, transforms=TRANSFORMS, levels=LEVELS)
    acc.add(df)
    spec = acc.spec()
    y = df["treat"].to_numpy(np.float64)

    def pieces():
        for i in range(0, len(df), size):
            yield spec.matrix(df.iloc[i : i + size]), y[i : i + size]

    fit = fit_logit_pieces(pieces, spec.names, start_rows=500)
    assert list(fit.coefficients.index) == list(ps.coefficients.index)
    np.testing.assert_allclose(fit.coefficients, ps.coefficients, rtol=0, atol=1e-10)
    np.testing.assert_allclose(fit.logit(spec.matrix(df)), ps.logit, rtol=0, atol=1e-10)
    # the start (a subsample fit) changes the path, not the estimate: each is within its
    # last Newton step (below tol = 1e-10) of the maximum
    again = fit_logit_pieces(pieces, spec.names, start_rows=0)
    assert fit.step < 1e-10 and again.step < 1e-10
    np.testing.assert_allclose(again.coefficients, fit.coefficients, rtol=0, atol=2e-10)


def test_streamed_fit_threads_and_chunks() -> None:
    """The start drawn in the first pass (chunk sizes given), chunks as callables on one or
    two threads: the whole-table fit's estimate; the same bits whatever the thread count,
    the same subsample whatever the chunking, the logits at the estimate returned."""
    df = _data(6000, seed=5)
    ps = fit_propensity(
        df, treatment="treat", covariates=COVS, transforms=TRANSFORMS, levels=LEVELS
    )
    acc = DesignAccumulator(COVS, transforms=TRANSFORMS, levels=LEVELS)
    acc.add(df)
    spec = acc.spec()
    X, y = spec.matrix(df), df["treat"].to_numpy(np.float64)
    runs = {}
    for size, threads in ((700, 1), (700, 2), (1500, 2)):
        bounds = list(range(0, len(df), size))
        eta = np.full(len(df), np.nan)

        def put(i: int, e: np.ndarray, bounds=bounds, eta=eta) -> None:
            eta[bounds[i] : bounds[i] + len(e)] = e

        def pieces(size=size):
            return [lambda i=i: (X[i : i + size], y[i : i + size]) for i in range(0, len(df), size)]

        fit = fit_logit_pieces(
            pieces, spec.names, start_rows=300, sizes=[len(y[i : i + size]) for i in bounds],
            threads=threads, logits=put,
        )  # fmt: skip
        assert fit.passes == 1 + fit.iterations  # the start drawn in the first pass
        np.testing.assert_allclose(fit.coefficients, ps.coefficients, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(eta, fit.logit(X))
        runs[size, threads] = fit
    assert runs[700, 1].coefficients.equals(runs[700, 2].coefficients)
    np.testing.assert_allclose(
        runs[1500, 2].coefficients, runs[700, 1].coefficients, rtol=0, atol=2e-10
    )
    # a subsample given by the caller: the first pass also sums the first iteration
    m = subsample_every(len(y), 300)
    rows = subsample_rows(y == 1, 0, m)
    given = fit_logit_pieces(
        lambda: [(X[i : i + 700], y[i : i + 700]) for i in range(0, len(df), 700)],
        spec.names, threads=2, start=(X[rows], y[rows], np.where(y[rows] == 1, 1.0, m)),
    )  # fmt: skip
    assert given.passes == given.iterations
    np.testing.assert_allclose(given.coefficients, ps.coefficients, rtol=0, atol=1e-10)
    draw = [np.concatenate([_draw(X[i : i + k], y[i : i + k], i, 16, 0)[0]
                            for i in range(0, len(df), k)]) for k in (700, 1500)]  # fmt: skip
    np.testing.assert_array_equal(draw[0], draw[1])
    assert 0.03 < (len(draw[0]) - y.sum()) / (len(y) - y.sum()) < 0.1


def test_ordered_map_keeps_the_order() -> None:
    def slow(i: int, x: int) -> int:
        time.sleep(0.001 * (x % 3))
        return x * x

    assert list(ordered_map(slow, range(20), threads=3)) == [x * x for x in range(20)]
    assert list(ordered_map(slow, range(5))) == [0, 1, 4, 9, 16]


def test_spline_of_sorted_values_is_the_spline() -> None:
    x = np.sort(np.random.default_rng(2).integers(0, 300, 5000)) / 365.25
    knots = np.array([0.05, 0.3, 0.5, 0.75])
    np.testing.assert_array_equal(_spline(x, knots), restricted_cubic_spline(x, knots))
    np.testing.assert_array_equal(_spline(x[::-1], knots), restricted_cubic_spline(x[::-1], knots))


def test_streamed_fit_separated_cell_as_the_whole_table_fit() -> None:
    df = _data()
    df.loc[df["region"] == "north", "treat"] = 0  # no treated person in one region
    ps = fit_propensity(
        df, treatment="treat", covariates=COVS, transforms=TRANSFORMS, levels=LEVELS
    )
    acc = DesignAccumulator(COVS, transforms=TRANSFORMS, levels=LEVELS)
    acc.add(df)
    spec = acc.spec()
    X, y = spec.matrix(df), df["treat"].to_numpy(np.float64)
    fit = fit_logit_pieces(lambda: [(X[:1500], y[:1500]), (X[1500:], y[1500:])], spec.names)
    assert fit.n_separated == ps.n_separated > 0
    np.testing.assert_allclose(fit.coefficients, ps.coefficients, rtol=0, atol=1e-10)
    assert np.array_equal(np.isinf(fit.logit(X)), np.isinf(ps.logit))


def test_moments_of_pieces() -> None:
    X = np.random.default_rng(1).normal(5, 2, (1001, 3))
    m = Moments()
    for i in range(0, 1001, 100):
        m.add(X[i : i + 100])
    np.testing.assert_allclose(m.mean, X.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(m.var, X.var(axis=0, ddof=1), rtol=1e-12)


@pytest.fixture(scope="module")
def ci_history(tmp_path_factory):
    from synthetic import generate_extract

    folder = generate_extract("ci", out=tmp_path_factory.mktemp("ci") / "x", seed=1, contract=2)
    return read_extract(folder)


def test_pruned_risk_sets_equal_the_full_grid(ci_history) -> None:
    pruned = derive_risk_sets(ci_history, not_eligible=False).table
    full = derive_risk_sets(ci_history).table
    full = full[full["role"] != ROLE_NOT_ELIGIBLE].reset_index(drop=True)
    pd.testing.assert_frame_equal(pruned, full)
    pieces = list(iter_risk_sets(ci_history, not_eligible=False, max_rows=20_000))
    assert len(pieces) > 1
    pd.testing.assert_frame_equal(pd.concat([p.table for p in pieces], ignore_index=True), pruned)


def test_streamed_matching_equals_the_whole_table_matching(ci_history) -> None:
    from evaluation import study_design
    from evaluation.config import load_config

    plan = load_config(None).target_trial.analysis
    kw = {"covariates": plan.covariates, "k": plan.k, "caliper": plan.caliper,
          "exact": plan.exact, "calendar_time": plan.calendar_time,
          "transforms": study_design.TRANSFORMS, "levels": study_design.LEVELS}  # fmt: skip
    whole = risk_set_match(derive_risk_sets(ci_history, not_eligible=False).table, **kw)
    source = risk_set_source(ci_history)
    runs = [
        stream_risk_set_match(source, max_rows=m, chunk_rows=c, **kw)
        for m, c in ((10_000_000, 1_000_000), (30_000, 5_000), (3_000, 777))
    ]
    assert [r.counts["pieces"] for r in runs][0] == 1 and runs[-1].counts["pieces"] > 5
    cols = list(whole.data.columns)
    for r in runs:
        np.testing.assert_allclose(
            r.propensity.coefficients, whole.propensity.coefficients, rtol=0, atol=1e-9
        )
        # the estimate is within its last Newton step (below 1e-10) of the maximum
        assert r.caliper_width == pytest.approx(whole.matched.caliper_width, rel=1e-10)
        pd.testing.assert_frame_equal(
            r.pairs.drop(columns="distance"), whole.matched.pairs.drop(columns="distance")
        )
        pd.testing.assert_frame_equal(
            r.data[cols].drop(columns=["ps", "ps_logit"]),
            whole.data.drop(columns=["ps", "ps_logit"]),
        )
        np.testing.assert_allclose(r.data["ps_logit"], whole.data["ps_logit"], atol=1e-9)
        b, wb = r.balance(), whole.balance()
        assert list(b["variable"]) == list(wb["variable"])
        np.testing.assert_allclose(
            b.drop(columns="variable").to_numpy(float),
            wb.drop(columns="variable").to_numpy(float),
            rtol=1e-9,
            atol=1e-12,
        )
        info, winfo = r.info(), whole.info()
        for key in ("n_risk_sets", "n_treated_matched", "n_control_rows_matched",
                    "n_candidate_rows", "n_candidate_persons", "n_sets_complete"):  # fmt: skip
            assert info[key] == winfo[key], key
    # every piece size gives the same matched sets, bit for bit
    for r in runs[1:]:
        pd.testing.assert_frame_equal(r.pairs, runs[0].pairs)


def test_censoring_weights_beyond_the_float_range_are_inf_without_warning() -> None:
    n = 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = censoring_weights(np.zeros(n, np.int64), np.zeros(n), np.full(n, 1 - 1e-12))
    assert w[0] == 1.0 and np.isinf(w[-1]) and np.isfinite(w[30])
    finite = w[np.isfinite(w)]
    assert np.all(np.diff(finite) > 0) and np.isinf(w[len(finite) :]).all()
