"""Run a whole study on a generated scenario, for tests."""

from __future__ import annotations

from pathlib import Path

from analysis.data.extract import read_extract
from evaluation.config import load_config
from evaluation.pipeline import Study, run_study
from synthetic import generate_extract

#: the configuration of tests that do not test multiple imputation: the other missing-data
#: method is reported by default in a study run (``imputation.sensitivity: null``), which
#: costs m = 20 imputations per study
NO_MI = {"imputation": {"sensitivity": False}}


def study_on_scenario(
    tmp: Path, scenario: str, seed: int, *, fmt: str = "csv", **config
) -> tuple[Study, Path]:
    """Generate ``scenario`` with ``seed`` into ``tmp`` and run the study on it.

    Without multiple imputation (:data:`NO_MI`) unless ``config`` has ``imputation``.
    """
    data = generate_extract(scenario, out=tmp / f"{scenario}-{seed}-{fmt}", seed=seed, format=fmt)
    study = run_study(read_extract(data), load_config(seed=seed, **{**NO_MI, **config}))
    return study, data


def estimates(study: Study) -> dict[tuple[str, str, str], dict]:
    """Estimates of a study keyed by (outcome, measure, method)."""
    return {(e["outcome"], e["measure"], e["method"]): e for e in study.results["estimates"]}
