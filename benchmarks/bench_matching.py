"""Benchmark ``analysis.design.matching.match`` against its previous version and the naive search.

Data: registry-like logit propensity scores, treated ~ N(-4.6 + shift, 1), controls
~ N(-4.6, 1) (about 1 % treated at shift 0); four regions, HAT only in two of them
(exact matching on region); ``person_id`` strings. ``--shift 1`` is moderate
confounding, ``--shift 2`` strong (treated outnumber controls in the upper tail, so
long chains of conflicts); ``--round 2`` rounds scores to 2 decimals, giving the
massive ties that discrete registry covariates produce.

Each scenario runs in a fresh subprocess, single-threaded, and reports

* wall time of the ``match()`` call only (data generation excluded), best of
  ``--repeat``;
* peak memory: the rise in the process's peak resident set size during that call
  (``VmHWM`` after, reset through ``/proc/self/clear_refs``, minus ``VmRSS`` before).

``--before DIR`` runs every scenario a second time with the package found in ``DIR`` (an
older version, e.g. ``git archive <commit> | tar -x -C DIR``), in the same run, and checks
that both versions give identical pairs. ``--cohort FILE`` matches a pickled cohort table
with ``ps_logit`` (``cohort_ps.pkl`` of ``bench_pipeline.py``'s work folder) as the study
does, three times: 1:4 at calipers 0.2 and 0.1 SD and 1:1, exact on region.

The naive reference is the textbook sequential algorithm: one treated person at a
time (descending score), distances to every control of its region (one numpy
vector per person), ``k`` rounds: ``O(n_treated * n_control * k)``. It is run at a
small size only, its pairs compared with ours, and the speed ratio printed.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_matching.py                  # 10k x 100k, 10k x 1M
    .venv/bin/python benchmarks/bench_matching.py --shift 2 --round 2
    .venv/bin/python benchmarks/bench_matching.py --sizes 10000x1000000 --k 1 --replace
    .venv/bin/python benchmarks/bench_matching.py --before /tmp/old --cohort /tmp/b/cohort_ps.pkl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
REGIONS = np.array(["south-east", "west", "central", "north"])


def make_data(
    n_treated: int,
    n_control: int,
    *,
    shift: float = 1.0,
    decimals: int | None = None,
    seed: int = 1,
) -> pd.DataFrame:
    """Logit scores, treatment, region (HAT in south-east and west only), string ids."""
    rng = np.random.default_rng(seed)
    n = n_treated + n_control
    treated = np.r_[np.ones(n_treated, np.int64), np.zeros(n_control, np.int64)]
    region = np.where(
        treated == 1,
        rng.choice(REGIONS[:2], n, p=[0.6, 0.4]),
        rng.choice(REGIONS, n, p=[0.4, 0.25, 0.2, 0.15]),
    )
    logit = rng.normal(-4.6, 1.0, n) + shift * treated
    if decimals is not None:
        logit = np.round(logit, decimals)
    ids = np.char.add("P", np.char.zfill(rng.permutation(n).astype(str), 8)).astype(object)
    return pd.DataFrame(
        {"person_id": ids, "treatment": treated, "region": region, "ps_logit": logit}
    )


def naive_match(df: pd.DataFrame, *, k: int, caliper: float) -> pd.DataFrame:
    """Sequential greedy matching with a full distance vector per treated person."""
    from analysis.design.matching import caliper_width

    ids = df["person_id"].to_numpy()
    s = df["ps_logit"].to_numpy()
    tr = df["treatment"].to_numpy() == 1
    region = df["region"].to_numpy()
    width = caliper_width(s, tr, caliper)
    ti = np.flatnonzero(tr)
    ti = ti[np.lexsort((ids[ti], -s[ti]))]
    ci = np.flatnonzero(~tr)
    ci = ci[np.argsort(ids[ci], kind="stable")]  # ties in distance -> lowest person_id
    pools = {r: ci[region[ci] == r] for r in np.unique(region[ti])}
    free = {r: np.ones(len(p), bool) for r, p in pools.items()}
    out = []
    active = list(ti)
    for rnd in range(1, k + 1):
        nxt = []
        for t in active:
            pool, ok = pools[region[t]], free[region[t]]
            d = np.where(ok, np.abs(s[pool] - s[t]), np.inf)
            j = int(np.argmin(d))
            if d[j] <= width:
                ok[j] = False
                out.append((ids[t], ids[pool[j]], rnd))
                nxt.append(t)
        active = nxt
    return pd.DataFrame(out, columns=["treated_id", "control_id", "round"])


def _status_kb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return float(line.split()[1])
    return float("nan")


def _peak_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


#: the study's three matchings of a cohort (``--cohort``): name -> (k, caliper)
STUDY_MATCHINGS = {"1:4, caliper 0.2": (4, 0.2), "1:4, caliper 0.1": (4, 0.1), "1:1": (1, 0.2)}


def worker(spec: dict) -> dict:
    """Run one scenario in this process; return timings and peak memory."""
    sys.path.insert(0, spec.get("root") or str(ROOT))
    from analysis.design.matching import match

    if spec.get("cohort"):
        df = pd.read_pickle(spec["cohort"])
    else:
        df = make_data(
            spec["n_treated"], spec["n_control"], shift=spec["shift"], decimals=spec["round"]
        )
    best, peak, cpu, result = float("inf"), float("nan"), float("nan"), None
    for _ in range(spec["repeat"]):
        before = _status_kb("VmRSS:")
        reset = _peak_reset()
        t0, c0 = time.perf_counter(), time.process_time()
        if spec["method"] == "naive":
            result = naive_match(df, k=spec["k"], caliper=spec["caliper"])
        else:
            m = match(
                df,
                treatment="treatment",
                score="ps_logit",
                id="person_id",
                k=spec["k"],
                caliper=spec["caliper"],
                exact=("region",),
                replace=spec["replace"],
            )
            result = m.pairs[["treated_id", "control_id", "round"]]
        elapsed, cpu_i = time.perf_counter() - t0, time.process_time() - c0
        peak_i = (_status_kb("VmHWM:") - before) / 1024 if reset else float("nan")
        if elapsed < best:
            best, peak, cpu = elapsed, peak_i, cpu_i
    pairs = result.sort_values(["treated_id", "round"]).reset_index(drop=True)
    return {
        "seconds": best,
        "cpu_seconds": cpu,
        "peak_mb": peak,
        "n_pairs": len(pairs),
        "n_treated_matched": int(pairs["treated_id"].nunique()),
        "digest": int(pd.util.hash_pandas_object(pairs, index=False).sum() % (2**61)),
    }


def run(spec: dict, before: str | None = None) -> dict:
    """One scenario in a fresh subprocess (with ``before``: also with that package, both
    results under ``"before"``)."""
    out = _run(spec)
    if before:
        out["before"] = _run({**spec, "root": before})
    return out


def _run(spec: dict) -> dict:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000x100000,10000x1000000")
    parser.add_argument("--naive-size", default="2000x200000", help="size of the naive comparison")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--caliper", type=float, default=0.2)
    parser.add_argument("--replace", action="store_true")
    parser.add_argument("--shift", type=float, default=1.0)
    parser.add_argument("--round", type=int, default=None, help="round scores to N decimals")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--before", help="folder holding an older version of the package")
    parser.add_argument("--cohort", help="pickled cohort with ps_logit: the study's matchings")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    base = {
        "k": args.k,
        "caliper": args.caliper,
        "replace": args.replace,
        "shift": args.shift,
        "round": args.round,
        "repeat": args.repeat,
    }
    load = os.getloadavg()
    print(
        f"# match(): k={args.k}, caliper={args.caliper} SD, replace={args.replace}, "
        f"shift={args.shift}, rounded to {args.round} decimals; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"single-threaded; load average {load[0]:.1f}"
    )
    cols = "| n treated | n control | method | seconds (CPU) | peak MB | pairs | treated matched |"
    if args.before:
        cols += " before: seconds (CPU) | peak MB | speed-up (CPU) | identical pairs |"
    print(cols)
    print("|---:|---:|---|---:|---:|---:|---:|" + ("---:|---:|---:|---|" if args.before else ""))

    def row(nt, nc, method, r):
        line = (
            f"| {nt} | {nc} | {method} | {r['seconds']:.2f} ({r['cpu_seconds']:.2f}) "
            f"| {r['peak_mb']:.0f} "
            f"| {r['n_pairs']:,} | {r['n_treated_matched']:,} |"
        )
        if args.before:
            b = r.get("before")
            line += (
                f" {b['seconds']:.2f} ({b['cpu_seconds']:.2f}) | {b['peak_mb']:.0f} "
                f"| {b['seconds'] / r['seconds']:.1f}x ({b['cpu_seconds'] / r['cpu_seconds']:.1f}x) "
                f"| {b['digest'] == r['digest']} |"
                if b
                else " | | | |"
            )
        print(line, flush=True)
        if b := r.get("before"):
            if b["digest"] != r["digest"]:
                raise SystemExit(f"pairs differ from the previous version: {nt} x {nc}")

    for size in args.sizes.split(",") if args.sizes else []:
        nt, nc = (int(x) for x in size.split("x"))
        spec = {**base, "n_treated": nt, "n_control": nc, "method": "ours"}
        row(f"{nt:,}", f"{nc:,}", "ours", run(spec, args.before))
    if args.cohort:
        for name, (k, caliper) in STUDY_MATCHINGS.items():
            spec = {**base, "k": k, "caliper": caliper, "replace": False, "method": "ours"}
            row("cohort", "", name, run({**spec, "cohort": args.cohort}, args.before))
    if args.naive_size and not args.replace:
        nt, nc = (int(x) for x in args.naive_size.split("x"))
        ours = run({**base, "n_treated": nt, "n_control": nc, "method": "ours"})
        naive = run({**base, "n_treated": nt, "n_control": nc, "method": "naive", "repeat": 1})
        row(f"{nt:,}", f"{nc:,}", "ours", ours)
        row(f"{nt:,}", f"{nc:,}", "naive (quadratic)", naive)
        same = ours["digest"] == naive["digest"]
        print(
            f"\nnaive / ours time ratio at {nt:,} x {nc:,}: "
            f"{naive['seconds'] / ours['seconds']:.1f}x; identical pairs: {same}"
        )
        if not same:
            raise SystemExit("pairs differ from the naive sequential algorithm")


if __name__ == "__main__":
    main()
