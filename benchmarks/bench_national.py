"""Benchmark the target trial at national scale: risk sets, matching and ITT estimates.

Issue 19, goal 4: a history extract (data contract version 2) of 1,000,000 persons with
about 2,500 HAT initiators; risk sets, risk-set matching and the intention-to-treat
estimates in under 5 minutes and 8 GB. The extract is the bundled ``national`` history
scenario (``synthetic/scenarios/history/national.yml``: the OST registry of a population
ten times Norway's, with ten times the HAT capacity, filled up to a million persons with
persons of a national linkage never in OST), generated once without its truth.

Each measurement runs in a fresh process; inside it every step is timed (wall and CPU) and
the process' peak resident set during the step read (``VmHWM``, reset through
``/proc/self/clear_refs`` before the step; the process' peak is the largest of them):

``after`` (this tree)
    read the extract; ``risk sets`` (sorting the histories and one pass over the risk
    sets in pieces, the analysed rows kept compact); ``propensity`` (Newton-Raphson over
    sums on every stacked row, :func:`analysis.design.streamed_logit.fit_logit_pieces`;
    its first pass also gathers balance before matching, its last gives the scores);
    ``scores and balance`` (the moments added up, the caliper width); ``matching`` (piece
    by piece); ``matched rows`` (their outcomes); ``ITT``
    (:func:`evaluation.target_trial._itt_estimates`, the estimators of the primary
    analysis on the matched rows). ``--threads N``: the streamed path on N threads.
    ``--national-before COMMIT`` also runs the streamed path of COMMIT on the national
    extract, first (``git archive``).
``before`` (commit 5b04ea3, ``git archive`` into a temporary folder)
    read; ``risk sets`` (``derive_risk_sets(not_eligible=False)``, the whole table);
    ``propensity`` (``stack_risk_sets`` and ``fit_propensity`` on the whole stack);
    ``matching`` (one ``match`` over every risk set); ``ITT`` (as after).

Per-protocol and the sensitivity analyses are not run (the configuration allows
``contrasts: [itt]`` and turning the sensitivity analyses off; the goal is ITT). Before
cannot run at a million persons (its risk sets evaluate every person on every initiator's
date, about 1.1 billion rows), so before and after are compared on smaller history
extracts (``--compare-scales``: the default scenario at those scales), where the script
also checks that both give the same matched pairs and the same ITT estimates.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_national.py                       # national + compare
    .venv/bin/python benchmarks/bench_national.py --compare-scales 1 --skip-national
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "5b04ea3"


# --------------------------------------------------------------------------- child
def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _child(mode: str, extract: str, max_rows: int, threads: int | None) -> None:  # long: steps
    import numpy as np
    import pandas as pd

    steps: list[dict] = []

    @contextlib.contextmanager
    def step(name: str):
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        t, c = time.perf_counter(), time.process_time()
        yield
        steps.append({"step": name, "wall": time.perf_counter() - t,
                      "cpu": time.process_time() - c, "peak_mb": _hwm_mb()})  # fmt: skip

    from analysis.data.extract import read_extract
    from evaluation import study_design
    from evaluation.config import load_config
    from evaluation.stages.designs import Design
    from evaluation.target_trial import _itt_estimates
    from evaluation.trial_frame import outcome_frame

    config = load_config(None)
    config = config.model_validate({**config.to_dict(), "target_trial": {"contrasts": ["itt"]}})
    plan = config.target_trial.analysis
    kw = {"covariates": plan.covariates, "exact": plan.exact,
          "transforms": study_design.TRANSFORMS, "levels": study_design.LEVELS}  # fmt: skip
    with step("read"):
        history = read_extract(extract)
    if mode == "before":
        from analysis.data.contract import CALENDAR_COVARIATE
        from analysis.data.risk_sets import derive_risk_sets
        from analysis.design.propensity import fit_propensity
        from analysis.design.risk_set_matching import _match_sets, stack_risk_sets

        with step("risk sets"):
            rs = derive_risk_sets(history, not_eligible=False)
        with step("propensity"):
            stacked = stack_risk_sets(rs.table)
            covs = tuple(plan.covariates) + ((CALENDAR_COVARIATE,) if plan.calendar_time else ())
            ps = fit_propensity(stacked, treatment="treatment", covariates=covs,
                                transforms=kw["transforms"], levels=kw["levels"])  # fmt: skip
            stacked = stacked.assign(ps=ps.score, ps_logit=ps.logit)
        with step("matching"):
            m = _match_sets(stacked, ps, covs, k=plan.k, caliper=plan.caliper, exact=plan.exact)
        data, pairs, info = m.data, m.matched.pairs, m.info()
        n_rows, coef, n_persons = len(stacked), ps.coefficients, len(history.persons)
    else:
        from analysis.data.risk_set_rows import risk_set_source
        from analysis.design.risk_set_stream import stream_risk_set_match

        with step("risk sets"):
            source = risk_set_source(
                history, gap_days=config.gap_days, regions=config.target_trial.eligibility.regions
            )
            n_persons = len(history.persons)
            del history  # the sorted histories are all the rest needs
            gc.collect()
        more = {} if threads is None else {"threads": threads}  # older trees have no threads
        s = stream_risk_set_match(
            source, k=plan.k, caliper=plan.caliper, calendar_time=plan.calendar_time,
            max_rows=max_rows, step=step, **kw, **more,
        )  # fmt: skip
        # the source's sorting and the first pass are both "risk sets"
        rs_steps = [x for x in steps if x["step"] == "risk sets"]
        merged = {"step": "risk sets", "wall": sum(x["wall"] for x in rs_steps),
                  "cpu": sum(x["cpu"] for x in rs_steps),
                  "peak_mb": max(x["peak_mb"] for x in rs_steps)}  # fmt: skip
        steps[:] = [steps[0], merged, *[x for x in steps[1:] if x["step"] != "risk sets"]]
        data, pairs, info = s.data, s.pairs, s.info()
        n_rows, coef = s.propensity.n, s.propensity.coefficients
    with step("ITT"):
        design = Design(name="matched", data=outcome_frame(data), weighted=True, info=info)
        estimates, _, _ = _itt_estimates(design, config)
    key = pairs[["match_set", "treated_id", "control_id", "round"]].to_csv(index=False)
    out = {
        "mode": mode,
        "steps": steps,
        "persons": n_persons,
        "initiators": int(info["n_treated"]),
        "stacked_rows": int(n_rows),
        "matched_rows": len(data),
        "pairs_sha": hashlib.sha256(key.encode()).hexdigest()[:16],
        "coefficients": [float(x) for x in np.nan_to_num(coef.to_numpy(), nan=0.0)],
        "estimates": {f"{e.outcome}/{e.measure}/{e.method}": e.estimate for e in estimates},
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": threads,
        "passes": int(info.get("propensity_passes", 0)),
        "pandas": pd.__version__,
    }
    print("RESULT " + json.dumps(out), flush=True)


# --------------------------------------------------------------------------- parent
def _generate(scenario: str, scale: float | None, out: Path) -> float:
    """Generate a history extract (no truth) unless it exists; seconds taken."""
    if (out / "extract.yml").exists():
        return float("nan")
    code = (
        "import numpy as np, sys; "
        "from synthetic.history_spec import load_history_scenario as L; "
        "from synthetic.history_generate import generate_history as G, write_history as W; "
        f"s = L({scenario!r}); "
        + (f"s = s.model_copy(update={{'scale': {scale}}}); " if scale else "")
        + "t, _ = G(s, np.random.default_rng(s.seed), truth=False); "
        f"W(t, None, {str(out)!r}, spec=s, format='parquet')"
    )
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    return time.perf_counter() - t


def _before_tree(path: Path, commit: str = BEFORE_COMMIT) -> Path:
    if not (path / "analysis").exists():
        path.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(path)], input=archive, check=True)
    return path


def _measure(
    mode: str, code: Path, extract: Path, max_rows: int, timeout: float, threads: int | None = None
) -> dict:
    load = os.getloadavg()
    cmd = ["/usr/bin/time", "-v", sys.executable, str(Path(__file__).resolve()),
           "--child", mode, "--extract", str(extract), "--max-rows", str(max_rows)]  # fmt: skip
    cmd += [] if threads is None else ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(code)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=code,
                              timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"mode": mode, "error": f"stopped after {timeout:.0f} s", "load": load}
    result = next((json.loads(x[7:]) for x in proc.stdout.splitlines()
                   if x.startswith("RESULT ")), None)  # fmt: skip
    rss = next((int(x.split()[-1]) / 1024 for x in proc.stderr.splitlines()
                if "Maximum resident set size" in x), float("nan"))  # fmt: skip
    if result is None:
        tail = proc.stderr.strip().splitlines()[-25:]
        return {"mode": mode, "error": " / ".join(tail[:3]), "load": load, "time_v_rss_mb": rss}
    return {**result, "time_v_rss_mb": rss, "load": load, "load_after": os.getloadavg()}


def _table(label: str, runs: list[dict]) -> list[str]:
    rows = []
    for r in runs:
        if "error" in r:
            rows.append(f"| {label} | {r['mode']} | (failed: {r['error']}) | | | |")
            continue
        total = sum(s["wall"] for s in r["steps"] if s["step"] != "read")
        for s in r["steps"]:
            rows.append(f"| {label} | {r['mode']} | {s['step']} | {s['wall']:.1f} | "
                        f"{s['cpu']:.1f} | {s['peak_mb']:,.0f} |")  # fmt: skip
        # the peak of the process is the largest step peak (clear_refs resets the
        # kernel's high-water mark, so getrusage and time -v see the last step's only)
        peak = max(s["peak_mb"] for s in r["steps"])
        rows.append(f"| {label} | {r['mode']} | **total without read** | **{total:.1f}** | | "
                    f"**{peak:,.0f}** |")  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:  # long: argument parsing and the report
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", choices=["before", "after"])
    ap.add_argument("--extract", type=Path)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-national"))
    ap.add_argument("--max-rows", type=int, default=2_000_000)
    ap.add_argument(
        "--compare-scales", default="1,2", help="default scenario scales, before vs after"
    )
    ap.add_argument("--skip-national", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--threads", type=int, help="threads of the streamed path (default 1)")
    ap.add_argument(
        "--national-before",
        metavar="COMMIT",
        help="also run the streamed path of COMMIT on the national extract, first",
    )
    args = ap.parse_args(argv)
    if args.child:
        _child(args.child, str(args.extract), args.max_rows, args.threads)
        return 0
    # the child of an older tree gets no --threads (its stream_risk_set_match has none)
    args.threads = 1 if args.threads is None else args.threads
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    before = _before_tree(work / "before")
    lines = [
        "| extract | code | step | wall s | CPU s | peak MB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    summary = []
    for scale in [float(x) for x in args.compare_scales.split(",") if x]:
        ex = work / f"default-x{scale:g}"
        gen = _generate("default", scale, ex)
        runs = [_measure(m, c, ex, args.max_rows, args.timeout, t)
                for m, c, t in (("before", before, None), ("after", ROOT, args.threads))]  # fmt: skip
        ok = [r for r in runs if "error" not in r]
        if len(ok) == 2:
            same_pairs = ok[0]["pairs_sha"] == ok[1]["pairs_sha"]
            diff = max(
                abs(ok[0]["estimates"][k] - ok[1]["estimates"][k]) for k in ok[0]["estimates"]
            )
            summary.append(f"default x{scale:g}: {ok[1]['persons']:,} persons, "
                           f"{ok[1]['initiators']:,} initiators, {ok[1]['stacked_rows']:,} stacked "
                           f"rows; same matched pairs: {same_pairs}; largest ITT difference "
                           f"{diff:.2e}; generated in {gen:.0f} s")  # fmt: skip
        lines += _table(f"default x{scale:g}", runs)
        print(json.dumps(runs, default=str), file=sys.stderr)
    if not args.skip_national:
        ex = work / "national"
        gen = _generate("national", None, ex)
        runs = []
        if args.national_before:
            old = _before_tree(work / f"before-{args.national_before}", args.national_before)
            runs.append(_measure("after", old, ex, args.max_rows, args.timeout))
            runs[-1]["mode"] = f"streamed {args.national_before}"
        runs.append(_measure("after", ROOT, ex, args.max_rows, args.timeout, args.threads))
        r = runs[-1]
        if len(runs) == 2 and "error" not in runs[0] and "error" not in r:
            o = runs[0]
            d_itt = max(abs(o["estimates"][k] - r["estimates"][k]) for k in r["estimates"])
            d_coef = max(
                abs(a - b) for a, b in zip(o["coefficients"], r["coefficients"], strict=True)
            )
            summary.append(
                f"national, {o['mode']} vs this tree: same matched pairs: "
                f"{o['pairs_sha'] == r['pairs_sha']}; largest ITT difference {d_itt:.2e}; "
                f"largest coefficient difference {d_coef:.2e}; propensity passes "
                f"{o['passes']} -> {r['passes']}"
            )
        if "error" not in r:
            summary.append(f"national: {r['persons']:,} persons, {r['initiators']:,} analysed "
                           f"initiators, {r['stacked_rows']:,} stacked rows, {r['matched_rows']:,} "
                           f"matched rows; generated in {gen:.0f} s")  # fmt: skip
        lines += _table("national", runs)
        print(json.dumps(runs, default=str), file=sys.stderr)
    print("\n".join(lines))
    print()
    print("\n".join(f"- {s}" for s in summary))
    print(f"- load average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
