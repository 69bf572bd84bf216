"""Fixtures shared by several test modules."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_extract(tmp_path_factory) -> Path:
    """A small synthetic extract (30 HAT, 200 OST) on which the study runs in about a second."""
    from synthetic import generate_extract

    folder = tmp_path_factory.mktemp("small") / "extract"
    return generate_extract("ci", out=folder, seed=5, n_hat=30, n_ost=200)


@pytest.fixture(scope="session")
def no_mi_config(tmp_path_factory) -> Path:
    """A study configuration file without the multiple-imputation sensitivity analysis.

    For tests of the command and the results folder: the analysis is on by default (m = 20
    imputations per study) and is tested in ``tests/test_imputation.py``.
    """
    path = tmp_path_factory.mktemp("config") / "no-mi.yml"
    path.write_text("imputation: {sensitivity: false}\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def previous_results(small_extract, no_mi_config, tmp_path_factory) -> Path:
    """A results folder written by the package (no report) from :func:`small_extract`.

    Without the multiple-imputation sensitivity analysis (on by default; tested in
    ``tests/test_imputation.py``).
    """
    from evaluation.run import main

    out = tmp_path_factory.mktemp("previous") / "results"
    args = ["--no-book", "--quiet", "--data", str(small_extract), "--config", str(no_mi_config)]
    assert main([*args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def trial_results(tmp_path_factory, request) -> Path:
    """A version-2 (target-trial) results folder with its ``release/``, made once per test run.

    Made by :func:`tests.book_fixture.write_trial_results` (about 20 s). Under pytest-xdist the
    workers share it (the first one makes it, under a file lock), so tests must treat it as
    read-only and build reports elsewhere (``output_dir=``).
    """
    from tests.book_fixture import write_trial_results

    base = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker: share the session's folder
        base = base.parent
    folder = base / "trial-shared" / "results"
    with open(base / "trial-shared.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "results.json").exists():
            write_trial_results(folder)
    return folder
