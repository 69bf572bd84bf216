"""Generate a history extract (data contract version 2) with its truth.

``generate_history(spec, rng)`` simulates the national population
(:mod:`synthetic.history_sim`) and returns the contract's tables and ``truth.json``'s
contents (:mod:`synthetic.history_truth`); ``write_history`` writes them;
``generate_history_extract`` does both for a named scenario.

Folders are written by :func:`analysis.data.extract.write_extract` with ``history_start``
(a version-2 extract): CSV (UTF-8, header, ISO dates, empty cell = missing, booleans 0/1,
integers without decimals) or Parquet (dates as ``date32``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.data.contract import (
    HISTORY_COLUMNS,
    HISTORY_DATE_COLUMNS,
    HISTORY_VERSION,
    MEDICATIONS,
    OFFENCES,
    REGIONS,
)
from analysis.data.extract import HistoryExtract, extract_from_arrow, write_extract
from analysis.data.writing import arrow_tables
from synthetic.history_sim import NEVER, Simulation, simulate_population
from synthetic.history_spec import HistoryScenario, load_history_scenario
from synthetic.population import EPOCH, day_number
from synthetic.tables import order_rows

__all__ = [
    "COLUMNS_V2",
    "CONTRACT_VERSION",
    "DATE_COLUMNS_V2",
    "generate_history",
    "generate_history_extract",
    "history_in_memory",
    "history_tables",
    "write_history",
]

CONTRACT_VERSION = HISTORY_VERSION

#: version-2 tables and their columns, in contract order (the contract's own)
COLUMNS_V2: dict[str, tuple[str, ...]] = HISTORY_COLUMNS
DATE_COLUMNS_V2: dict[str, tuple[str, ...]] = HISTORY_DATE_COLUMNS
_BOOLEANS = ("injecting", "psychiatric_dx", "homeless", "benzodiazepine_use")


def _dates(days: np.ndarray) -> pd.Series:
    """Day numbers (NEVER = missing) as a datetime64[s] series."""
    days = np.asarray(days, dtype=np.int64)
    bad = days >= NEVER
    out = (EPOCH + np.where(bad, 0, days)).astype("datetime64[s]")
    out[bad] = np.datetime64("NaT")
    return pd.Series(out)


def history_tables(sim: Simulation, spec: HistoryScenario, rng: np.random.Generator) -> dict:
    """The contract's version-2 tables from a simulated population.

    A person is in the extract when one of its treatment episodes reaches
    ``history_start`` or later (the OST registry); its records are those dated from
    ``history_start`` to the extract date, except episodes and prison stays that were
    ongoing on ``history_start`` (kept with their real start dates, as a registry knows
    them).
    """
    # a flat sequence of the seven tables over the same log and identifiers: one piece
    h0, x = day_number(spec.history_start), day_number(spec.extract_date)
    c = sim.s.cols
    log = sim.log
    ep = log.arrays("episodes", ("pid", "start", "end", "med"))
    keep = (ep["end"] >= h0) & (ep["start"] <= x)
    ep = {k: v[keep] for k, v in ep.items()}
    n_all = int(c["pid"].max()) + 1 if len(c["pid"]) else 0
    present = np.zeros(n_all, dtype=bool)
    present[ep["pid"]] = True
    # person number -> row of the state
    row = np.full(n_all, -1, dtype=np.int64)
    row[c["pid"]] = np.arange(len(c["pid"]))
    pids = np.flatnonzero(present)
    # identifiers in random order, so that the number says nothing
    width = max(6, len(str(pids.size)))
    number = np.full(n_all, -1, dtype=np.int64)
    number[pids[rng.permutation(pids.size)]] = np.arange(1, pids.size + 1)
    ids = np.full(n_all, "", dtype=object)
    ids[pids] = np.char.add("H", np.char.zfill(number[pids].astype(np.str_), width)).astype(object)

    deaths = log.arrays("deaths", ("pid", "day", "overdose"))
    emig = log.arrays("emigrations", ("pid", "day"))
    stop = np.full(n_all, NEVER, dtype=np.int64)
    stop[deaths["pid"]] = deaths["day"]
    stop[emig["pid"]] = emig["day"]
    emig_day = np.full(n_all, NEVER, dtype=np.int64)
    emig_day[emig["pid"]] = emig["day"]

    by = pids[np.argsort(number[pids], kind="stable")]
    r = row[by]
    birth = (EPOCH + c["birth_day"][r]).astype("datetime64[Y]").astype(np.int64) + 1970
    persons = pd.DataFrame(
        {
            "person_id": ids[by],
            "sex": np.where(c["female"][r], "F", "M").astype(object),
            "birth_year": birth,
            "region": np.asarray(REGIONS, dtype=object)[c["region"][r]],
            "emigration_date": _dates(emig_day[by]),
        }
    )

    o = order_rows(number[ep["pid"]], ep["start"])
    end = ep["end"][o]
    episodes = pd.DataFrame(
        {
            "person_id": ids[ep["pid"][o]],
            "start_date": _dates(ep["start"][o]),
            "end_date": _dates(np.where(end > x, NEVER, end)),
            "medication": np.asarray(MEDICATIONS, dtype=object)[ep["med"][o]],
        }
    )

    m = present[deaths["pid"]] & (deaths["day"] >= h0)
    o = np.flatnonzero(m)[order_rows(number[deaths["pid"][m]], deaths["day"][m])]
    death_table = pd.DataFrame(
        {
            "person_id": ids[deaths["pid"][o]],
            "death_date": _dates(deaths["day"][o]),
            "cause": np.where(deaths["overdose"][o], "overdose", "other").astype(object),
        }
    )

    def dated(table: str, cols: tuple[str, ...]) -> tuple[dict, np.ndarray]:
        a = log.arrays(table, cols)
        m = present[a["pid"]] & (a["day"] >= h0) & (a["day"] <= x)
        o = np.flatnonzero(m)
        return a, o[order_rows(number[a["pid"][o]], a["day"][o])]

    ch, o = dated("charges", ("pid", "day", "offence"))
    # order within a day by offence, so that the file does not depend on drawing order
    o = o[np.lexsort((ch["offence"][o], ch["day"][o], number[ch["pid"][o]]))]
    charges = pd.DataFrame(
        {
            "person_id": ids[ch["pid"][o]],
            "charge_date": _dates(ch["day"][o]),
            "offence": np.asarray(OFFENCES, dtype=object)[ch["offence"][o]],
        }
    )
    od, o = dated("overdoses", ("pid", "day"))
    overdoses = pd.DataFrame(
        {"person_id": ids[od["pid"][o]], "overdose_date": _dates(od["day"][o])}
    ).drop_duplicates()
    fm, o = dated("forms", ("pid", "day", "years_opioid_use", *_BOOLEANS))
    assessments = pd.DataFrame(
        {
            "person_id": ids[fm["pid"][o]],
            "assessment_date": _dates(fm["day"][o]),
            "years_opioid_use": fm["years_opioid_use"][o],
            **{b: fm[b][o] for b in _BOOLEANS},
        }
    )

    pr = log.arrays("prison", ("pid", "start", "end"))
    pr_end = np.minimum(pr["end"], stop[pr["pid"]])
    m = present[pr["pid"]] & (pr_end >= h0) & (pr["start"] <= x) & (pr["start"] < stop[pr["pid"]])
    o = np.flatnonzero(m)
    o = o[order_rows(number[pr["pid"][o]], pr["start"][o])]
    prisons = pd.DataFrame(
        {
            "person_id": ids[pr["pid"][o]],
            "start_date": _dates(pr["start"][o]),
            "end_date": _dates(np.where(pr_end[o] > x, NEVER, pr_end[o])),
        }
    )
    tables = {
        "persons": persons,
        "treatment_episodes": episodes,
        "deaths": death_table,
        "charges": charges,
        "incarcerations": prisons,
        "assessments": assessments,
        "overdoses": overdoses,
    }
    return {name: df.reset_index(drop=True) for name, df in tables.items()}


def _fill_up(
    tables: dict[str, pd.DataFrame], spec: HistoryScenario, rng: np.random.Generator
) -> dict[str, pd.DataFrame]:
    """Persons never in OST up to ``population.extract_persons`` (a national linkage)."""
    total = spec.population.extract_persons
    n = 0 if total is None else total - len(tables["persons"])
    if n <= 0:
        return tables
    from synthetic.history_outside import outside_tables

    (r_out,) = rng.spawn(1)  # a third stream: the OST registry's draws are unchanged
    more = outside_tables(
        n,
        history_start=np.datetime64(spec.history_start),
        extract_date=np.datetime64(spec.extract_date),
        rng=r_out,
    )
    out = dict(tables)
    for name, df in more.items():
        out[name] = pd.concat([tables[name], df], ignore_index=True)
    return out


def generate_history(
    spec: HistoryScenario, rng: np.random.Generator, *, truth: bool = True
) -> tuple[dict[str, pd.DataFrame], dict | None]:
    """Simulate a history scenario: the version-2 tables and ``truth.json``'s contents.

    Parameters
    ----------
    spec : HistoryScenario
    rng : numpy.random.Generator
        Draws the persons (and their random-number keys) and the identifiers; the truth
        uses its own fixed seed (``spec.truth.seed``), so it does not depend on this.
    truth : bool
        Compute the truth (``False`` returns ``None`` in its place).
    """
    r_pop, r_ids = rng.spawn(2)
    sim = simulate_population(spec, r_pop, scale=spec.scale)
    tables = history_tables(sim, spec, r_ids)
    tables = _fill_up(tables, spec, rng)
    if not truth:
        return tables, None
    from synthetic.history_truth import history_truth_json

    return tables, history_truth_json(spec)


# --------------------------------------------------------------------------- writing
def write_history(
    tables: dict[str, pd.DataFrame],
    truth: dict[str, Any] | None,
    out: str | Path,
    *,
    spec: HistoryScenario,
    format: Literal["csv", "parquet"] = "csv",
) -> Path:
    """Write a version-2 extract folder: tables, ``extract.yml`` and ``truth.json``."""
    return write_extract(tables, out, **_history_meta(spec), truth=truth, format=format)


def history_in_memory(
    tables: dict[str, pd.DataFrame], truth: dict[str, Any] | None, *, spec: HistoryScenario
) -> HistoryExtract:
    """The validated extract :func:`write_history` (Parquet) and ``read_extract`` give,
    without files (:func:`analysis.data.extract.extract_from_arrow`)."""
    extract = extract_from_arrow(
        arrow_tables(tables, history=True), **_history_meta(spec), truth=truth
    )
    assert isinstance(extract, HistoryExtract)
    return extract


def _history_meta(spec: HistoryScenario) -> dict[str, Any]:
    """``extract.yml`` of a history scenario's extract: dates and description."""
    return {
        "extract_date": pd.Timestamp(spec.extract_date),
        "description": f"synthetic history scenario '{spec.name}', seed {spec.seed}: "
        f"{spec.description}",
        "history_start": pd.Timestamp(spec.history_start),
    }


def generate_history_extract(
    scenario: str | Path = "default",
    *,
    out: str | Path,
    seed: int | None = None,
    format: Literal["csv", "parquet"] = "csv",
    truth: bool = True,
) -> Path:
    """Generate a history scenario and write it as a version-2 extract folder.

    Parameters
    ----------
    scenario : str or path-like
        Bundled history scenario (``default``, ``ci``) or a YAML path.
    out : path-like
        Folder to write.
    seed : int, optional
        Override of the scenario's seed.
    format : {"csv", "parquet"}
    truth : bool
        Write ``truth.json`` (computing it takes a while for the default scenario).
    """
    spec = load_history_scenario(scenario, seed=seed)
    tables, truth_ = generate_history(spec, np.random.default_rng(spec.seed), truth=truth)
    return write_history(tables, truth_, out, spec=spec, format=format)
