"""One simulation replicate, before and after, in the same run: core-seconds per stage.

A replicate of ``python -m evaluation.simulate`` (default scenario, version-1 designed
extract, ``n_hat`` 400 / ``n_ost`` 8000 as the scenario sets them) is run ``--replicates``
times by :func:`evaluation.replicates.run_replicate` in three single-threaded subprocesses:

- ``before``: the code of commit ``--commit`` (default ``5b04ea3``), extracted with
  ``git archive <commit> | tar -x -C <dir>`` and put first on ``PYTHONPATH``, its extract
  through Parquet files (``--before-road memory``: in memory, for a commit that has that road);
- ``after, files``: this tree, the extract through Parquet files (``road="files"``);
- ``after``: this tree as the simulation runs it (in-memory extract road).

The replicates are split into ``--rounds`` rounds that run the three in turn (a change of
the machine's load falls on all three). Each subprocess runs one warm-up replicate, then its
replicates; its clock
(``time.perf_counter``, which the replicate uses for its ``seconds``) is replaced by
``time.process_time``, so every stage's time is CPU time of that one process (BLAS is held
to one thread by the replicate): core-seconds. The records' estimates, cohort counts and
warnings are compared between the three: the table says whether they are identical.

Usage::

    python -m benchmarks.bench_replicate [--replicates 20] [--rounds 2] [--commit 5b04ea3]
        [--before-road memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: the subprocess: run the replicates, print their records (seconds in CPU time) as JSON
WORKER = r"""
import inspect, json, sys, time
time.perf_counter = time.process_time  # every timer of the replicate counts CPU time
from evaluation.config import StudyConfig
from evaluation.replicates import ReplicateTask, Setting, run_replicate, truth_values
from synthetic.spec import load_scenario

start, n, road, seed = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
base = load_scenario("default")
config = StudyConfig()
setting = Setting(n_hat=base.n_hat, n_ost=base.n_ost)
truth = truth_values(base)[0]
kwargs = {"road": road} if "road" in inspect.signature(run_replicate).parameters else {}


def task(i):
    return ReplicateTask(spec=base, config=config, truth=truth, setting=setting,
                         replicate=i, seed=seed, fingerprint="bench")


run_replicate(task(10_000), **kwargs)  # warm-up: imports, caches
t = time.process_time()
records = [run_replicate(task(i), **kwargs) for i in range(start, start + n)]
cpu = (time.process_time() - t) / n
print(json.dumps({"cpu_per_replicate": cpu, "records": records}))
"""

STAGES = ("generate", "extract", "study", "total")


def _before_tree(commit: str, folder: Path) -> Path:
    """The code of ``commit`` in ``folder`` (``git archive``), extracted once."""
    if not (folder / "evaluation" / "replicates.py").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def _run(path: Path, start: int, replicates: int, road: str, seed: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(path), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", WORKER, str(start), str(replicates), road, str(seed)],
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),  # not this tree: PYTHONPATH decides which code runs
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _means(run: dict) -> dict[str, float]:
    records = [r for r in run["records"] if r["status"] == "ok"]
    keys = dict.fromkeys(k for r in records for k in r["seconds"])
    return {k: sum(r["seconds"].get(k, 0.0) for r in records) / len(records) for k in keys}


def _comparable(record: dict) -> str:
    return json.dumps({k: v for k, v in record.items() if k != "seconds"}, sort_keys=True)


def _table(runs: dict[str, dict]) -> list[str]:
    means = {name: _means(run) for name, run in runs.items()}
    stages = list(STAGES) + sorted(
        {k for m in means.values() for k in m if k.startswith("step:")},
        key=lambda k: list(means["before"]).index(k) if k in means["before"] else 99,
    )
    names = list(runs)
    lines = [
        "| stage (core-s per replicate) | " + " | ".join(names) + " | before / after |",
        "| --- | " + " | ".join("---:" for _ in names) + " | ---: |",
    ]
    for stage in stages:
        cells = [f"{means[n][stage]:.3f}" if stage in means[n] else "—" for n in names]
        b, a = means["before"].get(stage), means["after"].get(stage)
        ratio = f"{b / a:.1f}×" if b and a else "—"
        lines.append(f"| {stage.removeprefix('step:')} | " + " | ".join(cells) + f" | {ratio} |")
    cpu = {n: runs[n]["cpu_per_replicate"] for n in names}
    lines.append(
        "| **process CPU per replicate** | "
        + " | ".join(f"**{cpu[n]:.3f}**" for n in names)
        + f" | **{cpu['before'] / cpu['after']:.1f}×** |"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--commit", default="5b04ea3", help="the code before (a git commit)")
    parser.add_argument("--before-dir", type=Path, default=None,
                        help="where to extract it (default: a folder in the temp dir)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=20240101)
    parser.add_argument("--before-road", choices=("files", "memory"), default="files",
                        help="the extract road of the code before (memory: a commit that has it)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2,
                        help="split the replicates into rounds that alternate the three runs, "
                        "so a change of load falls on all of them")  # fmt: skip
    args = parser.parse_args(argv)
    before = _before_tree(
        args.commit, args.before_dir or Path(tempfile.gettempdir()) / f"rep-before-{args.commit}"
    )
    load = os.getloadavg()
    variants = {"before": (before, args.before_road), "after, files": (ROOT, "files"),
                "after": (ROOT, "memory")}  # fmt: skip
    runs: dict[str, dict] = {name: {"cpu": 0.0, "records": []} for name in variants}
    per_round = -(-args.replicates // args.rounds)
    for start in range(0, args.replicates, per_round):  # rounds alternate the variants
        n = min(per_round, args.replicates - start)
        for name, (path, road) in variants.items():
            part = _run(path, start, n, road, args.seed)
            runs[name]["cpu"] += part["cpu_per_replicate"] * n
            runs[name]["records"] += part["records"]
    for run in runs.values():
        run["cpu_per_replicate"] = run["cpu"] / args.replicates
    load_end = os.getloadavg()
    reference = [_comparable(r) for r in runs["before"]["records"]]
    same = {
        name: sum(a == b for a, b in zip(reference, map(_comparable, run["records"]), strict=True))
        for name, run in runs.items()
    }
    print(f"{args.replicates} replicates each ({args.rounds} rounds, each after 1 warm-up), "
          "default scenario, single-threaded")  # fmt: skip
    print(f"load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, "
          f"at end {load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f}")  # fmt: skip
    print()
    print("\n".join(_table(runs)))
    print()
    for name, n in same.items():
        print(
            f"records identical to before (estimates, cohort, warnings): {name} {n}/{args.replicates}"
        )
    return 0 if all(n == args.replicates for n in same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
