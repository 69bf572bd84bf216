"""Coverage table of a history simulation folder (``python -m evaluation.simulate --contract 2``).

``python benchmarks/coverage_v2_table.py DIR [TRUTH] [--all] [--save-truth FILE]``
summarises the replicate records found in ``DIR`` (also of a run stopped before its end)
against the truth the run used, or against ``TRUTH``: a history scenario (a bundled name or a
YAML path; its truth is computed here, which takes minutes, or a quarter of an hour for
``benchmarks/history_default_truth.yml``; ``--save-truth FILE`` writes it as ``truth.json``)
or a ``truth.json`` file (such a saved truth, e.g. ``benchmarks/history_default_truth.json``,
or an extract's), and prints a Markdown table of the primaries of both
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


def truth_file_values(truth: dict) -> tuple[dict, dict]:
    """True values and their Monte Carlo SEs from a history ``truth.json``'s contents.

    Returns ``(estimand, outcome, measure) -> value`` (natural scale) and ``-> MC SE`` (log
    scale for ratios; NaN where unknown), as :func:`evaluation.replicates.truth_values`.
    """
    errors = truth["monte_carlo"]["errors"]
    values, mcse = {}, {}
    for e in truth["estimands"]:
        key = (e["estimand"], e["outcome"], e["measure"])
        values[key] = e["value"]
        mc = errors.get("/".join(key), {}).get("mc_se")
        mcse[key] = float("nan") if mc is None else mc
    return values, mcse


def scenario_truth(scenario: str, save: Path | None = None) -> tuple[dict, dict]:
    """True values and MC SEs of ``scenario``: a ``truth.json`` file, or a history scenario
    (bundled name or YAML path) whose truth is computed here (and written to ``save``)."""
    if scenario.endswith(".json"):
        return truth_file_values(json.loads(Path(scenario).read_text()))
    from evaluation.replicates import truth_values
    from synthetic.history_spec import load_history_scenario

    truth, values, mcse = truth_values(load_history_scenario(scenario))
    if save is not None:
        save.write_text(json.dumps(truth, indent=2) + "\n")
    return values, mcse


def summary(folder: Path, scenario: str | None = None, save: Path | None = None) -> pd.DataFrame:
    """Performance per (estimand, outcome, measure, method) of the records in ``folder``.

    Against the truth of ``scenario`` (a ``truth.json`` file, or a history scenario whose
    truth is computed here and written to ``save`` if given), or, without it, the truth the
    run used: the ``truth`` of the records' estimates, with the Monte Carlo SEs of the
    folder's ``summary.json`` when the run has finished (else unknown).
    """
    from evaluation.simulation_summary import summarise

    records = [json.loads(f.read_text()) for f in sorted(folder.glob("replicates/*/*.json"))]
    if scenario is not None:
        values, mcse = scenario_truth(scenario, save)
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
    parser.add_argument(
        "scenario",
        nargs="?",
        help="truth of this history scenario (name or YAML) or truth.json file (default: the run's)",
    )
    parser.add_argument("--all", action="store_true", help="every estimate, not the primaries")
    parser.add_argument(
        "--save-truth", type=Path, help="write the scenario's computed truth here (truth.json)"
    )
    args = parser.parse_args(argv)
    if args.save_truth is not None and (args.scenario is None or args.scenario.endswith(".json")):
        parser.error("--save-truth needs a scenario whose truth is computed")
    print(table(summary(args.folder, args.scenario, args.save_truth), every=args.all))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
