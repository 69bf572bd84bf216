"""Write the fixed dataset ``coxph_data.csv`` that ``make_reference_coxph.R`` fits with ``survival::coxph``.

Run from the repository root::

    .venv/bin/python tests/reference/make_data_coxph.py
    Rscript tests/reference/make_reference_coxph.R

The data mimic a registry extract at coarse time resolution: follow-up is recorded in whole
30-day months, so event times are heavily tied (up to dozens of events on one time). There are
positive non-integer case weights, 150 clusters (e.g. treatment sites) and 3 strata (regions),
and 6 covariates (binary and continuous). ``time_exact`` holds the unrounded times, for the
untied case.

``coxph_halving.csv`` is a small dataset with a Cauchy-distributed covariate, on which the first
Newton steps overshoot, so the fit needs step halving.

``coxph_matched.csv`` is a matched sample for the proportional-hazards tests
(``make_reference_zph.R``): 250 matched sets of one treated and four controls, matching weights
exactly 1 and 0.25, a shared frailty and a shared censoring time within each set, times in whole
weeks (tied), and an inverse-probability (ATT) weight per person.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

N = 1500
SEED = 20261101
BETA = np.array([-0.4, 0.03, 0.25, 0.5, -0.3, 0.15])
COVARIATES = ["treatment", "age", "male", "injecting", "x_cont", "x_skew"]


def make_data(n: int = N, seed: int = SEED) -> pd.DataFrame:
    """Simulate the reference dataset (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 150, size=n)
    stratum = cluster % 3  # regions: clusters nested in strata
    X = np.column_stack(
        [
            rng.binomial(1, 0.4, n),
            np.round(rng.normal(38.0, 8.0, n)),
            rng.binomial(1, 0.7, n),
            rng.binomial(1, 0.5, n),
            rng.normal(0.0, 1.0, n),
            rng.gamma(2.0, 1.0, n),
        ]
    ).astype(float)
    frailty = rng.gamma(4.0, 0.25, 150)[cluster]
    base_rate = np.array([0.01, 0.02, 0.015])[stratum]
    eta = (X - X.mean(axis=0)) @ BETA
    t_event = rng.exponential(1.0 / (base_rate * frailty * np.exp(eta)))
    t_cens = rng.uniform(6.0, 60.0, n)
    months = np.minimum(t_event, t_cens)
    time = np.ceil(months).astype(int)  # whole months: heavy ties
    event = (t_event <= t_cens).astype(int)
    weight = np.round(rng.uniform(0.25, 3.0, n), 3)
    df = pd.DataFrame(X, columns=COVARIATES)
    df.insert(0, "time", time)
    df.insert(1, "event", event)
    df["time_exact"] = np.round(months, 4)  # essentially untied
    df["weight"] = weight
    df["cluster"] = cluster
    df["stratum"] = stratum
    return df


def make_halving_data(n: int = 200, seed: int = 15) -> pd.DataFrame:
    """Heavy-tailed covariate with a strong effect: Newton from zero overshoots."""
    rng = np.random.default_rng(seed)
    x = rng.standard_t(1, size=n)
    time = rng.exponential(np.exp(-2.0 * np.clip(x, -5.0, 5.0)))
    event = rng.binomial(1, 0.7, n)
    # Only the order of the times enters the partial likelihood. Ranks keep it while avoiding
    # R's timefix, which would merge the tiniest of these times (differences < 1.5e-8 * mean).
    rank = np.argsort(np.argsort(time)) + 1
    return pd.DataFrame({"time": rank, "event": event, "x": x})


def make_matched_data(n_sets: int = 250, k: int = 4, seed: int = 20261127) -> pd.DataFrame:
    """Matched 1:k sets with matching weights 1 and 1/k (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    size = k + 1
    n = n_sets * size
    match_set = np.repeat(np.arange(1, n_sets + 1), size)
    treatment = np.tile(np.r_[1, np.zeros(k, dtype=int)], n_sets)
    age = np.round(rng.normal(40.0, 9.0, n))
    female = rng.binomial(1, 0.3, n)
    region = rng.choice(np.array(["north", "south", "west"]), size=n, p=[0.2, 0.5, 0.3])
    frailty = np.repeat(rng.gamma(2.0, 0.5, n_sets), size)
    lin = np.log(0.7) * treatment + 0.02 * (age - 40.0) + 0.3 * female
    weeks = rng.exponential(1.0 / (0.004 * frailty * np.exp(lin)))
    censor = np.repeat(rng.uniform(26.0, 156.0, n_sets), size)
    time = np.ceil(np.minimum(weeks, censor)).astype(int)  # whole weeks: ties
    event = (weeks <= censor).astype(int)
    ps = 1.0 / (1.0 + np.exp(-(-1.4 + 0.05 * (age - 40.0) + 0.5 * female)))
    iptw = np.where(treatment == 1, 1.0, np.round(ps / (1.0 - ps), 6))
    return pd.DataFrame(
        {
            "time": time,
            "event": event,
            "treatment": treatment,
            "age": age,
            "female": female,
            "region": region,
            "match_set": match_set,
            "weight": np.where(treatment == 1, 1.0, 1.0 / k),
            "iptw_weight": iptw,
        }
    )


if __name__ == "__main__":
    here = Path(__file__).parent
    make_data().to_csv(here / "coxph_data.csv", index=False, float_format="%.10g")
    make_halving_data().to_csv(here / "coxph_halving.csv", index=False, float_format="%.17g")
    make_matched_data().to_csv(here / "coxph_matched.csv", index=False, float_format="%.10g")
    print(
        f"wrote {here / 'coxph_data.csv'}, {here / 'coxph_halving.csv'} and {here / 'coxph_matched.csv'}"
    )
