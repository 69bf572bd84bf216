"""Outcome layer: effect estimates from a matched or weighted sample.

Modules
-------
coxph
    The Cox engine (Breslow/Efron, weights, strata, cluster-robust variance, residuals) and
    ``cox_zph``.
survival
    Kaplan–Meier, Cox hazard ratios, Aalen–Johansen cumulative incidence, RMST and risk
    differences.
rates
    Exact and weighted Poisson rates; the ratio of two arms' weighted marginal rates.
negative_binomial
    Negative-binomial (NB2) rate ratio with a person-time offset.
before_after
    Within-arm after/before rate ratios and their ratio.
counts
    The count estimators above in one namespace.
sensitivity
    E-values.
stacked
    Variances of weighted estimates that account for the estimated weights (stacked estimating
    equations).

This layer may import the base modules, ``analysis.data`` and ``analysis.design``.
"""
