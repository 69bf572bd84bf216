"""Generate a synthetic registry extract with known truth.

``generate(spec, rng)`` returns the contract's tables and ``truth.json``'s contents;
``write`` writes them with :func:`analysis.data.extract.write_extract`;
``generate_extract`` does both for a named scenario (the evaluation pipeline's entry).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from analysis.data.contract import (
    BOOLEAN_COVARIATES,
    COLUMNS,
    DAYS_PER_YEAR,
    MEDICATIONS,
    NUMERIC_COVARIATES,
    OFFENCES,
    REGIONS,
)
from analysis.data.extract import Extract, extract_from_arrow, write_extract
from analysis.data.writing import arrow_tables
from synthetic.missingness import apply_missing
from synthetic.outcomes import (
    followup_charges,
    history_charges,
    prison_candidates,
    prison_stays,
    simulate_course,
)
from synthetic.population import (
    EPOCH,
    HAT_MED,
    NO_DAY,
    People,
    day_number,
    multipliers,
    ost_candidates,
)
from synthetic.selection import draw_hat
from synthetic.spec import Scenario, load_scenario
from synthetic.tables import offence_codes, order_rows
from synthetic.truth import truth_json

__all__ = ["generate", "generate_extract", "in_memory", "write"]


def _dates(days: np.ndarray) -> np.ndarray:
    """Day numbers (NaN or NO_DAY = missing) as datetime64[s] values."""
    days = np.asarray(days, dtype=float)
    bad = np.isnan(days) | (days <= NO_DAY / 2)
    out = (EPOCH + np.where(bad, 0, days).astype(np.int64)).astype("datetime64[s]")
    out[bad] = np.datetime64("NaT")
    return out


@functools.lru_cache(maxsize=16)
def _id_strings(n: int, width: int) -> np.ndarray:
    """``S`` and the person numbers 1..n zero-padded to ``width`` digits (object array, built
    once per size: every replicate of a setting has the same ids in another order)."""
    ids = np.array([f"S{number:0{width}d}" for number in range(1, n + 1)], dtype=object)
    ids.flags.writeable = False
    return ids


def _frame(table: str, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """A table's frame from its columns (numpy arrays), in contract order."""
    return pd.DataFrame({name: columns[name] for name in COLUMNS[table]})


def generate(
    spec: Scenario, rng: np.random.Generator, *, truth: bool = True
) -> tuple[dict[str, pd.DataFrame], dict | None]:
    """Generate an extract's tables and its truth.

    Parameters
    ----------
    spec : Scenario
    rng : numpy.random.Generator
        Source of every random number of the data (the truth uses its own fixed seed,
        ``spec.truth.seed``, so that it does not depend on the data's seed).
    truth : bool
        Compute the truth. ``False`` returns ``None`` in its place, for callers that
        generate many data sets of one scenario and compute the truth once
        (:func:`synthetic.truth.truth_json`; it depends on the scenario, not on the seed).

    Returns
    -------
    tables : dict of str to DataFrame
        ``persons``, ``treatment_episodes``, ``deaths``, ``charges``, ``incarcerations`` in
        the contract's columns (dates as datetime64), sorted by ``person_id`` and date.
    truth : dict or None
        Contents of ``truth.json`` (``None`` when ``truth=False``).
    """
    # one piece: every table is drawn from the spawned streams in one fixed order, on which
    # the extract's bytes depend
    r_hat, r_ost, r_course, r_events, r_ids = rng.spawn(5)
    hat = draw_hat(spec.n_hat, spec, r_hat)
    ost = ost_candidates(spec.n_ost, spec, r_ost)
    people = People.concat([hat, ost])
    n = len(people)
    is_hat = np.r_[np.ones(spec.n_hat, bool), np.zeros(spec.n_ost, bool)]
    mult = multipliers(people, spec)
    extract_day = day_number(spec.extract_date)
    admin_end = (extract_day - people.index_day) + 1.0
    em_rate = spec.emigration.per_1000py / 1000 / DAYS_PER_YEAR
    emig = r_events.exponential(1 / em_rate, n) if em_rate > 0 else np.full(n, np.inf)

    # --- the course after index: HAT patients start HAT, OST candidates continue OST
    course = simulate_course(
        first_med=np.where(is_hat, HAT_MED, people.current_med).astype(np.int8),
        first_start=np.where(is_hat, 0, people.current_start).astype(float),
        treatment_mult=mult["treatment"],
        mortality_mult=mult["mortality"],
        admin_end=admin_end,
        emigration_time=emig,
        spec=spec,
        rng=r_course,
    )
    cands = prison_candidates(mult["crime"], admin_end, spec, r_events)
    stays = prison_stays(cands, course, spec, admin_end)
    fu_p, fu_t = followup_charges(course, mult["crime"], stays, spec, r_events)
    pre_p, pre_d = history_charges(people, mult["crime"], spec, r_events)

    # --- identifiers: random order so that the id says nothing about the group
    width = max(6, len(str(n)))
    order = r_ids.permutation(n)
    number = np.empty(n, dtype=np.int64)
    number[order] = np.arange(1, n + 1)
    ids = _id_strings(n, width)[number - 1]

    idx = people.index_day

    # --- treatment episodes: earlier episode, HAT patients' OST episode before index,
    # then the simulated course (the OST candidates' first one began before index)
    has_prev = people.prev_start != NO_DAY
    pre_hat = is_hat & ~people.new_start
    ep_person = np.concatenate(
        [np.flatnonzero(has_prev), np.flatnonzero(pre_hat), course.ep_person]
    )
    ep_start = np.concatenate(
        [
            (idx + people.prev_start)[has_prev],
            (idx + people.current_start)[pre_hat],
            idx[course.ep_person] + np.floor(course.ep_start),
        ]
    )
    ep_end = np.concatenate(
        [
            (idx + people.prev_end)[has_prev],
            (idx - 1)[pre_hat],
            idx[course.ep_person] + np.floor(course.ep_end),
        ]
    )
    ep_med = np.concatenate([people.prev_med[has_prev], people.current_med[pre_hat], course.ep_med])

    # --- persons (every table is ordered by person number, then date, with numpy)
    by_person = np.empty(n, dtype=np.int64)  # argsort of the person numbers 1..n
    by_person[number - 1] = np.arange(n)
    people_o = people.take(by_person)
    idx_o = idx[by_person]
    index_dates = _dates(idx_o)
    index_year = index_dates.astype("datetime64[Y]").astype(np.int64) + 1970
    birth_year = np.floor(index_year + 0.5 - people_o.age).astype(np.int64)
    emig_date = np.where(course.emigrated, idx + np.floor(np.minimum(emig, 1e9)), np.nan)
    persons = {
        "person_id": ids[by_person],
        "group": np.where(is_hat, "HAT", "OST").astype(object)[by_person],
        "index_date": index_dates,
        "sex": np.where(people_o.female, "F", "M").astype(object),
        "birth_year": birth_year,
        "region": np.asarray(REGIONS, dtype=object)[people_o.region],
    }
    observed = {
        "hat": is_hat[by_person].astype(float),
        "died": course.died[by_person].astype(float),
        "log1p_charges": np.log1p(np.bincount(fu_p, minlength=n))[by_person],
    }
    for name in (*NUMERIC_COVARIATES, *BOOLEAN_COVARIATES):
        persons[name] = apply_missing(
            getattr(people_o, name), spec.population.missing.get(name), people_o.age,
            age_mean=spec.population.age_mean, rng=r_ids, observed=observed,
        )  # fmt: skip
    persons["emigration_date"] = _dates(emig_date[by_person])

    # --- deaths
    dead = np.flatnonzero(course.died)
    dead = dead[np.argsort(number[dead], kind="stable")]
    deaths = {
        "person_id": ids[dead],
        "death_date": _dates(idx[dead] + np.floor(course.death_time[dead])),
        "cause": np.where(course.overdose[dead], "overdose", "other").astype(object),
    }

    # --- charges
    ch_person = np.concatenate([pre_p, fu_p])
    ch_day = np.concatenate([idx[pre_p] + pre_d, idx[fu_p] + np.floor(fu_t)]).astype(np.int64)
    offence = offence_codes(r_events.random(ch_person.size), spec.crime.offence_shares)
    o = order_rows(number[ch_person], ch_day, offence)
    charges = {
        "person_id": ids[ch_person[o]],
        "charge_date": _dates(ch_day[o]),
        "offence": np.asarray(OFFENCES, dtype=object)[offence[o]],
    }
    pr_start = idx[stays.person] + stays.start
    o = order_rows(number[stays.person], pr_start)
    prisons = {
        "person_id": ids[stays.person[o]],
        "start_date": _dates(pr_start[o]),
        "end_date": _dates((idx[stays.person] + stays.recorded_end)[o]),
    }
    o = order_rows(number[ep_person], ep_start)
    episodes = {
        "person_id": ids[ep_person[o]],
        "start_date": _dates(ep_start[o]),
        "end_date": _dates(ep_end[o]),
        "medication": np.asarray(MEDICATIONS, dtype=object)[ep_med[o]],
    }
    tables = {
        "persons": persons,
        "treatment_episodes": episodes,
        "deaths": deaths,
        "charges": charges,
        "incarcerations": prisons,
    }
    tables = {name: _frame(name, columns) for name, columns in tables.items()}
    return tables, (truth_json(spec) if truth else None)


def write(
    tables: dict[str, pd.DataFrame],
    truth: dict | None,
    out: str | Path,
    *,
    spec: Scenario,
    format: Literal["csv", "parquet"] = "csv",
) -> Path:
    """Write an extract folder (tables, ``extract.yml``, ``truth.json``)."""
    return write_extract(tables, out, **_meta(spec), truth=truth, format=format)


def in_memory(tables: dict[str, pd.DataFrame], truth: dict | None, *, spec: Scenario) -> Extract:
    """The validated extract :func:`write` (Parquet) and ``read_extract`` give, without files.

    The tables as Arrow tables (:func:`analysis.data.writing.arrow_tables`) through the
    validation of :func:`analysis.data.extract.extract_from_arrow`.
    """
    extract = extract_from_arrow(arrow_tables(tables), **_meta(spec), truth=truth)
    assert isinstance(extract, Extract)
    return extract


def _meta(spec: Scenario) -> dict:
    """``extract.yml`` of a scenario's extract: its date and description."""
    return {
        "extract_date": pd.Timestamp(spec.extract_date),
        "description": f"synthetic scenario '{spec.name}', seed {spec.seed}: {spec.description}",
    }


def generate_extract(
    scenario: str | Path = "default",
    *,
    out: str | Path,
    seed: int | None = None,
    n_hat: int | None = None,
    n_ost: int | None = None,
    format: Literal["csv", "parquet"] = "csv",
    contract: Literal[1, 2] = 1,
) -> Path:
    """Generate a scenario and write it as an extract folder; returns the folder.

    Parameters
    ----------
    scenario : str or path-like
        Bundled scenario name (``default``, ``pilot``, ``null``, ``large``, ``ci``) or YAML path.
    out : path-like
        Folder to write.
    seed, n_hat, n_ost : int, optional
        Override the scenario's seed and sizes.
    format : {"csv", "parquet"}
    contract : {1, 2}
        Data contract version: 2 writes a history extract from a history scenario
        (:func:`synthetic.history_generate.generate_history_extract`; ``n_hat`` and
        ``n_ost`` do not apply).
    """
    if contract == 2:
        if n_hat is not None or n_ost is not None:
            raise ValueError("n_hat and n_ost belong to contract 1")
        from synthetic.history_generate import generate_history_extract

        return generate_history_extract(scenario, out=out, seed=seed, format=format)
    spec = load_scenario(scenario, seed=seed, n_hat=n_hat, n_ost=n_ost)
    tables, truth = generate(spec, np.random.default_rng(spec.seed))
    return write(tables, truth, out, spec=spec, format=format)
