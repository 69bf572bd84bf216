"""Coverage table of a simulation folder (``python -m evaluation.simulate --out DIR``).

``python benchmarks/coverage_table.py DIR [DIR_BEFORE]`` summarises the replicate records
found in the folder (also of a run that was stopped before its end; the scenario is read
from the records' study, default ``default``) and prints, per setting, the primary
estimands and the IPTW variants: replicates with an estimate, coverage of the 95% interval,
bias (log scale), empirical SD, mean model SE and their ratio, each with its Monte Carlo SE
(Morris, White & Crowther 2019), as a Markdown table. With a second folder (the same study
run before a change) its coverage is shown beside.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

ROWS = [
    ("mortality", "cox_matched"),
    ("overdose_mortality", "cox_matched"),
    ("retention", "cox_matched"),
    ("crime", "rate_matched"),
    ("crime", "nb_matched"),
    ("mortality", "cox_iptw"),
    ("overdose_mortality", "cox_iptw"),
    ("retention", "cox_iptw"),
    ("crime", "rate_iptw"),
    ("crime", "nb_iptw"),
]


def summary(folder: Path, scenario: str = "default") -> pd.DataFrame:
    """Performance per setting x estimand x method from the replicate records in ``folder``."""
    from evaluation.replicates import truth_values
    from evaluation.simulation_summary import summarise
    from synthetic.spec import load_scenario

    records = [json.loads(f.read_text()) for f in sorted(folder.glob("replicates/*/*.json"))]
    _, values, mcse = truth_values(load_scenario(scenario))
    return summarise(records, truth=values, truth_mcse=mcse)


def table(folder: Path, before: Path | None = None) -> str:
    s = summary(folder)
    b = summary(before) if before else None
    head = "| n_hat | estimand | method | n | coverage % (MCSE) | bias (MCSE) | emp. SD | mean SE | SE / SD (MCSE) |"
    if b is not None:
        head += " coverage before % (MCSE) |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for n_hat in sorted(s["n_hat"].unique()):
        for outcome, method in ROWS:
            r = s[(s.n_hat == n_hat) & (s.outcome == outcome) & (s.method == method)]
            if r.empty:
                continue
            r = r.iloc[0]
            ratio = 1 + r.relerr_modse / 100
            line = (
                f"| {n_hat} | {outcome} {r.measure} | {method} | {int(r.n_estimates)} | "
                f"{100 * r.coverage:.1f} ({100 * r.coverage_mcse:.1f}) | "
                f"{r.bias:+.3f} ({r.bias_mcse:.3f}) | {r.empse:.3f} | {r.modse:.3f} | "
                f"{ratio:.3f} ({r.relerr_modse_mcse / 100:.3f}) |"
            )
            if b is not None:
                rb = b[(b.n_hat == n_hat) & (b.outcome == outcome) & (b.method == method)]
                line += (
                    f" {100 * rb.iloc[0].coverage:.1f} ({100 * rb.iloc[0].coverage_mcse:.1f}) |"
                    if not rb.empty
                    else " |"
                )
            lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None))
