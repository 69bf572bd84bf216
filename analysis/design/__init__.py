"""Design layer: from an analysis table to a comparison (matched sample or weights).

Generic: every function takes a DataFrame and the names of the columns that play each role
(``treatment``, ``covariates``, ``score``, ``id``...) as keyword arguments, and how
covariates enter (``transforms``, ``levels``) is the caller's choice; nothing here knows a
study's column names or defaults. A missing column raises
:class:`analysis._checks.ColumnError` naming the argument and the column.

Modules
-------
missing
    ``design_matrix``: dummies in the caller's level order, ``log1p`` and spline
    transformations asked for, missing-indicator method; ``design_spec`` / ``fit_design``
    -> ``DesignSpec``: the reference's levels, fill values, knots and columns found once,
    ``spec.transform(df)`` expands other samples with them.
expansion
    The expansion's mechanics behind ``missing``: ``DesignTerm``, ``DesignSpec``, the
    spline basis.
propensity
    ``fit_propensity`` (logistic regression on a design matrix; separation handled).
matching
    ``match`` -> ``MatchedSample``: greedy 1:k nearest-neighbour matching on a score,
    caliper, exact strata, with or without replacement (the search: ``_nearest``).
weighting
    ``att_weights`` -> ``WeightedSample``: inverse probability of treatment weights for
    the ATT, optional trimming.
balance
    ``balance_table``, ``compare_balance``, ``balance_summary``: standardised differences
    and variance ratios; ``effective_sample_size``.
descriptives
    ``baseline_table`` (Table 1, optionally weighted).
risk_set_matching
    Matching within the risk sets of a target-trial emulation (the risk-set table of
    ``analysis.data.risk_sets``).
ipcw
    Inverse probability of censoring weights for per-protocol effects.

This layer imports the base modules of ``analysis`` and ``analysis.data``; never ``outcomes``.
"""
