"""Helpers for tests that read, alter and write extract folders.

Tables are handled as the text of their CSV files (every cell a string, empty
string = missing), so a test can break any cell exactly as a registry export
could.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import yaml

from analysis.data.contract import TABLES

EXAMPLE = Path(__file__).parent / "data" / "example-extract"


def copy_example(dest: Path) -> Path:
    """Copy the example extract's tables and ``extract.yml`` into ``dest``.

    Parameters
    ----------
    dest : pathlib.Path
        Folder to create.

    Returns
    -------
    pathlib.Path
        ``dest``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for name in [f"{t}.csv" for t in TABLES] + ["extract.yml"]:
        shutil.copyfile(EXAMPLE / name, dest / name)
    return dest


def read_text_table(folder: Path, table: str) -> pd.DataFrame:
    """Read ``<table>.csv`` with every cell as a string (empty = "")."""
    return pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False)


def write_text_table(df: pd.DataFrame, folder: Path, table: str) -> None:
    """Write ``<table>.csv`` from a frame of strings."""
    df.to_csv(folder / f"{table}.csv", index=False, lineterminator="\n")


def set_cells(folder: Path, table: str, column: str, values: dict[int, str]) -> None:
    """Overwrite cells of ``<table>.csv``; keys are 1-based data row numbers."""
    df = read_text_table(folder, table)
    for row, value in values.items():
        df.loc[row - 1, column] = value
    write_text_table(df, folder, table)


def append_rows(folder: Path, table: str, rows: list[dict[str, str]]) -> None:
    """Append rows (missing columns empty) to ``<table>.csv``."""
    df = read_text_table(folder, table)
    write_text_table(
        pd.concat([df, pd.DataFrame(rows)], ignore_index=True).fillna(""), folder, table
    )


def drop_columns(folder: Path, table: str, columns: list[str]) -> None:
    """Remove columns from ``<table>.csv``."""
    write_text_table(read_text_table(folder, table).drop(columns=columns), folder, table)


def to_parquet(folder: Path, table: str) -> None:
    """Replace ``<table>.csv`` by ``<table>.parquet`` holding the same strings."""
    df = read_text_table(folder, table).replace("", None)
    df.to_parquet(folder / f"{table}.parquet", index=False)
    (folder / f"{table}.csv").unlink()


def set_meta(folder: Path, **values: object) -> None:
    """Overwrite keys of ``extract.yml`` (a value of ``None`` removes the key)."""
    path = folder / "extract.yml"
    meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in values.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    path.write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
