"""Nonparametric bootstrap of the IPTW estimates on ``data.csv`` (writes ``bootstrap.json``).

Run once from the repository root (about 5 minutes on 2 cores)::

    .venv/bin/python tests/reference/iptw_stacked/bootstrap.py

Each replicate resamples persons with replacement and redoes everything: the propensity
model (:func:`analysis.design.propensity.fit_propensity`), the ATT weights with their normalisation
(and trimming cap), the weighted Cox model and the weighted negative-binomial model. The
standard deviation of the replicates is the reference for the stacked sandwich; its Monte
Carlo error is about ``sd / sqrt(2 (B - 1))``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.design.propensity import fit_propensity
from analysis.design.weighting import att_weights
from analysis.outcomes.cox import cox_hazard_ratio
from analysis.outcomes.negative_binomial import negative_binomial_irr

HERE = Path(__file__).parent
COVARIATES = ("x1", "x2", "x3")
REPLICATES = 2000
SEED = 20221102
TRIMS = {"untrimmed": None, "trim95": 0.95}


def iptw_estimates(df: pd.DataFrame, trim: float | None) -> tuple[float, float]:
    """Log HR and log IRR of the IPTW (ATT) design, everything refitted."""
    ps = fit_propensity(df, treatment="treatment", covariates=COVARIATES)
    w = att_weights(df, treatment="treatment", score=ps.score, trim=trim)
    d = df.assign(weight=w.data["weight"].to_numpy())
    common = {"treatment": "treatment", "weights": "weight", "cluster": "person_id"}
    hr = cox_hazard_ratio(d, duration="time", event="event", outcome="o", method="m", **common)
    irr = negative_binomial_irr(d, events="y", exposure="expo", outcome="o", method="m", **common)
    return math.log(hr.estimate), math.log(irr.estimate)


def main() -> None:
    df = pd.read_csv(HERE / "data.csv")
    rng = np.random.default_rng(SEED)
    n = len(df)
    reps = {name: [] for name in TRIMS}
    for _ in range(REPLICATES):
        idx = rng.integers(0, n, n)
        boot = df.iloc[idx].reset_index(drop=True).assign(person_id=np.arange(n))
        for name, trim in TRIMS.items():
            reps[name].append(iptw_estimates(boot, trim))
    out = {
        "replicates": REPLICATES,
        "seed": SEED,
        "mc_relative_se": 1 / math.sqrt(2 * (REPLICATES - 1)),
    }
    for name, values in reps.items():
        arr = np.asarray(values)
        sd = arr.std(axis=0, ddof=1)
        out[name] = {"sd_log_hr": float(sd[0]), "sd_log_irr": float(sd[1])}
    (HERE / "bootstrap.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
