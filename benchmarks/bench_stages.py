"""Time each stage of the study, running the pipeline's own stages (``evaluation.pipeline.STAGES``).

The study is :func:`evaluation.pipeline.run_stages` over :data:`evaluation.pipeline.STAGES`;
this benchmark runs the same stages one at a time on one extract and reports the wall and CPU
time of each (and of reading the extract), so a change to a stage is measured on exactly the
code the study runs. It also checks that the stage-by-stage run gives the same results document
as :func:`evaluation.pipeline.run_study`.

Usage::

    python -m benchmarks.bench_stages [--scenario default] [--seed 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from analysis.data.extract import read_extract
from evaluation.config import load_config
from evaluation.pipeline import STAGES, run_stages, run_study
from evaluation.study import StudyState
from synthetic.generate import generate_extract


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    config = load_config(None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "extract"
        generate_extract(args.scenario, out=folder, seed=args.seed)
        rows = []
        for _ in range(args.repeat):
            extract, wall, cpu = _timed(lambda: read_extract(folder))
            times = [("read_extract", wall, cpu)]
            state = StudyState(extract=extract)
            for stage in STAGES:
                state, wall, cpu = _timed(lambda s=state, st=stage: run_stages(s, config, (st,)))
                times.append((stage.name or stage.run.__name__, wall, cpu))
            rows.append(times)
        whole = run_study(read_extract(folder), config)
    same = whole.document.model_dump_json() == state.document.model_dump_json()
    print(f"scenario {args.scenario}, seed {args.seed}: best of {args.repeat} runs")
    print(f"{'stage':32s} {'wall s':>8s} {'cpu s':>8s}")
    for i, (name, _, _) in enumerate(rows[0]):
        wall = min(r[i][1] for r in rows)
        cpu = min(r[i][2] for r in rows)
        print(f"{name:32s} {wall:8.3f} {cpu:8.3f}")
    print(f"stage by stage = run_study: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
