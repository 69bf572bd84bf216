"""The nearest-neighbour search behind :func:`analysis.design.matching.match` (private).

Greedy 1:k nearest-neighbour matching on a score, within a caliper and exact strata. The
result is exactly that of the classic sequential greedy algorithm (as in MatchIt's
``method = "nearest"``): treated persons are taken one at a time in a priority order (the
caller's: descending score, ties by id, or random) and each takes the nearest control not
yet used, within the caliper and the same exact stratum (ties in distance by id). With
``k > 1`` this is done in ``k`` rounds: every treated person gets a first control before
any gets a second (MatchIt's convention), so the first persons in the order cannot take all
the close controls.

No Python loop runs over persons and no distance matrix is formed. Each round is solved by
deferred acceptance (Gale & Shapley 1962) in vectorised passes:

- candidates come from one :class:`sklearn.neighbors.KDTree` per stratum (the ``m``
  nearest controls of many treated persons at once), sorted by distance and id; a row
  keeps a list of the *usable* ones (not used in an earlier round, not held by a treated
  person earlier in the order) and is re-queried, ``4m`` deep, when its list runs out. A
  block of equal distances cut by the query is fetched whole, so ties are broken by id
  exactly;
- in a pass, every unsettled treated person proposes to its first usable candidate that no
  earlier person proposes to in the same pass (a fixed point computed by Jacobi
  iterations, :func:`_proposals`); a proposal displaces the current holder, who is later in
  the order and proposes again in the next pass.

Every control ranks treated persons by the same order, so the stable matching is unique and
equals the sequential greedy one; the tests check this against a plain loop. Treated persons
are processed in blocks of :data:`BATCH_SIZE` (in order) to bound memory, and between rounds
the trees are rebuilt without the used controls when querying past them has become the
larger cost.

References
----------
Gale D, Shapley LS (1962). College admissions and the stability of marriage. *Am Math Mon*
69(1):9-15.

Ho DE, Imai K, King G, Stuart EA (2011). MatchIt: nonparametric preprocessing for
parametric causal inference. *J Stat Softw* 42(8):1-28.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import KDTree

__all__ = ["BATCH_SIZE", "Candidates", "greedy_match"]

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


def _id_rank(ids: np.ndarray) -> np.ndarray:
    """Rank of each id in sorted order (ties impossible: ids are unique)."""
    if ids.dtype == object and pd.api.types.infer_dtype(ids, skipna=False) == "string":
        ids = ids.astype(str)  # fixed-width unicode sorts much faster than objects
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))
    return rank


class Candidates:
    """Nearest controls of treated persons, from one KD-tree per exact stratum.

    Rows are sorted by (distance, id); controls beyond the caliper are
    ``-1``. ``safe[i]``: the first ``safe[i]`` entries of row ``i`` are exact (a
    truncated query may cut a block of tied distances; the entries at the cut's
    distance are not safe). ``complete[i]``: no valid candidate exists beyond the row.
    Only strata with treated persons get a tree.

    Parameters
    ----------
    score_t, strat_t : ndarray
        Scores and stratum codes of the treated rows, in priority order.
    score_c, strat_c, ids_c : ndarray
        Scores, stratum codes and ids of the controls (finite scores only).
    width : float
        The caliper on the scale of the score (``inf``: none).
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
        """Rank of the id of the controls in ``g``, computed once, on first tie."""
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
                # the tree returns rows sorted by distance; order ties by id
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
    them out loses nothing. ``safe``/``complete`` as in :class:`Candidates`; a list
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
    active: np.ndarray, cands: Candidates, taken: np.ndarray, m0: int
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
    active: np.ndarray, cands: Candidates, k: int
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


def greedy_match(
    cands: Candidates, n_active: int, *, k: int, replace: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Controls of every treated row of ``cands``, in its priority order.

    Parameters
    ----------
    cands : Candidates
        The search structure; its treated rows are in priority order (earliest first).
    n_active : int
        Number of treated rows.
    k : int
        Controls per treated row.
    replace : bool
        With replacement every row gets its ``k`` nearest controls within the caliper,
        independently of the others; without, the sequential greedy algorithm in ``k``
        rounds (module notes).

    Returns
    -------
    controls : ndarray of int, shape (n_active, k)
        Index of each row's control among the controls of ``cands`` in round order
        (``-1``: none).
    distances : ndarray of float, shape (n_active, k)
        Absolute score differences (``inf``: none).
    """
    act = np.arange(n_active)
    if replace:
        return _with_replacement(act, cands, k)
    mc = np.full((n_active, k), -1, dtype=np.int64)
    md = np.full((n_active, k), np.inf)
    taken = np.zeros(len(cands.score_c), dtype=bool)
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
    return mc, md
