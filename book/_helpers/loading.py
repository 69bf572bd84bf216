"""Loading a results folder: ``results.json``, ``manifest.json``, tables, figures, the release.

The folder is the environment variable ``HAT_RESULTS`` (absolute path) or ``results/`` at the
repository root. Missing optional pieces (a table, a design, the truth, the manifest) give
``None`` from the loaders, and the pages print a sentence instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from evaluation.results_document import Estimate, ResultsDocument

REPO = Path(__file__).resolve().parents[2]


def results_dir() -> Path:
    """The results folder: ``$HAT_RESULTS`` or ``results/`` at the repository root."""
    return Path(os.environ.get("HAT_RESULTS") or REPO / "results").resolve()


def results_label() -> str:
    """Where the results folder is for the reader: ``$HAT_RESULTS_SHOWN`` (the final place
    when the book is built before the folder is moved there) or :func:`results_dir`."""
    return os.environ.get("HAT_RESULTS_SHOWN") or str(results_dir())


class Suppressed(float):
    """A value withheld by disclosure control: NaN in arithmetic, its label when shown.

    ``release/results.json`` gives a suppressed value as ``null`` and lists it under
    ``suppressed`` with the text to show (``<10``, ``withheld``); ``release/disclosure.json``
    lists the suppressed cells of the tables. The loaders put this marker in their place,
    and the formatting functions show its label.
    """

    def __new__(cls, shown: str = "suppressed") -> Suppressed:
        obj = super().__new__(cls, "nan")
        obj.shown = shown
        return obj

    def __str__(self) -> str:
        return self.shown

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return self.shown


def _mark_suppressed(node: Any) -> Any:
    """Put :class:`Suppressed` markers where ``suppressed`` lists a null value."""
    if isinstance(node, list):
        return [_mark_suppressed(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _mark_suppressed(v) for k, v in node.items()}
    listed = node.get("suppressed")
    if isinstance(listed, Mapping):
        for key, info in listed.items():
            if out.get(key) is None:
                shown = info.get("shown") if isinstance(info, Mapping) else None
                out[key] = Suppressed(str(shown or "suppressed"))
    return out


@cache
def _raw_results() -> dict[str, Any]:
    """Contents of ``results.json`` as written (suppressed values ``null``)."""
    path = results_dir() / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no results.json in {path.parent}: set HAT_RESULTS to a results folder "
            "written by `python -m evaluation.run`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def results() -> dict[str, Any]:
    """Contents of ``results.json`` (required); suppressed values as :class:`Suppressed`."""
    return _mark_suppressed(_raw_results())


@cache
def document() -> ResultsDocument:
    """``results.json`` through its typed model (a suppressed value is ``None`` there)."""
    return ResultsDocument.model_validate(_raw_results())


def _typed_estimates() -> list[tuple[Estimate, dict[str, Any]]]:
    """Each estimate typed, beside its entry of :func:`results` (what the pages format)."""
    return list(zip(document().estimates, results().get("estimates", []), strict=True))


@cache
def disclosure() -> dict[str, Any]:
    """``disclosure.json`` of a release folder; empty for a full results folder."""
    path = results_dir() / "disclosure.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")) or {}


def is_release() -> bool:
    """Whether the pages read ``release/`` (outputs that passed disclosure control)."""
    return bool(disclosure())


def suppressed_label() -> str:
    """How a suppressed count is shown: ``<10`` (the configured threshold)."""
    t = (disclosure().get("config") or {}).get("safe_threshold")
    return f"<{t}" if t else "suppressed"


@cache
def manifest() -> dict[str, Any]:
    """Contents of ``manifest.json``; empty when absent."""
    path = results_dir() / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")) or {}


def section(*keys: str, default: Any = None) -> Any:
    """``results()[k1][k2]...``, or ``default`` if any level is missing or null."""
    node: Any = results()
    for key in keys:
        if not isinstance(node, Mapping) or node.get(key) is None:
            return default
        node = node[key]
    return node


def table(name: str) -> pd.DataFrame | None:
    """``tables/<name>.csv`` as a DataFrame, or ``None`` if absent or empty."""
    path = results_dir() / "tables" / f"{name}.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    for out in disclosure().get("outputs", []):
        if out.get("name") != f"tables/{name}.csv":
            continue
        for cell in out.get("suppressed", []):
            row, col = cell.get("row"), cell.get("column")
            if isinstance(row, int) and col in df and 0 <= row < len(df):
                if df[col].dtype != object:
                    df[col] = df[col].astype(object)
                df.at[row, col] = Suppressed(str(cell.get("shown") or "suppressed"))
    return df if len(df) else None


def figure_file(name: str) -> Path | None:
    """``figures/<name>.png`` if present."""
    path = results_dir() / "figures" / f"{name}.png"
    return path if path.is_file() else None


def estimates() -> pd.DataFrame:
    """Every estimate of ``results.json``, one row each (``details`` kept as dicts)."""
    est = pd.DataFrame(results().get("estimates", []))
    for col in ("outcome", "measure", "method", "estimate", "ci_low", "ci_high", "p_value",
                "truth", "primary", "n_events", "n_treated", "n_control"):  # fmt: skip
        if col not in est:
            est[col] = None
    est["primary"] = est["primary"].fillna(False).astype(bool)
    typed = document().estimates
    est["design"] = [e.design for e in typed] if typed else None
    est["model"] = [e.model for e in typed] if typed else None
    return est


def estimate(
    outcome: str, measure: str, method: str | None = None, *, primary: bool | None = None
) -> dict[str, Any] | None:
    """One estimate as a dict; by default the primary one, else the matched one."""
    cands = [
        (t, e)
        for t, e in _typed_estimates()
        if t.outcome == outcome
        and t.measure == measure
        and (method is None or t.method == method)
        and (primary is None or t.primary == primary)
    ]
    if not cands:
        return None
    for t, e in cands:
        if t.primary:
            return e
    for t, e in cands:
        if t.design == "matched":
            return e
    return cands[0][1]


def primary_estimate(outcome: str) -> dict[str, Any] | None:
    """The estimate with ``primary: true`` for an outcome."""
    for t, e in _typed_estimates():
        if t.outcome == outcome and t.primary:
            return e
    return None


def other_missing_method(e: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``e`` by the other method for missing covariates, or ``None`` if not in the results.

    A missing-indicator estimate's counterpart is the pooled multiple-imputation one
    (``<method>_mi``, same outcome, measure and estimand), and the other way round.
    """
    if not e:
        return None
    method = str(e.get("method", ""))
    other = method.removesuffix("_mi") if method.endswith("_mi") else f"{method}_mi"
    for _, x in _typed_estimates():
        if (x.get("method"), x.get("outcome"), x.get("measure"), x.get("estimand")) == (
            other, e.get("outcome"), e.get("measure"), e.get("estimand")
        ):  # fmt: skip
            return x
    return None


def other_missing_label(other: Mapping[str, Any]) -> str:
    """Column heading of :func:`other_missing_method`'s estimates: which method they are."""
    if str(other.get("method", "")).endswith("_mi"):
        return "multiple imputation (sensitivity)"
    return "missing-indicator method (sensitivity)"


#: the methods sentence when multiple imputation was not run, by ``design.missing.not_imputed``
_NOT_IMPUTED_NOTES = {
    "configuration": "Missing covariates by the missing-indicator method; the multiple-imputation "
    "sensitivity analysis was switched off in the study configuration.",
    "failed": "Missing covariates by the missing-indicator method; the multiple-imputation "
    "sensitivity analysis failed (see [Missing covariates](missing.md)).",
    "never_observed": "Missing covariates by the missing-indicator method; multiple imputation "
    "was not run: every covariate with missing values is missing on every row "
    "(see [Missing covariates](missing.md)).",
    "no_missing_values": "No covariate of the propensity model had a missing value, so the two "
    "methods for missing covariates coincide (multiple imputation was not run).",
}
#: the methods sentence when both were run, by the primary method (``design.missing.method``)
_PRIMARY_METHOD_NOTES = {
    "mi": "Multiple imputation is primary; the missing-indicator estimates beside it are the "
    "sensitivity analysis (see [Missing covariates](missing.md)).",
    "indicator": "The missing-indicator method is primary; the multiple-imputation estimates "
    "beside it are the sensitivity analysis (see [Missing covariates](missing.md)).",
}


def missing_methods_note() -> str:
    """A sentence on the two methods for missing covariates, from ``design.missing``."""
    info = section("design", "missing", default={}) or {}
    return (
        _NOT_IMPUTED_NOTES.get(info.get("not_imputed"))
        or _PRIMARY_METHOD_NOTES.get(info.get("method"))
        or ""
    )


def design(name: str = "matched") -> dict[str, Any] | None:
    """``design.designs[name]`` or ``None``."""
    return section("design", "designs", name)


def config() -> dict[str, Any]:
    """The resolved study configuration from the manifest (empty if unknown)."""
    return manifest().get("config") or {}


def is_synthetic() -> bool:
    """Whether the results come from synthetic data (truth known or synthetic source)."""
    source = manifest().get("source") or {}
    return results().get("truth") is not None or source.get("kind") == "synthetic"
