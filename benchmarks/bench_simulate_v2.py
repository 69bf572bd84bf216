"""Time one replicate of ``python -m evaluation.simulate --contract 2``, step by step.

``python benchmarks/bench_simulate_v2.py [SCENARIO ...] [--seed S]`` runs, for each history
scenario (default: ``ci`` and ``default``), what one replicate of the simulation study does
(:func:`evaluation.replicates.run_replicate`: BLAS on one thread) and prints the time of each
step as a Markdown table:

- ``generate``: the history simulation (:func:`synthetic.history_generate.generate_history`);
- ``files``: writing the version-2 contract files (Parquet) and reading them back;
- ``risk sets``: :func:`analysis.data.risk_sets.derive_risk_sets`;
- ``propensity``: the propensity model on the stacked (initiator, candidate) rows;
- ``matching``: the rest of risk-set matching (nearest neighbours, flow, balance);
- ``ITT``: the intention-to-treat estimates;
- ``per-protocol point``: censoring intervals, weights and estimates once;
- ``per-protocol bootstrap``: the bootstrap over persons (censoring models refitted);
- ``sensitivity``: the naive and prevalent-user comparisons.

The truth is not computed (it is computed once per study, not per replicate); the study runs
without it. Steps are found by wrapping the functions the study calls (the propensity fit
inside risk-set matching; the weights and estimates of the per-protocol module, whose first
two weight fits and first estimate are the point estimate and the rest the bootstrap).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits


class _Clock:
    """Wraps functions of modules and adds up their time per label (and call order)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, list[float]] = defaultdict(list)
        self._undo: list[tuple[Any, str, Callable]] = []

    def wrap(self, module: Any, name: str, label: str) -> None:
        original = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t
                self.seconds[label] += dt
                self.calls[label].append(dt)

        setattr(module, name, timed)
        self._undo.append((module, name, original))

    def restore(self) -> None:
        for module, name, original in reversed(self._undo):
            setattr(module, name, original)
        self._undo.clear()


def time_replicate(scenario: str, seed: int = 1) -> dict[str, Any]:
    """Seconds of each step of one history replicate (see the module's docstring)."""
    import analysis.design.risk_set_matching as rsm
    import evaluation.target_trial_pp as pp
    from analysis.data.extract import read_extract
    from evaluation.config import StudyConfig
    from evaluation.pipeline import run_study
    from evaluation.progress import Steps
    from synthetic.history_generate import generate_history, write_history
    from synthetic.history_spec import load_history_scenario

    spec = load_history_scenario(scenario)
    out: dict[str, Any] = {"scenario": scenario}
    clock = _Clock()
    clock.wrap(rsm, "fit_propensity", "propensity")
    clock.wrap(pp, "_weights", "pp_weights")
    clock.wrap(pp, "_values", "pp_values")
    steps = Steps(quiet=True)
    try:
        with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            tables, _ = generate_history(spec, np.random.default_rng(seed), truth=False)
            out["generate"] = time.perf_counter() - t
            t = time.perf_counter()
            folder = write_history(tables, None, Path(tmp) / "x", spec=spec, format="parquet")
            extract = read_extract(folder)
            out["files"] = time.perf_counter() - t
            t = time.perf_counter()
            study = run_study(extract, StudyConfig(seed=seed), steps=steps)
            out["study"] = time.perf_counter() - t
    finally:
        clock.restore()
    s = steps.timings
    w, v = clock.calls["pp_weights"], clock.calls["pp_values"]
    pp_point = sum(w[:2]) + sum(v[:1])
    pp_boot = sum(w[2:]) + sum(v[1:])
    out.update(
        {
            "risk sets": s["derive risk sets"],
            "propensity": clock.seconds["propensity"],
            "matching": s["risk-set matching"] - clock.seconds["propensity"],
            "ITT": s["intention-to-treat effects"],
            "per-protocol point": pp_point,
            "per-protocol bootstrap": pp_boot,
            "per-protocol other": s["per-protocol effects"] - pp_point - pp_boot,
            "sensitivity": s["sensitivity comparisons"],
            "bootstrap replicates": len(v) - 1,
        }
    )
    out["total"] = out["generate"] + out["files"] + out["study"]
    c = study.results["cohort"]
    out["size"] = (
        f"{c['n_hat']} initiators, {c['n_candidate_rows']:,} candidate rows, "
        f"{c['n_ost_rows_matched']} matched comparator rows"
    )
    return out


STEPS = (
    "generate",
    "files",
    "risk sets",
    "propensity",
    "matching",
    "ITT",
    "per-protocol point",
    "per-protocol bootstrap",
    "per-protocol other",
    "sensitivity",
    "total",
)


def table(results: list[dict[str, Any]]) -> str:
    """Markdown table: one column per scenario, seconds per step."""
    head = "| step | " + " | ".join(r["scenario"] for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    for step in STEPS:
        lines.append(f"| {step} | " + " | ".join(f"{r[step]:.2f}" for r in results) + " |")
    lines.append(
        "| bootstrap replicates | "
        + " | ".join(str(r["bootstrap replicates"]) for r in results)
        + " |"
    )
    lines.append("| data | " + " | ".join(r["size"] for r in results) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=["ci", "default"])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    results = [time_replicate(s, seed=args.seed) for s in args.scenarios]
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
