"""A hand-built history extract in which HAT does nothing and uptake is frequent.

Every person enters OST on 2020-01-01 and stays until the spell ends or death (constant
hazards); a place in HAT is offered on a random day in 2022-2025 and taken by most of those
still alive and in OST. Nothing depends on anything, so every intention-to-treat effect is 1.
Used by ``tests/test_prevalent_user.py`` and ``benchmarks/prevalent_null.py``: where uptake
is frequent, a comparator rule that looks into the future (never starting HAT) is biased.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

START = np.datetime64("2020-01-01", "D")  # everyone enters OST on this day
EXTRACT = np.datetime64("2026-12-31", "D")
OFFER_FROM, OFFER_DAYS = np.datetime64("2022-01-01", "D"), 4 * 365


def _dates(days: np.ndarray) -> pd.Series:
    """ISO strings of day numbers; empty where the day is past the extract date."""
    d = pd.Series(days.astype("datetime64[D]").astype(str))
    return d.where(days <= EXTRACT.astype(np.int64), "")


def write_null_history(
    folder: Path,
    rng: np.random.Generator,
    *,
    n: int = 4000,
    death_per_year: float = 0.2,
    leave_per_year: float = 0.2,
    take_up: float = 0.9,
) -> Path:
    """Write a history extract in which HAT has no effect and uptake is frequent.

    Every person enters OST (methadone) on 2020-01-01 in region south-east and stays until
    the end of the spell (exponential, ``leave_per_year``) or death (exponential,
    ``death_per_year``). A place in HAT is offered on a day uniform in 2022-2025; a person
    alive and still in OST takes it with probability ``take_up``, switching the next day
    (the spell goes on in HAT, ending when it would have ended anyway). Charges are a
    Poisson process (1 a year) from 2018 until death. Status forms every 1 January with
    answers drawn once per person.
    """
    folder.mkdir(parents=True)
    start = START.astype(np.int64)
    extract = EXTRACT.astype(np.int64)
    ids = np.array([f"N{i:05d}" for i in range(n)])
    death = start + np.ceil(rng.exponential(365.25 / death_per_year, n)).astype(np.int64)
    leave = start + np.ceil(rng.exponential(365.25 / leave_per_year, n)).astype(np.int64)
    offer = OFFER_FROM.astype(np.int64) + rng.integers(0, OFFER_DAYS, n)
    takes = (offer < np.minimum(death, leave)) & (rng.random(n) < take_up)
    # the spell ends when it ends (death in an open episode leaves the episode open)
    spell_end = np.where(leave < death, leave, extract + 1)

    episodes = pd.concat(
        [
            pd.DataFrame({
                "person_id": ids,
                "start_date": _dates(np.full(n, start)),
                "end_date": _dates(np.where(takes, offer - 1, spell_end)),
                "medication": "methadone",
            }),
            pd.DataFrame({
                "person_id": ids[takes],
                "start_date": _dates(offer[takes]),
                "end_date": _dates(spell_end[takes]),
                "medication": "diacetylmorphine",
            }),
        ],
        ignore_index=True,
    )  # fmt: skip
    persons = pd.DataFrame({
        "person_id": ids,
        "sex": np.where(rng.random(n) < 0.3, "F", "M"),
        "birth_year": rng.integers(1965, 1996, n),
        "region": "south-east",
        "emigration_date": "",
    })  # fmt: skip
    dead = death <= extract
    deaths = pd.DataFrame({
        "person_id": ids[dead],
        "death_date": _dates(death[dead]),
        "cause": np.where(rng.random(dead.sum()) < 0.4, "overdose", "other"),
    })  # fmt: skip
    years = np.arange(2020, 2027)
    form_day = np.array([f"{y}-01-01" for y in years], dtype="datetime64[D]").astype(np.int64)
    on = (form_day[None, :] < np.minimum(death, spell_end)[:, None]).ravel()
    traits = {c: (rng.random(n) < p).astype(int) for c, p in
              (("injecting", 0.3), ("psychiatric_dx", 0.3), ("homeless", 0.1),
               ("benzodiazepine_use", 0.4))}  # fmt: skip
    use0 = rng.uniform(5, 25, n)
    assessments = pd.DataFrame({
        "person_id": np.repeat(ids, years.size),
        "assessment_date": _dates(np.tile(form_day, n)),
        "years_opioid_use": np.round(np.repeat(use0, years.size) + np.tile(years - 2020, n), 1),
        **{c: np.repeat(v, years.size) for c, v in traits.items()},
    })[on]  # fmt: skip
    # charges: Poisson (1 a year) from 2018-01-01 to death or the extract date
    c0 = np.datetime64("2018-01-01", "D").astype(np.int64)
    span = np.minimum(death, extract + 1) - c0
    k = rng.poisson(span / 365.25)
    who = np.repeat(np.arange(n), k)
    day = c0 + np.floor(rng.random(who.size) * span[who]).astype(np.int64)
    charges = pd.DataFrame({
        "person_id": ids[who],
        "charge_date": _dates(day),
        "offence": rng.choice(["property", "drug", "violence", "other"], who.size),
    })  # fmt: skip
    empty = {
        "incarcerations": ["person_id", "start_date", "end_date"],
        "overdoses": ["person_id", "overdose_date"],
    }
    for name, table in (("persons", persons), ("treatment_episodes", episodes),
                        ("deaths", deaths), ("assessments", assessments),
                        ("charges", charges)):  # fmt: skip
        table.to_csv(folder / f"{name}.csv", index=False)
    for name, columns in empty.items():
        pd.DataFrame(columns=columns).to_csv(folder / f"{name}.csv", index=False)
    (folder / "extract.yml").write_text(
        "contract_version: 2\nextract_date: 2026-12-31\nhistory_start: 2015-01-01\n"
        "description: no effect of HAT, frequent uptake (tests/test_prevalent_user.py)\n"
    )
    return folder


__all__ = ["write_null_history"]
