"""``python -m evaluation.release RESULTS_DIR [--config FILE]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.config import ConfigError, load_config
from evaluation.output_path import OutputError, foreign_files, is_results_folder
from evaluation.release.make import Release
from evaluation.release.record import RECORD, ReleaseError
from evaluation.release.write import write_release

__all__ = ["main", "summary_lines"]


def summary_lines(release: Release) -> list[str]:
    """One line per output that was changed, for the terminal."""
    lines = []
    for out in release.outputs:
        if out.status == "pass":
            continue
        what = f"{len(out.suppressed)} suppressed" if out.suppressed else ""
        if out.coarsened:
            what += (", " if what else "") + "coarsened"
        lines.append(f"{out.name}: {what}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.release RESULTS_DIR [--config FILE]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.release",
        description="Write RESULTS_DIR/release/: the outputs that pass statistical disclosure "
        "control (ACRO's rules), with the disclosure record (disclosure.json, and acro/ for "
        "SACRO-Viewer). Nothing else in RESULTS_DIR is changed.",
    )
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="study configuration whose disclosure: section sets the thresholds (default: "
        "the configuration in RESULTS_DIR/manifest.json, else ACRO's defaults)",
    )
    args = parser.parse_args(argv)
    from evaluation.results_folder import folder_lock

    folder = args.results_dir
    try:
        override = load_config(args.config).disclosure if args.config else None
        if not is_results_folder(folder):
            raise ReleaseError(f"{folder}: not a results folder written by the package")
        extra = foreign_files(folder)
        if extra:
            raise ReleaseError(
                f"{folder}: holds files the package did not write ({', '.join(extra[:3])}); "
                "nothing was changed"
            )
        with folder_lock(Path(folder).resolve()):
            target, release = write_release(folder, config=override)
    except (ReleaseError, OutputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in summary_lines(release):
        print(line)
    print(f"release written: {target} (record: {target / RECORD})")
    return 0
