"""The weighted Cox score as an estimating function: :class:`CoxScore`.

Exported by :mod:`analysis.outcomes.coxph` (its home in the documentation); the array work is
the engine's (:mod:`analysis.outcomes._coxph_core`), so the contributions are exactly the
fit's weighted score residuals.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis.outcomes._coxph_core import (
    _evaluate,
    _layout,
    _reweight,
    _score,
    _weighted_score_residuals,
)
from analysis.outcomes._coxph_solve import _as_codes, _check_data, _check_entry


class CoxScore:
    """Weighted Cox score contributions at any coefficients and case weights.

    The estimating function of a weighted Cox model: ``score(beta, w)`` returns each row's
    contribution ``w_i`` times its score residual (the rows of
    :attr:`CoxResult.score_residuals`), which sum to the score of the weighted partial
    likelihood at ``beta``; :meth:`total` returns that sum. The data are sorted once, so
    repeated evaluations (numerical derivatives in the weights, as in
    :func:`analysis.outcomes.stacked.stacked_variance`) cost no further sort.

    Parameters
    ----------
    X : array_like, shape (n, p)
        Covariates.
    duration, event : array_like, shape (n,)
        Follow-up times and 0/1 events.
    entry : array_like, shape (n,), optional
        Entry times (rows at risk on ``(entry, duration]``), as in :func:`fit_cox`.
    strata : array_like, shape (n,), optional
        Stratum labels.
    ties : {"efron", "breslow"}, default "efron"
    """

    def __init__(
        self,
        X: Any,
        duration: Any,
        event: Any,
        *,
        entry: Any = None,
        strata: Any = None,
        ties: str = "efron",
    ) -> None:
        _, X, duration, event_b, w = _check_data(X, duration, event, None)
        entry = _check_entry(entry, duration)
        st_code = None if strata is None else _as_codes(strata, len(duration), "strata")
        self._layout, self._order = _layout(X, duration, event_b, w, st_code, ties, entry)

    def __call__(self, beta: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Contributions, shape (n, p), rows in the order of the input."""
        return self.score_and_information(beta, w)[0]

    def score_and_information(
        self, beta: np.ndarray, w: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Contributions (as the call) and the information ``-d total / d beta``, shape (p, p).

        The information is the weighted fit's (:attr:`CoxResult.information` at the
        estimate), from the same pass over the data as the contributions.
        """
        lay = _reweight(self._layout, np.asarray(w, dtype=np.float64)[self._order])
        buf = np.empty_like(lay.XT)
        cur = _evaluate(lay, np.asarray(beta, dtype=np.float64), buf)
        out = np.empty((buf.shape[1], buf.shape[0]))
        out[self._order] = _weighted_score_residuals(lay, cur, out=buf).T
        return out, cur.info

    @staticmethod
    def weight_derivative(beta: np.ndarray, w: np.ndarray, contributions: np.ndarray) -> np.ndarray:
        """``d total / d w_i`` for each row, shape (n, p), given the contributions at ``(beta, w)``.

        Row ``i``'s unweighted score residual (its contribution over ``w_i``): the derivative
        through the risk-set averages and Efron's mean event weight is exactly the
        residual's risk-set term (any ties, strata, delayed entry).
        """
        return contributions / np.asarray(w, dtype=np.float64)[:, None]

    def total(self, beta: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Score of the weighted partial likelihood: the sum of the contributions."""
        lay = _reweight(self._layout, np.asarray(w, dtype=np.float64)[self._order])
        return _score(lay, np.asarray(beta, dtype=np.float64))  # no information needed
