"""Persons of a national history extract who were never in OST in the covered period.

A national registry linkage holds more persons than the OST registry: whoever the linkage
draws (for example everyone with a drug-related charge, a prison stay or a non-fatal
overdose) whether or not they were ever in treatment. The data contract (version 2) admits
them: a person needs no treatment episode. Such persons never pass the trial's rule 4 (in
OST in the days before the date), so they are never candidates; what they change is the
size of every per-person step (reading, validating, sorting the histories, the risk sets'
search for the persons in OST on a date).

:func:`outside_tables` draws them vectorised from a seeded Generator: sex, birth year
(ages 18-70 at the extract date), region (population shares), a few charges, deaths and
emigrations over the covered period. No episodes, status forms, prison stays or
overdoses (they would not change who is a candidate). Identifiers ``N`` + a number,
distinct from the OST registry's ``H`` numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.data.contract import OFFENCES, REGIONS

__all__ = ["CHARGES_PER_YEAR", "DEATHS_PER_1000PY", "outside_tables"]

#: charges per person-year of the linkage population (fewer than OST patients)
CHARGES_PER_YEAR = 0.3
#: deaths and emigrations per 1,000 person-years
DEATHS_PER_1000PY = 8.0
EMIGRATIONS_PER_1000PY = 2.0
#: region of residence (population shares of the four regional health authorities)
_REGION_SHARES = {"south-east": 0.56, "west": 0.21, "central": 0.14, "north": 0.09}


def outside_tables(
    n: int, *, history_start: np.datetime64, extract_date: np.datetime64, rng: np.random.Generator
) -> dict[str, pd.DataFrame]:
    """``persons``, ``charges`` and ``deaths`` of ``n`` persons never in OST.

    Parameters
    ----------
    n : int
        Persons to draw.
    history_start, extract_date : numpy.datetime64
        The covered period (days).
    rng : numpy.random.Generator

    Returns
    -------
    dict of str to DataFrame
        The three tables in the contract's columns (``emigration_date`` in ``persons``).
    """
    h0 = np.datetime64(history_start, "D").astype(np.int64)
    x = np.datetime64(extract_date, "D").astype(np.int64)
    years = (x - h0) / 365.25
    width = max(7, len(str(n)))
    ids = np.char.add("N", np.char.zfill(np.arange(1, n + 1).astype(np.str_), width))
    ids = ids.astype(object)
    x_year = int(np.datetime64(extract_date, "Y").astype(np.int64) + 1970)
    region_p = np.array([_REGION_SHARES[r] for r in REGIONS])
    # time to death or emigration (exponential); the first ends follow-up
    t_death = h0 + rng.exponential(365.25e3 / DEATHS_PER_1000PY, n).astype(np.int64)
    t_emig = h0 + rng.exponential(365.25e3 / EMIGRATIONS_PER_1000PY, n).astype(np.int64)
    died = (t_death <= x) & (t_death < t_emig)
    emigrated = (t_emig <= x) & ~died
    end = np.where(died, t_death, np.where(emigrated, t_emig, x))
    emigration = np.where(emigrated, t_emig, 0).astype("datetime64[D]").astype("datetime64[s]")
    emigration[~emigrated] = np.datetime64("NaT")
    persons = pd.DataFrame(
        {
            "person_id": ids,
            "sex": np.where(rng.random(n) < 0.35, "F", "M").astype(object),
            "birth_year": x_year - rng.integers(18, 71, n),
            "region": np.asarray(REGIONS, dtype=object)[rng.choice(len(REGIONS), n, p=region_p)],
            "emigration_date": emigration,
        }
    )
    d = np.flatnonzero(died)
    deaths = pd.DataFrame(
        {
            "person_id": ids[d],
            "death_date": t_death[d].astype("datetime64[D]").astype("datetime64[s]"),
            "cause": np.where(rng.random(len(d)) < 0.1, "overdose", "other").astype(object),
        }
    )
    k = rng.poisson(CHARGES_PER_YEAR * years * (end - h0) / max(x - h0, 1))
    who = np.repeat(np.arange(n), k)
    day = h0 + (rng.random(len(who)) * (end[who] - h0 + 1)).astype(np.int64)
    order = np.lexsort((day, who))
    who, day = who[order], day[order]
    offence = rng.choice(len(OFFENCES), len(who), p=[0.3, 0.45, 0.1, 0.15])
    order = np.lexsort((offence, day, who))
    charges = pd.DataFrame(
        {
            "person_id": ids[who[order]],
            "charge_date": day[order].astype("datetime64[D]").astype("datetime64[s]"),
            "offence": np.asarray(OFFENCES, dtype=object)[offence[order]],
        }
    )
    return {"persons": persons, "charges": charges, "deaths": deaths}
