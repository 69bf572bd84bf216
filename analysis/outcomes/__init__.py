"""Outcome layer: effect estimates from a matched or weighted sample.

Modules
-------
coxph
    The Cox engine: ``fit_cox`` (right-censored or counting-process data with ``entry=``;
    Breslow/Efron ties, case weights, strata, cluster-robust variance; coefficients,
    information, score and Schoenfeld residuals, score tests) and
    ``CoxScore`` (the weighted score contributions at any coefficients and weights).
cox
    ``cox_hazard_ratio``: the hazard-ratio estimator on a DataFrame, over the engine.
ph_test
    ``cox_zph``: proportional-hazards score tests, as R's ``cox.zph`` or with the robust
    variance.
kaplan_meier
    Kaplan–Meier curves by group with pointwise bands and numbers at risk.
absolute
    Survival ratio and difference at a time point, cumulative risk difference.
rmst
    Difference in restricted mean survival time.
competing_risks
    Aalen–Johansen cumulative incidence by group and its difference at a time point.
logrank
    Log-rank test and the (robust) Cox score test.
counting
    Estimators on counting-process data ``(start, stop]`` with time-varying weights
    (per-protocol analyses with censoring weights); the Cox model on the engine.
rates
    Exact and weighted Poisson rates; the ratio of two arms' weighted marginal rates.
negative_binomial
    Negative-binomial (NB2) rate ratio with a person-time offset.
before_after
    Within-arm after/before rate ratios and their ratio.
means
    Differences in weighted means (continuous outcome), risk differences and risk ratios
    (binary outcome), with the cluster-robust variance.
sensitivity
    E-values.
stacked
    Variances of weighted estimates that account for the estimated weights (stacked estimating
    equations).

Private modules: ``_coxph_core`` and ``_coxph_solve`` (the engine's array work and
Newton–Raphson), ``_product_limit`` (the Kaplan–Meier kernel shared by the survival
estimators), ``_km_bootstrap`` (cluster bootstrap of Kaplan–Meier functionals), ``_common``
(not-estimable results, notes and the screening of two-arm contrasts).

This layer may import the base modules, ``analysis.data`` and ``analysis.design``.
"""
