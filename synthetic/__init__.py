"""Synthetic registry extracts with known truth, calibrated to Norway.

>>> from synthetic import generate_extract
>>> generate_extract("ci", out="extract-ci", seed=7)  # doctest: +SKIP

``python -m synthetic --scenario default --out DIR`` does the same from the command line;
``--contract 2`` (or ``generate_extract(..., contract=2)``) writes a history extract
(data contract version 2) from ``synthetic/scenarios/history/`` (``synthetic/history_*.py``).
See ``synthetic/spec.py`` for every parameter and its source.
"""

from synthetic.generate import generate, generate_extract, write
from synthetic.spec import Scenario, ScenarioError, load_scenario, scenario_names

__all__ = [
    "Scenario",
    "ScenarioError",
    "generate",
    "generate_extract",
    "load_scenario",
    "scenario_names",
    "write",
]
