"""Design layer: from an analysis table to a comparison (matched sample or weights).

Modules
-------
missing
    Design matrices: missing-indicator method, transformations, spline terms.
propensity
    ``fit_propensity`` (logistic regression on a design matrix).
matching
    ``match``: 1:k nearest-neighbour matching on the logit of the score, caliper, exact variables.
weighting
    ``att_weights``: inverse probability of treatment weights for the ATT.
balance
    ``balance_table``: standardised differences and variance ratios, effective sample size.
descriptives
    ``baseline_table`` (Table 1, optionally weighted).
risk_set_matching
    Matching within the risk sets of a target-trial emulation.
ipcw
    Inverse probability of censoring weights for per-protocol effects.

This layer imports the base modules of ``analysis`` and ``analysis.data``; never ``outcomes``.
"""
