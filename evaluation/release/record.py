"""The names of a release, its error, and the disclosure record of one output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = [
    "ACRO_FOLDER",
    "ESTIMATE_VALUES",
    "MANIFEST_KEYS",
    "RECORD",
    "RELEASE",
    "RELEASED_TABLES",
    "Output",
    "ReleaseError",
]

#: the folder inside a results folder
RELEASE = "release"
#: the disclosure record inside it
RECORD = "disclosure.json"
#: ACRO's output folder inside it
ACRO_FOLDER = "acro"
#: estimate fields withheld when its counts fail
ESTIMATE_VALUES = ("estimate", "ci_low", "ci_high", "p_value", "se")
#: tables read by the rules; any other table of the results folder is not released
RELEASED_TABLES = (
    "flow",
    "exclusions",
    "table1",
    "balance",
    "ps_overlap",
    "km_retention",
    "km_retention_at_risk",
    "cif_overdose",
    "mortality_rates",
    "crime_rates",
    "crime_before_after",
    "estimates",
    # an emulated target trial (version-2 extract)
    "protocol",
    "comparator_use",
    "ipcw_weights",
)
#: manifest keys copied into the release (warnings and extract notes may quote data)
MANIFEST_KEYS = (
    "created",
    "seed",
    "config",
    "config_sha256",
    "source",
    "input",
    "extract_date",
    "versions",
)


class ReleaseError(ValueError):
    """The release cannot be made from this folder (not a results folder, no evidence)."""


@dataclass
class Output:
    """One released output and its disclosure record."""

    name: str
    kind: str
    rules: list[str]
    table: pd.DataFrame | None = None
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    coarsened: list[str] = field(default_factory=list)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """ACRO's status: ``pass`` as it was, ``review`` after suppression or coarsening."""
        return "review" if (self.suppressed or self.coarsened) else "pass"

    def suppress(self, row: Any, column: str, reason: str, shown: str) -> None:
        """Record one suppressed cell."""
        self.suppressed.append({"row": row, "column": column, "shown": shown, "reason": reason})

    def record(self) -> dict[str, Any]:
        """The output's entry in ``disclosure.json``."""
        return {
            "name": self.name,
            "type": self.kind,
            "status": self.status,
            "rules": self.rules,
            "checks": self.checks,
            "suppressed": self.suppressed,
            "coarsened": self.coarsened,
            "comments": self.comments,
        }
