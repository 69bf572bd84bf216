"""A release made in memory from a results folder: every output through its rules."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from evaluation.config import DisclosureConfig
from evaluation.disclosure import EVIDENCE_PREFIX
from evaluation.release.curves import release_at_risk, release_curve
from evaluation.release.estimates import release_estimate_tables, release_estimates
from evaluation.release.record import MANIFEST_KEYS, RECORD, RELEASED_TABLES, Output, ReleaseError
from evaluation.release.rules import Rules
from evaluation.release.tables import (
    evidence,
    release_balance,
    release_counts_table,
    release_histogram,
    release_rates,
    release_table1,
)
from evaluation.release.trial import release_flow_rows, release_text, release_weight_quantiles

__all__ = ["Release", "disclosure_config", "make_release"]


@dataclass
class Release:
    """A release made in memory: its documents, tables, records and rules."""

    results: dict[str, Any]
    manifest: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    outputs: list[Output]
    rules: Rules
    withheld: list[dict[str, str]]


def _read_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Every table of ``folder/tables`` (an empty CSV gives an empty frame)."""
    tables = {}
    for path in sorted((folder / "tables").glob("*.csv")):
        try:
            tables[path.stem] = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            tables[path.stem] = pd.DataFrame()
    return tables


def disclosure_config(
    manifest: Mapping[str, Any], override: DisclosureConfig | None = None
) -> tuple[DisclosureConfig, str]:
    """The disclosure configuration to apply and where it comes from."""
    if override is not None:
        return override, "given to evaluation.release (--config)"
    section = (manifest.get("config") or {}).get("disclosure")
    if section:
        return DisclosureConfig.model_validate(section), "study configuration (manifest.json)"
    return DisclosureConfig(), "ACRO defaults (the study configuration sets none)"


def make_release(
    folder: str | Path,
    *,
    config: DisclosureConfig | None = None,
) -> Release:
    """Apply the disclosure rules to a results folder; nothing is written.

    Parameters
    ----------
    folder : path-like
        A complete results folder (``results.json``, ``manifest.json``, ``tables/``
        with the ``disclosure_*`` evidence).
    config : DisclosureConfig, optional
        Thresholds; default the ``disclosure`` section of the folder's manifest, else
        ACRO's defaults.

    Returns
    -------
    Release

    Raises
    ------
    ReleaseError
        No ``results.json`` or no evidence tables.
    """
    folder = Path(folder)
    try:
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{folder}: not a complete results folder ({exc})") from None
    cfg, source = disclosure_config(manifest, config)
    rules = Rules(cfg)
    tables = _read_tables(folder)
    released, outputs = _release_tables(tables, rules)
    # estimates: results.json and the two tables that repeat them
    new, out_est, withheld = release_estimates(results, tables, released, rules)
    outputs.insert(0, out_est)
    outputs += release_estimate_tables(tables, released, withheld, rules, out_est.rules)
    new_manifest = {k: manifest[k] for k in MANIFEST_KEYS if k in manifest}
    new_manifest["release"] = {
        "disclosure_config": cfg.model_dump(),
        "disclosure_config_source": source,
        "record": RECORD,
    }
    return Release(
        results=new,
        manifest=new_manifest,
        tables=released,
        outputs=outputs,
        rules=rules,
        withheld=_not_released(tables),
    )


# long: one call per released table, in the order of the disclosure record
def _release_tables(
    tables: Mapping[str, pd.DataFrame], rules: Rules
) -> tuple[dict[str, pd.DataFrame], list[Output]]:
    """The tables of counts, curves and histograms through their rules, in a fixed order."""
    outputs: list[Output] = []
    released: dict[str, pd.DataFrame] = {}

    def add(name: str, kind: str, rule: list[str], make: Callable[[Output], pd.DataFrame]) -> None:
        if name not in tables:
            return
        out = Output(name=f"tables/{name}.csv", kind=kind, rules=rule)
        if tables[name].empty:  # e.g. no retention analysis: nothing to check
            out.comments.append("empty table: no rows to release")
            released[name] = tables[name]
            out.table = released[name]
            outputs.append(out)
            return
        released[name] = make(out).reset_index(drop=True)
        out.table = released[name]
        outputs.append(out)

    threshold = ["minimum frequency threshold", "zeros", "rounding"]
    curve_columns = ("se", "ci_low", "ci_high")
    if "n_persons" in tables.get("flow", pd.DataFrame()):  # a target trial: persons and rows
        add(
            "flow",
            "table",
            threshold + ["rows (person-dates) of fewer persons than the threshold suppressed"],
            lambda o: release_flow_rows(tables["flow"], rules, o),
        )
    else:
        add(
            "flow",
            "table",
            threshold + ["secondary suppression of row totals"],
            lambda o: release_counts_table(
                tables["flow"], ["n_hat", "n_ost", "n_total"], rules, o, total="n_total"
            ),
        )
    add(
        "exclusions",
        "table",
        threshold,
        lambda o: release_counts_table(tables["exclusions"], ["n_hat", "n_ost", "n"], rules, o),
    )
    add(
        "table1",
        "table",
        threshold + ["complement of percentages", "dominance (means)"],
        lambda o: release_table1(tables["table1"], evidence(tables, "table1"), rules, o),
    )
    add(
        "balance",
        "table",
        ["minimum frequency threshold (binary covariates are counts)"],
        lambda o: release_balance(tables["balance"], evidence(tables, "balance"), rules, o),
    )
    add(
        "ps_overlap",
        "histogram",
        ["minimum frequency threshold", "merging of bins", "rounding"],
        lambda o: release_histogram(tables["ps_overlap"], rules, o),
    )
    add(
        "km_retention",
        "survival table",
        ["survival rule (coarse grid)", "rounding"],
        lambda o: release_curve(
            tables["km_retention"],
            evidence(tables, "km_retention"),
            rules,
            o,
            value="survival",
            start=1.0,
            keep=curve_columns,
        ),  # fmt: skip
    )
    add(
        "km_retention_at_risk",
        "survival table",
        ["survival threshold", "rounding"],
        lambda o: release_at_risk(tables["km_retention_at_risk"], rules, o),
    )
    add(
        "cif_overdose",
        "survival table",
        ["survival rule (coarse grid)", "rounding"],
        lambda o: release_curve(
            tables["cif_overdose"],
            evidence(tables, "cif_overdose"),
            rules,
            o,
            value="cumulative_incidence",
            start=0.0,
            keep=curve_columns,
        ),  # fmt: skip
    )
    for name, label in (("mortality_rates", "outcome"), ("crime_rates", "period")):
        add(
            name,
            "table",
            threshold + ["dominance (N-K, p-ratio)"],
            lambda o, name=name, label=label: release_rates(
                tables[name], evidence(tables, "rates"), name, label, rules, o
            ),
        )
    # an emulated target trial (version-2 extract)
    add(
        "protocol", "table", ["text only: no counts"], lambda o: release_text(tables["protocol"], o)
    )
    add(
        "comparator_use",
        "table",
        threshold,
        lambda o: release_counts_table(tables["comparator_use"], ["n_persons"], rules, o),
    )
    add(
        "ipcw_weights",
        "table",
        ["no individual value (the smallest and largest weights)"],
        lambda o: release_weight_quantiles(tables["ipcw_weights"], o),
    )
    return released, outputs


def _not_released(tables: Mapping[str, pd.DataFrame]) -> list[dict[str, str]]:
    """The outputs of the results folder left out of the release, and why."""
    not_released = [
        {"name": f"tables/{n}.csv", "reason": "evidence for the checks: individual values"}
        for n in tables
        if n.startswith(EVIDENCE_PREFIX)
    ] + [
        {"name": f"tables/{n}.csv", "reason": "no disclosure rule for this table"}
        for n in tables
        if not n.startswith(EVIDENCE_PREFIX) and n not in RELEASED_TABLES
    ]
    not_released += [
        {
            "name": "figures/*.png of the results folder",
            "reason": "drawn from unchecked tables; redrawn from the released tables",
        },
        {
            "name": "manifest.json: warnings, extract_notes, counts, command",
            "reason": "free text and counts not checked; counts are in the released results",
        },
    ]
    return not_released
