"""Command line: ``python -m synthetic --scenario NAME --out DIR [--seed N] [--contract 2] ...``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from synthetic.generate import generate, write
from synthetic.spec import ScenarioError, load_scenario, scenario_names

__all__ = [
    "main",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m synthetic",
        description="Write a synthetic registry extract (data contract format) with truth.json.",
    )
    parser.add_argument(
        "--scenario",
        default="default",
        metavar="NAME",
        help=f"bundled scenario ({', '.join(scenario_names())}) or a YAML file (default: default)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    parser.add_argument("--seed", type=int, help="seed (default: the scenario's)")
    parser.add_argument("--n-hat", type=int, help="number of HAT patients")
    parser.add_argument("--n-ost", type=int, help="number of OST candidates")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    parser.add_argument(
        "--contract",
        type=int,
        choices=(1, 2),
        default=1,
        help="data contract version: 1 designed extract (default), 2 history extract "
        "(scenarios in synthetic/scenarios/history/)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    if args.contract == 2:
        return _history(args)
    try:
        spec = load_scenario(args.scenario, seed=args.seed, n_hat=args.n_hat, n_ost=args.n_ost)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    tables, truth = generate(spec, np.random.default_rng(spec.seed))
    path = write(tables, truth, args.out, spec=spec, format=args.format)
    if not args.quiet:
        sizes = ", ".join(f"{k} {len(v):,}" for k, v in tables.items())
        print(f"scenario '{spec.name}' seed {spec.seed}: {sizes}")
        for e in truth["estimands"]:
            print(f"  truth {e['outcome']}/{e['measure']}: {e['value']:.4g}")
        print(f"wrote {path} in {time.perf_counter() - t0:.1f} s")
    return 0


def _history(args: argparse.Namespace) -> int:
    from synthetic.history_generate import generate_history, write_history
    from synthetic.history_spec import load_history_scenario

    if args.n_hat is not None or args.n_ost is not None:
        print(
            "error: --n-hat and --n-ost belong to contract 1; a history scenario sets its "
            "size with `scale`",
            file=sys.stderr,
        )
        return 2
    try:
        spec = load_history_scenario(args.scenario, seed=args.seed)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    tables, truth = generate_history(spec, np.random.default_rng(spec.seed))
    path = write_history(tables, truth, args.out, spec=spec, format=args.format)
    if not args.quiet:
        sizes = ", ".join(f"{k} {len(v):,}" for k, v in tables.items())
        print(f"history scenario '{spec.name}' seed {spec.seed}: {sizes}")
        for e in truth["estimands"]:
            print(f"  truth {e['estimand']} {e['outcome']}/{e['measure']}: {e['value']:.4g}")
        print(f"wrote {path} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
