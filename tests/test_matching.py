"""Tests of analysis.design.matching: greedy 1:k nearest-neighbour matching on the logit PS."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis._checks import ColumnError
from analysis.design.balance import compare_balance
from analysis.design.matching import (
    REASON_CALIPER,
    REASON_NO_STRATUM,
    REASON_NOT_FINITE,
    REASON_USED,
    caliper_width,
    match,
)
from tests.test_propensity import DESIGN, make_cohort, with_scores

#: the columns of the test tables
COLUMNS = {"treatment": "treatment", "score": "ps_logit", "id": "person_id"}


def match_region(df, **kwargs):
    """1:k matching as the study does it: caliper 0.2 SD of the logit, exact on region
    (each overridable)."""
    return match(df, **{**COLUMNS, "caliper": 0.2, "exact": ("region",), **kwargs})


def naive_greedy(df, *, k, caliper, exact=("region",), replace=False, rng=None):
    """Reference: the textbook sequential greedy algorithm, one treated at a time.

    Treated in order of descending score (ties by person_id), or with ``rng`` in
    :func:`match`'s random order; without replacement in k rounds (every treated gets a
    first control before any gets a second); nearest unused control in the same stratum
    within the caliper, ties by person_id.
    """
    ids = df["person_id"].to_numpy()
    s = df["ps_logit"].to_numpy(float)
    tr = df["treatment"].to_numpy() == 1
    strata = df[list(exact)].astype(str).agg("|".join, axis=1).to_numpy()
    w = caliper_width(s, tr, caliper)
    order = sorted(np.flatnonzero(tr & np.isfinite(s)), key=lambda i: (-s[i], ids[i]))
    if rng is not None:
        by_id = sorted(np.flatnonzero(tr), key=lambda i: ids[i])
        order = [i for i in np.random.default_rng(rng).permutation(by_id) if np.isfinite(s[i])]
    ci = np.flatnonzero(~tr & np.isfinite(s))
    used = np.zeros(len(df), bool)
    out = []
    active = order
    for r in range(1 if replace else k):
        nxt = []
        for t in active:
            c = ci[(strata[ci] == strata[t]) & ~used[ci]]
            d = np.abs(s[c] - s[t])
            c = sorted(c[d <= w], key=lambda j: (abs(s[j] - s[t]), ids[j]))
            take = c[:k] if replace else c[:1]
            for j, cj in enumerate(take):
                out.append((ids[t], ids[cj], r + j + 1))
                used[cj] = not replace
            if take:
                nxt.append(t)
        active = nxt
    pairs = pd.DataFrame(out, columns=["treated_id", "control_id", "round"])
    return pairs.sort_values(["treated_id", "round"], ignore_index=True)


def our_pairs(m):
    cols = ["treated_id", "control_id", "round"]
    return m.pairs[cols].sort_values(["treated_id", "round"], ignore_index=True)


def tiny() -> pd.DataFrame:
    """Two treated, four controls, one region; nearest neighbours checked by hand."""
    return pd.DataFrame(
        {
            "person_id": ["A", "B", "c1", "c2", "c3", "c4"],
            "treatment": [1, 1, 0, 0, 0, 0],
            "region": "west",
            "ps_logit": [0.0, 0.1, 0.06, -0.2, 0.5, 0.06],
        }
    )


def test_tiny_hand_checked_example() -> None:
    # B (higher score) goes first: c1 and c4 are both 0.04 away, tie -> c1 (id order).
    # A: c1 taken; c4 is 0.06 away, c2 0.2 away -> c4.
    m = match_region(tiny(), k=1, caliper=None)
    got = m.pairs.set_index("treated_id")
    assert got.loc["B", "control_id"] == "c1" and got.loc["A", "control_id"] == "c4"
    np.testing.assert_allclose(got.loc["B", "distance"], 0.04)
    np.testing.assert_allclose(got.loc["A", "distance"], 0.06)
    # sets are numbered by treated person_id
    assert got.loc["A", "match_set"] == 0 and got.loc["B", "match_set"] == 1
    # k=2: round 1 as above; round 2, B first: c2 is 0.3 away, c3 0.4 -> c2; A: c3 is left
    m2 = match_region(tiny(), k=2, caliper=None)
    p = m2.pairs.set_index(["treated_id", "round"])["control_id"]
    assert p.to_dict() == {("A", 1): "c4", ("A", 2): "c3", ("B", 1): "c1", ("B", 2): "c2"}


def test_tiny_caliper() -> None:
    df = tiny()
    s, t = df["ps_logit"].to_numpy(), df["treatment"].to_numpy() == 1
    pooled = np.sqrt((np.var(s[t], ddof=1) + np.var(s[~t], ddof=1)) / 2)
    # pooled SD 0.2114. caliper 0.3 SD = 0.063: B -> c1 (0.04), A -> c4 (0.06)
    m = match_region(df, k=2, caliper=0.3)
    assert m.caliper_width == pytest.approx(0.3 * pooled)
    assert pooled == pytest.approx(0.21138, abs=1e-5)
    assert set(m.pairs["control_id"]) == {"c1", "c4"}
    assert (m.pairs["round"] == 1).all()  # nobody has a second control within 0.063
    # caliper 0.2 SD = 0.042: B -> c1 (0.04); A's nearest controls are 0.06 away
    m = match_region(df, k=1, caliper=0.2)
    assert m.pairs["treated_id"].tolist() == ["B"]
    assert m.unmatched.set_index("person_id")["reason"].to_dict() == {"A": REASON_CALIPER}
    # A's only control within the caliper goes to B, who comes first
    df = df.assign(ps_logit=[0.0, 0.1, 0.05, -0.2, 0.5, 0.2])
    m = match_region(df, k=1, caliper=0.5)
    assert 0.05 < m.caliper_width < 0.2
    assert m.pairs.set_index("treated_id")["control_id"].to_dict() == {"B": "c1"}
    assert m.unmatched.set_index("person_id")["reason"].to_dict() == {"A": REASON_USED}


def test_used_and_no_stratum_reasons() -> None:
    df = pd.DataFrame(
        {
            "person_id": ["A", "B", "C", "D", "c1"],
            "treatment": [1, 1, 1, 1, 0],
            "region": ["west", "west", "north", "west", "west"],
            "ps_logit": [0.0, 0.01, 0.0, np.inf, 0.0],
        }
    )
    m = match_region(df, k=1, caliper=None)
    reasons = m.unmatched.set_index("person_id")["reason"].to_dict()
    assert reasons == {"A": REASON_USED, "C": REASON_NO_STRATUM, "D": REASON_NOT_FINITE}
    # B has the higher score, so it goes first
    assert m.pairs[["treated_id", "control_id"]].values.tolist() == [["B", "c1"]]


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    return with_scores(make_cohort(0))


@pytest.fixture(scope="module")
def matched(cohort):
    return match_region(cohort, k=4)


def test_caliper_exact_and_no_reuse(cohort, matched) -> None:
    m = matched
    s = cohort.set_index("person_id")["ps_logit"]
    region = cohort.set_index("person_id")["region"]
    p = m.pairs
    np.testing.assert_allclose(
        p["distance"], np.abs(s[p["treated_id"]].to_numpy() - s[p["control_id"]].to_numpy())
    )
    assert (p["distance"] <= m.caliper_width).all()
    assert m.caliper_width == pytest.approx(
        caliper_width(cohort["ps_logit"].to_numpy(), cohort["treatment"].to_numpy() == 1, 0.2)
    )
    assert (region[p["treated_id"]].to_numpy() == region[p["control_id"]].to_numpy()).all()
    assert not p["control_id"].duplicated().any()
    assert p.groupby("treated_id").size().max() <= 4
    # one row per matched person, consistent counts
    assert not m.data["person_id"].duplicated().any()
    assert m.n_treated == (cohort["treatment"] == 1).sum()
    assert m.n_treated_matched == p["treated_id"].nunique() == (m.data["treatment"] == 1).sum()
    assert m.n_control_matched == p["control_id"].nunique() == (m.data["treatment"] == 0).sum()
    assert m.n_treated_matched + len(m.unmatched) == m.n_treated
    assert set(m.unmatched["reason"]) <= {REASON_CALIPER, REASON_USED}
    assert m.cluster == "match_set"
    assert m.info()["n_treated_matched"] == m.n_treated_matched


def test_matches_the_sequential_greedy_algorithm(cohort, matched) -> None:
    pd.testing.assert_frame_equal(our_pairs(matched), naive_greedy(cohort, k=4, caliper=0.2))


@pytest.mark.parametrize("seed", range(12))
def test_matches_sequential_greedy_with_ties(seed) -> None:
    """Rounded scores give many exact ties; small strata exhaust candidate lists."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(30, 250))
    nt = int(rng.integers(3, n // 2))
    df = pd.DataFrame(
        {
            "person_id": [f"p{i:04d}" for i in rng.permutation(n)],
            "treatment": (np.arange(n) < nt).astype(int),
            "region": rng.choice(["a", "b", "c"], n),
            "ps_logit": np.round(rng.normal(size=n) * 2 + (np.arange(n) < nt) * 1.5, seed % 2),
        }
    )
    k = int(rng.integers(1, 6))
    caliper = [None, 0.2, 0.05][seed % 3]
    m = match_region(df, k=k, caliper=caliper)
    pd.testing.assert_frame_equal(our_pairs(m), naive_greedy(df, k=k, caliper=caliper))
    r = match_region(df, k=k, caliper=caliper, replace=True)
    pd.testing.assert_frame_equal(
        our_pairs(r), naive_greedy(df, k=k, caliper=caliper, replace=True)
    )


@pytest.mark.parametrize("batch", [1, 3, 5, 1000])
def test_internal_limits_do_not_change_the_result(monkeypatch, batch) -> None:
    """Tiny blocks of treated persons force every commit and union-find path."""
    import analysis.design._nearest as nearest

    monkeypatch.setattr(nearest, "BATCH_SIZE", batch)
    for seed in range(6):
        rng = np.random.default_rng(100 + seed)
        n = int(rng.integers(40, 200))
        nt = n // 3
        df = pd.DataFrame(
            {
                "person_id": [f"p{i:04d}" for i in rng.permutation(n)],
                "treatment": (np.arange(n) < nt).astype(int),
                "region": rng.choice(["a", "b"], n),
                "ps_logit": np.round(rng.normal(size=n) + (np.arange(n) < nt) * 1.5, 1),
            }
        )
        k, caliper = 1 + seed % 4, [None, 0.5][seed % 2]
        m = match_region(df, k=k, caliper=caliper)
        pd.testing.assert_frame_equal(our_pairs(m), naive_greedy(df, k=k, caliper=caliper))


#: score values that tie in many ways: equal scores, controls exactly as far on both sides
#: (0.25 and 0.75 around 0.5; 0.4 and 0.6 around 0.5 in floating point), and different
#: scores at the same floating-point distance (0.3 - 1e-17 == 0.3 - 2e-17 == 0.6 - 0.3)
TIE_VALUES = np.array([0.0, 1e-17, 2e-17, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, -0.5, 1.5])


@pytest.mark.parametrize("block", range(4))
def test_property_tie_heavy_inputs_match_the_plain_loop(monkeypatch, block) -> None:
    """Many random tie-heavy inputs: identical pairs to the plain sequential loop, with
    and without replacement, in descending and random order, with and without caliper
    and strata, and with small blocks of treated persons."""
    import analysis.design._nearest as nearest

    for seed in range(25 * block, 25 * block + 25):
        rng = np.random.default_rng(1000 + seed)
        monkeypatch.setattr(nearest, "BATCH_SIZE", int(rng.choice([2, 7, 4096])))
        n = int(rng.integers(10, 160))
        nt = int(rng.integers(1, n))
        kind = seed % 3
        if kind == 0:  # few distinct values with every kind of tie
            score = rng.choice(TIE_VALUES, n)
        elif kind == 1:  # rounded scores: thousands share a value at scale
            score = np.round(rng.normal(size=n) + (np.arange(n) < nt) * rng.uniform(0, 2), 1)
        else:  # integers and halves: midpoints exactly between two values
            score = rng.integers(-4, 5, n) / 2
        df = pd.DataFrame(
            {
                "person_id": [f"p{i:04d}" for i in rng.permutation(n)],
                "treatment": (np.arange(n) < nt).astype(int),
                "region": rng.choice(["a", "b", "c"][: int(rng.integers(1, 4))], n),
                "ps_logit": score,
            }
        )
        k = int(rng.integers(1, 5))
        caliper = [None, 0.3, 1.0][int(rng.integers(3))]
        order = [None, int(rng.integers(100))][int(rng.integers(2))]
        for replace in (False, True):
            got = our_pairs(match_region(df, k=k, caliper=caliper, replace=replace, rng=order))
            want = naive_greedy(df, k=k, caliper=caliper, replace=replace, rng=order)
            assert got.values.tolist() == want.values.tolist(), (seed, replace)


def test_balance_after_matching(cohort, matched) -> None:
    after = cohort.merge(matched.data[["person_id", "weight"]], on="person_id")
    b = compare_balance(cohort, after, treatment="treatment", **DESIGN, weights="weight")
    assert (b["smd_before"].abs() > 0.2).sum() >= 5
    assert (b["smd_after"].abs() < 0.1).all(), b.loc[b["smd_after"].abs() >= 0.1]
    assert matched.share_treated_matched > 0.85


def test_deterministic_and_row_order_invariant(cohort, matched) -> None:
    again = match_region(cohort, k=4)
    pd.testing.assert_frame_equal(again.data, matched.data)
    pd.testing.assert_frame_equal(again.pairs, matched.pairs)
    shuffled = cohort.sample(frac=1, random_state=7)
    sh = match_region(shuffled, k=4)
    pd.testing.assert_frame_equal(sh.data, matched.data)
    pd.testing.assert_frame_equal(sh.pairs, matched.pairs)
    pd.testing.assert_frame_equal(sh.unmatched, matched.unmatched)
    # the score may be given as an array in row order
    arr = match_region(shuffled, k=4, score=shuffled["ps_logit"].to_numpy())
    pd.testing.assert_frame_equal(arr.pairs, matched.pairs)


def test_k1_is_the_first_round_of_k4(cohort, matched) -> None:
    one = match_region(cohort, k=1)
    assert (one.pairs.groupby("match_set").size() == 1).all()
    first = matched.pairs[matched.pairs["round"] == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(one.pairs, first)
    assert one.n_treated_matched == matched.n_treated_matched
    assert matched.n_control_matched > 2.5 * one.n_control_matched
    assert (one.data["weight"] == 1).all()


def test_weights_without_replacement(matched) -> None:
    d = matched.data
    assert (d.loc[d["treatment"] == 1, "weight"] == 1).all()
    controls = d[d["treatment"] == 0]
    assert controls["weight"].sum() == pytest.approx(matched.n_control_matched)
    # weight of a control is proportional to 1 / (controls in its set)
    size = matched.pairs.groupby("match_set").size()
    raw = 1 / size[controls["match_set"]].to_numpy()
    np.testing.assert_allclose(controls["weight"], raw * len(controls) / raw.sum())
    # each set's controls weigh the same in total relative to the treated person
    per_set = controls.groupby("match_set")["weight"].sum()
    np.testing.assert_allclose(per_set, per_set.iloc[0])


def test_with_replacement(cohort) -> None:
    m = match_region(cohort, k=4, replace=True)
    p = m.pairs
    assert p["control_id"].duplicated().any()  # controls are reused
    assert m.cluster == "person_id"
    assert (p["distance"] <= m.caliper_width).all()
    counts = p.groupby("treated_id").size()
    assert counts.max() <= 4
    # weights: sum over the control's sets of 1 / set size, rescaled
    size = p.groupby("match_set").size()
    raw = (1 / size[p["match_set"]].to_numpy()).astype(float)
    raw = pd.Series(raw).groupby(p["control_id"].to_numpy()).sum()
    d = m.data.set_index("person_id")
    controls = d[d["treatment"] == 0]
    np.testing.assert_allclose(controls["weight"], raw[controls.index] * len(raw) / raw.sum())
    assert controls["weight"].sum() == pytest.approx(m.n_control_matched)
    np.testing.assert_array_equal(
        controls["n_sets"], p.groupby("control_id").size()[controls.index]
    )
    # a reused control carries its lowest set id
    first = p.groupby("control_id")["match_set"].min()
    np.testing.assert_array_equal(controls["match_set"], first[controls.index])


def test_no_exact_matching_and_random_order(cohort) -> None:
    free = match_region(cohort, k=2, exact=())
    region = cohort.set_index("person_id")["region"]
    p = free.pairs
    assert (region[p["treated_id"]].to_numpy() != region[p["control_id"]].to_numpy()).any() or (
        free.n_treated_matched == free.n_treated
    )
    a = match_region(cohort, k=2, rng=1)
    b = match_region(cohort.sample(frac=1, random_state=2), k=2, rng=1)
    pd.testing.assert_frame_equal(a.pairs, b.pairs)


def test_bad_input(cohort) -> None:
    with pytest.raises(ValueError, match="unique"):
        match(pd.concat([cohort.head(3), cohort.head(1)]), **COLUMNS)
    with pytest.raises(ValueError, match="shape"):
        match(cohort, **{**COLUMNS, "score": np.zeros(3)})
    with pytest.raises(ValueError, match="k must"):
        match(cohort, **COLUMNS, k=0)
    with pytest.raises(KeyError, match="nope"):
        match(cohort, **COLUMNS, exact=("nope",))
    with pytest.raises(ValueError, match="caliper must be positive"):
        match(cohort, **COLUMNS, caliper=0.0)
    with pytest.raises(ValueError, match="only 0 and 1"):
        match(cohort.assign(treatment=2 * cohort["treatment"]), **COLUMNS)
    with pytest.raises(ValueError, match="missing values"):
        match(cohort.assign(person_id=None), **COLUMNS)
    with pytest.raises(ValueError, match="'weight'.*rename"):
        match(cohort.rename(columns={"person_id": "weight"}), **{**COLUMNS, "id": "weight"})


@pytest.mark.parametrize(
    ("role", "name"),
    [("treatment", "treat"), ("score", "logit"), ("id", "pid"), ("exact", "area")],
)
def test_missing_column_names_argument_and_column(cohort, role, name) -> None:
    kwargs = {**COLUMNS, role: (name,) if role == "exact" else name}
    with pytest.raises(ColumnError, match=f"^{role} column '{name}' is not in the data$"):
        match(cohort, **kwargs)


def test_any_column_names(cohort, matched) -> None:
    """The tables carry the caller's id and treatment columns; the sets are the same."""
    renamed = cohort.rename(columns={"person_id": "pid", "treatment": "treat", "ps_logit": "s"})
    m = match(renamed, treatment="treat", score="s", id="pid", k=4, caliper=0.2, exact=["region"])
    assert list(m.data.columns) == ["pid", "treat", "match_set", "weight", "score", "n_sets"]
    assert list(m.unmatched.columns) == ["pid", "score", "reason"]
    pd.testing.assert_frame_equal(m.pairs, matched.pairs)
    pd.testing.assert_frame_equal(
        m.data.rename(columns={"pid": "person_id", "treat": "treatment"}), matched.data
    )
    assert match(renamed, treatment="treat", score="s", id="pid", replace=True).cluster == "pid"
    # integer ids break ties the same way as their order
    ints = cohort.assign(person_id=cohort["person_id"].str[1:].astype(int))
    mi = match(ints, **COLUMNS, k=4, caliper=0.2, exact=("region",))
    np.testing.assert_array_equal(
        mi.pairs["control_id"], matched.pairs["control_id"].str[1:].astype(int)
    )


def test_library_defaults_are_plain(cohort) -> None:
    """Without arguments: 1:1, no caliper, no exact matching (no study defaults)."""
    m = match(cohort, **COLUMNS)
    assert (m.k, m.caliper, m.exact, m.replace) == (1, None, (), False)
    assert m.caliper_width == np.inf
    ref = match_region(cohort, k=1, caliper=None, exact=())
    pd.testing.assert_frame_equal(m.pairs, ref.pairs)
