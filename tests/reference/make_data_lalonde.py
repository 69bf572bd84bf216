"""Lalonde's non-experimental comparison: NSW treated persons and CPS controls.

Run from the repository root to write the CSV read by ``make_reference_lalonde.R``::

    .venv/bin/python tests/reference/make_data_lalonde.py
    Rscript tests/reference/make_reference_lalonde.R

The data come from the PyPI package ``causaldata`` (0.1.4, in the ``test`` extra):

- ``causaldata.nsw_mixtape``: the Dehejia-Wahba subsample of the National Supported Work
  (NSW) experiment, 185 treated and 260 randomised controls (Lalonde 1986; Dehejia & Wahba
  1999). Only its 185 treated persons (``treat == 1``) are used here; the randomised
  controls give the experimental benchmark (difference in mean ``re78``: 1,794).
- ``causaldata.cps_mixtape``: the 15,992 CPS-1 comparison persons (all ``treat == 0``).

Rows: the NSW treated in the package's order, then the CPS controls in the package's order;
``unit`` numbers them 1..16,177. Columns: ``unit, treat, age, educ, black, hisp, marr,
nodegree, u74, u75, re74, re75, re78``, where ``u74`` and ``u75`` are 1 when the earnings of
that year are 0 (Dehejia & Wahba 1999's indicators of unemployment). Earnings are stored as float32 by the package; they are
widened to float64 exactly and written with 17 significant digits, so R and Python read the
same numbers. The CSV (about 1 MB) is not committed: tests build the same frame with
:func:`lalonde` and compare its hash with the one frozen in ``r_values_lalonde.json``.

References
----------
LaLonde RJ (1986). Evaluating the econometric evaluations of training programs with
experimental data. *Am Econ Rev* 76:604-620.
Dehejia RH, Wahba S (1999). Causal effects in nonexperimental studies: reevaluating the
evaluation of training programs. *J Am Stat Assoc* 94:1053-1062.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "COLUMNS",
    "COVARIATES",
    "COVARIATES_SHORT",
    "data_hash",
    "experimental_benchmark",
    "lalonde",
]

HERE = Path(__file__).resolve().parent
#: where the CSV for R is written (not committed)
CSV = HERE / "lalonde.csv"
COLUMNS = ("unit", "treat", "age", "educ", "black", "hisp", "marr", "nodegree", "u74", "u75")
EARNINGS = ("re74", "re75", "re78")
#: covariates of the reference propensity model (linear terms, logit link)
COVARIATES = ("age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75", "u74", "u75")
#: the same without the zero-earnings indicators (a second, smaller model)
COVARIATES_SHORT = COVARIATES[:8]


def _nsw() -> pd.DataFrame:
    from causaldata import nsw_mixtape

    return nsw_mixtape.load_pandas().data


def lalonde() -> pd.DataFrame:
    """NSW treated (185) and CPS-1 controls (15,992) as one frame with a ``unit`` id."""
    from causaldata import cps_mixtape

    nsw = _nsw()
    parts = [nsw[nsw["treat"] == 1], cps_mixtape.load_pandas().data]
    df = pd.concat(parts, ignore_index=True).drop(columns="data_id")
    df.insert(0, "unit", np.arange(1, len(df) + 1, dtype=np.int64))
    df["u74"] = (df["re74"] == 0).astype(np.int64)
    df["u75"] = (df["re75"] == 0).astype(np.int64)
    ints = [c for c in COLUMNS if c != "unit"]
    df[ints] = df[ints].astype(np.int64)
    df[list(EARNINGS)] = df[list(EARNINGS)].astype(np.float64)
    return df[[*COLUMNS, *EARNINGS]]


def experimental_benchmark() -> float:
    """Difference in mean 1978 earnings, NSW treated minus NSW randomised controls."""
    nsw = _nsw()
    re78 = nsw["re78"].astype(np.float64)
    return float(re78[nsw["treat"] == 1].mean() - re78[nsw["treat"] == 0].mean())


def to_csv_text(df: pd.DataFrame) -> str:
    """The CSV text (fixed formatting: ``\\n`` line ends, 17 significant digits)."""
    return df.to_csv(index=False, float_format="%.17g", lineterminator="\n")


def data_hash(df: pd.DataFrame) -> str:
    """SHA-256 of :func:`to_csv_text`, frozen in ``r_values_lalonde.json``."""
    return hashlib.sha256(to_csv_text(df).encode()).hexdigest()


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else CSV
    frame = lalonde()
    out.write_text(to_csv_text(frame))
    print(f"wrote {out}: {len(frame)} rows, sha256 {data_hash(frame)}")
    print(f"experimental benchmark: {experimental_benchmark():.6f}")
