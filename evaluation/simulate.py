"""Simulation study and power planning: ``python -m evaluation.simulate``.

For each setting (a number of HAT patients, ``--n-hat``; the OST candidates as in the
scenario) the study is replicated ``--replicates`` times: a synthetic extract is
generated, its tables are handed as Arrow tables to the validation and normalisation that
reading an extract applies (every rule of the road real data take, without the Parquet
files), and the study's designs and estimates (:func:`evaluation.pipeline.run_study` with
``scope="estimates"``: no figures or descriptive tables) are computed on it. Every estimate of every replicate is kept, and the performance of each
method for each estimand (bias, empirical and model SE, coverage, power, with Monte Carlo
SEs; :mod:`evaluation.simulation_summary`) is summarised per setting.

A power grid (``--effects mortality_hr=0.5,0.7,1.0``, :mod:`evaluation.power_grid`) makes
the settings every ``--n-hat`` × every value of the scenario's true (conditional) effects;
each setting's truth is computed for its own scenario, its folder is
``replicates/n_hat-<N>_<effect>-<value>/`` and its summary rows carry ``effect_<name>``.
Replicate ``i`` of ``n_hat`` patients has the same seed at every effect value (common random
numbers, below); a study without ``--effects`` is exactly the study it was before.

With ``--contract 2`` the scenario is a history scenario (``synthetic/scenarios/history/``)
and each replicate is a history extract (:func:`synthetic.history_generate.generate_history`,
the code of ``python -m synthetic --contract 2``) on which the study is the emulated target
trial; there is one setting, the scenario's ``scale`` (``--n-hat`` is refused: the simulated
population decides the number of initiators), replicate ``i`` is seeded with
``SeedSequence(seed, spawn_key=(0, i))``, and the performance is summarised per
(estimand, outcome, measure, method) against the intention-to-treat and per-protocol
truths (:mod:`synthetic.history_truth`, computed once in the process that starts the study
and passed to the workers in their tasks).

Replicates run on local processes (joblib, ``--jobs``) or on an existing Dask cluster
(``--scheduler ADDRESS``). Replicate ``i`` of the setting with ``n_hat`` HAT patients is
seeded with ``numpy.random.SeedSequence(seed, spawn_key=(n_hat, i))``, i.e.
``SeedSequence(seed).spawn(n_hat + 1)[n_hat].spawn(i + 1)[i]``: its data depend on
neither the number of workers, nor the order of completion, nor the other settings or
the number of replicates asked for. BLAS is limited to one thread in each replicate, so
floating-point results do not depend on the machine's load either (it is also much
faster: several processes of multi-threaded OpenBLAS on two cores oversubscribe them).

The folder ``--out DIR`` holds::

    replicates/n_hat-<N>/<i>.json   one record per replicate (estimates or the error;
                                    replicates/scale-<s>/ for a history scenario)
    summary.csv, summary.json       performance per setting x estimand x method
    manifest.json                   command, seed, scenario, config, versions, timings

Each replicate is written (atomically) as soon as it is done, by the process that
started the study (so Dask workers need no shared file system); a rerun with the same
scenario, configuration and seed skips completed replicates, so an interrupted study
resumes, and asking for more replicates or settings adds to it. Failed replicates are
recorded with their error and counted in the summary, never dropped. The summary files
are written at the end, each atomically, with nothing in them that depends on the run
(no timings): the same seed gives byte-identical ``summary.csv`` and ``summary.json``
whatever ``--jobs`` or scheduler.

``python -m evaluation.simulate report DIR`` builds the simulation report (the Jupyter
Book in ``book_simulation/``) from such a folder: power curves by sample size, coverage
and bias tables.
"""

# long: the study (settings, resumption, summary, manifest) with its command line and report
# entry point; one replicate is evaluation.replicates
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation.config import ConfigError, StudyConfig, load_config
from evaluation.power_grid import EffectLevel, effect_levels, parse_effects
from evaluation.replicate_store import (
    load_records,
    replicate_path,
    write_json_atomic,
    write_text_atomic,
)
from evaluation.replicates import (
    ReplicateTask,
    Setting,
    SimulationError,
    execute,
    extract_road,
    setting_key,
    study_fingerprint,
    truth_values,
)
from evaluation.report import BookBuildError, build_jupyter_book
from synthetic.history_spec import HistoryScenario, load_history_scenario
from synthetic.spec import Scenario, ScenarioError, load_scenario
from synthetic.spec_effects import with_effects

SUMMARY_VERSION = 1
#: the simulation report's sources (pages, _config.yml, _toc.yml)
BOOK_SOURCE = Path(__file__).resolve().parents[1] / "book_simulation"
#: the environment variable naming the simulation folder the report reads
ENV_FOLDER = "HAT_SIMULATION"
_JB = "from jupyter_book.cli.main import main; main()"


@dataclass(frozen=True)
class Simulation:
    """A finished simulation study.

    Attributes
    ----------
    out : pathlib.Path
        The simulation folder.
    summary : DataFrame
        Contents of ``summary.csv``.
    manifest : dict
        Contents of ``manifest.json``.
    """

    out: Path
    summary: pd.DataFrame
    manifest: dict[str, Any]


def _settings(
    spec: Scenario | HistoryScenario, n_hat: Iterable[int] | None, levels: list[EffectLevel]
) -> list[Setting]:
    """Every ``n_hat`` × every effect level (a history scenario: one setting, no grid)."""
    if isinstance(spec, HistoryScenario):
        if n_hat:
            raise SimulationError(
                "--n-hat belongs to contract 1; a history scenario sets its size with `scale` "
                "(the simulated population decides the number of initiators)"
            )
        if levels != [()]:
            raise SimulationError(
                "--effects belongs to contract 1 (designed extracts); a history scenario "
                "states its effects in its own file"
            )
        return [Setting(n_hat=None, n_ost=None, scale=spec.scale)]
    sizes = sorted(set(n_hat)) if n_hat else [spec.n_hat]
    if any(int(n) < 1 for n in sizes):
        raise SimulationError(f"--n-hat: sizes must be positive, got {sizes}")
    return [Setting(n_hat=int(n), n_ost=spec.n_ost, effects=e) for n in sizes for e in levels]


def _spec(base: Scenario | HistoryScenario, setting: Setting) -> Scenario | HistoryScenario:
    """The scenario of one setting (a history scenario has one setting: itself)."""
    if isinstance(base, HistoryScenario):
        return base
    return with_effects(base.model_copy(update={"n_hat": setting.n_hat}), setting.effect_values)


def _truths(base: Scenario | HistoryScenario, settings: list[Setting]) -> tuple[dict, dict]:
    """Each setting's ``truth.json`` and ``(values, mcse)``, computed in this process.

    Settings of one effect level share their truth (it does not depend on sizes): they are
    computed one level after another so that the truth's cache is hit.
    """
    truths: dict[str, dict] = {}
    values: dict[str, tuple[dict, dict]] = {}
    for s in sorted(settings, key=lambda s: (s.effects, s.sort_key)):
        truth, v, mcse = truth_values(_spec(base, s))
        truths[s.name], values[s.name] = truth, (v, mcse)
    return truths, values


def _truth_entries(
    values: dict, mcse: dict, effects: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """``summary.json``'s truth: one entry per (estimand,) outcome and measure (and the
    effect values of a power grid's setting)."""
    out = []
    for key, v in values.items():
        estimand = key[0] if len(key) == 3 else None
        outcome, measure = key[-2:]
        entry: dict[str, Any] = {"effects": effects} if effects else {}
        entry.update({"estimand": estimand} if estimand is not None else {})
        entry.update(
            outcome=outcome,
            measure=measure,
            value=v,
            mc_se=mcse.get(key),
            scale=_scale_of(measure),
        )
        out.append(entry)
    return out


def simulate(
    scenario: str | Path = "default",
    *,
    replicates: int,
    contract: int = 1,
    out: str | Path,
    n_hat: Iterable[int] | None = None,
    effects: Mapping[str, Sequence[float]] | None = None,
    seed: int | None = None,
    config: StudyConfig | None = None,
    jobs: int = 2,
    scheduler: str | None = None,
    progress: bool = True,
    command: str | None = None,
) -> Simulation:
    """Run (or resume) a simulation study and write its summary.

    Parameters
    ----------
    scenario : str or path-like
        Bundled scenario name or scenario YAML file (a history scenario with
        ``contract=2``).
    replicates : int
        Replicates per setting.
    contract : {1, 2}
        Data contract version of the extracts: 1 designed extracts, 2 history extracts
        (the emulated target trial; one setting, ``n_hat`` refused).
    out : path-like
        The simulation folder (created; completed replicates in it are reused).
    n_hat : iterable of int, optional
        Numbers of HAT patients, one setting each (default: the scenario's).
    effects : mapping, optional
        A power grid: true effects replaced in the scenario, name -> values
        (``{"mortality_hr": [0.5, 0.7, 1.0]}``; :mod:`evaluation.power_grid`). The settings
        are every ``n_hat`` × every effect value (several names vary together); each has
        its own truth. Replicate ``i`` of ``n_hat`` patients has the same seed at every
        effect value (common random numbers).
    seed : int, optional
        The study's seed (default: the configuration's ``seed``).
    config : StudyConfig, optional
        The study's configuration (default: every default of :class:`StudyConfig`).
    jobs : int
        Local worker processes (joblib; 1 runs in this process). Ignored with ``scheduler``.
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:8786``); its workers need this package.
    progress : bool
        Show a progress bar (on stderr).
    command : str, optional
        Command line recorded in the manifest.

    Returns
    -------
    Simulation

    Raises
    ------
    SimulationError
        Bad options, or ``out`` holds replicates of another study.
    synthetic.spec.ScenarioError
        Unknown scenario.
    """
    from evaluation.results_folder import package_versions
    from evaluation.simulation_summary import summarise

    if replicates < 1:
        raise SimulationError(f"--replicates must be at least 1, got {replicates}")
    if jobs < 1:
        raise SimulationError(f"--jobs must be at least 1, got {jobs}")
    if contract not in (1, 2):
        raise SimulationError(f"--contract must be 1 or 2, got {contract}")
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    config = config or StudyConfig()
    seed = config.seed if seed is None else int(seed)
    base = load_history_scenario(scenario) if contract == 2 else load_scenario(scenario)
    levels = effect_levels(effects)
    settings = _settings(base, n_hat, levels)
    names = [k for k, _ in levels[0]]
    fingerprint = study_fingerprint(base, config, seed, effects=names)
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise SimulationError(f"--out {out}: is a file, not a folder (nothing was changed)")
    (out / "replicates").mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    # in this process, once per effect level: the workers get it in their tasks
    truths, setting_truth = _truths(base, settings)
    values, mcse = setting_truth[settings[-1].name]
    truth_seconds = time.perf_counter() - t

    done = load_records(out, settings, replicates, fingerprint)
    tasks = [
        ReplicateTask(
            spec=_spec(base, s),
            config=config,
            truth=truths[s.name],
            setting=s,
            replicate=i,
            seed=seed,
            fingerprint=fingerprint,
        )
        for s in settings
        for i in range(replicates)
        if (s.name, i) not in done
    ]
    new: list[dict[str, Any]] = []
    t = time.perf_counter()
    with _Progress(progress, total=len(tasks), reused=len(done)) as advance:
        for rec in execute(tasks, jobs=jobs, scheduler=scheduler):
            setting = Setting.from_dict(rec["setting"])
            write_json_atomic(replicate_path(out, setting, rec["replicate"]), rec)
            new.append(rec)
            advance(rec["status"] != "ok")
    run_seconds = time.perf_counter() - t

    records = list(done.values()) + new
    summary = summarise(
        records, truth=values, truth_mcse=mcse, alpha=config.alpha, setting_truth=setting_truth
    )
    failures = {s.name: [] for s in settings}
    for rec in sorted(records, key=lambda r: (setting_key(r["setting"]), r["replicate"])):
        if rec["status"] != "ok":
            err = rec.get("error") or {}
            failures[rec["setting"]["name"]].append(
                {
                    "replicate": rec["replicate"],
                    "type": err.get("type"),
                    "message": err.get("message"),
                }
            )
    document = {
        "schema_version": SUMMARY_VERSION,
        "contract": contract,
        "scenario": base.name,
        "seed": seed,
        "study": fingerprint,
        "replicates": replicates,
        "alpha": config.alpha,
        "settings": [
            {
                **s.to_dict(),
                "n_replicates": sum(r["setting"]["name"] == s.name for r in records),
                "n_failed": len(failures[s.name]),
                "failures": failures[s.name],
            }
            for s in settings
        ],
        "truth": [
            e
            for level in (levels if names else [()])
            for e in _truth_entries(*_level_truth(settings, setting_truth, level), dict(level))
        ],
        "rows": summary.to_dict(orient="records"),
    }
    if names:
        document["effects"] = {k: sorted({dict(level)[k] for level in levels}) for k in names}
    keys = dict.fromkeys(k for r in new for k in r.get("seconds", {}))
    stage = {
        k: float(np.mean([r["seconds"][k] for r in new if k in r.get("seconds", {})])) for k in keys
    }
    manifest = {
        "created": started.isoformat(timespec="seconds"),
        "command": command or _command_line(),
        "contract": contract,
        "scenario": base.name,
        "scenario_parameters": base.to_dict(),
        "seed": seed,
        "seeding": _seeding(contract, names),
        "study": fingerprint,
        "config": config.to_dict(),
        "config_sha256": config.hash(),
        "settings": [s.to_dict() for s in settings],
        **({"effects": document["effects"]} if names else {}),
        "replicates": replicates,
        "replicates_run": len(new),
        "replicates_reused": len(done),
        "n_failed": sum(len(f) for f in failures.values()),
        "execution": {
            "backend": "dask" if scheduler else ("process" if jobs == 1 else "joblib"),
            "jobs": None if scheduler else jobs,
            "scheduler": scheduler,
            "cpu_count": os.cpu_count(),
            "extract_road": extract_road(contract),
        },
        "timings_seconds": {
            "truth": round(truth_seconds, 3),
            "replicates": round(run_seconds, 3),
            "mean_per_replicate": {k: round(v, 3) for k, v in stage.items()},
        },
        "versions": {
            **package_versions(),
            **{p: _version(p) for p in ("joblib", "distributed", "threadpoolctl")},
        },
        "elapsed_seconds": None,
    }
    write_text_atomic(out / "summary.csv", summary.to_csv(index=False, lineterminator="\n"))
    write_json_atomic(out / "summary.json", document)
    manifest["elapsed_seconds"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(out / "manifest.json", manifest)  # last: marks a complete summary
    return Simulation(out=out, summary=summary, manifest=manifest)


def _level_truth(
    settings: list[Setting], setting_truth: dict[str, tuple[dict, dict]], level: EffectLevel
) -> tuple[dict, dict]:
    """The truth ``(values, mcse)`` of an effect level (the same for each of its sizes)."""
    return next(setting_truth[s.name] for s in settings if s.effects == level)


def _seeding(contract: int, effects: list[str]) -> str:
    if contract == 2:
        return "replicate i: numpy SeedSequence(seed, spawn_key=(0, i))"
    text = "replicate i of setting n_hat: numpy SeedSequence(seed, spawn_key=(n_hat, i))"
    if effects:
        text += (
            f"; the same at every value of {', '.join(effects)} (common random numbers "
            "across the true effects)"
        )
    return text


def _scale_of(measure: str) -> str:
    from analysis.data.measures import scale_of

    return scale_of(measure)


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _command_line() -> str:
    return " ".join(["python -m evaluation.simulate", *sys.argv[1:]])


class _Progress:
    """Context manager giving ``advance(failed: bool)``, drawing a rich progress bar."""

    def __init__(self, show: bool, *, total: int, reused: int) -> None:
        self.show = show and total > 0
        self.total = total
        self.reused = reused
        self.failed = 0

    def __enter__(self):
        if not self.show:
            return lambda failed=False: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]replicates[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.bar.__enter__()
        note = f"({self.reused} reused)" if self.reused else ""
        self.task = self.bar.add_task("run", total=self.total, note=note)

        def advance(failed: bool = False) -> None:
            self.failed += bool(failed)
            extra = [f"{self.reused} reused"] if self.reused else []
            extra += [f"[red]{self.failed} failed[/red]"] if self.failed else []
            self.bar.update(self.task, advance=1, note=f"({', '.join(extra)})" if extra else "")

        return advance

    def __exit__(self, *exc: Any) -> None:
        if self.show:
            self.bar.__exit__(*exc)


# ----------------------------------------------------------------------------- report
#: the simulation report could not be built (a page raised, a Sphinx warning)
ReportBuildError = BookBuildError


def build_report(
    folder: str | Path, *, output_dir: str | Path | None = None, source: str | Path | None = None
) -> Path:
    """Build the simulation report (HTML, Jupyter Book) from a simulation folder.

    Parameters
    ----------
    folder : path-like
        A folder written by :func:`simulate` (must hold ``summary.json``).
    output_dir : path-like, optional
        Where the build goes; default ``<folder>/book``. A previous build is replaced.
    source : path-like, optional
        The book's sources; default ``book_simulation/`` of this repository.

    Returns
    -------
    pathlib.Path
        The HTML folder (open its ``index.html``).

    Raises
    ------
    FileNotFoundError
        No summary in ``folder``.
    ReportBuildError
        The build failed (a page raised, a Sphinx warning); the message ends with the log.
        Or the folder holds a history study (``--contract 2``), which the report does not
        cover.
    """
    folder = Path(folder).resolve()
    if not (folder / "summary.json").is_file():
        raise FileNotFoundError(
            f"{folder} is not a simulation folder (no summary.json); write one with "
            "`python -m evaluation.simulate --out DIR`"
        )
    contract = json.loads((folder / "summary.json").read_text(encoding="utf-8")).get("contract", 1)
    if contract != 1:
        raise ReportBuildError(
            f"{folder} holds a history study (contract {contract}): the simulation report covers "
            "designed extracts (power by number of HAT patients); its coverage table is "
            "`python benchmarks/coverage_v2_table.py DIR SCENARIO`, its summary summary.csv"
        )
    book = Path(source).resolve() if source is not None else BOOK_SOURCE
    out = Path(output_dir).resolve() if output_dir is not None else folder / "book"
    return build_jupyter_book(book, out, env={ENV_FOLDER: str(folder)})


# ----------------------------------------------------------------------------- command line
def _sizes(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 100,250,400, got {text!r}"
        ) from None


def _effects_word(text: str) -> tuple[str, tuple[float, ...]]:
    try:
        return parse_effects(text)
    except SimulationError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--effects: ")) from None


def build_parser() -> argparse.ArgumentParser:
    """Options of ``python -m evaluation.simulate``."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.simulate",
        description="Simulation study and power planning: replicate the whole study on "
        "synthetic data of a scenario at several numbers of HAT patients, summarise bias, "
        "SEs, coverage and power with Monte Carlo SEs. "
        "`python -m evaluation.simulate report DIR` builds the report of a simulation folder.",
    )
    parser.add_argument(
        "--scenario", default="default", metavar="NAME", help="scenario name or YAML"
    )
    parser.add_argument(
        "--contract",
        type=int,
        choices=(1, 2),
        default=1,
        help="data contract version: 1 designed extracts (default), 2 history extracts "
        "(scenarios in synthetic/scenarios/history/; the emulated target trial)",
    )
    parser.add_argument(
        "--replicates", type=int, required=True, metavar="R", help="replicates per setting"
    )
    parser.add_argument(
        "--n-hat",
        type=_sizes,
        metavar="N,N,...",
        help="numbers of HAT patients, one setting each (default: the scenario's)",
    )
    parser.add_argument(
        "--effects",
        type=_effects_word,
        nargs="+",
        action="extend",
        metavar="NAME=V,V,...",
        help="a power grid of true effects: the settings are every --n-hat × every value "
        "(e.g. mortality_hr=0.5,0.6,0.7,0.8,0.9,1.0); names mortality_hr, retention_hr, "
        "crime_irr, overdose_share_ratio (conditional effects, 1 = none; several names vary "
        "together, the j-th values forming the j-th setting)",
    )
    parser.add_argument("--jobs", type=int, default=2, metavar="N", help="local processes (2)")
    parser.add_argument(
        "--scheduler", metavar="ADDRESS", help="run on this Dask scheduler (tcp://host:8786)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder (default results-simulation/<scenario>, git-ignored)",
    )
    parser.add_argument("--seed", type=int, metavar="S", help="seed (default: the config's)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="study configuration (YAML)")
    parser.add_argument("--report", action="store_true", help="also build the report")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _report_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.simulate report",
        description="Build the report of a simulation folder (HTML in DIR/book/_build/html).",
    )
    parser.add_argument("folder", type=Path, metavar="DIR")
    parser.add_argument("--out", type=Path, metavar="DIR", help="build folder (DIR/book)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        html = build_report(args.folder, output_dir=args.out)
    except (FileNotFoundError, ReportBuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"report built in {time.perf_counter() - t0:.0f} s: {html / 'index.html'}")
    return 0


def print_summary(sim: Simulation) -> None:
    """Print coverage and power of the primary estimands (with Monte Carlo SEs)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Primary estimands over replicates (Monte Carlo SE in brackets)")
    for col in ("setting", "estimand", "n", "failed", "bias", "coverage %", "power %"):
        table.add_column(col, justify="left" if col == "estimand" else "right")
    rows = sim.summary[sim.summary["estimand_primary"]] if len(sim.summary) else sim.summary
    for r in rows.itertuples():
        label = f"{r.outcome} {r.measure}"
        if isinstance(r.estimand, str) and r.estimand:
            label = f"{r.estimand} {label}"
        table.add_row(
            r.setting,
            label,
            str(r.n_estimates),
            str(r.n_failed),
            f"{r.bias:+.3f} ({r.bias_mcse:.3f})",
            f"{100 * r.coverage:.1f} ({100 * r.coverage_mcse:.1f})",
            f"{100 * r.power:.1f} ({100 * r.power_mcse:.1f})",
        )
    console = Console()
    console.print(table)
    m = sim.manifest
    console.print(
        f"{m['replicates_run']} replicates run, {m['replicates_reused']} reused, "
        f"{m['n_failed']} failed; {m['elapsed_seconds']:.0f} s. Results: {sim.out}"
    )


def _default_out(scenario: str, contract: int) -> Path:
    stem = Path(scenario).stem
    return Path("results-simulation") / (stem if contract == 1 else f"history-{stem}")


def _effects_option(words: list[tuple[str, tuple[float, ...]]] | None) -> dict | None:
    """``--effects`` words as a mapping; a name given twice is refused."""
    if not words:
        return None
    out: dict[str, tuple[float, ...]] = {}
    for name, values in words:
        if name in out:
            raise SimulationError(f"--effects: {name} is given twice")
        out[name] = values
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line; returns the exit status (2 for bad options or input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:
        return _report_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        sim = simulate(
            args.scenario,
            replicates=args.replicates,
            out=args.out or _default_out(args.scenario, args.contract),
            contract=args.contract,
            n_hat=args.n_hat,
            effects=_effects_option(args.effects),
            seed=args.seed,
            config=config,
            jobs=args.jobs,
            scheduler=args.scheduler,
            progress=not args.quiet,
        )
    except (SimulationError, ScenarioError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print_summary(sim)
    if args.report:
        return _report_main([str(sim.out)])
    return 0


if __name__ == "__main__":
    # import by name, so that workers unpickle `evaluation.replicates.run_replicate`
    from evaluation.simulate import main as _main

    sys.exit(_main())
