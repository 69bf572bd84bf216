"""The precise-truth scenario files of the coverage study (``benchmarks/history_*_truth*.yml``).

Each is a bundled history scenario with other truth settings only: the same parameters
otherwise, so the same seed gives the same seven tables (the truth settings enter only
``truth.json``), and a coverage run's records can be summarised against its truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthetic.history_generate import generate_history
from synthetic.history_spec import load_history_scenario

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
FILES = {"history_ci_truth20.yml": "ci", "history_default_truth.yml": "default"}


@pytest.mark.parametrize(("file", "bundled"), sorted(FILES.items()))
def test_only_the_truth_settings_differ(file: str, bundled: str) -> None:
    precise = load_history_scenario(BENCH / file)
    base = load_history_scenario(bundled)
    assert precise.truth != base.truth
    assert precise.model_dump(exclude={"truth"}) == base.model_dump(exclude={"truth"})


def test_same_seed_same_tables() -> None:
    """The default scenario and its precise-truth file give the same seven tables.

    At a tenth of the national size (``scale`` enters neither the truth nor the
    comparison) to keep the test short.
    """
    tables = []
    precise = load_history_scenario(BENCH / "history_default_truth.yml")
    for spec in (load_history_scenario("default"), precise):
        small = spec.model_copy(update={"scale": 0.1})
        t, truth = generate_history(small, np.random.default_rng(123), truth=False)
        assert truth is None
        tables.append(t)
    a, b = tables
    assert len(a) == 7
    assert sorted(a) == sorted(b)
    for name in a:
        assert len(a[name]) > 0, name
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True)
