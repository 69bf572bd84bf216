"""The rules applied to each table of counts: flow, exclusions, Table 1, balance, rates, histogram."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from evaluation.disclosure import EVIDENCE_PREFIX, TOP_COLUMNS
from evaluation.release.record import Output, ReleaseError
from evaluation.release.rules import Rules, round_columns, suppress_cells

__all__ = [
    "evidence",
    "release_balance",
    "release_counts_table",
    "release_histogram",
    "release_rates",
    "release_table1",
]


def evidence(tables: Mapping[str, pd.DataFrame], name: str) -> pd.DataFrame:
    """The evidence table ``disclosure_<name>``; a :class:`ReleaseError` when the folder has none."""
    key = f"{EVIDENCE_PREFIX}{name}"
    if key not in tables:
        raise ReleaseError(
            f"the results folder has no disclosure evidence (tables/{key}.csv): it was written "
            "before disclosure control existed; run the study again with `python -m "
            "evaluation.run` to make a release"
        )
    return tables[key]


def release_counts_table(
    df: pd.DataFrame, cols: list[str], rules: Rules, out: Output, *, total: str | None = None
) -> pd.DataFrame:
    """A table whose cells are counts of persons (flow, exclusions)."""
    present = [c for c in cols if c in df]
    mask = rules.small_mask(df[present], out)
    released = suppress_cells(df, mask, out, rules.small_reason(), rules.small_text)
    if total is not None and total in df:
        # a row total would give back a suppressed part by subtraction
        parts = [c for c in present if c != total]
        one = mask[parts].sum(axis=1) == 1
        second = pd.DataFrame({total: one & ~mask[total]})
        released = suppress_cells(
            released,
            second,
            out,
            "secondary suppression: the total less the other part would give a suppressed count",
            "suppressed",
        )
    return round_columns(released, present, rules)


def release_table1(df: pd.DataFrame, ev: pd.DataFrame, rules: Rules, out: Output) -> pd.DataFrame:
    """Table 1: counts, percentages (and their complements) and means (dominance) checked."""
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
    released = suppress_cells(df, small, out, rules.small_reason(), rules.small_text)
    released = suppress_cells(
        released,
        with_mask,
        out,
        rules.small_reason("persons with the characteristic"),
        rules.small_text,
    )
    released = suppress_cells(
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
        released = suppress_cells(
            released, dom, out, "dominance: a few persons hold most of the sum", "suppressed"
        )
    counts = df["statistic"].isin(["n", "sum of weights"]).to_numpy()
    for c in cols:
        released.loc[counts, c] = released.loc[counts, c].astype(float).map(rules.rounded)
    return released


def release_balance(df: pd.DataFrame, ev: pd.DataFrame, rules: Rules, out: Output) -> pd.DataFrame:
    """Balance table: SMDs and variance ratios suppressed where an arm has few persons."""
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
        Rules.tally(out, "MinimumThresholdCheck", n_failed, f"{n_failed} cells suppressed")
        released = suppress_cells(
            released,
            mask,
            out,
            rules.small_reason("persons with (or without) the value in an arm"),
            "suppressed",
        )
    return released


def release_rates(
    df: pd.DataFrame, ev: pd.DataFrame, table: str, label: str, rules: Rules, out: Output
) -> pd.DataFrame:
    """Rates by group: small counts of persons or events and dominated sums suppressed."""
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
    released = suppress_cells(
        df,
        pd.DataFrame({"events": small & ~dominated}, index=df.index),
        out,
        rules.small_reason("persons with an event"),
        rules.small_text,
    )
    released = suppress_cells(
        released,
        pd.DataFrame({c: small & ~dominated for c in value_cols}, index=df.index),
        out,
        "made from a count below the threshold: " + rules.small_reason("persons with an event"),
        "suppressed",
    )
    released = suppress_cells(
        released,
        pd.DataFrame({c: dominated for c in value_cols}, index=df.index),
        out,
        "dominance: a few persons hold most of the events (N-K or p-ratio rule)",
        "suppressed",
    )
    n_small = rules.small_mask(df[["n"]], out)
    released = suppress_cells(released, n_small, out, rules.small_reason(), rules.small_text)
    return round_columns(released, ["n"], rules)


def release_histogram(df: pd.DataFrame, rules: Rules, out: Output) -> pd.DataFrame:
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
    Rules.tally(out, "MinimumThresholdCheck", 0, "pass - every merged bin meets the threshold")
    return round_columns(released.reset_index(drop=True), ["n"], rules)
