"""Model estimates: released when each arm has enough persons and events, else withheld."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from evaluation.disclosure import TOP_COLUMNS
from evaluation.release.record import ESTIMATE_VALUES, Output
from evaluation.release.rules import Rules, round_columns, suppress_cells
from evaluation.release.tables import evidence

__all__ = ["release_estimate_tables", "release_estimates"]


def _estimate_check(
    outcome: str, method: str, ev: pd.DataFrame, rules: Rules, measure: str | None = None
) -> tuple[str | None, dict[str, Any]]:
    """Why an estimate must be withheld (``None`` if it may be released) and its checks."""
    design = method.split("_", 1)[1] if "_" in method else method
    before_after = method.startswith("poisson") or measure == "ratio_of_rate_ratios"
    outcomes = ["crime", "crime_before"] if before_after else [outcome]
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


def _own_counts_check(e: Mapping[str, Any], rules: Rules) -> tuple[str | None, dict[str, Any]]:
    """An estimate whose design has no evidence (a target trial's sensitivity comparison).

    Its own counts decide: persons per arm (``n_treated``, ``n_control``) and events per
    arm (``details.events_by_group``); an estimate without events per arm, or of charges
    (whose dominance cannot be checked without the persons' contributions), is withheld.
    """
    reasons = []
    for group, n in (("HAT", e.get("n_treated")), ("comparator", e.get("n_control"))):
        if n is None or rules.is_small(n):
            reasons.append(f"fewer than {rules.t} {group} persons")
    by_group = (e.get("details") or {}).get("events_by_group") or {}
    events = [v for v in by_group.values() if isinstance(v, (int, float))]
    if str(e.get("outcome", "")).startswith("crime"):
        reasons.append(
            "no evidence of the persons behind the charges of this design (the dominance "
            "rules cannot be checked)"
        )
    elif len(events) < 2:
        reasons.append("no evidence of the persons with events in each arm of this design")
    elif any(rules.is_small(v) for v in events):
        reasons.append(f"fewer than {rules.t} events in an arm")
    checks = {"own counts": "fail" if reasons else "pass"}
    if reasons:
        return "withheld for disclosure control: " + "; ".join(dict.fromkeys(reasons)), checks
    return None, checks


def _count_value(x: Any, rules: Rules) -> tuple[Any, dict[str, str] | None]:
    """A count of ``results.json`` released: ``(value, why suppressed or None)``."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        return x, None
    if rules.is_small(x):
        return None, {"shown": rules.small_text, "reason": rules.small_reason()}
    r = rules.rounded(float(x))
    return (int(r) if float(r).is_integer() else r), None


_COUNT_KEY = re.compile(
    r"^(n|n_.*|events|events_.*|ess|ess_.*|comparators_later_.*|propensity_rows)$"
)
#: individual values (the longest follow-up, a person's number of risk sets, the smallest
#: and largest censoring weight) and per-arm sums not checked
_DROP_KEYS = {"max_followup", "rates", "max_risk_sets_per_comparator"}
_DROP_IN = {"weights": {"min", "max"}}
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
            if k == "suppressed" or k in _DROP_KEYS or k in _DROP_IN.get(str(key), ()):
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
    """An estimate with its values, events and details withheld, with the reason."""
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


def _release_results(
    results: dict[str, Any],
    estimates: list[dict[str, Any]],
    withheld: Mapping[tuple[str, str, str], str],
    tables: Mapping[str, pd.DataFrame],
    rules: Rules,
) -> dict[str, Any]:
    """The released results document: sanitised, with what depends on withheld estimates removed."""
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


def release_estimates(
    results: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    released: Mapping[str, pd.DataFrame],
    rules: Rules,
) -> tuple[dict[str, Any], Output, dict[tuple[str, str, str], str]]:
    """``results.json`` released: estimates checked, counts rounded, dependent results withheld.

    Parameters
    ----------
    results : mapping
        The results folder's ``results.json``.
    tables : mapping
        Its tables (with the ``disclosure_estimates`` evidence).
    released : mapping
        The tables released so far (the largest released SMD is read from ``balance``).
    rules : Rules

    Returns
    -------
    (dict, Output, dict)
        The released results document, its record, and the reason each withheld estimate
        (``(outcome, measure, method)``) was withheld.
    """
    ev = evidence(tables, "estimates")
    out_est = Output(
        name="results.json",
        kind="estimates",
        rules=["persons and events per arm >= threshold", "dominance (charges)", "rounding"],
    )
    withheld: dict[tuple[str, str, str], str] = {}
    new_estimates = []
    for i, e in enumerate(results.get("estimates", [])):
        design = e["method"].split("_", 1)[1] if "_" in e["method"] else e["method"]
        if (ev["design"] == design).any():
            reason, checks = _estimate_check(e["outcome"], e["method"], ev, rules, e["measure"])
        else:  # no evidence for the design: its own counts decide
            reason, checks = _own_counts_check(e, rules)
        e = _sanitise(e, rules)
        if reason:
            withheld[(e["outcome"], e["measure"], e["method"])] = reason
            e = _withhold_estimate(e, reason, rules)
            out_est.suppress(i, f"{e['outcome']} {e['measure']} {e['method']}", reason, "withheld")
        new_estimates.append(e)
    Rules.tally(
        out_est,
        "EstimateCountsCheck",
        len(withheld),
        f"{len(withheld)} estimates withheld (persons or events per arm below {rules.t})",
    )
    new = _release_results(results, new_estimates, withheld, released, rules)
    out_est.table = pd.DataFrame(
        [{k: v for k, v in e.items() if k not in ("details", "suppressed")} for e in new_estimates]
    )
    return new, out_est, withheld


def release_estimate_tables(
    tables: Mapping[str, pd.DataFrame],
    released: dict[str, pd.DataFrame],
    withheld: Mapping[tuple[str, str, str], str],
    rules: Rules,
    rule_names: list[str],
) -> list[Output]:
    """The tables that repeat the estimates, with the same estimates withheld (into ``released``)."""
    outputs = []
    for name in ("estimates", "crime_before_after"):
        if name not in tables:
            continue
        out = Output(name=f"tables/{name}.csv", kind="table", rules=list(rule_names))
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
            released[name] = suppress_cells(
                released[name], mask.where(rows, False, axis=0), out, reason, "withheld"
            )
        if "n_events" in df:
            released[name].loc[mask.any(axis=1), "n_events"] = np.nan
        small = rules.small_mask(
            released[name][[c for c in ("n_treated", "n_control") if c in df]], out
        )
        released[name] = suppress_cells(
            released[name], small, out, rules.small_reason(), rules.small_text
        )
        released[name] = round_columns(
            released[name], ["n_treated", "n_control", "n_events"], rules
        )
        out.table = released[name]
        outputs.append(out)
    return outputs
