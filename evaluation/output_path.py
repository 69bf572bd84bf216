"""Where a results folder may be written: the checks made before any work is done.

A run replaces its ``--out`` folder. So that it can never destroy a user's
files, ``--out`` may only name

- a path that does not exist yet (missing parent folders are created), or
- an empty folder, or
- a results folder written by this package earlier (recognised by the marker in
  its ``manifest.json``) that holds only files the package wrote.

Anything else is refused with :class:`OutputError` before any work is done: a
file, a symbolic link, a folder holding other files, a path whose parent is a
file or cannot be written, the extract folder, a folder inside it or containing
it, a folder containing the configuration file or the current directory.
"""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "MARKER_KEY",
    "PRODUCER",
    "OutputError",
    "check_output_path",
    "foreign_files",
    "is_results_folder",
]

#: the package that writes results folders, as named in their manifest
PRODUCER = "hat-evaluation"
#: manifest key holding the marker ``{"producer": ..., "format": ..., "files": [...]}``
MARKER_KEY = "results_folder"
#: entries a results folder may hold at its top level
TOP_LEVEL = ("results.json", "manifest.json", "tables", "figures", "book", "release")
#: what a release writer leaves while it swaps ``release/`` in (removed by the next one)
_RELEASE_STAGING = re.compile(r"^\.release\.(partial|previous)-\d+$")
_SHOWN = 3


class OutputError(ValueError):
    """``--out`` names a place where a results folder may not be written."""


def _manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def is_results_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a results folder written by this package.

    A folder written by this version carries ``manifest.json`` with
    ``{"results_folder": {"producer": "hat-evaluation", ...}}``; one written by
    an earlier version is recognised by ``results.json`` beside a manifest
    whose ``versions`` name the package.
    """
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        return False
    manifest = _manifest(folder)
    if manifest is None:
        return False
    marker = manifest.get(MARKER_KEY)
    if isinstance(marker, dict):
        return marker.get("producer") == PRODUCER
    versions = manifest.get("versions")
    return (
        (folder / "results.json").is_file() and isinstance(versions, dict) and PRODUCER in versions
    )


def _listed_files(folder: Path) -> set[str] | None:
    marker = (_manifest(folder) or {}).get(MARKER_KEY)
    if isinstance(marker, dict) and isinstance(marker.get("files"), list):
        return {str(f) for f in marker["files"]}
    return None


def foreign_files(folder: str | Path) -> list[str]:
    """Files and folders in a results folder that the package did not write.

    Parameters
    ----------
    folder : path-like
        A results folder (see :func:`is_results_folder`).

    Returns
    -------
    list of str
        Paths relative to ``folder``, sorted. Everything under ``book/`` (the
        report's build) counts as written by the package; elsewhere a file is
        the package's if the manifest lists it (folders of earlier versions,
        whose manifest lists no files: ``tables/*.csv`` and ``figures/*.png``).
    """
    folder = Path(folder)
    listed = _listed_files(folder)
    found = []
    for entry in sorted(folder.iterdir()):
        if _RELEASE_STAGING.match(entry.name) and entry.is_dir() and not entry.is_symlink():
            continue
        if entry.name == "release":
            found += _foreign_in_release(folder, entry)
            continue
        if entry.name not in TOP_LEVEL:
            found.append(entry.name)
            continue
        if entry.name in ("results.json", "manifest.json"):
            if entry.is_symlink() or not entry.is_file():
                found.append(entry.name)
            continue
        if entry.name == "book":
            if entry.is_symlink() or not entry.is_dir():
                found.append(entry.name)
            continue
        if entry.is_symlink() or not entry.is_dir():
            found.append(entry.name)
            continue
        suffix = ".csv" if entry.name == "tables" else ".png"
        for path in sorted(entry.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            ours = (
                relative in listed
                if listed is not None
                else path.parent == entry and path.suffix == suffix
            )
            if not ours or path.is_symlink() or not path.is_file():
                found.append(relative)
    return found


def _foreign_in_release(folder: Path, release: Path) -> list[str]:
    """Files under ``release/`` that its record (``release/disclosure.json``) does not list."""
    if release.is_symlink() or not release.is_dir():
        return [release.name]
    try:
        record = json.loads((release / "disclosure.json").read_text(encoding="utf-8"))
        listed = {f"release/{f}" for f in record["files"]} | {"release/disclosure.json"}
    except (OSError, ValueError, KeyError, TypeError):
        listed = set()
    found = []
    for path in sorted(release.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_symlink() or (path.is_file() and relative not in listed):
            found.append(relative)
    return found


def _within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or inside it (both absolute, resolved)."""
    return path == folder or folder in path.parents


def _resolved(path: Path) -> Path:
    """Absolute path with symbolic links resolved in the parent, not in the last part."""
    path = Path(os.path.abspath(path))
    if path.name in ("", ".", ".."):
        return path.resolve()
    return path.parent.resolve() / path.name


def _show(paths: Iterable[str]) -> str:
    paths = list(paths)
    shown = ", ".join(repr(p) for p in paths[:_SHOWN])
    return shown + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


def _check_parent(out: Path, given: str) -> None:
    """The nearest existing ancestor of ``out`` must be a writable folder."""
    ancestor = out.parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if ancestor.is_symlink() and not ancestor.exists():
        raise OutputError(f"--out {given}: {ancestor} is a broken symbolic link")
    if not ancestor.is_dir():
        raise OutputError(
            f"--out {given}: {ancestor} is a file, not a folder, so nothing can be written below it"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(
            f"--out {given}: cannot write in {ancestor} ({os.strerror(errno.EACCES).lower()})"
        )


def check_output_path(
    out: str | Path,
    *,
    extract: str | Path | None = None,
    keep: Iterable[str | Path] = (),
) -> Path:
    """Check that a results folder may be written at ``out``.

    Parameters
    ----------
    out : path-like
        The ``--out`` option as given.
    extract : path-like, optional
        The extract folder (``--data``): ``out`` may not be it, contain it or be
        inside it.
    keep : iterable of path-like
        Other files or folders that must survive (the configuration file, the
        current directory): ``out`` may not be or contain any of them.

    Returns
    -------
    pathlib.Path
        The absolute path of the results folder (symbolic links in its parent
        resolved).

    Raises
    ------
    OutputError
        With a one-line reason naming ``out``.
    """
    given = str(out)
    if Path(out).is_symlink():
        raise OutputError(
            f"--out {given}: is a symbolic link; name the folder itself (nothing was changed)"
        )
    target = _resolved(Path(out))
    if target.parent == target:
        raise OutputError(f"--out {given}: the root of the file system cannot be a results folder")
    if extract is not None:
        data = Path(extract).resolve()
        if _within(target, data) or _within(data, target):
            where = (
                "is the extract folder"
                if target == data
                else "is inside the extract folder"
                if _within(target, data)
                else f"contains the extract folder {data}"
            )
            raise OutputError(
                f"--out {given}: {where}; the results folder must be a separate place "
                "(nothing was changed)"
            )
    for item in keep:
        kept = Path(item).resolve()
        if _within(kept, target):
            raise OutputError(
                f"--out {given}: contains {kept}, which a run must not replace; "
                "choose another --out (nothing was changed)"
            )
    if target.exists():
        if not target.is_dir():
            raise OutputError(
                f"--out {given}: is a file, not a folder; a run writes a new folder or replaces "
                "a results folder it wrote earlier, nothing else (nothing was changed)"
            )
        entries = sorted(p.name for p in target.iterdir())
        if entries and not is_results_folder(target):
            raise OutputError(
                f"--out {given}: is a folder that is not a results folder of this package "
                f"(it holds {_show(entries)}); choose a new or empty folder (nothing was changed)"
            )
        if entries:
            extra = foreign_files(target)
            if extra:
                raise OutputError(
                    f"--out {given}: is a results folder that also holds files the package did "
                    f"not write ({_show(extra)}); move them out first (nothing was changed)"
                )
        if not os.access(target.parent, os.W_OK | os.X_OK):
            raise OutputError(
                f"--out {given}: cannot replace it: no permission to write in {target.parent}"
            )
    else:
        _check_parent(target, given)
    return target
