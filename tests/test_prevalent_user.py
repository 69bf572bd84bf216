"""The prevalent-user comparison is biased where its comparator rule looks into the future.

Version 1's design applied to a history extract takes as comparators persons who *never*
start HAT. Whether a person ever starts depends on what happens to the person after the
comparator's date: who dies or leaves OST before a place comes free cannot start. So the
comparators are enriched with early deaths and discontinuations, and HAT looks protective
when it does nothing (Suissa 2008, Am J Epidemiol 167:492; Hernán et al. 2016, J Clin
Epidemiol 79:70). Risk-set matching decides the arm from what is known on the date only.

The extract here is built by hand so that nothing else is going on: no effect of HAT on
anything, no confounding (every covariate is independent of everything), constant hazards
of death and of leaving OST, and a frequent uptake: each person in OST gets a place on a
date drawn at random and takes it (probability 0.9) if still alive and in OST. The
truth of every intention-to-treat effect is therefore 1. The risk-set ITT estimates must be
close to 1; the prevalent-user hazard ratios of mortality and retention must be clearly
below 1. In the default history scenario uptake is rare (about 2% of the matched comparators
start HAT later) and this bias is small: see ``benchmarks/coverage_v2.md``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.data.extract import read_extract
from evaluation.config import load_config
from evaluation.pipeline import run_study
from tests.null_history import write_null_history
from tests.study_helpers import NO_MI


def _log_z(e: dict) -> float:
    """(log estimate - log 1) / SE: distance from the null truth in standard errors."""
    return math.log(e["estimate"]) / e["se"]


@pytest.fixture(scope="module", params=[7, 11])
def null_study(request, tmp_path_factory):
    folder = write_null_history(
        tmp_path_factory.mktemp("null") / "x", np.random.default_rng(request.param)
    )
    config = load_config(None, seed=3, **NO_MI)
    trial = {"contrasts": ["itt"], "sensitivity": {"matching": [], "grace_period_days": None}}
    config = config.model_validate({**config.to_dict(), "target_trial": trial})
    return run_study(read_extract(folder), config)


def test_prevalent_users_off_where_risk_sets_are_not(null_study):
    est = {(e["outcome"], e["method"]): e for e in null_study.results["estimates"]
           if e["measure"] in ("HR", "IRR") and e["estimand"] == "itt"}  # fmt: skip
    design = null_study.results["design"]["designs"]
    # the comparator rule bites: many matched risk-set comparators start HAT later
    m = design["matched"]
    assert m["comparators_later_initiators"] / m["n_control_rows_matched"] > 0.2, m
    for outcome, method in (("mortality", "cox"), ("retention", "cox"), ("crime", "rate")):
        itt = est[(outcome, f"{method}_matched")]
        z = _log_z(itt)
        assert abs(z) < 3, (outcome, z, itt)
    # the naive comparison's variances are clustered on persons (an initiator is also in OST
    # on the fixed date: two rows of one person, positively correlated)
    naive = est[("crime", "rate_naive")]
    assert naive["details"]["n_clusters"] < naive["n_treated"] + naive["n_control"], naive
    for outcome in ("mortality", "retention"):
        prevalent = est[(outcome, "cox_prevalent")]
        # HAT does nothing, yet the never-initiators die and leave sooner
        assert _log_z(prevalent) < -3, (outcome, prevalent)
        assert prevalent["estimate"] < est[(outcome, "cox_matched")]["estimate"]
