"""ACRO's rules with a study's thresholds, and the suppression and rounding of table cells."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd

from evaluation.config import DisclosureConfig
from evaluation.release.acro import Cells, load_acro
from evaluation.release.record import Output

__all__ = ["Rules", "round_columns", "suppress_cells"]


class Rules:
    """ACRO's rules with a study's disclosure configuration."""

    def __init__(self, config: DisclosureConfig) -> None:
        self.config = config
        self.t = config.safe_threshold
        self.small_text = f"<{self.t}"
        self.checks = load_acro().sdcchecks.SDCChecks(config.acro_config())

    # counts ---------------------------------------------------------------
    def small_mask(self, counts: pd.DataFrame, out: Output | None = None) -> pd.DataFrame:
        """Cells failing ACRO's MinimumThresholdCheck or PresenceOfZeroCheck."""
        counts = counts.astype(float)
        evidence = self.checks_evidence(count_table=counts)
        model = Cells(counts)
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
                self.tally(out, name, int(m.to_numpy().sum()), summary)
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
        model = Cells(sums)
        mask = pd.DataFrame(False, index=sums.index, columns=sums.columns)
        for name, check in (
            ("NKCheck", self.checks.check_nk_dominance),
            ("PPercentCheck", self.checks.check_ppercent_dominance),
        ):
            status, summary, m = check("Sum", evidence, model)
            m = m.reindex(index=sums.index, columns=sums.columns).fillna(False).astype(bool)
            m &= sums.fillna(0).to_numpy() > 0
            mask |= m
            self.tally(out, name, int(m.to_numpy().sum()), summary)
        return mask

    @staticmethod
    def checks_evidence(**tables: pd.DataFrame) -> Any:
        """ACRO's evidence object holding the given interim tables."""
        return load_acro().sdcchecks.SDCEvidence(interim_tables=dict(tables))

    @staticmethod
    def tally(out: Output, name: str, n: int, summary: str) -> None:
        """Add ``n`` failed cells of check ``name`` to the output's record."""
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
        """Why a count below the threshold is suppressed, for ``what``."""
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


def suppress_cells(
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
    """Position of the row label ``r`` (the row key of the record)."""
    return int(df.index.get_loc(r))


def round_columns(df: pd.DataFrame, cols: list[str], rules: Rules) -> pd.DataFrame:
    """Counts rounded to the base; whole-number columns written as integers."""
    df = df.copy()
    for c in cols:
        if c in df:
            x = df[c].astype(float).map(rules.rounded)
            whole = x.dropna()
            df[c] = x.astype("Int64") if (whole == whole.round()).all() else x
    return df
