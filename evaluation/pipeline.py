"""The study as a pure function: configuration + extract -> results.

``run_study`` passes a :class:`~evaluation.study.StudyState` through :data:`STAGES`:
the cohort, the propensity score and the designs (primary 1:k propensity-score matching
and the sensitivity designs: IPTW, narrower caliper, 1:1, naive), balance, the outcome
models of every design, and the results document with the tables behind the report
(:mod:`evaluation.stages`); then the designs and outcome models are repeated within
multiply imputed datasets and pooled (:mod:`evaluation.stages.imputation`): the primary
analysis with ``missing: mi``, else the sensitivity analysis (by default in a full study). It reads and writes no files. A stage is a function
``(state, config) -> state``, so the simulation and the benchmarks run the same stages.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Literal, NamedTuple

from analysis.data.extract import Extract, HistoryExtract
from evaluation.config import StudyConfig
from evaluation.progress import Steps
from evaluation.stages.designs import (
    Design,
    balance_stage,
    build_designs,
    cohort_stage,
    design_stage,
)
from evaluation.stages.document import document_stage, estimates_document_stage
from evaluation.stages.imputation import imputation_stage
from evaluation.stages.outcomes import estimates_stage, not_estimable, outcome_stage
from evaluation.stages.secondary import horizon_label
from evaluation.study import Study, StudyError, StudyState

__all__ = [
    "ESTIMATE_STAGES",
    "STAGES",
    "Design",
    "Stage",
    "Study",
    "StudyError",
    "StudyState",
    "build_designs",
    "horizon_label",
    "not_estimable",
    "run_stages",
    "run_study",
]


class Stage(NamedTuple):
    """A stage of the study: its name in the progress report (``None``: not reported)."""

    name: str | None
    run: Callable[[StudyState, StudyConfig], StudyState]


#: the stages of a version-1 study, in order
STAGES: tuple[Stage, ...] = (
    Stage("derive cohort", cohort_stage),
    Stage("propensity score and designs", design_stage),
    Stage("balance", balance_stage),
    Stage("outcome models", outcome_stage),
    Stage(None, document_stage),
    Stage("multiple imputation", imputation_stage),
)

#: the stages of ``run_study(..., scope="estimates")``: every design and estimate, no balance,
#: curves, tables, diagnostics or proportional-hazards tests (a simulation replicate)
ESTIMATE_STAGES: tuple[Stage, ...] = (
    Stage("derive cohort", cohort_stage),
    Stage("propensity score and designs", design_stage),
    Stage("outcome models", estimates_stage),
    Stage(None, estimates_document_stage),
)

Scope = Literal["full", "estimates"]


def run_stages(
    state: StudyState,
    config: StudyConfig,
    stages: tuple[Stage, ...] = STAGES,
    *,
    steps: Steps | None = None,
) -> StudyState:
    """Run stages in order on a state (each named stage timed by ``steps``).

    Parameters
    ----------
    state : StudyState
        The state to start from (``StudyState(extract=...)`` for the whole study).
    config : StudyConfig
        The study's configuration.
    stages : tuple of Stage
        The stages to run; default every stage of :data:`STAGES`.
    steps : Steps, optional
        Progress reporter.

    Returns
    -------
    StudyState
    """
    steps = steps or Steps(quiet=True)
    for stage in stages:
        with steps.step(stage.name) if stage.name else nullcontext():
            state = stage.run(state, config)
    return state


def run_study(
    extract: Extract | HistoryExtract,
    config: StudyConfig,
    *,
    steps: Steps | None = None,
    scope: Scope = "full",
) -> Study:
    """Run every analysis of the study on a validated extract.

    Parameters
    ----------
    extract : Extract
        A validated registry extract.
    config : StudyConfig
        The study's configuration (seed, design, horizons).
    steps : Steps, optional
        Progress reporter.
    scope : {"full", "estimates"}
        ``"full"``: every analysis, table and diagnostic of the report. ``"estimates"``:
        the cohort, every design and every estimate, identical to the full study's, and
        nothing else (:data:`ESTIMATE_STAGES`: no balance, Table 1, curves, rate tables,
        disclosure evidence, E-values or proportional-hazards tests; ``results`` holds
        ``cohort``, ``estimates`` and ``truth``, ``tables`` is empty): what a simulation
        replicate keeps. With multiple imputation configured (``missing: mi`` or
        ``imputation.sensitivity: true``) and for a version-2 extract the full study is run.
        ``imputation.sensitivity: null`` (the default) is on in the full study and off with
        ``"estimates"``.

    Returns
    -------
    Study
        ``results`` (contents of ``results.json``) and ``tables``.

    Raises
    ------
    StudyError
        The extract is valid but the study cannot be done on it.

    Notes
    -----
    A version-2 (history) extract is analysed as an emulated target trial
    (:func:`evaluation.target_trial.run_target_trial`).

    BLAS runs on one thread during the study (``threadpoolctl``): a multi-threaded BLAS
    splits sums differently for different numbers of cores, so the last digits of the
    results would depend on the machine. On one thread the same seed and extract give the
    same bytes on any machine with the locked versions (and the same CPU family), and the
    small products the study makes are faster without thread start-up.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _run_study(extract, config, steps=steps, scope=scope)


def _run_study(
    extract: Extract | HistoryExtract, config: StudyConfig, *, steps: Steps | None, scope: Scope
) -> Study:
    # imputation.sensitivity: None is on in a full study, off in a replicate's estimates
    config = config.model_copy(update={"imputation": config.imputation.for_scope(scope)})
    if isinstance(extract, HistoryExtract):
        from evaluation.target_trial import run_target_trial

        return run_target_trial(extract, config, steps=steps)
    if scope not in ("full", "estimates"):
        raise ValueError(f"scope must be 'full' or 'estimates', got {scope!r}")
    imputation = config.missing == "mi" or config.imputation.reports_other()
    stages = ESTIMATE_STAGES if scope == "estimates" and not imputation else STAGES
    state = run_stages(StudyState(extract=extract), config, stages, steps=steps)
    return Study(results=state.document, tables=state.tables)
