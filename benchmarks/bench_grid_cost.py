"""CPU cost of a planner's power grid, and the time of the full grid on a number of cores.

``python benchmarks/bench_grid_cost.py [--scenario default] [--n-hat 100,200,300,400,500,600]
[--effects mortality_hr=0.5,0.7,1.0] [--replicates 2] [--full 1000] [--cores 2]`` runs the
grid (every ``n_hat`` × every effect value × ``--replicates``) in this process (``--jobs 1``)
after computing the truths (once per effect level; not timed: the study computes them once)
and prints the CPU seconds per replicate (``time.process_time`` of the whole run: replicates
plus the parent's writing of records and the summary) by ``n_hat``, and what the full grid
with ``--full`` replicates per setting would take on ``--cores`` cores with perfect scaling
(``--jobs`` processes, one replicate each at a time). CPU time, unlike wall time, hardly
depends on the machine's load; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation import simulate as sim  # noqa: E402
from evaluation.power_grid import effect_levels, parse_effects  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument(
        "--n-hat", type=lambda s: [int(x) for x in s.split(",")], default=[100, 200, 300, 400, 500, 600]
    )  # fmt: skip
    parser.add_argument("--effects", nargs="+", default=["mortality_hr=0.5,0.7,1.0"])
    parser.add_argument("--replicates", type=int, default=2)
    parser.add_argument("--full", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    effects = dict(parse_effects(w) for w in args.effects)
    load0 = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())

    base = sim.load_scenario(args.scenario)
    settings = sim._settings(base, args.n_hat, effect_levels(effects))
    sim._truths(base, settings)  # cached in this process: not timed
    import analysis.data.extract  # noqa: F401
    import evaluation.pipeline  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        cpu, wall = time.process_time(), time.perf_counter()
        result = sim.simulate(
            args.scenario,
            replicates=args.replicates,
            n_hat=args.n_hat,
            effects=effects,
            seed=args.seed,
            out=Path(tmp),
            jobs=1,
            progress=False,
        )
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        per_size: dict[int, list[float]] = {}
        for path in (Path(tmp) / "replicates").rglob("*.json"):
            rec = json.loads(path.read_text())
            per_size.setdefault(rec["setting"]["n_hat"], []).append(rec["seconds"]["total"])
    load1 = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    n = result.manifest["replicates_run"]
    per = cpu / n
    full = len(settings) * args.full
    print(
        f"\nGrid: scenario {args.scenario}, n_hat {args.n_hat}, effects {effects}, "
        f"{args.replicates} replicates per setting ({n} replicates, {result.manifest['n_failed']} "
        f"failed); load average {load0} → {load1}"
    )
    print(f"CPU {cpu:.1f} s, wall {wall:.1f} s: {per:.3f} CPU-s per replicate")
    print(
        "wall s per replicate by n_hat (inside the replicate): "
        + ", ".join(f"{k}: {sum(v) / len(v):.2f}" for k, v in sorted(per_size.items()))
    )
    print(
        f"Full grid: {full:,} replicates x {per:.3f} CPU-s = {full * per / 3600:.2f} CPU-hours; "
        f"on {args.cores} cores {full * per / args.cores / 60:.0f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
