"""Nearest-neighbour matching of OST comparators to HAT patients on the propensity score.

:func:`match` implements greedy 1:k nearest-neighbour matching on the logit of the
propensity score, with a caliper in standard deviations of the logit (Austin 2011),
exact matching within strata (region) and matching with or without replacement.

Algorithm (without replacement)
-------------------------------
The result is exactly that of the classic sequential greedy algorithm (as in
MatchIt's ``method = "nearest"``): treated persons are taken one at a time in order
of descending score ("hardest first"; ties by ``person_id``) and each takes the
nearest control not yet used, within the caliper and the same exact stratum (ties
in distance by ``person_id``). With ``k > 1`` this is done in ``k`` rounds: every
treated person gets a first control before any gets a second (MatchIt's
convention), so the first persons in the order cannot take all the close controls.

No Python loop runs over persons and no distance matrix is formed. Each round is
solved by deferred acceptance (Gale & Shapley 1962) in vectorised passes:

- candidates come from one :class:`sklearn.neighbors.KDTree` per stratum (the ``m``
  nearest controls of many treated persons at once), sorted by distance and
  ``person_id``; a row keeps a list of the *usable* ones (not used in an earlier
  round, not held by a treated person earlier in the order) and is re-queried,
  ``4m`` deep, when its list runs out. A block of equal distances cut by the query
  is fetched whole, so ties are broken by ``person_id`` exactly;
- in a pass, every unsettled treated person proposes to its first usable candidate
  that no earlier person proposes to in the same pass (a fixed point computed by
  Jacobi iterations, :func:`_proposals`); a proposal displaces the current holder,
  who is later in the order and proposes again in the next pass.

Every control ranks treated persons by the same order, so the stable matching is
unique and equals the sequential greedy one; the tests check this against a plain
loop. Treated persons are processed in blocks of :data:`BATCH_SIZE` (in order) to
bound memory, and between rounds the trees are rebuilt without the used controls
when querying past them has become the larger cost.

References
----------
Austin PC (2011). Optimal caliper widths for propensity-score matching when
estimating differences in means and differences in proportions in observational
studies. *Pharm Stat* 10(2):150-161.

Rosenbaum PR, Rubin DB (1985). Constructing a control group using multivariate
matched sampling methods that incorporate the propensity score. *Am Stat*
39(1):33-38.

Stuart EA (2010). Matching methods for causal inference: a review and a look
forward. *Stat Sci* 25(1):1-21.

Ho DE, Imai K, King G, Stuart EA (2011). MatchIt: nonparametric preprocessing for
parametric causal inference. *J Stat Softw* 42(8):1-28.

Gale D, Shapley LS (1962). College admissions and the stability of marriage.
*Am Math Mon* 69(1):9-15.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.neighbors import KDTree

#: treated persons solved together in one block of a round (bounds memory)
BATCH_SIZE = 4096

#: usable candidates kept per treated person between refills from the tree
_LIST_WIDTH = 512

#: trees are rebuilt without used controls once this many candidates per control in
#: the trees have been queried since the last build (the work a rebuild saves)
_REBUILD = 4

#: candidate cells (treated persons x depth) queried at once, to bound memory
_MAX_CELLS = 1 << 20

#: list entries examined per row and pass
_WINDOW = 64

REASON_NOT_FINITE = "score not finite (separated in the propensity model)"
REASON_NO_STRATUM = "no control in exact stratum"
REASON_CALIPER = "no control within caliper"
REASON_USED = "controls within caliper used by other treated"


@dataclass(frozen=True, kw_only=True)
class MatchedSample:
    """A matched sample.

    Attributes
    ----------
    data : DataFrame
        One row per matched person: ``person_id``, ``treatment``, ``match_set``
        (int; the set of the treated person, numbered by treated ``person_id``),
        ``weight``, ``score`` and ``n_sets`` (sets the person belongs to). Treated
        weight 1; a control's weight is the sum over its sets of 1 / (controls in
        that set), rescaled so that control weights sum to the number of distinct
        matched controls (MatchIt's convention). With replacement, a control used
        in several sets carries the ``match_set`` of the first (lowest) of them.
        Sorted by ``match_set``, treated first, then ``person_id``.
    pairs : DataFrame
        One row per (treated, control) pair: ``match_set``, ``treated_id``,
        ``control_id``, ``distance`` (absolute difference of scores), ``round``
        (1 for the nearest control of the set, 2 for the next...).
    unmatched : DataFrame
        Treated persons without any control: ``person_id``, ``score``, ``reason``
        (``no control in exact stratum``, ``no control within caliper``,
        ``controls within caliper used by other treated``, ``score not finite``).
    n_treated, n_treated_matched, n_control_matched : int
        Treated persons in the input; with at least one control; distinct
        controls used.
    k : int
        Controls sought per treated person.
    caliper : float or None
        Caliper in pooled standard deviations of the score (``None``: no caliper).
    caliper_width : float
        The caliper on the scale of the score (``inf`` without caliper).
    replace : bool
        Whether controls could be reused.
    exact : tuple of str
        Columns matched exactly.
    """

    data: pd.DataFrame
    pairs: pd.DataFrame
    unmatched: pd.DataFrame
    n_treated: int
    n_treated_matched: int
    n_control_matched: int
    k: int
    caliper: float | None
    caliper_width: float
    replace: bool
    exact: tuple[str, ...]

    @property
    def cluster(self) -> str:
        """Column to cluster outcome-model variances on.

        ``match_set`` without replacement (every person is in exactly one set; the
        pair/set structure is the natural cluster, Austin 2009); ``person_id`` with
        replacement, where a control can sit in several sets and the sets overlap
        (Austin & Cafri 2020 recommend clustering on both; the person is the
        conservative single choice).
        """
        return "person_id" if self.replace else "match_set"

    @property
    def share_treated_matched(self) -> float:
        """Share of treated persons with at least one control."""
        return self.n_treated_matched / self.n_treated if self.n_treated else float("nan")

    def info(self) -> dict[str, Any]:
        """Plain dictionary describing the design (for ``results.json``)."""
        sizes = self.pairs.groupby("match_set").size()
        return {
            "k": self.k,
            "caliper_sd": self.caliper,
            "caliper_width": self.caliper_width,
            "replace": self.replace,
            "exact": list(self.exact),
            "n_treated": self.n_treated,
            "n_treated_matched": self.n_treated_matched,
            "n_control_matched": self.n_control_matched,
            "share_treated_matched": self.share_treated_matched,
            "n_sets_complete": int((sizes == self.k).sum()),
            "unmatched_reasons": self.unmatched["reason"].value_counts().to_dict(),
        }


def caliper_width(score: np.ndarray, treated: np.ndarray, caliper: float | None) -> float:
    """Caliper on the scale of the score: ``caliper`` times the pooled SD.

    The pooled SD is ``sqrt((s_t^2 + s_c^2) / 2)`` of the treated and control scores
    (finite values, ``ddof=1``), as in Austin (2011).

    Parameters
    ----------
    score : ndarray
        Scores (logit of the propensity score).
    treated : ndarray of bool
        Treated persons.
    caliper : float or None
        Caliper in SDs; ``None`` gives ``inf``.

    Returns
    -------
    float

    References
    ----------
    Austin PC (2011). Optimal caliper widths for propensity-score matching when
    estimating differences in means and differences in proportions in
    observational studies. *Pharm Stat* 10:150-161.
    """
    if caliper is None:
        return float("inf")
    if caliper <= 0:
        raise ValueError("caliper must be positive (or None for no caliper)")
    finite = np.isfinite(score)
    groups = [score[finite & treated], score[finite & ~treated]]
    var = [np.var(g, ddof=1) if len(g) > 1 else 0.0 for g in groups]
    return float(caliper * np.sqrt((var[0] + var[1]) / 2))


def _id_rank(ids: np.ndarray) -> np.ndarray:
    """Rank of each id in sorted order (ties impossible: ids are unique)."""
    if ids.dtype == object and pd.api.types.infer_dtype(ids, skipna=False) == "string":
        ids = ids.astype(str)  # fixed-width unicode sorts much faster than objects
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))
    return rank


class _Candidates:
    """Nearest controls of treated persons, from one KD-tree per exact stratum.

    Rows are sorted by (distance, ``person_id``); controls beyond the caliper are
    ``-1``. ``safe[i]``: the first ``safe[i]`` entries of row ``i`` are exact (a
    truncated query may cut a block of tied distances; the entries at the cut's
    distance are not safe). ``complete[i]``: no valid candidate exists beyond the row.
    Only strata with treated persons get a tree.
    """

    def __init__(self, score_t, strat_t, score_c, strat_c, ids_c, width):
        self.score_t, self.strat_t = score_t, strat_t
        self.score_c, self.ids_c, self.width = score_c, ids_c, width
        self.strat_c = strat_c
        self._rank: np.ndarray | None = None
        self.trees: dict[int, tuple[KDTree, np.ndarray]] = {}
        self.build(np.ones(len(score_c), dtype=bool))
        self.all_trees = self.trees  # every control, for the reasons of the unmatched

    def build(self, available: np.ndarray) -> None:
        """(Re)build the trees on the ``available`` controls of strata with treated."""
        self.trees = {}
        self.cells = 0  # candidate cells queried since the build (work done)
        idx = np.flatnonzero(available & np.isin(self.strat_c, np.unique(self.strat_t)))
        order = idx[np.argsort(self.strat_c[idx], kind="stable")]
        bounds = np.flatnonzero(np.diff(self.strat_c[order])) + 1
        for members in np.split(order, bounds):
            if len(members):
                tree = KDTree(self.score_c[members].reshape(-1, 1), leaf_size=40)
                self.trees[int(self.strat_c[members[0]])] = (tree, members)
        self.n_in_trees = len(idx)

    def n_controls(self, rows: np.ndarray) -> np.ndarray:
        """Controls (all, not only available ones) in the stratum of each treated row."""
        sizes = {s: len(m) for s, (_, m) in self.all_trees.items()}
        return np.array([sizes.get(int(s), 0) for s in self.strat_t[rows]], dtype=np.int64)

    def _tie_rank(self, g: np.ndarray) -> np.ndarray:
        """Rank of ``person_id`` of the controls in ``g``, computed once, on first tie."""
        if self._rank is None:
            self._rank = _id_rank(self.ids_c)
        return self._rank[g]

    def query(self, rows: np.ndarray, m: int, *, every: bool = False):
        """Candidates of treated ``rows``: ``cand, dist, safe, complete`` (width ``m``).

        From the trees of available controls, or of every control if ``every``.
        """
        trees = self.all_trees if every else self.trees
        n = len(rows)
        cand = np.full((n, m), -1, dtype=np.int64)
        dist = np.full((n, m), np.inf)
        safe = np.zeros(n, dtype=np.int64)
        complete = np.ones(n, dtype=bool)
        strata = self.strat_t[rows]
        for s in np.unique(strata):
            if int(s) not in trees:
                continue
            tree, members = trees[int(s)]
            sel = np.flatnonzero(strata == s)
            mm = min(m, len(members))
            x = self.score_t[rows[sel]]
            idx = tree.query(x.reshape(-1, 1), k=mm, return_distance=False)
            g = members[idx]
            d = np.abs(x[:, None] - self.score_c[g])
            self.cells += d.size
            if mm > 1:
                # the tree returns rows sorted by distance; order ties by person_id
                tied = np.flatnonzero((d[:, 1:] == d[:, :-1]).any(axis=1))
                if tied.size:
                    # rows are sorted by distance: sort by (block of equal distance, id rank)
                    gt, dt = g[tied], d[tied]
                    block = np.zeros(dt.shape, dtype=np.int64)
                    np.cumsum(dt[:, 1:] != dt[:, :-1], axis=1, out=block[:, 1:])
                    key = block * (len(self.ids_c) + 1) + self._tie_rank(gt)
                    o = np.argsort(key, axis=1)
                    d[tied] = np.take_along_axis(dt, o, axis=1)
                    g[tied] = np.take_along_axis(gt, o, axis=1)
            valid = d <= self.width
            n_valid = valid.sum(axis=1)
            truncated = (mm < len(members)) & (n_valid == mm)
            cut = (d < d[:, -1:]).sum(axis=1)
            safe[sel] = np.where(truncated, cut, n_valid)
            complete[sel] = ~truncated
            cand[sel, :mm] = np.where(valid, g, -1)
            dist[sel, :mm] = np.where(valid, d, np.inf)
        return cand, dist, safe, complete


class _Lists:
    """Candidate lists of one block of treated persons in one round.

    Each row keeps up to ``W`` *usable* candidates, in order: controls within the
    caliper and the row's stratum, not used in an earlier round or block, and not held
    by a row earlier in the order. Both exclusions are permanent within the round (a
    control held by an earlier row can only pass to a still earlier one), so leaving
    them out loses nothing. ``safe``/``complete`` as in :class:`_Candidates`; a list
    that runs out is refilled from the tree, deeper each time.
    """

    def __init__(self, rows, cands, taken, holder, m0, width):
        self.rows, self.cands, self.taken, self.holder = rows, cands, taken, holder
        n = len(rows)
        self.W = width
        self.cand = np.full((n, width), -1, dtype=np.int64)
        self.dist = np.full((n, width), np.inf)
        self.safe = np.zeros(n, dtype=np.int64)
        self.complete = np.zeros(n, dtype=bool)
        self.ptr = np.zeros(n, dtype=np.int64)
        self.depth = np.full(n, m0, dtype=np.int64)  # raw query depth of the next fill

    def usable(self, local: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Candidates ``c`` (rows ``local``) neither used nor held by an earlier row."""
        cc = np.where(c >= 0, c, 0)
        h = self.holder[cc]
        return (c >= 0) & ~self.taken[cc] & ((h < 0) | (h > local[:, None]))

    def window(self, local: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next :data:`_WINDOW` list entries of rows ``local`` from their first usable one.

        Returns candidates, usable flags and each window's start in the list. A row
        with nothing usable left gets an all-unusable window.
        """
        W = self.W
        n = len(local)
        step = min(_WINDOW, W)
        base = self.ptr[local].copy()
        offs = np.arange(step)
        todo = np.arange(n)
        C = np.full((n, step), -1, dtype=np.int64)
        U = np.zeros((n, step), dtype=bool)
        while todo.size:
            p = base[todo, None] + offs
            inside = p < self.safe[local[todo], None]
            c = np.where(inside, self.cand[local[todo, None], np.minimum(p, W - 1)], -1)
            u = self.usable(local[todo], c) & inside
            C[todo], U[todo] = c, u
            # a window with nothing usable moves on, while the list lasts
            again = ~u.any(axis=1) & (base[todo] + step < self.safe[local[todo]])
            base[todo[again]] += step
            todo = todo[again]
        return C, U, base

    def fill(self, local: np.ndarray) -> None:
        """Refill the lists of rows ``local`` with usable candidates."""
        pending = local
        while pending.size:
            m = int(self.depth[pending].max())
            chunk = max(1, _MAX_CELLS // m)  # bounds the memory of deep queries
            parts = [pending[i : i + chunk] for i in range(0, len(pending), chunk)]
            pending = np.concatenate([self._fill(part, m) for part in parts])

    def _fill(self, local: np.ndarray, m: int) -> np.ndarray:
        """Query rows ``local`` ``m`` deep; store the lists of those with a usable
        candidate (or none left at all) and return the others, set to go deeper."""
        c, d, s, k = self.cands.query(self.rows[local], m)
        ok = self.usable(local, c) & (np.arange(c.shape[1]) < s[:, None])
        u = ok.sum(axis=1)
        done = (u > 0) | k
        rows = local[done]
        # compact: the first W usable entries of each row, in order
        r, j = np.nonzero(ok[done])
        nth = np.arange(len(r)) - np.repeat(np.cumsum(u[done]) - u[done], u[done])
        sel = nth < self.W
        r, j, nth = r[sel], j[sel], nth[sel]
        self.cand[rows] = -1
        self.dist[rows] = np.inf
        self.cand[rows[r], nth] = c[done][r, j]
        self.dist[rows[r], nth] = d[done][r, j]
        self.safe[rows] = np.minimum(u[done], self.W)
        self.complete[rows] = k[done] & (u[done] <= self.W)
        self.ptr[rows] = 0
        # a list cut at W can be refilled from the same depth; an exhausted one needs more
        self.depth[rows] = np.where(u[done] > self.W, m, 4 * m)
        left = local[~done]
        self.depth[left] = 4 * m
        return left


_NOBODY = np.iinfo(np.int64).max


def _proposals(
    free: np.ndarray, C: np.ndarray, Cc: np.ndarray, U: np.ndarray, claim: np.ndarray
) -> np.ndarray:
    """List position each free row proposes to (``-1``: nothing usable left in its list).

    Row ``r`` proposes to its first usable candidate that no earlier free row proposes
    to in the same pass. Such a control ends the pass held by an earlier row and stays
    so, so skipping it is safe (it is a guaranteed rejection), and the proposals are
    distinct. The rule is a fixed point, found by Jacobi passes (after pass ``j`` the
    first ``j`` rows are final) from a speculative start: among rows whose first
    usable candidate is the same, the ``i``-th in order starts at its ``i``-th usable
    candidate, exact when their lists coincide (a dense tail of treated persons
    wanting the same controls). ``claim`` is an all-``_NOBODY`` scratch array over
    controls, left as found.
    """
    n = len(free)
    idx = np.arange(n)
    cs = np.cumsum(U, axis=1)
    total = cs[:, -1]
    first = np.where(total > 0, C[idx, U.argmax(axis=1)], -1)
    o = np.lexsort((free, first))
    grp_start = np.ones(n, dtype=bool)
    grp_start[1:] = first[o][1:] != first[o][:-1]
    starts = np.maximum.accumulate(np.where(grp_start, idx, 0))
    rank = np.empty(n, dtype=np.int64)
    rank[o] = idx - starts
    choice = np.where(total > rank, (cs <= rank[:, None]).sum(axis=1), -1)
    while True:
        sel = np.flatnonzero(choice >= 0)
        pc = C[sel, choice[sel]]
        order = np.argsort(pc, kind="stable")  # free is sorted: earliest row first
        pc, by = pc[order], free[sel[order]]
        lead = np.ones(len(pc), dtype=bool)
        lead[1:] = pc[1:] != pc[:-1]
        claim[pc[lead]] = by[lead]
        S = U & ~(claim[Cc] < free[:, None])
        claim[pc[lead]] = _NOBODY
        new = np.where(S.any(axis=1), S.argmax(axis=1), -1)
        if np.array_equal(new, choice):
            return choice
        choice = new


def _greedy_round(
    active: np.ndarray, cands: _Candidates, taken: np.ndarray, m0: int
) -> tuple[np.ndarray, np.ndarray]:
    """One round of sequential greedy 1:1 matching without replacement, vectorised.

    ``active`` holds treated rows in priority order (earliest first); ``taken`` marks
    controls used in earlier rounds and is updated. Returns the control of each
    active row (``-1``: none) and its distance.

    Deferred acceptance: in each pass every free row proposes (:func:`_proposals`);
    a proposal always beats the current holder, who is later in the order (earlier
    holders are never proposed to) and becomes free again. Rows whose list ran out
    are refilled from the tree. With one priority order shared by all controls the
    stable outcome is unique and equals the sequential greedy assignment.
    """
    out_c = np.full(len(active), -1, dtype=np.int64)
    out_d = np.full(len(active), np.inf)
    if not len(taken):
        return out_c, out_d
    holder = np.full(len(taken), -1, dtype=np.int64)  # block row holding each control
    claim = np.full(len(taken), _NOBODY, dtype=np.int64)  # scratch for _proposals
    for start in range(0, len(active), BATCH_SIZE):
        rows = active[start : start + BATCH_SIZE]
        nb = len(rows)
        st = _Lists(rows, cands, taken, holder, m0, max(m0, _LIST_WIDTH))
        st.fill(np.arange(nb))
        hold = np.full(nb, -1, dtype=np.int64)
        free = np.arange(nb)
        while free.size:
            C, U, base = st.window(free)
            choice = _proposals(free, C, np.where(C >= 0, C, 0), U, claim)
            has = choice >= 0
            # a window taken entirely by earlier rows' proposals: move past it
            step = C.shape[1]
            more = ~has & (base + step < st.safe[free])
            st.ptr[free[more]] = base[more] + step
            stuck = free[~has & ~more]
            refill = stuck[~st.complete[stuck]]
            prop_t = free[has]
            prop_c = C[has, choice[has]]
            st.ptr[prop_t] = base[has] + choice[has]
            displaced = holder[prop_c]
            displaced = displaced[displaced >= 0]
            hold[displaced] = -1
            st.ptr[displaced] += 1
            holder[prop_c] = prop_t
            hold[prop_t] = prop_c
            if refill.size:
                st.fill(refill)
            free = np.union1d(np.union1d(displaced, refill), free[more])
        got = np.flatnonzero(hold >= 0)
        taken[hold[got]] = True
        holder[hold[got]] = -1
        out_c[start + got] = hold[got]
        out_d[start + got] = st.dist[got, st.ptr[got]]
    return out_c, out_d


def _widen(a: np.ndarray, width: int, fill) -> np.ndarray:
    if a.shape[1] >= width:
        return a
    out = np.full((a.shape[0], width), fill, dtype=a.dtype)
    out[:, : a.shape[1]] = a
    return out


def _with_replacement(
    active: np.ndarray, cands: _Candidates, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest controls within the caliper of every active treated row."""
    out_c = np.full((len(active), k), -1, dtype=np.int64)
    out_d = np.full((len(active), k), np.inf)
    for start in range(0, len(active), BATCH_SIZE):
        rows = active[start : start + BATCH_SIZE]
        m = k + 8
        cand, dist, safe, complete = cands.query(rows, m)
        need = np.flatnonzero(~complete & (safe < k))
        while need.size:
            m *= 2
            c2, d2, s2, k2 = cands.query(rows[need], m)
            cand, dist = _widen(cand, m, -1), _widen(dist, m, np.inf)
            cand[need, :m], dist[need, :m], safe[need], complete[need] = c2, d2, s2, k2
            need = need[~k2 & (s2 < k)]
        out_c[start : start + len(rows)] = cand[:, :k]
        out_d[start : start + len(rows)] = dist[:, :k]
    return out_c, out_d


def _strata(df: pd.DataFrame, exact: Sequence[str]) -> np.ndarray:
    if not exact:
        return np.zeros(len(df), dtype=np.int64)
    missing = [c for c in exact if c not in df.columns]
    if missing:
        raise KeyError(f"exact-matching columns {missing} are not columns of the data")
    codes = df.groupby(list(exact), sort=True, dropna=False, observed=True).ngroup()
    return codes.to_numpy(dtype=np.int64)


def match(
    df: pd.DataFrame,
    *,
    treatment: str = "treatment",
    score: str | np.ndarray | pd.Series = "ps_logit",
    k: int = 4,
    caliper: float | None = 0.2,
    exact: Sequence[str] = ("region",),
    replace: bool = False,
    rng: np.random.Generator | int | None = None,
) -> MatchedSample:
    """Greedy 1:k nearest-neighbour matching on the (logit) propensity score.

    Parameters
    ----------
    df : DataFrame
        One row per person, with ``person_id`` (unique), the treatment column and
        the ``exact`` columns.
    treatment : str, default ``"treatment"``
        0/1 column, 1 = treated (HAT).
    score : str or array-like, default ``"ps_logit"``
        Column name, or values in the row order of ``df``: the score matched on,
        normally the logit of the propensity score (Rosenbaum & Rubin 1985; Austin
        2011). Persons with a non-finite score are never matched.
    k : int, default 4
        Controls per treated person.
    caliper : float or None, default 0.2
        Maximum distance, in pooled standard deviations of ``score`` (Austin 2011:
        0.2 SD of the logit). ``None``: no caliper. Distances equal to the caliper
        are accepted.
    exact : sequence of str, default ``("region",)``
        Columns that must be equal within a matched set (missing values form their
        own stratum). Empty for no exact matching.
    replace : bool, default False
        Without replacement (default), each control is used at most once, by the
        greedy algorithm in the module notes. With replacement, every treated person
        gets its ``k`` nearest controls within the caliper, independently of the
        others.
    rng : Generator or int, optional
        If given, treated persons are processed in a random order (MatchIt's
        ``m.order = "random"``) drawn from this generator, instead of by descending
        score. Irrelevant with replacement.

    Returns
    -------
    MatchedSample
        Matched persons with set ids and weights, the pairs, the unmatched treated
        with reasons. For outcome models cluster on ``MatchedSample.cluster``:
        ``match_set`` without replacement, ``person_id`` with replacement.

    Raises
    ------
    ValueError
        Duplicate ``person_id``, treatment not 0/1, score of the wrong length, ``k``
        < 1.

    Notes
    -----
    Deterministic: the same data in any row order give the same sets. Ties in the
    order of treated persons and in distance are broken by ``person_id``. Cost: one
    KD-tree per stratum, ``O((n_c + n_t m) log n_c)``; memory ``O(n_c + B m)``.

    References
    ----------
    Austin PC (2011). Optimal caliper widths for propensity-score matching when
    estimating differences in means and differences in proportions in
    observational studies. *Pharm Stat* 10:150-161.

    Rosenbaum PR, Rubin DB (1985). Constructing a control group using multivariate
    matched sampling methods that incorporate the propensity score. *Am Stat*
    39:33-38.

    Stuart EA (2010). Matching methods for causal inference: a review and a look
    forward. *Stat Sci* 25:1-21.

    Ho DE, Imai K, King G, Stuart EA (2011). MatchIt: nonparametric preprocessing
    for parametric causal inference. *J Stat Softw* 42(8).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    ids = df["person_id"].to_numpy()
    if df["person_id"].duplicated().any():
        raise ValueError("person_id must be unique")
    t = df[treatment]
    if t.isna().any() or not t.isin([0, 1]).all():
        raise ValueError(f"{treatment}: must be 0/1 without missing values")
    treated = t.to_numpy(dtype=np.int64) == 1
    s = df[score] if isinstance(score, str) else score
    s = np.asarray(s, dtype=np.float64)
    if s.shape != (len(df),):
        raise ValueError(f"score has shape {s.shape}; expected ({len(df)},)")
    strata = _strata(df, exact)
    width = caliper_width(s, treated, caliper)

    ti = np.flatnonzero(treated)
    ci = np.flatnonzero(~treated & np.isfinite(s))
    # treated order: descending score, ties by person_id (or random, from rng)
    by_id = ti[np.argsort(ids[ti], kind="stable")]
    if rng is not None:
        order = np.random.default_rng(rng).permutation(by_id)
    else:
        order = by_id[np.argsort(-s[by_id], kind="stable")]
    finite_t = np.isfinite(s[order])
    active_rows = order[finite_t]  # df rows of the treated, in priority order
    cands = _Candidates(s[active_rows], strata[active_rows], s[ci], strata[ci], ids[ci], width)
    n_act = len(active_rows)
    act = np.arange(n_act)

    if replace:
        mc, md = _with_replacement(act, cands, k)
    else:
        mc = np.full((n_act, k), -1, dtype=np.int64)
        md = np.full((n_act, k), np.inf)
        taken = np.zeros(len(ci), dtype=bool)
        current = act
        for r in range(k):
            if r and cands.cells > _REBUILD * cands.n_in_trees:
                # controls used in earlier rounds crowd the candidate lists: rebuilding
                # the trees without them is cheaper than querying past them
                cands.build(~taken)
            c, d = _greedy_round(current, cands, taken, m0=2 * k + 8)
            mc[current, r], md[current, r] = c, d
            current = current[c >= 0]
            if not current.size:
                break

    # treated persons: sets numbered by person_id among the matched
    matched_t = mc[:, 0] >= 0
    id_rank = np.full(len(df), -1, dtype=np.int64)
    id_rank[by_id] = np.arange(len(by_id))
    got = np.flatnonzero(matched_t)
    got = got[np.argsort(id_rank[active_rows[got]], kind="stable")]
    set_id = np.full(n_act, -1, dtype=np.int64)
    set_id[got] = np.arange(len(got))

    pr, pk = np.nonzero(mc >= 0)
    pairs = pd.DataFrame(
        {
            "match_set": set_id[pr],
            "treated_id": ids[active_rows[pr]],
            "control_id": ids[ci[mc[pr, pk]]],
            "distance": md[pr, pk],
            "round": pk + 1,
        }
    ).sort_values(["match_set", "round"], kind="stable", ignore_index=True)

    # weights: control = sum over its sets of 1 / (controls in the set), rescaled
    n_in_set = (mc >= 0).sum(axis=1)
    ctrl = ci[mc[pr, pk]]
    contrib = 1.0 / n_in_set[pr]
    uctrl, inv = np.unique(ctrl, return_inverse=True)
    w_c = np.bincount(inv, weights=contrib, minlength=len(uctrl))
    if len(uctrl):
        # raw control weights sum to the number of matched sets (each set gives 1)
        w_c *= len(uctrl) / len(got)
    first_set = np.full(len(uctrl), np.iinfo(np.int64).max)
    np.minimum.at(first_set, inv, set_id[pr])
    sets_per_c = np.bincount(inv, minlength=len(uctrl))

    trows = active_rows[got]
    data = pd.DataFrame(
        {
            "person_id": np.concatenate([ids[trows], ids[uctrl]]),
            "treatment": np.r_[np.ones(len(trows), np.int64), np.zeros(len(uctrl), np.int64)],
            "match_set": np.concatenate([set_id[got], first_set]),
            "weight": np.r_[np.ones(len(trows)), w_c],
            "score": np.r_[s[trows], s[uctrl]],
            "n_sets": np.r_[np.ones(len(trows), np.int64), sets_per_c],
        }
    )
    data["_key"] = np.r_[np.zeros(len(trows), np.int64), np.ones(len(uctrl), np.int64)]
    data = data.sort_values(["match_set", "_key", "person_id"], kind="stable", ignore_index=True)
    data = data.drop(columns="_key")

    reasons = _reasons(act[~matched_t], cands)
    rows = np.concatenate([order[~finite_t], active_rows[~matched_t]])
    unmatched = pd.DataFrame(
        {
            "person_id": ids[rows],
            "score": s[rows],
            "reason": np.concatenate([np.full((~finite_t).sum(), REASON_NOT_FINITE), reasons]),
        }
    ).sort_values("person_id", kind="stable", ignore_index=True)
    return MatchedSample(
        data=data,
        pairs=pairs,
        unmatched=unmatched,
        n_treated=len(ti),
        n_treated_matched=len(got),
        n_control_matched=len(uctrl),
        k=k,
        caliper=caliper,
        caliper_width=width,
        replace=replace,
        exact=tuple(exact),
    )


def _reasons(act: np.ndarray, cands: _Candidates) -> np.ndarray:
    """Why each of the treated rows ``act`` got no control."""
    reason = np.full(len(act), REASON_USED, dtype=object)
    if len(act):
        cand = cands.query(act, 1, every=True)[0]
        reason[cand[:, 0] < 0] = REASON_CALIPER
        reason[cands.n_controls(act) == 0] = REASON_NO_STRATUM
    return reason
