"""Replicates per second of ``python -m evaluation.simulate`` on Dask, by number of workers.

``python benchmarks/bench_dask.py [--workers 1 2] [--scenario ci] [--n-hat 60,100]
[--effects mortality_hr=0.5,1.0] [--replicates 4] [--overhead-tasks 2000]`` runs the same
power grid (every ``n_hat`` × every effect value × ``--replicates``) once in this process
(``--jobs 1``, no Dask) and once on a fresh ``distributed.LocalCluster`` per worker count
(single-threaded worker processes, ``processes=True``; workers warmed up by importing the
study first, so worker start-up is not timed), each into its own new folder, and prints a
Markdown table: wall seconds of the replicates (the manifest's ``timings_seconds.replicates``:
first task submitted to last record written, truth excluded), replicates per second, the
speed-up over one worker, the mean wall seconds of one replicate measured inside it, and
the CPU seconds per replicate of the worker processes (``getrusage`` in each worker, before
and after) and of this process (``time.process_time``: the client, in a ``LocalCluster`` the
scheduler, the writing of records and the summary; with ``--jobs 1`` also the replicates).
CPU seconds hardly depend on the machine's load, wall seconds do.

It then measures what a Dask replicate costs besides its own work: the scheduler's round
trip per task (``--overhead-tasks`` tasks that return a record-sized dict at once, with a
task-sized payload: the scenario, configuration and truth of a real task) and the parent's
writing of one record (:func:`evaluation.replicate_store.write_json_atomic`). The load average
is printed before and after each run (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation import simulate as sim  # noqa: E402
from evaluation.power_grid import parse_effects  # noqa: E402


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _warm() -> None:
    import analysis.data.extract  # noqa: F401
    import evaluation.pipeline  # noqa: F401
    import synthetic.generate  # noqa: F401


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _workers_cpu(address: str | None) -> float:
    """CPU seconds used so far by the cluster's worker processes (0 without a cluster)."""
    if address is None:
        return 0.0
    from distributed import Client

    with Client(address) as client:
        return float(sum(client.run(_cpu).values()))


def _run(out: Path, args: argparse.Namespace, **kwargs: Any) -> dict[str, Any]:
    load0 = _load()
    address = kwargs.get("scheduler")
    workers0, parent0 = _workers_cpu(address), time.process_time()
    result = sim.simulate(
        args.scenario,
        replicates=args.replicates,
        n_hat=args.n_hat,
        effects=args.effects,
        seed=args.seed,
        out=out,
        progress=False,
        **kwargs,
    )
    parent = time.process_time() - parent0
    workers = _workers_cpu(address) - workers0
    m = result.manifest
    n = m["replicates_run"]
    wall = m["timings_seconds"]["replicates"]
    core = m["timings_seconds"]["mean_per_replicate"]["total"]
    return {
        "n": n,
        "wall": wall,
        "rate": n / wall,
        "core": core,
        "cpu_workers": workers / n,
        "cpu_parent": parent / n,
        "load": (load0, _load()),
    }


def _echo(record: dict[str, Any]) -> dict[str, Any]:
    return record


def _overhead(address: str, task: Any, record: dict[str, Any], n: int) -> tuple[float, float]:
    """Wall and CPU seconds per task of submitting, running a no-op, collecting its result.

    The CPU time is this process's: the client's and, in a ``LocalCluster``, the scheduler's
    (it runs in this process; the workers are other processes).
    """
    from distributed import Client, as_completed

    with Client(address) as client:
        client.run(_warm)
        t, c = time.perf_counter(), time.process_time()
        futures = client.map(lambda t, r: _echo(r), [task] * n, [record] * n, pure=False)
        for future in as_completed(futures):
            future.result()
            future.release()
        return (time.perf_counter() - t) / n, (time.process_time() - c) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--scenario", default="ci")
    parser.add_argument("--n-hat", type=lambda s: [int(x) for x in s.split(",")], default=[60, 100])
    parser.add_argument("--effects", nargs="+", default=["mortality_hr=0.5,1.0"])
    parser.add_argument("--replicates", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--overhead-tasks", type=int, default=1000)
    parser.add_argument("--skip-local", action="store_true", help="no --jobs 1 run")
    args = parser.parse_args(argv)
    args.effects = dict(parse_effects(w) for w in args.effects)

    from distributed import LocalCluster

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        if not args.skip_local:
            rows.append(("local process (--jobs 1)", _run(Path(tmp) / "local", args, jobs=1)))
        for w in args.workers:
            with LocalCluster(
                n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster:
                from distributed import Client

                with Client(cluster.scheduler_address) as client:
                    client.run(_warm)
                res = _run(Path(tmp) / f"dask{w}", args, scheduler=cluster.scheduler_address)
            rows.append((f"Dask LocalCluster, {w} worker(s)", res))
        first = Path(tmp) / ("local" if not args.skip_local else f"dask{args.workers[0]}")
        record = json.loads(next((first / "replicates").rglob("0000.json")).read_text())

        # a real task's payload (scenario, configuration, truth)
        from evaluation.replicate_store import write_json_atomic
        from evaluation.replicates import ReplicateTask, Setting

        spec = sim._spec(sim.load_scenario(args.scenario), Setting.from_dict(record["setting"]))
        truth = sim.truth_values(spec)[0]
        task = ReplicateTask(
            spec=spec,
            config=sim.StudyConfig(),
            truth=truth,
            setting=Setting.from_dict(record["setting"]),
            replicate=0,
            seed=args.seed,
            fingerprint=record["study"],
        )
        sizes = {"task": len(pickle.dumps(task)), "record": len(json.dumps(record))}
        overhead = {}
        for w in args.workers:
            with LocalCluster(
                n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster:
                overhead[w] = _overhead(
                    cluster.scheduler_address, task, record, args.overhead_tasks
                )
        t, c = time.perf_counter(), time.process_time()
        for i in range(200):
            write_json_atomic(Path(tmp) / "w" / f"{i:04d}.json", record)
        write_seconds = (time.perf_counter() - t) / 200, (time.process_time() - c) / 200

    base = next((r["rate"] for name, r in rows if "1 worker" in name), None)
    print(
        f"\nGrid: scenario {args.scenario}, n_hat {args.n_hat}, effects {args.effects}, "
        f"{args.replicates} replicates per setting; cpu_count {os.cpu_count()}\n"
    )
    print("| run | replicates | wall s | replicates/s | speed-up vs 1 worker | wall s per replicate "
          "(inside) | CPU s per replicate: workers / parent | load average before → after |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, r in rows:
        speed = f"{r['rate'] / base:.2f}×" if base and "worker" in name else "–"
        print(
            f"| {name} | {r['n']} | {r['wall']:.1f} | {r['rate']:.3f} | {speed} | "
            f"{r['core']:.2f} | {r['cpu_workers']:.3f} / {r['cpu_parent']:.3f} | "
            f"{r['load'][0]} → {r['load'][1]} |"
        )
    print(
        f"\nPer-task overhead (submit + no-op + result, {args.overhead_tasks} tasks, task "
        f"{sizes['task'] / 1024:.0f} KiB pickled, record {sizes['record'] / 1024:.0f} KiB): "
        + ", ".join(
            f"{w} worker(s) {1000 * s:.2f} ms wall, {1000 * c:.2f} ms CPU of client + scheduler"
            for w, (s, c) in overhead.items()
        )
    )
    print(
        f"Parent's writing of one record (write_json_atomic): {1000 * write_seconds[0]:.2f} ms "
        f"wall, {1000 * write_seconds[1]:.2f} ms CPU"
    )
    print(f"Load average at the end: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
