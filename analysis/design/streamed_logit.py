"""Logistic regression on rows that come in pieces: exact Newton-Raphson over sums.

The score equations and the information matrix of a logistic model are sums over rows,
``X'(y - p)`` and ``X' diag(p (1 - p)) X``; so are the log-likelihood, the centred Gram
matrix that finds collinear columns and the counts that find separated cells. Each
Newton-Raphson (IRLS) iteration is one pass over the pieces accumulating these sums:
the maximum-likelihood estimate of all rows, without subsampling and without holding
more than a few pieces. Only the order of the floating-point additions differs from a fit
on the whole table, so coefficients agree with it to about ``1e-12`` (the tests check
``1e-10`` against :func:`analysis.design.propensity.fit_propensity`'s statsmodels fit,
whose own convergence tolerance is coarser).

As :func:`analysis.design.propensity.fit_propensity`:

- rows in a cell of a 0/1 column where every row is treated (or none is) are separated:
  their score is fixed at 1 (0), their logit ``+inf`` (``-inf``), and they leave the fit;
  the check repeats until no cell is separated (all cells found in a pass leave together);
- columns constant among the rows fitted, or linear combinations of earlier ones (the
  centred Gram matrix, the same tolerance), are left out (coefficient ``NaN``);
- a fit whose standardised coefficients pass 25 in absolute value is flagged as not
  converged (quasi-separation); there is no ridge fallback here: :func:`fit_logit_pieces`
  raises, and the caller decides.

The passes over the pieces:

1. the cells and the Gram sums; when the caller gives the chunks' sizes, the same pass
   draws the start's subsample (else a pass of its own does): every treated row and each
   other row with probability ``1/m``, weighted ``m`` (inverse-probability weights: every
   coefficient, the intercept too, is estimated consistently), the draw a hash of the
   seed and the row's position (the same rows however they are chunked);
2. the start, fitted on the subsample, which leaves a few full passes; the result does not
   depend on it beyond the convergence tolerance;
3. Newton-Raphson on all rows until the Newton step at the current estimate is below
   ``tol``; that estimate is returned (within about the step of the maximum), with its
   log-likelihood and, through ``logits``, every row's linear predictor at it, so a caller
   needs no pass of its own for the scores. Once a step is below ``sqrt(tol)`` the next
   pass reuses the last information matrix (its relative error is then about that step,
   so the next step is Newton's to that relative precision) and sums only the score.

Chunks may be given as callables that build them. With ``threads > 1`` they are built and
summed on that many threads and the chunks' sums added in chunk order
(:func:`ordered_map`); BLAS is held to one thread during the fit, so the result does not
depend on the number of threads, bit for bit.
"""

from __future__ import annotations

# long: the passes of the fit (cells, start, Newton), the start's draw and the ordered
# thread map, each a few dozen lines
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit
from threadpoolctl import threadpool_limits

__all__ = ["LogitFit", "fit_logit_pieces", "ordered_map", "subsample_every", "subsample_rows"]

#: residual variance share below which a column counts as a combination of earlier ones
#: (that of :mod:`analysis.design.propensity`)
_COLLINEAR_TOL = 1e-9

#: a chunk: ``(X, y)`` or ``(X, y, w)``, or a callable that builds one
Chunk = tuple[np.ndarray, ...] | Callable[[], tuple[np.ndarray, ...]]
Pieces = Callable[[], Iterable[Chunk]]
#: ``logits(chunk number, linear predictor of the chunk's rows)``
Logits = Callable[[int, np.ndarray], None]


def ordered_map(fn: Callable[[int, Any], Any], items: Iterable, threads: int = 1) -> Iterator:
    """``fn(i, item)`` for each item on ``threads`` threads, the results in the items' order.

    Parameters
    ----------
    fn : callable
        Called with the item's number and the item.
    items : iterable
        Read lazily: at most ``2 * threads`` items are in work at once.
    threads : int, default 1
        1: in this thread, one item after the other.

    Yields
    ------
    object
        ``fn``'s results, in order (so sums of them do not depend on ``threads``).
    """
    if threads <= 1:
        for i, item in enumerate(items):
            yield fn(i, item)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque = deque()
        for i, item in enumerate(items):
            pending.append(pool.submit(fn, i, item))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@dataclass(frozen=True, kw_only=True)
class LogitFit:
    """A logistic model fitted over pieces.

    Attributes
    ----------
    coefficients : pandas.Series
        ``const`` then the columns; ``NaN`` for columns left out (reason in ``dropped``).
        The estimate at which the Newton step (on all rows) was below the tolerance: the
        maximum-likelihood estimate to about that step.
    converged : bool
    n, n_treated, n_separated : int
        Rows; rows with ``y == 1`` among those fitted; rows fixed by separation.
    separated : tuple of (int, float, float)
        Cells ``(column, value, fixed score)`` whose rows left the fit.
    dropped : dict
        Column -> reason it is not in the fit.
    iterations, passes : int
        Newton iterations on all rows; passes over the pieces in all.
    loglik : float
        Log-likelihood of the rows fitted at the estimate.
    step : float
        Largest absolute Newton step at the estimate (below the tolerance).
    """

    coefficients: pd.Series
    converged: bool
    n: int
    n_treated: int
    n_separated: int
    separated: tuple[tuple[int, float, float], ...] = ()
    dropped: dict[str, str] = field(default_factory=dict)
    iterations: int = 0
    passes: int = 0
    loglik: float = float("nan")
    step: float = float("nan")

    def logit(self, X: np.ndarray) -> np.ndarray:
        """Linear predictor of the rows of ``X`` (``+-inf`` in separated cells)."""
        beta = self.coefficients.to_numpy()
        keep = np.flatnonzero(~np.isnan(beta[1:]))
        eta = beta[0] + X[:, keep] @ beta[1:][keep]
        for j, v, fixed in self.separated:
            eta[(X[:, j] == v) & np.isfinite(eta)] = np.inf if fixed == 1.0 else -np.inf
        return eta


def _load(item: Chunk) -> tuple[np.ndarray, ...]:
    return item() if callable(item) else item


def _active(X: np.ndarray, cells: Sequence[tuple[int, float, float]]) -> np.ndarray:
    act = np.ones(len(X), dtype=bool)
    for j, v, _ in cells:
        act &= X[:, j] != v
    return act


def _uniform(position: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) for each row position: the SplitMix64 hash of the
    position (and the seed), so a row's draw does not depend on how rows are chunked."""
    with np.errstate(over="ignore"):
        z = position.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) * np.uint64(seed + 1)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def subsample_rows(treated: np.ndarray, offset: int, m: int, seed: int = 0) -> np.ndarray:
    """Rows of a chunk in the start's subsample: every treated row, each other row with
    probability ``1/m`` (weight ``m``).

    Parameters
    ----------
    treated : ndarray of bool
        The chunk's rows with ``y == 1``.
    offset : int
        Position of the chunk's first row among all rows.
    m : int
        :func:`subsample_every`.
    seed : int, default 0

    Returns
    -------
    ndarray of int
        Sorted row numbers within the chunk; the draw of a row is a hash of ``seed`` and
        its position, so the same rows are drawn however the rows are chunked.
    """
    other = np.flatnonzero(~treated)
    take = other[_uniform(offset + other, seed) < 1.0 / m]
    return np.sort(np.concatenate([np.flatnonzero(treated), take]))


def _draw(X: np.ndarray, y: np.ndarray, offset: int, m: int, seed: int) -> tuple:
    """The start's rows of a chunk (:func:`subsample_rows`), weighted."""
    rows = subsample_rows(y == 1, offset, m, seed)
    return X[rows], y[rows], np.where(y[rows] == 1, 1.0, float(m))


def _cell_sums(X: np.ndarray, y: np.ndarray, cells: list) -> dict[str, Any]:
    """A chunk's 0/1 columns, and counts and Gram sums of its active rows."""
    binary = ((X == 0.0) | (X == 1.0)).all(axis=0)
    rows = len(y)
    if cells:
        act = _active(X, cells)
        X, y = X[act], y[act]
    return {"rows": rows, "binary": binary, "n": len(y), "t": y.sum(), "xs": X.sum(axis=0),
            "t1": y @ X, "xtx": X.T @ X}  # fmt: skip


def _cells_pass(
    pieces: Pieces, p: int, cells: list, *, m: int = 0, offsets: Sequence[int] = (),
    seed: int = 0, threads: int = 1, at: tuple | None = None, logits: Logits | None = None,
) -> tuple[dict, list, list]:  # fmt: skip
    """One pass: counts of the 0/1 cells and the Gram sums over the active rows (and the
    chunks' sizes); new separated cells; the start's subsample when ``m`` is given; with
    ``at = (beta, keep)`` (no cells yet) also the Newton sums there (``sums["newton"]``)."""

    def work(i: int, item: Chunk) -> tuple[dict, tuple | None]:
        X, y = _load(item)[:2]
        part = _cell_sums(X, y, cells)
        if at is not None:
            eta, Xk = _linear_predictor(X, at[0], at[1], [])
            if logits is not None:
                logits(i, eta)
            part["newton"] = _chunk_sums(Xk, y, None, eta, True)
        return part, (_draw(X, y, offsets[i], m, seed) if m else None)

    s = {"rows": 0, "binary": np.ones(p, dtype=bool), "n": 0.0, "t": 0.0, "xs": np.zeros(p),
         "t1": np.zeros(p), "xtx": np.zeros((p, p))}  # fmt: skip
    sample, sizes = [], []
    if at is not None:
        q = len(at[1]) + 1
        s["newton"] = [np.zeros(q), np.zeros((q, q)), 0.0]
    for part, drawn in ordered_map(work, pieces(), threads):
        s["binary"] &= part.pop("binary")
        sizes.append(part["rows"])
        for k, v in enumerate(part.pop("newton", ())):
            s["newton"][k] += v
        for key, value in part.items():
            s[key] += value
        if drawn is not None:
            sample.append(drawn)
    n, t, n1 = s["n"], s["t"], s["xs"]
    new = []
    for j in np.flatnonzero(s["binary"]):
        for v, nv, tv in ((1.0, n1[j], s["t1"][j]), (0.0, n - n1[j], t - s["t1"][j])):
            if nv == 0 or nv == n:
                continue
            if tv == 0 or tv == nv:
                new.append((int(j), v, 1.0 if tv == nv else 0.0))
    s["sizes"] = sizes
    return s, new, sample


def _independent(xtx: np.ndarray, xs: np.ndarray, n: float) -> list[int]:
    """Columns neither constant nor a combination of earlier ones (centred Gram)."""
    mu = xs / n
    G = xtx - n * np.outer(mu, mu)
    keep: list[int] = []
    for j in range(len(xs)):
        gjj = G[j, j]
        if gjj <= 1e-12 * max(xtx[j, j], 1.0):
            continue
        resid = gjj
        if keep:
            b = np.linalg.lstsq(G[np.ix_(keep, keep)], G[keep, j], rcond=None)[0]
            resid = gjj - G[j, keep] @ b
        if resid > _COLLINEAR_TOL * gjj:
            keep.append(j)
    return keep


def _linear_predictor(X: np.ndarray, beta: np.ndarray, keep: np.ndarray, cells: list):
    """``beta[0] + X[:, keep] @ beta[1:]``, ``+-inf`` in separated cells (as
    :meth:`LogitFit.logit`), and the columns ``keep`` of ``X``."""
    Xk = X if len(keep) == X.shape[1] else X[:, keep]
    eta = beta[0] + Xk @ beta[1:]
    for j, v, fixed in cells:
        eta[(X[:, j] == v) & np.isfinite(eta)] = np.inf if fixed == 1.0 else -np.inf
    return eta, Xk


def _chunk_sums(
    Xk: np.ndarray, y: np.ndarray, w: np.ndarray | None, eta: np.ndarray, with_info: bool
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Score, information (or ``None``) and log-likelihood of a chunk's active rows."""
    pr = expit(eta)
    r, v = y - pr, pr * (1 - pr)
    # y log p + (1 - y) log(1 - p) = y eta + log(1 - p), finite for any eta
    lik = y * eta + log_expit(-eta)
    if w is not None:
        r, v, lik = w * r, w * v, w * lik
    q = Xk.shape[1] + 1
    grad = np.empty(q)
    grad[0], grad[1:] = r.sum(), Xk.T @ r
    info = None
    if with_info:
        info = np.empty((q, q))
        Xs = Xk * np.sqrt(v)[:, None]
        info[1:, 1:] = Xs.T @ Xs  # a symmetric product (BLAS syrk)
        xv = Xk.T @ v
        info[0, 0], info[0, 1:], info[1:, 0] = v.sum(), xv, xv
    return grad, info, float(lik.sum())


def _newton_pass(
    items: Iterable[Chunk], beta: np.ndarray, keep: np.ndarray, cells: list, *,
    with_info: bool = True, logits: Logits | None = None, threads: int = 1,
) -> tuple[np.ndarray, np.ndarray | None, float]:  # fmt: skip
    """Score, information (``None`` without ``with_info``) and log-likelihood at ``beta``
    (intercept first), summed in chunk order; ``logits`` gets each chunk's predictor."""

    def work(i: int, item: Chunk) -> tuple:
        X, y, *rest = _load(item)
        w = rest[0] if rest else None
        eta, Xk = _linear_predictor(X, beta, keep, cells)
        if logits is not None:
            logits(i, eta)
        if cells:
            act = _active(X, cells)
            Xk, y, eta, w = Xk[act], y[act], eta[act], None if w is None else w[act]
        return _chunk_sums(Xk, y, w, eta, with_info)

    q = len(keep) + 1
    grad, info, ll = np.zeros(q), np.zeros((q, q)) if with_info else None, 0.0
    for g, h, lk in ordered_map(work, items, threads):
        grad += g
        ll += lk
        if with_info:
            info += h
    return grad, info, ll


def subsample_every(n: float, start_rows: int) -> int:
    """``m``: the start's subsample of ``n`` rows keeps one other row in ``m`` (about
    ``start_rows`` rows, at least 16, so that the start costs less than a pass); 0 (no
    subsample) below ``2 * start_rows`` rows."""
    return max(int(n // start_rows), 16) if start_rows and n > 2 * start_rows else 0


def _sample_pass(pieces: Pieces, offsets: np.ndarray, m: int, seed: int, threads: int) -> list:
    def work(i: int, item: Chunk) -> tuple:
        X, y = _load(item)[:2]
        return _draw(X, y, int(offsets[i]), m, seed)

    return list(ordered_map(work, pieces(), threads))


def _start(sample: list, n: float, t: float, keep: np.ndarray, cells: list) -> np.ndarray:
    """Intercept-only start, then Newton on the subsample (to ``1e-6``) when there is one."""
    beta = np.zeros(len(keep) + 1)
    beta[0] = np.log(t / (n - t))
    for _ in range(100 if sample else 0):
        g, info, _ = _newton_pass(sample, beta, keep, cells)
        step = np.linalg.solve(info, g)
        beta = beta + step
        if np.abs(step).max() < 1e-6:
            break
    return beta


def _given_start(start: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The start fitted on a subsample given by the caller, and the columns it keeps."""
    X, y, w = start
    keep = np.asarray(_independent(X.T @ X, X.sum(axis=0), len(y)), dtype=np.int64)
    return _start([start], float(w.sum()), float(w @ y), keep, []), keep


def _newton(
    pieces: Pieces, beta: np.ndarray, keep: np.ndarray, cells: list, *, tol: float,
    max_iter: int, logits: Logits | None, threads: int, first: Sequence | None = None,
) -> tuple[np.ndarray, bool, int, float, float]:  # fmt: skip
    """Newton passes on all rows: the estimate whose step is below ``tol``, converged,
    iterations, log-likelihood there, the step. ``first``: the sums at ``beta`` of the
    first iteration, already summed (in the pass that found the cells)."""
    info, last, ll, size = None, np.inf, float("nan"), np.inf
    for iteration in range(1, max_iter + 1):
        with_info = info is None or last >= np.sqrt(tol)
        if iteration == 1 and first is not None:
            g, h, ll = first
        else:
            g, h, ll = _newton_pass(
                pieces(), beta, keep, cells, with_info=with_info, logits=logits,
                threads=threads,
            )  # fmt: skip
        info = h if with_info else info
        step = np.linalg.solve(info, g)
        size = float(np.abs(step).max())
        if size < tol:
            return beta, True, iteration, ll, size
        # a step on a reused information matrix that is not yet below tol: recompute it
        last = size if with_info else np.inf
        beta = beta + step
    return beta, False, max_iter, ll, size


# long: the passes of the fit in order (cells, columns, start, Newton), each a few lines
def fit_logit_pieces(
    pieces: Pieces,
    names: Sequence[str],
    *,
    tol: float = 1e-10,
    max_iter: int = 100,
    start_rows: int = 200_000,
    sizes: Sequence[int] | None = None,
    seed: int = 0,
    threads: int = 1,
    logits: Logits | None = None,
    start: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> LogitFit:
    """Maximum-likelihood logistic regression over rows given in pieces.

    Parameters
    ----------
    pieces : callable
        Called once per pass; returns an iterable of chunks, each ``(X, y)`` (the design
        matrix of some rows, ``float64``, columns ``names``, no intercept, and their 0/1
        outcome) or a callable without arguments that returns one. The chunks must come
        in the same order, with the same rows, at every pass.
    names : sequence of str
        Column names.
    tol : float, default 1e-10
        Convergence: largest absolute Newton step at the estimate returned.
    max_iter : int, default 100
        Newton iterations on all rows at most.
    start_rows : int, default 200,000
        About the size of the subsample the start is fitted on, at most a sixteenth of
        the rows (0: start from the intercept only; so too below ``2 * start_rows`` rows).
    sizes : sequence of int, optional
        Rows of each chunk, in order, if known: the subsample is then drawn in the first
        pass instead of a pass of its own.
    seed : int, default 0
        Seed of the subsample's draws (a hash of the seed and the row's position among all
        rows: the same rows however they are chunked); the estimate does not depend on it
        beyond ``tol``.
    threads : int, default 1
        Chunks built and summed at once; the result does not depend on it.
    logits : callable, optional
        ``logits(chunk number, eta)`` is called at every Newton pass with the linear
        predictor of the chunk's rows (``+-inf`` in separated cells); the last call of a
        chunk is at the estimate returned (called from the worker threads).
    start : tuple of ndarray, optional
        A subsample drawn by the caller, ``(X, y, w)`` (``w`` its weights, e.g. ``m`` for
        a row drawn with probability ``1/m``), instead of one drawn here: the start is
        fitted on it before the first pass, which then also sums the first Newton
        iteration (one pass fewer), unless that pass finds separated cells or columns left
        out that the subsample did not show.

    Returns
    -------
    LogitFit

    Raises
    ------
    ValueError
        No rows, one outcome only, no rows left after separation, or no convergence
        (separation along a combination of columns).
    """
    p = len(names)
    cells: list = []
    passes = 0
    rows = None if sizes is None else int(np.sum(sizes))
    m = subsample_every(rows, start_rows) if rows else 0
    offsets = () if sizes is None else np.r_[0, np.cumsum(sizes)[:-1]].tolist()
    with threadpool_limits(limits=1, user_api="blas"):
        sample: list = [] if start is None else [start]
        at = None if start is None else _given_start(start)
        m = 0 if start is not None else m
        while True:
            sums, new, drawn = _cells_pass(
                pieces, p, cells, m=m, offsets=offsets, seed=seed, threads=threads,
                at=None if cells else at, logits=logits,
            )  # fmt: skip
            sample, m, passes = sample or drawn, 0, passes + 1
            if not new:
                break
            cells += new
        n, t = sums["n"], sums["t"]
        if n == 0 or t == 0 or t == n:
            raise ValueError(f"{int(t)} treated among {int(n)} rows fitted: both groups are needed")
        keep = np.asarray(_independent(sums["xtx"], sums["xs"], n), dtype=np.int64)
        if not sample and rows is None and subsample_every(n, start_rows):
            offsets = np.r_[0, np.cumsum(sums["sizes"])[:-1]]
            sample = _sample_pass(pieces, offsets, subsample_every(n, start_rows), seed, threads)
            passes += 1
        first = sums.get("newton")
        if first is not None and not cells and np.array_equal(keep, at[1]):
            beta = at[0]  # the first pass summed the first iteration at this start
        else:
            first = None
            beta = _start(sample, n, t, keep, cells)
        del sample
        beta, converged, iterations, ll, size = _newton(
            pieces, beta, keep, cells, tol=tol, max_iter=max_iter, logits=logits,
            threads=threads, first=first,
        )  # fmt: skip
        passes += iterations - (first is not None)
    sd = np.sqrt(np.maximum(np.diag(sums["xtx"]) / n - (sums["xs"] / n) ** 2, 0.0))[keep]
    if not converged or not np.isfinite(beta).all() or np.abs(beta[1:] * sd).max(initial=0) >= 25:
        raise ValueError(
            "the logistic model did not converge over the pieces (separation or "
            "near-collinearity along a combination of columns)"
        )
    n_sep = int(sums["rows"] - n)
    coef = np.full(p + 1, np.nan)
    coef[0] = beta[0]
    coef[1 + keep] = beta[1:]
    dropped = {
        names[j]: "constant or a linear combination of earlier columns among the rows fitted"
        for j in range(p)
        if j not in set(keep.tolist())
    }
    for j, v, fixed in cells:
        dropped.setdefault(
            names[j],
            f"separation: all {'treated' if fixed == 1.0 else 'controls'} where "
            f"{names[j]} == {v:g}",
        )
    return LogitFit(
        coefficients=pd.Series(coef, index=["const", *names], name="coefficient"),
        converged=True,
        n=int(n) + n_sep,
        n_treated=int(t),
        n_separated=n_sep,
        separated=tuple(cells),
        dropped=dropped,
        iterations=iterations,
        passes=passes,
        loglik=ll,
        step=size,
    )
