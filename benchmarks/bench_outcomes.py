"""The outcome-model stage alone, before and after, in the same run: core-seconds and parts.

The study's state up to the outcome models (extract read, cohort, propensity score and every
design) is built once by this tree and pickled; the outcome stage
(:func:`evaluation.stages.outcomes.outcome_stage`: every design's Cox and rate models with
their PH tests, the IPTW models' stacked variances, the primary design's secondary estimates)
then runs on it in single-threaded subprocesses, alternating

- ``before``: the code of commit ``--commit``, extracted with ``git archive <commit> | tar -x``
  and put first on ``PYTHONPATH`` (it must unpickle this tree's state: use a commit whose
  data and design classes are this tree's);
- ``after``: this tree,

``--rounds`` times. Each run reports its CPU time (``time.process_time``: core-seconds) and,
from a profile with a CPU clock, the parts: the stacked variances, the Cox fits, the PH
tests, the negative-binomial fit. The estimates of the two are compared field by field.

Usage::

    python -m benchmarks.bench_outcomes --data DIR [--rounds 2] [--commit a3eac90]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_replicate import _before_tree

ROOT = Path(__file__).resolve().parents[1]

#: build the state up to the outcome models and pickle it
PREPARE = r"""
import pickle, sys
from analysis.data.extract import read_extract
from evaluation.config import load_config
from evaluation.pipeline import STAGES, run_stages
from evaluation.study import StudyState
state = StudyState(extract=read_extract(sys.argv[1]))
state = run_stages(state, load_config(None), tuple(STAGES[:2]))  # cohort, designs
with open(sys.argv[2], "wb") as f:
    pickle.dump(state, f, protocol=5)
"""

#: run the outcome stage on the pickled state; print CPU time and the parts, pickle estimates
WORKER = r"""
import cProfile, json, pickle, pstats, sys, time
from evaluation.config import load_config
from evaluation.pipeline import STAGES, run_stages
with open(sys.argv[1], "rb") as f:
    state = pickle.load(f)
stage = tuple(s for s in STAGES if s.name == "outcome models")
profile = cProfile.Profile(time.process_time) if sys.argv[3] == "parts" else None
t = time.process_time()
if profile:
    profile.enable()
out = run_stages(state, load_config(None), stage)
if profile:
    profile.disable()
cpu = time.process_time() - t
parts = {}
if profile:
    stats = pstats.Stats(profile).stats
    def cum(name, file):
        return sum(v[3] for k, v in stats.items() if k[2] == name and k[0].endswith(file))
    parts = {
        "stacked variances": cum("_with_estimated_weights", "outcomes.py"),
        "Cox fits": cum("_fit", "cox.py"),
        "PH tests": cum("_ph_test", "cox.py"),
        "negative binomial": cum("negative_binomial_irr", "negative_binomial.py"),
    }
with open(sys.argv[2], "wb") as f:
    pickle.dump(out.estimates, f)
print(json.dumps({"cpu": cpu, "parts": parts}))
"""

_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _python(code: str, path: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(path), **_THREADS}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True,
        cwd=tempfile.gettempdir(), env=env,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def _differences(before: list, after: list) -> dict[str, float]:
    """Largest relative difference of each differing numeric field of the estimates."""
    from dataclasses import asdict

    def flat(x, pre=""):
        if isinstance(x, dict):
            return {k2: v2 for k, v in x.items() for k2, v2 in flat(v, f"{pre}.{k}").items()}
        if isinstance(x, list | tuple):
            return {k2: v2 for i, v in enumerate(x) for k2, v2 in flat(v, f"{pre}[{i}]").items()}
        return {pre: x}

    diffs: dict[str, float] = {}
    for b, a in zip(before, after, strict=True):
        fb, fa = flat(asdict(b)), flat(asdict(a))
        for key in fb.keys() | fa.keys():
            vb, va = fb.get(key), fa.get(key)
            if vb != va and not (vb != vb and va != va):  # NaN equals NaN here
                name = f"{b.outcome}/{b.method}{key}"
                numeric = isinstance(vb, float) and isinstance(va, float) and vb != 0
                diffs[name] = abs(va - vb) / abs(vb) if numeric else float("inf")
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="an extract folder")
    parser.add_argument("--commit", default="a3eac90", help="the code before (a git commit)")
    parser.add_argument("--before-dir", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    before = _before_tree(
        args.commit, args.before_dir or Path(tempfile.gettempdir()) / f"rep-before-{args.commit}"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-outcomes-"))
    state = work / "state.pkl"
    _python(PREPARE, ROOT, str(args.data), str(state))
    load = os.getloadavg()
    variants = {"before": before, "after": ROOT}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    parts: dict[str, dict] = {}
    for r in range(args.rounds + 1):  # the last round profiled, for the parts
        for name, path in variants.items():
            mode = "parts" if r == args.rounds else "plain"
            run = json.loads(_python(WORKER, path, str(state), str(work / f"{name}.pkl"), mode))
            if mode == "parts":
                parts[name] = run["parts"] | {"stage (profiled)": run["cpu"]}
            else:
                cpu[name].append(run["cpu"])
    load_end = os.getloadavg()
    estimates = {name: pickle.loads((work / f"{name}.pkl").read_bytes()) for name in variants}
    print(f"outcome stage on {args.data}, {args.rounds} rounds (+1 profiled), single-threaded")
    print(f"load average at start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}, "
          f"at end {load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f}\n")  # fmt: skip
    print("| core-s | before | after | before / after |\n| --- | ---: | ---: | ---: |")
    mean = {name: sum(v) / len(v) for name, v in cpu.items()}
    print(f"| outcome stage | {mean['before']:.2f} | {mean['after']:.2f} | "
          f"{mean['before'] / mean['after']:.1f}× |")  # fmt: skip
    for part in parts["before"]:
        b, a = parts["before"][part], parts["after"][part]
        print(f"| {part} | {b:.2f} | {a:.2f} | {b / a:.1f}× |")
    diffs = _differences(estimates["before"], estimates["after"])
    print(f"\n{len(diffs)} differing fields of {len(estimates['after'])} estimates")
    for key, rel in sorted(diffs.items()):
        print(f"  {key}: relative {rel:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
