"""Count outcomes: the estimators for event counts over person-time, in one namespace.

The estimators live in concept modules; this module gathers their public names.

:mod:`analysis.outcomes.rates`
    :func:`poisson_rate`, :func:`crude_rates` (exact and weighted Poisson rates) and
    :func:`rate_ratio` (ratio of the weighted marginal rates of two arms, robust variance).
:mod:`analysis.outcomes.negative_binomial`
    :func:`negative_binomial_irr` (NB2 regression with a person-time offset, as
    ``MASS::glm.nb``).
:mod:`analysis.outcomes.before_after`
    :func:`before_after_ratio` (within-arm after/before rate ratios and their ratio).
"""

from __future__ import annotations

from analysis.outcomes.before_after import BeforeAfter, before_after_ratio
from analysis.outcomes.negative_binomial import negative_binomial_irr
from analysis.outcomes.rates import PoissonRate, crude_rates, poisson_rate, rate_ratio

__all__ = [
    "BeforeAfter",
    "PoissonRate",
    "before_after_ratio",
    "crude_rates",
    "negative_binomial_irr",
    "poisson_rate",
    "rate_ratio",
]
