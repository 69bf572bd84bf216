"""Benchmark ``analysis.outcomes.coxph.fit_cox`` against R's ``survival::coxph`` and lifelines.

All three fit the same simulated registry-like data: 10 covariates (3 binary, 7 continuous),
follow-up up to 10 years, Efron ties.
Each fit runs in a fresh subprocess, single-threaded (``OMP/OPENBLAS_NUM_THREADS=1``; R's
``coxph`` is single-threaded C), and reports

* wall time of the fitting call only (data loading excluded; for R, ``system.time`` around
  ``coxph()``), best of ``--repeat`` runs (lifelines: one run);
* peak memory: the rise in the process's peak resident set size during that call
  (``VmHWM`` after, reset through ``/proc/self/clear_refs``, minus ``VmRSS`` before), largest
  over the runs.

Scenarios:

* ``days``: follow-up in whole days, so event times are heavily tied (about 3,600 distinct
  event times however large n is), as in registry data; ``coxph(Surv(time, event) ~ .)``;
* ``days+weights+cluster`` (ours and R only): the same with case weights and a cluster-robust
  variance over 200 sites;
* ``exact``: the same follow-up to 1e-4 days, so event times are (almost all) untied.

R's robust
variance (survival 3.5.3, the Debian package) computes score residuals in O(n^2) time (about
10 s at 40k rows), so R runs that scenario once and only up to ``--r-robust-max-rows``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_cox.py                       # 100k and 1M rows
    .venv/bin/python benchmarks/bench_cox.py --sizes 100000 --lifelines-max-rows 100000

Prints a markdown table and the largest coefficient difference from R.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

P = 10
N_SITES = 200
R_SCRIPT = r"""
suppressPackageStartupMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
path <- args[1]; n <- as.integer(args[2]); p <- as.integer(args[3])
repeats <- as.integer(args[4]); scenario <- args[5]
con <- file(path, "rb"); m <- readBin(con, "double", n * (p + 5)); close(con)
m <- matrix(m, nrow = n)
d <- data.frame(m[, 1:p]); names(d) <- paste0("x", seq_len(p) - 1)
d$time <- m[, if (scenario == "exact") p + 5 else p + 1]
d$event <- m[, p + 2]; w <- m[, p + 3]; site <- m[, p + 4]
rm(m); invisible(gc())
f <- as.formula(paste("Surv(time, event) ~", paste(names(d)[1:p], collapse = " + ")))
status_kb <- function(key) {
  s <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", s[startsWith(s, key)]))
}
best <- Inf; peak <- 0
for (i in seq_len(repeats)) {
  invisible(gc())
  writeLines("5", "/proc/self/clear_refs")
  before <- status_kb("VmRSS:")
  if (scenario != "days+weights+cluster") {
    st <- system.time(fit <- coxph(f, data = d, ties = "efron"))
  } else {
    st <- system.time(fit <- coxph(f, data = d, ties = "efron", weights = w, cluster = site))
  }
  peak_i <- (status_kb("VmHWM:") - before) / 1024
  best <- min(best, st[["elapsed"]]); peak <- max(peak, peak_i)
}
se <- sqrt(diag(fit$var))  # robust when a cluster was given
cat(sprintf('{"seconds": %.4f, "peak_mb": %.1f, "coef": [%s], "se": [%s], "n_iter": %d}\n',
            best, peak, paste(sprintf("%.12g", coef(fit)), collapse = ", "),
            paste(sprintf("%.12g", se), collapse = ", "), fit$iter))
"""


def make_data(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Registry-like Cox data: day-resolution times (heavy ties), 10 covariates."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, P))
    X[:, :3] = rng.binomial(1, [0.3, 0.5, 0.7], size=(n, 3))
    beta = np.linspace(-0.4, 0.4, P)
    t_event = rng.exponential(365.25 * 6.0 * np.exp(-X @ beta))
    t_cens = rng.uniform(30.0, 3652.0, n)
    exact = np.minimum(t_event, t_cens)
    event = (t_event <= t_cens).astype(float)
    weights = rng.uniform(0.5, 2.0, n)
    site = rng.integers(0, N_SITES, n).astype(float)
    return {
        "X": X,
        "time": np.ceil(exact),
        "event": event,
        "weights": weights,
        "site": site,
        # 1e-4 days: beyond the resolution at which R's timefix would merge near-equal times
        "time_exact": np.round(exact, 4),
    }


def _status_kb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return float(line.split()[1])
    return float("nan")


def _measure(call, repeats: int) -> tuple[float, float, object]:
    """Best time and largest peak-RSS rise over ``repeats`` calls, and the last result."""
    best, peak, result = float("inf"), 0.0, None
    for _ in range(repeats):
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_kb("VmRSS:")
        t0 = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - t0
        peak_i = (_status_kb("VmHWM:") - before) / 1024
        best, peak = min(best, seconds), max(peak, peak_i)
    return best, peak, result


def worker(tool: str, data_path: str, repeats: int, scenario: str) -> dict:
    """Run inside a fresh subprocess: load the data, time the fit, return JSON-able results."""
    data = dict(np.load(data_path))
    if tool == "ours":
        from analysis.outcomes.coxph import fit_cox

        kw = {}
        if scenario == "days+weights+cluster":
            kw = {"weights": data["weights"], "cluster": data["site"]}
        time_ = data["time_exact" if scenario == "exact" else "time"]
        seconds, peak, res = _measure(
            lambda: fit_cox(data["X"], time_, data["event"], **kw), repeats
        )
        se = res.robust_se if kw else res.se
        return {
            "seconds": seconds,
            "peak_mb": peak,
            "coef": res.params.tolist(),
            "se": se.tolist(),
            "n_iter": res.n_iter,
        }
    if tool == "lifelines":
        import warnings

        import pandas as pd
        from lifelines import CoxPHFitter

        df = pd.DataFrame(data["X"], columns=[f"x{j}" for j in range(P)])
        df["time"] = data["time_exact" if scenario == "exact" else "time"]
        df["event"] = data["event"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds, peak, cph = _measure(lambda: CoxPHFitter().fit(df, "time", "event"), repeats)
        return {"seconds": seconds, "peak_mb": peak, "coef": cph.params_.tolist(), "n_iter": None}
    raise ValueError(tool)


def _run(cmd: list[str], timeout: float | None) -> dict | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env["MKL_NUM_THREADS"] = "1"
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, check=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        print(exc.stderr, file=sys.stderr)
        raise
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3, help="runs per fit (best is reported)")
    ap.add_argument("--lifelines-max-rows", type=int, default=100_000)
    ap.add_argument("--lifelines-timeout", type=float, default=600.0, help="seconds")
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--r-robust-max-rows", type=int, default=100_000)
    ap.add_argument("--scenarios", nargs="+", default=["days", "days+weights+cluster", "exact"])
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument("--worker", nargs=4, metavar=("TOOL", "DATA", "REPEAT", "SCENARIO"))
    args = ap.parse_args(argv)
    if args.worker:
        tool, data_path, repeats, scenario = args.worker
        print(json.dumps(worker(tool, data_path, int(repeats), scenario)))
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_cox_") as tmp:
        r_script = Path(tmp, "fit.R")
        r_script.write_text(R_SCRIPT)
        for n in args.sizes:
            data = make_data(n)
            npz = Path(tmp, f"data_{n}.npz")
            np.savez(npz, **data)
            cols = [data[k] for k in ("X", "time", "event", "weights", "site", "time_exact")]
            binf = Path(tmp, f"data_{n}.bin")
            np.column_stack(cols).T.astype("<f8").tofile(binf)  # column-major for R
            n_events = int(data["event"].sum())
            n_times = {
                key: int(np.unique(data[col][data["event"] == 1]).size)
                for key, col in (("days", "time"), ("exact", "time_exact"))
            }
            del data, cols
            for scenario in args.scenarios:
                robust = scenario == "days+weights+cluster"
                runs = {}
                base = [sys.executable, __file__, "--worker"]
                runs["ours"] = _run([*base, "ours", str(npz), str(args.repeat), scenario], None)
                if args.no_r:
                    pass
                elif not robust or n <= args.r_robust_max_rows:
                    repeats = 1 if robust else args.repeat
                    r_args = [str(binf), str(n), str(P), str(repeats), scenario]
                    runs["R coxph"] = _run(["Rscript", str(r_script), *r_args], None)
                else:
                    runs["R coxph"] = {"skipped": True}
                if not robust:
                    if n <= args.lifelines_max_rows:
                        cmd = [*base, "lifelines", str(npz), "1", scenario]
                        runs["lifelines"] = _run(cmd, args.lifelines_timeout) or {
                            "seconds": float("nan"),
                            "peak_mb": float("nan"),
                            "timeout": args.lifelines_timeout,
                        }
                    else:
                        runs["lifelines"] = {"skipped": True}
                rows.append(
                    {
                        "n": n,
                        "n_events": n_events,
                        "event_times": n_times["exact" if scenario == "exact" else "days"],
                        "scenario": scenario,
                        **runs,
                    }
                )
                print(f"done n={n} {scenario}", file=sys.stderr, flush=True)

    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(render(rows))


def _fmt(run: dict | None, what: str) -> str:
    if run is None:
        return "–"
    if run.get("skipped"):
        return "not run"
    if "timeout" in run:
        return f"> {run['timeout']:.0f} s (timeout)"
    value = run[what]
    return f"{value:.2f} s" if what == "seconds" else f"{value:,.0f} MB"


def render(rows: list[dict]) -> str:
    """Markdown table of times, peak memory, speed-up and agreement with R."""
    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), single-threaded fits; "
        f"Python {platform.python_version()}, numpy {np.__version__}.",
        "",
        "| rows | events (event times) | model | ours | R coxph | lifelines | "
        "ours peak mem | R peak mem | lifelines peak mem | R / ours | max abs diff vs R: coef, SE |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ours, r, ll = row.get("ours"), row.get("R coxph"), row.get("lifelines")
        has_r = bool(r and ours and "coef" in r)
        ratio = f"{r['seconds'] / ours['seconds']:.1f}×" if has_r else "–"
        diff = "–"
        if has_r:
            d_coef = np.max(np.abs(np.subtract(ours["coef"], r["coef"])))
            d_se = np.max(np.abs(np.subtract(ours["se"], r["se"])))
            diff = f"{d_coef:.1e}, {d_se:.1e}"
        lines.append(
            f"| {row['n']:,} | {row['n_events']:,} ({row['event_times']:,}) | "
            f"{row['scenario']} | {_fmt(ours, 'seconds')} | {_fmt(r, 'seconds')} | "
            f"{_fmt(ll, 'seconds')} | {_fmt(ours, 'peak_mb')} | {_fmt(r, 'peak_mb')} | "
            f"{_fmt(ll, 'peak_mb')} | {ratio} | {diff} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
