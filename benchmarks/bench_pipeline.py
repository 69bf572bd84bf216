"""Benchmark every stage of the study pipeline at 10k, 100k and 1M persons.

For each size the script generates a synthetic extract (scenario ``large``, HAT = 4% of
the persons, Parquet), then runs each stage of ``evaluation.pipeline`` on it, **each
stage in its own fresh subprocess**, followed by the simple hand-written alternative
of ``benchmarks/baselines.py`` for that stage, also in a fresh subprocess.

Stages (the calls of ``evaluation.pipeline.run_study``, primary design):

========================  ============================================================
``read_extract``          ``analysis.data.extract.read_extract`` (validation included)
``derive_cohort``         ``analysis.data.cohort.derive_cohort``
``fit_propensity``        ``analysis.design.propensity.fit_propensity`` (config covariates)
``match``                 ``analysis.design.matching.match``: 1:4, caliper 0.2 SD, exact region
``att_weights``           ``analysis.design.weighting.att_weights``
``balance_table``         ``analysis.design.balance.balance_table`` before and after matching
``cox_matched``           ``cox_hazard_ratio`` of mortality, matched (weights, cluster)
``cox_naive``             ``cox_hazard_ratio`` of mortality, whole cohort, unweighted
``nb_matched``            ``negative_binomial_irr`` of charges, matched
``km_rr12``               ``survival_at`` (retention at 12 months), matched
``rmst``                  ``rmst_difference`` (retention, 730 days), matched
``cif``                   ``cumulative_incidence`` (overdose vs other death), matched
``write_results``         figures + ``write_results_folder`` of the whole run's results
========================  ============================================================

Method (time and memory of one stage)
-------------------------------------
Each stage's inputs (the extract, the cohort table, the matched sample...) are written
by the previous stages as pickles in a work folder; a fresh Python process loads them
(not timed), runs ``gc.collect()`` and glibc ``malloc_trim(0)`` (so that memory freed
while loading is returned to the system and not silently reused), resets the kernel's
peak-RSS counter (``echo 5 > /proc/self/clear_refs``), reads ``VmRSS``, runs the stage
once, and reports

* wall time (``time.perf_counter``) and CPU time (``time.process_time``) of the call;
* **peak memory**: ``VmHWM`` after the call minus ``VmRSS`` before it, i.e. the most
  memory the stage needed on top of its inputs (and of the interpreter with numpy,
  pandas... already imported); ``VmHWM`` itself (the process's peak) is kept in the JSON.

``tracemalloc`` is not used: it slows Python-heavy code several-fold and does not see
allocations made by pyarrow. Every stage subprocess runs single-threaded
(``OMP/OPENBLAS/MKL_NUM_THREADS=1``), as do the alternatives.

The alternatives (``benchmarks/baselines.py``): ``pd.read_parquet`` per table;
retention spells with a per-person ``groupby().apply`` loop (on a random subsample of
``--retention-max-persons``, time extrapolated linearly to all persons); a quadratic
nearest-neighbour search for matching (numpy broadcasting in chunks, MatchIt's greedy
order, on a random subsample of ``--match-max-treated`` treated persons against all
controls, time extrapolated linearly in treated persons); statsmodels ``Logit``;
``lifelines.CoxPHFitter`` (``robust=True`` with ``cluster_col`` for the matched
sample); statsmodels discrete ``NegativeBinomial``; lifelines KM, RMST and
Aalen-Johansen. The ratio is alternative time / our time (> 1: ours is faster).

The whole study, ``python -m evaluation.run --data DIR --no-book``, is timed with
``/usr/bin/time -v`` at ``--whole-run-sizes`` (wall clock and maximum RSS), in the
environment the script was started in (threads not limited).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_pipeline.py --out bench-results
    .venv/bin/python benchmarks/bench_pipeline.py --sizes 10000,100000 --out /tmp/b
    .venv/bin/python benchmarks/bench_pipeline.py --sizes 1000000 --profile match --out /tmp/b

Writes ``OUT/bench_pipeline.json`` (every measurement) and ``OUT/bench_pipeline.md``
(the tables); with ``--profile STAGE`` also ``OUT/profile_STAGE_N.txt`` (cProfile of
that stage at the largest size, in an extra run that is not the one timed).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gc
import json
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
HAT_SHARE = 0.04

STAGES = (
    "read_extract",
    "derive_cohort",
    "fit_propensity",
    "match",
    "att_weights",
    "balance_table",
    "cox_matched",
    "cox_naive",
    "nb_matched",
    "km_rr12",
    "rmst",
    "cif",
    "write_results",
)

ALTERNATIVES = {
    "read_extract": "pd.read_parquet per table (no validation)",
    "derive_cohort": "retention spells only: groupby-apply loop per person",
    "fit_propensity": "statsmodels Logit, hand-made design",
    "match": "quadratic NN search, numpy broadcasting in chunks",
    "att_weights": "numpy one-liner",
    "balance_table": "pandas loop over design columns",
    "cox_matched": "lifelines CoxPHFitter(robust=True, cluster_col)",
    "cox_naive": "lifelines CoxPHFitter",
    "nb_matched": "statsmodels NegativeBinomial (cluster SE, unweighted)",
    "km_rr12": "lifelines KaplanMeierFitter per group (no CI)",
    "rmst": "lifelines KM + restricted_mean_survival_time (no CI)",
    "cif": "lifelines AalenJohansenFitter per group",
}


# ======================================================================================
# measurement (inside a worker process)
# ======================================================================================
def _status_kb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return float(line.split()[1])
    return float("nan")


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(fn) -> tuple[Any, dict[str, float]]:
    """Run ``fn()`` once: wall and CPU seconds, peak RSS above the RSS before (MB)."""
    _trim()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    before = _status_kb("VmRSS:")
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    hwm = _status_kb("VmHWM:")
    return result, {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_mb": (hwm - before) / 1024 if reset else float("nan"),
        "rss_before_mb": before / 1024,
        "hwm_mb": hwm / 1024,
    }


def _load(work: Path, name: str):
    with open(work / f"{name}.pkl", "rb") as f:
        return pickle.load(f)


def _save(work: Path, name: str, obj) -> None:
    with open(work / f"{name}.pkl", "wb") as f:
        pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)


def _config():
    from evaluation.config import load_config

    return load_config()


def _retention_sample(df):
    return df[df["in_retention"]]


def _cif_frame(df):
    import numpy as np

    return df.assign(event_type=np.select([df["overdose_death"] == 1, df["died"] == 1], [1, 2], 0))


def run_ours(stage: str, work: Path, data: Path, profile: Path | None) -> dict[str, Any]:
    """Load the stage's inputs, run the package's stage once (measured), save its outputs."""
    from evaluation import study_design

    cfg = _config()
    info: dict[str, Any] = {}
    common = {"treatment": "treatment", "weights": "weight", "cluster": "cluster"}
    if stage == "read_extract":
        from analysis.data.extract import read_extract

        call = lambda: read_extract(data)  # noqa: E731
    elif stage == "derive_cohort":
        from analysis.data.cohort import derive_cohort

        extract = _load(work, "extract")
        call = lambda: derive_cohort(extract, gap_days=cfg.gap_days)  # noqa: E731
    elif stage == "fit_propensity":
        from analysis.design.propensity import fit_propensity

        df = _load(work, "cohort")
        call = lambda: fit_propensity(  # noqa: E731
            df,
            treatment="treatment",
            covariates=cfg.covariates,
            transforms=study_design.TRANSFORMS,
            levels=study_design.LEVELS,
        )
    elif stage == "match":
        from analysis.design.matching import match

        df = _load(work, "cohort_ps")
        m = cfg.matching
        call = lambda: match(  # noqa: E731
            df,
            treatment="treatment",
            score="ps_logit",
            id="person_id",
            k=m.k,
            caliper=m.caliper,
            exact=m.exact,
            replace=m.replace,
        )
    elif stage == "att_weights":
        from analysis.design.weighting import att_weights

        df = _load(work, "cohort_ps")
        tr = cfg.sensitivity.iptw_trim
        call = lambda: att_weights(  # noqa: E731
            df, treatment="treatment", score="ps", trim=tr, id="person_id"
        )
    elif stage == "balance_table":
        from analysis.design.balance import balance_table

        df, matched = _load(work, "cohort_ps"), _load(work, "matched")

        def call():
            design = {"transforms": study_design.TRANSFORMS, "levels": study_design.LEVELS}
            before = balance_table(df, treatment="treatment", covariates=cfg.covariates, **design)
            after = balance_table(
                matched,
                treatment="treatment",
                covariates=cfg.covariates,
                weights="weight",
                reference=df,
                **design,
            )
            return before, after

    elif stage in ("cox_matched", "cox_naive"):
        from analysis.outcomes.cox import cox_hazard_ratio

        if stage == "cox_matched":
            df, kw = _load(work, "matched"), {"weights": "weight", "cluster": "cluster"}
        else:
            df, kw = _load(work, "cohort_ps"), {}
        call = lambda: cox_hazard_ratio(  # noqa: E731
            df,
            duration="followup_days",
            event="died",
            treatment="treatment",
            alpha=cfg.alpha,
            outcome="mortality",
            method=stage,
            **kw,
        )
    elif stage == "nb_matched":
        from analysis.outcomes.negative_binomial import negative_binomial_irr

        df = _load(work, "matched")
        call = lambda: negative_binomial_irr(  # noqa: E731
            df,
            events="followup_charges",
            exposure="crime_years",
            alpha=cfg.alpha,
            outcome="crime",
            method="nb_matched",
            arm_labels=("HAT", "OST"),
            **common,
        )
    elif stage == "km_rr12":
        from analysis.outcomes.absolute import survival_at

        ret = _retention_sample(_load(work, "matched"))
        call = lambda: survival_at(  # noqa: E731
            ret,
            duration="retention_days",
            event="discontinued",
            time=cfg.retention_time_days,
            alpha=cfg.alpha,
            outcome="retention",
            method="km_matched",
            **common,
        )
    elif stage == "rmst":
        from analysis.outcomes.rmst import rmst_difference

        ret = _retention_sample(_load(work, "matched"))
        call = lambda: rmst_difference(  # noqa: E731
            ret,
            duration="retention_days",
            event="discontinued",
            tau=cfg.rmst_tau_days,
            alpha=cfg.alpha,
            outcome="retention",
            method="rmst_matched",
            **common,
        )
    elif stage == "cif":
        from analysis.outcomes.competing_risks import cumulative_incidence

        cif_df = _cif_frame(_load(work, "matched"))
        call = lambda: cumulative_incidence(  # noqa: E731
            cif_df,
            duration="followup_days",
            event_type="event_type",
            group="group",
            weights="weight",
        )
    elif stage == "write_results":
        import pandas as pd

        from evaluation.pipeline import Study
        from evaluation.results_folder import write_results_folder

        folder = work / "whole_run"
        results = json.loads((folder / "results.json").read_text())
        manifest = json.loads((folder / "manifest.json").read_text())
        tables = {p.stem: pd.read_csv(p) for p in sorted((folder / "tables").glob("*.csv"))}
        study = Study(results=results, tables=tables)
        import evaluation.figures  # noqa: F401  (imported before the measurement)
        import evaluation.figures_design  # noqa: F401

        out = work / "rewritten"

        def call():
            return write_results_folder(
                out, results=results, manifest=manifest, tables=tables, figures=study.figures()
            )

    else:
        raise ValueError(stage)

    if profile is not None:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.runcall(call)
        seconds = time.perf_counter() - t0
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        buf.write(f"cProfile of stage {stage} ({seconds:.1f} s under the profiler)\n\n")
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(25)
        profile.write_text(buf.getvalue())
        return {"profile": str(profile), "seconds": seconds}

    result, m = measure(call)
    info.update(m)

    # -- outputs and a summary (not timed) --------------------------------------------
    if stage == "read_extract":
        _save(work, "extract", result)
        info["rows"] = {
            t: len(getattr(result, t))
            for t in ("persons", "treatment_episodes", "deaths", "charges", "incarcerations")
        }
    elif stage == "derive_cohort":
        table = result.table.copy()
        _save(work, "cohort", table)
        info["n_cohort"] = len(table)
        info["n_in_retention"] = int(table["in_retention"].sum())
    elif stage == "fit_propensity":
        df = df.assign(ps=result.score, ps_logit=result.logit)
        _save(work, "cohort_ps", df)
        info["method"] = result.method
        info["converged"] = bool(result.converged)
    elif stage == "match":
        data = result.data[["person_id", "match_set", "weight"]]
        sample = df.merge(data, on="person_id", how="inner", validate="one_to_one")
        sample = sample.assign(cluster=sample["match_set"])  # without replacement
        _save(work, "matched", sample)
        _save(work, "pairs", result.pairs[["treated_id", "control_id", "round"]])
        info.update(
            n_treated=int(result.n_treated),
            n_treated_matched=int(result.n_treated_matched),
            n_control_matched=int(result.n_control_matched),
            n_rows_matched=len(sample),
        )
    elif stage == "att_weights":
        info["ess_control"] = float(result.ess_control)
    elif stage == "balance_table":
        info["max_abs_smd_before"] = float(result[0]["smd"].abs().max())
        info["max_abs_smd_matched"] = float(result[1]["smd"].abs().max())
    elif stage in ("cox_matched", "cox_naive", "nb_matched", "rmst"):
        info["estimate"] = float(result.estimate)
        info["se_log"] = result.details.get("se_log")
        info["n"] = int(result.n_treated + result.n_control)
    elif stage == "km_rr12":
        info["estimate"] = float(result[0].estimate)
        info["n"] = int(result[0].n_treated + result[0].n_control)
    elif stage == "cif":
        info["rows"] = len(result)
    elif stage == "write_results":
        info["files"] = sum(1 for p in Path(result).rglob("*") if p.is_file())
    return info


def run_alternative(stage: str, work: Path, data: Path, opts: dict) -> dict[str, Any]:
    """The hand-written alternative of a stage (``benchmarks/baselines.py``), measured."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    import baselines as bl

    cfg = _config()
    info: dict[str, Any] = {"scale": 1.0, "extrapolated": False}
    # imported before the measurement, as the package's modules are
    import lifelines  # noqa: F401
    import lifelines.utils  # noqa: F401
    import statsmodels.api  # noqa: F401

    if stage == "read_extract":
        call = lambda: bl.read_tables(data)  # noqa: E731
    elif stage == "derive_cohort":
        extract, cohort = _load(work, "extract"), _load(work, "cohort")
        ids = cohort["person_id"].to_numpy()
        n_max = opts["retention_max_persons"]
        if len(ids) > n_max:
            ids = np.random.default_rng(1).choice(ids, n_max, replace=False)
            info.update(scale=len(cohort) / n_max, extrapolated=True)
        info["n_run"] = len(ids)
        call = lambda: bl.retention_groupby(extract, ids, gap_days=cfg.gap_days)  # noqa: E731
    elif stage == "fit_propensity":
        df = _load(work, "cohort")
        call = lambda: bl.propensity_statsmodels(df)  # noqa: E731
    elif stage == "match":
        df = _load(work, "cohort_ps")
        m = cfg.matching
        call = lambda: bl.match_quadratic(  # noqa: E731
            df, k=m.k, caliper=m.caliper, max_treated=opts["match_max_treated"]
        )
    elif stage == "att_weights":
        df = _load(work, "cohort_ps")
        call = lambda: bl.att_weights_by_hand(df)  # noqa: E731
    elif stage == "balance_table":
        df, matched = _load(work, "cohort_ps"), _load(work, "matched")
        call = lambda: bl.balance_by_hand(df, matched)  # noqa: E731
    elif stage == "cox_matched":
        df = _load(work, "matched")
        call = lambda: bl.cox_lifelines(  # noqa: E731
            df, duration="followup_days", event="died", weights="weight", cluster="cluster"
        )
    elif stage == "cox_naive":
        df = _load(work, "cohort_ps")
        call = lambda: bl.cox_lifelines(  # noqa: E731
            df, duration="followup_days", event="died", weights=None, cluster=None
        )
    elif stage == "nb_matched":
        df = _load(work, "matched")
        call = lambda: bl.nb_statsmodels(  # noqa: E731
            df, count="followup_charges", exposure="crime_years", cluster="cluster"
        )
    elif stage == "km_rr12":
        ret = _retention_sample(_load(work, "matched"))
        call = lambda: bl.km_ratio_lifelines(  # noqa: E731
            ret,
            duration="retention_days",
            event="discontinued",
            weights="weight",
            time=cfg.retention_time_days,
        )
    elif stage == "rmst":
        ret = _retention_sample(_load(work, "matched"))
        call = lambda: bl.rmst_lifelines(  # noqa: E731
            ret,
            duration="retention_days",
            event="discontinued",
            weights="weight",
            tau=cfg.rmst_tau_days,
        )
    elif stage == "cif":
        cif_df = _cif_frame(_load(work, "matched"))
        call = lambda: bl.cif_lifelines(  # noqa: E731
            cif_df, duration="followup_days", event_type="event_type", weights="weight"
        )
    else:
        raise ValueError(stage)

    result, m = measure(call)
    info.update(m)

    # -- agreement with the package (not timed) -----------------------------------------
    if stage == "derive_cohort":
        ours = cohort.set_index("person_id").loc[result.index]
        cols = ["in_retention", "retention_days", "discontinued"]
        diff = ~(
            (ours[cols].astype(float).fillna(-1) == result[cols].astype(float).fillna(-1)).all(
                axis=1
            )
        )
        info["agreement"] = f"retention identical for {int((~diff).sum()):,}/{len(diff):,} persons"
    elif stage == "match":
        info.update(n_treated_run=result["n_treated_run"], n_treated=result["n_treated"])
        if result["subsample"]:
            info.update(scale=result["n_treated"] / result["n_treated_run"], extrapolated=True)
            info["agreement"] = (
                f"{result['n_treated_run']:,} of {result['n_treated']:,} treated "
                "(pairs not comparable)"
            )
        else:
            ours = _load(work, "pairs")
            key = ["treated_id", "control_id", "round"]
            same = ours[key].merge(result["pairs"][key], how="inner")
            info["agreement"] = f"{len(same):,}/{len(ours):,} pairs identical" + (
                "" if len(result["pairs"]) == len(ours) else f" (alt: {len(result['pairs']):,})"
            )
    elif isinstance(result, dict):
        info.update({k: v for k, v in result.items() if isinstance(v, (int, float, bool, str))})
    return info


# ======================================================================================
# driver
# ======================================================================================
def _loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def _worker(kind: str, stage: str, work: Path, data: Path, opts: dict, timeout: float | None):
    spec = {"kind": kind, "stage": stage, "work": str(work), "data": str(data), "opts": opts}
    env = {**os.environ, **THREAD_ENV, "PYTHONPATH": str(ROOT)}
    load0 = _loadavg()
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"timeout": timeout, "load": [load0, _loadavg()]}
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["load"] = [load0, _loadavg()]
    return out


def _generate(n: int, folder: Path) -> dict[str, Any]:
    n_hat = round(n * HAT_SHARE)
    cmd = [
        sys.executable, "-m", "synthetic", "--scenario", "large", "--out", str(folder),
        "--format", "parquet", "--n-hat", str(n_hat), "--n-ost", str(n - n_hat), "--quiet",
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return {"n_hat": n_hat, "n_ost": n - n_hat, "seconds": time.perf_counter() - t0}


def _parse_time_v(text: str) -> dict[str, float]:
    wall = re.search(r"Elapsed \(wall clock\) time.*?: ([\d:.]+)", text).group(1)
    parts = [float(p) for p in wall.split(":")]
    seconds = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    rss_kb = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
    return {"seconds": seconds, "max_rss_gb": rss_kb / 1024**2, "cpu_seconds": user + sys_}


def whole_run(data: Path, out: Path) -> dict[str, Any]:
    """``/usr/bin/time -v python -m evaluation.run --data DIR --no-book``: wall, max RSS."""
    cmd = [
        "/usr/bin/time", "-v", sys.executable, "-m", "evaluation.run",
        "--data", str(data), "--out", str(out), "--no-book", "--quiet",
    ]  # fmt: skip
    load0 = _loadavg()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"error": f"exit {proc.returncode}"}
    res = _parse_time_v(proc.stderr)
    manifest = json.loads((out / "manifest.json").read_text())
    res["steps_seconds"] = manifest.get("timings_seconds", {})
    res["load"] = [load0, _loadavg()]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="persons, comma-separated")
    ap.add_argument("--out", type=Path, help="folder for the JSON and markdown (required)")
    ap.add_argument("--work", type=Path, help="work folder for extracts (default: a temp dir)")
    ap.add_argument("--keep-work", action="store_true", help="keep extracts and intermediates")
    ap.add_argument("--stages", default=",".join(STAGES), help="subset of stages")
    ap.add_argument("--no-alternatives", action="store_true")
    ap.add_argument("--whole-run-sizes", default=None, help="default: every size")
    ap.add_argument("--retention-max-persons", type=int, default=20_000)
    ap.add_argument("--match-max-treated", type=int, default=5_000)
    ap.add_argument("--alt-timeout", type=float, default=1800.0, help="seconds per alternative")
    ap.add_argument("--profile", metavar="STAGE", help="cProfile this stage at the largest size")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        spec = json.loads(args.worker)
        work, data = Path(spec["work"]), Path(spec["data"])
        if spec["kind"] == "ours":
            res = run_ours(spec["stage"], work, data, None)
        elif spec["kind"] == "profile":
            res = run_ours(spec["stage"], work, data, Path(spec["opts"]["profile_path"]))
        else:
            res = run_alternative(spec["stage"], work, data, spec["opts"])
        print(json.dumps(res, default=float))
        return 0

    if args.out is None:
        ap.error("--out is required")
    sizes = [int(s) for s in args.sizes.split(",")]
    whole_sizes = (
        sizes
        if args.whole_run_sizes is None
        else [int(s) for s in args.whole_run_sizes.split(",") if s]
    )
    stages = [s for s in args.stages.split(",") if s]
    opts = {
        "retention_max_persons": args.retention_max_persons,
        "match_max_treated": args.match_max_treated,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.work or Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    report: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "method": "fresh subprocess per stage; peak = VmHWM - VmRSS before; 1 thread",
        "sizes": {},
    }
    json_path = args.out / "bench_pipeline.json"
    for n in sizes:
        work = base / f"n{n}"
        work.mkdir(parents=True, exist_ok=True)
        data = work / "extract"
        entry: dict[str, Any] = {"load_start": _loadavg()}
        print(f"== {n:,} persons: generating", file=sys.stderr, flush=True)
        if not (data / "persons.parquet").exists():
            entry["generate"] = _generate(n, data)
        entry["stages"] = {}
        for stage in stages:
            if stage == "write_results":
                continue  # needs the whole run's results folder
            ours = _worker("ours", stage, work, data, opts, None)
            alt = None
            if stage in ALTERNATIVES and not args.no_alternatives:
                alt = _worker("alt", stage, work, data, opts, args.alt_timeout)
            entry["stages"][stage] = {"ours": ours, "alternative": alt}
            print(f"   {stage}: {_brief(ours, alt)}", file=sys.stderr, flush=True)
            report["sizes"][str(n)] = entry
            json_path.write_text(json.dumps(report, indent=2, default=float))
        if n in whole_sizes:
            print(f"== {n:,} persons: whole run", file=sys.stderr, flush=True)
            entry["whole_run"] = whole_run(data, work / "whole_run")
            print(f"   whole run: {entry['whole_run']}", file=sys.stderr, flush=True)
            if "write_results" in stages and "error" not in entry["whole_run"]:
                ours = _worker("ours", "write_results", work, data, opts, None)
                entry["stages"]["write_results"] = {"ours": ours, "alternative": None}
        if args.profile and n == max(sizes):
            path = (args.out / f"profile_{args.profile}_{n}.txt").resolve()
            entry["profile"] = _worker(
                "profile", args.profile, work, data, {**opts, "profile_path": str(path)}, None
            )
        entry["load_end"] = _loadavg()
        report["sizes"][str(n)] = entry
        json_path.write_text(json.dumps(report, indent=2, default=float))
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    if not args.keep_work and args.work is None:
        shutil.rmtree(base, ignore_errors=True)
    md = render(report)
    (args.out / "bench_pipeline.md").write_text(md)
    print(md)
    return 0


# ======================================================================================
# report
# ======================================================================================
def _alt_seconds(alt: dict | None) -> float | None:
    if not alt or "seconds" not in alt:
        return None
    return alt["seconds"] * alt.get("scale", 1.0)


def _brief(ours: dict, alt: dict | None) -> str:
    s = f"ours {ours.get('seconds', float('nan')):.2f} s, {ours.get('peak_mb', float('nan')):.0f} MB"
    a = _alt_seconds(alt)
    if a is not None:
        s += f"; alt {a:.2f} s" + (" (extrapolated)" if alt.get("extrapolated") else "")
    elif alt:
        s += f"; alt {alt}"
    return s


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.2f} s" if x < 10 else f"{x:.0f} s" if x < 600 else f"{x / 60:.1f} min"


def _alt_cell(alt: dict | None) -> tuple[str, str, str]:
    if alt is None:
        return "–", "–", "–"
    if "timeout" in alt:
        return f"> {alt['timeout']:.0f} s (stopped)", "–", "–"
    if "error" in alt:
        return "failed", "–", alt["error"][:60]
    a = _alt_seconds(alt)
    t = _fmt_s(a) + (f" (extrapolated ×{alt['scale']:.0f})" if alt.get("extrapolated") else "")
    return t, f"{alt['peak_mb']:,.0f} MB", alt.get("agreement", _agree(alt))


def _agree(alt: dict) -> str:
    if "estimate" in alt:
        se = f", SE {alt['se_log']:.4f}" if alt.get("se_log") is not None else ""
        return f"{alt['estimate']:.4f}{se}"
    return ""


def render(report: dict) -> str:
    """Markdown: a stage x size summary, the long table, and the whole runs."""
    sizes = list(report["sizes"])
    loads = [
        v
        for e in report["sizes"].values()
        for st in e.get("stages", {}).values()
        for r in (st.get("ours"), st.get("alternative"))
        if r and "load" in r
        for v in (r["load"][0][0], r["load"][1][0])
    ]
    lines = [
        f"Measured {report['date'][:10]} on {report['machine']['cpus']} cores shared with other "
        f"jobs (1-minute load average {min(loads, default=0):.1f}–{max(loads, default=0):.1f} "
        f"during the stage runs); Python {report['machine']['python']}; each stage in a fresh "
        "single-threaded subprocess; peak = most memory needed on top of the stage's inputs.",
        "",
        "Summary: our time / peak memory / speed-up over the hand-written alternative "
        "(alternative time ÷ our time; * = alternative timed on a subsample and extrapolated).",
        "",
        "| stage | " + " | ".join(f"{int(n):,} persons" for n in sizes) + " |",
        "| --- | " + " | ".join("---" for _ in sizes) + " |",
    ]
    for stage in STAGES:
        cells = []
        for n in sizes:
            st = report["sizes"][n].get("stages", {}).get(stage)
            if not st or "seconds" not in st["ours"]:
                cells.append("–")
                continue
            o = st["ours"]
            a = _alt_seconds(st.get("alternative"))
            ratio = "–"
            if a is not None:
                ratio = f"{a / o['seconds']:.1f}×" + (
                    "*" if st["alternative"].get("extrapolated") else ""
                )
            elif st.get("alternative") and "timeout" in st["alternative"]:
                ratio = f"> {st['alternative']['timeout'] / o['seconds']:.0f}×"
            cells.append(f"{_fmt_s(o['seconds'])} / {o['peak_mb']:,.0f} MB / {ratio}")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| stage | persons | ours: wall | ours: CPU | ours: peak | alternative | alt: wall | "
        "alt: peak | alt ÷ ours | ours: result | alternative: result / agreement |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for stage in STAGES:
        for n in sizes:
            st = report["sizes"][n].get("stages", {}).get(stage)
            if not st:
                continue
            o, alt = st["ours"], st.get("alternative")
            if "seconds" not in o:
                lines.append(f"| {stage} | {int(n):,} | failed | | | | | | | {o} | |")
                continue
            a_time, a_peak, a_agree = _alt_cell(alt)
            a = _alt_seconds(alt)
            ratio = f"{a / o['seconds']:.1f}×" if a is not None else "–"
            ours_res = _agree(o) if "estimate" in o else ""
            lines.append(
                f"| {stage} | {int(n):,} | {_fmt_s(o['seconds'])} | {_fmt_s(o['cpu_seconds'])} | "
                f"{o['peak_mb']:,.0f} MB | {ALTERNATIVES.get(stage, '–') if alt else '–'} | "
                f"{a_time} | {a_peak} | {ratio} | {ours_res} | {a_agree} |"
            )
    lines += [
        "",
        "Whole study, `/usr/bin/time -v python -m evaluation.run --data DIR --no-book`:",
        "",
        "| persons | wall | CPU (user+sys) | max RSS | load avg (start → end) | "
        "steps (s, from the manifest) |",
        "| ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for n in sizes:
        w = report["sizes"][n].get("whole_run")
        if not w:
            continue
        if "error" in w:
            lines.append(f"| {int(n):,} | {w['error']} | | | | |")
            continue
        steps = ", ".join(f"{k} {v:.0f}" for k, v in w["steps_seconds"].items())
        lines.append(
            f"| {int(n):,} | {_fmt_s(w['seconds'])} | {_fmt_s(w['cpu_seconds'])} | "
            f"{w['max_rss_gb']:.2f} GB | {w['load'][0][0]:.1f} → {w['load'][1][0]:.1f} | {steps} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
