"""Cluster bootstrap of Kaplan–Meier functionals (survival at a time, RMST), vectorised over
replicates: the check beside the influence-function variance (``variance="bootstrap"`` of
:func:`analysis.outcomes.absolute.survival_at` and :func:`analysis.outcomes.rmst.rmst_difference`).

References
----------
Austin PC, Small DS (2014). The use of bootstrapping when using propensity-score matching
without replacement. Stat Med 33:4306-4319.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from analysis.outcomes._common import CHUNK_CELLS, TwoArm
from analysis.outcomes._product_limit import hazard_steps, step_index

__all__ = ["bootstrap"]


def _bootstrap_weight_blocks(
    arm: TwoArm, n_boot: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Blocks of (replicates x persons) weights of a cluster bootstrap.

    Clusters are drawn with replacement (multinomial counts); each person's bootstrap
    weight is its weight times the number of times its cluster was drawn.
    """
    n = len(arm.time)
    chunk = max(1, CHUNK_CELLS // max(n, 1))
    p = np.full(arm.n_clusters, 1.0 / arm.n_clusters)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        counts = rng.multinomial(arm.n_clusters, p, size=b)
        yield counts[:, arm.codes] * arm.w
        done += b


def _product_limit_replicates(
    time: np.ndarray, event: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Survival at the unique times for each row of a (replicates x persons) weight matrix."""
    times, index = np.unique(time, return_inverse=True)
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    starts = np.flatnonzero(np.r_[True, sorted_index[1:] != sorted_index[:-1]])
    wt = weights[:, order]
    total = np.add.reduceat(wt, starts, axis=1)
    events = np.add.reduceat(wt * event[order], starts, axis=1)
    at_risk = np.cumsum(total[:, ::-1], axis=1)[:, ::-1]
    return times, np.cumprod(1.0 - hazard_steps(at_risk, events), axis=1)


def _replicate_functionals(
    times: np.ndarray, surv: np.ndarray, t: float | None, tau: float | None
) -> np.ndarray:
    """S(t) or RMST(tau) for each replicate row of ``surv``."""
    if t is not None:
        j = int(step_index(times, t))
        return np.ones(surv.shape[0]) if j < 0 else surv[:, j]
    assert tau is not None
    inside = times < tau
    tj = times[inside]
    if len(tj) == 0:
        return np.full(surv.shape[0], float(tau))
    widths = np.append(tj[1:], tau) - tj
    return tj[0] + surv[:, inside] @ widths


def bootstrap(
    arm: TwoArm,
    *,
    t: float | None,
    tau: float | None,
    n_boot: int,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap replicates of the per-arm functional: arrays (control, treated)."""
    if rng is None:
        raise ValueError("variance='bootstrap' needs rng (a numpy Generator) for reproducibility")
    if n_boot < 2:
        raise ValueError("n_boot must be at least 2")
    out0, out1 = [], []
    for block in _bootstrap_weight_blocks(arm, n_boot, rng):
        for arm_value, out in ((0, out0), (1, out1)):
            sel = arm.treat == arm_value
            times, surv = _product_limit_replicates(arm.time[sel], arm.event[sel], block[:, sel])
            out.append(_replicate_functionals(times, surv, t, tau))
    return np.concatenate(out0), np.concatenate(out1)
