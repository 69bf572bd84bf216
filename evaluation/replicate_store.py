"""Records of a simulation study on disk (:mod:`evaluation.simulate`).

Each replicate's record is written atomically by the process that started the study
(:func:`write_json_atomic`: a temporary sibling and a rename), so an interrupted study
leaves complete records only; :func:`load_records` finds them when the study is resumed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluation.replicates import Setting, SimulationError

__all__ = ["load_records", "replicate_path", "write_json_atomic", "write_text_atomic"]


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary sibling and an atomic rename."""
    from evaluation.results_folder import dumps

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(obj), encoding="utf-8")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def replicate_path(out: Path, setting: Setting, replicate: int) -> Path:
    """``out/replicates/n_hat-<N>/<i>.json`` (``i`` zero-padded to 4 digits)."""
    return out / "replicates" / setting.name / f"{replicate:04d}.json"


def load_records(
    out: Path, settings: Sequence[Setting], replicates: int, fingerprint: str
) -> dict[tuple[str, int], dict[str, Any]]:
    """Completed replicates already in ``out`` for these settings (``i < replicates``).

    Left-over temporary files of an interrupted run are removed; unreadable records are
    ignored (they will be run again).

    Raises
    ------
    SimulationError
        A record belongs to another study (different scenario, configuration or seed).
    """
    done: dict[tuple[str, int], dict[str, Any]] = {}
    for setting in settings:
        folder = out / "replicates" / setting.name
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for i in range(replicates):
            path = replicate_path(out, setting, i)
            if not path.is_file():
                continue
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if rec.get("study") != fingerprint:
                raise SimulationError(
                    f"{path} belongs to another simulation study (different scenario, "
                    "configuration or seed); use another --out folder"
                )
            done[(setting.name, i)] = rec
    return done
