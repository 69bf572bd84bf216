"""Coverage of the target trial's ITT and per-protocol primaries on independent history extracts.

Each replicate writes an extract with :func:`tests.independent_history.write_independent_history`
(a generator written from the data contract only, with truths from potential outcomes), reads
it, runs :func:`evaluation.pipeline.run_study` (no multiple imputation, no sensitivity
variants, a small per-protocol bootstrap) and keeps the six primaries (ITT: ``cox_matched``,
``rate_matched``; per protocol: ``cox_ipcw``, ``rate_ipcw``) with their truths. Prints a
markdown table of bias, empirical SD, mean SE and 95% CI coverage (log scale for ratios) with
Monte Carlo SEs; ``--rows`` keeps one CSV row per replicate and estimate (appended as they
finish, so an interrupted run keeps its replicates; ``--table-only`` rereads it).

Usage::

    nice -n 19 python benchmarks/independent_history_coverage.py --replicates 60 \
        --rows /tmp/indep_rows.csv
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRIMARIES = {
    ("itt", "mortality"): "cox_matched",
    ("itt", "retention"): "cox_matched",
    ("itt", "crime"): "rate_matched",
    ("per_protocol", "mortality"): "cox_ipcw",
    ("per_protocol", "retention"): "cox_ipcw",
    ("per_protocol", "crime"): "rate_ipcw",
}


def study_config(seed: int, bootstrap: int = 50):
    """The default configuration without MI, sensitivity variants; a small PP bootstrap."""
    from evaluation.config import load_config

    config = load_config(None, seed=seed, imputation={"sensitivity": False})
    return config.model_validate(
        {
            **config.to_dict(),
            "target_trial": {
                "per_protocol": {"bootstrap": bootstrap},
                "sensitivity": {
                    "matching": [],
                    "naive": False,
                    "prevalent": False,
                    "grace_period_days": None,
                },
            },
        }
    )


def primaries(results: dict) -> dict[tuple[str, str], dict]:
    """The six primaries of a study's results, keyed by (estimand, outcome)."""
    out = {}
    for e in results["estimates"]:
        key = (e.get("estimand"), e["outcome"])
        if PRIMARIES.get(key) == e["method"] and e["measure"] in ("HR", "IRR"):
            out[key] = e
    return out


def replicate(seed: int, n: int, replicates: int, uptake: float = 1.0) -> list[dict]:
    """One extract, one study: a row per primary with estimate, SE and truths (log scale).

    ``log_truth``: the population truth (:data:`tests.independent_history.POPULATION_TRUTH`,
    default effects and uptake only; else the sample truth); ``log_sample_truth``: the truth
    in this extract's initiators (``replicates`` copies each; 0: not computed).
    """
    from analysis.data.extract import read_extract
    from evaluation.pipeline import run_study
    from tests.independent_history import POPULATION_TRUTH, write_independent_history

    with TemporaryDirectory() as tmp:
        rng = np.random.default_rng(np.random.SeedSequence(20251127, spawn_key=(seed,)))
        truth = write_independent_history(
            Path(tmp) / "x", rng, n=n, replicates=replicates, uptake=uptake
        )
        history = read_extract(Path(tmp) / "x")
    population = POPULATION_TRUTH["truth"] if uptake == 1.0 else truth["truth"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = run_study(history, study_config(seed))
    rows = []
    for (estimand, outcome), e in primaries(study.results).items():
        t = population[estimand][outcome]
        sample = truth["truth"][estimand][outcome] if replicates else {"log": np.nan, "mc_se": 0}
        ok = e["estimate"] is not None and np.isfinite(e["estimate"]) and e["estimate"] > 0
        rows.append(
            {
                "seed": seed,
                "estimand": estimand,
                "outcome": outcome,
                "method": e["method"],
                "log_est": float(np.log(e["estimate"])) if ok else np.nan,
                "se": e.get("se") if ok else np.nan,
                "log_truth": t["log"],
                "truth_mc_se": t["mc_se"],
                "log_sample_truth": sample["log"],
                "sample_truth_mc_se": sample["mc_se"],
                "n_analysed": truth["n_analysed"],
                "n_matched": study.results["cohort"]["n_hat_matched"],
            }
        )
    return rows


def table(rows: pd.DataFrame, truth: str = "log_truth") -> str:
    """Markdown: bias, empirical SD, mean SE, SE/SD and coverage with Monte Carlo SEs.

    ``truth``: the column of the true log values (``log_truth``, the population truth, or
    ``log_sample_truth``, each extract's own initiators' truth).
    """
    mc = "truth_mc_se" if truth == "log_truth" else "sample_truth_mc_se"
    rows = rows.assign(log_truth=rows[truth], truth_mc_se=rows[mc])
    lines = [
        "| estimand | outcome | method | n | mean log truth (MC SE) | bias (MCSE) | emp. SD "
        "| mean SE | SE/SD | coverage % (MCSE) | mean z |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (estimand, outcome), g in rows.groupby(["estimand", "outcome"], sort=False):
        g = g.dropna(subset=["log_est", "se", "log_truth"])
        k = len(g)
        err = g["log_est"] - g["log_truth"]
        sd = err.std(ddof=1)
        cover = (err.abs() <= 1.959964 * g["se"]).mean()
        z = (err / np.hypot(g["se"], g["truth_mc_se"])).mean()
        lines.append(
            f"| {estimand} | {outcome} | {g['method'].iloc[0]} | {k} "
            f"| {g['log_truth'].mean():+.3f} ({g['truth_mc_se'].mean():.3f}) "
            f"| {err.mean():+.3f} ({sd / np.sqrt(k):.3f}) | {sd:.3f} | {g['se'].mean():.3f} "
            f"| {g['se'].mean() / sd:.2f} "
            f"| {100 * cover:.1f} ({100 * np.sqrt(cover * (1 - cover) / k):.1f}) | {z:+.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=50)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--n", type=int, default=2500, help="persons per extract")
    p.add_argument(
        "--truth-copies", type=int, default=20, help="copies per initiator, sample truth"
    )
    p.add_argument("--uptake", type=float, default=1.0, help="multiplier of HAT uptake")
    p.add_argument("--rows", type=Path, required=True, help="CSV of the replicates rows")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--minutes", type=float, default=None, help="stop starting replicates after")
    args = p.parse_args(argv)
    if not args.table_only:
        start = time.monotonic()
        for seed in range(args.first_seed, args.first_seed + args.replicates):
            if args.minutes and time.monotonic() - start > 60 * args.minutes:
                break
            try:
                rows = replicate(seed, args.n, args.truth_copies, args.uptake)
            except Exception as exc:  # a failed replicate is counted, not fatal
                print(f"seed {seed} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            df = pd.DataFrame(rows)
            if args.rows is not None:
                df.to_csv(args.rows, mode="a", header=not args.rows.exists(), index=False)
            print(f"seed {seed} done ({time.monotonic() - start:.0f} s)", file=sys.stderr)
    rows = pd.read_csv(args.rows)
    print(f"{rows['seed'].nunique()} replicates; against the population truth:\n")
    print(table(rows))
    if rows["log_sample_truth"].notna().any():
        print("\nagainst the truth in each extract's own initiators:\n")
        print(table(rows, "log_sample_truth"))


if __name__ == "__main__":
    main()
