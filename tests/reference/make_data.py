"""Write the fixed input data behind the frozen R reference values.

Run once from the repository root::

    .venv/bin/python tests/reference/make_data.py
    Rscript tests/reference/make_reference.R

The first writes ``reference_data.csv`` (a matched-looking sample: matched sets of one
HAT person and one to four OST comparators, weights, survival times with ties, zero
durations, competing events, negative-binomial counts with exposure, baseline counts)
and ``rossi.csv`` (the Rossi recidivism data bundled with lifelines); the second fits
the R models and writes ``r_values.json``. Tests read the CSV and JSON files and never
run R or this script. Re-running both reproduces the committed files byte for byte
(fixed seed, fixed formatting).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20240611
N_SETS = 140
HERE = Path(__file__).resolve().parent


def make_reference_data(seed: int = SEED, n_sets: int = N_SETS) -> pd.DataFrame:
    """Simulate the reference sample (about 600 rows)."""
    rng = np.random.default_rng(seed)
    k = rng.choice([1, 2, 3, 4], size=n_sets, p=[0.1, 0.15, 0.25, 0.5])
    size = k + 1
    match_set = np.repeat(np.arange(1, n_sets + 1), size)
    first = np.concatenate([[0], np.cumsum(size)[:-1]])
    treatment = np.zeros(size.sum(), dtype=int)
    treatment[first] = 1
    n = len(treatment)
    k_person = np.repeat(k, size)
    # ATT-style matching weights (1 for HAT, 1/k for OST) perturbed to be non-trivial
    weight = np.where(treatment == 1, 1.0, 1.0 / k_person) * np.exp(rng.normal(0, 0.3, n))
    weight = np.round(weight, 4)
    age = np.round(rng.normal(45, 8, n), 1)
    female = rng.binomial(1, 0.3, n)
    # shared frailty within matched sets, so that clustering matters
    frailty = np.repeat(rng.gamma(1 / 0.3, 0.3, n_sets), size)
    lin = np.log(0.6) * treatment + 0.02 * (age - 45) + 0.3 * female
    latent = rng.exponential(1 / (0.002 * np.exp(lin) * frailty))
    censor = rng.uniform(0, 900, n)
    time = np.ceil(np.minimum(latent, censor)).astype(int)  # whole days: many ties
    event = (latent <= censor).astype(int)
    zero = rng.choice(n, size=6, replace=False)  # durations of 0 (events and censored)
    time[zero] = 0
    event[zero[:4]] = 1
    event[zero[4:]] = 0
    cause = np.where(rng.uniform(size=n) < 0.7, 1, 2)
    event_type = event * cause
    exposure = np.round(rng.uniform(0.2, 3.0, n), 3)
    theta = 1.5
    mu = exposure * 1.2 * np.exp(np.log(0.55) * treatment + 0.01 * (age - 45)) * frailty
    count = rng.poisson(mu * rng.gamma(theta, 1 / theta, n))
    exposure_before = np.round(
        np.where(rng.uniform(size=n) < 0.8, 2.0, rng.uniform(0.5, 2.0, n)), 3
    )
    person_frailty = rng.gamma(2.0, 0.5, n)
    count_before = rng.poisson(exposure_before * 1.5 * person_frailty)
    count_after = rng.poisson(
        exposure * 1.5 * person_frailty * np.exp(np.log(0.5) * treatment + np.log(0.8))
    )
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "match_set": match_set,
            "treatment": treatment,
            "weight": weight,
            "age": age,
            "female": female,
            "time": time,
            "event": event,
            "event_type": event_type,
            "count": count,
            "exposure": exposure,
            "count_before": count_before,
            "exposure_before": exposure_before,
            "count_after": count_after,
        }
    )


def main() -> None:
    """Write ``reference_data.csv`` and ``rossi.csv`` beside this script."""
    make_reference_data().to_csv(HERE / "reference_data.csv", index=False, lineterminator="\n")
    from lifelines.datasets import load_rossi

    load_rossi().to_csv(HERE / "rossi.csv", index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
