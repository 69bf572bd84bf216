"""Outcome layer: effect estimates from a matched or weighted sample.

Modules
-------
coxph
    The Cox engine (Breslow/Efron, weights, strata, cluster-robust variance, residuals) and
    ``cox_zph``.
survival
    Kaplan–Meier, Cox hazard ratios, Aalen–Johansen cumulative incidence, RMST and risk
    differences.
counts
    Ratio of weighted rates, negative-binomial rate ratios, before/after ratios.
means
    Differences in weighted means (continuous outcome), risk differences and risk ratios
    (binary outcome), with the cluster-robust variance.
sensitivity
    E-values.
stacked
    Variances of weighted estimates that account for the estimated weights (stacked estimating
    equations).

This layer may import the base modules, ``analysis.data`` and ``analysis.design``.
"""
