"""ACRO (SACRO project): importing it quietly, the table its checks ask for, its output folder.

ACRO (Automatic Checking of Research Outputs) is the SACRO project's Python package
(github.com/AI-SDC/ACRO); its rules and checks are used as they are, pinned in
``pyproject.toml``.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from evaluation.release.make import Release

__all__ = ["Cells", "load_acro", "write_acro"]


def load_acro() -> Any:
    """Import ACRO without letting it change this process's logging and warnings.

    ``acro`` calls ``logging.basicConfig(level=INFO)`` and ignores ``FutureWarning``
    when imported; both are undone here.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    with warnings.catch_warnings():
        import acro.record
        import acro.sdcchecks
        import acro.version
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("acro").setLevel(logging.WARNING)
    logging.getLogger("acro:records").setLevel(logging.WARNING)
    return acro


class Cells:
    """The table description ACRO's checks ask for (a plain table of cells)."""

    model_type = "table"

    def __init__(self, like: pd.DataFrame) -> None:
        self._like = like

    def get_allfalse_table(self) -> pd.DataFrame:
        return pd.DataFrame(False, index=self._like.index, columns=self._like.columns)


def write_acro(release: Release, folder: Path, timestamp: str) -> None:
    """ACRO's output folder: ``results.json`` record, one CSV per table, figures, checksums."""
    acro = load_acro()
    records = acro.record.Records()
    for out in release.outputs:
        sdc = {
            "summary": {k: v["failed_cells"] for k, v in out.checks.items()},
            "cells": {
                "suppressed": [[s["row"], s["column"]] for s in out.suppressed],
            },
        }
        summary = "; ".join(f"{k}: {v['summary']}" for k, v in out.checks.items()) or "pass"
        outcome = pd.DataFrame(
            [
                {"row": s["row"], "column": s["column"], "reason": s["reason"]}
                for s in out.suppressed
            ]
        )
        is_file = out.table is None
        records.add(
            status=out.status,
            output_type="custom" if is_file else "table",
            properties={
                "method": out.kind,
                "mitigation": "suppress" if out.suppressed else "none",
                "round_base": release.rules.config.safe_round_base,
                "file": out.name,
            },
            sdc=sdc,
            command=f"evaluation.release: {', '.join(out.rules)}",
            summary=summary,
            outcome=outcome,
            output=[str(folder.parent / out.name)] if is_file else [out.table],
            comments=list(out.comments) + list(out.coarsened),
        )
        uid = f"output_{records.output_id - 1}"
        record = records.get(uid)
        record.timestamp = timestamp
        if out.status != "pass":
            record.exception = (
                "Mitigation applied automatically: "
                + "; ".join(dict.fromkeys(s["reason"] for s in out.suppressed))
                if out.suppressed
                else "Coarsened automatically: " + "; ".join(out.coarsened)
            )
        new_uid = re.sub(r"[^A-Za-z0-9_-]", "_", out.name.rsplit(".", 1)[0].replace("/", "__"))
        records.rename(uid, new_uid)
    folder.mkdir(parents=True)
    records.finalise_json(str(folder))
    (folder / "config.json").write_text(
        json.dumps(release.rules.config.acro_config(), indent=4) + "\n", encoding="utf-8"
    )
    records.write_checksums(str(folder))
