"""The nearest-neighbour search behind :func:`analysis.design.matching.match` (private).

Greedy 1:k nearest-neighbour matching on a score, within a caliper and exact strata. The
result is exactly that of the classic sequential greedy algorithm (as in MatchIt's
``method = "nearest"``): treated persons are taken one at a time in a priority order (the
caller's: descending score, ties by id, or random) and each takes the nearest control not
yet used, within the caliper and the same exact stratum (ties in distance by id). With
``k > 1`` this is done in ``k`` rounds: every treated person gets a first control before
any gets a second (MatchIt's convention), so the first persons in the order cannot take all
the close controls.

The score is one-dimensional, so no tree and no distance matrix is needed, and no Python
loop runs over persons:

- the controls are sorted once by (stratum, score, id) and grouped into *blocks* of equal
  (stratum, score). Controls of a block are equally near to everyone, so the greedy
  algorithm takes them in id order: the used controls of a block are always its first
  ``used[b]`` ones, and a counter per block is the whole state. Exhausted blocks are skipped
  by two union-find arrays (next live block to the left, to the right);
- a treated person's insertion point among its stratum's blocks comes from
  :func:`numpy.searchsorted`; two pointers walk outwards from it, so its preference list is
  the sequence of *distance groups*: the nearest live block(s) on either side, usually one
  block, two when both sides are exactly equally far (then the lower id of their next
  controls decides, as in a plain loop);
- each round is solved by deferred acceptance (Gale & Shapley 1962) over a block of
  :data:`BATCH_SIZE` treated persons at once: in a pass every unsettled person proposes to
  the nearest block that still has a control for it (fewer holders earlier in the order
  than free controls; blocks full of earlier holders are passed for good), and each block
  keeps its earliest proposers and holders up to its capacity. Every control ranks the
  treated by the same order, so the stable matching is unique and equals the sequential
  greedy one; a block's holders, in order, get its next controls in id order. A person
  whose two equally near blocks both have room is re-examined after every pass, since an
  earlier holder arriving in one of them changes which next control has the lower id.

With replacement nothing is used: each person walks outwards group by group and takes the
first ``k`` controls (ties merged by id).

Blocks of treated persons are solved one after another (in order), which bounds memory;
each block's result is committed to the counters before the next. A pass costs a few dozen
numpy calls over the unsettled persons (``O(B log n_c)``); most blocks settle in a few passes,
but where many treated persons compete for few controls the passes form chains (each settles
few persons), which is why the blocks are small. The tests check the result against a plain
loop (also on many random tie-heavy inputs) and against MatchIt.

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

__all__ = ["BATCH_SIZE", "SortedControls", "greedy_match"]

#: treated persons solved together in one block of a round (bounds memory; larger blocks
#: mean longer chains of passes where treated persons compete for few controls)
BATCH_SIZE = 256


def _id_order(ids: np.ndarray) -> np.ndarray:
    """Permutation sorting ``ids`` (unique, so no ties)."""
    if ids.dtype == object and pd.api.types.infer_dtype(ids, skipna=False) == "string":
        ids = ids.astype(str)  # fixed-width unicode sorts much faster than objects
    return np.argsort(ids, kind="stable")


def _find(parent: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Roots of nodes ``x`` in the union-find array ``parent`` (paths compressed)."""
    r = parent[x]
    while True:
        pr = parent[r]
        moved = pr != r
        if not moved.any():
            break
        r = np.where(moved, pr, r)
    parent[x] = r
    return r


def _link(parent: np.ndarray, nodes: np.ndarray, to: np.ndarray) -> None:
    """Point ``nodes`` at ``to`` and compress them to their roots (pointer doubling)."""
    parent[nodes] = to
    while True:
        nxt = parent[parent[nodes]]
        if np.array_equal(nxt, parent[nodes]):
            return
        parent[nodes] = nxt


class SortedControls:
    """Controls sorted by (stratum, score, id) in blocks of equal score, and the treated.

    Parameters
    ----------
    score_t, strat_t : ndarray
        Scores and stratum codes of the treated rows, in priority order.
    score_c, strat_c, ids_c : ndarray
        Scores, stratum codes and ids of the controls (finite scores only).
    width : float
        The caliper on the scale of the score (``inf``: none).

    Attributes
    ----------
    order : ndarray of int
        Control (index into ``score_c``) at each sorted position.
    used : ndarray of int
        Controls of each block used so far (always its first ones in id order).
    """

    def __init__(self, score_t, strat_t, score_c, strat_c, ids_c, width):
        self.x, self.width = np.asarray(score_t, dtype=np.float64), width
        # by score, then (stable) by stratum; ties in score are put in id order below
        o = np.argsort(score_c)
        o = o[np.argsort(strat_c[o], kind="stable")]
        sc, st = score_c[o], strat_c[o]
        n = len(o)
        new = np.ones(n, dtype=bool)
        new[1:] = (sc[1:] != sc[:-1]) | (st[1:] != st[:-1])
        self.bstart = np.flatnonzero(new)
        self.bsize = np.diff(np.r_[self.bstart, n])
        block = np.cumsum(new) - 1
        tied = np.flatnonzero(self.bsize[block] > 1)
        if tied.size:  # controls of equal score: in id order within their block
            by_id = _id_order(ids_c[o[tied]])
            o[tied] = o[tied[by_id[np.argsort(block[tied][by_id], kind="stable")]]]
        self.order, self.ids, self.sc = o, ids_c[o], sc
        self.bscore, self.bstrat = sc[self.bstart], st[self.bstart]
        nb = len(self.bstart)
        self.used = np.zeros(nb, dtype=np.int64)
        # union-find: parent_r[b] -> a live block >= b (nb: none); parent_l[b + 1] -> a
        # live block <= b, plus one (0: none)
        self.parent_r = np.arange(nb + 1)
        self.parent_l = np.arange(nb + 1)
        # each treated row's stratum segment [lo, hi) of blocks and insertion point
        self.lo = np.searchsorted(self.bstrat, strat_t, side="left")
        self.hi = np.searchsorted(self.bstrat, strat_t, side="right")
        self.start = np.empty(len(self.x), dtype=np.int64)
        by = np.argsort(strat_t, kind="stable")
        cuts = np.flatnonzero(np.diff(strat_t[by])) + 1
        for rows in np.split(by, cuts) if len(by) else []:
            a, b = self.lo[rows[0]], self.hi[rows[0]]
            self.start[rows] = a + np.searchsorted(self.bscore[a:b], self.x[rows], side="left")

    def n_controls(self, rows: np.ndarray) -> np.ndarray:
        """Controls (all, used or not) in the stratum of each treated row."""
        ends = np.r_[self.bstart, len(self.sc)]
        return ends[self.hi[rows]] - ends[self.lo[rows]]

    def nearest_distance(self, rows: np.ndarray) -> np.ndarray:
        """Distance from each treated row to the nearest control of its stratum, used or
        not (``inf``: none)."""
        p, x = self.start[rows], self.x[rows]
        if not len(self.bscore):
            return np.full(len(rows), np.inf)
        left, right = p - 1, np.minimum(p, len(self.bscore) - 1)
        dl = np.where(left >= self.lo[rows], np.abs(self.bscore[left] - x), np.inf)
        dr = np.where(p < self.hi[rows], np.abs(self.bscore[right] - x), np.inf)
        return np.minimum(dl, dr)

    def _live(self, side: str, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Nearest live block at or beyond ``b`` on ``side`` within [lo, hi) (``-1``: none)."""
        if side == "left":
            found = _find(self.parent_l, b + 1) - 1
            return np.where(found >= lo, found, -1)
        found = _find(self.parent_r, b)
        return np.where(found < hi, found, -1)

    def group(self, t: np.ndarray, lp: np.ndarray, rp: np.ndarray):
        """The next distance group of treated rows ``t`` with pointers ``lp``, ``rp``.

        Returns ``members`` (live blocks at the smallest distance from the row within
        the caliper, one column each, ``-1`` padded), the farthest member on the left
        and on the right (``-1``: none) and whether a group was found at all.
        """
        x, lo, hi = self.x[t], self.lo[t], self.hi[t]
        near = [self._live("left", lp, lo, hi), self._live("right", rp, lo, hi)]
        dist = []
        for b in near:
            db = np.abs(self.bscore[b] - x)
            db[b < 0] = np.inf
            dist.append(db)
        d = np.minimum(dist[0], dist[1])
        found = (d <= self.width) & np.isfinite(d)
        cols = [np.where(found & (db == d), b, -1) for b, db in zip(near, dist, strict=True)]
        far = [c.copy() for c in cols]
        for k, step in ((0, -1), (1, 1)):
            # more blocks at exactly the same distance (rare): distances grow with the
            # distance in blocks, so only if the adjacent block is as far
            adj = cols[k] + step
            i = np.flatnonzero((cols[k] >= 0) & (adj >= lo) & (adj < hi))
            i = i[np.abs(self.bscore[adj[i]] - x[i]) == d[i]]
            cur = cols[k][i]
            while i.size:
                nxt = self._live(("left", "right")[k], cur + step, lo[i], hi[i])
                same = nxt >= 0
                same[same] = np.abs(self.bscore[nxt[same]] - x[i[same]]) == d[i[same]]
                i, cur = i[same], nxt[same]
                if i.size:
                    col = np.full(len(t), -1)
                    col[i] = cur
                    cols.append(col)
                    far[k][i] = cur
        return np.column_stack(cols), far[0], far[1], found

    def choose(self, rows, f, lp, rp, held, nb):
        """Block each treated row ``rows[f]`` proposes to (``-1``: none within the caliper).

        ``held``: sorted keys ``block * nb + row`` of the current holders. A distance
        group none of whose blocks has a free control for the row (its earlier holders
        fill it) is passed for good: the pointers ``lp``, ``rp`` move past it. Also
        returns whether the choice was between several blocks with room.
        """
        choice = np.full(len(f), -1, dtype=np.int64)
        several = np.zeros(len(f), dtype=bool)
        todo = np.arange(len(f))
        while todo.size:
            g = f[todo]
            members, lfar, rfar, found = self.group(rows[g], lp[g], rp[g])
            valid = members >= 0
            m = np.where(valid, members, 0)
            earlier = np.searchsorted(held, m * nb + g[:, None]) - np.searchsorted(held, m * nb)
            room = valid & (earlier < self.bsize[m] - self.used[m])
            n_room = room.sum(axis=1)
            pick = members[np.arange(len(g)), room.argmax(axis=1)]
            many = np.flatnonzero(n_room > 1)
            if many.size:  # equally near blocks: the lower id of their next controls
                nxt = self.bstart[m[many]] + self.used[m[many]] + earlier[many]
                code = np.full(nxt.shape, len(self.ids))
                code[room[many]] = np.unique(self.ids[nxt[room[many]]], return_inverse=True)[1]
                pick[many] = members[many, code.argmin(axis=1)]
            choice[todo] = np.where(n_room > 0, pick, -1)
            several[todo] = n_room > 1
            skip = found & (n_room == 0)
            s = g[skip]
            lp[s] = np.where(lfar[skip] >= 0, lfar[skip] - 1, lp[s])
            rp[s] = np.where(rfar[skip] >= 0, rfar[skip] + 1, rp[s])
            todo = todo[skip]
        return choice, several

    def round_block(self, rows: np.ndarray) -> np.ndarray:
        """One greedy round for treated ``rows`` (priority order), by deferred acceptance.

        Returns the sorted position of each row's control (``-1``: none) and commits
        them to :attr:`used`.
        """
        nb = len(rows)
        lp, rp = self.start[rows] - 1, self.start[rows].copy()
        hold = np.full(nb, -1, dtype=np.int64)
        several = np.zeros(nb, dtype=bool)
        held = np.empty(0, dtype=np.int64)  # sorted keys block * nb + row of the holders
        free = np.arange(nb)
        while free.size:
            choice, sev = self.choose(rows, free, lp, rp, held, nb)
            has = choice >= 0
            prop, blk = free[has], choice[has]
            hold[prop], several[prop] = blk, sev[has]
            # each block keeps its earliest holders and proposers, up to its room
            keys = np.sort(np.concatenate([held, blk * nb + prop]))
            b = keys // nb
            rank = np.arange(len(keys)) - np.searchsorted(keys, b * nb)
            out = rank >= self.bsize[b] - self.used[b]
            held = keys[~out]
            rejected, full = keys[out] % nb, b[out]
            single = ~several[rejected]
            hold[rejected], several[rejected] = -1, False
            # a block that rejects a row is full of earlier holders for good, so the row
            # moves past it, unless a holder may still leave it for an equally near block
            # (a row with several equally near blocks re-examines its group instead)
            keep = single & ~np.isin(full, hold[several])
            r, f = rejected[keep], full[keep]
            left = f < self.start[rows[r]]
            lp[r[left]], rp[r[~left]] = f[left] - 1, f[~left] + 1
            # holders that chose between equally near blocks: still the better one?
            tie = np.flatnonzero(several)
            moved = tie[:0]
            if tie.size:
                again, sev = self.choose(rows, tie, lp, rp, held, nb)
                moved = tie[again != hold[tie]]
                several[tie] = sev
                if moved.size:
                    held = np.setdiff1d(held, hold[moved] * nb + moved, assume_unique=True)
                    hold[moved], several[moved] = -1, False
            free = np.sort(np.concatenate([rejected, moved]))
        return self._commit(held, nb)

    def _commit(self, held: np.ndarray, nb: int) -> np.ndarray:
        """Give each block's holders, in order, its next controls; update the counters."""
        pos = np.full(nb, -1, dtype=np.int64)
        if not held.size:
            return pos
        b = held // nb
        rank = np.arange(len(held)) - np.searchsorted(held, b * nb)
        pos[held % nb] = self.bstart[b] + self.used[b] + rank
        blocks, count = np.unique(b, return_counts=True)
        self.used[blocks] += count
        gone = blocks[self.used[blocks] == self.bsize[blocks]]
        if gone.size:
            _link(self.parent_r, gone, gone + 1)
            _link(self.parent_l, gone + 1, gone)
        return pos

    def nearest_k(self, rows: np.ndarray, k: int) -> np.ndarray:
        """Sorted positions of the ``k`` nearest controls of each treated row within the
        caliper, ties by id (with replacement: nothing is used). ``-1``: none."""
        n = len(rows)
        out = np.full((n, k), -1, dtype=np.int64)
        got = np.zeros(n, dtype=np.int64)
        lp, rp = self.start[rows] - 1, self.start[rows].copy()
        act = np.arange(n)
        while act.size:
            members, lfar, rfar, found = self.group(rows[act], lp[act], rp[act])
            act, members, lfar, rfar = act[found], members[found], lfar[found], rfar[found]
            need = k - got[act]
            m = np.where(members >= 0, members, 0)
            take = np.where(members >= 0, np.minimum(need[:, None], self.bsize[m]), 0)
            row = np.repeat(np.arange(len(act)), take.sum(axis=1))
            flat = take.ravel()
            first = np.repeat(self.bstart[m].ravel(), flat)
            pos = first + np.arange(flat.sum()) - np.repeat(np.cumsum(flat) - flat, flat)
            code = pos
            if members.shape[1] > 1:  # several equally near blocks: merge by id
                code = np.unique(self.ids[pos], return_inverse=True)[1]
            o = np.lexsort((code, row))
            row, pos = row[o], pos[o]
            rank = np.arange(len(row)) - np.searchsorted(row, row)
            keep = rank < need[row]
            out[act[row[keep]], got[act[row[keep]]] + rank[keep]] = pos[keep]
            got[act] += np.minimum(need, take.sum(axis=1))
            lp[act] = np.where(lfar >= 0, lfar - 1, lp[act])
            rp[act] = np.where(rfar >= 0, rfar + 1, rp[act])
            act = act[got[act] < k]
        return out


def greedy_match(
    cands: SortedControls, n_active: int, *, k: int, replace: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Controls of every treated row of ``cands``, in its priority order.

    Parameters
    ----------
    cands : SortedControls
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
    pos = np.full((n_active, k), -1, dtype=np.int64)
    if not len(cands.bstart):
        return pos, np.full((n_active, k), np.inf)
    if replace:
        for start in range(0, n_active, BATCH_SIZE):
            rows = np.arange(start, min(start + BATCH_SIZE, n_active))
            pos[rows] = cands.nearest_k(rows, k)
    else:
        current = np.arange(n_active)
        for r in range(k):
            for start in range(0, len(current), BATCH_SIZE):
                rows = current[start : start + BATCH_SIZE]
                pos[rows, r] = cands.round_block(rows)
            current = current[pos[current, r] >= 0]
    ok = pos >= 0
    p = np.where(ok, pos, 0)
    controls = np.where(ok, cands.order[p], -1)
    distances = np.where(ok, np.abs(cands.sc[p] - cands.x[:, None]), np.inf)
    return controls, distances
