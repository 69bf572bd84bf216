"""Internals of the Cox engine (:mod:`analysis.outcomes.coxph`): the sorted layout of the data,
the partial likelihood with its score and information, and the score residuals.

Rows are sorted once by stratum, time and event status; every quantity is then a sum over
blocks of tied rows and a (segmented) cumulative sum over those blocks. See the notes of
:mod:`analysis.outcomes.coxph` for the method.

With delayed entry (counting-process rows ``(entry, stop]``) the rows are also ordered by
stratum and entry time (:class:`_Entry`): a risk-set sum at ``t`` is the sum over rows with
``stop >= t`` minus the sum over rows with ``entry >= t``, two tail sums read at searched
positions, and a row's cumulative hazard is the one at its stop time minus the one at its
entry time. These differences use compensated sums, so they keep full precision when a
person's many later intervals make both terms much larger than their difference.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# ---------------------------------------------------------------------------------------------
# Segmented cumulative sums (along the last axis)


def _compensated_cumsum(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative sum of a vector and the running sum of its rounding errors.

    ``s + e`` is the cumulative sum to about twice working precision. The rounding error of
    each ``s[i] = fl(s[i-1] + x[i])`` is recovered exactly by Knuth's TwoSum, which is
    vectorised here because every ``s[i]`` is already known.
    """
    s = np.cumsum(values)
    prev = np.empty_like(s)
    prev[0] = 0.0
    prev[1:] = s[:-1]
    bb = s - prev
    err = (prev - (s - bb)) + (values - bb)
    return s, np.cumsum(err)


def _segment_cumsum(values: np.ndarray, seg_first: np.ndarray | None) -> np.ndarray:
    """Forward cumulative sum along the last axis, restarting at each contiguous segment.

    Parameters
    ----------
    values : ndarray, shape (m,) or (p, m)
    seg_first : ndarray of int, shape (m,), or None
        Position of the first element of each element's segment; ``None`` for one segment.

    Notes
    -----
    A restart subtracts the running total of the earlier segments, which would cost precision
    for small sums late in the array; the compensated cumulative sum keeps it. Rows of a 2-D
    input are done one at a time to keep temporaries small.
    """
    if seg_first is None:
        return np.cumsum(values, axis=-1)
    if values.ndim == 2:
        out = np.empty(values.shape)
        for j in range(values.shape[0]):
            out[j] = _segment_cumsum(values[j], seg_first)
        return out
    s, e = _compensated_cumsum(values)
    pad = np.zeros(s.size + 1)
    pad[1:] = s
    s -= pad[seg_first]
    pad[1:] = e
    e -= pad[seg_first]
    s += e
    return s


def _segment_revcumsum(values: np.ndarray, seg_last: np.ndarray | None) -> np.ndarray:
    """Sum from each element to the end of its segment, along the last axis."""
    if seg_last is None:
        return np.cumsum(values[..., ::-1], axis=-1)[..., ::-1]
    m = values.shape[-1]
    rev_first = (m - 1 - seg_last)[::-1]
    return _segment_cumsum(values[..., ::-1], rev_first)[..., ::-1]


def _tail_sums(values: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum(values[pos:])`` for each position (``len(values)`` gives 0), compensated.

    Returns the sums and their rounding errors (add them for the sum to about twice working
    precision), so that differences of two tail sums lose nothing to cancellation.
    """
    s, e = _compensated_cumsum(values[::-1])
    idx = values.size - pos
    return np.r_[0.0, s][idx], np.r_[0.0, e][idx]


def _head_sums_between(values: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """``sum(values[lo + 1 : hi + 1])`` for each pair (``lo`` may be -1), compensated."""
    s, e = _compensated_cumsum(values)
    s, e = np.r_[0.0, s], np.r_[0.0, e]
    return (s[hi + 1] - s[lo + 1]) + (e[hi + 1] - e[lo + 1])


# ---------------------------------------------------------------------------------------------
# Sorted problem structure
#
# Rows are sorted by (stratum, time, event), so that within each group of tied times (in a
# stratum) the censored rows come first and the events form one contiguous block. A
# "subgroup" is such a block: sums over subgroups give both the group sums (risk sets) and
# the sums over tied events (Efron) from one pass over the data. The design is stored
# transposed, (p, n), so that every pass runs over contiguous memory.


@dataclass(frozen=True, eq=False)
class _Entry:
    """Delayed entry: where each row enters its risk sets, in the sorted layout.

    Times are coded as integer keys ``stratum * m + rank`` (``rank`` among all entry and stop
    times), so that one search over all strata at once stays inside each stratum: a global
    tail sum from a position in stratum ``s`` also holds the rows of the later strata, which
    cancel between the stop-time and entry-time sums.
    """

    order: np.ndarray  # (n,) sorted rows ordered by (stratum, entry)
    eg_pos: np.ndarray  # (n_eg,) position in ``order`` of the first row entering at or after t
    row_grp: np.ndarray  # (n,) last (stratum, time) group at or before the row's entry; -1
    stop_key: np.ndarray  # (n,) key of each sorted row's stop time
    entry_key: np.ndarray  # (n,) key of each sorted row's entry time


@dataclass(frozen=True, eq=False)
class _Layout:
    """Everything about the sorted data that does not depend on the coefficients."""

    XT: np.ndarray  # (p, n) sorted, centred covariates
    w: np.ndarray  # (n,) case weights
    w_event: np.ndarray  # (n,) case weight for events, 0 for censored rows
    stratum_starts: np.ndarray  # (n_strata,) first row of each stratum
    stratum_of_row: np.ndarray | None  # (n,); None for one stratum
    sub_starts: np.ndarray | None  # (n_sub,) first row of each subgroup; None if one per row
    sub_seg_last: np.ndarray | None  # (n_sub,) last subgroup of each subgroup's stratum
    n_groups: int  # G, the number of (stratum, time) groups
    grp_of_row: np.ndarray  # (n,)
    grp_seg_first: np.ndarray | None  # (G,) first group of each group's stratum
    ev_rows: np.ndarray  # (n_ev,) sorted row of each event
    ev_sub: np.ndarray  # (n_eg,) subgroup holding each tied-event set
    eg_first_sub: np.ndarray  # (n_eg,) first subgroup of the group of each tied-event set
    eg_grp: np.ndarray  # (n_eg,) group of each tied-event set
    eg_count: np.ndarray  # (n_eg,) events d in each tied set
    eg_starts: np.ndarray  # (n_eg,) first event (index into ev_rows) of each set
    eg_of_ev: np.ndarray  # (n_ev,) tied set of each event
    eg_single: bool  # no tied events: every tied set is one event
    frac: np.ndarray | None  # (n_ev,) Efron down-weight k/d; None for Breslow or no ties
    mean_wt: np.ndarray  # (n_ev,) mean case weight of the event's tied set
    score_const: np.ndarray  # (p,) sum over events of w x
    entry: _Entry | None = None  # delayed entry; None for right-censored rows (entry -inf)


def _entry_layout(
    t: np.ndarray,
    entry: np.ndarray,
    strata_code: np.ndarray | None,
    order: np.ndarray,
    grp_starts: np.ndarray,
    ev_sub_rows: np.ndarray,
) -> _Entry:
    """The :class:`_Entry` of the sorted rows (``t`` and ``entry`` sorted, strata by ``order``)."""
    values = np.unique(np.concatenate([t, entry]))
    stop_key = np.searchsorted(values, t).astype(np.int64)
    entry_key = np.searchsorted(values, entry).astype(np.int64)
    if strata_code is not None:
        offset = strata_code[order].astype(np.int64) * np.int64(values.size)
        stop_key += offset
        entry_key += offset
    by_entry = np.argsort(entry_key, kind="stable")
    return _Entry(
        order=by_entry,
        eg_pos=np.searchsorted(entry_key[by_entry], stop_key[ev_sub_rows], side="left"),
        row_grp=np.searchsorted(stop_key[grp_starts], entry_key, side="right") - 1,
        stop_key=stop_key,
        entry_key=entry_key,
    )


def _layout(
    X, duration, event, weights, strata_code, ties: str, entry=None
) -> tuple[_Layout, np.ndarray]:
    n = X.shape[0]
    keys = (event, duration) if strata_code is None else (event, duration, strata_code)
    order = np.lexsort(keys)
    XT = X.T.take(order, axis=1)
    XT -= XT.mean(axis=1, keepdims=True)
    t = duration[order]
    ev = event[order]
    w = weights[order]

    new_str = np.zeros(n, dtype=bool)
    new_str[0] = True
    if strata_code is not None:
        s = strata_code[order]
        new_str[1:] = s[1:] != s[:-1]
    new_grp = new_str.copy()
    new_grp[1:] |= t[1:] != t[:-1]
    new_sub = new_grp.copy()
    new_sub[1:] |= ev[1:] != ev[:-1]

    stratum_starts = np.flatnonzero(new_str)
    stratum_of_row = np.cumsum(new_str) - 1
    grp_starts = np.flatnonzero(new_grp)
    grp_of_row = np.cumsum(new_grp) - 1
    sub_starts = np.flatnonzero(new_sub)
    grp_first_sub = np.flatnonzero(new_grp[sub_starts])
    if stratum_starts.size > 1:
        levels = np.arange(stratum_starts.size)
        grp_stratum = stratum_of_row[grp_starts]
        grp_seg_first = np.searchsorted(grp_stratum, levels, "left")[grp_stratum]
        sub_stratum = stratum_of_row[sub_starts]
        sub_seg_last = (np.searchsorted(sub_stratum, levels, "right") - 1)[sub_stratum]
    else:
        grp_seg_first = sub_seg_last = None

    ev_sub = np.flatnonzero(ev[sub_starts])
    sub_size = np.diff(np.append(sub_starts, n))
    eg_count = sub_size[ev_sub]
    eg_grp = grp_of_row[sub_starts[ev_sub]]
    ev_rows = np.flatnonzero(ev)
    n_eg = ev_sub.size
    eg_starts = np.concatenate([[0], np.cumsum(eg_count)[:-1]])
    eg_of_ev = np.repeat(np.arange(n_eg), eg_count)
    if ties == "efron" and eg_count.max() > 1:
        frac = (np.arange(ev_rows.size) - eg_starts[eg_of_ev]) / eg_count[eg_of_ev]
    else:
        frac = None
    w_event = np.where(ev, w, 0.0)
    mean_wt = (np.add.reduceat(w[ev_rows], eg_starts) / eg_count)[eg_of_ev]
    if entry is not None:
        entry = _entry_layout(t, entry[order], strata_code, order, grp_starts, sub_starts[ev_sub])
    lay = _Layout(
        XT=XT,
        w=w,
        w_event=w_event,
        stratum_starts=stratum_starts,
        stratum_of_row=stratum_of_row if stratum_starts.size > 1 else None,
        sub_starts=None if sub_starts.size == n else sub_starts,
        sub_seg_last=sub_seg_last,
        n_groups=grp_starts.size,
        grp_of_row=grp_of_row,
        grp_seg_first=grp_seg_first,
        ev_rows=ev_rows,
        ev_sub=ev_sub,
        eg_first_sub=grp_first_sub[eg_grp],
        eg_grp=eg_grp,
        eg_count=eg_count,
        eg_starts=eg_starts,
        eg_of_ev=eg_of_ev,
        eg_single=bool(eg_count.max() == 1),
        frac=frac,
        mean_wt=mean_wt,
        score_const=XT @ w_event,
        entry=entry,
    )
    return lay, order


def _reweight(lay: _Layout, w: np.ndarray) -> _Layout:
    """The layout with other case weights ``w`` (sorted order): the sort is reused."""
    w_event = np.zeros_like(w)
    w_event[lay.ev_rows] = w[lay.ev_rows]
    mean_wt = (np.add.reduceat(w[lay.ev_rows], lay.eg_starts) / lay.eg_count)[lay.eg_of_ev]
    return replace(lay, w=w, w_event=w_event, mean_wt=mean_wt, score_const=lay.XT @ w_event)


@dataclass(frozen=True, eq=False)
class _Eval:
    """Partial likelihood, its derivatives and the pieces the residuals reuse."""

    loglik: float
    score: np.ndarray  # (p,)
    info: np.ndarray  # (p, p)
    risk: np.ndarray  # (n,) exp(eta - stratum max), without case weights
    hcum: np.ndarray  # (n,) cumulative hazard at each row (Efron-reduced at its own death)
    s1e: np.ndarray  # (p, n_eg) risk-set sums of r x at each tied-event set
    e1: np.ndarray | None  # (p, n_eg) sums of r x over the tied events (Efron only)
    denom: np.ndarray  # (n_ev,) Efron denominators
    q: tuple[np.ndarray, np.ndarray, np.ndarray]  # sums over k of h/denom * (1, f, f^2)


def _sum_tied(values: np.ndarray, lay: _Layout) -> np.ndarray:
    """Sum a per-event vector over each set of tied events."""
    return values if lay.eg_single else np.add.reduceat(values, lay.eg_starts)


def _score_terms(lay: _Layout, beta: np.ndarray, buf: np.ndarray) -> tuple:
    """The risk-set sums at ``beta`` up to the score (all :func:`_score` needs)."""
    XT = lay.XT
    eta = beta @ XT
    # Shift by the stratum's maximum: the partial likelihood is invariant to it.
    if lay.stratum_starts.size > 1:
        eta -= np.maximum.reduceat(eta, lay.stratum_starts)[lay.stratum_of_row]
    else:
        eta -= eta.max()
    risk = np.exp(eta)
    r = risk * lay.w

    # One pass over the rows: sums of r and r x over every subgroup, then risk-set sums
    # (reverse cumulative sums within stratum) read at the first subgroup of each group.
    np.multiply(XT, r, out=buf)
    if lay.sub_starts is None:  # untied data: every row is its own subgroup
        sub0, sub1 = r, buf
    else:
        sub0 = np.add.reduceat(r, lay.sub_starts)
        sub1 = np.add.reduceat(buf, lay.sub_starts, axis=1)
    if lay.entry is None:
        s0e = _segment_revcumsum(sub0, lay.sub_seg_last)[lay.eg_first_sub]
        s1e = np.empty((XT.shape[0], lay.eg_first_sub.size))
        for j in range(XT.shape[0]):  # one covariate at a time: temporaries of length n_sub
            s1e[j] = _segment_revcumsum(sub1[j], lay.sub_seg_last)[lay.eg_first_sub]
    else:
        s0e, s1e = _entry_risk_sums(lay, sub0, sub1, r, buf)

    # Per event (Efron term k of its tied set), scalars only.
    eg, frac = lay.eg_of_ev, lay.frac
    e1 = None if frac is None else sub1[:, lay.ev_sub]
    denom = s0e[eg] if frac is None else s0e[eg] - frac * sub0[lay.ev_sub][eg]
    h = lay.mean_wt / denom
    c0 = _sum_tied(h, lay)
    if frac is None:
        c1 = np.zeros_like(c0)
        score = lay.score_const - s1e @ c0
    else:
        c1 = np.add.reduceat(frac * h, lay.eg_starts)
        score = lay.score_const - (s1e @ c0 - e1 @ c1)
    return eta, risk, r, s1e, e1, denom, h, c0, c1, score


def _score(lay: _Layout, beta: np.ndarray) -> np.ndarray:
    """The score at ``beta`` alone, as :func:`_evaluate` computes it (no information)."""
    return _score_terms(lay, beta, np.empty_like(lay.XT))[-1]


def _evaluate(lay: _Layout, beta: np.ndarray, buf: np.ndarray) -> _Eval:
    XT = lay.XT
    eta, risk, r, s1e, e1, denom, h, c0, c1, score = _score_terms(lay, beta, buf)
    eg, frac, starts = lay.eg_of_ev, lay.frac, lay.eg_starts
    hd = h / denom
    loglik = float(lay.w_event @ eta - lay.mean_wt @ np.log(denom))
    q0 = _sum_tied(hd, lay)
    if frac is None:
        q1 = q2 = np.zeros_like(c0)
        outer = (s1e * q0) @ s1e.T
    else:
        q1 = np.add.reduceat(frac * hd, starts)
        q2 = np.add.reduceat(frac * frac * hd, starts)
        cross = (s1e * q1) @ e1.T
        outer = (s1e * q0) @ s1e.T - cross - cross.T + (e1 * q2) @ e1.T

    # Cumulative hazard at each row's time, within stratum; a tied death is down-weighted in
    # its own risk set (Efron). Then sum_t sum_k h {S2 - (k/d) E2} = X' diag(r hcum) X.
    cg = np.zeros(lay.n_groups)
    cg[lay.eg_grp] = c0
    hcum = _over_risk_period(lay, cg)
    if frac is not None:
        hcum[lay.ev_rows] -= c1[eg]
    np.multiply(XT, r * hcum, out=buf)
    info = buf @ XT.T - outer
    info = 0.5 * (info + info.T)
    return _Eval(
        loglik=loglik,
        score=score,
        info=info,
        risk=risk,
        hcum=hcum,
        s1e=s1e,
        e1=e1,
        denom=denom,
        q=(q0, q1, q2),
    )


def _entry_risk_sums(
    lay: _Layout, sub0: np.ndarray, sub1: np.ndarray, r: np.ndarray, rx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Risk-set sums of ``r`` and ``r x`` at each tied-event set, with delayed entry.

    The rows with ``stop >= t`` (tail sums over the subgroups from the first subgroup of the
    set's group) minus the rows with ``entry >= t`` (tail sums in entry order): the rows with
    ``entry < t <= stop``.
    """
    ent = lay.entry
    first = lay.eg_first_sub

    def at_risk(by_stop: np.ndarray, by_row: np.ndarray) -> np.ndarray:
        s_stop, e_stop = _tail_sums(by_stop, first)
        s_entry, e_entry = _tail_sums(by_row[ent.order], ent.eg_pos)
        return (s_stop - s_entry) + (e_stop - e_entry)

    s0e = at_risk(sub0, r)
    s1e = np.empty((rx.shape[0], first.size))
    for j in range(rx.shape[0]):
        s1e[j] = at_risk(sub1[j], rx[j])
    return s0e, s1e


def _over_risk_period(lay: _Layout, per_group: np.ndarray) -> np.ndarray:
    """Sum of a per-group quantity over each row's risk period, shape (n,).

    The groups of the row's stratum up to its time and, with delayed entry, after its
    entry time.
    """
    if lay.entry is None:
        return _segment_cumsum(per_group, lay.grp_seg_first)[lay.grp_of_row]
    return _head_sums_between(per_group, lay.grp_of_row, lay.entry.row_grp)


def _efron_means(lay: _Layout, cur: _Eval) -> np.ndarray:
    """Covariate mean of each tied-event set, shape (p, n_eg), averaged over Efron's terms.

    An event's Schoenfeld residual is its (centred) covariate minus this mean.
    """
    inv = 1.0 / cur.denom
    u0 = _sum_tied(inv, lay)
    if lay.frac is None:
        return cur.s1e * (u0 / lay.eg_count)
    u1 = np.add.reduceat(lay.frac * inv, lay.eg_starts)
    return (cur.s1e * u0 - cur.e1 * u1) / lay.eg_count


def _cumulative_hazard(lay: _Layout, cur: _Eval, set_weight: np.ndarray) -> np.ndarray:
    """As ``cur.hcum``, with the hazard increment of each tied-event set times ``set_weight``."""
    h = (lay.mean_wt / cur.denom) * set_weight[lay.eg_of_ev]
    cg = np.zeros(lay.n_groups)
    cg[lay.eg_grp] = _sum_tied(h, lay)
    hcum = _over_risk_period(lay, cg)
    if lay.frac is not None:
        hcum[lay.ev_rows] -= np.add.reduceat(lay.frac * h, lay.eg_starts)[lay.eg_of_ev]
    return hcum


def _weighted_information(
    lay: _Layout, cur: _Eval, set_weight: np.ndarray, buf: np.ndarray
) -> np.ndarray:
    """Information matrix with the term of each tied-event set times ``set_weight``.

    ``sum_t set_weight(t) I(t)``, where ``I(t)`` is the contribution of event time ``t`` to
    ``cur.info`` (which is this with ``set_weight`` = 1), built the same way.
    """
    q0, q1, q2 = (q * set_weight for q in cur.q)
    s1e, e1 = cur.s1e, cur.e1
    outer = (s1e * q0) @ s1e.T
    if e1 is not None:
        cross = (s1e * q1) @ e1.T
        outer += (e1 * q2) @ e1.T - cross - cross.T
    hcum = _cumulative_hazard(lay, cur, set_weight)
    np.multiply(lay.XT, cur.risk * lay.w * hcum, out=buf)
    info = buf @ lay.XT.T - outer
    return 0.5 * (info + info.T)


def _weighted_score_residuals(
    lay: _Layout, cur: _Eval, out: np.ndarray, set_weight: np.ndarray | None = None
) -> np.ndarray:
    """Case-weighted score residuals, shape (p, n), rows in sorted order, written to ``out``.

    Column ``i`` is ``w_i`` times R's ``residuals(fit, type = "score")``: its event term
    ``x_i - mean_k a_k`` minus ``exp(eta_i) * sum_t h(t) {x_i - a(t)}`` over its risk sets.
    They sum to the score, which is zero at the estimate. Built one covariate at a time so
    that no temporary larger than ``n`` is made.

    With ``set_weight`` (one value ``g(t)`` per tied-event set), the residuals are those of
    the time-varying covariate ``x g(t)`` at a zero coefficient for it: the event term and
    every hazard increment are multiplied by ``g`` at their time.
    """
    XT = lay.XT
    ev, eg, frac = lay.ev_rows, lay.eg_of_ev, lay.frac
    q0, q1, q2 = cur.q
    hcum = cur.hcum
    if set_weight is not None:
        q0, q1, q2 = q0 * set_weight, q1 * set_weight, q2 * set_weight
        hcum = _cumulative_hazard(lay, cur, set_weight)
    s1e, e1 = cur.s1e, cur.e1
    ha_eg = s1e * q0 if e1 is None else s1e * q0 - e1 * q1
    ha = np.zeros(lay.n_groups)
    abar = _efron_means(lay, cur)
    ha_own = None if frac is None else s1e * q1 - e1 * q2  # Efron: own-death share removed
    for j in range(XT.shape[0]):
        row = out[j]
        ha[lay.eg_grp] = ha_eg[j]
        if lay.entry is None:
            np.take(_segment_cumsum(ha, lay.grp_seg_first), lay.grp_of_row, out=row)
        else:
            row[:] = _over_risk_period(lay, ha)
        if ha_own is not None:
            row[ev] -= ha_own[j, eg]
        row -= XT[j] * hcum
        row *= cur.risk
        if set_weight is None:
            row[ev] += XT[j, ev] - abar[j, eg]
        else:
            row[ev] += (XT[j, ev] - abar[j, eg]) * set_weight[eg]
        row *= lay.w
    return out
