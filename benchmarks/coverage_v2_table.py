"""Coverage table of a history simulation folder (``python -m evaluation.simulate --contract 2``).

``python benchmarks/coverage_v2_table.py DIR [SCENARIO] [--all]`` summarises the replicate
records found in ``DIR`` (also of a run stopped before its end) against the truth the run
used, or the truth of the history scenario ``SCENARIO`` (a bundled name or a YAML path; its
truth is computed here, which takes minutes for a precise truth), and prints a Markdown table of the primaries of both
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


def summary(folder: Path, scenario: str | None = None) -> pd.DataFrame:
    """Performance per (estimand, outcome, measure, method) of the records in ``folder``.

    Against the truth of ``scenario`` (computed here), or, without it, the truth the run
    used: the ``truth`` of the records' estimates, with the Monte Carlo SEs of the folder's
    ``summary.json`` when the run has finished (else unknown).
    """
    from evaluation.simulation_summary import summarise

    records = [json.loads(f.read_text()) for f in sorted(folder.glob("replicates/*/*.json"))]
    if scenario is not None:
        from evaluation.replicates import truth_values
        from synthetic.history_spec import load_history_scenario

        _, values, mcse = truth_values(load_history_scenario(scenario))
        return summarise(records, truth=values, truth_mcse=mcse)
    values, mcse = {}, {}
    for rec in records:
        for e in rec.get("estimates", []):
            if e.get("truth") is not None:
                values[(e["estimand"], e["outcome"], e["measure"])] = e["truth"]
    done = folder / "summary.json"
    if done.is_file():
        for t in json.loads(done.read_text())["truth"]:
            if t.get("mc_se") is not None:
                mcse[(t["estimand"], t["outcome"], t["measure"])] = t["mc_se"]
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
    parser.add_argument("scenario", nargs="?", help="truth of this scenario (default: the run's)")
    parser.add_argument("--all", action="store_true", help="every estimate, not the primaries")
    args = parser.parse_args(argv)
    print(table(summary(args.folder, args.scenario), every=args.all))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
