"""Logistic regression on rows that come in pieces: exact Newton-Raphson over sums.

The score equations and the information matrix of a logistic model are sums over rows,
``X'(y - p)`` and ``X' diag(p (1 - p)) X``; so are the log-likelihood, the centred Gram
matrix that finds collinear columns and the counts that find separated cells. Each
Newton-Raphson (IRLS) iteration is one pass over the pieces accumulating these sums:
the maximum-likelihood estimate of all rows, without subsampling and without holding
more than one piece. Only the order of the floating-point additions differs from a fit
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

The start is the fit on a deterministic subsample (every treated row and every ``m``-th
other row, weighted ``m``), which leaves a few full passes to converge; the result does
not depend on it beyond the convergence tolerance (``max |step| < tol`` on all rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit, log_expit

__all__ = ["LogitFit", "fit_logit_pieces"]

#: residual variance share below which a column counts as a combination of earlier ones
#: (that of :mod:`analysis.design.propensity`)
_COLLINEAR_TOL = 1e-9

Pieces = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True, kw_only=True)
class LogitFit:
    """A logistic model fitted over pieces.

    Attributes
    ----------
    coefficients : pandas.Series
        ``const`` then the columns; ``NaN`` for columns left out (reason in ``dropped``).
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

    def logit(self, X: np.ndarray) -> np.ndarray:
        """Linear predictor of the rows of ``X`` (``+-inf`` in separated cells)."""
        beta = self.coefficients.to_numpy()
        keep = np.flatnonzero(~np.isnan(beta[1:]))
        eta = beta[0] + X[:, keep] @ beta[1:][keep]
        for j, v, fixed in self.separated:
            eta[(X[:, j] == v) & np.isfinite(eta)] = np.inf if fixed == 1.0 else -np.inf
        return eta


def _active(X: np.ndarray, cells: Sequence[tuple[int, float, float]]) -> np.ndarray:
    act = np.ones(len(X), dtype=bool)
    for j, v, _ in cells:
        act &= X[:, j] != v
    return act


def _cells_pass(pieces: Pieces, p: int, cells: list) -> tuple[dict, list]:
    """One pass: counts of the 0/1 cells and the Gram sums over the active rows."""
    binary = np.ones(p, dtype=bool)
    n1, t1 = np.zeros(p), np.zeros(p)
    n = t = 0.0
    xtx, xs = np.zeros((p, p)), np.zeros(p)
    for X, y in pieces():
        binary &= ((X == 0.0) | (X == 1.0)).all(axis=0)
        Xa, ya = X, y
        if cells:
            act = _active(X, cells)
            Xa, ya = X[act], y[act]
        n, t = n + len(ya), t + ya.sum()
        n1 += Xa.sum(axis=0)
        t1 += ya @ Xa
        xtx += Xa.T @ Xa
        xs += Xa.sum(axis=0)
    new = []
    for j in np.flatnonzero(binary):
        for v, nv, tv in ((1.0, n1[j], t1[j]), (0.0, n - n1[j], t - t1[j])):
            if nv == 0 or nv == n:
                continue
            if tv == 0 or tv == nv:
                new.append((int(j), v, 1.0 if tv == nv else 0.0))
    return {"n": n, "t": t, "xtx": xtx, "xs": xs}, new


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


def _newton_pass(
    pieces: Iterable[tuple[np.ndarray, np.ndarray]] | Iterable[tuple],
    beta: np.ndarray,
    keep: np.ndarray,
    cells: list,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Score, information and log-likelihood at ``beta`` (intercept first), summed."""
    q = len(keep) + 1
    grad, info, ll = np.zeros(q), np.zeros((q, q)), 0.0
    for item in pieces:
        X, y = item[0], item[1]
        w = item[2] if len(item) > 2 else None
        if cells:
            act = _active(X, cells)
            X, y = X[act], y[act]
            w = None if w is None else w[act]
        Z = np.empty((len(y), len(keep) + 1), order="F")
        Z[:, 0] = 1.0
        Z[:, 1:] = X[:, keep] if len(keep) < X.shape[1] else X
        ya = y
        eta = Z @ beta
        pr = expit(eta)
        wr = np.ones(len(ya)) if w is None else w
        grad += Z.T @ (wr * (ya - pr))
        info += (Z * (wr * pr * (1 - pr))[:, None]).T @ Z
        # log-likelihood with log-expit: finite for any eta
        ll += float(wr @ (ya * log_expit(eta) + (1 - ya) * log_expit(-eta)))
    return grad, info, ll


def _subsample(pieces: Pieces, target: int, n: float) -> list[tuple]:
    """Every treated row and every m-th other row (weight m): the start's data."""
    m = max(1, int(n // max(target, 1)))
    out, seen = [], 0
    for X, y in pieces():
        other = np.flatnonzero(y == 0)
        take = other[(seen + other) % m == 0] if m > 1 else other
        seen += len(y)
        rows = np.sort(np.concatenate([np.flatnonzero(y == 1), take]))
        out.append((X[rows], y[rows], np.where(y[rows] == 1, 1.0, float(m))))
    return out


# long: the passes of the fit in order (cells, columns, start, Newton), each a few lines
def fit_logit_pieces(
    pieces: Pieces,
    names: Sequence[str],
    *,
    tol: float = 1e-10,
    max_iter: int = 100,
    start_rows: int = 200_000,
) -> LogitFit:
    """Maximum-likelihood logistic regression over rows given in pieces.

    Parameters
    ----------
    pieces : callable
        Called once per pass; returns an iterable of ``(X, y)``: the design matrix of a
        piece (``float64``, columns ``names``, no intercept) and its 0/1 outcome.
    names : sequence of str
        Column names.
    tol : float, default 1e-10
        Convergence: largest absolute Newton step.
    max_iter : int, default 100
        Newton iterations on all rows at most.
    start_rows : int, default 200,000
        Size of the subsample the start is fitted on (0: start from the intercept only).

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
    while True:
        sums, new = _cells_pass(pieces, p, cells)
        passes += 1
        if not new:
            break
        cells += new
    n, t = sums["n"], sums["t"]
    if n == 0 or t == 0 or t == n:
        raise ValueError(f"{int(t)} treated among {int(n)} rows fitted: both groups are needed")
    keep = np.asarray(_independent(sums["xtx"], sums["xs"], n), dtype=np.int64)
    beta = np.zeros(len(keep) + 1)
    beta[0] = np.log(t / (n - t))
    if start_rows and n > 2 * start_rows:
        sample = _subsample(pieces, start_rows, n)
        passes += 1
        for _ in range(max_iter):
            g, info, _ = _newton_pass(sample, beta, keep, cells)
            step = np.linalg.solve(info, g)
            beta = beta + step
            if np.abs(step).max() < 1e-6:
                break
    converged, iterations, ll = False, 0, float("nan")
    while iterations < max_iter:
        iterations += 1
        g, info, ll = _newton_pass(pieces(), beta, keep, cells)
        passes += 1
        step = np.linalg.solve(info, g)
        beta = beta + step
        if np.abs(step).max() < tol:
            converged = True
            break
    sd = np.sqrt(np.maximum(np.diag(sums["xtx"]) / n - (sums["xs"] / n) ** 2, 0.0))[keep]
    if not converged or not np.isfinite(beta).all() or np.abs(beta[1:] * sd).max(initial=0) >= 25:
        raise ValueError(
            "the logistic model did not converge over the pieces (separation or "
            "near-collinearity along a combination of columns)"
        )
    n_sep = _n_separated(pieces, cells) if cells else 0
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
    )


def _n_separated(pieces: Pieces, cells: list) -> int:
    return int(sum((~_active(X, cells)).sum() for X, _ in pieces()))
