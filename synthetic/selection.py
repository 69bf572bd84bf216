"""Selection into HAT: who, among the sites' source population, starts HAT.

The probability of starting HAT is ``expit(intercept + lp)`` with ``lp`` from the true
(complete) covariates and the observed baseline charges
(:class:`synthetic.spec.Selection`). HAT patients are drawn by rejection sampling (each
accepted candidate is an exact draw from the selected distribution); the truth draws a
large treated population from the same distribution by sampling-importance-resampling.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from synthetic.population import People, linear_predictor, site_candidates
from synthetic.spec import Scenario

__all__ = [
    "draw_hat",
    "draw_treated",
    "selection_probability",
]


def selection_probability(people: People, spec: Scenario) -> np.ndarray:
    """P(start HAT | covariates, baseline charges)."""
    sel = spec.selection
    return expit(sel.intercept + linear_predictor(sel.coefficients, people.features()))


def draw_hat(n: int, spec: Scenario, rng: np.random.Generator) -> People:
    """Draw ``n`` HAT patients: candidates of the sites accepted with the selection
    probability, the first ``n`` accepted in order of drawing."""
    accepted: list[People] = []
    total = 0
    while total < n:
        size = max(spec.selection.pool_batch, 10 * (n - total))
        pool = site_candidates(size, spec, rng)
        keep = rng.random(len(pool)) < selection_probability(pool, spec)
        part = pool.take(np.flatnonzero(keep))
        accepted.append(part)
        total += len(part)
    return People.concat(accepted).take(np.arange(n))


def draw_treated(n: int, spec: Scenario, rng: np.random.Generator) -> People:
    """Draw ``n`` persons from the HAT distribution for the truth: a pool of
    ``pool_factor * n`` site candidates resampled with probability proportional to the
    selection probability (with replacement; duplicates get their own outcomes)."""
    pool = site_candidates(spec.truth.pool_factor * n, spec, rng)
    w = selection_probability(pool, spec)
    idx = rng.choice(len(pool), size=n, replace=True, p=w / w.sum())
    return pool.take(np.sort(idx))
