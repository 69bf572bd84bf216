"""The emulated target trial against an independent generator's ITT and per-protocol truths.

:mod:`tests.independent_history` is written from the data contract only (no ``synthetic/``
import); its truths come from simulated potential outcomes of the analysed initiators.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.data.extract import read_extract
from benchmarks.independent_history_coverage import primaries, study_config
from tests.independent_history import POPULATION_TRUTH, Effects, write_independent_history

#: the contract's columns of each table (version 2)
COLUMNS = {
    "persons": ["person_id", "sex", "birth_year", "region", "emigration_date"],
    "treatment_episodes": ["person_id", "start_date", "end_date", "medication"],
    "deaths": ["person_id", "death_date", "cause"],
    "charges": ["person_id", "charge_date", "offence"],
    "assessments": [
        "person_id", "assessment_date", "years_opioid_use", "injecting", "psychiatric_dx",
        "homeless", "benzodiazepine_use",
    ],
    "overdoses": ["person_id", "overdose_date"],
}  # fmt: skip


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("indep") / "x"
    truth = write_independent_history(folder, np.random.default_rng(5), n=1200, replicates=20)
    return folder, truth


def test_extract_follows_the_contract(small):
    folder, truth = small
    for table, cols in COLUMNS.items():
        assert pd.read_csv(folder / f"{table}.csv").columns.tolist() == cols, table
    history = read_extract(folder)
    assert type(history).__name__ == "HistoryExtract"
    ep = pd.read_csv(folder / "treatment_episodes.csv", keep_default_na=False)
    assert set(ep["medication"]) <= {"methadone", "buprenorphine", "morphine", "diacetylmorphine"}
    assert (ep["end_date"] == "").any()  # open episodes
    persons = pd.read_csv(folder / "persons.csv", keep_default_na=False)
    assert set(persons["region"]) == {"south-east", "west", "central", "north"}
    assert set(persons["sex"]) == {"F", "M"} and persons["person_id"].is_unique
    deaths = pd.read_csv(folder / "deaths.csv")
    assert set(deaths["cause"]) <= {"overdose", "other"} and deaths["person_id"].is_unique
    offences = set(pd.read_csv(folder / "charges.csv")["offence"])
    assert offences <= {"property", "drug", "violence", "other"}
    forms = pd.read_csv(folder / "assessments.csv")
    assert not forms.duplicated(["person_id", "assessment_date"]).any()
    assert (persons["emigration_date"] != "").any()
    # a few HAT starts from outside treatment: initiators the contract's rule 4 excludes
    assert 0 < truth["n_analysed"] < truth["n_initiators"]


def _z(e: dict, t: dict) -> float:
    return (math.log(e["estimate"]) - t["log"]) / math.hypot(e["se"], t["mc_se"])


@pytest.mark.parametrize("seed", [1, 2])
def test_study_recovers_the_independent_truths(tmp_path, seed):
    """Every ITT and per-protocol primary within 3 SE of the population's potential-outcome
    truth (an extract's initiators are a sample of the population of initiators)."""
    from evaluation.pipeline import run_study

    rng = np.random.default_rng(np.random.SeedSequence(20251127, spawn_key=(seed,)))
    made = write_independent_history(tmp_path / "x", rng, n=2000, replicates=0)
    study = run_study(read_extract(tmp_path / "x"), study_config(seed))
    assert study.results["cohort"]["n_hat"] == made["n_analysed"]  # rules 1-6 agree
    got = primaries(study.results)
    assert len(got) == 6
    for (estimand, outcome), e in got.items():
        t = POPULATION_TRUTH["truth"][estimand][outcome]
        assert abs(_z(e, t)) < 3, (estimand, outcome, e["estimate"], e["se"], t)


def test_truth_is_null_without_effects(tmp_path):
    """With every conditional effect 1 the ITT and per-protocol truths are 1 within MC error,
    and with effects the per-protocol truth lies further from 1 than the ITT (dilution)."""
    null = write_independent_history(
        tmp_path / "null", np.random.default_rng(11), n=1200, effects=Effects(1, 1, 1),
        replicates=60,
    )  # fmt: skip
    for estimand in ("itt", "per_protocol"):
        for outcome, t in null["truth"][estimand].items():
            assert abs(t["log"]) < 4 * t["mc_se"] + 0.01, (estimand, outcome, t)
    # the comparators' later HAT starts dilute the ITT effect; "never initiate" does not
    itt, pp = (POPULATION_TRUTH["truth"][e] for e in ("itt", "per_protocol"))
    for outcome in ("mortality", "retention", "crime"):
        assert pp[outcome]["log"] < itt[outcome]["log"] < 0, outcome
