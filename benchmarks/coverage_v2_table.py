"""Coverage table of a history simulation folder (``python -m evaluation.simulate --contract 2``).

``python benchmarks/coverage_v2_table.py DIR SCENARIO [--all]`` summarises the replicate
records found in ``DIR`` (also of a run stopped before its end) against the truth of the
history scenario ``SCENARIO`` (a bundled name or a YAML path; its truth is computed here,
which takes minutes for a precise truth) and prints a Markdown table of the primaries of both
estimands (intention to treat and per protocol): replicates with an estimate, coverage of the
95% interval, bias, empirical SD, mean model SE and their ratio, each with its Monte Carlo SE
(Morris, White & Crowther 2019), and the truth with its own Monte Carlo SE. Ratios are on the
log scale. ``--all`` lists every (estimand, outcome, measure, method).

The same records can be summarised against another scenario's truth (for instance the ``ci``
scenario's own, less precise, truth): the records do not depend on the truth.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def summary(folder: Path, scenario: str) -> pd.DataFrame:
    """Performance per (estimand, outcome, measure, method) of the records in ``folder``."""
    from evaluation.replicates import truth_values
    from evaluation.simulation_summary import summarise
    from synthetic.history_spec import load_history_scenario

    records = [json.loads(f.read_text()) for f in sorted(folder.glob("replicates/*/*.json"))]
    _, values, mcse = truth_values(load_history_scenario(scenario))
    return summarise(records, truth=values, truth_mcse=mcse)


def table(s: pd.DataFrame, *, every: bool = False) -> str:
    """Markdown table of the summary's primaries (or every row)."""
    rows = s if every else s[s["estimand_primary"]]
    head = (
        "| estimand | estimate | method | n | coverage % (MCSE) | bias (MCSE) | emp. SD | "
        "mean SE | SE / SD (MCSE) | truth, log for ratios (MC SE) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows.itertuples():
        ratio = 1 + r.relerr_modse / 100
        lines.append(
            f"| {r.estimand} | {r.outcome} {r.measure} | {r.method} | {int(r.n_estimates)} | "
            f"{100 * r.coverage:.1f} ({100 * r.coverage_mcse:.1f}) | "
            f"{r.bias:+.3f} ({r.bias_mcse:.3f}) | {r.empse:.3f} | {r.modse:.3f} | "
            f"{ratio:.2f} ({r.relerr_modse_mcse / 100:.2f}) | "
            f"{r.truth:.3f} ({r.truth_mcse:.3f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("scenario")
    parser.add_argument("--all", action="store_true", help="every estimate, not the primaries")
    args = parser.parse_args(argv)
    print(table(summary(args.folder, args.scenario), every=args.all))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
