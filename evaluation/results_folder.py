"""Writing a results folder atomically.

A results folder holds ``results.json`` (the data contract's output),
``manifest.json`` (provenance), ``tables/*.csv`` and ``figures/*.png``. It is
assembled in a hidden sibling folder and moved into place only when complete,
so a failed or interrupted run never leaves a ``results.json`` that looks
complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PACKAGES = (
    "hat-evaluation",
    "numpy",
    "pandas",
    "scipy",
    "statsmodels",
    "lifelines",
    "scikit-learn",
    "pandera",
    "pyarrow",
    "pydantic",
    "matplotlib",
    "seaborn",
    "jupyter-book",
)


def json_safe(value: Any) -> Any:
    """Convert numpy scalars, NaN/inf (to ``None``), tuples and Timestamps for JSON."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, (pd.Timestamp,)):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(obj: Any) -> str:
    """Deterministic JSON text (stable key order as given, 2-space indent, final newline)."""
    return json.dumps(json_safe(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that decide the results."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def hash_files(folder: str | Path) -> dict[str, Any]:
    """SHA-256 of every file of an extract folder and of all of them together."""
    folder = Path(folder)
    files = {}
    total = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        files[path.name] = digest
        total.update(f"{path.name}:{digest}\n".encode())
    return {"sha256": total.hexdigest(), "files": files}


def _close(fig: Any) -> None:
    """Release a matplotlib figure once saved (pyplot keeps every open figure)."""
    import matplotlib.pyplot as plt

    if isinstance(fig, plt.Figure):
        plt.close(fig)


def write_results_folder(
    out: str | Path,
    *,
    results: Mapping[str, Any],
    manifest: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame] | None = None,
    figures: Mapping[str, Any] | None = None,
) -> Path:
    """Write a complete results folder, atomically.

    Parameters
    ----------
    out : path-like
        The results folder. An existing folder of that name is replaced only
        once the new one is complete.
    results : mapping
        Contents of ``results.json``.
    manifest : mapping
        Contents of ``manifest.json``.
    tables : mapping of str to DataFrame, optional
        Written as ``tables/<name>.csv``.
    figures : mapping of str to matplotlib Figure, optional
        Written as ``figures/<name>.png``.

    Returns
    -------
    pathlib.Path
        The folder written.
    """
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    backup = out.parent / f".{out.name}.previous-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        (staging / "tables").mkdir(parents=True)
        (staging / "figures").mkdir()
        for name, df in (tables or {}).items():
            df.to_csv(staging / "tables" / f"{name}.csv", index=False, lineterminator="\n")
        for name, fig in (figures or {}).items():
            fig.savefig(staging / "figures" / f"{name}.png", dpi=120, bbox_inches="tight")
            _close(fig)
        (staging / "manifest.json").write_text(dumps(manifest), encoding="utf-8")
        # results.json last: its presence marks a complete folder
        (staging / "results.json").write_text(dumps(results), encoding="utf-8")
        if out.exists():
            out.rename(backup)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if backup.exists() and not out.exists():
            backup.rename(out)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    return out


def command_line() -> str:
    """The command that started this process, for the manifest."""
    return " ".join([Path(sys.executable).name, *sys.argv])
