"""The stages of a version-1 study, each a function ``(state, config) -> state``.

Modules
-------
designs
    ``cohort_stage`` (cohort table, checks), ``design_stage`` (propensity score, every
    design: :func:`~evaluation.stages.designs.build_designs`), ``balance_stage``, and the
    design tables (Table 1, propensity-score overlap).
outcomes
    ``outcome_stage``: the outcome models of every design, primary estimates marked, and
    the primary design's secondary estimates (:mod:`evaluation.stages.secondary`).
secondary
    Absolute measures, retention at a time, before/after charges, the negative binomial,
    the curves and crude rates of the primary design.
document
    ``document_stage``: the results document (truth, E-values, diagnostics) and the
    report's tables.
imputation
    ``imputation_stage``: multiple imputation of the missing covariates, the matched and
    IPTW designs and outcome models within each imputed dataset, Rubin's rules; amends the
    results document (``missing: mi``, or ``imputation.sensitivity`` not ``false``; else
    ``design.missing`` says why it did not impute).

:data:`evaluation.pipeline.STAGES` lists them in order; the types they pass on
(:class:`~evaluation.study.StudyState`) are in :mod:`evaluation.study`.
"""

__all__: list[str] = []
