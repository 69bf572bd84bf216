"""Multiple imputation of missing covariates by chained equations (MICE).

:func:`impute_chain` draws one imputed dataset: a chain of Gibbs-like cycles in which
every incomplete column is re-imputed from a model on all other columns (White, Royston &
Wood 2011). :func:`multiple_imputation` runs ``m`` independent chains, each seeded from its
own child of the caller's :class:`numpy.random.Generator` (no global random state), so the
datasets do not depend on the number of parallel jobs; :func:`potential_scale_reduction`
is the convergence diagnostic of the chains. The engine is statsmodels'
:class:`~statsmodels.imputation.mice.MICEData`: per cycle it draws the conditional model's
parameters from their approximate posterior (``gaussian`` perturbation) and imputes by
predictive mean matching (PMM) on the model's fitted mean, so imputed values are always
values observed in some other person (0/1 stay 0/1, counts stay whole). The conditional
model depends on the column's kind (:func:`variable_kinds`): a logistic model for a
binary column, a Poisson model for a count, a linear model for a continuous column; the
logistic and Poisson models are fitted by Newton's method from the previous cycle's
estimate. Predictor columns that are constant or collinear are left out (they add
nothing to the fitted values).

The caller decides what enters the imputation model, by column role, and gives complete
predictors: the treatment, the other covariates and, as the congeniality of the imputation
and analysis models asks, the outcomes. For a time-to-event outcome White & Royston (2009)
recommend its event indicator and the marginal Nelson–Aalen cumulative hazard at the
person's time (:func:`nelson_aalen`); for a count, the count and log person-time.
Categorical predictors enter as 0/1 columns (:func:`analysis.design.missing.design_matrix`).

References
----------
White IR, Royston P (2009). Imputing missing covariate values for the Cox model.
*Stat Med* 28(15):1982-1998.

White IR, Royston P, Wood AM (2011). Multiple imputation using chained equations: issues
and guidance for practice. *Stat Med* 30(4):377-399.

van Buuren S (2018). *Flexible Imputation of Missing Data*, 2nd ed. CRC Press (sections
3.4 predictive mean matching, 6.5 convergence).

Gelman A, Rubin DB (1992). Inference from iterative simulation using multiple sequences.
*Stat Sci* 7(4):457-472.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from analysis._checks import require_columns
from analysis._parallel import map_tasks
from analysis.design.missing import design_matrix, is_categorical

__all__ = [
    "KINDS",
    "ImputationChain",
    "MultipleImputation",
    "complete",
    "impute_chain",
    "multiple_imputation",
    "nelson_aalen",
    "potential_scale_reduction",
    "variable_kinds",
]

Kind = Literal["binary", "count", "continuous"]

#: the kinds of an incomplete column and their conditional models
KINDS: dict[str, str] = {
    "binary": "logistic regression (Newton), predictive mean matching",
    "count": "Poisson regression (Newton), predictive mean matching",
    "continuous": "linear regression (OLS), predictive mean matching",
}


def nelson_aalen(duration: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Marginal Nelson–Aalen cumulative hazard at each person's own time.

    Parameters
    ----------
    duration : ndarray
        Follow-up times.
    event : ndarray
        1 = event at ``duration``, 0 = censored.

    Returns
    -------
    ndarray
        ``H(duration_i)``, events at the same time all counted (the estimator is
        right-continuous).

    References
    ----------
    White IR, Royston P (2009). Imputing missing covariate values for the Cox model.
    *Stat Med* 28:1982-1998.

    Examples
    --------
    >>> nelson_aalen(np.array([1.0, 2, 2, 3]), np.array([1, 1, 0, 1]))
    array([0.25      , 0.58333333, 0.58333333, 1.58333333])
    """
    t = np.asarray(duration, dtype=np.float64)
    d = np.asarray(event, dtype=np.float64)
    times, inverse = np.unique(t, return_inverse=True)
    deaths = np.bincount(inverse, weights=d, minlength=len(times))
    at_time = np.bincount(inverse, minlength=len(times))
    at_risk = at_time[::-1].cumsum()[::-1]
    return np.cumsum(deaths / at_risk)[inverse]


def variable_kinds(df: pd.DataFrame, columns: Sequence[str]) -> dict[str, Kind]:
    """The kind of each column from its observed values: binary, count or continuous.

    Boolean columns and columns whose observed values are within {0, 1} are binary;
    other columns of non-negative whole numbers are counts; the rest continuous.

    Parameters
    ----------
    df : DataFrame
    columns : sequence of str
        Numeric or boolean columns.

    Returns
    -------
    dict of str to {"binary", "count", "continuous"}
    """
    out: dict[str, Kind] = {}
    for col in columns:
        s = df[col]
        if not (is_numeric_dtype(s) or is_bool_dtype(s)):
            raise ValueError(f"{col}: only numeric or boolean columns can be imputed")
        x = s.dropna().to_numpy(dtype=np.float64)
        if is_bool_dtype(s) or np.isin(x, (0.0, 1.0)).all():
            out[col] = "binary"
        elif (x >= 0).all() and (x == np.round(x)).all():
            out[col] = "count"
        else:
            out[col] = "continuous"
    return out


def _mice_data_class() -> type:
    """statsmodels' MICEData with array-backed matrices and warm-started Newton fits.

    The conditional model of a column has main effects of every other column and an
    intercept, as MICEData's default formula. Two changes make a cycle several times
    cheaper without changing the models or the draws' distribution:

    - the working data are also held as one float array (intercept first), updated
      where the imputed values change, so a model's matrices are slices of it rather
      than formulas or data-frame conversions; the matrices of a column are built once
      per update (the fit and the imputation use the same ones);
    - a binary or count column's model (statsmodels' ``Logit``, ``Poisson``; the
      caller sets ``method="newton"``) is started from its maximum-likelihood estimate
      of the previous cycle (the first cycle from statsmodels' default start). Each fit
      converges to the maximum-likelihood estimate (Newton's tolerance, 1e-8 on the
      parameters), as the GLM's IRLS would, in 3-4 steps of one small information
      matrix instead of 4-5 least-squares solves by SVD; for these canonical links the
      observed information that gives the perturbation's covariance equals the GLM's
      expected information.
    """
    from statsmodels.imputation.mice import MICEData

    class ArrayMICEData(MICEData):
        def __init__(self, data: pd.DataFrame, **kwds: object) -> None:
            super().__init__(data, **kwds)
            values = self.data.to_numpy(np.float64)
            self._array = np.column_stack([np.ones(len(values)), values])
            self._position = {c: j + 1 for j, c in enumerate(self.data.columns)}
            self._cached: tuple[str, np.ndarray, np.ndarray] | None = None

        def _store_changes(self, col, vals):  # noqa: ANN001, ANN202 - statsmodels' signature
            super()._store_changes(col, vals)
            ix = self.ix_miss[col]
            if len(ix) > 0:
                self._array[ix, self._position[col]] = np.atleast_1d(vals)
            self._cached = None

        def _matrices(self, vname: str) -> tuple[np.ndarray, np.ndarray]:
            if self._cached is None or self._cached[0] != vname:
                j = self._position[vname]
                x = np.delete(self._array, j, axis=1)
                self._cached = (vname, self._array[:, j].copy(), x)
            return self._cached[1], self._cached[2]

        def get_split_data(self, vname):  # noqa: ANN001, ANN202 - statsmodels' signature
            y, x = self._matrices(vname)
            obs, miss = self.ix_obs[vname], self.ix_miss[vname]
            return y[obs], x[obs], x[miss], {}, {}

        def get_fitting_data(self, vname):  # noqa: ANN001, ANN202 - statsmodels' signature
            y, x = self._matrices(vname)
            obs = self.ix_obs[vname]
            fit_kwds = dict(self.fit_kwds[vname])
            previous = self.results.get(vname)
            if fit_kwds.get("method") == "newton" and previous is not None:
                fit_kwds["start_params"] = np.asarray(previous.params)
            return y[obs], x[obs], dict(self.init_kwds[vname]), fit_kwds

    return ArrayMICEData


@dataclass(frozen=True, kw_only=True)
class ImputationChain:
    """One chain of chained equations: its last imputed values and its trace.

    Attributes
    ----------
    values : DataFrame
        The imputed columns, complete, index of the input.
    trace : DataFrame
        ``iteration`` (1...), ``variable``, ``mean`` and ``sd`` of the imputed values
        (the missing entries only) after each cycle.
    """

    values: pd.DataFrame
    trace: pd.DataFrame


def _independent_columns(x: np.ndarray) -> list[int]:
    """Positions of columns of ``x`` that, with an intercept, are linearly independent.

    A rank-revealing QR decomposition (column pivoting) of the centred columns (the
    intercept projected out, so that it is always kept), with numpy's tolerance of
    :func:`numpy.linalg.matrix_rank`; positions in their order in ``x``.
    """
    from scipy.linalg import qr

    a = x - x.mean(axis=0)
    a = a / np.maximum(np.abs(a).max(axis=0, initial=0.0), np.finfo(float).tiny)
    if a.shape[1] == 0:
        return []
    _, r, pivots = qr(a, mode="economic", pivoting=True)
    d = np.abs(np.diag(r))
    rank = int((d > d[0] * max(a.shape) * np.finfo(float).eps).sum()) if d[0] > 0 else 0
    return sorted(int(p) for p in pivots[:rank])


def _working_frame(
    df: pd.DataFrame,
    impute: Sequence[str],
    predictors: Sequence[str],
    transforms: Mapping[str, str] | None,
) -> pd.DataFrame:
    """The incomplete columns then the predictors' numeric columns, named ``v0, v1...``.

    A predictor column that is constant or a linear combination of other columns (and the
    intercept) is left out: it adds nothing to the conditional models' fitted values and
    would make their information matrices singular (Newton's method needs them inverted).
    """
    incomplete = [c for c in predictors if not is_categorical(df[c]) and df[c].isna().any()]
    if incomplete:
        raise ValueError(
            f"numeric predictors {incomplete} have missing values: impute them too "
            "(a missing level of a categorical predictor is its own level)"
        )
    x = design_matrix(df, list(predictors), transforms=transforms)
    x = x.iloc[:, _independent_columns(x.to_numpy(np.float64))]
    work = pd.concat(
        [df[list(impute)].astype(np.float64).reset_index(drop=True), x.reset_index(drop=True)],
        axis=1,
    )
    # continuous predictors standardised, so that the fits are well conditioned
    sd = work.iloc[:, len(impute) :].std().replace(0, 1)
    work.iloc[:, len(impute) :] = (
        work.iloc[:, len(impute) :] - work.iloc[:, len(impute) :].mean()
    ) / sd
    work.columns = [f"v{j}" for j in range(work.shape[1])]
    return work


# long: the chain's set-up (models by kind), its cycles and its trace, in one piece
def impute_chain(
    df: pd.DataFrame,
    *,
    impute: Sequence[str],
    predictors: Sequence[str],
    rng: np.random.Generator,
    kinds: Mapping[str, Kind] | None = None,
    transforms: Mapping[str, str] | None = None,
    iterations: int = 10,
    k_pmm: int = 5,
) -> ImputationChain:
    """One imputed dataset by chained equations (one chain of ``iterations`` cycles).

    Parameters
    ----------
    df : DataFrame
        One row per person.
    impute : sequence of str
        Numeric or boolean columns with missing values to impute (each is also a
        predictor of the others).
    predictors : sequence of str
        Complete columns of the imputation models: treatment, complete covariates,
        outcomes (event indicators, :func:`nelson_aalen`, log person-time, counts).
        Categorical columns enter as 0/1 columns.
    rng : numpy.random.Generator
        Source of every random draw of the chain.
    kinds : mapping of str to {"binary", "count", "continuous"}, optional
        The kind of each imputed column (default: :func:`variable_kinds`).
    transforms : mapping of str to str, optional
        Transformations of numeric predictors (as in
        :func:`~analysis.design.missing.design_matrix`, e.g. ``{"charges": "log1p"}``).
    iterations : int
        Cycles over the incomplete columns (van Buuren 2018 uses 5-20).
    k_pmm : int
        Donors of predictive mean matching (van Buuren 2018: 5).

    Returns
    -------
    ImputationChain

    References
    ----------
    White IR, Royston P, Wood AM (2011). Multiple imputation using chained equations.
    *Stat Med* 30:377-399.
    """
    import statsmodels.api as sm
    from threadpoolctl import threadpool_limits

    impute = list(impute)
    for col in impute:
        require_columns(df, impute=col)
    for col in predictors:
        require_columns(df, predictors=col)
    if iterations < 1 or k_pmm < 1:
        raise ValueError("iterations and k_pmm must be at least 1")
    kinds = dict(kinds or variable_kinds(df, impute))
    work = _working_frame(df, impute, predictors, transforms)
    names = dict(zip(impute, work.columns[: len(impute)], strict=True))
    missing = {col: df[col].isna().to_numpy() for col in impute}
    # one BLAS thread: results do not depend on the machine's threads, nor do parallel
    # chains compete for cores
    # (a perturbed logistic model may overflow exp() for far-out rows: a probability of 0/1)
    with threadpool_limits(1), np.errstate(over="ignore"):
        data = _mice_data_class()(work, k_pmm=k_pmm, rng=rng)
        for col in impute:
            model = {"binary": sm.Logit, "count": sm.Poisson}.get(kinds[col])
            if model is not None:
                data.set_imputer(
                    names[col], model_class=model, init_kwds={"check_rank": False},
                    fit_kwds={"method": "newton", "disp": 0},
                    k_pmm=k_pmm,
                )  # fmt: skip
        rows = []
        for it in range(1, iterations + 1):
            data.update_all(1)
            for col in impute:
                x = data.data[names[col]].to_numpy()[missing[col]]
                if len(x):
                    rows.append(
                        (it, col, float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0)
                    )
    values = pd.DataFrame(
        {col: data.data[names[col]].to_numpy(np.float64) for col in impute}, index=df.index
    )
    trace = pd.DataFrame(rows, columns=["iteration", "variable", "mean", "sd"])
    return ImputationChain(values=values, trace=trace)


def potential_scale_reduction(trace: pd.DataFrame, *, statistic: str = "mean") -> pd.DataFrame:
    """Gelman–Rubin potential scale reduction of parallel chains, per variable.

    Computed on the second half of the iterations of every chain, for the chains'
    ``statistic`` (mean or sd of the imputed values); values near 1 (below about 1.1)
    indicate that the chains have mixed (van Buuren 2018, section 6.5.2).

    Parameters
    ----------
    trace : DataFrame
        ``chain``, ``iteration``, ``variable`` and ``statistic`` columns
        (:attr:`MultipleImputation.trace`).
    statistic : str
        The traced statistic.

    Returns
    -------
    DataFrame
        ``variable``, ``rhat`` (NaN when the chains are constant).

    References
    ----------
    Gelman A, Rubin DB (1992). Inference from iterative simulation using multiple
    sequences. *Stat Sci* 7:457-472.
    """
    last = int(trace["iteration"].max())
    half = trace[trace["iteration"] > last // 2]
    out = []
    for var, g in half.groupby("variable", sort=False):
        x = g.pivot(index="iteration", columns="chain", values=statistic).to_numpy()
        n = x.shape[0]
        w = x.var(axis=0, ddof=1).mean() if n > 1 else np.nan
        b = n * x.mean(axis=0).var(ddof=1) if x.shape[1] > 1 else np.nan
        var_plus = (n - 1) / n * w + b / n
        rhat = float(np.sqrt(var_plus / w)) if w > 0 else np.nan
        out.append({"variable": var, "rhat": rhat})
    return pd.DataFrame(out, columns=["variable", "rhat"])


@dataclass(frozen=True, kw_only=True)
class MultipleImputation:
    """``m`` imputed datasets drawn by chained equations.

    Attributes
    ----------
    datasets : tuple of DataFrame
        The input with its incomplete columns completed, one per chain.
    trace : DataFrame
        ``chain``, ``iteration``, ``variable``, ``mean``, ``sd`` of the imputed values.
    kinds : dict of str to str
        The kind of each imputed column.
    n_missing : dict of str to int
        Missing values of each imputed column.
    """

    datasets: tuple[pd.DataFrame, ...]
    trace: pd.DataFrame
    kinds: dict[str, str]
    n_missing: dict[str, int]

    @property
    def m(self) -> int:
        """The number of imputed datasets."""
        return len(self.datasets)

    def convergence(self) -> pd.DataFrame:
        """Potential scale reduction of the chains' means and SDs, per variable."""
        mean = potential_scale_reduction(self.trace, statistic="mean")
        sd = potential_scale_reduction(self.trace, statistic="sd")
        return mean.merge(sd, on="variable", suffixes=("_mean", "_sd"))


def complete(df: pd.DataFrame, chain: ImputationChain) -> pd.DataFrame:
    """``df`` with the chain's imputed columns put in (dtypes of the imputed values)."""
    return df.assign(**{c: chain.values[c].to_numpy() for c in chain.values.columns})


def _chain(df: pd.DataFrame, args: dict, rng: np.random.Generator) -> ImputationChain:
    """:func:`impute_chain` with the generator last (a task of ``map_tasks``)."""
    return impute_chain(df, rng=rng, **args)


def multiple_imputation(
    df: pd.DataFrame,
    *,
    impute: Sequence[str],
    predictors: Sequence[str],
    rng: np.random.Generator,
    m: int = 20,
    kinds: Mapping[str, Kind] | None = None,
    transforms: Mapping[str, str] | None = None,
    iterations: int = 10,
    k_pmm: int = 5,
    n_jobs: int = 1,
) -> MultipleImputation:
    """``m`` imputed datasets from ``m`` independent chains (:func:`impute_chain`).

    Chain ``i`` draws from the ``i``-th child of ``rng`` (``rng.spawn(m)``), so the
    datasets are the same whatever ``n_jobs``.

    Parameters
    ----------
    df, impute, predictors, kinds, transforms, iterations, k_pmm
        As :func:`impute_chain`.
    rng : numpy.random.Generator
        Parent generator; ``m`` children are spawned from it.
    m : int
        Imputed datasets (White et al. 2011: at least the percentage of incomplete cases).
    n_jobs : int
        Processes running chains at once: this one and ``n_jobs - 1`` workers
        (:func:`analysis._parallel.map_tasks`).

    Returns
    -------
    MultipleImputation
    """
    if m < 2:
        raise ValueError("m must be at least 2")
    kinds = dict(kinds or variable_kinds(df, impute))
    args = {"impute": impute, "predictors": predictors, "kinds": kinds,
            "transforms": transforms, "iterations": iterations, "k_pmm": k_pmm}  # fmt: skip
    chains = map_tasks(partial(_chain, df, args), rng.spawn(m), n_jobs=n_jobs)
    trace = pd.concat([c.trace.assign(chain=i) for i, c in enumerate(chains)], ignore_index=True)[
        ["chain", "iteration", "variable", "mean", "sd"]
    ]
    return MultipleImputation(
        datasets=tuple(complete(df, c) for c in chains),
        trace=trace,
        kinds=kinds,
        n_missing={c: int(df[c].isna().sum()) for c in impute},
    )
