"""Benchmark the synthetic generator: time and peak memory at 10k, 100k and 1M persons.

Each size runs in a fresh subprocess (so peak memory is that size's own) and reports

* ``truth``: computing the true effects (2 x 200,000 coupled potential outcomes for the
  default parameters; independent of the data's size, cached within a process);
* ``generate``: drawing the tables (persons, episodes, deaths, charges, prison stays) once
  the truth is cached;
* ``write``: writing the extract with ``analysis.data.extract.write_extract`` (``--format``);
* ``peak RSS``: the process's peak resident set size (``resource.getrusage``), which
  includes the interpreter with numpy, pandas and pyarrow loaded (about 0.2 GB).

The simple alternative is the same course simulation called person by person (a Python
loop over persons); it is timed on ``--loop-persons`` persons and extrapolated.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_synthetic.py
    .venv/bin/python benchmarks/bench_synthetic.py --sizes 10000 100000 --format csv
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from the repository root
    sys.path.insert(0, str(ROOT))


def _one(n: int, fmt: str) -> dict:
    import numpy as np

    from synthetic import generate, load_scenario, write
    from synthetic.truth import compute_truth

    n_hat = max(1, n // 25)
    spec = load_scenario("large", n_hat=n_hat, n_ost=n - n_hat)
    t0 = time.perf_counter()
    compute_truth(spec)
    t1 = time.perf_counter()
    tables, truth = generate(spec, np.random.default_rng(1))
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write(tables, truth, Path(tmp) / "extract", spec=spec, format=fmt)
        t3 = time.perf_counter()
    rows = sum(len(df) for df in tables.values())
    return {
        "persons": n,
        "rows": rows,
        "truth_s": t1 - t0,
        "generate_s": t2 - t1,
        "write_s": t3 - t2,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def _loop(n: int) -> float:
    """Seconds per person for the simple alternative: the course simulated one by one."""
    import numpy as np

    from synthetic import load_scenario
    from synthetic.outcomes import simulate_course
    from synthetic.population import day_number, multipliers, ost_candidates

    spec = load_scenario("default")
    people = ost_candidates(n, spec, np.random.default_rng(1))
    mult = multipliers(people, spec)
    admin = (day_number(spec.extract_date) - people.index_day) + 1.0
    rng = np.random.default_rng(2)
    t0 = time.perf_counter()
    for i in range(n):
        s = slice(i, i + 1)
        simulate_course(
            first_med=people.current_med[s],
            first_start=people.current_start[s].astype(float),
            treatment_mult=mult["treatment"][s],
            mortality_mult=mult["mortality"][s],
            admin_end=admin[s],
            emigration_time=np.full(1, np.inf),
            spec=spec,
            rng=rng,
        )
    return (time.perf_counter() - t0) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--format", choices=("csv", "parquet"), default="parquet")
    parser.add_argument("--loop-persons", type=int, default=2000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one, args.format)))
        return 0
    print(
        f"| persons | rows | truth (s) | generate (s) | write {args.format} (s) | peak RSS (GB) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.sizes:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--format", args.format],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": ""},
            check=True,
        )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"| {r['persons']:,} | {r['rows']:,} | {r['truth_s']:.1f} | {r['generate_s']:.1f} "
            f"| {r['write_s']:.1f} | {r['peak_rss_gb']:.2f} |"
        )
    if args.loop_persons:
        per = _loop(args.loop_persons)
        print(
            f"\nsimple alternative (course simulated person by person, {args.loop_persons:,} "
            f"persons): {per * 1e3:.2f} ms/person, about {per * 1e6 / 60:.0f} min per 1M "
            "persons for the course alone"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
