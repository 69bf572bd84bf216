"""Writing a results folder atomically.

A results folder holds ``results.json`` (the data contract's output),
``manifest.json`` (provenance, and the marker that identifies a results
folder), ``tables/*.csv``, ``figures/*.png`` and the report in ``book/``. It is
assembled in a hidden sibling folder and moved into place only when complete
(:class:`ResultsFolderWriter`), so a failed or interrupted run never leaves a
``results.json`` that looks complete, never leaves a hidden sibling behind, and
keeps the previous results folder intact.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import sys
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation.output_path import (
    MARKER_KEY,
    PRODUCER,
    OutputError,
    check_output_path,
    foreign_files,
    is_results_folder,
)

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
    "acro",
)

#: the locked environment: exact versions (and hashes) of every dependency for Python 3.11,
#: written by ``uv pip compile`` (the command is in the file's first lines, and in the README)
LOCK_FILE = Path(__file__).resolve().parents[1] / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", flags=re.M)


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


def _normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Foo_bar`` and ``foo-bar`` are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(text: str) -> dict[str, str]:
    """The ``name==version`` pins of a lock file (``requirements.lock``), by normalised name."""
    return {_normalise(name): version for name, version in _PIN.findall(text)}


def lock_record(path: str | Path = LOCK_FILE) -> dict[str, Any]:
    """The lock file's SHA-256 and whether the running environment is the locked one.

    Parameters
    ----------
    path : path-like
        The lock file; default ``requirements.lock`` beside the package's sources.

    Returns
    -------
    dict
        ``file`` (its name), ``sha256`` (of its bytes), ``packages`` (number of
        pins), ``environment_matches`` (every pinned package installed at its locked
        version) and ``differences`` (``{name: {locked, installed}}``, empty when it
        matches). Without a lock file, ``sha256`` and ``environment_matches`` are
        ``None`` and ``note`` says why.
    """
    path = Path(path)
    if not path.is_file():
        return {
            "file": path.name,
            "sha256": None,
            "environment_matches": None,
            "note": f"no lock file at {path}: the package is not installed from its sources",
        }
    data = path.read_bytes()
    installed = {
        _normalise(dist.metadata["Name"] or ""): dist.version for dist in metadata.distributions()
    }
    pins = locked_versions(data.decode("utf-8"))
    differences = {
        name: {"locked": version, "installed": installed.get(name, "not installed")}
        for name, version in pins.items()
        if installed.get(name) != version
    }
    return {
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "packages": len(pins),
        "environment_matches": not differences,
        "differences": differences,
    }


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


class FolderBusy(OutputError):
    """Another run is writing the same results folder."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


class ResultsFolderWriter:
    """Write a results folder atomically, under a lock, leaving nothing else behind.

    Use as a context manager around the whole run::

        with ResultsFolderWriter(check_output_path(out)) as writer:
            ...  # long work
            writer.write(results=..., manifest=..., tables=..., figures=...)
            build_book(writer.staging)  # optional: more files in the new folder
            writer.commit()

    On entering, missing parent folders are created and a lock is taken
    (``.<name>.lock`` beside the folder, held with ``flock``), so a second run
    into the same folder is refused with :class:`FolderBusy` before it does any
    work. The folder is assembled in a hidden sibling (``.<name>.partial-<pid>``)
    and :meth:`commit` swaps it into place with signals blocked: the previous
    results folder (if any) stays intact until then and is removed after. On
    leaving without a commit (an error, Ctrl-C, SIGTERM) the partial folder is
    removed, the previous folder kept, and parent folders created on entering are
    removed again if empty. The lock file is removed in every case. Siblings left
    by a run that was killed (SIGKILL, power loss) are cleaned up by the next run
    into the same folder, which restores a previous folder left aside.

    Parameters
    ----------
    out : pathlib.Path
        The results folder, as returned by
        :func:`evaluation.output_path.check_output_path`.
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.staging = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"
        self._backup = self.out.parent / f".{self.out.name}.previous-{os.getpid()}"
        self._lock_path = self.out.parent / f".{self.out.name}.lock"
        self._lock_fd: int | None = None
        self._created: list[Path] = []
        self.committed = False

    # ------------------------------------------------------------------ lock
    def _make_parents(self) -> None:
        missing = []
        parent = self.out.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for folder in reversed(missing):
            folder.mkdir()
            self._created.append(folder)

    def _acquire(self) -> None:
        while True:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip()
                os.close(fd)
                raise FolderBusy(
                    f"--out {self.out}: another run (process {holder or 'unknown'}) is writing "
                    "this results folder; wait for it to finish or choose another --out"
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self._lock_path))
            except FileNotFoundError:
                same = False
            if same:  # not unlinked by the previous holder between open and flock
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._lock_path)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _recover(self) -> None:
        """Clean up after a run into the same folder that was killed (we hold the lock)."""
        prefix = f".{self.out.name}."
        for sibling in sorted(self.out.parent.glob(f"{glob.escape(prefix)}*-*")):
            kind, _, pid = sibling.name[len(prefix) :].rpartition("-")
            if kind not in ("partial", "previous") or not pid.isdigit() or not sibling.is_dir():
                continue
            if kind == "previous" and not self.out.exists():
                sibling.rename(self.out)  # the swap was cut between its two renames
            else:
                shutil.rmtree(sibling, ignore_errors=True)

    def __enter__(self) -> ResultsFolderWriter:
        try:
            self._make_parents()
            self._acquire()
            self._recover()
            if self.staging.exists():
                shutil.rmtree(self.staging)
            self.staging.mkdir()
        except BaseException as exc:
            self._abandon()
            if isinstance(exc, OSError):
                raise OutputError(
                    f"--out {self.out}: cannot write there: {_os_reason(exc)}"
                ) from None
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.committed:
            self._abandon()

    def _abandon(self) -> None:
        with _signals_blocked():
            shutil.rmtree(self.staging, ignore_errors=True)
            if self._backup.exists() and not self.out.exists():
                self._backup.rename(self.out)
            self._release()
            for folder in reversed(self._created):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if still empty
            self._created = []

    # ----------------------------------------------------------------- write
    def write(
        self,
        *,
        results: Mapping[str, Any],
        manifest: Mapping[str, Any],
        tables: Mapping[str, pd.DataFrame] | None = None,
        figures: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write the results, manifest, tables and figures into the staging folder.

        ``manifest.json`` gets the marker that identifies a results folder
        (:data:`evaluation.output_path.MARKER_KEY`, listing the files written);
        ``results.json`` is written last. Returns the staging folder.
        """
        staging = self.staging
        try:
            (staging / "tables").mkdir(exist_ok=True)
            (staging / "figures").mkdir(exist_ok=True)
            files = []
            for name, df in (tables or {}).items():
                df.to_csv(staging / "tables" / f"{name}.csv", index=False, lineterminator="\n")
                files.append(f"tables/{name}.csv")
            for name, fig in (figures or {}).items():
                fig.savefig(staging / "figures" / f"{name}.png", dpi=120, bbox_inches="tight")
                _close(fig)
                files.append(f"figures/{name}.png")
            marker = {"producer": PRODUCER, "format": 1, "files": sorted(files)}
            full_manifest = {MARKER_KEY: marker, **manifest}
            (staging / "manifest.json").write_text(dumps(full_manifest), encoding="utf-8")
            # results.json last: its presence marks a complete folder
            (staging / "results.json").write_text(dumps(results), encoding="utf-8")
        except OSError as exc:
            raise OutputError(
                f"--out {self.out}: cannot write the results folder: {_os_reason(exc)}"
            ) from None
        return staging

    def commit(self) -> Path:
        """Put the new folder in place of the previous one; returns the folder."""
        if not (self.staging / "results.json").is_file():
            raise RuntimeError("commit() before write(): the results folder is incomplete")
        with _signals_blocked():
            if self.out.exists() or self.out.is_symlink():
                # the place was checked before the run; check again that it is still ours
                if self.out.is_symlink() or not self.out.is_dir():
                    raise OutputError(f"--out {self.out}: became a file during the run")
                entries = list(self.out.iterdir())
                if entries and (not is_results_folder(self.out) or foreign_files(self.out)):
                    raise OutputError(
                        f"--out {self.out}: files that the package did not write appeared there "
                        "during the run; nothing was replaced"
                    )
                self.out.rename(self._backup)
            self.staging.rename(self.out)
            self.committed = True
            shutil.rmtree(self._backup, ignore_errors=True)
            self._release()
            self._created = []
        return self.out


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold the lock a run into ``out`` takes (:class:`FolderBusy` if another holds it)."""
    writer = ResultsFolderWriter(out)
    writer._acquire()
    try:
        yield
    finally:
        writer._release()


def _os_reason(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{(exc.strerror or str(exc)).lower()}{where}"


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold back SIGINT, SIGTERM and SIGHUP while the file system is being changed."""
    blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
        The results folder: a new path, an empty folder or a results folder
        written earlier (see :func:`evaluation.output_path.check_output_path`),
        replaced only once the new one is complete.
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

    Raises
    ------
    evaluation.output_path.OutputError
        ``out`` names a place that may not be replaced, or cannot be written.
    """
    with ResultsFolderWriter(check_output_path(out)) as writer:
        writer.write(results=results, manifest=manifest, tables=tables, figures=figures)
        return writer.commit()


def command_line() -> str:
    """The command that started this process, for the manifest."""
    return " ".join([Path(sys.executable).name, *sys.argv])
