"""Write the fixed counting-process dataset ``counting_data.csv`` that
``make_reference_counting.R`` fits with ``survival::coxph(Surv(start, stop, event) ~ ...)`` and
``survival::survfit``.

Run from the repository root::

    .venv/bin/python tests/reference/make_data_counting.py
    Rscript tests/reference/make_reference_counting.R

The data mimic the per-protocol analysis of a target trial: 300 persons, each followed in
intervals ``(start, stop]`` of at most 3 months on a common calendar of whole months (so
event times are heavily tied, and many intervals start exactly at another row's event
time, where they are not yet at risk). About a third enter late (delayed entry). Every
interval has its own weight (a time-varying inverse probability of censoring weight), and a
time-varying covariate ``z``; ``x`` (treatment) and ``stratum`` are fixed per person. Only a
person's last interval can end in an event; ``etype`` is 0 (censored), 1 (the event of
interest) or 2 (a competing event) for the Aalen-Johansen curves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

N_PERSONS = 300
SEED = 20261215
STEP = 3  # months between the interval boundaries


def make_data(n: int = N_PERSONS, seed: int = SEED) -> pd.DataFrame:
    """Simulate the reference dataset (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    x = rng.binomial(1, 0.4, n)
    stratum = rng.binomial(1, 0.5, n)
    entry = np.where(rng.uniform(size=n) < 0.35, rng.integers(1, 13, n), 0)
    z0 = rng.normal(0.0, 1.0, n)
    rate = 0.025 * np.exp(np.log(0.6) * x + 0.3 * z0 + 0.4 * stratum)
    t_event = entry + rng.exponential(1.0 / rate)
    t_cens = entry + rng.uniform(4.0, 48.0, n)
    end = np.ceil(np.minimum(t_event, t_cens)).astype(int)  # whole months: ties
    end = np.maximum(end, entry + 1)
    died = t_event <= t_cens

    # boundaries: the entry, every multiple of STEP after it, and the end
    first_cut = (entry // STEP + 1) * STEP
    n_cuts = np.maximum(0, (end - 1 - first_cut) // STEP + 1)  # cuts strictly before end
    n_int = n_cuts + 1
    person = np.repeat(np.arange(n), n_int)
    k = np.arange(person.size) - np.repeat(np.cumsum(n_int) - n_int, n_int)
    start = np.where(k == 0, entry[person], first_cut[person] + (k - 1) * STEP)
    stop = np.minimum(first_cut[person] + k * STEP, end[person])
    last = k == n_int[person] - 1
    event = (last & died[person]).astype(int)
    etype = np.where(event == 1, 1 + rng.binomial(1, 0.3, person.size), 0)
    z = np.round(z0[person] + 0.15 * k + rng.normal(0.0, 0.5, person.size), 3)
    w = np.round(rng.uniform(0.4, 2.5, person.size) * np.where(x[person] == 1, 0.5, 1.0), 3)
    return pd.DataFrame(
        {
            "id": person + 1,
            "start": start,
            "stop": stop,
            "event": event,
            "etype": etype,
            "x": x[person],
            "z": z,
            "w": w,
            "stratum": stratum[person],
        }
    )


if __name__ == "__main__":
    here = Path(__file__).parent
    df = make_data()
    assert (df["start"] < df["stop"]).all()
    df.to_csv(here / "counting_data.csv", index=False, float_format="%.10g")
    print(
        f"wrote {here / 'counting_data.csv'}: {len(df)} intervals of {df['id'].nunique()} persons"
    )
