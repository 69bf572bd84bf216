"""Internals of the Cox engine (:mod:`analysis.outcomes.coxph`): input checks, Newton-Raphson,
the detection of infinite estimates (monotone likelihood) and the bias-corrected sandwich."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg

from analysis.outcomes._coxph_core import (
    _Eval,
    _evaluate,
    _Layout,
    _layout,
    _weighted_score_residuals,
)
from analysis.sandwich import bias_corrected_covariance, cluster_totals


def _check_data(
    X: Any, duration: Any, event: Any, weights: Any
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Names, covariates, durations, events (bool) and weights as checked float arrays."""
    if isinstance(X, pd.DataFrame):
        names = tuple(str(c) for c in X.columns)
    elif isinstance(X, pd.Series):
        names = (str(X.name),)
    else:
        names = None
    X = np.asarray(X, dtype=np.float64)  # not modified: the sorted copy is made in _layout
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(f"X must be two-dimensional with at least one column, got {X.shape}")
    n, p = X.shape
    if names is None:
        names = tuple(f"x{j}" for j in range(p))
    if n == 0:
        raise ValueError("no rows")
    if not np.isfinite(X).all():
        bad = [names[j] for j in np.flatnonzero(~np.isfinite(X).all(axis=0))]
        raise ValueError(f"covariates have missing values or infinities: {bad}")
    duration = np.asarray(duration, dtype=np.float64)
    if duration.shape != (n,):
        raise ValueError(f"duration must have shape ({n},), got {duration.shape}")
    if not np.isfinite(duration).all():
        raise ValueError("duration has missing or non-finite values")
    event_arr = np.asarray(event)
    if event_arr.shape != (n,):
        raise ValueError(f"event must have shape ({n},), got {event_arr.shape}")
    event_f = event_arr.astype(np.float64)
    if not np.isin(event_f, (0.0, 1.0)).all():
        raise ValueError("event must be 0/1 or boolean")
    event_b = event_f == 1.0
    if not event_b.any():
        raise ValueError("no events")
    if weights is None:
        return names, X, duration, event_b, np.ones(n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {w.shape}")
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError("weights must be finite and > 0 (drop zero-weight rows)")
    return names, X, duration, event_b, w


def _check_entry(entry: Any, duration: np.ndarray) -> np.ndarray | None:
    """Entry times as a checked float array (``None`` stays ``None``): finite, before ``duration``."""
    if entry is None:
        return None
    n = duration.size
    arr = np.asarray(entry, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"entry must have shape ({n},), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("entry has missing or non-finite values")
    bad = np.flatnonzero(arr >= duration)
    if bad.size:
        raise ValueError(
            f"entry must be before duration (intervals (entry, duration]); {bad.size} rows "
            f"are not, the first at position {bad[0]}: ({arr[bad[0]]}, {duration[bad[0]]}]"
        )
    return arr


@dataclass(frozen=True, eq=False)
class _Newton:
    """Where Newton-Raphson stopped."""

    beta: np.ndarray
    cur: _Eval  # the partial likelihood at beta
    null: _Eval  # at beta = 0
    converged: bool
    collapsed: bool  # the information became singular away from 0: monotone likelihood
    last_step: np.ndarray
    n_iter: int


def _newton_raphson(lay: _Layout, buf: np.ndarray, *, tol: float, max_iter: int) -> _Newton:
    """Newton-Raphson from zero with step halving, as R's ``coxph.fit``."""
    p = lay.XT.shape[0]
    beta = np.zeros(p)
    cur = _evaluate(lay, beta, buf)
    null = cur
    converged = False
    halving = False
    new_beta = beta + _newton_step(cur)
    last_step = np.zeros(p)
    collapsed = False
    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            new = _evaluate(lay, new_beta, buf)  # a wild step may underflow: halve it below
        ok = np.isfinite(new.loglik)
        if ok and not halving and abs(new.loglik - cur.loglik) <= tol * abs(cur.loglik):
            converged = True
            last_step = new_beta - beta
            beta, cur = new_beta, new
            break
        if not ok or new.loglik < cur.loglik:  # overshoot: halve the step, as coxph.fit
            halving = True
            new_beta = 0.5 * (new_beta + beta)
        else:
            halving = False
            last_step = new_beta - beta
            beta, cur = new_beta, new
            try:
                new_beta = beta + _newton_step(cur)
            except ValueError:
                collapsed = True
                break
    return _Newton(beta, cur, null, converged, collapsed, last_step, n_iter)


def _check_solution(
    lay: _Layout,
    newton: _Newton,
    names: tuple[str, ...],
    *,
    tol: float,
    max_iter: int,
    stacklevel: int = 3,
) -> tuple[np.ndarray, dict[str, str], bool]:
    """Model-based covariance, infinite coefficients and convergence, with R's warnings.

    The warnings point ``stacklevel`` frames up (3: the caller of the function calling this).
    """
    beta, cur = newton.beta, newton.cur
    converged, collapsed = newton.converged, newton.collapsed
    p = beta.size
    try:
        cov = _inverse(cur.info)
    except ValueError:
        if not (converged or collapsed):
            raise
        collapsed, converged = True, False
        cov = np.full((p, p), np.nan)
    if not converged and not collapsed:
        warnings.warn(
            f"Cox fit did not converge in {max_iter} iterations "
            "(a coefficient may be infinite: monotone likelihood)",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    if converged:  # R's check for monotone likelihood: the next step would still be large
        step = np.abs(cov @ cur.score)
        infinite = (step > tol) & (step > np.sqrt(tol) * np.abs(beta))
        if infinite.any():
            warnings.warn(
                "log-likelihood converged before "
                f"{[names[j] for j in np.flatnonzero(infinite)]}; coefficient may be infinite",
                RuntimeWarning,
                stacklevel=stacklevel,
            )
    last_step = newton.last_step if converged or collapsed else None
    diverging = _monotone_likelihood(lay, names, last_step)
    if collapsed and not diverging:
        diverging = {
            name: "monotone likelihood: the information matrix became singular while the "
            "log-likelihood was still increasing (the estimate is infinite)"
            for name, b in zip(names, beta, strict=True)
            if b != 0
        }
    if diverging:
        warnings.warn(
            f"monotone likelihood: the estimates of {sorted(diverging)} are infinite",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    return cov, diverging, converged


# ---------------------------------------------------------------------------------------------
# Input codes, Newton steps, variances and the detection of infinite estimates


def _as_codes(values: Any, n: int, what: str) -> np.ndarray:
    """Integer codes 0..K-1 of labels (strata, clusters), sorted by label.

    Two-dimensional labels (an (n, k) array or a DataFrame of several columns) are coded by
    their combinations, as R's ``strata(a, b)``.
    """
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] > 0:
        if pd.isna(arr).any():
            raise ValueError(f"{what} has missing values")
        return pd.MultiIndex.from_arrays(list(arr.T)).factorize(sort=True)[0].astype(np.intp)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{what} must be one-dimensional with {n} entries, got shape {arr.shape}")
    if arr.dtype.kind in "iu":  # integers: no missing values; already codes 0..K-1?
        if arr.size and 0 <= arr.min() and arr.max() < n and np.bincount(arr).all():
            return arr.astype(np.intp)  # what the sorted factorisation would return
    elif pd.isna(arr).any():
        raise ValueError(f"{what} has missing values")
    return pd.factorize(arr, sort=True)[0].astype(np.intp)


def _bias_corrected_cov(
    lay: _Layout, cur: _Eval, beta: np.ndarray, cov: np.ndarray, codes: np.ndarray, buf
) -> tuple[np.ndarray, float]:
    """Mancl–DeRouen sandwich of a Cox fit; cluster information by central differences."""
    p = beta.size
    resid = _weighted_score_residuals(lay, cur, out=buf)
    totals = cluster_totals(resid.T, codes)  # (G, p)
    info_g = np.empty((totals.shape[0], p, p))
    steps = 1e-4 * np.sqrt(np.diag(cov))
    work = np.empty_like(buf)
    for j in range(p):
        shifted = []
        for sign in (1.0, -1.0):
            b = beta.copy()
            b[j] += sign * steps[j]
            ev = _evaluate(lay, b, work)
            shifted.append(cluster_totals(_weighted_score_residuals(lay, ev, out=work).T, codes))
        info_g[:, :, j] = -(shifted[0] - shifted[1]) / (2 * steps[j])
    return bias_corrected_covariance(totals, info_g, cov)


def _monotone_likelihood(
    lay: _Layout, names: tuple[str, ...], last_step: np.ndarray | None
) -> dict[str, str]:
    """Coefficients whose partial likelihood has no finite maximum, with the reason.

    Two checks. (1) Exact, for each covariate alone: if at every event the row with the
    event has the largest value of the covariate in its risk set (or the smallest), the
    score of that coefficient is non-negative (non-positive) for every value of all the
    coefficients, so the partial likelihood increases without bound as it grows: the
    estimate is infinite (Bryson & Johnson 1981). (2) For directions that mix covariates:
    the log-likelihood converged while the last Newton step still moved a coefficient by
    more than 0.1 standard deviations of its covariate (or the information became
    singular), which happens only when the information along it collapses towards zero.
    """
    out: dict[str, str] = {}
    XT = lay.XT
    new_grp = np.r_[True, lay.grp_of_row[1:] != lay.grp_of_row[:-1]]
    first = np.flatnonzero(new_grp)[lay.grp_of_row[lay.ev_rows]]  # risk set starts here
    ev = lay.ev_rows
    for j, name in enumerate(names):
        x = XT[j]
        span = float(x.max() - x.min())
        if span == 0:
            continue
        tol = 1e-9 * span
        if lay.entry is not None:  # delayed entry: risk sets are not tails of the rows
            up, down = _extreme_at_events(lay, x, tol)
        else:
            if lay.stratum_of_row is None:
                # quick exit: the first event's risk set is almost everyone
                tail = x[first[0] :]
                if tail.max() - tol > x[ev[0]] > tail.min() + tol:
                    continue
                off = np.zeros_like(x)
            else:  # later strata pushed out of reach of the earlier ones' running max/min
                off = (2.0 * span + 1.0) * lay.stratum_of_row
            top = np.maximum.accumulate((x - off)[::-1])[::-1][first] + off[ev]
            bottom = np.minimum.accumulate((x + off)[::-1])[::-1][first] - off[ev]
            up = bool(np.all(x[ev] >= top - tol))
            down = bool(np.all(x[ev] <= bottom + tol))
        if up != down:
            side = "largest" if up else "smallest"
            limit = "+infinity" if up else "-infinity"
            out[name] = (
                f"monotone likelihood: at every event time the row with the event has the "
                f"{side} value of {name} in its risk set, so the partial likelihood keeps "
                f"increasing as its coefficient tends to {limit}"
            )
    if last_step is not None:
        # the SD is at most half the range: compute it only where the step could matter
        moved = np.abs(last_step) * 0.5 * (XT.max(axis=1) - XT.min(axis=1)) > 0.1
        sd = np.zeros(len(names))
        sd[moved] = XT[moved].std(axis=1)
        for j in np.flatnonzero(np.abs(last_step) * sd > 0.1):
            out.setdefault(
                names[j],
                "monotone likelihood: the log-likelihood stopped increasing while the "
                f"coefficient of {names[j]} still moved by {last_step[j]:.3g} per Newton step "
                "(the information along it collapses towards 0; the estimate is infinite)",
            )
    return out


def _extreme_at_events(lay: _Layout, x: np.ndarray, tol: float) -> tuple[bool, bool]:
    """With delayed entry: does every event have the largest (smallest) ``x`` of its risk set?

    Turned around: row ``i`` is in the risk sets of the events with times in its
    ``(entry, stop]`` (a contiguous run of the events sorted by stratum and time), and every
    event has the largest value iff no row exceeds the smallest event value of its run.
    Minima over the runs by a sparse table (O(m log m) for m events).
    """
    ent, ev = lay.entry, lay.ev_rows
    # quick exit: a row at risk at the event with the smallest value exceeds it, and one at
    # the event with the largest value is below it
    lowest, highest = ev[np.argmin(x[ev])], ev[np.argmax(x[ev])]
    risk_low = (ent.entry_key < ent.stop_key[lowest]) & (ent.stop_key >= ent.stop_key[lowest])
    risk_high = (ent.entry_key < ent.stop_key[highest]) & (ent.stop_key >= ent.stop_key[highest])
    if x[risk_low].max() > x[lowest] + tol and x[risk_high].min() < x[highest] - tol:
        return False, False
    ev_key = ent.stop_key[ev]
    lo = np.searchsorted(ev_key, ent.entry_key, side="right")
    hi = np.searchsorted(ev_key, ent.stop_key, side="right")
    some = hi > lo
    lo, hi, xs = lo[some], hi[some], x[some]
    up = bool(np.all(xs <= _run_min(x[ev], lo, hi) + tol))
    down = bool(np.all(xs >= -_run_min(-x[ev], lo, hi) - tol))
    return up, down


def _run_min(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``min(values[lo:hi])`` for each pair (``hi > lo``), from a sparse table."""
    table = [values]
    while 2 ** len(table) <= values.size:
        prev, step = table[-1], 2 ** (len(table) - 1)
        table.append(np.minimum(prev[:-step], prev[step:]))
    level = np.frexp((hi - lo).astype(np.float64))[1] - 1  # floor(log2(hi - lo))
    out = np.empty(lo.size)
    for k in np.unique(level):  # at most log2(m) levels
        at = level == k
        out[at] = np.minimum(table[k][lo[at]], table[k][hi[at] - 2**k])
    return out


def _quadratic_form(u: np.ndarray, a: np.ndarray) -> float:
    """``u' A^- u`` (a generalised inverse, as R's ``coxph.wtest``); NaN if A is not finite."""
    if not np.isfinite(a).all():
        return float("nan")
    return float(u @ np.linalg.pinv(a, rcond=1e-10, hermitian=True) @ u)


def _newton_step(ev_: _Eval) -> np.ndarray:
    try:
        factor = linalg.cho_factor(ev_.info, check_finite=True)
    except linalg.LinAlgError as exc:
        raise ValueError(
            "information matrix is singular: covariates are collinear or constant"
        ) from exc
    return linalg.cho_solve(factor, ev_.score)


def _inverse(info: np.ndarray) -> np.ndarray:
    try:
        factor = linalg.cho_factor(info)
    except linalg.LinAlgError as exc:
        raise ValueError(
            "information matrix is singular: covariates are collinear or constant"
        ) from exc
    inv = linalg.cho_solve(factor, np.eye(info.shape[0]))
    return 0.5 * (inv + inv.T)


def _fit_coefficients(
    X: Any,
    duration: Any,
    event: Any,
    *,
    entry: Any = None,
    weights: Any = None,
    ties: str = "efron",
    tol: float = 1e-9,
    max_iter: int = 50,
) -> tuple[np.ndarray, np.ndarray, dict[str, str], bool]:
    """The estimate of :func:`analysis.outcomes.coxph.fit_cox` alone, for estimators refitted many times (bootstrap).

    The same checks, layout, Newton-Raphson and detection of infinite estimates, without the
    variances, residuals and score tests. Returns ``params``, ``information``,
    ``diverging`` and ``converged`` as :class:`analysis.outcomes.coxph.CoxResult` has them.
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    names, X, duration, event_b, w = _check_data(X, duration, event, weights)
    lay, _ = _layout(X, duration, event_b, w, None, ties, _check_entry(entry, duration))
    newton = _newton_raphson(lay, np.empty_like(lay.XT), tol=tol, max_iter=max_iter)
    _, diverging, converged = _check_solution(lay, newton, names, tol=tol, max_iter=max_iter)
    return newton.beta, newton.cur.info, diverging, converged
