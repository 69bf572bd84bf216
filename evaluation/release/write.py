"""Writing a release: ``release/`` assembled aside and swapped in, with its record."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from evaluation.config import DisclosureConfig
from evaluation.output_path import OutputError
from evaluation.release.acro import load_acro, write_acro
from evaluation.release.make import Release, make_release
from evaluation.release.record import ACRO_FOLDER, RECORD, RELEASE, Output

__all__ = ["release_files", "write_release", "write_release_into"]


def _sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_release_into(release: Release, target: Path) -> None:
    """Write a release into the new folder ``target`` (which must not exist)."""
    from evaluation.figures import all_figures
    from evaluation.results_folder import _close, dumps

    target.mkdir()
    (target / "tables").mkdir()
    (target / "figures").mkdir()
    for name, df in release.tables.items():
        df.to_csv(target / "tables" / f"{name}.csv", index=False, lineterminator="\n")
    # figures from the released tables only
    drawable = {
        k: v.dropna(subset=["n"]) if k == "ps_overlap" else v for k, v in release.tables.items()
    }
    for name, fig in all_figures(drawable).items():
        fig.savefig(
            target / "figures" / f"{name}.png",
            dpi=120,
            bbox_inches="tight",
            metadata={"Software": None},
        )
        _close(fig)
        source = {
            "love_plot": "balance",
            "forest": "estimates",
            "km_retention": "km_retention",
            "cif_overdose": "cif_overdose",
            "ps_overlap": "ps_overlap",
        }.get(name, name)
        out = Output(
            name=f"figures/{name}.png",
            kind="custom",
            rules=[f"drawn only from the released tables/{source}.csv"],
        )
        out.comments.append(f"drawn from tables/{source}.csv of this release")
        release.outputs.append(out)
    (target / "manifest.json").write_text(dumps(release.manifest), encoding="utf-8")
    (target / "results.json").write_text(dumps(release.results), encoding="utf-8")
    write_acro(release, target / ACRO_FOLDER, str(release.manifest.get("created", "")))
    files = {
        p.relative_to(target).as_posix(): _sha256(p)
        for p in sorted(target.rglob("*"))
        if p.is_file()
    }
    cfg = release.rules.config
    record = {
        "format": 1,
        "producer": "hat-evaluation",
        "tool": {"name": "ACRO", "version": load_acro().version.__version__},
        "config": cfg.model_dump(),
        "config_source": release.manifest["release"]["disclosure_config_source"],
        "acro_config": cfg.acro_config(),
        "rules": release.rules.describe(),
        "outputs": [o.record() for o in release.outputs],
        "not_released": release.withheld,
        "acro_record": f"{ACRO_FOLDER}/results.json",
        "files": files,
    }
    (target / RECORD).write_text(dumps(record), encoding="utf-8")


def release_files(folder: str | Path) -> set[str] | None:
    """Files of ``folder/release`` that its record lists (``None`` without a readable record)."""
    try:
        record = json.loads((Path(folder) / RELEASE / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict):
        return None
    return {f"{RELEASE}/{f}" for f in files} | {f"{RELEASE}/{RECORD}"}


def write_release(
    folder: str | Path, *, config: DisclosureConfig | None = None
) -> tuple[Path, Release]:
    """Make ``folder/release`` and put it in place atomically.

    The release is assembled in ``folder/.release.partial-<pid>`` and swapped in with
    signals blocked; a previous ``release/`` is replaced only if every file in it is
    listed in its record (written by this function).

    Returns
    -------
    (pathlib.Path, Release)
        The release folder and what it holds.
    """
    from evaluation.results_folder import _signals_blocked

    folder = Path(folder)
    target = folder / RELEASE
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise OutputError(f"{target}: not a release folder written by the package; left alone")
    if target.exists():
        listed = release_files(folder) or set()
        found = {p.relative_to(folder).as_posix() for p in target.rglob("*") if not p.is_dir()}
        extra = sorted(found - listed)
        if extra or any(p.is_symlink() for p in target.rglob("*")):
            raise OutputError(
                f"{target}: holds files the package did not write ({', '.join(extra[:3])}); "
                "move them out first (nothing was changed)"
            )
    release = make_release(folder, config=config)
    for stale in folder.glob(".release.*-*"):
        if stale.is_dir() and stale.name.rpartition("-")[2].isdigit():
            shutil.rmtree(stale, ignore_errors=True)
    staging = folder / f".release.partial-{os.getpid()}"
    backup = folder / f".release.previous-{os.getpid()}"
    try:
        write_release_into(release, staging)
        with _signals_blocked():
            if target.exists():
                target.rename(backup)
            staging.rename(target)
            shutil.rmtree(backup, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if backup.exists() and not target.exists():
            backup.rename(target)
    return target, release
