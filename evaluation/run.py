"""Run a whole study: ``python -m evaluation.run``.

Reads a registry extract (``--data DIR``) or generates the configured synthetic
scenario, runs every analysis, writes the results folder atomically and builds
the report. Bad input (extract or configuration) ends with exit status 2, a
message naming the file, column and rows, and no results written.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from evaluation.config import ConfigError, StudyConfig, load_config
from evaluation.progress import Steps

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m evaluation.run``."""
    parser = argparse.ArgumentParser(
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
        "--out", type=Path, default=Path("results"), metavar="DIR", help="results folder"
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
) -> dict:
    """Run a study end to end and return the contents of ``results.json``.

    Raises
    ------
    analysis.validation.ExtractError
        The extract breaks a rule of the data contract.
    """
    from analysis.extract import read_extract
    from evaluation.pipeline import run_study
    from evaluation.results_folder import (
        command_line,
        hash_files,
        package_versions,
        write_results_folder,
    )

    steps = Steps(quiet=quiet)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hat-extract-") as tmp:
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
            "counts": study.results["cohort"],
            "versions": package_versions(),
        }
        with steps.step("write results folder"):
            study_results = study.results
            manifest["timings_seconds"] = dict(steps.timings)
            manifest["elapsed_seconds"] = round(time.perf_counter() - t0, 2)
            write_results_folder(
                out,
                results=study_results,
                manifest=manifest,
                tables=study.tables,
                figures=study.figures(),
            )
    if book:
        from evaluation.report import build_book

        with steps.step("build the report"):
            build_book(out)
    return study_results


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    from analysis.validation import ExtractError
    from evaluation.pipeline import StudyError

    try:
        config = load_config(args.config, seed=args.seed, scenario=args.scenario)
        if args.data is not None and not args.data.is_dir():
            raise ConfigError(f"--data {args.data}: no such folder")
        results = run(
            data=args.data, out=args.out, config=config, book=not args.no_book, quiet=args.quiet
        )
    except (ConfigError, ExtractError, StudyError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("interrupted; no results written", file=sys.stderr)
        return 130
    print_summary(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
