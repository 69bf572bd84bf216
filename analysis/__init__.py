"""Statistical methods for comparing a treated group with matched or weighted controls.

``analysis`` is a library in three layers over a small base; each layer may import only the
layers above it in this list, and ``analysis`` never imports ``synthetic`` or ``evaluation``.

base
    ``analysis.results`` (``EffectEstimate``, the frozen result of every estimator),
    ``analysis.sandwich`` (the one cluster-robust sandwich and its small-sample corrections),
    ``analysis._checks`` (private: column checks whose errors name the argument and the column).
``analysis.data`` -- the data contract
    Reading and validating registry extracts (contract versions 1 and 2), deriving the
    person-level cohort and the target trial's risk sets. Study vocabulary lives here.
``analysis.design`` -- from an analysis table to a comparison
    Design matrices, propensity scores, nearest-neighbour and risk-set matching, ATT and
    censoring weights, balance. Generic: every function takes the DataFrame and the names of
    the columns that play each role (``treatment``, ``covariates``, ``score``, ``id``).
``analysis.outcomes`` -- effect estimates
    Cox models, Kaplan--Meier, competing risks, RMST and risk differences, rates and
    negative-binomial rate ratios, differences in means and risks, E-values, and variances
    that account for estimated weights. Generic like ``design``: ``df, *, duration/event or
    outcome, treatment, weights, cluster, alpha``.

Example
-------
>>> from analysis.design.propensity import fit_propensity   # doctest: +SKIP
>>> ps = fit_propensity(df, treatment="treat", covariates=["age", "educ"])  # doctest: +SKIP

See ``docs/lalonde.md`` for a whole analysis on the NSW/Lalonde data.
"""

__version__ = "0.1.0"
