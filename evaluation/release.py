"""Statistical disclosure control: the outputs that may leave the secure research environment.

``python -m evaluation.release RESULTS_DIR`` (and every ``python -m evaluation.run``)
writes ``RESULTS_DIR/release/``: the results folder's outputs that pass the checks,
after suppression, rounding and coarsening, with the record an output checker needs.

``release/`` holds

- ``results.json``, ``manifest.json``, ``tables/*.csv``, ``figures/*.png``: the same
  layout and schema as the results folder, so the report can be built from it; a
  suppressed value is ``null`` (an empty CSV cell), and the mapping that held it gets
  ``suppressed: {key: {"shown": "<10", "reason": ...}}`` (``disclosure.json`` lists the
  suppressed cells of the tables). Figures are drawn only from the released tables.
- ``disclosure.json``: every output, its status, the rules applied, every cell
  suppressed and every table coarsened, and why; the configuration; the checksums of
  all files.
- ``acro/``: the same record in ACRO's output format (``results.json``, one CSV per
  table, the figures, ``config.json``, ``checksums/``), which output checkers open in
  SACRO-Viewer.

The rules are ACRO's (Semi-Automatic Checking of Research Outputs, SACRO project), with
its configuration keys and defaults (:class:`evaluation.config.DisclosureConfig`), and
ACRO's own checks are run on every table of counts and sums (minimum threshold,
presence of zeros, N-K and p-ratio dominance) from the evidence the run computed on
the person-level data (:mod:`evaluation.disclosure`):

1. **Minimum frequency.** A count of persons below ``safe_threshold`` (and a zero, when
   ``zeros_are_disclosive``) is suppressed, and so is every number computed from it (a
   percentage, a rate, a standardised difference of a binary covariate, whose
   complement is checked too). Released counts are rounded to ``safe_round_base``, so
   that a small count cannot be recovered as the difference of two released counts.
2. **Dominance** of sums (charges): N-K (the ``safe_nk_n`` largest contributors hold at
   least ``safe_nk_k`` of the sum) and p-ratio (the sum less its two largest
   contributions is below ``safe_pratio_p`` of the largest); a failing sum, and the
   rate made from it, is suppressed.
3. **Survival curves** (Kaplan-Meier, cumulative incidence) are released on a coarse
   grid of multiples of ``time_grid_days``: each step holds at least
   ``survival_safe_threshold`` events and starts with at least that many persons at
   risk (ACRO's survival rule); the curve ends where that no longer holds. Numbers at
   risk are rounded; event counts per step are rounded.
4. **Histograms** (propensity-score overlap): adjacent bins are merged until each holds
   at least ``safe_threshold`` persons in each group and sample; the outer edges are
   widened to half logit units, so no person's extreme score is shown.
5. **Model estimates** are released when each arm has at least ``safe_threshold``
   persons and ``safe_threshold`` persons with the event (for charges, the sums also
   pass the dominance rules); otherwise the estimate, its interval, p-value, the tests
   and E-values made from it are withheld with a note.
6. **No person-level output**: the evidence tables, individual maxima (longest
   follow-up) and free-text counts below the threshold never enter ``release/``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation.config import ConfigError, DisclosureConfig, load_config
from evaluation.disclosure import EVIDENCE_PREFIX, TOP_COLUMNS
from evaluation.output_path import OutputError, foreign_files, is_results_folder

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


# ----------------------------------------------------------------------------- ACRO
def _acro() -> Any:
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


class _Cells:
    """The table description ACRO's checks ask for (a plain table of cells)."""

    model_type = "table"

    def __init__(self, like: pd.DataFrame) -> None:
        self._like = like

    def get_allfalse_table(self) -> pd.DataFrame:
        return pd.DataFrame(False, index=self._like.index, columns=self._like.columns)


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
        self.suppressed.append({"row": row, "column": column, "shown": shown, "reason": reason})

    def record(self) -> dict[str, Any]:
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


class Rules:
    """ACRO's rules with a study's disclosure configuration."""

    def __init__(self, config: DisclosureConfig) -> None:
        self.config = config
        self.t = config.safe_threshold
        self.small_text = f"<{self.t}"
        self.checks = _acro().sdcchecks.SDCChecks(config.acro_config())

    # counts ---------------------------------------------------------------
    def small_mask(self, counts: pd.DataFrame, out: Output | None = None) -> pd.DataFrame:
        """Cells failing ACRO's MinimumThresholdCheck or PresenceOfZeroCheck."""
        counts = counts.astype(float)
        evidence = self.checks_evidence(count_table=counts)
        model = _Cells(counts)
        mask = pd.DataFrame(False, index=counts.index, columns=counts.columns)
        for name, check in (
            ("MinimumThresholdCheck", self.checks.check_min_threshold),
            ("PresenceOfZeroCheck", self.checks.check_presence_of_zero),
        ):
            status, summary, m = check("FrequencyTable", evidence, model)
            m = m.reindex(index=counts.index, columns=counts.columns).fillna(False).astype(bool)
            m &= counts.notna()
            mask |= m
            if out is not None:
                self._tally(out, name, int(m.to_numpy().sum()), summary)
        return mask

    def dominance_mask(
        self, sums: pd.DataFrame, tops: list[pd.DataFrame], negatives: pd.DataFrame, out: Output
    ) -> pd.DataFrame:
        """Cells failing ACRO's NKCheck or PPercentCheck (sums of non-negative contributions)."""
        n = self.config.safe_nk_n
        top_n = sum(t.fillna(0) for t in tops[:n])
        evidence = self.checks_evidence(
            sum=sums.astype(float),
            top_n_sum=top_n.astype(float),
            max=tops[0].fillna(0).astype(float),
            top_2_sum=(tops[0].fillna(0) + tops[1].fillna(0)).astype(float),
            num_negative=negatives.astype(float),
        )
        model = _Cells(sums)
        mask = pd.DataFrame(False, index=sums.index, columns=sums.columns)
        for name, check in (
            ("NKCheck", self.checks.check_nk_dominance),
            ("PPercentCheck", self.checks.check_ppercent_dominance),
        ):
            status, summary, m = check("Sum", evidence, model)
            m = m.reindex(index=sums.index, columns=sums.columns).fillna(False).astype(bool)
            m &= sums.fillna(0).to_numpy() > 0
            mask |= m
            self._tally(out, name, int(m.to_numpy().sum()), summary)
        return mask

    @staticmethod
    def checks_evidence(**tables: pd.DataFrame) -> Any:
        return _acro().sdcchecks.SDCEvidence(interim_tables=dict(tables))

    @staticmethod
    def _tally(out: Output, name: str, n: int, summary: str) -> None:
        entry = out.checks.setdefault(name, {"failed_cells": 0, "summary": ""})
        entry["failed_cells"] += n
        entry["summary"] = summary.strip()

    def is_small(self, n: Any) -> bool:
        """Whether one count of persons fails the threshold (or is a disclosive zero)."""
        if n is None or (isinstance(n, float) and math.isnan(n)):
            return False
        n = float(n)
        return n < self.t and (n > 0 or self.config.zeros_are_disclosive)

    def rounded(self, n: float) -> float:
        """A released count: rounded to the base, never below the threshold."""
        if not self.config.round_counts or not np.isfinite(n):
            return n
        base = self.config.safe_round_base
        r = base * math.floor(n / base + 0.5)
        if r < self.t and n >= self.t:
            r = base * math.ceil(self.t / base)
        return float(r)

    def small_reason(self, what: str = "persons") -> str:
        zero = " (or zero)" if self.config.zeros_are_disclosive else ""
        return f"fewer than {self.t} {what}{zero}: minimum frequency threshold"

    # text -----------------------------------------------------------------
    def redact_text(self, text: str) -> str:
        """Free text with every count of persons or events below the threshold hidden.

        ``3 persons``, ``5 deaths``, ``2 HAT`` become ``<10 persons`` ...; other numbers
        (``1:4``, ``0 or 1``) are left as they are.
        """
        words = r"(?:persons?|patients?|people|deaths?|events?|charges?|HAT|OST|clusters?|sets?)"

        def sub(m: re.Match[str]) -> str:
            n = int(m.group(1))
            return (self.small_text if self.is_small(n) else m.group(1)) + m.group(2)

        return re.sub(rf"(?<![\w.:/-])(\d+)(\s+{words}\b)", sub, text)

    def describe(self) -> list[str]:
        """The rules applied, as sentences (for the record and the report)."""
        c = self.config
        zero = "and zeros " if c.zeros_are_disclosive else ""
        rounding = (
            f" Released counts are rounded to a multiple of {c.safe_round_base}, so a small "
            "count cannot be recovered as the difference of two released counts."
            if c.round_counts
            else ""
        )
        return [
            f"Minimum frequency: counts of persons below {c.safe_threshold} {zero}are "
            f"suppressed (shown as <{c.safe_threshold}), with every number made from them "
            "(percentages and their complements, rates, standardised differences of binary "
            "covariates)." + rounding,
            f"Dominance of sums (charges): N-K rule (the {c.safe_nk_n} largest contributors "
            f"may hold less than {c.safe_nk_k:.0%} of a sum) and p-ratio rule (the sum less "
            f"its two largest contributions must be at least {c.safe_pratio_p:.0%} of the "
            "largest); a failing sum and its rate are suppressed.",
            f"Survival and cumulative-incidence curves on a grid of {c.time_grid_days}-day "
            f"steps, each step with at least {c.survival_safe_threshold} events and "
            f"{c.survival_safe_threshold} persons at risk; the curve ends where that no "
            "longer holds; numbers at risk rounded.",
            f"Histograms: adjacent bins merged until each holds at least {c.safe_threshold} "
            "persons; outer edges widened.",
            f"Model estimates released when each arm has at least {c.safe_threshold} persons "
            f"and {c.safe_threshold} persons with the event (charges: sums pass the dominance "
            "rules); otherwise withheld with a note, with the tests and E-values made from "
            "them.",
            "No person identifier, individual date, individual value (such as the longest "
            "follow-up) or per-person row is released.",
        ]


# ----------------------------------------------------------------------------- helpers
def _suppress_cells(
    df: pd.DataFrame, mask: pd.DataFrame, out: Output, reason: str, shown: str
) -> pd.DataFrame:
    """Blank the cells of ``mask`` (index and columns of ``df``) and record each once."""
    df = df.copy()
    done = {(s["row"], s["column"]) for s in out.suppressed}
    for col in mask.columns:
        hit = mask[col].fillna(False).to_numpy(bool)
        if not hit.any():
            continue
        if df[col].dtype.kind in "iub":
            df[col] = df[col].astype(float)
        for pos in np.flatnonzero(hit):
            r = mask.index[pos]
            key = (_row_key(df, r), col)
            if pd.isna(df.at[r, col]):
                continue
            df.at[r, col] = np.nan
            if key not in done:
                out.suppress(*key, reason, shown)
                done.add(key)
    return df


def _row_key(df: pd.DataFrame, r: Any) -> int:
    return int(df.index.get_loc(r))


def _round_columns(df: pd.DataFrame, cols: list[str], rules: Rules) -> pd.DataFrame:
    """Counts rounded to the base; whole-number columns written as integers."""
    df = df.copy()
    for c in cols:
        if c in df:
            x = df[c].astype(float).map(rules.rounded)
            whole = x.dropna()
            df[c] = x.astype("Int64") if (whole == whole.round()).all() else x
    return df


def _evidence(tables: Mapping[str, pd.DataFrame], name: str) -> pd.DataFrame:
    key = f"{EVIDENCE_PREFIX}{name}"
    if key not in tables:
        raise ReleaseError(
            f"the results folder has no disclosure evidence (tables/{key}.csv): it was written "
            "before disclosure control existed; run the study again with `python -m "
            "evaluation.run` to make a release"
        )
    return tables[key]


# ----------------------------------------------------------------------------- tables
def _counts_table(
    df: pd.DataFrame, cols: list[str], rules: Rules, out: Output, *, total: str | None = None
) -> pd.DataFrame:
    """A table whose cells are counts of persons (flow, exclusions)."""
    present = [c for c in cols if c in df]
    mask = rules.small_mask(df[present], out)
    released = _suppress_cells(df, mask, out, rules.small_reason(), rules.small_text)
    if total is not None and total in df:
        # a row total would give back a suppressed part by subtraction
        parts = [c for c in present if c != total]
        one = mask[parts].sum(axis=1) == 1
        second = pd.DataFrame({total: one & ~mask[total]})
        released = _suppress_cells(
            released,
            second,
            out,
            "secondary suppression: the total less the other part would give a suppressed count",
            "suppressed",
        )
    return _round_columns(released, present, rules)


def _table1(df: pd.DataFrame, ev: pd.DataFrame, rules: Rules, out: Output) -> pd.DataFrame:
    cols = [c for c in ("HAT_all", "OST_all", "HAT_matched", "OST_matched") if c in df]
    ev = ev.set_index(["variable", "statistic", "column"])
    keys = list(zip(df["variable"], df["statistic"], strict=True))

    def grid(field_: str) -> pd.DataFrame:
        return pd.DataFrame(
            {c: [ev[field_].get((v, s, c), np.nan) for v, s in keys] for c in cols},
            index=df.index,
        )

    n, n_with, n_without = grid("n"), grid("n_with"), grid("n_without")
    share = df["statistic"].isin(["%", "% missing"]).to_numpy()
    # a percentage: persons with and without (its complement) both pass
    small = rules.small_mask(n, out)
    with_mask = rules.small_mask(n_with.where(np.repeat(share[:, None], len(cols), axis=1)), out)
    without_mask = rules.small_mask(
        n_without.where(np.repeat(share[:, None], len(cols), axis=1)), out
    )
    released = _suppress_cells(df, small, out, rules.small_reason(), rules.small_text)
    released = _suppress_cells(
        released,
        with_mask,
        out,
        rules.small_reason("persons with the characteristic"),
        rules.small_text,
    )
    released = _suppress_cells(
        released,
        without_mask,
        out,
        rules.small_reason("persons without the characteristic (the complement)"),
        "suppressed",
    )
    # means and SDs: dominance of the sum of values
    mean = df["statistic"].isin(["mean", "SD"]).to_numpy()
    if mean.any():
        sums = grid("sum").where(np.repeat(mean[:, None], len(cols), axis=1))
        tops = [grid(t).where(np.repeat(mean[:, None], len(cols), axis=1)) for t in TOP_COLUMNS]
        neg = grid("num_negative").where(np.repeat(mean[:, None], len(cols), axis=1)).fillna(0)
        dom = rules.dominance_mask(sums, tops, neg, out)
        released = _suppress_cells(
            released, dom, out, "dominance: a few persons hold most of the sum", "suppressed"
        )
    counts = df["statistic"].isin(["n", "sum of weights"]).to_numpy()
    for c in cols:
        released.loc[counts, c] = released.loc[counts, c].astype(float).map(rules.rounded)
    return released


def _balance(df: pd.DataFrame, ev: pd.DataFrame, rules: Rules, out: Output) -> pd.DataFrame:
    released = df.copy()
    samples = {"before": "before", "matched": "matched", "iptw": "iptw"}
    for sample in samples:
        cols = [c for c in (f"smd_{sample}", f"variance_ratio_{sample}") if c in df]
        if not cols:
            continue
        sub = ev[ev["sample"] == sample].set_index(["variable", "group"])
        fail = []
        for var in df["variable"]:
            bad = False
            for group in ("HAT", "OST"):
                if (var, group) not in sub.index:
                    continue
                row = sub.loc[(var, group)]
                counts = [row["n_one"], row["n_zero"]] if bool(row["binary"]) else [row["n"]]
                bad |= any(rules.is_small(x) for x in counts)
            fail.append(bad)
        mask = pd.DataFrame({c: fail for c in cols}, index=df.index)
        n_failed = int(np.sum(fail)) * len(cols)
        Rules._tally(out, "MinimumThresholdCheck", n_failed, f"{n_failed} cells suppressed")
        released = _suppress_cells(
            released,
            mask,
            out,
            rules.small_reason("persons with (or without) the value in an arm"),
            "suppressed",
        )
    return released


def _rates(
    df: pd.DataFrame, ev: pd.DataFrame, table: str, label: str, rules: Rules, out: Output
) -> pd.DataFrame:
    ev = ev[ev["table"] == table].set_index(["key", "group"])
    idx = list(zip(df[label], df["group"], strict=True))
    n = pd.DataFrame({"n": [ev["n"].get(k, np.nan) for k in idx]}, index=df.index)
    events = pd.DataFrame({"events": [ev["n_events"].get(k, np.nan) for k in idx]}, index=df.index)
    small = rules.small_mask(n, out)["n"] | rules.small_mask(events, out)["events"]
    # a weighted sum of events below the threshold reads as a small count: suppressed too
    weighted = df["events"].astype(float) if "events" in df else pd.Series(np.nan, df.index)
    small |= weighted.map(rules.is_small).astype(bool)
    sums = pd.DataFrame({"events": [ev["sum"].get(k, np.nan) for k in idx]}, index=df.index)
    tops = [
        pd.DataFrame({"events": [ev[t].get(k, np.nan) for k in idx]}, index=df.index)
        for t in TOP_COLUMNS
    ]
    neg = pd.DataFrame({"events": [ev["num_negative"].get(k, 0) for k in idx]}, index=df.index)
    dominated = rules.dominance_mask(sums, tops, neg, out)["events"]
    value_cols = [c for c in ("events", "rate", "ci_low", "ci_high") if c in df]
    released = _suppress_cells(
        df,
        pd.DataFrame({"events": small & ~dominated}, index=df.index),
        out,
        rules.small_reason("persons with an event"),
        rules.small_text,
    )
    released = _suppress_cells(
        released,
        pd.DataFrame({c: small & ~dominated for c in value_cols}, index=df.index),
        out,
        "made from a count below the threshold: " + rules.small_reason("persons with an event"),
        "suppressed",
    )
    released = _suppress_cells(
        released,
        pd.DataFrame({c: dominated for c in value_cols}, index=df.index),
        out,
        "dominance: a few persons hold most of the events (N-K or p-ratio rule)",
        "suppressed",
    )
    n_small = rules.small_mask(df[["n"]], out)
    released = _suppress_cells(released, n_small, out, rules.small_reason(), rules.small_text)
    return _round_columns(released, ["n"], rules)


def _curve(
    df: pd.DataFrame,
    ev: pd.DataFrame,
    rules: Rules,
    out: Output,
    *,
    value: str,
    start: float,
    keep: tuple[str, ...],
) -> pd.DataFrame:
    """A survival or cumulative-incidence curve on the coarse grid of ACRO's survival rule."""
    t = rules.config.survival_safe_threshold
    grid = rules.config.time_grid_days
    rows = []
    for group, curve in df.groupby("group", sort=True):
        counts = ev[ev["group"] == group].sort_values("time")
        times = counts["time"].to_numpy(float)
        events = counts["events"].to_numpy(float)
        everyone = float(counts["n_at_risk"].max()) if len(counts) else 0.0

        def at_risk(a: float, times: np.ndarray = times, counts: pd.DataFrame = counts) -> float:
            """Persons at risk just after ``a`` (still followed at a later time)."""
            later = counts["n_at_risk"].to_numpy(float)[times > a]
            return float(later[0]) if later.size else 0.0

        curve = curve.sort_values("time")
        end = float(times.max()) if times.size else 0.0
        bounds = np.arange(grid, end + grid, grid, dtype=float)
        steps = []
        left, acc = 0.0, 0.0
        for b in bounds:
            if at_risk(left) < t if left > 0 else everyone < t:
                break
            acc += events[(times > b - grid) & (times <= b) | ((b == grid) & (times == 0))].sum()
            if acc >= t:
                steps.append((left, b, acc))
                left, acc = b, 0.0
        if not steps:
            out.coarsened.append(
                f"{group}: curve withheld: fewer than {t} events (or persons at risk) in all"
            )
            out.suppress(f"{group}", value, f"fewer than {t} events in the whole curve", "withheld")
            continue
        rows.append({"group": group, "time": 0.0, value: start, "n_at_risk": everyone})
        for a, b, e in steps:
            at = curve[curve["time"] <= b].tail(1)
            row = {"group": group, "time": b, "n_at_risk": at_risk(a) if a > 0 else everyone}
            row["events"] = e
            for c in (value, *keep):
                row[c] = float(at[c].iloc[0]) if len(at) and c in at else np.nan
            rows.append(row)
        out.coarsened.append(
            f"{group}: {len(curve)} event/censoring times coarsened to {len(steps)} steps on a "
            f"{grid}-day grid, each with at least {t} events; curve ends at day {steps[-1][1]:g}"
        )
    cols = ["group", "time", "n_at_risk", "events", value, *keep]
    released = pd.DataFrame(rows, columns=cols)
    if len(released):
        first = released["time"] == 0
        for c in keep:
            released.loc[first, c] = 0.0 if c == "se" else start
        released = _round_columns(released, ["n_at_risk", "events"], rules)
    Rules._tally(
        out,
        "SurvivalThresholdRule",
        0,
        f"pass - every released step has at least {t} events and {t} persons at risk",
    )
    return released


def _at_risk(df: pd.DataFrame, rules: Rules, out: Output) -> pd.DataFrame:
    grid = rules.config.time_grid_days
    on_grid = (df["time"].to_numpy(float) % grid) == 0
    if not on_grid.all():
        out.coarsened.append(f"times not on the {grid}-day grid dropped")
    df = df[on_grid].reset_index(drop=True)
    threshold = rules.config.survival_safe_threshold
    counts = df[["n_at_risk"]].astype(float)
    mask = counts < threshold
    Rules._tally(out, "SurvivalThresholdRule", int(mask.to_numpy().sum()), "numbers at risk")
    released = _suppress_cells(
        df, mask, out, f"fewer than {threshold} persons at risk", f"<{threshold}"
    )
    return _round_columns(released, ["n_at_risk"], rules)


def _histogram(df: pd.DataFrame, rules: Rules, out: Output) -> pd.DataFrame:
    """Merge adjacent bins until each holds at least the threshold, per group and sample."""
    t = rules.t
    rows = []
    for group in sorted(df["group"].unique()):
        g = df[df["group"] == group]
        base = g[g["sample"] == "all"].sort_values("bin_left").reset_index(drop=True)
        lefts, rights = base["bin_left"].to_numpy(float), base["bin_right"].to_numpy(float)
        samples = {
            s: g[g["sample"] == s].set_index("bin_left")["n"].reindex(lefts, fill_value=0)
            for s in ("all", "matched")
            if (g["sample"] == s).any()
        }
        guide = samples.get("matched", samples["all"])
        use = "matched" if guide.sum() >= t else "all"
        guide = samples[use].to_numpy(float)
        groups_, acc, start = [], 0.0, 0
        for i, c in enumerate(guide):
            acc += c
            if acc >= t:
                groups_.append((start, i))
                start, acc = i + 1, 0.0
        if groups_ and start < len(guide):
            groups_[-1] = (groups_[-1][0], len(guide) - 1)
        if not groups_:
            out.suppress(group, "n", f"fewer than {t} persons in the whole histogram", "withheld")
            continue
        for s, counts in samples.items():
            cnt = counts.to_numpy(float)
            merged = [cnt[a : b + 1].sum() for a, b in groups_]
            if s != use and use == "all" and s == "matched":
                out.suppress(
                    f"{group} {s}", "n", f"fewer than {t} persons in the sample", "withheld"
                )
                continue
            if any(rules.is_small(m) for m in merged):
                out.suppress(f"{group} {s}", "n", rules.small_reason(), "withheld")
                continue
            for k, ((a, b), m) in enumerate(zip(groups_, merged, strict=True)):
                left = lefts[a] if k else math.floor(lefts[a] * 2) / 2
                right = rights[b] if k < len(groups_) - 1 else math.ceil(rights[b] * 2) / 2
                rows.append(
                    {"sample": s, "group": group, "bin_left": left, "bin_right": right, "n": m}
                )
        out.coarsened.append(
            f"{group}: {len(lefts)} bins merged into {len(groups_)}, each with at least {t} "
            "persons; outer edges widened to half logit units"
        )
    released = pd.DataFrame(rows, columns=["sample", "group", "bin_left", "bin_right", "n"])
    released = released.sort_values(["sample", "group", "bin_left"], kind="stable")
    Rules._tally(out, "MinimumThresholdCheck", 0, "pass - every merged bin meets the threshold")
    return _round_columns(released.reset_index(drop=True), ["n"], rules)


# ----------------------------------------------------------------------------- estimates
def _estimate_check(
    outcome: str, method: str, ev: pd.DataFrame, rules: Rules
) -> tuple[str | None, dict[str, Any]]:
    """Why an estimate must be withheld (``None`` if it may be released) and its checks."""
    design = method.split("_", 1)[1] if "_" in method else method
    outcomes = ["crime", "crime_before"] if method.startswith("poisson") else [outcome]
    reasons = []
    checks: dict[str, Any] = {}
    for o in outcomes:
        sub = ev[(ev["design"] == design) & (ev["outcome"] == o)].set_index("group")
        for group in ("HAT", "OST"):
            if group not in sub.index:
                continue
            row = sub.loc[group]
            what = "charges" if o.startswith("crime") else "events"
            if rules.is_small(row["n"]):
                reasons.append(f"fewer than {rules.t} {group} persons")
            elif rules.is_small(row["n_events"]):
                when = " before index" if o == "crime_before" else ""
                reasons.append(
                    f"fewer than {rules.t} {group} persons with {what}{when} "
                    f"({o.replace('_before', '').replace('_', ' ')})"
                )
            elif o.startswith("crime"):
                tops = [float(row[t]) if pd.notna(row[t]) else 0.0 for t in TOP_COLUMNS]
                total = float(row["sum"])
                n_k = sum(tops[: rules.config.safe_nk_n])
                p_ratio = (total - tops[0] - tops[1]) / tops[0] if tops[0] > 0 else 1.0
                if total > 0 and (
                    n_k / total >= rules.config.safe_nk_k or p_ratio < rules.config.safe_pratio_p
                ):
                    reasons.append(f"dominance: a few {group} persons hold most of the charges")
            checks[f"{o}:{group}"] = "fail" if reasons else "pass"
    if reasons:
        return "withheld for disclosure control: " + "; ".join(dict.fromkeys(reasons)), checks
    return None, checks


def _count_value(x: Any, rules: Rules) -> tuple[Any, dict[str, str] | None]:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        return x, None
    if rules.is_small(x):
        return None, {"shown": rules.small_text, "reason": rules.small_reason()}
    r = rules.rounded(float(x))
    return (int(r) if float(r).is_integer() else r), None


_COUNT_KEY = re.compile(r"^(n|n_.*|events|events_.*|ess|ess_.*)$")
_DROP_KEYS = {"max_followup", "rates"}
_TEXT_KEYS = {"note", "warnings", "rare_rule"}


_COUNTS_BY_KEY = ("events_by_group", "unmatched_treated_by_reason")


def _sanitise(node: Any, rules: Rules, *, key: str | None = None, counts: bool = False) -> Any:
    """Counts thresholded and rounded, individual maxima dropped, small numbers in text hidden.

    A number is a count when its key is ``n``, ``n_*``, ``events``, ``events_*``, ``ess``
    or ``ess_*`` or when it sits in ``events_by_group`` or ``unmatched_treated_by_reason``.
    """
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        suppressed: dict[str, Any] = dict(node.get("suppressed") or {})
        for k, v in node.items():
            if k == "suppressed" or k in _DROP_KEYS:
                continue
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            if number and (counts or _COUNT_KEY.match(str(k))):
                out[k], why = _count_value(v, rules)
                if why:
                    suppressed[k] = why
            else:
                out[k] = _sanitise(v, rules, key=k, counts=k in _COUNTS_BY_KEY)
        if suppressed:
            out["suppressed"] = suppressed
        return out
    if isinstance(node, list):
        return [_sanitise(v, rules, key=key) for v in node]
    if isinstance(node, str) and key in _TEXT_KEYS:
        return rules.redact_text(node)
    return node


def _withhold_estimate(e: dict[str, Any], reason: str, rules: Rules) -> dict[str, Any]:
    e = dict(e)
    sup = dict(e.get("suppressed") or {})
    for k in ESTIMATE_VALUES:
        if k in e:
            e[k] = None
            sup[k] = {"shown": "withheld", "reason": reason}
    if "n_events" in e and e["n_events"] is not None:
        e["n_events"] = None
        sup["n_events"] = {"shown": "withheld", "reason": reason}
    details = dict(e.get("details") or {})
    keep = ("definition", "time", "tau", "scale", "model", "contrast", "variance", "weighted")
    details = {k: v for k, v in details.items() if k in keep}
    details["note"] = reason
    e["details"] = details
    e["suppressed"] = sup
    return e


# ----------------------------------------------------------------------------- the release
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
    add("flow", "table", threshold + ["secondary suppression of row totals"],
        lambda o: _counts_table(tables["flow"], ["n_hat", "n_ost", "n_total"], rules, o,
                                total="n_total"))  # fmt: skip
    add("exclusions", "table", threshold,
        lambda o: _counts_table(tables["exclusions"], ["n_hat", "n_ost"], rules, o))  # fmt: skip
    add("table1", "table", threshold + ["complement of percentages", "dominance (means)"],
        lambda o: _table1(tables["table1"], _evidence(tables, "table1"), rules, o))  # fmt: skip
    add("balance", "table", ["minimum frequency threshold (binary covariates are counts)"],
        lambda o: _balance(tables["balance"], _evidence(tables, "balance"), rules, o))  # fmt: skip
    add("ps_overlap", "histogram", ["minimum frequency threshold", "merging of bins", "rounding"],
        lambda o: _histogram(tables["ps_overlap"], rules, o))  # fmt: skip
    add("km_retention", "survival table", ["survival rule (coarse grid)", "rounding"],
        lambda o: _curve(tables["km_retention"], _evidence(tables, "km_retention"), rules, o,
                         value="survival", start=1.0, keep=("se", "ci_low", "ci_high")))  # fmt: skip
    add("km_retention_at_risk", "survival table", ["survival threshold", "rounding"],
        lambda o: _at_risk(tables["km_retention_at_risk"], rules, o))  # fmt: skip
    add("cif_overdose", "survival table", ["survival rule (coarse grid)", "rounding"],
        lambda o: _curve(tables["cif_overdose"], _evidence(tables, "cif_overdose"), rules, o,
                         value="cumulative_incidence", start=0.0,
                         keep=("se", "ci_low", "ci_high")))  # fmt: skip
    for name, label in (("mortality_rates", "outcome"), ("crime_rates", "period")):
        add(name, "table", threshold + ["dominance (N-K, p-ratio)"],
            lambda o, name=name, label=label: _rates(
                tables[name], _evidence(tables, "rates"), name, label, rules, o))  # fmt: skip

    # estimates: results.json and the two tables that repeat them
    ev = _evidence(tables, "estimates")
    out_est = Output(
        name="results.json",
        kind="estimates",
        rules=["persons and events per arm >= threshold", "dominance (charges)", "rounding"],
    )
    withheld: dict[tuple[str, str, str], str] = {}
    new_estimates = []
    for i, e in enumerate(results.get("estimates", [])):
        reason, checks = _estimate_check(e["outcome"], e["method"], ev, rules)
        e = _sanitise(e, rules)
        if reason:
            withheld[(e["outcome"], e["measure"], e["method"])] = reason
            e = _withhold_estimate(e, reason, rules)
            out_est.suppress(i, f"{e['outcome']} {e['measure']} {e['method']}", reason, "withheld")
        new_estimates.append(e)
    Rules._tally(
        out_est,
        "EstimateCountsCheck",
        len(withheld),
        f"{len(withheld)} estimates withheld (persons or events per arm below {rules.t})",
    )
    new = _release_results(results, new_estimates, withheld, released, rules)
    out_est.table = pd.DataFrame(
        [{k: v for k, v in e.items() if k not in ("details", "suppressed")} for e in new_estimates]
    )
    outputs.insert(0, out_est)

    for name in ("estimates", "crime_before_after"):
        if name not in tables:
            continue
        out = Output(name=f"tables/{name}.csv", kind="table", rules=out_est.rules)
        df = tables[name].copy()
        mask = pd.DataFrame(False, index=df.index, columns=[c for c in ESTIMATE_VALUES if c in df])
        for i, r in df.iterrows():
            key = (r["outcome"], r["measure"], r["method"])
            reason = withheld.get(key)
            if name == "crime_before_after":
                reason = withheld.get(("crime", "ratio_of_rate_ratios", r["method"]))
            if reason:
                mask.loc[i] = True
        reasons = {
            i: withheld.get(
                ("crime", "ratio_of_rate_ratios", r["method"])
                if name == "crime_before_after"
                else (r["outcome"], r["measure"], r["method"])
            )
            for i, r in df.iterrows()
        }
        released[name] = df
        for reason in sorted({r for r in reasons.values() if r}):
            rows = pd.Series([reasons[i] == reason for i in df.index], index=df.index)
            released[name] = _suppress_cells(
                released[name], mask.where(rows, False, axis=0), out, reason, "withheld"
            )
        if "n_events" in df:
            released[name].loc[mask.any(axis=1), "n_events"] = np.nan
        small = rules.small_mask(
            released[name][[c for c in ("n_treated", "n_control") if c in df]], out
        )
        released[name] = _suppress_cells(
            released[name], small, out, rules.small_reason(), rules.small_text
        )
        released[name] = _round_columns(
            released[name], ["n_treated", "n_control", "n_events"], rules
        )
        out.table = released[name]
        outputs.append(out)

    new_manifest = {k: manifest[k] for k in MANIFEST_KEYS if k in manifest}
    new_manifest["release"] = {
        "disclosure_config": cfg.model_dump(),
        "disclosure_config_source": source,
        "record": RECORD,
    }
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
    return Release(
        results=new,
        manifest=new_manifest,
        tables=released,
        outputs=outputs,
        rules=rules,
        withheld=not_released,
    )


def _release_results(
    results: dict[str, Any],
    estimates: list[dict[str, Any]],
    withheld: Mapping[tuple[str, str, str], str],
    tables: Mapping[str, pd.DataFrame],
    rules: Rules,
) -> dict[str, Any]:
    new = _sanitise({k: v for k, v in results.items() if k not in ("estimates", "truth")}, rules)
    new["estimates"] = estimates
    new["truth"] = copy.deepcopy(results.get("truth"))
    # share matched: from the released (rounded) counts
    for info in (new.get("design") or {}).get("designs", {}).values():
        if "share_treated_matched" in info:
            a, b = info.get("n_treated_matched"), info.get("n_treated")
            info["share_treated_matched"] = (a / b) if a is not None and b else None
    # largest |SMD|: among the released ones
    bal = tables.get("balance")
    if bal is not None and "max_abs_smd" in (new.get("design") or {}):
        new["design"]["max_abs_smd"] = {
            c.removeprefix("smd_"): float(bal[c].abs().max()) if bal[c].notna().any() else None
            for c in bal.columns
            if c.startswith("smd_")
        }
    diag = new.get("diagnostics") or {}
    by_method = {(o, m) for (o, _measure, m) in withheld}
    if "ph_tests" in diag:
        diag["ph_tests"] = [
            t for t in diag["ph_tests"] if (t.get("outcome"), t.get("method")) not in by_method
        ]
    primary_withheld = {
        (e["outcome"], e["measure"]) for e in estimates if e.get("primary") and e.get("suppressed")
    }
    if "e_values" in diag:
        diag["e_values"] = [
            ev for ev in diag["e_values"] if (ev["outcome"], ev["measure"]) not in primary_withheld
        ]
    if ("retention", "HR", "cox_matched") in withheld and "score_test_retention" in diag:
        diag["score_test_retention"] = None
    if ("retention", "RR_12m", "km_matched") in withheld and "retention_at_12m" in diag:
        diag["retention_at_12m"] = None
    return new


# ----------------------------------------------------------------------------- writing
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_acro(release: Release, folder: Path, timestamp: str) -> None:
    """ACRO's output folder: ``results.json`` record, one CSV per table, figures, checksums."""
    acro = _acro()
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
    _write_acro(release, target / ACRO_FOLDER, str(release.manifest.get("created", "")))
    files = {
        p.relative_to(target).as_posix(): _sha256(p)
        for p in sorted(target.rglob("*"))
        if p.is_file()
    }
    cfg = release.rules.config
    record = {
        "format": 1,
        "producer": "hat-evaluation",
        "tool": {"name": "ACRO", "version": _acro().version.__version__},
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


def summary_lines(release: Release) -> list[str]:
    """One line per output that was changed, for the terminal."""
    lines = []
    for out in release.outputs:
        if out.status == "pass":
            continue
        what = f"{len(out.suppressed)} suppressed" if out.suppressed else ""
        if out.coarsened:
            what += (", " if what else "") + "coarsened"
        lines.append(f"{out.name}: {what}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation.release RESULTS_DIR [--config FILE]``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.release",
        description="Write RESULTS_DIR/release/: the outputs that pass statistical disclosure "
        "control (ACRO's rules), with the disclosure record (disclosure.json, and acro/ for "
        "SACRO-Viewer). Nothing else in RESULTS_DIR is changed.",
    )
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="study configuration whose disclosure: section sets the thresholds (default: "
        "the configuration in RESULTS_DIR/manifest.json, else ACRO's defaults)",
    )
    args = parser.parse_args(argv)
    from evaluation.results_folder import folder_lock

    folder = args.results_dir
    try:
        override = load_config(args.config).disclosure if args.config else None
        if not is_results_folder(folder):
            raise ReleaseError(f"{folder}: not a results folder written by the package")
        extra = foreign_files(folder)
        if extra:
            raise ReleaseError(
                f"{folder}: holds files the package did not write ({', '.join(extra[:3])}); "
                "nothing was changed"
            )
        with folder_lock(Path(folder).resolve()):
            target, release = write_release(folder, config=override)
    except (ReleaseError, OutputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in summary_lines(release):
        print(line)
    print(f"release written: {target} (record: {target / RECORD})")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
