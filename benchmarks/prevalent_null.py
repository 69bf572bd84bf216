"""Risk-set matching against the prevalent-user comparison where HAT does nothing.

``python -m benchmarks.prevalent_null [--replicates R] [--first-seed S]`` (from the
repository root) writes R hand-built history extracts
(:func:`tests.null_history.write_null_history`: no effect of HAT, no confounding, frequent
uptake), runs the study on each (intention to treat; no multiple imputation, no matching or
grace-period variants) and prints, for the primary design (``matched``), the prevalent-user
and the naive comparisons, the bias of the log hazard or rate ratio against the truth 0,
the empirical SD, the model SE (root mean square) and the coverage of the 95% interval,
each with its Monte Carlo SE (Morris, White & Crowther 2019), and the share of the matched
comparator rows whose person starts HAT later.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.data.extract import read_extract
from evaluation.config import load_config
from evaluation.pipeline import run_study
from evaluation.simulation_summary import performance
from tests.null_history import write_null_history

WANTED = {
    ("mortality", "HR"): "cox",
    ("retention", "HR"): "cox",
    ("crime", "IRR"): "rate",
}


def one(seed: int, folder: Path) -> tuple[list[dict], float]:
    """Estimates (log scale) of one replicate and its share of later initiators."""
    write_null_history(folder, np.random.default_rng(seed))
    config = load_config(None, seed=seed, imputation={"sensitivity": False})
    trial = {"contrasts": ["itt"], "sensitivity": {"matching": [], "grace_period_days": None}}
    config = config.model_validate({**config.to_dict(), "target_trial": trial})
    res = run_study(read_extract(folder), config).results
    rows = []
    for e in res["estimates"]:
        model = WANTED.get((e["outcome"], e["measure"]))
        design = e["method"].partition("_")[2]
        if model and e["method"].startswith(model + "_") and e["estimate"] is not None:
            if design in ("matched", "prevalent", "naive"):
                rows.append({
                    "seed": seed, "outcome": e["outcome"], "design": design,
                    "log": math.log(e["estimate"]), "se": e["se"],
                    "log_low": math.log(e["ci_low"]), "log_high": math.log(e["ci_high"]),
                })  # fmt: skip
    m = res["design"]["designs"]["matched"]
    return rows, m["comparators_later_initiators"] / m["n_control_rows_matched"]


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Bias, empirical and model SE and coverage against the truth 0 (log scale), with MC SEs
    (:func:`evaluation.simulation_summary.performance`)."""

    def summary(g: pd.DataFrame) -> pd.Series:
        p = performance(g["log"], truth=0.0, se=g["se"], ci_low=g["log_low"], ci_high=g["log_high"])
        return pd.Series({
            "n": p["n_estimates"],
            "bias (MCSE)": f"{p['bias']:+.3f} ({p['bias_mcse']:.3f})",
            "emp. SD": f"{p['empse']:.3f}",
            "model SE": f"{p['modse']:.3f}",
            "coverage % (MCSE)": f"{100 * p['coverage']:.1f} ({100 * p['coverage_mcse']:.1f})",
        })  # fmt: skip

    return rows.groupby(["outcome", "design"]).apply(summary, include_groups=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1000)
    args = parser.parse_args()
    rows, later = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.replicates):
            seed = args.first_seed + r
            out, share = one(seed, Path(tmp) / f"x{seed}")
            rows += out
            later.append(share)
    print(table(pd.DataFrame(rows)).to_markdown())
    print(f"\nmatched comparator rows whose person starts HAT later: mean {np.mean(later):.1%} "
          f"(range {min(later):.1%}-{max(later):.1%}), {args.replicates} replicates")  # fmt: skip


if __name__ == "__main__":
    main()
