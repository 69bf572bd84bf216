"""Run a whole study: ``python -m evaluation.run``.

Reads a registry extract (``--data DIR``) or generates the configured synthetic
scenario, runs every analysis, writes the results folder atomically and builds
the report. Bad input (extract or configuration) ends with exit status 2, a
message naming the file, column and rows, and no results written.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
import traceback
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.table import Table

from analysis.data.validation import one_line
from evaluation.config import ConfigError, StudyConfig, load_config
from evaluation.progress import Steps

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m evaluation.run``."""
    parser = _Parser(
        prog="python -m evaluation.run",
        description="Evaluate heroin-assisted treatment (HAT) against matched OST comparators: "
        "read (or generate) a registry extract, run every analysis, write a results folder "
        "and build the report.",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="registry extract folder in the data-contract format "
        "(default: generate the configured synthetic scenario)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        metavar="DIR",
        help="results folder: a new path, an empty folder or a results folder written "
        "earlier (replaced when the run completes); nothing else is ever replaced",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="study configuration (YAML)")
    parser.add_argument("--seed", type=int, metavar="N", help="seed (overrides the config)")
    parser.add_argument(
        "--scenario", metavar="NAME", help="synthetic scenario when no --data (overrides config)"
    )
    parser.add_argument("--no-book", action="store_true", help="do not build the report")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def print_summary(results: dict, out: Path) -> None:
    """Print the primary estimates with confidence intervals (and truth where known)."""
    table = Table(title="Primary estimates (HAT vs matched OST)")
    for col in ("outcome", "measure", "estimate", "95% CI", "p", "truth"):
        table.add_column(col, justify="left" if col in ("outcome", "measure") else "right")
    for est in results["estimates"]:
        if not est["primary"]:
            continue

        def fmt(x: float | None) -> str:
            return "–" if x is None else f"{x:.2f}"

        p = est["p_value"]
        table.add_row(
            est["outcome"],
            est["measure"],
            fmt(est["estimate"]),
            f"{fmt(est['ci_low'])} to {fmt(est['ci_high'])}",
            "–" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}"),
            fmt(est["truth"]),
        )
    console = Console()
    console.print(table)
    cohort = results["cohort"]
    console.print(
        f"HAT {cohort['n_hat']} (matched {cohort['n_hat_matched']}), "
        f"OST {cohort['n_ost']} (matched {cohort['n_ost_matched']}). Results: {out}"
    )


def run(
    *,
    data: Path | None,
    out: Path,
    config: StudyConfig,
    book: bool = True,
    quiet: bool = False,
    keep: tuple[Path, ...] = (),
) -> tuple[dict, list[str]]:
    """Run a study end to end; return the contents of ``results.json`` and the warnings.

    ``out`` is checked before any work (see
    :func:`evaluation.output_path.check_output_path`) and locked for the run; the
    new results folder, report included, replaces it only once complete.

    Raises
    ------
    analysis.data.validation.ExtractError
        The extract breaks a rule of the data contract.
    evaluation.output_path.OutputError
        ``out`` may not be written (or another run is writing it).
    evaluation.pipeline.StudyError
        The study cannot be done on this extract.
    """
    from analysis.data.extract import read_extract
    from evaluation.output_path import check_output_path
    from evaluation.pipeline import run_study
    from evaluation.results_folder import (
        ResultsFolderWriter,
        command_line,
        hash_files,
        lock_record,
        package_versions,
    )

    target = check_output_path(out, extract=data, keep=keep)
    steps = Steps(quiet=quiet)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with (
        ResultsFolderWriter(target) as writer,
        tempfile.TemporaryDirectory(prefix="hat-extract-") as tmp,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("default")
        source: dict
        if data is None:
            from synthetic import generate_extract

            with steps.step(f"generate synthetic scenario '{config.scenario}'"):
                data_dir = generate_extract(
                    config.scenario,
                    out=Path(tmp) / "extract",
                    seed=config.seed,
                    n_hat=config.n_hat,
                    n_ost=config.n_ost,
                )
            source = {"kind": "synthetic", "scenario": config.scenario}
        else:
            data_dir = Path(data)
            source = {"kind": "extract", "path": str(data_dir.resolve())}
        with steps.step("read and validate extract"):
            extract = read_extract(data_dir)
            input_hash = hash_files(data_dir)
        study = run_study(extract, config, steps=steps)
        seen = _warning_lines(caught)
        manifest = {
            "created": started.isoformat(timespec="seconds"),
            "command": command_line(),
            "seed": config.seed,
            "config": config.to_dict(),
            "config_sha256": config.hash(),
            "source": source,
            "input": input_hash,
            "extract_date": extract.extract_date.strftime("%Y-%m-%d"),
            "extract_notes": list(extract.notes),
            "warnings": seen,
            "counts": study.results["cohort"],
            "versions": package_versions(),
            "lock": lock_record(),
        }
        with steps.step("write results folder"):
            manifest["timings_seconds"] = dict(steps.timings)
            manifest["elapsed_seconds"] = round(time.perf_counter() - t0, 2)
            writer.write(
                results=study.results,
                manifest=manifest,
                tables=study.tables,
                figures=study.figures(),
            )
        # version 1 and version 2 (the emulated target trial) alike: the release applies the
        # rules to each table it holds, the report chooses its chapters by the version
        from evaluation.release import write_release

        with steps.step("disclosure control (release/)"):
            write_release(writer.staging)
        if book:
            from evaluation.report import build_book

            with steps.step("build the report"):
                build_book(writer.staging, shown_as=writer.out)
        writer.commit()
        seen = _warning_lines(caught)
    return study.results, seen


def _warning_lines(caught: list[warnings.WarningMessage]) -> list[str]:
    """Distinct warnings, in order, as ``Category: message`` lines."""
    lines = [f"{w.category.__name__}: {one_line(w.message)}" for w in caught]
    return list(dict.fromkeys(lines))


class Terminated(BaseException):
    """The process received SIGTERM or SIGHUP (handled like Ctrl-C: nothing is written)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: the signal that stopped the run, if any (an exception raised inside an import or a
#: descriptor's ``__set_name__`` can reach us wrapped in another exception type)
_received: list[int] = []


def _raise_terminated(signum: int, frame: object) -> None:
    _received.append(signum)
    raise Terminated(signum)


def _raise_interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _crash_log(exc: BaseException) -> Path:
    """Write the full traceback of an unexpected error to a log file; return its path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    fd, name = tempfile.mkstemp(prefix=f"hat-evaluation-error-{stamp}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"command: {' '.join(sys.argv)}\n\n")
        fh.write("".join(traceback.format_exception(exc)))
    return Path(name)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def _check_options(args: argparse.Namespace) -> None:
    """Options that contradict each other or name nothing usable."""
    if args.data is not None:
        if args.scenario is not None:
            raise ConfigError(
                "--scenario chooses the synthetic data generated when no --data is given; "
                "it cannot be combined with --data"
            )
        if not args.data.is_dir():
            what = "is not a folder" if args.data.exists() else "no such folder"
            raise ConfigError(f"--data {args.data}: {what}")


def _check_scenario(config: StudyConfig) -> None:
    from synthetic.spec import ScenarioError, load_scenario

    try:
        load_scenario(config.scenario, seed=config.seed, n_hat=config.n_hat, n_ost=config.n_ost)
    except ScenarioError as exc:
        raise ConfigError(f"scenario: {one_line(exc)}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status.

    0: results written; 2: bad input (options, configuration, extract, ``--out``,
    or a study that cannot be done on the data), nothing written; 130/143:
    interrupted by Ctrl-C / SIGTERM, nothing written; 1: an internal error (a
    bug), nothing written, the traceback in a log file named on stderr.
    """
    args = build_parser().parse_args(argv)
    from analysis.data.validation import ExtractError
    from evaluation.output_path import OutputError
    from evaluation.pipeline import StudyError, not_estimable

    handlers = {}
    _received.clear()
    for signum, handler in (
        (signal.SIGTERM, _raise_terminated),
        (signal.SIGHUP, _raise_terminated),
        (signal.SIGINT, _raise_interrupt),
    ):
        with contextlib.suppress(ValueError):  # not the main thread: leave the handlers
            handlers[signum] = signal.signal(signum, handler)
    try:
        _check_options(args)
        config = load_config(args.config, seed=args.seed, scenario=args.scenario)
        if args.data is None:
            _check_scenario(config)
        keep = tuple(p for p in (args.config, Path.cwd()) if p is not None)
        results, seen = run(
            data=args.data,
            out=args.out,
            config=config,
            book=not args.no_book,
            quiet=args.quiet,
            keep=keep,
        )
    except StudyError as exc:
        return _fail(f"the study cannot be done: {one_line(exc)}")
    except (ConfigError, ExtractError, OutputError) as exc:
        return _fail(one_line(exc))
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C); nothing was written", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"terminated (signal {exc.signum}); nothing was written", file=sys.stderr)
        return 128 + exc.signum
    except Exception as exc:  # a bug: one line for the user, the traceback in a file
        from evaluation.report import BookBuildError

        if _received:  # the signal's exception came back wrapped (e.g. from an import)
            if _received[0] == signal.SIGINT:
                print("interrupted (Ctrl-C); nothing was written", file=sys.stderr)
                return 130
            print(f"terminated (signal {_received[0]}); nothing was written", file=sys.stderr)
            return 128 + _received[0]

        log = _crash_log(exc)
        what = (
            "the report could not be built (rerun with --no-book to get the results folder "
            "without it)"
            if isinstance(exc, BookBuildError)
            else f"internal error: {type(exc).__name__}: {one_line(exc)[:300]}"
        )
        print(
            f"error: {what}; this is a bug, please report it with the log {log}; "
            "nothing was written",
            file=sys.stderr,
        )
        return 1
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    for line in seen:
        print(f"warning: {line}", file=sys.stderr)
    for line in not_estimable(results["estimates"]):
        print(f"not estimable: {line}", file=sys.stderr)
    print_summary(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
