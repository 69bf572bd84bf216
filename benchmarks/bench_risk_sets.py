"""Benchmark the target trial's risk sets (``analysis.data.risk_sets``) on history extracts.

A random history extract (contract version 2) is generated here, vectorised with a
seeded numpy Generator (not with the synthetic package): ``--candidates`` persons in
OST (a long methadone or buprenorphine episode, open in most cases; some stop and
restart, some die or emigrate) and ``--initiators`` persons who switch from OST to HAT
on a date between 2022-01-01 and 2025-12-31 (one in ten comes from outside
treatment), with yearly status forms, charges, overdoses and prison stays.

Each measurement runs in a fresh Python process, single-threaded, which builds the
extract (not timed), runs ``gc.collect()`` and glibc ``malloc_trim(0)``, resets the
kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``), reads ``VmRSS``, runs
the call once and reads ``VmHWM``: **peak** = ``VmHWM`` - ``VmRSS`` before, the memory
the call needed on top of the extract and the imported libraries.

Calls:

``whole``
    ``derive_risk_sets(history)``: every row (initiators, candidates and the not
    eligible with their reasons) in one DataFrame.
``stream``
    ``iter_risk_sets(history, not_eligible=False, max_rows=M)``: the same rows in
    pieces of consecutive index dates (``max(1, M // persons)`` dates each); each
    piece is reduced to counts and dropped, as a consumer that writes pieces to disk
    or fits on them would. Memory is bounded by ``M``, not by the number of rows.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_risk_sets.py                       # 250 x 8,000
    .venv/bin/python benchmarks/bench_risk_sets.py --initiators 2500 --candidates 1000000 \\
        --calls stream --max-rows 4000000
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.data.contract import ASSESSMENT_COVARIATES  # noqa: E402
from analysis.data.extract import HistoryExtract  # noqa: E402
from analysis.data.risk_sets import derive_risk_sets, iter_risk_sets  # noqa: E402

HISTORY_START = np.datetime64("2015-01-01")
EXTRACT_DATE = np.datetime64("2025-12-31")
FIRST_HAT = np.datetime64("2022-01-01")


def _dates(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype("datetime64[s]")


def random_history(n_initiators: int, n_candidates: int, seed: int = 1) -> HistoryExtract:
    """A random history extract, vectorised (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = n_initiators + n_candidates
    width = len(str(n))
    ids = np.char.add("P", np.char.zfill(np.arange(n).astype(str), width)).astype(object)
    start0 = HISTORY_START.astype(np.int64)
    end0 = EXTRACT_DATE.astype(np.int64)
    hat0 = FIRST_HAT.astype(np.int64)

    emigration = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    moved = rng.random(n) < 0.02
    emigration[moved] = rng.integers(hat0, end0, moved.sum()).astype("datetime64[D]")
    persons = pd.DataFrame(
        {
            "person_id": ids,
            "sex": np.where(rng.random(n) < 0.3, "F", "M").astype(object),
            "birth_year": rng.integers(1955, 2004, n),
            "region": rng.choice(
                np.array(["south-east", "west", "central", "north"], dtype=object),
                n,
                p=[0.45, 0.25, 0.15, 0.15],
            ),
            "emigration_date": emigration.astype("datetime64[s]"),
        }
    )

    # OST: a first episode from before the registries' start to an end or open; a
    # quarter stop for a while and come back (gaps of 1 to 120 days)
    first_start = rng.integers(start0 - 3000, start0 + 2000, n)
    index = np.full(n, end0 + 1)
    index[:n_initiators] = rng.integers(hat0, end0 + 1, n_initiators)
    from_outside = np.zeros(n, dtype=bool)
    from_outside[:n_initiators] = rng.random(n_initiators) < 0.1
    first_end = np.where(from_outside, index - rng.integers(30, 400, n), index - 1)
    stops = (rng.random(n) < 0.25) & (np.arange(n) >= n_initiators)
    stop_day = rng.integers(hat0 - 800, end0, n)
    first_end = np.where(stops, stop_day, first_end)
    first_start = np.minimum(first_start, first_end - 30)
    open_first = (np.arange(n) >= n_initiators) & ~stops
    second = stops & (rng.random(n) < 0.7)
    second_start = stop_day + rng.integers(1, 120, n)
    code = np.concatenate([np.arange(n), np.flatnonzero(second), np.arange(n_initiators)])
    starts = np.concatenate([first_start, second_start[second], index[:n_initiators]])
    ends = np.concatenate(
        [
            np.where(open_first, -1, first_end),
            np.full(second.sum(), -1),
            np.where(
                rng.random(n_initiators) < 0.3,
                index[:n_initiators] + rng.integers(30, 700, n_initiators),
                -1,
            ),
        ]
    )
    ends = np.where(ends > end0, -1, ends)
    medication = np.concatenate(
        [
            rng.choice(np.array(["methadone", "buprenorphine"], dtype=object), n + second.sum()),
            np.full(n_initiators, "diacetylmorphine", dtype=object),
        ]
    )
    end_dates = _dates(np.where(ends < 0, 0, ends))
    end_dates[ends < 0] = np.datetime64("NaT")
    episodes = pd.DataFrame(
        {
            "person_id": ids[code],
            "start_date": _dates(starts),
            "end_date": end_dates,
            "medication": medication,
        }
    )

    dead = rng.random(n) < 0.05
    deaths = pd.DataFrame(
        {
            "person_id": ids[dead],
            "death_date": _dates(rng.integers(hat0, end0 + 200, dead.sum())),
            "cause": rng.choice(np.array(["overdose", "other"], dtype=object), dead.sum()),
        }
    )
    k = rng.poisson(5, n)
    c_code = np.repeat(np.arange(n), k)
    charges = pd.DataFrame(
        {
            "person_id": ids[c_code],
            "charge_date": _dates(rng.integers(start0, end0 + 1, len(c_code))),
            "offence": rng.choice(
                np.array(["property", "drug", "violence", "other"], dtype=object), len(c_code)
            ),
        }
    )
    k = rng.poisson(0.3, n)
    s_code = np.repeat(np.arange(n), k)
    s_start = rng.integers(start0, end0, len(s_code))
    stays = pd.DataFrame(
        {
            "person_id": ids[s_code],
            "start_date": _dates(s_start),
            "end_date": _dates(s_start + rng.integers(1, 200, len(s_code))),
        }
    )
    # yearly status forms from 2015 on a person-specific day of the year (unique dates)
    years = int((end0 - start0) // 365)
    a_code = np.repeat(np.arange(n), years)
    a_day = start0 + np.tile(np.arange(years) * 365, n) + np.repeat(rng.integers(0, 365, n), years)
    keep = rng.random(len(a_code)) < 0.8
    a_code, a_day = a_code[keep], a_day[keep]
    forms = {"person_id": ids[a_code], "assessment_date": _dates(a_day)}
    forms["years_opioid_use"] = rng.uniform(0, 30, len(a_code))
    for column in ASSESSMENT_COVARIATES[1:]:
        forms[column] = np.where(
            rng.random(len(a_code)) < 0.05, np.nan, rng.random(len(a_code)) < 0.4
        ).astype(float)
    k = rng.poisson(0.3, n)
    o_code = np.repeat(np.arange(n), k)
    overdoses = pd.DataFrame(
        {"person_id": ids[o_code], "overdose_date": _dates(rng.integers(start0, end0, len(o_code)))}
    )
    return HistoryExtract(
        persons=persons,
        treatment_episodes=episodes,
        deaths=deaths,
        charges=charges,
        incarcerations=stays,
        assessments=pd.DataFrame(forms),
        overdoses=overdoses,
        extract_date=pd.Timestamp(str(EXTRACT_DATE)),
        history_start=pd.Timestamp(str(HISTORY_START)),
    )


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise KeyError(key)


def measure(case: dict) -> dict:
    """One measurement in this process (see the module docstring)."""
    history = random_history(case["initiators"], case["candidates"], seed=case["seed"])
    n_rows = {"episodes": len(history.treatment_episodes), "charges": len(history.charges),
              "assessments": len(history.assessments)}  # fmt: skip
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    rss = _status_kb("VmRSS:")
    wall, cpu = time.perf_counter(), time.process_time()
    if case["call"] == "whole":
        result = derive_risk_sets(history)
        table = result.table
        counts = table["role"].value_counts().to_dict()
        rows, pieces = len(table), 1
        table_mb = table.memory_usage(deep=False).sum() / 2**20
        dates = table["index_date"].nunique()
    else:
        counts: dict[str, int] = {}
        rows = pieces = 0
        table_mb = 0.0
        seen = set()
        stream = iter_risk_sets(history, not_eligible=False, max_rows=case["max_rows"])
        for piece in stream:
            t = piece.table
            for role, k in t["role"].value_counts().items():
                counts[role] = counts.get(role, 0) + int(k)
            rows += len(t)
            pieces += 1
            table_mb = max(table_mb, t.memory_usage(deep=False).sum() / 2**20)
            seen.update(t["index_date"].unique().tolist())
            del t, piece
            if case["max_pieces"] and pieces >= case["max_pieces"]:
                break
        dates = len(seen)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    hwm = _status_kb("VmHWM:")
    persons = case["initiators"] + case["candidates"]
    return {
        **case,
        **n_rows,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "peak_mb": round((hwm - rss) / 1024, 1),
        "rss_before_mb": round(rss / 1024, 1),
        "all_dates": int(
            np.unique(
                history.treatment_episodes.loc[
                    history.treatment_episodes["medication"] == "diacetylmorphine", "start_date"
                ]
            ).size
        ),
        "rows_out": rows,
        "pieces": pieces,
        "dates": dates,
        "person_dates": dates * persons,
        "largest_table_mb": round(table_mb, 1),
        "roles": {str(k): int(v) for k, v in counts.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--initiators", type=int, default=250)
    parser.add_argument("--candidates", type=int, default=8000)
    parser.add_argument("--calls", default="whole,stream", help="whole, stream or both")
    parser.add_argument("--max-rows", type=int, default=2_000_000, help="stream: rows per piece")
    parser.add_argument(
        "--max-pieces", type=int, default=0, help="stream: stop after this many pieces (0: all)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return 0
    results = []
    for call in args.calls.split(","):
        case = {"call": call, "initiators": args.initiators, "candidates": args.candidates,
                "max_rows": args.max_rows, "seed": args.seed,
                "max_pieces": args.max_pieces}  # fmt: skip
        proc = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(case)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(
        "| call | initiators × candidates | index dates | person-dates | rows out | pieces | wall s | CPU s | peak MB | largest piece MB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['call']} | {r['initiators']:,} × {r['candidates']:,} | {r['dates']:,} | "
            f"{r['person_dates']:,} | {r['rows_out']:,} | {r['pieces']} | {r['wall_s']} | "
            f"{r['cpu_s']} | {r['peak_mb']:,} | {r['largest_table_mb']:,} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
