"""Simulated data for the stacked IPTW variance reference (``data.csv``).

Run once from the repository root::

    .venv/bin/python tests/reference/iptw_stacked/make_data.py

Confounded treatment (logistic in ``x1, x2, x3``) and outcomes whose dependence on the
confounders differs between the arms (treated risk rises with ``x1, x2``, control risk falls),
the situation in which the ATT's weights-known variance is too small (Reifeis & Hudgens
2022). Event times in whole weeks (ties), a Cox outcome (``time``, ``event``) and a
negative-binomial count (``y``) with person-time ``expo``. ``numpy.random.default_rng``,
fixed seed: byte-for-byte reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent

#: treatment model (intercept, x1, x2, x3), outcome log-rate slopes by arm, log effect
GAMMA = (-1.5, 1.0, 0.8, -0.3)
SLOPES_CONTROL = (-1.0, -0.8, 0.3)
SLOPES_TREATED = (1.0, 0.8, 0.3)
LOG_EFFECT = -0.4


def simulate(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """One dataset of ``n`` persons (also used by the coverage simulation in the tests)."""
    x = np.column_stack(
        [rng.normal(size=n), rng.binomial(1, 0.4, n).astype(float), rng.normal(size=n)]
    )
    lp = GAMMA[0] + x @ np.asarray(GAMMA[1:])
    a = rng.binomial(1, 1 / (1 + np.exp(-lp)))
    return pd.DataFrame(
        {"person_id": np.arange(n), "treatment": a, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2]}
    ).assign(**outcomes(x, a, rng))


def outcomes(x: np.ndarray, a: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weekly event times (administrative censoring at 5 years) and NB counts given ``a``."""
    n = len(a)
    slopes = np.where(a[:, None] == 1, SLOPES_TREATED, SLOPES_CONTROL)
    lin = LOG_EFFECT * a + np.sum(x * slopes, axis=1)
    t = rng.exponential(1 / (0.15 * np.exp(lin)))
    c = np.minimum(rng.uniform(1, 6, n), 5)
    expo = rng.uniform(0.5, 3, n)
    mu = expo * np.exp(-0.5 + lin)
    return {
        "time": np.ceil(np.minimum(t, c) * 52) / 52,
        "event": (t <= c).astype(int),
        "y": rng.negative_binomial(2, 2 / (2 + mu)),
        "expo": expo.round(4),
    }


if __name__ == "__main__":
    simulate(2000, np.random.default_rng(20221101)).to_csv(
        HERE / "data.csv", index=False, float_format="%.10g"
    )
