"""Propensity score: the probability of treatment given baseline covariates.

:func:`fit_propensity` fits an unpenalised logistic regression of the treatment on
the design matrix of :func:`analysis.design.missing.design_matrix` (dummies, missing
indicators, the transformations the caller asks for) and returns the score and its
logit for every person.

Separation
----------
Registry cohorts separate routinely: a treatment offered only in some regions makes
a region dummy with no treated person at all, and the maximum-likelihood
coefficient of that dummy is minus infinity. Rather than letting the optimiser
wander off (or crash), persons in such a cell are recognised before fitting: for
every 0/1 column, the rows where it is 1 (and those where it is 0) are checked; if
they are all controls (all treated), their score is the limit of the maximum-
likelihood fit, exactly 0 (1), their logit ``-inf`` (``+inf``), and they leave the
fit together with any column that becomes constant. The check repeats until no cell
is separated. These persons cannot be matched (:func:`analysis.design.matching.match`
skips non-finite scores) and get weight 0 as controls in :func:`analysis.design.weighting.
att_weights`; with exact matching on such a cell they were never candidates anyway.
Columns that are linear combinations of earlier ones (two covariates missing in the
same rows give identical indicators) are dropped, in column order.

If the remaining fit still does not converge (separation along a combination of
continuous covariates), it falls back to a weakly ridge-penalised fit on
standardised columns (``method="ridge_fallback"``, ``converged=False``) and warns.

References
----------
Rosenbaum PR, Rubin DB (1983). The central role of the propensity score in
observational studies for causal effects. *Biometrika* 70(1):41-55.

Albert A, Anderson JA (1984). On the existence of maximum likelihood estimates in
logistic regression models. *Biometrika* 71(1):1-10.

Stuart EA (2010). Matching methods for causal inference: a review and a look
forward. *Stat Sci* 25(1):1-21.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.special import expit
from statsmodels.tools.sm_exceptions import (
    ConvergenceWarning,
    HessianInversionWarning,
    PerfectSeparationWarning,
)

from analysis._checks import binary
from analysis.design.missing import design_matrix

__all__ = ["PropensityScore", "fit_propensity"]

#: residual variance share below which a column counts as a combination of earlier ones
_COLLINEAR_TOL = 1e-9


@dataclass(frozen=True, kw_only=True)
class PropensityScore:
    """A fitted propensity score.

    Attributes
    ----------
    score : ndarray
        Estimated probability of treatment, one per row of the input, in row order.
    logit : ndarray
        Linear predictor ``log(score / (1 - score))``; ``-inf``/``+inf`` for persons
        in a separated cell (see the module notes).
    coefficients : Series
        Log-odds coefficients, index ``const`` then the design columns; columns left
        out of the fit are ``NaN`` (reason in ``dropped``).
    converged : bool
        Whether the unpenalised maximum-likelihood fit converged.
    n : int
        Rows of the input.
    method : str
        ``logit_mle`` or ``ridge_fallback``.
    n_separated : int
        Persons whose score was fixed at 0 or 1 by separation.
    dropped : dict
        Design column -> reason it is not in the fit.
    covariates : tuple of str
        The covariates of the model.
    transforms, levels : dict
        The ``transforms`` and ``levels`` the design matrix was built with, so the
        same design can be rebuilt (:func:`analysis.design.missing.design_matrix`).
    design : DataFrame or None
        That design matrix of the fitted rows (reused by
        :func:`analysis.design.estimated_weights.att_weight_model_from_propensity`).
    """

    score: np.ndarray
    logit: np.ndarray
    coefficients: pd.Series
    converged: bool
    n: int
    method: str = "logit_mle"
    n_separated: int = 0
    dropped: dict[str, str] = field(default_factory=dict)
    covariates: tuple[str, ...] = ()
    transforms: dict[str, str] = field(default_factory=dict)
    levels: dict[str, tuple] = field(default_factory=dict)
    design: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def to_frame(
        self, ids: pd.Series | np.ndarray | None = None, *, name: str | None = None
    ) -> pd.DataFrame:
        """Scores as a DataFrame, columns ``ps, ps_logit``, ids first when given.

        Parameters
        ----------
        ids : Series or ndarray, optional
            Ids in the row order of the fitted data.
        name : str, optional
            Name of the id column (default: the name of ``ids`` if a Series, else ``id``).

        Returns
        -------
        DataFrame
        """
        out = pd.DataFrame({"ps": self.score, "ps_logit": self.logit})
        if ids is not None:
            label = name or (ids.name if isinstance(ids, pd.Series) and ids.name else "id")
            out.insert(0, label, np.asarray(ids))
        return out


def _separated_rows(
    X: np.ndarray, y: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Rows in cells of a 0/1 column where treatment is constant, found repeatedly.

    Returns ``active`` (rows left for the fit), ``fixed`` (0/1 score of the others,
    NaN for active rows) and the columns whose cells separated.
    """
    n, p = X.shape
    columns = np.ascontiguousarray(X.T)  # one column at a time: contiguous
    binary = [j for j in range(p) if np.isin(columns[j], (0.0, 1.0)).all()]
    cells = {(j, v): columns[j] == v for j in binary for v in (1.0, 0.0)}
    treated = y == 1  # y is 0/1: a cell is constant when all or none of it is treated
    active = np.ones(n, dtype=bool)
    n_active = n
    fixed = np.full(n, np.nan)
    reasons: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for j in binary:
            for v in (1.0, 0.0):
                rows = active & cells[j, v]
                n_rows = np.count_nonzero(rows)
                if n_rows == 0 or n_rows == n_active:  # empty, or every active row
                    continue
                n_treated = np.count_nonzero(rows & treated)
                if n_treated in (0, n_rows):
                    value = 1.0 if n_treated else 0.0
                    fixed[rows] = value
                    active &= ~rows
                    n_active -= n_rows
                    group = "treated" if value == 1 else "controls"
                    reasons[names[j]] = f"separation: all {group} where {names[j]} == {v:g}"
                    changed = True
    return active, fixed, reasons


def _independent_columns(X: np.ndarray) -> list[int]:
    """Columns (in order) that are neither constant nor a linear combination of earlier ones."""
    Xc = X - X.mean(axis=0)
    G = Xc.T @ Xc
    keep: list[int] = []
    for j in range(X.shape[1]):
        gjj = G[j, j]
        if gjj <= 0:
            continue
        if keep:
            gk = G[np.ix_(keep, keep)]
            b = np.linalg.lstsq(gk, G[keep, j], rcond=None)[0]
            resid = gjj - G[j, keep] @ b
        else:
            resid = gjj
        if resid > _COLLINEAR_TOL * gjj:
            keep.append(j)
    return keep


def _columns_to_fit(Xa: np.ndarray, names: list[str], dropped: dict[str, str]) -> list[int]:
    """:func:`_independent_columns` of the rows fitted; the reasons of the others into
    ``dropped`` (unless already there)."""
    keep = _independent_columns(Xa)
    for j, name in enumerate(names):
        if j not in keep and name not in dropped:
            dropped[name] = (
                "constant among the rows fitted"
                if np.ptp(Xa[:, j]) == 0
                else "linear combination of earlier columns"
            )
    return keep


#: statsmodels' Newton options for ``Logit.fit(method="newton")``: step tolerance, Hessian ridge
_NEWTON_TOL, _NEWTON_RIDGE, _NEWTON_MAXITER = 1e-8, 1e-10, 100


def _newton_logit(y: np.ndarray, exog: np.ndarray) -> tuple[np.ndarray, bool]:
    """``statsmodels`` ``Logit(y, exog).fit(method="newton", maxiter=100)``, without its objects.

    The same operations in the same order as statsmodels' Newton–Raphson for ``Logit``
    (``statsmodels.base.optimizer._fit_newton`` on the score and Hessian of
    ``Logit`` divided by the number of rows): start at zero, ``1e-10`` added to the Hessian's
    diagonal, steps ``numpy.linalg.solve(H, score)`` until no coefficient moves by more than
    ``1e-8`` or 100 iterations; then the final Hessian is inverted as statsmodels does for the
    covariance (a ``LinAlgError`` when it is singular). So the coefficients are statsmodels'
    to the last bit (``tests/test_propensity.py``), without building the model (its rank
    check) and the results. Returns the coefficients and whether it converged.
    """
    nobs = y.shape[0]

    def fitted(params: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(np.dot(exog, params) + 0.0)))

    def hess(L: np.ndarray) -> np.ndarray:  # of the fitted values at the parameters
        return np.dot(L * (1 - L) * exog.T, exog) / nobs  # minus the (negative) Hessian

    iterations = 0
    old: np.ndarray | float = np.inf
    new = np.asarray([0.0] * exog.shape[1])
    while iterations < _NEWTON_MAXITER and np.any(np.abs(new - old) > _NEWTON_TOL):
        L = fitted(new)  # statsmodels evaluates it twice, for the Hessian and the score
        H = np.asarray(hess(L))
        H[np.diag_indices(H.shape[0])] += _NEWTON_RIDGE
        old = new
        new = old - np.linalg.solve(H, -np.dot(y - L, exog) / nobs)
        iterations += 1
    np.linalg.inv(hess(fitted(new)))  # statsmodels' covariance: raises when singular
    return new, iterations != _NEWTON_MAXITER


def _fit_mle(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, bool]:
    exog = np.column_stack([np.ones(len(y)), X])
    with warnings.catch_warnings():
        for w in (ConvergenceWarning, HessianInversionWarning, PerfectSeparationWarning):
            warnings.simplefilter("ignore", w)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            if np.isfinite(exog).all() and np.isfinite(y).all():
                params, converged = _newton_logit(y, exog)
            else:  # statsmodels refuses the data: its error, as before
                res = sm.Logit(y, exog).fit(method="newton", maxiter=100, disp=0)
                params, converged = res.params, res.mle_retvals.get("converged", False)
        except (np.linalg.LinAlgError, ValueError):
            return np.full(exog.shape[1], np.nan), False
    params = np.asarray(params, dtype=np.float64)
    ok = bool(converged) and bool(np.isfinite(params).all())
    if ok:
        # quasi-separation makes Newton "converge" towards infinity slowly: very
        # large coefficients on standardised columns betray it
        scale = np.r_[1.0, X.std(axis=0)]
        ok = bool(np.abs(params * scale).max() < 25)
    return params, ok


def _fit_ridge(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    mu, sd = X.mean(axis=0), X.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    model = LogisticRegression(C=1.0, max_iter=1000, tol=1e-8)
    model.fit((X - mu) / sd, y)
    beta = model.coef_[0] / sd
    const = model.intercept_[0] - beta @ mu
    return np.r_[const, beta]


# over 80 lines only by its numpydoc docstring (the code is under 60)
def fit_propensity(
    df: pd.DataFrame,
    *,
    treatment: str,
    covariates: Sequence[str],
    transforms: Mapping[str, str] | None = None,
    levels: Mapping[str, Sequence[str]] | None = None,
) -> PropensityScore:
    """Fit the propensity score by logistic regression.

    Parameters
    ----------
    df : DataFrame
        One row per person.
    treatment : str
        0/1 column, 1 = treated.
    covariates : sequence of str
        Baseline covariates; expanded by :func:`analysis.design.missing.design_matrix`
        (dummies with the first level as reference, missing indicators with mean
        fill).
    transforms : mapping of str to str, optional
        Covariate -> ``"log1p"`` or ``"rcs3"``/``"rcs4"``/``"rcs5"``, as in
        :func:`analysis.design.missing.design_matrix`. Default: none.
    levels : mapping of str to sequence, optional
        Covariate -> level order of a categorical covariate (the first is the
        reference), as in :func:`analysis.design.missing.design_matrix`.

    Returns
    -------
    PropensityScore
        ``score`` and ``logit`` in the row order of ``df``; coefficients; whether
        the fit converged; persons fixed by separation.

    Raises
    ------
    analysis._checks.ColumnError
        The treatment column or a covariate is not in ``df``.
    ValueError
        The treatment column has missing values, is not 0/1, or has only one group.

    Warns
    -----
    RuntimeWarning
        The unpenalised fit did not converge and the ridge fallback was used.

    Notes
    -----
    Unpenalised maximum likelihood (statsmodels' ``Logit`` Newton iterations, computed
    directly by ``_newton_logit``: the same coefficients to the last bit). Separated
    cells (a region without any treated person) are handled before fitting; see the
    module notes.
    The model is a tool for balance, not an explanation: judge it by the balance it
    gives (:func:`analysis.design.balance.balance_table`), not by its coefficients.

    References
    ----------
    Rosenbaum PR, Rubin DB (1983). The central role of the propensity score in
    observational studies for causal effects. *Biometrika* 70:41-55.

    Rosenbaum PR, Rubin DB (1984). Reducing bias in observational studies using
    subclassification on the propensity score. *J Am Stat Assoc* 79:516-524.

    Albert A, Anderson JA (1984). On the existence of maximum likelihood estimates
    in logistic regression models. *Biometrika* 71:1-10.
    """
    y = binary(df, treatment, "treatment").astype(np.float64)
    n = len(y)
    if n == 0 or y.min() == y.max():
        raise ValueError(
            f"treatment column {treatment!r}: both treated (1) and controls (0) are needed"
        )
    transforms = dict(transforms or {})
    levels = {c: tuple(v) for c, v in (levels or {}).items()}
    design = design_matrix(df, covariates, transforms=transforms, levels=levels)
    names = list(design.columns)
    X = design.to_numpy(dtype=np.float64)

    active, fixed, dropped = _separated_rows(X, y, names)
    Xa, ya = X[active], y[active]
    if len(ya) == 0 or ya.min() == ya.max():
        raise ValueError(
            "treated and controls share no covariate cell, so no one can be compared "
            f"(first found: {next(iter(dropped.items()), ('', 'no rows'))[1]})"
        )
    keep = _columns_to_fit(Xa, names, dropped)
    Xk = Xa[:, keep]
    params, converged = _fit_mle(Xk, ya)
    method = "logit_mle"
    if not converged:
        warnings.warn(
            "propensity model: the unpenalised logistic fit did not converge "
            "(separation or near-collinearity); using a weakly ridge-penalised fit",
            RuntimeWarning,
            stacklevel=2,
        )
        params = _fit_ridge(Xk, ya)
        method = "ridge_fallback"

    logit = np.where(fixed == 1.0, np.inf, -np.inf)
    logit[active] = params[0] + Xk @ params[1:]
    score = np.where(active, expit(logit), fixed)
    coef = np.full(len(names) + 1, np.nan)
    coef[0] = params[0]
    coef[1 + np.asarray(keep, dtype=int)] = params[1:]
    coefficients = pd.Series(coef, index=["const", *names], name="coefficient")
    return PropensityScore(
        score=score,
        logit=logit,
        coefficients=coefficients,
        converged=converged,
        n=n,
        method=method,
        n_separated=int((~active).sum()),
        dropped=dropped,
        covariates=tuple(covariates),
        transforms=transforms,
        levels=levels,
        design=design,
    )
