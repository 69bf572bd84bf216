"""Coverage table of the multiple-imputation Monte Carlo (``benchmarks/coverage_mi.md``).

``python benchmarks/coverage_mi_table.py DIR`` summarises the replicate records of a
simulation folder made with ``benchmarks/coverage_mi_scenario.yml`` and
``benchmarks/coverage_mi_config.yml`` (also of a run stopped before its end): per estimand,
multiple imputation (``*_mi``) beside the missing-indicator method, with coverage of the 95%
interval, bias (log scale), empirical SD, mean SE and their ratio, each with its Monte Carlo
SE (Morris, White & Crowther 2019), as a Markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
ROWS = [
    (outcome, f"{model}_{design}")
    for design in ("matched_mi", "matched", "iptw_mi", "iptw")
    for outcome, model in (
        ("mortality", "cox"),
        ("overdose_mortality", "cox"),
        ("retention", "cox"),
        ("crime", "rate"),
    )
]


def summary(folder: Path) -> pd.DataFrame:
    """Performance per estimand and method from the replicate records in ``folder``."""
    from evaluation.replicates import truth_values
    from evaluation.simulation_summary import summarise
    from synthetic.spec import load_scenario

    records = [json.loads(f.read_text()) for f in sorted(folder.glob("replicates/*/*.json"))]
    _, values, mcse = truth_values(load_scenario(HERE / "coverage_mi_scenario.yml"))
    return summarise(records, truth=values, truth_mcse=mcse)


def table(folder: Path) -> str:
    s = summary(folder)
    head = (
        "| estimand | method | n | coverage % (MCSE) | bias (MCSE) | emp. SD | mean SE "
        "| SE / SD (MCSE) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for outcome, method in ROWS:
        r = s[(s.outcome == outcome) & (s.method == method)]
        if r.empty:
            continue
        r = r.iloc[0]
        ratio = 1 + r.relerr_modse / 100
        lines.append(
            f"| {outcome} {r.measure} | {method} | {int(r.n_estimates)} | "
            f"{100 * r.coverage:.1f} ({100 * r.coverage_mcse:.1f}) | "
            f"{r.bias:+.3f} ({r.bias_mcse:.3f}) | {r.empse:.3f} | {r.modse:.3f} | "
            f"{ratio:.3f} ({r.relerr_modse_mcse / 100:.3f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1])))
