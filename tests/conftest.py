"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_extract(tmp_path_factory) -> Path:
    """A small synthetic extract (30 HAT, 200 OST) on which the study runs in about a second."""
    from synthetic import generate_extract

    folder = tmp_path_factory.mktemp("small") / "extract"
    return generate_extract("ci", out=folder, seed=5, n_hat=30, n_ost=200)


@pytest.fixture(scope="session")
def previous_results(small_extract, tmp_path_factory) -> Path:
    """A results folder written by the package (no report) from :func:`small_extract`."""
    from evaluation.run import main

    out = tmp_path_factory.mktemp("previous") / "results"
    assert main(["--no-book", "--quiet", "--data", str(small_extract), "--out", str(out)]) == 0
    return out
