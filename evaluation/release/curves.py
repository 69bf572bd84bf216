"""ACRO's survival rule: curves on a coarse grid of steps with enough events, numbers at risk."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluation.release.record import Output
from evaluation.release.rules import Rules, round_columns, suppress_cells

__all__ = ["release_at_risk", "release_curve"]


def release_curve(
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
        released = round_columns(released, ["n_at_risk", "events"], rules)
    Rules.tally(
        out,
        "SurvivalThresholdRule",
        0,
        f"pass - every released step has at least {t} events and {t} persons at risk",
    )
    return released


def release_at_risk(df: pd.DataFrame, rules: Rules, out: Output) -> pd.DataFrame:
    """Numbers at risk on the time grid, each at least the survival threshold, rounded."""
    grid = rules.config.time_grid_days
    on_grid = (df["time"].to_numpy(float) % grid) == 0
    if not on_grid.all():
        out.coarsened.append(f"times not on the {grid}-day grid dropped")
    df = df[on_grid].reset_index(drop=True)
    threshold = rules.config.survival_safe_threshold
    counts = df[["n_at_risk"]].astype(float)
    mask = counts < threshold
    Rules.tally(out, "SurvivalThresholdRule", int(mask.to_numpy().sum()), "numbers at risk")
    released = suppress_cells(
        df, mask, out, f"fewer than {threshold} persons at risk", f"<{threshold}"
    )
    return round_columns(released, ["n_at_risk"], rules)
